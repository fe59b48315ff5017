/*
 * Triggers (runner/service/trigger.c) with a real git repository and a
 * real store: the commit's pipeline is stored as a run with every job,
 * its needs, timeouts and retries; a ref without a pipeline file or with
 * an invalid one stores nothing. Also the requeue of a restarted host's
 * jobs (store_requeue_host). Skipped without git.
 */
#include "store_helpers.h"

#include "runner/service.h"

#include <errno.h>
#include <unistd.h>

static char src[PATH_MAX], gitroot[PATH_MAX];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
	char cmd[4096], full[4600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd %s && (%s) >/dev/null 2>&1", src, cmd);
	assert_int_equal(system(full), 0);
}

static int setup(void **state)
{
	if (system("git --version >/dev/null 2>&1") != 0)
		return 0;
	fx_setup(state);
	struct fx *f = *state;
	snprintf(src, sizeof(src), "%s/src", f->dir);
	snprintf(gitroot, sizeof(gitroot), "%s/git", f->dir);
	char cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p %s && cd %s && git init -q -b main . && git config "
		 "user.email t@example.org && git config user.name t",
		 src, src);
	return system(cmd) ? -1 : 0;
}

static int teardown(void **state)
{
	return *state ? fx_teardown(state) : 0;
}

static int trigger_as(struct fx *f, const char *kind, const char *ref,
		      struct service_triggered *made, struct vmci_err *err)
{
	struct service_repo repo = {.name = "acme/widget", .url = src};
	struct service_dirs dirs = {.git = gitroot};
	return service_trigger(f->s, &dirs, &repo, ref, NULL, kind, made, err);
}

static int trigger(struct fx *f, const char *ref, int64_t *run_id, struct vmci_err *err)
{
	struct service_triggered made;
	int rc = trigger_as(f, "api", ref, &made, err);
	*run_id = made.run_id;
	return rc;
}

static size_t runs_stored(struct fx *f)
{
	struct store_run *runs = NULL;
	size_t n = 0;
	struct vmci_err err = {0};
	assert_int_equal(store_runs_list(f->s, &(struct store_run_filter){0}, &runs, &n, &err), 0);
	store_runs_free(runs, n);
	return n;
}

static void test_a_commits_pipeline_is_stored_with_every_job(void **state)
{
	struct fx *f = *state;
	if (!f)
		skip();
	sh("printf 'jobs:\\n"
	   "  build:\\n"
	   "    image: ${{ matrix.os }}\\n"
	   "    strategy: { matrix: { os: [busybox-x86_64, debian-12] } }\\n"
	   "    timeout: 90s\\n"
	   "    retries: 2\\n"
	   "    steps: [{run: make}]\\n"
	   "  test:\\n"
	   "    needs: [build]\\n"
	   "    image: busybox-x86_64\\n"
	   "    steps: [{run: make check}]\\n' >.vmci.yml && git add -A && git commit -qm p");
	int64_t id = 0;
	struct vmci_err err = {0};
	assert_int_equal(trigger(f, "refs/heads/main", &id, &err), 0);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(f->s, id, &run, &err), 0);
	assert_string_equal(run->repo, "acme/widget");
	assert_string_equal(run->trigger, "api");
	assert_int_equal(strlen(run->sha), 40);
	assert_int_equal(run->n_jobs, 3);
	assert_string_equal(run->jobs[0].name, "build (busybox-x86_64)");
	assert_string_equal(run->jobs[1].image, "debian-12");
	assert_string_equal(run->jobs[0].matrix_json, "{\"os\":\"busybox-x86_64\"}");
	assert_int_equal(run->jobs[0].timeout_s, 90);
	assert_int_equal(run->jobs[0].retries, 2);
	assert_string_equal(run->jobs[2].name, "test");
	assert_int_equal(run->jobs[2].n_needs, 2);
	assert_int_equal(run->jobs[2].needs[0], run->jobs[0].id);
	assert_int_equal(run->jobs[2].needs[1], run->jobs[1].id);
	assert_int_equal(run->jobs[2].status, STORE_QUEUED);
	store_run_free(run);
}

static void test_no_pipeline_or_an_invalid_one_stores_nothing(void **state)
{
	struct fx *f = *state;
	if (!f)
		skip();
	sh("echo hi >readme && git add -A && git commit -qm none");
	int64_t id = 0;
	struct vmci_err err = {0};
	assert_int_equal(trigger(f, "main", &id, &err), -ENOENT);
	assert_non_null(strstr(err.msg, ".vmci.yml"));
	sh("printf 'jobs:\\n  build:\\n    imag: x\\n' >.vmci.yml && git add -A && git commit -qm "
	   "bad");
	assert_int_equal(trigger(f, "main", &id, &err), -EINVAL);
	assert_non_null(strstr(err.msg, ".vmci.yml:3:5: error:"));
	assert_int_equal(trigger(f, "refs/heads/nope", &id, &err), -ENOENT);
	struct store_run *runs = NULL;
	size_t n = 9;
	assert_int_equal(store_runs_list(f->s, &(struct store_run_filter){0}, &runs, &n, &err), 0);
	assert_int_equal(n, 0);
	store_runs_free(runs, n);
}

