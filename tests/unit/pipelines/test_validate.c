/*
 * The rules of docs/pipeline.md on keys and types: unknown keys with a
 * suggestion, required keys, wrong types, empty steps, durations, sizes,
 * `on`, and every error at once in file order.
 */
#include "helpers.h"

static void test_unknown_job_key_suggests_steps(void **state)
{
	/* The example of docs/pipeline.md "Errors". */
	assert_errors(
	    "jobs:\n"
	    "  build:\n"
	    "    image: debian-12\n"
	    "    stpes:\n"
	    "      - run: make\n",
	    "t.yml:2:3: error: job 'build' has no 'steps': list at least one step with "
	    "'run'\n"
	    "t.yml:4:5: error: unknown key 'stpes' in job 'build' (did you mean 'steps'?)\n");
}

static void test_unknown_top_level_key_suggests_jobs(void **state)
{
	assert_errors("jbos:\n"
		      "  a:\n" JOB_BODY,
		      "t.yml:1:1: error: unknown key 'jbos' in the pipeline (did you mean 'jobs'?) "
		      "(keys starting with 'x-' are free for anchors)\n"
		      "t.yml:1:1: error: the pipeline has no 'jobs': add 'jobs:' with at least one "
		      "job\n");
}

static void test_unknown_step_key_suggests_run(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    steps:\n"
	    "      - rn: make\n",
	    "t.yml:5:9: error: unknown key 'rn' in step 1 of job 'a' (did you mean "
	    "'run'?)\n"
	    "t.yml:5:9: error: step 1 of job 'a' has no 'run': give the commands to run\n");
}

static void test_unknown_key_far_from_any_gets_no_suggestion(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    services: [db]\n",
		      "t.yml:6:5: error: unknown key 'services' in job 'a'\n");
}

static void test_unknown_keys_in_strategy_resources_on(void **state)
{
	assert_errors(
	    "on:\n"
	    "  pushh: {}\n"
	    "jobs:\n"
	    "  a:\n" JOB_BODY "    strategy: { fail_fast: false }\n"
	    "    resources: { cpu: 2 }\n",
	    "t.yml:2:3: error: unknown key 'pushh' in 'on' (did you mean 'push'?)\n"
	    "t.yml:8:17: error: unknown key 'fail_fast' in strategy of job 'a' (did you mean "
	    "'fail-fast'?)\n"
	    "t.yml:9:18: error: unknown key 'cpu' in resources of job 'a' (did you mean "
	    "'cpus'?)\n");
}

static void test_extension_keys_hold_anchors(void **state)
{
	struct pipe_run *run = load_ok("x-image: &img debian-12\n"
				       "jobs:\n"
				       "  a:\n"
				       "    image: *img\n"
				       "    steps: [{run: make}]\n");
	assert_string_equal(run->jobs[0].image, "debian-12");
	pipe_run_free(run);
}

static void test_missing_image_and_steps(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    timeout: 5m\n",
	    "t.yml:2:3: error: job 'a' has no 'image': name the golden image it runs in\n"
	    "t.yml:2:3: error: job 'a' has no 'steps': list at least one step with 'run'\n");
}

static void test_steps_as_string_is_a_type_error(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    steps: \"make\"\n",
	    "t.yml:4:12: error: steps of job 'a' must be a list of steps, not a string\n");
}

static void test_empty_steps_is_an_error(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    image: x\n"
		      "    steps: []\n",
		      "t.yml:4:12: error: steps of job 'a' is empty: list at least one step with "
		      "'run'\n");
}

static void test_step_written_as_string_says_how_to_fix(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    steps:\n"
	    "      - make\n",
	    "t.yml:5:9: error: step 1 of job 'a' must be a mapping with 'run', not a string "
	    "(write: - run: ...)\n");
}

static void test_empty_run_and_image_are_errors(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: ''\n"
	    "    steps:\n"
	    "      - run: '  '\n"
	    "      - run:\n",
	    "t.yml:3:12: error: image of job 'a' is empty\n"
	    "t.yml:5:14: error: run of step 1 of job 'a' is empty: give the commands to run\n"
	    "t.yml:6:13: error: run of step 2 of job 'a' is empty: give the commands to run\n");
}

