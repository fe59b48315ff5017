/*
 * Matrix semantics, pinned against the examples of GitHub Actions' "Using
 * a matrix for your jobs": cross product, exclude with partial entries,
 * include that extends combinations and include that adds them; job
 * names; and the --max-jobs refusal, computed without making the jobs.
 */
#include "helpers.h"

/* The combinations of a run, one line each: "name: k=v k=v". */
static char *combinations(const struct pipe_run *run)
{
	struct buf out = {0};
	for (size_t i = 0; i < run->n_jobs; i++) {
		const struct pipe_job *j = &run->jobs[i];
		buf_appendf(&out, "%s:", j->name);
		for (size_t k = 0; k < j->n_matrix; k++)
			buf_appendf(&out, " %s=%s", j->matrix[k].key, j->matrix[k].value);
		buf_appendf(&out, "\n");
	}
	char *s = strdup(buf_cstr(&out));
	buf_free(&out);
	return s;
}

#define assert_combinations(yaml, expected)                                                        \
	do {                                                                                       \
		struct pipe_run *run_ = load_ok(yaml);                                             \
		char *got_ = combinations(run_);                                                   \
		assert_string_equal(got_, expected);                                               \
		free(got_);                                                                        \
		pipe_run_free(run_);                                                               \
	} while (0)

#define MATRIX_JOB(matrix)                                                                         \
	"jobs:\n"                                                                                  \
	"  test:\n"                                                                                \
	"    image: x\n"                                                                           \
	"    steps: [{run: x}]\n"                                                                  \
	"    strategy:\n"                                                                          \
	"      matrix:\n" matrix

static void test_cross_product_first_key_slowest(void **state)
{
	assert_combinations(MATRIX_JOB("        os: [ubuntu-22.04, ubuntu-20.04]\n"
				       "        version: [10, 12, 14]\n"),
			    "test (ubuntu-22.04, 10): os=ubuntu-22.04 version=10\n"
			    "test (ubuntu-22.04, 12): os=ubuntu-22.04 version=12\n"
			    "test (ubuntu-22.04, 14): os=ubuntu-22.04 version=14\n"
			    "test (ubuntu-20.04, 10): os=ubuntu-20.04 version=10\n"
			    "test (ubuntu-20.04, 12): os=ubuntu-20.04 version=12\n"
			    "test (ubuntu-20.04, 14): os=ubuntu-20.04 version=14\n");
}

static void test_exclude_removes_partial_match(void **state)
{
	/* GitHub's example: 12 combinations, minus 1, minus the 2 that match {windows, 16}. */
	assert_combinations(MATRIX_JOB("        os: [macos-latest, windows-latest]\n"
				       "        version: [12, 14, 16]\n"
				       "        environment: [staging, production]\n"
				       "        exclude:\n"
				       "          - os: macos-latest\n"
				       "            version: 12\n"
				       "            environment: production\n"
				       "          - os: windows-latest\n"
				       "            version: 16\n"),
			    "test (macos-latest, 12, staging): os=macos-latest version=12 "
			    "environment=staging\n"
			    "test (macos-latest, 14, staging): os=macos-latest version=14 "
			    "environment=staging\n"
			    "test (macos-latest, 14, production): os=macos-latest version=14 "
			    "environment=production\n"
			    "test (macos-latest, 16, staging): os=macos-latest version=16 "
			    "environment=staging\n"
			    "test (macos-latest, 16, production): os=macos-latest version=16 "
			    "environment=production\n"
			    "test (windows-latest, 12, staging): os=windows-latest version=12 "
			    "environment=staging\n"
			    "test (windows-latest, 12, production): os=windows-latest version=12 "
			    "environment=production\n"
			    "test (windows-latest, 14, staging): os=windows-latest version=14 "
			    "environment=staging\n"
			    "test (windows-latest, 14, production): os=windows-latest version=14 "
			    "environment=production\n");
}

