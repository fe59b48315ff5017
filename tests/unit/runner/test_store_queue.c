/*
 * The store's queue on a real SQLite file: needs, claim order, groups,
 * leases (with a clock moved by hand: no test sleeps), results from
 * stale attempts, retries, cancel, steps and logs across attempts, and
 * the watchers told of changes that may make a job claimable.
 */
#include "store_helpers.h"

#include <errno.h>

static void test_a_job_is_claimable_only_when_its_needs_succeeded(void **state)
{
	struct fx *f = *state;
	int64_t run = run_of(f->s, "build test:build");
	struct store_job *b = claim(f->s, "h1");
	assert_non_null(b);
	assert_string_equal(b->name, "build");
	assert_null(claim(f->s, "h1")); /* test waits for build */
	assert_int_equal(status_of(f->s, run, "test"), STORE_QUEUED);
	finish(f->s, b->id, b->attempt, STORE_SUCCESS);
	assert_string_equal(claim_name(f->s, "h1"), "test");
	store_job_free(b);
}

static void test_a_job_with_two_needs_waits_for_both(void **state)
{
	struct fx *f = *state;
	run_of(f->s, "a b c:a,b");
	struct store_job *a = claim(f->s, "h"), *b = claim(f->s, "h");
	finish(f->s, a->id, 1, STORE_SUCCESS);
	assert_null(claim(f->s, "h"));
	finish(f->s, b->id, 1, STORE_SUCCESS);
	assert_string_equal(claim_name(f->s, "h"), "c");
	store_job_free(a);
	store_job_free(b);
}

static void test_a_failed_need_skips_its_dependents_transitively(void **state)
{
	struct fx *f = *state;
	int64_t run = run_of(f->s, "a b:a c:b lint");
	struct store_job *a = claim(f->s, "h"), *lint = claim(f->s, "h");
	assert_string_equal(lint->name, "lint");
	finish(f->s, a->id, 1, STORE_FAILURE);
	assert_int_equal(status_of(f->s, run, "b"), STORE_SKIPPED);
	assert_int_equal(status_of(f->s, run, "c"), STORE_SKIPPED);
	assert_int_equal(status_of(f->s, run, "lint"), STORE_RUNNING);
	assert_int_equal(run_status(f->s, run), STORE_RUNNING);
	finish(f->s, lint->id, 1, STORE_SUCCESS);
	assert_int_equal(run_status(f->s, run), STORE_FAILURE);
	assert_null(claim(f->s, "h"));
	store_job_free(a);
	store_job_free(lint);
}

static void test_claims_take_the_oldest_run_first_then_job_order(void **state)
{
	struct fx *f = *state;
	run_of(f->s, "zeta alpha mid");
	run_of(f->s, "first second");
	const char *want[] = {"zeta", "alpha", "mid", "first", "second", ""};
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_string_equal(claim_name(f->s, "h"), want[i]);
}

static void test_a_run_is_queued_then_running_then_finished(void **state)
{
	struct fx *f = *state;
	int64_t run = run_of(f->s, "a b");
	assert_int_equal(run_status(f->s, run), STORE_QUEUED);
	f->now += 1000;
	struct store_job *a = claim(f->s, "h");
	assert_int_equal(run_status(f->s, run), STORE_RUNNING);
	finish(f->s, a->id, 1, STORE_SUCCESS);
	assert_int_equal(run_status(f->s, run), STORE_RUNNING); /* b is still queued */
	struct store_job *b = claim(f->s, "h");
	f->now += 5000;
	finish(f->s, b->id, 1, STORE_SUCCESS);
	struct vmci_err err = {0};
	struct store_run *r = NULL;
	assert_int_equal(store_run_get(f->s, run, &r, &err), 0);
	assert_int_equal(r->status, STORE_SUCCESS);
	assert_true(r->created_ms == T0 && r->started_ms == T0 + 1000);
	assert_true(r->finished_ms == T0 + 6000);
	store_run_free(r);
	store_job_free(a);
	store_job_free(b);
}