static void test_jobs_must_be_a_nonempty_mapping(void **state)
{
	assert_errors("jobs: []\n",
		      "t.yml:1:7: error: 'jobs' must be a mapping of job ids to jobs, "
		      "not a list\n");
	assert_errors("jobs: {}\n", "t.yml:1:7: error: 'jobs' is empty: define at least one job\n");
}

static void test_job_must_be_a_mapping(void **state)
{
	assert_errors("jobs:\n"
		      "  a: make\n",
		      "t.yml:2:6: error: job 'a' must be a mapping with 'image' and 'steps', not a "
		      "string\n");
}

static void test_job_id_must_be_an_identifier(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  my job:\n" JOB_BODY,
	    "t.yml:2:3: error: job id 'my job' must start with a letter or '_' and hold only "
	    "letters, digits, '-' and '_'\n");
}

static void test_wrong_scalar_types(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n" JOB_BODY "    retries: \"1\"\n"
	    "    resources: { cpus: 0, memory: 1X }\n"
	    "    strategy: { fail-fast: yes, max-parallel: -1 }\n"
	    "    artifacts: build/out\n",
	    "t.yml:6:14: error: retries of job 'a' must be a whole number from 0 to 10, not "
	    "'1' (quoted, so a string)\n"
	    "t.yml:7:24: error: cpus of job 'a' must be a whole number from 1 to 256, not "
	    "'0'\n"
	    "t.yml:7:35: error: memory of job 'a' must be a size such as 512M or 1G, not "
	    "'1X'\n"
	    "t.yml:8:28: error: fail-fast of job 'a' must be true or false, not 'yes'\n"
	    "t.yml:8:47: error: max-parallel of job 'a' must be a whole number from 1 to "
	    "1000000, not '-1'\n"
	    "t.yml:9:16: error: artifacts of job 'a' must be a list of paths or a mapping "
	    "with 'paths', not a string\n");
}

static void test_retries_above_limit(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n" JOB_BODY "    retries: 11\n",
	    "t.yml:6:14: error: retries of job 'a' must be a whole number from 0 to 10, not "
	    "'11'\n");
}

static void test_durations_in_documented_forms(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n"
				       "    image: x\n"
				       "    timeout: 1h30m\n"
				       "    steps:\n"
				       "      - { run: a, timeout: 90s }\n"
				       "      - { run: b, timeout: 20m }\n"
				       "      - { run: c, timeout: 1h1m1s }\n"
				       "      - { run: d, timeout: 250ms }\n");
	const struct pipe_job *j = &run->jobs[0];
	assert_int_equal(j->timeout_ms, 90 * 60 * 1000);
	assert_int_equal(j->steps[0].timeout_ms, 90 * 1000);
	assert_int_equal(j->steps[1].timeout_ms, 20 * 60 * 1000);
	assert_int_equal(j->steps[2].timeout_ms, 3661 * 1000);
	assert_int_equal(j->steps[3].timeout_ms, 250);
	pipe_run_free(run);
}

static void test_durations_refused(void **state)
{
	static const char *const bad[] = {"90",	 "1m1h", "1h1h", "0s",		"-5s", "1.5h",
					  "5 m", "m",	 "1d",	 "9999999999s", "\"\""};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char yaml[256], want[256];
		snprintf(yaml, sizeof(yaml), "jobs:\n  a:\n" JOB_BODY "    timeout: %s\n", bad[i]);
		char *got = errors_of(yaml);
		snprintf(want, sizeof(want),
			 "t.yml:6:14: error: timeout of job 'a' must be a duration");
		assert_memory_equal(got, want, strlen(want));
		free(got);
	}
}