static void test_include_extends_matching_combination(void **state)
{
	assert_combinations(MATRIX_JOB("        os: [windows-latest, ubuntu-latest]\n"
				       "        node: [14, 16]\n"
				       "        include:\n"
				       "          - os: windows-latest\n"
				       "            node: 16\n"
				       "            npm: 6\n"),
			    "test (windows-latest, 14): os=windows-latest node=14\n"
			    "test (windows-latest, 16, 6): os=windows-latest node=16 npm=6\n"
			    "test (ubuntu-latest, 14): os=ubuntu-latest node=14\n"
			    "test (ubuntu-latest, 16): os=ubuntu-latest node=16\n");
}

static void test_include_adds_combination_that_fits_none(void **state)
{
	assert_combinations(MATRIX_JOB("        os: [windows-latest, ubuntu-latest]\n"
				       "        version: [12, 14]\n"
				       "        include:\n"
				       "          - os: windows-latest\n"
				       "            version: 17\n"),
			    "test (windows-latest, 12): os=windows-latest version=12\n"
			    "test (windows-latest, 14): os=windows-latest version=14\n"
			    "test (ubuntu-latest, 12): os=ubuntu-latest version=12\n"
			    "test (ubuntu-latest, 14): os=ubuntu-latest version=14\n"
			    "test (windows-latest, 17): os=windows-latest version=17\n");
}

static void test_include_github_fruit_example(void **state)
{
	/* GitHub's "Expanding or adding matrix configurations", with its documented result. */
	assert_combinations(MATRIX_JOB("        fruit: [apple, pear]\n"
				       "        animal: [cat, dog]\n"
				       "        include:\n"
				       "          - color: green\n"
				       "          - color: pink\n"
				       "            animal: cat\n"
				       "          - fruit: apple\n"
				       "            shape: circle\n"
				       "          - fruit: banana\n"
				       "          - fruit: banana\n"
				       "            animal: cat\n"),
			    "test (apple, cat, pink, circle): fruit=apple animal=cat color=pink "
			    "shape=circle\n"
			    "test (apple, dog, green, circle): fruit=apple animal=dog color=green "
			    "shape=circle\n"
			    "test (pear, cat, pink): fruit=pear animal=cat color=pink\n"
			    "test (pear, dog, green): fruit=pear animal=dog color=green\n"
			    "test (banana): fruit=banana\n"
			    "test (banana, cat): fruit=banana animal=cat\n");
}

static void test_include_only_matrix_makes_one_job_per_entry(void **state)
{
	assert_combinations(MATRIX_JOB("        include:\n"
				       "          - site: production\n"
				       "            datacenter: site-a\n"
				       "          - site: staging\n"
				       "            datacenter: site-b\n"),
			    "test (production, site-a): site=production datacenter=site-a\n"
			    "test (staging, site-b): site=staging datacenter=site-b\n");
}

static void test_include_never_overwrites_original_values(void **state)
{
	/* {os: a, cc: clang} contradicts every combination with os a: it is added, not merged. */
	assert_combinations(MATRIX_JOB("        os: [a]\n"
				       "        cc: [gcc]\n"
				       "        include:\n"
				       "          - { os: a, cc: clang }\n"
				       "          - { os: a, opt: O2 }\n"
				       "          - { os: a, opt: O3 }\n"),
			    "test (a, gcc, O3): os=a cc=gcc opt=O3\n"
			    "test (a, clang): os=a cc=clang\n");
}

static void test_pipeline_md_example_matrix(void **state)
{
	assert_combinations(
	    MATRIX_JOB("        os: [busybox-x86_64, debian-12, busybox-aarch64]\n"
		       "        cc: [gcc, clang]\n"
		       "        exclude:\n"
		       "          - { os: busybox-aarch64, cc: clang }\n"
		       "        include:\n"
		       "          - { os: debian-12, cc: gcc, coverage: \"yes\" }\n"),
	    "test (busybox-x86_64, gcc): os=busybox-x86_64 cc=gcc\n"
	    "test (busybox-x86_64, clang): os=busybox-x86_64 cc=clang\n"
	    "test (debian-12, gcc, yes): os=debian-12 cc=gcc coverage=yes\n"
	    "test (debian-12, clang): os=debian-12 cc=clang\n"
	    "test (busybox-aarch64, gcc): os=busybox-aarch64 cc=gcc\n");
}

