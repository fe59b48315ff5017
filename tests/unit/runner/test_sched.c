/*
 * The scheduler of a run (runner/sched.c) with fake jobs: needs order,
 * skipping, fail-fast, max-parallel, the run's VM limit, retries of
 * infrastructure failures only, cancel, and kept VMs. No VM is started.
 *
 * A fake job's behaviour is its first step's `run`:
 *   "pass" | "fail" | "error"       ends so at once
 *   "sleep MS pass|fail|error"      after MS milliseconds (cancel cuts it short)
 *   "flaky K"                       an infrastructure error for K attempts, then passes
 *   "keep"                          fails and keeps its VM
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pipelines/pipelines.h"
#include "runner/runner.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_JOBS 32

struct fake {
	const struct pipe_run *run;
	pthread_mutex_t lock;
	int clock;	       /* events so far */
	int started[MAX_JOBS]; /* event number of the first start; 0: never */
	int ended[MAX_JOBS];   /* event number of the last end */
	int attempts[MAX_JOBS];
	int released[MAX_JOBS];
	int running, max_running;
	int group_running[8], group_max[8];
	int finished_calls[MAX_JOBS];
	struct runner_run *r; /* for cancel_after */
};

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static enum runner_result parse_result(const char *word)
{
	if (!strncmp(word, "pass", 4))
		return RUNNER_PASSED;
	if (!strncmp(word, "fail", 4))
		return RUNNER_FAILED;
	return RUNNER_ERROR;
}

static void fake_run(void *ctx, size_t job, int attempt, struct runner_cancel *cancel,
		     struct runner_job_result *res)
{
	struct fake *f = ctx;
	const struct pipe_job *j = &f->run->jobs[job];
	pthread_mutex_lock(&f->lock);
	if (!f->started[job])
		f->started[job] = ++f->clock;
	f->attempts[job] = attempt;
	f->running++;
	f->group_running[j->group]++;
	if (f->running > f->max_running)
		f->max_running = f->running;
	if (f->group_running[j->group] > f->group_max[j->group])
		f->group_max[j->group] = f->group_running[j->group];
	pthread_mutex_unlock(&f->lock);

	const char *how = j->steps[0].run;
	res->failed_step = -1;
	int ms, k;
	char word[16];
	if (sscanf(how, "sleep %d %15s", &ms, word) == 2) {
		res->result = parse_result(word);
		for (int t = 0; t < ms; t += 5) {
			if (runner_cancel_requested(cancel)) {
				res->result = RUNNER_CANCELLED;
				break;
			}
			sleep_ms(5);
		}
	} else if (sscanf(how, "flaky %d", &k) == 1) {
		res->result = attempt <= k ? RUNNER_ERROR : RUNNER_PASSED;
	} else if (!strncmp(how, "keep", 4)) {
		res->result = RUNNER_FAILED;
		res->kept = true;
	} else {
		res->result = parse_result(how);
	}
	if (res->result == RUNNER_ERROR)
		snprintf(res->error, sizeof(res->error), "fake infrastructure error");

	pthread_mutex_lock(&f->lock);
	f->ended[job] = ++f->clock;
	f->running--;
	f->group_running[j->group]--;
	pthread_mutex_unlock(&f->lock);
}

static void fake_release(void *ctx, size_t job, struct runner_cancel *cancel)
{
	struct fake *f = ctx;
	pthread_mutex_lock(&f->lock);
	f->released[job]++;
	pthread_mutex_unlock(&f->lock);
}

static void on_finished(void *ctx, size_t job, const struct runner_job_result *res)
{
	struct fake *f = ctx;
	f->finished_calls[job]++; /* called under the run's lock */
}

