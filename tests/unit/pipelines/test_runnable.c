/*
 * What `vmci validate` refuses because `vmci run` could not run it: image
 * names the image store refuses, scripts and environments past what a
 * step may carry. Also the artifacts' limits a job may set.
 */
#include "helpers.h"

static void test_image_outside_the_store_is_refused_with_its_position(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: ../../etc/passwd\n"
	    "    steps: [{run: make}]\n",
	    "t.yml:3:12: error: image '../../etc/passwd' of job 'a' is not an image name: "
	    "use 1 to 63 letters, digits, '.', '_' and '-', not starting with '.'\n");
}

static void test_image_names_follow_the_store_rule(void **state)
{
	char name[80], yaml[256];
	memset(name, 'i', 63);
	name[63] = 0;
	snprintf(yaml, sizeof(yaml), "jobs:\n  a: {image: %s, steps: [{run: x}]}\n", name);
	pipe_run_free(load_ok(yaml));
	pipe_run_free(load_ok("jobs:\n  a: {image: Debian_12.1-x, steps: [{run: x}]}\n"));
	strcat(name, "i"); /* 64 characters */
	snprintf(yaml, sizeof(yaml), "jobs:\n  a: {image: %s, steps: [{run: x}]}\n", name);
	char *got = errors_of(yaml);
	assert_non_null(strstr(got, "t.yml:2:14: error: image 'iiii"));
	free(got);
	assert_errors(
	    "jobs:\n  a: {image: .hidden, steps: [{run: x}]}\n"
	    "  b: {image: 'debian 12', steps: [{run: x}]}\n",
	    "t.yml:2:14: error: image '.hidden' of job 'a' is not an image name: use 1 to "
	    "63 letters, digits, '.', '_' and '-', not starting with '.'\n"
	    "t.yml:3:14: error: image 'debian 12' of job 'b' is not an image name: use 1 "
	    "to 63 letters, digits, '.', '_' and '-', not starting with '.'\n");
}

static void test_image_from_the_matrix_is_checked_for_each_job(void **state)
{
	assert_errors("jobs:\n"
		      "  build:\n"
		      "    image: ${{ matrix.os }}\n"
		      "    strategy: {matrix: {os: [debian-12, ../x, busybox-x86_64]}}\n"
		      "    steps: [{run: make}]\n",
		      "t.yml:3:12: error: image '../x' of job 'build (../x)' is not an image name: "
		      "use 1 to 63 letters, digits, '.', '_' and '-', not starting with '.'\n");
}

static void test_image_with_a_run_variable_is_checked_around_it(void **state)
{
	/* vmci.sha is known when a run starts: validate checks the rest of the name. */
	pipe_run_free(load_ok("jobs:\n  a: {image: 'snap-${{ vmci.sha }}', steps: [{run: x}]}\n"));
	assert_errors("jobs:\n  a: {image: '../${{ vmci.sha }}', steps: [{run: x}]}\n",
		      "t.yml:2:14: error: image '../${{ vmci.sha }}' of job 'a' is not an image "
		      "name: use 1 to 63 letters, digits, '.', '_' and '-', not starting with "
		      "'.'\n");
}

/* A pipeline whose one step runs a script of len bytes: "true" and comment lines. */
static void script_pipeline(struct buf *text, size_t len)
{
	buf_appendf(text, "jobs:\n  a:\n    image: x\n    steps:\n      - run: |\n"
			  "          true\n");
	for (size_t script = 5; script < len; script += 61) /* a line: 60 characters and \n */
		buf_appendf(text, "          # %s\n",
			    "a comment line of fifty-eight characters, more or less....");
}

static void test_script_up_to_the_limit_is_accepted(void **state)
{
	struct buf text = {0};
	script_pipeline(&text, 100 * 1024);
	struct pipe_run *run = load_ok(buf_cstr(&text));
	assert_true(strlen(run->jobs[0].steps[0].run) > 100 * 1024);
	pipe_run_free(run);
	buf_free(&text);
}