static void test_a_failure_outranks_an_error_and_an_error_a_cancel(void **state)
{
	struct fx *f = *state;
	int64_t r1 = run_of(f->s, "a b");
	struct store_job *a = claim(f->s, "h"), *b = claim(f->s, "h");
	finish(f->s, a->id, 1, STORE_ERROR);
	finish(f->s, b->id, 1, STORE_FAILURE);
	assert_int_equal(run_status(f->s, r1), STORE_FAILURE);
	store_job_free(a);
	store_job_free(b);
	int64_t r2 = run_of(f->s, "c d");
	a = claim(f->s, "h");
	b = claim(f->s, "h");
	finish(f->s, a->id, 1, STORE_CANCELLED);
	finish(f->s, b->id, 1, STORE_ERROR);
	assert_int_equal(run_status(f->s, r2), STORE_ERROR);
	store_job_free(a);
	store_job_free(b);
}

static void test_max_parallel_limits_the_running_jobs_of_a_group(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run;
	struct store_job_spec opts = {.max_parallel = 2};
	assert_int_equal(run_try(f->s, "r", "m1 m2 m3", &opts, &run, &err), 0);
	struct store_job *a = claim(f->s, "h"), *b = claim(f->s, "h");
	assert_non_null(b);
	assert_null(claim(f->s, "h"));
	finish(f->s, a->id, 1, STORE_SUCCESS);
	assert_string_equal(claim_name(f->s, "h"), "m3");
	store_job_free(a);
	store_job_free(b);
}

static void test_fail_fast_cancels_the_rest_of_the_group(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run;
	struct store_job_spec opts = {.fail_fast = true, .group = 0};
	assert_int_equal(run_try(f->s, "r", "m1 m2 m3", &opts, &run, &err), 0);
	struct store_job *m1 = claim(f->s, "h"), *m2 = claim(f->s, "h");
	finish(f->s, m1->id, 1, STORE_FAILURE);
	assert_int_equal(status_of(f->s, run, "m3"), STORE_CANCELLED);
	struct store_job *j = job_named(f->s, run, "m2");
	assert_int_equal(j->status, STORE_RUNNING);
	assert_true(j->cancel_requested);
	assert_int_equal(store_job_cancel_requested(f->s, m2->id, 1, &err), 1);
	store_job_free(j);
	store_job_free(m1);
	store_job_free(m2);
}

/* ---- leases ------------------------------------------------------------------------------ */

static void test_renewing_a_lease_keeps_the_job_running(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	run_of(f->s, "a");
	struct store_job *a = claim(f->s, "h1"); /* 30 s lease */
	assert_int_equal(a->lease_expires_ms, T0 + 30000);
	f->now = T0 + 25000;
	assert_int_equal(store_lease_renew(f->s, "h1", &err), 1);
	assert_int_equal(store_lease_renew(f->s, "other-host", &err), 0);
	assert_int_equal(store_requeue_expired(f->s, T0 + 50000, &err), 0);
	assert_int_equal(store_requeue_expired(f->s, T0 + 55001, &err), 1);
	store_job_free(a);
}

static void test_an_expired_lease_requeues_the_job_as_a_new_attempt(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "a");
	struct store_job *a = claim(f->s, "h1");
	assert_int_equal(store_log_append(f->s, a->id, 1, "before the crash\n", 17, &err), 17);
	assert_int_equal(store_step_start(f->s, a->id, 1, 0, "make", &err), 0);
	assert_int_equal(store_requeue_expired(f->s, T0 + 29999, &err), 0);
	assert_int_equal(store_requeue_expired(f->s, T0 + 30001, &err), 1);

	struct store_job *j = job_named(f->s, run, "a");
	assert_int_equal(j->status, STORE_QUEUED);
	assert_null(j->host);
	assert_int_equal(j->n_attempts, 1);
	assert_int_equal(j->attempts[0].status, STORE_ERROR);
	assert_string_equal(j->attempts[0].reason, "lease expired");
	assert_int_equal(j->attempts[0].n_steps, 1);
	assert_int_equal(j->log_len, 17);
	store_job_free(j);

	struct store_job *again = claim(f->s, "h2");
	assert_int_equal(again->id, a->id);
	assert_int_equal(again->attempt, 2);
	assert_string_equal(again->host, "h2");
	j = job_named(f->s, run, "a");
	assert_int_equal(j->n_attempts, 2);
	assert_int_equal(j->attempts[1].log_start, 17);
	store_job_free(j);
	store_job_free(again);
	store_job_free(a);
}