static void test_sizes_in_documented_forms(void **state)
{
	static const struct {
		const char *text;
		int64_t mb;
	} sizes[] = {{"512M", 512}, {"1G", 1024}, {"2Gi", 2048}, {"3GB", 3072}, {"1T", 1048576}};
	for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
		char yaml[256];
		snprintf(yaml, sizeof(yaml),
			 "jobs:\n  a:\n" JOB_BODY "    resources: {memory: %s}\n", sizes[i].text);
		struct pipe_run *run = load_ok(yaml);
		assert_int_equal(run->jobs[0].memory_mb, sizes[i].mb);
		pipe_run_free(run);
	}
}

static void test_network_is_nat_by_default_or_none(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n" JOB_BODY "  b:\n" JOB_BODY "    network: none\n"
				       "  c:\n" JOB_BODY "    network: nat\n");
	assert_int_equal(run->jobs[0].network, PIPE_NETWORK_NAT);
	assert_int_equal(run->jobs[1].network, PIPE_NETWORK_NONE);
	assert_int_equal(run->jobs[2].network, PIPE_NETWORK_NAT);
	pipe_run_free(run);
}

static void test_network_refuses_other_modes(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    network: nnoe\n",
		      "t.yml:6:14: error: network of job 'a' is 'nnoe'; it must be 'nat' (outbound "
		      "access, the default) or 'none' (no network) (did you mean 'none'?)\n");
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    network: [nat]\n",
		      "t.yml:6:14: error: network of job 'a' must be a string, not a list\n");
}

static void test_packages_are_a_list_of_debian_package_names(void **state)
{
	struct pipe_run *run =
	    load_ok("jobs:\n"
		    "  a:\n" JOB_BODY "    packages: [autoconf, g++, libtool]\n");
	assert_int_equal(run->jobs[0].n_packages, 3);
	assert_string_equal(run->jobs[0].packages[1], "g++");
	pipe_run_free(run);
	/* Each keeps its place, for checks made after loading (the image's package lists). */
	run = load_ok("jobs:\n"
		      "  a:\n" JOB_BODY "    packages:\n      - autoconf\n      - g++\n");
	assert_int_equal(run->jobs[0].package_places[0].line, 7);
	assert_int_equal(run->jobs[0].package_places[0].col, 9);
	assert_int_equal(run->jobs[0].package_places[1].line, 8);
	assert_int_equal(run->jobs[0].package_places[1].col, 9);
	pipe_run_free(run);
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    packages: [autoconf, 'rm -rf']\n",
		      "t.yml:6:26: error: package 'rm -rf' of job 'a' is not a Debian package name "
		      "(lower case letters, digits, '+', '-' and '.')\n");
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    packages: autoconf\n",
		      "t.yml:6:15: error: packages of job 'a' must be a list of package names such "
		      "as [autoconf, libtool], not a string\n");
}

static void test_errors_added_after_loading_print_like_the_loads(void **state)
{
	struct pipe_errors errors = {.file = strdup("t.yml")};
	assert_int_equal(pipe_errors_add(&errors, 7, 9, "package '%s' is unknown", "helo"), 0);
	assert_int_equal(pipe_errors_add(&errors, 0, 0, "about the file"), 0);
	struct buf out = {0};
	assert_int_equal(pipe_error_format(&errors, 0, &out), 0);
	assert_int_equal(pipe_error_format(&errors, 1, &out), 0);
	assert_string_equal(buf_cstr(&out), "t.yml:7:9: error: package 'helo' is unknown\n"
					    "t.yml: error: about the file\n");
	buf_free(&out);
	pipe_errors_free(&errors);
}

static void test_sizes_refused(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    resources: {memory: 512}\n",
		      "t.yml:6:25: error: memory of job 'a' must be a size such as 512M or 1G, not "
		      "'512'\n");
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    resources: {memory: 0M}\n",
		      "t.yml:6:25: error: memory of job 'a' must be a size such as 512M or 1G, not "
		      "'0M'\n");
	/* Sizes are whole MiB. */
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    resources: {memory: 1536K}\n",
		      "t.yml:6:25: error: memory of job 'a' must be a size such as 512M or 1G, not "
		      "'1536K'\n");
}

