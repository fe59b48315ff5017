/*
 * Inputs built to be slow or huge: each must end quickly with a result or
 * an error that says which limit it met, never a hang or an exhausted
 * machine.
 */
#include "helpers.h"

/*
 * A guard against work that grows without bound (minutes, not seconds),
 * not a speed test: speed is bench/'s. Sanitizer builds run several times
 * slower, and more so on a busy machine.
 */
#if defined(__SANITIZE_ADDRESS__)
#define QUICK_MS 30000
#else
#define QUICK_MS 5000
#endif

static char *errors_timed(struct buf *text, struct pipe_load_opts opts)
{
	int64_t t0 = clock_ms();
	char *got = errors_opts(buf_cstr(text), text->len, opts);
	int64_t ms = clock_ms() - t0;
	if (ms > QUICK_MS)
		print_error("took %lld ms\n", (long long)ms);
	assert_true(ms <= QUICK_MS);
	return got;
}

static void test_many_env_references_stay_linear(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "env:\n");
	for (int i = 0; i < 20000; i++)
		buf_appendf(&text, "  V%d: x\n", i);
	buf_appendf(&text, "jobs:\n  a:\n    image: x\n    steps: [{run: x}]\n    env:\n");
	for (int i = 0; i < 20000; i++)
		buf_appendf(&text, "      W%d: \"${{ env.V%d }}${{ env.Q%d }}\"\n", i, 19999 - i,
			    i);
	char *got = errors_timed(&text, (struct pipe_load_opts){0});
	assert_non_null(strstr(got, "unknown name 'env.Q0'"));
	free(got);
	buf_free(&text);
}

static void test_large_env_overlay_stays_linear(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "env:\n");
	for (int i = 0; i < 20000; i++)
		buf_appendf(&text, "  V%d: p\n", i);
	buf_appendf(&text, "jobs:\n  a:\n    image: x\n    steps: [{run: x}]\n"
			   "    strategy: {matrix: {n: [1, 2, 3]}}\n    env:\n");
	for (int i = 0; i < 20000; i++)
		buf_appendf(&text, "      %c%d: \"${{ matrix.n }}\"\n", i % 2 ? 'V' : 'W', i);
	/* Expanded in full (30,000 variables per job), then refused: no VM takes that many. */
	char *got = errors_timed(&text, (struct pipe_load_opts){0});
	assert_non_null(strstr(got, ":3: error: the environment of step 1 of job 'a (1)' has "
				    "30000 variables in 248 KiB, more than the 1000 variables in "
				    "32 KiB a step may have\n"));
	assert_null(strstr(got, "'a (2)'")); /* once per job, not per combination */
	free(got);
	buf_free(&text);
}

static void test_many_misspelt_needs_stay_fast(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n");
	for (int i = 0; i < 4000; i++)
		buf_appendf(&text, "  job%d: {image: x, steps: [{run: x}], needs: [jbo%d]}\n", i,
			    i);
	char *got = errors_timed(&text, (struct pipe_load_opts){0});
	/* Early ones get a suggestion; once the budget is spent, later ones do not. */
	assert_non_null(strstr(got,
			       "t.yml:2:47: error: job 'job0' needs 'jbo0', which is not a job "
			       "(did you mean 'job0'?)\n"));
	assert_non_null(strstr(got, "error: job 'job3999' needs 'jbo3999', which is not a job\n"));
	free(got);
	buf_free(&text);
}

static void test_intricate_excludes_are_refused_not_counted_forever(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n  t:\n    image: x\n    steps: [{run: x}]\n    strategy:\n"
			   "      matrix:\n");
	for (int k = 0; k < 40; k++)
		buf_appendf(&text, "        k%d: [a, b, c]\n", k);
	buf_appendf(&text, "        exclude:\n");
	/* Pseudo-random excludes, each fixing 12 of the 40 keys: they overlap everywhere. */
	uint32_t seed = 12345;
	for (int e = 0; e < 3000; e++) {
		seed = seed * 1103515245u + 12345u;
		int first = (int)((seed >> 16) % 40);
		buf_appendf(&text, "          - {");
		for (int j = 0; j < 12; j++) {
			seed = seed * 1103515245u + 12345u;
			buf_appendf(&text, "%sk%d: %c", j ? ", " : "", (first + 3 * j) % 40,
				    'a' + (int)((seed >> 16) % 3));
		}
		buf_appendf(&text, "}\n");
	}
	char *got = errors_timed(&text, (struct pipe_load_opts){0});
	assert_string_equal(got,
			    "t.yml:6:7: error: the matrix of job 't' is too complex to count: its "
			    "exclude entries interact too much; simplify them\n");
	free(got);
	buf_free(&text);
}