static void test_excluded_combination_is_not_extended_by_include(void **state)
{
	assert_combinations(MATRIX_JOB("        os: [a, b]\n"
				       "        exclude: [{os: b}]\n"
				       "        include: [{os: b, x: '1'}]\n"),
			    "test (a): os=a\n"
			    "test (b, 1): os=b x=1\n");
}

static void test_exclude_value_not_in_list_matches_nothing(void **state)
{
	assert_combinations(MATRIX_JOB("        os: [a, b]\n"
				       "        exclude: [{os: c}]\n"),
			    "test (a): os=a\n"
			    "test (b): os=b\n");
}

static void test_matrix_settings_reach_every_combination(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n"
				       "    image: x\n"
				       "    steps: [{run: x}]\n"
				       "    strategy:\n"
				       "      fail-fast: false\n"
				       "      max-parallel: 2\n"
				       "      matrix: { os: [a, b, c] }\n");
	assert_int_equal(run->n_groups, 1);
	assert_int_equal(run->groups[0].count, 3);
	assert_false(run->groups[0].fail_fast);
	assert_int_equal(run->groups[0].max_parallel, 2);
	for (size_t i = 0; i < 3; i++) {
		assert_false(run->jobs[i].fail_fast);
		assert_int_equal(run->jobs[i].max_parallel, 2);
		assert_string_equal(run->jobs[i].id, "a");
		assert_int_equal(run->jobs[i].group, 0);
	}
	pipe_run_free(run);
}

static void test_matrix_errors(void **state)
{
	assert_errors(
	    MATRIX_JOB("        os: [a, b, a]\n"
		       "        cc: gcc\n"
		       "        arch: []\n"
		       "        bad key: [x]\n"
		       "        deep: [[x]]\n"
		       "        exclude: [{ arch2: x }, {}]\n"
		       "        include: [x]\n"),
	    "t.yml:7:20: error: matrix key 'os' lists 'a' twice\n"
	    "t.yml:8:13: error: matrix key 'cc' of job 'test' must be a list of values, not a "
	    "string\n"
	    "t.yml:9:15: error: matrix key 'arch' of job 'test' has no values\n"
	    "t.yml:10:9: error: matrix key 'bad key' of job 'test' must start with a letter "
	    "or '_' and hold only letters, digits, '-' and '_'\n"
	    "t.yml:11:16: error: a value of matrix key 'deep' must be a string or a number, "
	    "not a list (nested values are not supported)\n"
	    "t.yml:12:21: error: exclude of job 'test' names 'arch2', which is not a matrix "
	    "key (did you mean 'arch'?)\n"
	    "t.yml:12:33: error: an exclude entry of job 'test' must be a mapping of matrix "
	    "keys to values, not an empty mapping\n"
	    "t.yml:13:19: error: an include entry of job 'test' must be a mapping of matrix "
	    "keys to values, not a string\n");
}

static void test_matrix_without_keys(void **state)
{
	assert_errors(
	    MATRIX_JOB("        {}\n"),
	    "t.yml:7:9: error: the matrix of job 'test' has no keys: give a key a list of "
	    "values, or add include entries\n");
}

static void test_matrix_excluding_everything(void **state)
{
	assert_errors(
	    MATRIX_JOB("        os: [a, b]\n"
		       "        exclude: [{os: a}, {os: b}]\n"),
	    "t.yml:6:7: error: the matrix of job 'test' makes no jobs: its excludes remove "
	    "every combination\n");
}

static void test_two_combinations_with_one_name(void **state)
{
	assert_errors(MATRIX_JOB("        include: [{a: x}, {a: x}]\n"),
		      "t.yml:6:7: error: the matrix of job 'test' makes two jobs named 'test (x)'; "
		      "give each combination different values\n");
}