static void test_log_limit_is_a_size_in_bytes(void **state)
{
	static const struct {
		const char *text;
		int64_t bytes;
	} sizes[] = {{"1M", 1 << 20}, {"10M", 10 << 20}, {"2Gi", 2LL << 30}, {"1T", 1LL << 40}};
	for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
		char yaml[256];
		snprintf(yaml, sizeof(yaml), "jobs:\n  a:\n" JOB_BODY "    log-limit: %s\n",
			 sizes[i].text);
		struct pipe_run *run = load_ok(yaml);
		assert_int_equal(run->jobs[0].log_limit, sizes[i].bytes);
		pipe_run_free(run);
	}
}

static void test_log_limit_refused_with_its_position(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    log-limit: 1000\n",
		      "t.yml:6:16: error: log-limit of job 'a' must be a size such as 512M or 1G, "
		      "not '1000'\n");
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    log-limit: 512K\n",
		      "t.yml:6:16: error: log-limit of job 'a' must be a size such as 512M or 1G, "
		      "not '512K'\n");
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    log-limit: 2T\n",
		      "t.yml:6:16: error: log-limit of job 'a' must be at most 1024G, not '2T'\n");
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    log_limit: 1M\n",
		      "t.yml:6:5: error: unknown key 'log_limit' in job 'a' (did you mean "
		      "'log-limit'?)\n");
}

static void test_defaults_of_a_bare_job(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n  a:\n" JOB_BODY);
	const struct pipe_job *j = &run->jobs[0];
	assert_int_equal(j->timeout_ms, PIPE_DEFAULT_TIMEOUT_MS);
	assert_int_equal(j->retries, 0);
	assert_int_equal(j->cpus, PIPE_DEFAULT_CPUS);
	assert_int_equal(j->memory_mb, PIPE_DEFAULT_MEMORY_MB);
	assert_int_equal(j->log_limit, 64LL << 20);
	assert_true(j->fail_fast);
	assert_int_equal(j->max_parallel, 0);
	assert_null(j->condition);
	assert_int_equal(j->n_artifacts, 0);
	assert_int_equal(j->steps[0].timeout_ms, 0);
	assert_false(j->steps[0].continue_on_error);
	assert_null(j->steps[0].workdir);
	assert_string_equal(j->steps[0].name, "make");
	assert_true(run->on_push);
	assert_int_equal(run->n_push_branches, 0);
	pipe_run_free(run);
}