static void test_a_late_finisher_after_requeue_is_refused(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "a");
	struct store_job *a = claim(f->s, "h1");
	assert_int_equal(store_requeue_expired(f->s, T0 + 60000, &err), 1);
	/* While queued again, and after another host took it: attempt 1 is over. */
	assert_int_equal(store_job_finish(f->s, a->id, 1, STORE_SUCCESS, 0, NULL, &err), -ESTALE);
	assert_non_null(strstr(err.msg, "attempt 1"));
	struct store_job *again = claim(f->s, "h2");
	assert_int_equal(store_job_finish(f->s, a->id, 1, STORE_FAILURE, 2, "make", &err), -ESTALE);
	assert_int_equal(store_log_append(f->s, a->id, 1, "late", 4, &err), -ESTALE);
	assert_int_equal(store_step_start(f->s, a->id, 1, 1, "late", &err), -ESTALE);
	assert_int_equal(store_job_cancel_requested(f->s, a->id, 1, &err), -ESTALE);
	assert_int_equal(store_job_cancel_requested(f->s, a->id, 2, &err), 0);
	assert_int_equal(status_of(f->s, run, "a"), STORE_RUNNING);
	finish(f->s, a->id, 2, STORE_SUCCESS);
	struct store_job *j = job_named(f->s, run, "a");
	assert_int_equal(j->status, STORE_SUCCESS);
	assert_int_equal(j->attempts[0].status, STORE_ERROR);
	assert_int_equal(j->attempts[1].status, STORE_SUCCESS);
	store_job_free(j);
	store_job_free(again);
	store_job_free(a);
}

static void test_a_job_that_keeps_losing_its_lease_ends_in_error(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "crasher after:crasher");
	for (int i = 1; i <= STORE_LEASES_LOST_MAX; i++) {
		struct store_job *j = claim(f->s, "h");
		assert_int_equal(j->attempt, i);
		store_job_free(j);
		f->now += 60000;
		assert_int_equal(store_requeue_expired(f->s, f->now, &err), 1);
	}
	assert_int_equal(status_of(f->s, run, "crasher"), STORE_ERROR);
	assert_int_equal(status_of(f->s, run, "after"), STORE_SKIPPED);
	assert_int_equal(run_status(f->s, run), STORE_ERROR);
	assert_null(claim(f->s, "h"));
}

static void test_a_host_that_stops_its_jobs_never_fails_them(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "long");
	/* A graceful stop past the grace period, more often than leases may be lost. */
	for (int i = 1; i <= STORE_LEASES_LOST_MAX + 2; i++) {
		struct store_job *j = claim(f->s, "h");
		assert_int_equal(j->attempt, i);
		store_job_free(j);
		assert_int_equal(store_requeue_host(f->s, "h", STORE_REQUEUE_STOPPED, &err), 1);
		assert_int_equal(status_of(f->s, run, "long"), STORE_QUEUED);
	}
	struct store_job *j = claim(f->s, "h");
	assert_int_equal(j->attempt, STORE_LEASES_LOST_MAX + 3);
	assert_int_equal(store_job_finish(f->s, j->id, j->attempt, STORE_SUCCESS, 0, NULL, &err),
			 0);
	struct store_job *got = NULL;
	assert_int_equal(store_job_get(f->s, j->id, &got, &err), 0);
	assert_string_equal(got->attempts[0].reason, "host stopped");
	assert_int_equal(got->status, STORE_SUCCESS);
	store_job_free(got);
	store_job_free(j);
}

static void test_a_job_whose_host_keeps_dying_under_it_ends_in_error(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "crasher");
	for (int i = 1; i <= STORE_LEASES_LOST_MAX; i++) {
		struct store_job *j = claim(f->s, "h");
		store_job_free(j);
		assert_int_equal(store_requeue_host(f->s, "h", STORE_REQUEUE_RESTARTED, &err), 1);
	}
	assert_int_equal(status_of(f->s, run, "crasher"), STORE_ERROR);
	assert_null(claim(f->s, "h"));
}

/* ---- results ------------------------------------------------------------------------------- */