static void test_max_jobs_refusal_says_how_many(void **state)
{
	const char *yaml = MATRIX_JOB("        a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
				      "        b: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
				      "        exclude: [{a: 1, b: 1}]\n"
				      "        include: [{a: 11}]\n");
	char *got = errors_opts(yaml, strlen(yaml), (struct pipe_load_opts){.max_jobs = 99});
	assert_string_equal(got, "t.yml:6:7: error: the matrix of job 'test' would make 100 jobs, "
				 "more than the limit of 99 (--max-jobs)\n");
	free(got);
	struct pipe_run *run = load_ok_opts(yaml, (struct pipe_load_opts){.max_jobs = 100});
	assert_int_equal(run->n_jobs, 100);
	pipe_run_free(run);
}

static void test_max_jobs_counts_a_huge_matrix_without_making_it(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, MATRIX_JOB(""));
	for (int k = 0; k < 18; k++)
		buf_appendf(&text, "        k%d: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n", k);
	buf_appendf(&text, "        exclude: [{k0: 0}, {k1: 1, k2: 2}]\n");
	int64_t t0 = clock_ms();
	char *got = errors_opts(buf_cstr(&text), text.len, (struct pipe_load_opts){0});
	assert_true(clock_ms() - t0 < 1000);
	/* 10^18 - 10^17 - (9 * 10^15): the excludes overlap on k0 = 0. */
	assert_string_equal(got, "t.yml:6:7: error: the matrix of job 'test' would make "
				 "891000000000000000 jobs, more than the limit of 10000 "
				 "(--max-jobs)\n");
	free(got);

	buf_appendf(&text, "        k18: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
			   "        k19: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n");
	got = errors_opts(buf_cstr(&text), text.len, (struct pipe_load_opts){0});
	assert_string_equal(got, "t.yml:6:7: error: the matrix of job 'test' would make more than "
				 "18446744073709551614 jobs, more than the limit of 10000 "
				 "(--max-jobs)\n");
	free(got);
	buf_free(&text);
}

static void test_max_jobs_applies_to_the_whole_pipeline(void **state)
{
	char *got =
	    errors_opts("jobs:\n"
			"  a:\n" JOB_BODY "    strategy: {matrix: {x: [1, 2, 3]}}\n"
			"  b:\n" JOB_BODY "    strategy: {matrix: {x: [1, 2, 3]}}\n",
			strlen("jobs:\n"
			       "  a:\n" JOB_BODY "    strategy: {matrix: {x: [1, 2, 3]}}\n"
			       "  b:\n" JOB_BODY "    strategy: {matrix: {x: [1, 2, 3]}}\n"),
			(struct pipe_load_opts){.max_jobs = 5});
	assert_string_equal(got, "t.yml:1:1: error: the pipeline would make 6 jobs, more than the "
				 "limit of 5 (--max-jobs)\n");
	free(got);
}

static void test_matrix_of_ten_thousand_jobs(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n  t:\n    image: ${{ matrix.a }}\n    steps: [{run: x}]\n"
			   "    strategy:\n      matrix:\n");
	for (int k = 0; k < 4; k++)
		buf_appendf(&text, "        k%d: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n", k);
	buf_appendf(&text, "        a: [img]\n");
	struct pipe_run *run = load_ok(buf_cstr(&text));
	assert_int_equal(run->n_jobs, 10000);
	assert_string_equal(run->jobs[0].name, "t (0, 0, 0, 0, img)");
	assert_string_equal(run->jobs[9999].name, "t (9, 9, 9, 9, img)");
	assert_string_equal(run->jobs[4321].matrix[1].value, "3");
	pipe_run_free(run);
	buf_free(&text);
}

/*
 * A plain implementation of the documented semantics, for cross-checking
 * random matrices: the product, then excludes, then includes, over
 * combinations held as value indices (-1: absent). Keys 0..np-1 are the
 * product's; an include may also set the extra keys np..nk-1.
 */
#define RK 6 /* keys at most */
#define RV 4 /* values per key at most */

struct rnd_matrix {
	int np, nk, nvals[RK];
	int n_ex, ex[6][RK]; /* -1: not named */
	int n_in, in[5][RK];
};

static uint32_t rnd(uint32_t *seed, uint32_t n)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 16) % n;
}