static void test_artifacts_stay_in_workspace(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n" JOB_BODY "    artifacts: [/etc/passwd, ../up, 'a/../../b', ok/*.xml]\n",
	    "t.yml:6:17: error: artifact '/etc/passwd' of job 'a' must be a path inside the "
	    "workspace (relative, without '..')\n"
	    "t.yml:6:30: error: artifact '../up' of job 'a' must be a path inside the "
	    "workspace (relative, without '..')\n"
	    "t.yml:6:37: error: artifact 'a/../../b' of job 'a' must be a path inside the "
	    "workspace (relative, without '..')\n");
}

static void test_step_fields(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n"
				       "    image: x\n"
				       "    if: github.ref == 'main'\n"
				       "    steps:\n"
				       "      - name: build\n"
				       "        run: make\n"
				       "        workdir: src\n"
				       "        continue-on-error: true\n"
				       "        env: { V: \"1\" }\n");
	const struct pipe_step *s = &run->jobs[0].steps[0];
	assert_string_equal(s->name, "build");
	assert_string_equal(s->workdir, "src");
	assert_true(s->continue_on_error);
	assert_int_equal(s->n_env, 1);
	assert_string_equal(s->env[0].key, "V");
	assert_int_equal(s->line, 6);
	assert_int_equal(s->col, 9);
	assert_string_equal(run->jobs[0].condition, "github.ref == 'main'");
	pipe_run_free(run);
}

static void test_default_step_name_is_first_line_of_run(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n"
				       "    image: x\n"
				       "    steps:\n"
				       "      - run: |\n"
				       "          ./configure --prefix=/usr\n"
				       "          make\n");
	assert_string_equal(run->jobs[0].steps[0].name, "./configure --prefix=/usr");
	pipe_run_free(run);
}

static void test_on_forms(void **state)
{
	struct pipe_run *run = load_ok("on:\n"
				       "  push:\n"
				       "    branches: [main, \"release/*\"]\n"
				       "  schedule:\n"
				       "    - cron: \"0 3 * * *\"\n"
				       "    - cron: \"*/15 0-6 1,15 JAN-jun mon-FRI\"\n"
				       "jobs:\n  a:\n" JOB_BODY);
	assert_true(run->on_push);
	assert_int_equal(run->n_push_branches, 2);
	assert_string_equal(run->push_branches[1], "release/*");
	assert_int_equal(run->n_schedules, 2);
	assert_string_equal(run->schedules[0], "0 3 * * *");
	pipe_run_free(run);

	run = load_ok("on:\n  schedule: [{cron: '0 0 * * 0'}]\njobs:\n  a:\n" JOB_BODY);
	assert_false(run->on_push);
	pipe_run_free(run);

	run = load_ok("on: push\njobs:\n  a:\n" JOB_BODY);
	assert_true(run->on_push);
	pipe_run_free(run);

	run = load_ok("on:\n  push:\njobs:\n  a:\n" JOB_BODY);
	assert_true(run->on_push);
	assert_int_equal(run->n_push_branches, 0);
	pipe_run_free(run);
}

static void test_cron_errors_say_what_is_wrong(void **state)
{
	assert_errors(
	    "on:\n"
	    "  schedule:\n"
	    "    - cron: \"0 3 * *\"\n"
	    "    - cron: \"61 3 * * *\"\n"
	    "    - cron: \"0 5-2 * * *\"\n"
	    "    - cron: \"0 0 * FOO *\"\n"
	    "    - cron: \"*/0 * * * *\"\n"
	    "    - {}\n"
	    "jobs:\n  a:\n" JOB_BODY,
	    "t.yml:3:13: error: invalid cron expression '0 3 * *': expected 5 fields (minute "
	    "hour day-of-month month day-of-week), found 4\n"
	    "t.yml:4:13: error: invalid cron expression '61 3 * * *': minute 61 is not in "
	    "0-59\n"
	    "t.yml:5:13: error: invalid cron expression '0 5-2 * * *': hour range 5-2 goes "
	    "backwards\n"
	    "t.yml:6:13: error: invalid cron expression '0 0 * FOO *': month field 'FOO' is "
	    "not a value, range (a-b), step (*/n) or list (a,b)\n"
	    "t.yml:7:13: error: invalid cron expression '*/0 * * * *': minute step 0 is not "
	    "in 1-59\n"
	    "t.yml:8:7: error: an on.schedule entry needs 'cron'\n");
}

static void test_env_names_must_be_shell_names(void **state)
{
	assert_errors(
	    "env:\n"
	    "  GOOD_1: a\n"
	    "  bad-name: b\n"
	    "  9LIVES: c\n"
	    "jobs:\n  a:\n" JOB_BODY,
	    "t.yml:3:3: error: env name 'bad-name' in the pipeline's env must be letters, "
	    "digits and '_', not starting with a digit\n"
	    "t.yml:4:3: error: env name '9LIVES' in the pipeline's env must be letters, "
	    "digits and '_', not starting with a digit\n");
}

static void test_env_values_must_be_scalars(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "    env:\n"
		      "      LIST: [1, 2]\n",
		      "t.yml:7:13: error: env 'LIST' in the env of job 'a' must be a string, not a "
		      "list\n");
}