static void test_script_past_the_limit_is_refused_with_its_position(void **state)
{
	struct buf text = {0};
	script_pipeline(&text, PIPE_MAX_SCRIPT_SIZE + 1);
	char *got = errors_of(buf_cstr(&text));
	assert_non_null(strstr(got, "t.yml:5:14: error: run of step 1 of job 'a' is "));
	assert_non_null(strstr(got, "KiB, more than the 1024 KiB a step's script may have"));
	free(got);
	buf_free(&text);
}

static void test_script_made_long_by_the_matrix_is_refused(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n  a:\n    image: x\n    strategy: {matrix: {big: [short, ");
	for (int i = 0; i < 600 * 1024; i++)
		buf_appendf(&text, "y");
	buf_appendf(&text,
		    "]}}\n    steps:\n      - run: echo ${{ matrix.big }} ${{ matrix.big }}\n");
	char *got = errors_of(buf_cstr(&text));
	assert_non_null(strstr(got, "t.yml:6:14: error: run of step 1 of job 'a' is 1201 KiB"));
	free(got);
	buf_free(&text);
}

static void test_environment_past_the_limit_is_refused(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n  a:\n    image: x\n    steps:\n      - run: x\n"
			   "        env:\n          BIG: ");
	for (int i = 0; i < PIPE_MAX_ENV_SIZE; i++)
		buf_appendf(&text, "z");
	buf_appendf(&text, "\n");
	char *got = errors_of(buf_cstr(&text));
	assert_string_equal(got, "t.yml:5:9: error: the environment of step 1 of job 'a' has 1 "
				 "variables in 33 KiB, more than the 1000 variables in 32 KiB a "
				 "step may have\n");
	free(got);
	buf_free(&text);
}

static void test_artifact_limits_default_and_per_job(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a: {image: x, steps: [{run: x}], artifacts: [out/]}\n"
				       "  b:\n"
				       "    image: x\n"
				       "    steps: [{run: x}]\n"
				       "    artifacts:\n"
				       "      paths: [dist/*.tar.gz, logs/]\n"
				       "      max-size: 2G\n"
				       "      max-files: 50\n");
	assert_int_equal(run->jobs[0].n_artifacts, 1);
	assert_int_equal(run->jobs[0].artifact_max_bytes, PIPE_DEFAULT_ARTIFACT_MAX_BYTES);
	assert_int_equal(run->jobs[0].artifact_max_files, PIPE_DEFAULT_ARTIFACT_MAX_FILES);
	assert_int_equal(run->jobs[1].n_artifacts, 2);
	assert_string_equal(run->jobs[1].artifacts[1], "logs/");
	assert_int_equal(run->jobs[1].artifact_max_bytes, 2LL << 30);
	assert_int_equal(run->jobs[1].artifact_max_files, 50);
	pipe_run_free(run);
}

static void test_artifact_limits_are_checked(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY
		      "    artifacts: {max-size: 9G, max-files: 0, max-szie: 1G}\n",
		      "t.yml:6:16: error: artifacts of job 'a' has no 'paths': list the paths to "
		      "copy out (write: paths: [out/])\n"
		      "t.yml:6:27: error: max-size of the artifacts of job 'a' must be at most 8G\n"
		      "t.yml:6:42: error: max-files of the artifacts of job 'a' must be a whole "
		      "number from 1 to 1000000, not '0'\n"
		      "t.yml:6:45: error: unknown key 'max-szie' in artifacts of job 'a' (did you "
		      "mean 'max-size'?)\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_image_outside_the_store_is_refused_with_its_position),
	    cmocka_unit_test(test_image_names_follow_the_store_rule),
	    cmocka_unit_test(test_image_from_the_matrix_is_checked_for_each_job),
	    cmocka_unit_test(test_image_with_a_run_variable_is_checked_around_it),
	    cmocka_unit_test(test_script_up_to_the_limit_is_accepted),
	    cmocka_unit_test(test_script_past_the_limit_is_refused_with_its_position),
	    cmocka_unit_test(test_script_made_long_by_the_matrix_is_refused),
	    cmocka_unit_test(test_environment_past_the_limit_is_refused),
	    cmocka_unit_test(test_artifact_limits_default_and_per_job),
	    cmocka_unit_test(test_artifact_limits_are_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