static void naive_expand(const struct rnd_matrix *m, struct buf *out)
{
	int rows[2048][RK], n = 0, total = 1;
	for (int k = 0; k < m->np; k++)
		total *= m->nvals[k];
	for (int c = 0; c < total; c++) {
		int row[RK], rest = c;
		for (int k = m->np - 1; k >= 0; k--) {
			row[k] = rest % m->nvals[k];
			rest /= m->nvals[k];
		}
		for (int k = m->np; k < m->nk; k++)
			row[k] = -1;
		bool excluded = false;
		for (int e = 0; e < m->n_ex && !excluded; e++) {
			bool all = true;
			for (int k = 0; k < m->np; k++)
				all = all && (m->ex[e][k] < 0 || m->ex[e][k] == row[k]);
			excluded = all;
		}
		if (!excluded)
			memcpy(rows[n++], row, sizeof(row));
	}
	int n_orig = n;
	for (int i = 0; i < m->n_in; i++) {
		bool fitted = false;
		for (int r = 0; r < n_orig; r++) {
			bool fits = true;
			for (int k = 0; k < m->np; k++)
				fits = fits && (m->in[i][k] < 0 || m->in[i][k] == rows[r][k]);
			if (!fits)
				continue;
			fitted = true;
			for (int k = m->np; k < m->nk; k++)
				if (m->in[i][k] >= 0)
					rows[r][k] = m->in[i][k];
		}
		if (!fitted)
			memcpy(rows[n++], m->in[i], sizeof(m->in[i]));
	}
	/* Key order: the product's, then extra keys as includes first name them. */
	int order[RK], n_order = 0;
	for (int k = 0; k < m->np; k++)
		order[n_order++] = k;
	for (int i = 0; i < m->n_in; i++) {
		for (int k = m->np; k < m->nk; k++) {
			bool listed = false;
			for (int o = 0; o < n_order; o++)
				listed = listed || order[o] == k;
			if (m->in[i][k] >= 0 && !listed)
				order[n_order++] = k;
		}
	}
	for (int r = 0; r < n; r++) {
		bool first = true;
		buf_appendf(out, "t (");
		for (int o = 0; o < n_order; o++) {
			if (rows[r][order[o]] >= 0) {
				buf_appendf(out, "%sv%d", first ? "" : ", ", rows[r][order[o]]);
				first = false;
			}
		}
		buf_appendf(out, "):");
		for (int o = 0; o < n_order; o++)
			if (rows[r][order[o]] >= 0)
				buf_appendf(out, " k%d=v%d", order[o], rows[r][order[o]]);
		buf_appendf(out, "\n");
	}
}

static void random_matrix(uint32_t *seed, struct rnd_matrix *m, struct buf *yaml)
{
	memset(m, 0, sizeof(*m));
	m->np = 1 + (int)rnd(seed, 4);
	m->nk = m->np + (int)rnd(seed, 3);
	buf_appendf(yaml, "jobs:\n  t:\n    image: x\n    steps: [{run: x}]\n    strategy:\n"
			  "      matrix:\n");
	for (int k = 0; k < m->np; k++) {
		m->nvals[k] = 1 + (int)rnd(seed, RV);
		buf_appendf(yaml, "        k%d: [", k);
		for (int v = 0; v < m->nvals[k]; v++)
			buf_appendf(yaml, "%sv%d", v ? ", " : "", v);
		buf_appendf(yaml, "]\n");
	}
	m->n_ex = (int)rnd(seed, 5);
	buf_appendf(yaml, "        exclude:%s\n", m->n_ex ? "" : " []");
	for (int e = 0; e < m->n_ex; e++) {
		bool any = false;
		buf_appendf(yaml, "          - {");
		for (int k = 0; k < RK; k++) {
			m->ex[e][k] = -1;
			if (k < m->np && (rnd(seed, 2) || (!any && k == m->np - 1))) {
				/* Now and then a value the key lacks: it matches nothing. */
				m->ex[e][k] = (int)rnd(seed, (uint32_t)m->nvals[k] + 1);
				buf_appendf(yaml, "%sk%d: v%d", any ? ", " : "", k, m->ex[e][k]);
				any = true;
			}
		}
		buf_appendf(yaml, "}\n");
	}
	m->n_in = (int)rnd(seed, 4);
	buf_appendf(yaml, "        include:%s\n", m->n_in ? "" : " []");
	for (int i = 0; i < m->n_in; i++) {
		bool any = false;
		buf_appendf(yaml, "          - {");
		for (int k = 0; k < RK; k++) {
			m->in[i][k] = -1;
			if (k < m->nk && (rnd(seed, 2) || (!any && k == m->nk - 1))) {
				/* Sometimes a value outside the product, so the entry is added. */
				m->in[i][k] = (int)rnd(seed, RV + 1);
				buf_appendf(yaml, "%sk%d: v%d", any ? ", " : "", k, m->in[i][k]);
				any = true;
			}
		}
		buf_appendf(yaml, "}\n");
	}
}