static void test_all_errors_in_file_order(void **state)
{
	/* Found in different passes (keys, needs, types), printed by position. */
	assert_errors(
	    "jobs:\n"
	    "  b:\n"
	    "    needs: [zzz]\n"
	    "    image: x\n"
	    "    steps: [{run: x}]\n"
	    "    retries: many\n"
	    "  a:\n"
	    "    imag: x\n"
	    "    steps: [{run: x}]\n",
	    "t.yml:3:13: error: job 'b' needs 'zzz', which is not a job\n"
	    "t.yml:6:14: error: retries of job 'b' must be a whole number from 0 to 10, not "
	    "'many'\n"
	    "t.yml:7:3: error: job 'a' has no 'image': name the golden image it runs in\n"
	    "t.yml:8:5: error: unknown key 'imag' in job 'a' (did you mean 'image'?)\n");
}

static void test_many_errors_end_with_a_count(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs:\n  a:\n" JOB_BODY);
	for (int i = 0; i < 10010; i++)
		buf_appendf(&text, "    k%d: 1\n", i);
	struct pipe_errors errors = {0};
	struct pipe_run *run = NULL;
	assert_int_equal(pipe_load(buf_cstr(&text), text.len, NULL, &run, &errors), -EINVAL);
	assert_int_equal(errors.len, 10001);
	assert_string_equal(errors.items[10000].message,
			    "10 more errors not shown; fix the ones above first");
	struct buf line = {0};
	pipe_error_format(&errors, 10000, &line);
	assert_string_equal(
	    buf_cstr(&line),
	    ".vmci.yml: error: 10 more errors not shown; fix the ones above first\n");
	buf_free(&line);
	pipe_errors_free(&errors);
	buf_free(&text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unknown_job_key_suggests_steps),
	    cmocka_unit_test(test_unknown_top_level_key_suggests_jobs),
	    cmocka_unit_test(test_unknown_step_key_suggests_run),
	    cmocka_unit_test(test_unknown_key_far_from_any_gets_no_suggestion),
	    cmocka_unit_test(test_unknown_keys_in_strategy_resources_on),
	    cmocka_unit_test(test_extension_keys_hold_anchors),
	    cmocka_unit_test(test_missing_image_and_steps),
	    cmocka_unit_test(test_steps_as_string_is_a_type_error),
	    cmocka_unit_test(test_empty_steps_is_an_error),
	    cmocka_unit_test(test_step_written_as_string_says_how_to_fix),
	    cmocka_unit_test(test_empty_run_and_image_are_errors),
	    cmocka_unit_test(test_jobs_must_be_a_nonempty_mapping),
	    cmocka_unit_test(test_job_must_be_a_mapping),
	    cmocka_unit_test(test_job_id_must_be_an_identifier),
	    cmocka_unit_test(test_wrong_scalar_types),
	    cmocka_unit_test(test_retries_above_limit),
	    cmocka_unit_test(test_durations_in_documented_forms),
	    cmocka_unit_test(test_durations_refused),
	    cmocka_unit_test(test_sizes_in_documented_forms),
	    cmocka_unit_test(test_sizes_refused),
	    cmocka_unit_test(test_log_limit_is_a_size_in_bytes),
	    cmocka_unit_test(test_log_limit_refused_with_its_position),
	    cmocka_unit_test(test_defaults_of_a_bare_job),
	    cmocka_unit_test(test_artifacts_stay_in_workspace),
	    cmocka_unit_test(test_step_fields),
	    cmocka_unit_test(test_default_step_name_is_first_line_of_run),
	    cmocka_unit_test(test_on_forms),
	    cmocka_unit_test(test_cron_errors_say_what_is_wrong),
	    cmocka_unit_test(test_env_names_must_be_shell_names),
	    cmocka_unit_test(test_env_values_must_be_scalars),
	    cmocka_unit_test(test_network_is_nat_by_default_or_none),
	    cmocka_unit_test(test_network_refuses_other_modes),
	    cmocka_unit_test(test_packages_are_a_list_of_debian_package_names),
	    cmocka_unit_test(test_errors_added_after_loading_print_like_the_loads),
	    cmocka_unit_test(test_all_errors_in_file_order),
	    cmocka_unit_test(test_many_errors_end_with_a_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