static void test_an_infrastructure_error_is_retried_while_retries_last(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run;
	struct store_job_spec opts = {.retries = 1};
	assert_int_equal(run_try(f->s, "r", "flaky broken", &opts, &run, &err), 0);
	struct store_job *flaky = claim(f->s, "h"), *broken = claim(f->s, "h");
	assert_int_equal(store_job_finish(f->s, flaky->id, 1, STORE_ERROR, -1, NULL, &err), 1);
	/* A failing step is never retried. */
	assert_int_equal(store_job_finish(f->s, broken->id, 1, STORE_FAILURE, 2, "test", &err), 0);
	assert_int_equal(status_of(f->s, run, "broken"), STORE_FAILURE);
	struct store_job *again = claim(f->s, "h");
	assert_int_equal(again->attempt, 2);
	assert_int_equal(store_job_finish(f->s, flaky->id, 2, STORE_ERROR, -1, NULL, &err), 0);
	assert_int_equal(status_of(f->s, run, "flaky"), STORE_ERROR);
	struct store_job *j = job_named(f->s, run, "broken");
	assert_int_equal(j->exit_code, 2);
	assert_string_equal(j->failed_step, "test");
	store_job_free(j);
	store_job_free(again);
	store_job_free(flaky);
	store_job_free(broken);
}

static void test_retry_requeues_a_finished_job_and_its_skipped_dependents(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "a b:a c:b");
	struct store_job *a = claim(f->s, "h");
	finish(f->s, a->id, 1, STORE_FAILURE);
	assert_int_equal(run_status(f->s, run), STORE_FAILURE);
	struct store_job *b = job_named(f->s, run, "b");
	assert_int_equal(store_job_retry(f->s, b->id, &err), -EINVAL); /* skipped */
	assert_int_equal(store_job_retry(f->s, a->id, &err), 0);
	assert_int_equal(store_job_retry(f->s, a->id, &err), -EBUSY); /* queued now */
	assert_int_equal(status_of(f->s, run, "b"), STORE_QUEUED);
	assert_int_equal(status_of(f->s, run, "c"), STORE_QUEUED);
	assert_int_equal(run_status(f->s, run), STORE_RUNNING);
	struct store_job *again = claim(f->s, "h");
	assert_int_equal(again->id, a->id);
	assert_int_equal(again->attempt, 2);
	assert_null(claim(f->s, "h")); /* b waits for a again */
	finish(f->s, a->id, 2, STORE_SUCCESS);
	for (const char *name = "b"; *name; name = *name == 'b' ? "c" : "") {
		struct store_job *j = claim(f->s, "h");
		assert_string_equal(j->name, name);
		finish(f->s, j->id, 1, STORE_SUCCESS);
		store_job_free(j);
	}
	assert_int_equal(run_status(f->s, run), STORE_SUCCESS);
	store_job_free(again);
	store_job_free(b);
	store_job_free(a);
}

static void test_a_retried_success_makes_its_queued_dependents_wait_again(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	run_of(f->s, "a b:a");
	struct store_job *a = claim(f->s, "h");
	finish(f->s, a->id, 1, STORE_SUCCESS);
	assert_int_equal(store_job_retry(f->s, a->id, &err), 0);
	assert_string_equal(claim_name(f->s, "h"), "a");
	assert_string_equal(claim_name(f->s, "h"), ""); /* b waits for the new attempt */
	store_job_free(a);
}

static void test_cancel_ends_queued_jobs_and_asks_running_ones_to_stop(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "a b c:a");
	struct store_job *a = claim(f->s, "h");
	assert_int_equal(store_job_cancel_requested(f->s, a->id, 1, &err), 0);
	assert_int_equal(store_run_cancel(f->s, run, &err), 3);
	assert_int_equal(status_of(f->s, run, "b"), STORE_CANCELLED);
	assert_int_equal(status_of(f->s, run, "c"), STORE_CANCELLED);
	assert_int_equal(status_of(f->s, run, "a"), STORE_RUNNING);
	assert_int_equal(run_status(f->s, run), STORE_RUNNING);
	assert_int_equal(store_job_cancel_requested(f->s, a->id, 1, &err), 1);
	assert_null(claim(f->s, "h"));
	finish(f->s, a->id, 1, STORE_CANCELLED);
	assert_int_equal(run_status(f->s, run), STORE_CANCELLED);
	assert_int_equal(store_run_cancel(f->s, run, &err), 0);
	assert_int_equal(store_run_cancel(f->s, run + 100, &err), -ENOENT);
	store_job_free(a);
}

static void test_a_cancelled_job_whose_lease_expires_ends_cancelled(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "a");
	struct store_job *a = claim(f->s, "h");
	assert_int_equal(store_run_cancel(f->s, run, &err), 1);
	assert_int_equal(store_requeue_expired(f->s, T0 + 60000, &err), 1);
	assert_int_equal(status_of(f->s, run, "a"), STORE_CANCELLED);
	assert_int_equal(run_status(f->s, run), STORE_CANCELLED);
	store_job_free(a);
}

