/*
 * The run the runner gets, from the files in tests/fixtures/pipelines:
 * the example of docs/pipeline.md field by field, a file built on anchors, and
 * a broken file with every error in order. Also what pipe_load_file says
 * about files it cannot read.
 */
#include "helpers.h"

#define FIXTURES "tests/fixtures/pipelines/"

static struct pipe_run *load_fixture(const char *name, struct pipe_errors *errors, int want)
{
	char path[256];
	struct vmci_err err = {0};
	struct pipe_run *run = NULL;
	snprintf(path, sizeof(path), FIXTURES "%s", name);
	int rc = pipe_load_file(path, &(struct pipe_load_opts){.default_name = "repo"}, &run,
				errors, &err);
	if (rc != want)
		print_error("%s: %d: %s\n", path, rc, err.msg);
	assert_int_equal(rc, want);
	return run;
}

static void test_pipeline_md_example_expands_fully(void **state)
{
	struct pipe_errors errors = {0};
	struct pipe_run *run = load_fixture("example.yml", &errors, 0);
	assert_string_equal(run->name, "libfoo");
	assert_true(run->on_push);
	assert_int_equal(run->n_push_branches, 2);
	assert_string_equal(run->push_branches[0], "main");
	assert_int_equal(run->n_schedules, 1);
	assert_string_equal(run->schedules[0], "0 3 * * *");
	assert_int_equal(run->n_env, 1);
	assert_string_equal(run->env[0].value, "-O2");
	assert_int_equal(run->n_groups, 2);
	assert_int_equal(run->n_jobs, 6);

	const struct pipe_job *b = &run->jobs[2];
	assert_string_equal(b->name, "build (debian-12, gcc, yes)");
	assert_string_equal(b->id, "build");
	assert_string_equal(b->image, "debian-12");
	assert_int_equal(b->n_matrix, 3);
	assert_string_equal(var(b->matrix, b->n_matrix, "coverage"), "yes");
	assert_string_equal(var(b->env, b->n_env, "CC"), "gcc");
	assert_string_equal(var(b->env, b->n_env, "CFLAGS"), "-O2");
	assert_int_equal(b->timeout_ms, 20 * 60 * 1000);
	assert_int_equal(b->retries, 1);
	assert_int_equal(b->cpus, 2);
	assert_int_equal(b->memory_mb, 1024);
	assert_false(b->fail_fast);
	assert_int_equal(b->max_parallel, 4);
	assert_int_equal(b->n_artifacts, 2);
	assert_string_equal(b->artifacts[1], "test-results/**/*.xml");
	assert_int_equal(b->n_steps, 2);
	assert_string_equal(b->steps[0].name, "configure");
	assert_string_equal(b->steps[0].run, "./configure");
	assert_string_equal(b->steps[1].name, "make -j2");
	assert_string_equal(b->steps[1].run, "make -j2\nmake check\n");
	assert_int_equal(b->steps[1].timeout_ms, 10 * 60 * 1000);
	assert_false(b->steps[1].continue_on_error);
	assert_int_equal(b->n_needs, 0);
	assert_int_equal(b->line, 13);
	assert_int_equal(b->col, 3);

	const struct pipe_job *p = &run->jobs[5];
	assert_string_equal(p->name, "package");
	assert_int_equal(p->n_matrix, 0);
	assert_int_equal(p->n_needs, 1);
	assert_int_equal(p->needs[0].first, 0);
	assert_int_equal(p->needs[0].count, 5);
	assert_true(p->fail_fast);
	pipe_run_free(run);
	pipe_errors_free(&errors);
}

static void test_anchored_file_expands(void **state)
{
	struct pipe_errors errors = {0};
	struct pipe_run *run = load_fixture("anchors.yml", &errors, 0);
	assert_string_equal(run->name, "repo");
	assert_int_equal(run->n_jobs, 4);
	assert_string_equal(run->jobs[2].image, "busybox-aarch64");
	assert_int_equal(run->jobs[2].retries, 2);
	assert_int_equal(run->jobs[1].memory_mb, 2048);
	assert_string_equal(var(run->jobs[1].env, run->jobs[1].n_env, "CC"), "clang");
	assert_string_equal(run->jobs[3].steps[0].run, "make dist VERSION=${{ vmci.ref }}\n");
	assert_int_equal(run->jobs[3].n_needs, 3);
	pipe_run_free(run);
	pipe_errors_free(&errors);
}