static struct pipe_run *load(const char *yaml)
{
	struct pipe_errors errors = {0};
	struct pipe_run *run = NULL;
	struct pipe_load_opts lo = {.file = "t.yml"};
	int rc = pipe_load(yaml, strlen(yaml), &lo, &run, &errors);
	if (rc) {
		struct buf out = {0};
		for (size_t i = 0; i < errors.len; i++)
			pipe_error_format(&errors, i, &out);
		print_error("%s", buf_cstr(&out));
		buf_free(&out);
	}
	assert_int_equal(rc, 0);
	assert_true(run->n_jobs <= MAX_JOBS);
	pipe_errors_free(&errors);
	return run;
}

/* Runs every job (or those in selected) of yaml with max_vms at once; returns the finished run. */
static struct runner_run *run_fake(struct fake *f, const char *yaml, int max_vms,
				   const bool *selected)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->run = load(yaml);
	static struct runner_job_ops ops;
	static struct runner_sink sink;
	ops = (struct runner_job_ops){.ctx = f, .run = fake_run, .release = fake_release};
	sink = (struct runner_sink){.ctx = f, .job_finished = on_finished};
	struct runner_run_opts opts = {
	    .run = f->run, .selected = selected, .max_vms = max_vms, .ops = &ops, .sink = &sink};
	struct runner_run *r;
	assert_int_equal(runner_run_new(&opts, &r, NULL), 0);
	f->r = r;
	runner_run_exec(r);
	return r;
}

static void done(struct fake *f, struct runner_run *r)
{
	runner_run_free(r);
	pipe_run_free((struct pipe_run *)f->run);
	pthread_mutex_destroy(&f->lock);
}

static enum runner_result result_of(struct runner_run *r, struct fake *f, const char *name)
{
	long i = pipe_run_find_job(f->run, name);
	assert_true(i >= 0);
	return runner_run_result(r, (size_t)i)->result;
}

static long job(struct fake *f, const char *name)
{
	long i = pipe_run_find_job(f->run, name);
	assert_true(i >= 0);
	return i;
}

static void test_needs_start_after_what_they_need_passed(void **state)
{
	struct fake f;
	struct runner_run *r =
	    run_fake(&f,
		     "jobs:\n"
		     "  c: {image: x, needs: [b], steps: [{run: pass}]}\n"
		     "  b: {image: x, needs: [a], steps: [{run: sleep 30 pass}]}\n"
		     "  a: {image: x, steps: [{run: sleep 30 pass}]}\n",
		     4, NULL);
	assert_true(f.started[job(&f, "b")] > f.ended[job(&f, "a")]);
	assert_true(f.started[job(&f, "c")] > f.ended[job(&f, "b")]);
	assert_int_equal(result_of(r, &f, "c"), RUNNER_PASSED);
	assert_int_equal(f.max_running, 1);
	done(&f, r);
}

static void test_a_failed_need_skips_its_dependents(void **state)
{
	struct fake f;
	struct runner_run *r = run_fake(&f,
					"jobs:\n"
					"  a: {image: x, steps: [{run: fail}]}\n"
					"  b: {image: x, needs: [a], steps: [{run: pass}]}\n"
					"  c: {image: x, needs: [b], steps: [{run: pass}]}\n"
					"  d: {image: x, steps: [{run: pass}]}\n",
					2, NULL);
	assert_int_equal(result_of(r, &f, "a"), RUNNER_FAILED);
	assert_int_equal(result_of(r, &f, "b"), RUNNER_SKIPPED);
	assert_int_equal(result_of(r, &f, "c"), RUNNER_SKIPPED);
	assert_int_equal(result_of(r, &f, "d"), RUNNER_PASSED);
	assert_int_equal(f.started[job(&f, "b")], 0);
	assert_non_null(strstr(runner_run_result(r, (size_t)job(&f, "b"))->how, "needs 'a'"));
	for (size_t i = 0; i < f.run->n_jobs; i++)
		assert_int_equal(f.finished_calls[i], 1);
	done(&f, r);
}