static void test_a_push_to_a_branch_on_does_not_select_stores_no_run(void **state)
{
	struct fx *f = *state;
	if (!f)
		skip();
	sh("printf 'on: {push: {branches: [main, \"release/*\"]}}\\n"
	   "jobs: {a: {image: busybox-x86_64, steps: [{run: x}]}}\\n' >.vmci.yml && "
	   "git add -A && git commit -qm p && git branch feature && git branch release/1.0");
	struct service_triggered made;
	struct vmci_err err = {0};
	assert_int_equal(trigger_as(f, "push", "refs/heads/feature", &made, &err), 0);
	assert_int_equal(made.run_id, 0);
	assert_string_equal(made.reason,
			    "refs/heads/feature is not in on.push.branches (main, release/*)");
	assert_int_equal(runs_stored(f), 0);
	assert_int_equal(trigger_as(f, "push", "refs/heads/release/1.0", &made, &err), 0);
	assert_true(made.run_id > 0);
	assert_string_equal(made.reason, "");
	/* A run asked for by name is made whatever the pipeline's 'on' says. */
	assert_int_equal(trigger_as(f, "api", "refs/heads/feature", &made, &err), 0);
	assert_true(made.run_id > 0);
	assert_int_equal(runs_stored(f), 2);
}

static void test_jobs_are_stored_with_the_run_id_expanded_as_workers_expand_it(void **state)
{
	struct fx *f = *state;
	if (!f)
		skip();
	sh("printf 'jobs:\\n"
	   "  a:\\n"
	   "    image: img-${{ vmci.run_id }}\\n"
	   "    steps:\\n"
	   "      - run: echo ${{ vmci.run_id }}\\n' >.vmci.yml && "
	   "git add -A && git commit -qm p");
	int64_t id = 0;
	struct vmci_err err = {0};
	if (trigger(f, "refs/heads/main", &id, &err))
		fail_msg("%s", err.msg);
	/* An earlier run that was declined must not shift the ids the jobs saw. */
	int64_t id2 = 0;
	assert_int_equal(trigger(f, "refs/heads/main", &id2, &err), 0);
	assert_true(id2 > id);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(f->s, id2, &run, &err), 0);
	char want[64];
	snprintf(want, sizeof(want), "img-%lld", (long long)id2);
	assert_string_equal(run->jobs[0].image, want);
	store_run_free(run);
}

static void test_a_restarted_hosts_jobs_are_requeued_as_new_attempts(void **state)
{
	struct fx *f = *state;
	if (!f)
		skip();
	run_of(f->s, "a b");
	struct vmci_err err = {0};
	struct store_job *a = NULL, *b = NULL;
	assert_int_equal(store_claim(f->s, "h1", 60, &a, &err), 1);
	assert_int_equal(store_claim(f->s, "h2", 60, &b, &err), 1);
	assert_int_equal(store_log_append(f->s, a->id, 1, "kept\n", 5, &err), 5);
	/* The leases are still valid: only h1's own job comes back. */
	assert_int_equal(store_requeue_host(f->s, "h1", STORE_REQUEUE_RESTARTED, &err), 1);
	struct store_job *got = NULL;
	assert_int_equal(store_job_get(f->s, a->id, &got, &err), 0);
	assert_int_equal(got->status, STORE_QUEUED);
	assert_int_equal(got->n_attempts, 1);
	assert_string_equal(got->attempts[0].reason, "host restarted");
	assert_int_equal(got->log_len, 5);
	store_job_free(got);
	assert_int_equal(store_job_get(f->s, b->id, &got, &err), 0);
	assert_int_equal(got->status, STORE_RUNNING);
	store_job_free(got);
	struct store_job *again = NULL;
	assert_int_equal(store_claim(f->s, "h1", 60, &again, &err), 1);
	assert_int_equal(again->id, a->id);
	assert_int_equal(again->attempt, 2);
	store_job_free(again);
	store_job_free(a);
	store_job_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_a_commits_pipeline_is_stored_with_every_job, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_a_push_to_a_branch_on_does_not_select_stores_no_run, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_jobs_are_stored_with_the_run_id_expanded_as_workers_expand_it, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_no_pipeline_or_an_invalid_one_stores_nothing,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_a_restarted_hosts_jobs_are_requeued_as_new_attempts, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
