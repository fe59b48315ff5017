/*
 * `needs`: job ids, not matrix combinations; unknown names and cycles are
 * errors that name them; each need reaches the runner as the range of
 * expanded jobs it stands for.
 */
#include "helpers.h"

static void test_needs_unknown_job_suggests_nearest(void **state)
{
	/* The example of docs/pipeline.md "Errors", with the suggestion. */
	assert_errors("jobs:\n"
		      "  build:\n" JOB_BODY "  package:\n"
		      "    needs: [biuld]\n" JOB_BODY,
		      "t.yml:7:13: error: job 'package' needs 'biuld', which is not a job (did you "
		      "mean 'build'?)\n");
}

static void test_needs_itself(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    needs: a\n" JOB_BODY,
		      "t.yml:3:12: error: job 'a' needs itself\n");
}

static void test_cycle_of_two_is_named(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    needs: b\n" JOB_BODY "  b:\n"
		      "    needs: [a]\n" JOB_BODY,
		      "t.yml:3:12: error: needs form a cycle: a -> b -> a\n");
}

static void test_cycle_of_three_is_named_from_first_job(void **state)
{
	assert_errors("jobs:\n"
		      "  x:\n" JOB_BODY "  a:\n"
		      "    needs: [x, b]\n" JOB_BODY "  b:\n"
		      "    needs: [c]\n" JOB_BODY "  c:\n"
		      "    needs: [a]\n" JOB_BODY,
		      "t.yml:7:16: error: needs form a cycle: a -> b -> c -> a\n");
}

static void test_needs_must_name_strings(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    needs: [{b: 1}]\n" JOB_BODY,
		      "t.yml:3:13: error: needs of job 'a' must be a string, not a mapping\n");
}

static void test_needs_are_ranges_of_expanded_jobs(void **state)
{
	struct pipe_run *run =
	    load_ok("jobs:\n"
		    "  build:\n" JOB_BODY "    strategy: {matrix: {os: [a, b, c]}}\n"
		    "  lint:\n" JOB_BODY "  package:\n"
		    "    needs: [build, lint, build]\n" JOB_BODY);
	assert_int_equal(run->n_jobs, 5);
	const struct pipe_job *p = &run->jobs[4];
	assert_string_equal(p->name, "package");
	assert_int_equal(p->n_needs, 2);
	assert_string_equal(p->needs[0].job, "build");
	assert_int_equal(p->needs[0].first, 0);
	assert_int_equal(p->needs[0].count, 3);
	assert_string_equal(p->needs[1].job, "lint");
	assert_int_equal(p->needs[1].first, 3);
	assert_int_equal(p->needs[1].count, 1);
	assert_int_equal(run->jobs[0].n_needs, 0);
	assert_int_equal(run->groups[2].first, 4);
	assert_int_equal(pipe_run_find_job(run, "build (b)"), 1);
	assert_int_equal(pipe_run_find_job(run, "build"), -1);
	pipe_run_free(run);
}

static void test_needs_may_point_forward(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  deploy:\n"
				       "    needs: test\n" JOB_BODY "  test:\n" JOB_BODY);
	assert_int_equal(run->jobs[0].needs[0].first, 1);
	pipe_run_free(run);
}

static void test_long_chain_of_needs(void **state)
{
	/* Cycle search is iterative: a long chain must not exhaust the stack. */
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n");
	for (int i = 0; i < 5000; i++)
		buf_appendf(&text, "  j%d: {image: x, steps: [{run: x}], needs: [j%d]}\n", i,
			    (i + 1) % 5000);
	char *got = errors_opts(buf_cstr(&text), text.len, (struct pipe_load_opts){0});
	assert_memory_equal(got, "t.yml:2:45: error: needs form a cycle: j0 -> j1 -> j2 -> ",
			    strlen("t.yml:2:45: error: needs form a cycle: j0 -> j1 -> j2 -> "));
	assert_non_null(strstr(got, "j4999 -> j0\n"));
	free(got);
	buf_free(&text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_needs_unknown_job_suggests_nearest),
	    cmocka_unit_test(test_needs_itself),
	    cmocka_unit_test(test_cycle_of_two_is_named),
	    cmocka_unit_test(test_cycle_of_three_is_named_from_first_job),
	    cmocka_unit_test(test_needs_must_name_strings),
	    cmocka_unit_test(test_needs_are_ranges_of_expanded_jobs),
	    cmocka_unit_test(test_needs_may_point_forward),
	    cmocka_unit_test(test_long_chain_of_needs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