static void test_a_need_waits_for_every_matrix_job(void **state)
{
	struct fake f;
	struct runner_run *r =
	    run_fake(&f,
		     "jobs:\n"
		     "  build:\n"
		     "    image: x\n"
		     "    strategy: {matrix: {n: [\"10\", \"40\", \"20\"]}}\n"
		     "    steps: [{run: 'sleep ${{ matrix.n }} pass'}]\n"
		     "  pack: {image: x, needs: [build], steps: [{run: pass}]}\n",
		     3, NULL);
	long pack = job(&f, "pack");
	for (long i = 0; i < 3; i++)
		assert_true(f.started[pack] > f.ended[i]);
	assert_int_equal(result_of(r, &f, "pack"), RUNNER_PASSED);
	done(&f, r);
}

static void test_fail_fast_cancels_the_rest_of_the_matrix(void **state)
{
	struct fake f;
	/* max-parallel 2: the sleeper runs beside the failure, the third never starts. */
	struct runner_run *r =
	    run_fake(&f,
		     "jobs:\n"
		     "  m:\n"
		     "    image: x\n"
		     "    strategy: {matrix: {s: ['sleep 5000 pass', 'sleep 20 fail', pass]}, "
		     "max-parallel: 2}\n"
		     "    steps: [{run: '${{ matrix.s }}'}]\n"
		     "  other: {image: x, steps: [{run: sleep 50 pass}]}\n",
		     4, NULL);
	assert_int_equal(runner_run_result(r, 0)->result, RUNNER_CANCELLED);
	assert_int_equal(runner_run_result(r, 1)->result, RUNNER_FAILED);
	assert_int_equal(runner_run_result(r, 2)->result, RUNNER_CANCELLED);
	assert_int_equal(f.started[2], 0);
	assert_non_null(strstr(runner_run_result(r, 2)->how, "fail-fast"));
	assert_int_equal(result_of(r, &f, "other"), RUNNER_PASSED);
	done(&f, r);
}

static void test_without_fail_fast_every_job_runs(void **state)
{
	struct fake f;
	struct runner_run *r = run_fake(
	    &f,
	    "jobs:\n"
	    "  m:\n"
	    "    image: x\n"
	    "    strategy: {matrix: {s: ['sleep 60 pass', fail, pass]}, fail-fast: false}\n"
	    "    steps: [{run: '${{ matrix.s }}'}]\n",
	    1, NULL);
	assert_int_equal(runner_run_result(r, 0)->result, RUNNER_PASSED);
	assert_int_equal(runner_run_result(r, 1)->result, RUNNER_FAILED);
	assert_int_equal(runner_run_result(r, 2)->result, RUNNER_PASSED);
	done(&f, r);
}

static void test_max_parallel_limits_the_matrix_only(void **state)
{
	struct fake f;
	struct runner_run *r =
	    run_fake(&f,
		     "jobs:\n"
		     "  m:\n"
		     "    image: x\n"
		     "    strategy: {matrix: {n: [a, b, c, d, e]}, max-parallel: 2}\n"
		     "    steps: [{run: sleep 40 pass}]\n"
		     "  o:\n"
		     "    image: x\n"
		     "    strategy: {matrix: {n: [a, b, c]}}\n"
		     "    steps: [{run: sleep 40 pass}]\n",
		     8, NULL);
	assert_int_equal(f.group_max[0], 2);
	assert_int_equal(f.group_max[1], 3);
	for (size_t i = 0; i < f.run->n_jobs; i++)
		assert_int_equal(runner_run_result(r, i)->result, RUNNER_PASSED);
	done(&f, r);
}

static void test_max_vms_limits_the_whole_run(void **state)
{
	struct fake f;
	struct runner_run *r = run_fake(&f,
					"jobs:\n"
					"  m:\n"
					"    image: x\n"
					"    strategy: {matrix: {n: [a, b, c, d, e, f]}}\n"
					"    steps: [{run: sleep 20 pass}]\n",
					2, NULL);
	assert_int_equal(f.max_running, 2);
	done(&f, r);
}