static void test_steps_are_recorded_per_attempt(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "a");
	struct store_job *a = claim(f->s, "h");
	assert_int_equal(store_step_start(f->s, a->id, 1, 0, "configure", &err), 0);
	assert_int_equal(store_step_finish(f->s, a->id, 1, 0, STORE_SUCCESS, 0, &err), 0);
	assert_int_equal(store_step_start(f->s, a->id, 1, 1, "make", &err), 0);
	assert_int_equal(store_step_finish(f->s, a->id, 1, 1, STORE_FAILURE, 2, &err), 0);
	assert_int_equal(store_step_finish(f->s, a->id, 1, 7, STORE_FAILURE, 2, &err), -ENOENT);
	assert_int_equal(store_job_finish(f->s, a->id, 1, STORE_FAILURE, 2, "make", &err), 0);
	struct store_job *j = job_named(f->s, run, "a");
	assert_int_equal(j->n_attempts, 1);
	struct store_attempt *at = &j->attempts[0];
	assert_int_equal(at->n_steps, 2);
	assert_string_equal(at->steps[0].name, "configure");
	assert_int_equal(at->steps[0].status, STORE_SUCCESS);
	assert_int_equal(at->steps[1].exit_code, 2);
	assert_string_equal(at->failed_step, "make");
	assert_int_equal(at->exit_code, 2);
	store_job_free(j);
	store_job_free(a);
}

/* ---- logs ---------------------------------------------------------------------------------- */

static int64_t read_log(struct store *s, int64_t job, int64_t offset, size_t max, char *out,
			int64_t *next, bool *finished)
{
	struct vmci_err err = {0};
	struct buf b = {0};
	int64_t n = store_log_read(s, job, offset, max, &b, next, finished, &err);
	if (n < 0)
		fail_msg("store_log_read: %s", err.msg);
	if (n > 0)
		memcpy(out, b.data, (size_t)n);
	out[n] = 0;
	buf_free(&b);
	return n;
}

static void test_log_offsets_run_across_attempts(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	run_of(f->s, "a");
	struct store_job *a = claim(f->s, "h1");
	assert_int_equal(store_log_append(f->s, a->id, 1, "hello ", 6, &err), 6);
	assert_int_equal(store_log_append(f->s, a->id, 1, "world\n", 6, &err), 12);
	assert_int_equal(store_log_append(f->s, a->id, 1, "", 0, &err), 12);
	assert_int_equal(store_requeue_expired(f->s, T0 + 60000, &err), 1);
	store_job_free(claim(f->s, "h2"));
	assert_int_equal(store_log_append(f->s, a->id, 2, "again\n", 6, &err), 18);

	char text[64];
	int64_t next;
	bool done;
	assert_int_equal(read_log(f->s, a->id, 0, 100, text, &next, &done), 18);
	assert_string_equal(text, "hello world\nagain\n");
	assert_int_equal(next, 18);
	assert_false(done);
	/* From inside one chunk to inside another, across the attempts. */
	assert_int_equal(read_log(f->s, a->id, 8, 6, text, &next, &done), 6);
	assert_string_equal(text, "rld\nag");
	assert_int_equal(next, 14);
	assert_int_equal(read_log(f->s, a->id, 18, 100, text, &next, &done), 0);
	assert_false(done);
	finish(f->s, a->id, 2, STORE_SUCCESS);
	assert_int_equal(read_log(f->s, a->id, 18, 100, text, &next, &done), 0);
	assert_true(done);
	assert_int_equal(read_log(f->s, a->id, 12, 100, text, &next, &done), 6);
	assert_true(done);
	struct buf b = {0};
	assert_int_equal(store_log_read(f->s, a->id, 19, 10, &b, &next, &done, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "past the end"));
	buf_free(&b);
	store_job_free(a);
}