static void test_includes_times_combinations_is_bounded(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n  t:\n    image: x\n    steps: [{run: x}]\n    strategy:\n"
			   "      matrix:\n");
	buf_appendf(&text, "        a: [");
	for (int i = 0; i < 10000; i++)
		buf_appendf(&text, "%s%d", i ? ", " : "", i);
	buf_appendf(&text, "]\n        include:\n");
	for (int i = 0; i < 2001; i++)
		buf_appendf(&text, "          - {x%d: '1'}\n", i % 200);
	char *got = errors_timed(&text, (struct pipe_load_opts){0});
	assert_string_equal(got,
			    "t.yml:6:7: error: the matrix of job 't' is too complex to expand: its "
			    "include and exclude entries interact too much; simplify them\n");
	free(got);
	buf_free(&text);
}

static void test_expansion_past_memory_limit_is_refused(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n  big:\n    image: x\n    strategy: {matrix: {n: [");
	for (int i = 0; i < 600; i++)
		buf_appendf(&text, "%s%d", i ? ", " : "", i);
	buf_appendf(&text, "]}}\n    steps:\n      - run: \"${{ matrix.n }}");
	for (int i = 0; i < 1 << 19; i++)
		buf_appendf(&text, "x");
	buf_appendf(&text, "\"\n");
	char *got = errors_timed(&text, (struct pipe_load_opts){0});
	assert_string_equal(got,
			    "t.yml:2:3: error: job 'big' expands to more than 256 MiB of names, "
			    "env and scripts; make its matrix or its steps smaller\n");
	free(got);
	buf_free(&text);
}

static void test_many_duplicate_keys_stay_linear(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n  a:\n" JOB_BODY "    env:\n");
	for (int i = 0; i < 50000; i++)
		buf_appendf(&text, "      K%d: x\n      K%d: y\n", i, i);
	char *got = errors_timed(&text, (struct pipe_load_opts){0});
	assert_memory_equal(got,
			    "t.yml:8:7: error: duplicate key 'K0' (first at line 7, column 7)\n",
			    strlen("t.yml:8:7: error: duplicate key 'K0' (first at line 7, column "
				   "7)\n"));
	free(got);
	buf_free(&text);
}

static void test_many_aliases_to_a_bad_node_report_once(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "x-bad: &bad {image: x, steps: [{run: x, timeout: soon}]}\njobs:\n");
	for (int i = 0; i < 3000; i++)
		buf_appendf(&text, "  j%d: *bad\n", i);
	char *got = errors_timed(&text, (struct pipe_load_opts){0});
	/* One message per job (each names its job), all at the anchor, in job order. */
	assert_memory_equal(got,
			    "t.yml:1:50: error: timeout of step 1 of job 'j0' must be a duration",
			    strlen("t.yml:1:50: error: timeout of step 1 of job 'j0' must be a "
				   "duration"));
	free(got);
	buf_free(&text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_many_env_references_stay_linear),
	    cmocka_unit_test(test_large_env_overlay_stays_linear),
	    cmocka_unit_test(test_many_misspelt_needs_stay_fast),
	    cmocka_unit_test(test_intricate_excludes_are_refused_not_counted_forever),
	    cmocka_unit_test(test_includes_times_combinations_is_bounded),
	    cmocka_unit_test(test_expansion_past_memory_limit_is_refused),
	    cmocka_unit_test(test_many_duplicate_keys_stay_linear),
	    cmocka_unit_test(test_many_aliases_to_a_bad_node_report_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