static void test_infrastructure_errors_are_retried(void **state)
{
	struct fake f;
	struct runner_run *r = run_fake(&f,
					"jobs:\n"
					"  flaky: {image: x, retries: 2, steps: [{run: flaky 2}]}\n"
					"  broken: {image: x, retries: 1, steps: [{run: error}]}\n"
					"  never: {image: x, steps: [{run: error}]}\n",
					4, NULL);
	assert_int_equal(result_of(r, &f, "flaky"), RUNNER_PASSED);
	assert_int_equal(runner_run_result(r, (size_t)job(&f, "flaky"))->attempts, 3);
	assert_int_equal(result_of(r, &f, "broken"), RUNNER_ERROR);
	assert_int_equal(runner_run_result(r, (size_t)job(&f, "broken"))->attempts, 2);
	assert_int_equal(runner_run_result(r, (size_t)job(&f, "never"))->attempts, 1);
	done(&f, r);
}

static void test_a_failing_step_is_never_retried(void **state)
{
	struct fake f;
	struct runner_run *r =
	    run_fake(&f, "jobs:\n  a: {image: x, retries: 3, steps: [{run: fail}]}\n", 1, NULL);
	assert_int_equal(result_of(r, &f, "a"), RUNNER_FAILED);
	assert_int_equal(f.attempts[0], 1);
	assert_int_equal(runner_run_result(r, 0)->attempts, 1);
	done(&f, r);
}

static void *cancel_soon(void *arg)
{
	sleep_ms(100);
	runner_run_cancel(arg);
	return NULL;
}

static void test_cancel_stops_running_jobs_and_never_starts_the_rest(void **state)
{
	struct fake f;
	memset(&f, 0, sizeof(f));
	pthread_mutex_init(&f.lock, NULL);
	f.run = load("jobs:\n"
		     "  a: {image: x, steps: [{run: sleep 10000 pass}]}\n"
		     "  b: {image: x, steps: [{run: sleep 10000 pass}]}\n"
		     "  c: {image: x, needs: [a], steps: [{run: pass}]}\n"
		     "  d: {image: x, steps: [{run: pass}]}\n");
	struct runner_job_ops ops = {.ctx = &f, .run = fake_run, .release = fake_release};
	struct runner_run_opts opts = {.run = f.run, .max_vms = 2, .ops = &ops};
	struct runner_run *r;
	assert_int_equal(runner_run_new(&opts, &r, NULL), 0);
	pthread_t t;
	pthread_create(&t, NULL, cancel_soon, r);
	int64_t t0 = clock_ms();
	runner_run_exec(r);
	pthread_join(t, NULL);
	assert_true(clock_ms() - t0 < 5000);
	assert_int_equal(result_of(r, &f, "a"), RUNNER_CANCELLED);
	assert_int_equal(result_of(r, &f, "b"), RUNNER_CANCELLED);
	assert_int_equal(result_of(r, &f, "c"), RUNNER_CANCELLED);
	assert_int_equal(result_of(r, &f, "d"), RUNNER_CANCELLED);
	assert_int_equal(f.started[job(&f, "d")], 0);
	done(&f, r);
}

static void test_unselected_jobs_do_not_run_nor_block(void **state)
{
	bool selected[3] = {false, true, true};
	struct fake f;
	struct runner_run *r = run_fake(&f,
					"jobs:\n"
					"  a: {image: x, steps: [{run: fail}]}\n"
					"  b: {image: x, needs: [a], steps: [{run: pass}]}\n"
					"  c: {image: x, steps: [{run: pass}]}\n",
					2, selected);
	assert_int_equal(f.started[0], 0);
	assert_int_equal(result_of(r, &f, "a"), RUNNER_PENDING);
	assert_int_equal(result_of(r, &f, "b"), RUNNER_PASSED);
	done(&f, r);
}