static void test_runs_are_listed_newest_first_with_filters(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t ids[5];
	for (int i = 0; i < 5; i++) {
		int64_t id;
		assert_int_equal(
		    run_try(f->s, i % 2 ? "acme/odd" : "acme/even", "x", NULL, &id, &err), 0);
		ids[i] = id;
	}
	struct store_job *x = claim(f->s, "h"); /* the first run's job */
	finish(f->s, x->id, 1, STORE_SUCCESS);
	store_job_free(x);

	struct store_run *runs;
	size_t n;
	assert_int_equal(store_runs_list(f->s, NULL, &runs, &n, &err), 0);
	assert_int_equal(n, 5);
	assert_int_equal(runs[0].id, ids[4]);
	assert_int_equal(runs[4].id, ids[0]);
	assert_null(runs[0].jobs);
	store_runs_free(runs, n);

	struct store_run_filter even = {.repo = "acme/even", .limit = 2};
	assert_int_equal(store_runs_list(f->s, &even, &runs, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(runs[0].id, ids[4]);
	assert_int_equal(runs[1].id, ids[2]);
	even.before = runs[1].id;
	store_runs_free(runs, n);
	assert_int_equal(store_runs_list(f->s, &even, &runs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(runs[0].id, ids[0]);
	store_runs_free(runs, n);

	struct store_run_filter done = {.status = "success"};
	assert_int_equal(store_runs_list(f->s, &done, &runs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(runs[0].id, ids[0]);
	store_runs_free(runs, n);
	struct store_run_filter bad = {.status = "green"};
	assert_int_equal(store_runs_list(f->s, &bad, &runs, &n, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "green"));
}

static void count_call(void *ctx)
{
	(*(int *)ctx)++;
}

static void test_watchers_hear_of_every_change_that_may_make_a_job_claimable(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int calls = 0;
	int id = store_queue_watch(count_call, &calls, &err);
	assert_true(id >= 0);
	run_of(f->s, "a b");
	assert_int_equal(calls, 1); /* a run created */
	struct store_job *a = claim(f->s, "h1");
	assert_int_equal(calls, 1); /* a claim makes nothing claimable */
	finish(f->s, a->id, a->attempt, STORE_SUCCESS);
	assert_int_equal(calls, 2); /* a job finished */
	struct store_job *b = claim(f->s, "h1");
	assert_int_equal(store_requeue_expired(f->s, T0 + 60000, &err), 1);
	assert_int_equal(calls, 3); /* a lease expired */
	store_job_free(b);
	b = claim(f->s, "h1");
	assert_int_equal(store_requeue_host(f->s, "h1", STORE_REQUEUE_STOPPED, &err), 1);
	assert_int_equal(calls, 4); /* a host gave its jobs back */
	assert_int_equal(store_requeue_host(f->s, "h1", STORE_REQUEUE_STOPPED, &err), 0);
	assert_int_equal(calls, 4); /* nothing given back, nothing to hear */
	assert_int_equal(store_job_retry(f->s, a->id, &err), 0);
	assert_int_equal(calls, 5); /* a job retried */
	store_queue_unwatch(id);
	run_of(f->s, "c");
	assert_int_equal(calls, 5);
	store_job_free(b);
	store_job_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
	    T(test_a_job_is_claimable_only_when_its_needs_succeeded),
	    T(test_a_job_with_two_needs_waits_for_both),
	    T(test_a_failed_need_skips_its_dependents_transitively),
	    T(test_claims_take_the_oldest_run_first_then_job_order),
	    T(test_a_run_is_queued_then_running_then_finished),
	    T(test_a_failure_outranks_an_error_and_an_error_a_cancel),
	    T(test_max_parallel_limits_the_running_jobs_of_a_group),
	    T(test_fail_fast_cancels_the_rest_of_the_group),
	    T(test_renewing_a_lease_keeps_the_job_running),
	    T(test_an_expired_lease_requeues_the_job_as_a_new_attempt),
	    T(test_a_late_finisher_after_requeue_is_refused),
	    T(test_a_job_that_keeps_losing_its_lease_ends_in_error),
	    T(test_a_host_that_stops_its_jobs_never_fails_them),
	    T(test_a_job_whose_host_keeps_dying_under_it_ends_in_error),
	    T(test_an_infrastructure_error_is_retried_while_retries_last),
	    T(test_retry_requeues_a_finished_job_and_its_skipped_dependents),
	    T(test_a_retried_success_makes_its_queued_dependents_wait_again),
	    T(test_cancel_ends_queued_jobs_and_asks_running_ones_to_stop),
	    T(test_a_cancelled_job_whose_lease_expires_ends_cancelled),
	    T(test_steps_are_recorded_per_attempt),
	    T(test_log_offsets_run_across_attempts),
	    T(test_runs_are_listed_newest_first_with_filters),
	    T(test_watchers_hear_of_every_change_that_may_make_a_job_claimable),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