static void test_random_matrices_match_plain_semantics(void **state)
{
	uint32_t seed = 2024;
	int checked = 0;
	for (int round = 0; round < 3000; round++) {
		struct rnd_matrix m;
		struct buf yaml = {0}, want = {0};
		random_matrix(&seed, &m, &yaml);
		/* Extra keys that no include sets do not exist. */
		for (int k = m.np; k < m.nk; k++) {
			bool used = false;
			for (int i = 0; i < m.n_in; i++)
				used = used || m.in[i][k] >= 0;
			if (!used)
				goto skip;
		}
		naive_expand(&m, &want);
		struct pipe_errors errors = {0};
		struct pipe_run *run = NULL;
		int rc = pipe_load(buf_cstr(&yaml), yaml.len, NULL, &run, &errors);
		if (want.len == 0 || rc) {
			/* Only the empty matrix, or two combinations with one name, may fail. */
			if (rc == 0 || errors.len != 1 ||
			    (!strstr(errors.items[0].message, "makes no jobs") &&
			     !strstr(errors.items[0].message, "makes two jobs named")))
				print_error("%s\n=> %d %s\n", buf_cstr(&yaml), rc,
					    errors.len ? errors.items[0].message : "");
			assert_true(rc == -EINVAL && errors.len == 1);
		} else {
			char *got = combinations(run);
			if (strcmp(got, buf_cstr(&want)))
				print_error("%s", buf_cstr(&yaml));
			assert_string_equal(got, buf_cstr(&want));
			free(got);
			checked++;
		}
		pipe_run_free(run);
		pipe_errors_free(&errors);
	skip:
		buf_free(&yaml);
		buf_free(&want);
	}
	assert_true(checked > 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cross_product_first_key_slowest),
	    cmocka_unit_test(test_exclude_removes_partial_match),
	    cmocka_unit_test(test_include_extends_matching_combination),
	    cmocka_unit_test(test_include_adds_combination_that_fits_none),
	    cmocka_unit_test(test_include_github_fruit_example),
	    cmocka_unit_test(test_include_only_matrix_makes_one_job_per_entry),
	    cmocka_unit_test(test_include_never_overwrites_original_values),
	    cmocka_unit_test(test_pipeline_md_example_matrix),
	    cmocka_unit_test(test_excluded_combination_is_not_extended_by_include),
	    cmocka_unit_test(test_exclude_value_not_in_list_matches_nothing),
	    cmocka_unit_test(test_matrix_settings_reach_every_combination),
	    cmocka_unit_test(test_matrix_errors),
	    cmocka_unit_test(test_matrix_without_keys),
	    cmocka_unit_test(test_matrix_excluding_everything),
	    cmocka_unit_test(test_two_combinations_with_one_name),
	    cmocka_unit_test(test_max_jobs_refusal_says_how_many),
	    cmocka_unit_test(test_max_jobs_counts_a_huge_matrix_without_making_it),
	    cmocka_unit_test(test_max_jobs_applies_to_the_whole_pipeline),
	    cmocka_unit_test(test_matrix_of_ten_thousand_jobs),
	    cmocka_unit_test(test_random_matrices_match_plain_semantics),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
