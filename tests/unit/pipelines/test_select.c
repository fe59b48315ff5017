/*
 * pipelines/select.c: which jobs a run runs, by name and matrix value,
 * with the jobs they need.
 */
#include "helpers.h"

static const char pipeline[] = "jobs:\n"
			       "  build:\n"
			       "    image: ${{ matrix.os }}\n"
			       "    strategy:\n"
			       "      matrix:\n"
			       "        os: [debian-12, busybox-x86_64]\n"
			       "    steps: [{run: make}]\n"
			       "  test:\n"
			       "    image: ${{ matrix.os }}\n"
			       "    needs: [build]\n"
			       "    strategy:\n"
			       "      matrix:\n"
			       "        os: [debian-12, busybox-x86_64]\n"
			       "    steps: [{run: make check}]\n"
			       "  lint:\n"
			       "    image: debian-12\n"
			       "    steps: [{run: make lint}]\n";

struct chosen {
	struct pipe_run *run;
	bool selected[16];
	struct vmci_err err;
	int rc;
};

static struct chosen choose(const char *const *names, size_t n_names, const char *const *matrix,
			    size_t n_matrix)
{
	struct chosen c = {.run = load_ok(pipeline)};
	assert_true(c.run->n_jobs <= 16);
	struct pipe_selection sel = {names, n_names, matrix, n_matrix};
	memset(c.selected, 1, sizeof(c.selected));
	c.rc = pipe_select(c.run, &sel, c.selected, &c.err);
	return c;
}

/* The names of the chosen jobs, ", "-separated. */
static char *names_of(const struct chosen *c)
{
	struct buf b = {0};
	for (size_t i = 0; i < c->run->n_jobs; i++)
		if (c->selected[i])
			buf_appendf(&b, "%s%s", b.len ? ", " : "", c->run->jobs[i].name);
	char *s = strdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

static void expect(const char *const *names, size_t n_names, const char *const *matrix,
		   size_t n_matrix, const char *want)
{
	struct chosen c = choose(names, n_names, matrix, n_matrix);
	if (c.rc)
		fail_msg("pipe_select: %s", c.err.msg);
	char *got = names_of(&c);
	assert_string_equal(got, want);
	free(got);
	pipe_run_free(c.run);
}

static void expect_error(const char *const *names, size_t n_names, const char *const *matrix,
			 size_t n_matrix, const char *message)
{
	struct chosen c = choose(names, n_names, matrix, n_matrix);
	assert_int_equal(c.rc, -EINVAL);
	assert_string_equal(c.err.msg, message);
	for (size_t i = 0; i < c.run->n_jobs; i++)
		assert_false(c.selected[i]);
	pipe_run_free(c.run);
}

static void test_no_names_no_filters_selects_every_job(void **state)
{
	expect(NULL, 0, NULL, 0,
	       "build (debian-12), build (busybox-x86_64), test (debian-12), "
	       "test (busybox-x86_64), lint");
}

static void test_a_job_id_brings_every_combination_and_its_needs(void **state)
{
	const char *names[] = {"test"};
	expect(names, 1, NULL, 0,
	       "build (debian-12), build (busybox-x86_64), test (debian-12), "
	       "test (busybox-x86_64)");
}

static void test_one_combination_by_name_brings_all_it_needs(void **state)
{
	/* needs: [build] waits for every build combination, so all of them come. */
	const char *names[] = {"test (debian-12)"};
	expect(names, 1, NULL, 0, "build (debian-12), build (busybox-x86_64), test (debian-12)");
}

static void test_a_job_without_needs_comes_alone(void **state)
{
	const char *names[] = {"lint"};
	expect(names, 1, NULL, 0, "lint");
}

static void test_matrix_filter_keeps_jobs_without_that_key(void **state)
{
	const char *matrix[] = {"os=busybox-x86_64"};
	expect(NULL, 0, matrix, 1, "build (busybox-x86_64), test (busybox-x86_64), lint");
}

static void test_matrix_filter_also_filters_needs(void **state)
{
	const char *names[] = {"test"};
	const char *matrix[] = {"os=debian-12"};
	expect(names, 1, matrix, 1, "build (debian-12), test (debian-12)");
}

static void test_repeated_key_means_any_of_its_values(void **state)
{
	const char *matrix[] = {"os=debian-12", "os=busybox-x86_64"};
	expect(NULL, 0, matrix, 2,
	       "build (debian-12), build (busybox-x86_64), test (debian-12), "
	       "test (busybox-x86_64), lint");
}

static void test_unknown_job_is_an_error_listing_the_jobs(void **state)
{
	const char *names[] = {"deploy"};
	expect_error(names, 1, NULL, 0,
		     "no job 'deploy' in the pipeline (jobs: build, test, lint)");
}

static void test_unknown_matrix_key_is_an_error(void **state)
{
	const char *matrix[] = {"arch=arm64"};
	expect_error(NULL, 0, matrix, 1, "no job has a matrix key 'arch' (arch=arm64)");
}

static void test_filter_without_equals_is_an_error(void **state)
{
	const char *matrix[] = {"debian-12"};
	expect_error(NULL, 0, matrix, 1,
		     "a matrix filter is KEY=VALUE, e.g. os=debian-12, not 'debian-12'");
}

static void test_name_the_filters_rule_out_is_an_error(void **state)
{
	const char *names[] = {"test (debian-12)"};
	const char *matrix[] = {"os=busybox-x86_64"};
	expect_error(names, 1, matrix, 1,
		     "no combination of 'test (debian-12)' matches the matrix filters");
}

static void test_filter_that_matches_nothing_is_an_error(void **state)
{
	const char *matrix[] = {"os=debian-13"};
	/* lint has no os and passes, so this still chooses lint... */
	expect(NULL, 0, matrix, 1, "lint");
	/* ...but a run whose every job has the key chooses nothing, and says so. */
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n"
				       "    image: ${{ matrix.os }}\n"
				       "    strategy: {matrix: {os: [debian-12]}}\n"
				       "    steps: [{run: 'true'}]\n");
	bool selected[1] = {true};
	struct vmci_err err = {0};
	struct pipe_selection sel = {.matrix = matrix, .n_matrix = 1};
	assert_int_equal(pipe_select(run, &sel, selected, &err), -EINVAL);
	assert_string_equal(err.msg, "no job matches the matrix filters");
	assert_false(selected[0]);
	pipe_run_free(run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_names_no_filters_selects_every_job),
	    cmocka_unit_test(test_a_job_id_brings_every_combination_and_its_needs),
	    cmocka_unit_test(test_one_combination_by_name_brings_all_it_needs),
	    cmocka_unit_test(test_a_job_without_needs_comes_alone),
	    cmocka_unit_test(test_matrix_filter_keeps_jobs_without_that_key),
	    cmocka_unit_test(test_matrix_filter_also_filters_needs),
	    cmocka_unit_test(test_repeated_key_means_any_of_its_values),
	    cmocka_unit_test(test_unknown_job_is_an_error_listing_the_jobs),
	    cmocka_unit_test(test_unknown_matrix_key_is_an_error),
	    cmocka_unit_test(test_filter_without_equals_is_an_error),
	    cmocka_unit_test(test_name_the_filters_rule_out_is_an_error),
	    cmocka_unit_test(test_filter_that_matches_nothing_is_an_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