static void test_a_kept_job_is_released_only_by_the_run(void **state)
{
	struct fake f;
	struct runner_run *r = run_fake(&f,
					"jobs:\n"
					"  a: {image: x, steps: [{run: keep}]}\n"
					"  b: {image: x, steps: [{run: pass}]}\n",
					1, NULL);
	assert_int_equal(result_of(r, &f, "a"), RUNNER_FAILED);
	assert_true(runner_run_result(r, 0)->kept);
	/* b ran although a's VM is still held: kept VMs do not count against max_vms. */
	assert_int_equal(result_of(r, &f, "b"), RUNNER_PASSED);
	assert_int_equal(f.released[0], 0);
	runner_run_release(r);
	assert_int_equal(f.released[0], 1);
	assert_int_equal(f.released[1], 0);
	done(&f, r);
}

/* MemAvailable of /proc/meminfo in MiB, as runner_default_max_vms reads it. */
static long long available_mb(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	assert_non_null(f);
	char line[256];
	long long kb = -1;
	while (fgets(line, sizeof(line), f) && sscanf(line, "MemAvailable: %lld kB", &kb) != 1)
		;
	fclose(f);
	assert_true(kb > 0);
	return kb / 1024;
}

static void test_default_max_vms_is_a_vm_per_cpu_when_memory_allows(void **state)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	/* 1 MiB guests: each costs QEMU's overhead (192 MiB) more. */
	long long by_memory = available_mb() / (1 + 192);
	int n = runner_default_max_vms(1);
	if (by_memory > cpus + cpus / 4)
		assert_int_equal(n, cpus < 1024 ? cpus : 1024);
	else /* memory binds here; it moves a little between two reads */
		assert_true(n >= by_memory - 1 && n <= by_memory + 1);
}

static void test_default_max_vms_is_bounded_by_available_memory(void **state)
{
	/*
	 * Guests of two thirds of the available memory: one fits, however
	 * many CPUs there are (and however the available memory moves by a
	 * few percent between two reads).
	 */
	assert_int_equal(runner_default_max_vms(available_mb() * 2 / 3), 1);
}

static void test_one_vm_even_when_none_fits(void **state)
{
	assert_int_equal(runner_default_max_vms(INT64_C(1) << 40), 1);
}

static void test_job_dirname_is_one_safe_component(void **state)
{
	char out[64];
	runner_job_dirname("build (busybox-x86_64, gcc)", out, sizeof(out));
	assert_string_equal(out, "build-busybox-x86_64-gcc");
	runner_job_dirname("../../etc", out, sizeof(out));
	assert_string_equal(out, "etc");
	runner_job_dirname("()", out, sizeof(out));
	assert_string_equal(out, "job");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_needs_start_after_what_they_need_passed),
	    cmocka_unit_test(test_a_failed_need_skips_its_dependents),
	    cmocka_unit_test(test_a_need_waits_for_every_matrix_job),
	    cmocka_unit_test(test_fail_fast_cancels_the_rest_of_the_matrix),
	    cmocka_unit_test(test_without_fail_fast_every_job_runs),
	    cmocka_unit_test(test_max_parallel_limits_the_matrix_only),
	    cmocka_unit_test(test_max_vms_limits_the_whole_run),
	    cmocka_unit_test(test_infrastructure_errors_are_retried),
	    cmocka_unit_test(test_a_failing_step_is_never_retried),
	    cmocka_unit_test(test_cancel_stops_running_jobs_and_never_starts_the_rest),
	    cmocka_unit_test(test_unselected_jobs_do_not_run_nor_block),
	    cmocka_unit_test(test_a_kept_job_is_released_only_by_the_run),
	    cmocka_unit_test(test_default_max_vms_is_a_vm_per_cpu_when_memory_allows),
	    cmocka_unit_test(test_default_max_vms_is_bounded_by_available_memory),
	    cmocka_unit_test(test_one_vm_even_when_none_fits),
	    cmocka_unit_test(test_job_dirname_is_one_safe_component),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