static void test_invalid_file_reports_every_error_in_order(void **state)
{
	struct pipe_errors errors = {0};
	load_fixture("invalid.yml", &errors, -EINVAL);
	char *got = format_errors(&errors);
	assert_string_equal(
	    got, FIXTURES
	    "invalid.yml:4:5: error: unknown key 'branch' in on.push (did you mean "
	    "'branches'?)\n" FIXTURES
	    "invalid.yml:6:13: error: invalid cron expression '0 25 * * *': hour 25 is "
	    "not in 0-23\n" FIXTURES
	    "invalid.yml:8:3: error: job 'build' has no 'steps': list at least one step "
	    "with 'run'\n" FIXTURES
	    "invalid.yml:14:15: error: exclude of job 'build' names 'arch', which is not a "
	    "matrix key\n" FIXTURES
	    "invalid.yml:15:5: error: unknown key 'stpes' in job 'build' (did you mean "
	    "'steps'?)\n" FIXTURES
	    "invalid.yml:17:14: error: timeout of job 'build' must be a duration such as "
	    "90s, 20m or 1h30m, not '20'\n" FIXTURES
	    "invalid.yml:19:13: error: job 'package' needs 'biuld', which is not a job "
	    "(did you mean 'build'?)\n" FIXTURES
	    "invalid.yml:21:12: error: steps of job 'package' must be a list of steps, not "
	    "a string\n");
	free(got);
	pipe_errors_free(&errors);
}

static void test_missing_file_says_so(void **state)
{
	struct pipe_errors errors = {0};
	struct vmci_err err = {0};
	struct pipe_run *run = NULL;
	assert_int_equal(pipe_load_file("no/such/.vmci.yml", NULL, &run, &errors, &err), -ENOENT);
	assert_null(run);
	assert_string_equal(err.msg,
			    "no pipeline file at no/such/.vmci.yml (write one, or give its "
			    "path)");
	assert_int_equal(errors.len, 0);
	pipe_errors_free(&errors);
}

static void test_directory_is_not_a_file(void **state)
{
	struct pipe_errors errors = {0};
	struct vmci_err err = {0};
	struct pipe_run *run = NULL;
	assert_true(pipe_load_file(FIXTURES, NULL, &run, &errors, &err) < 0);
	assert_null(run);
	assert_non_null(strstr(err.msg, FIXTURES));
	pipe_errors_free(&errors);
}

static void test_run_name_defaults(void **state)
{
	struct pipe_run *run = load_ok_opts("jobs:\n  a:\n" JOB_BODY,
					    (struct pipe_load_opts){.default_name = "libfoo"});
	assert_string_equal(run->name, "libfoo");
	pipe_run_free(run);
	run = load_ok("jobs:\n  a:\n" JOB_BODY);
	assert_string_equal(run->name, "pipeline");
	pipe_run_free(run);
}

static void test_error_file_name_defaults(void **state)
{
	static const char yaml[] = "jobs: 1\n";
	struct pipe_errors errors = {0};
	struct pipe_run *run = NULL;
	assert_int_equal(pipe_load(yaml, strlen(yaml), NULL, &run, &errors), -EINVAL);
	char *got = format_errors(&errors);
	assert_string_equal(got,
			    ".vmci.yml:1:7: error: 'jobs' must be a mapping of job ids to jobs, "
			    "not a number\n");
	free(got);
	pipe_errors_free(&errors);
	pipe_errors_free(&errors); /* safe twice */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pipeline_md_example_expands_fully),
	    cmocka_unit_test(test_anchored_file_expands),
	    cmocka_unit_test(test_invalid_file_reports_every_error_in_order),
	    cmocka_unit_test(test_missing_file_says_so),
	    cmocka_unit_test(test_directory_is_not_a_file),
	    cmocka_unit_test(test_run_name_defaults),
	    cmocka_unit_test(test_error_file_name_defaults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
