/*
 * ${{ matrix.KEY }}, ${{ env.KEY }} and ${{ vmci.* }}: where they expand,
 * what they see, and the errors (with the position of the expression,
 * inside plain, quoted and block scalars) for names that do not exist.
 */
#include "helpers.h"

static void test_matrix_and_env_expand_in_image_env_run_name(void **state)
{
	struct pipe_run *run = load_ok("env: { CFLAGS: -O2 }\n"
				       "jobs:\n"
				       "  a:\n"
				       "    image: ${{ matrix.os }}\n"
				       "    strategy: { matrix: { os: [debian-12], cc: [gcc] } }\n"
				       "    env:\n"
				       "      CC: ${{ matrix.cc }}\n"
				       "      FLAGS: \"${{ env.CFLAGS }} -g\"\n"
				       "    steps:\n"
				       "      - name: build on ${{matrix.os}}\n"
				       "        run: make CC=${{ env.CC }} ${{ env.FLAGS }}\n");
	const struct pipe_job *j = &run->jobs[0];
	assert_string_equal(j->image, "debian-12");
	assert_string_equal(var(j->env, j->n_env, "CC"), "gcc");
	assert_string_equal(var(j->env, j->n_env, "FLAGS"), "-O2 -g");
	assert_string_equal(var(j->env, j->n_env, "CFLAGS"), "-O2");
	assert_string_equal(j->steps[0].name, "build on debian-12");
	assert_string_equal(j->steps[0].run, "make CC=gcc -O2 -g");
	pipe_run_free(run);
}

static void test_innermost_env_wins(void **state)
{
	struct pipe_run *run = load_ok("env: { V: pipeline, P: p }\n"
				       "jobs:\n"
				       "  a:\n"
				       "    image: x\n"
				       "    env: { V: job }\n"
				       "    steps:\n"
				       "      - run: echo ${{ env.V }} ${{ env.P }}\n"
				       "      - run: echo ${{ env.V }}\n"
				       "        env: { V: step }\n");
	const struct pipe_job *j = &run->jobs[0];
	assert_string_equal(j->steps[0].run, "echo job p");
	assert_string_equal(j->steps[1].run, "echo step");
	/* The job's env overlays the pipeline's, keeping the pipeline's order. */
	assert_int_equal(j->n_env, 2);
	assert_string_equal(j->env[0].key, "V");
	assert_string_equal(j->env[0].value, "job");
	assert_string_equal(j->env[1].key, "P");
	assert_string_equal(run->env[0].value, "pipeline");
	pipe_run_free(run);
}

static void test_vmci_names_are_kept_without_values(void **state)
{
	struct pipe_run *run =
	    load_ok("jobs:\n"
		    "  a:\n"
		    "    image: x\n"
		    "    env: { SHA: \"${{vmci.sha}}\" }\n"
		    "    steps:\n"
		    "      - run: \"git checkout ${{ vmci.ref }} # ${{ vmci.run_id }}\"\n");
	const struct pipe_job *j = &run->jobs[0];
	assert_string_equal(var(j->env, j->n_env, "SHA"), "${{vmci.sha}}");
	assert_string_equal(j->steps[0].run, "git checkout ${{ vmci.ref }} # ${{ vmci.run_id }}");

	struct pipe_vars vars = {.sha = "abc123", .ref = "refs/heads/main", .run_id = "42"};
	struct buf out = {0};
	assert_int_equal(pipe_expand_vars(j->steps[0].run, &vars, &out), 0);
	assert_string_equal(buf_cstr(&out), "git checkout refs/heads/main # 42");
	out.len = 0;
	assert_int_equal(pipe_expand_vars("${{ vmci.sha }} ${{ matrix.x }} ${{ x", &vars, &out), 0);
	assert_string_equal(buf_cstr(&out), "abc123 ${{ matrix.x }} ${{ x");
	buf_free(&out);
	pipe_run_free(run);
}

static void test_vmci_names_expand_with_values_given(void **state)
{
	struct pipe_vars vars = {.sha = "abc123", .ref = NULL, .run_id = "7"};
	struct pipe_run *run = load_ok_opts("name: build ${{ vmci.run_id }}\n"
					    "jobs:\n"
					    "  a:\n"
					    "    image: x\n"
					    "    steps:\n"
					    "      - run: echo ${{ vmci.sha }} ${{ vmci.ref }}\n",
					    (struct pipe_load_opts){.vars = &vars});
	assert_string_equal(run->name, "build 7");
	assert_string_equal(run->jobs[0].steps[0].run, "echo abc123 ${{ vmci.ref }}");
	pipe_run_free(run);
}

static void test_unknown_matrix_key_suggests_nearest(void **state)
{
	assert_errors("jobs:\n"
		      "  build:\n"
		      "    image: ${{ matrix.oss }}\n"
		      "    strategy: { matrix: { os: [a], cc: [gcc] } }\n"
		      "    steps:\n"
		      "      - run: make CC=${{ matrix.nope }}\n",
		      "t.yml:3:12: error: unknown matrix key 'oss' in job 'build' (did you mean "
		      "'os'?)\n"
		      "t.yml:6:22: error: unknown matrix key 'nope' in step 1 of job 'build'\n");
}

static void test_matrix_in_job_without_matrix(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    image: ${{ matrix.os }}\n"
		      "    steps: [{run: x}]\n",
		      "t.yml:3:12: error: unknown name 'matrix.os': job 'a' has no matrix\n");
}

static void test_matrix_in_pipeline_env_is_refused(void **state)
{
	assert_errors(
	    "env: { OS: \"${{ matrix.os }}\" }\n"
	    "jobs:\n"
	    "  a:\n" JOB_BODY,
	    "t.yml:1:13: error: unknown name 'matrix.os': the matrix belongs to a job, not "
	    "the pipeline's env\n");
}

static void test_unknown_context_suggests_nearest(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    env: { A: \"${{ foo.bar }}\", B: \"${{ matirx.os }}\" }\n"
	    "    steps: [{run: x}]\n",
	    "t.yml:4:16: error: unknown name 'foo.bar'; expressions know matrix, env and vmci\n"
	    "t.yml:4:37: error: unknown name 'matirx.os' (did you mean 'matrix.os'?); "
	    "expressions know matrix, env and vmci\n");
}

static void test_unknown_vmci_name(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    steps: [{run: \"${{ vmci.sah }} ${{ vmci.commit }}\"}]\n",
	    "t.yml:4:20: error: unknown name 'vmci.sah' (did you mean 'vmci.sha'?)\n"
	    "t.yml:4:36: error: unknown name 'vmci.commit'; vmci has sha, ref and run_id\n");
}

static void test_unknown_env_name(void **state)
{
	assert_errors(
	    "env: { CFLAGS: -O2 }\n"
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    steps: [{run: \"${{ env.CFLAG }}\"}]\n",
	    "t.yml:5:20: error: unknown name 'env.CFLAG' in step 1 of job 'a': no env sets it "
	    "here (did you mean 'env.CFLAGS'?)\n");
}

static void test_env_value_cannot_see_its_own_level(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    image: x\n"
		      "    env: { A: a, B: \"${{ env.A }}\" }\n"
		      "    steps: [{run: x}]\n",
		      "t.yml:4:22: error: unknown name 'env.A' in job 'a': no env sets it here\n");
}

static void test_expression_position_inside_literal_block(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    steps:\n"
	    "      - run: |\n"
	    "          make\n"
	    "\n"
	    "            echo é ${{ matrix.x }}\n",
	    "t.yml:8:20: error: unknown name 'matrix.x': step 1 of job 'a' has no matrix\n");
}

static void test_expression_in_folded_block_points_at_scalar(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    steps:\n"
	    "      - run: >\n"
	    "          make\n"
	    "          ${{ env.X }}\n",
	    "t.yml:5:14: error: unknown name 'env.X' in step 1 of job 'a': no env sets it "
	    "here\n");
}

static void test_unterminated_and_unsupported_expressions(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    steps:\n"
	    "      - run: echo ${{ matrix.os\n"
	    "      - run: echo ${{ }}\n"
	    "      - run: echo ${{ format('{0}', env.A) }}\n"
	    "      - run: echo ${{ env.A.B }}\n",
	    "t.yml:5:19: error: unterminated expression: '${{' without '}}'\n"
	    "t.yml:6:19: error: unsupported expression '': only matrix.KEY, env.NAME, "
	    "vmci.sha, vmci.ref and vmci.run_id expand\n"
	    "t.yml:7:19: error: unsupported expression 'format('{0}', env.A)': only "
	    "matrix.KEY, env.NAME, vmci.sha, vmci.ref and vmci.run_id expand\n"
	    "t.yml:8:19: error: unsupported expression 'env.A.B': only matrix.KEY, env.NAME, "
	    "vmci.sha, vmci.ref and vmci.run_id expand\n");
}

static void test_expressions_refused_outside_expanding_fields(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    image: x\n"
	    "    strategy: { matrix: { t: [5m] } }\n"
	    "    timeout: ${{ matrix.t }}\n"
	    "    artifacts: [\"out/${{ matrix.t }}\"]\n"
	    "    steps:\n"
	    "      - run: x\n"
	    "        workdir: ${{ matrix.t }}\n",
	    "t.yml:5:14: error: timeout of job 'a' must be a duration such as 90s, 20m or "
	    "1h30m, not '${{ matrix.t }}'\n"
	    "t.yml:6:22: error: an artifact of job 'a' cannot use ${{ }}: expressions expand "
	    "only in image, env, run and name\n"
	    "t.yml:9:18: error: workdir of step 1 of job 'a' cannot use ${{ }}: expressions "
	    "expand only in image, env, run and name\n");
}

static void test_key_added_by_some_includes_is_empty_elsewhere(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n"
				       "    image: x\n"
				       "    strategy:\n"
				       "      matrix:\n"
				       "        os: [a, b]\n"
				       "        include: [{os: b, extra: '--coverage'}]\n"
				       "    steps: [{run: \"make ${{ matrix.extra }}\"}]\n");
	assert_string_equal(run->jobs[0].steps[0].run, "make ");
	assert_string_equal(run->jobs[1].steps[0].run, "make --coverage");
	pipe_run_free(run);
}

static void test_constant_steps_are_shared_by_combinations(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n"
				       "    image: ${{ matrix.os }}\n"
				       "    strategy: { matrix: { os: [a, b, c] } }\n"
				       "    steps: [{run: make}]\n");
	assert_ptr_equal(run->jobs[0].steps, run->jobs[2].steps);
	assert_ptr_equal(run->jobs[0].env, run->jobs[2].env);
	assert_string_equal(run->jobs[2].image, "c");
	pipe_run_free(run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_matrix_and_env_expand_in_image_env_run_name),
	    cmocka_unit_test(test_innermost_env_wins),
	    cmocka_unit_test(test_vmci_names_are_kept_without_values),
	    cmocka_unit_test(test_vmci_names_expand_with_values_given),
	    cmocka_unit_test(test_unknown_matrix_key_suggests_nearest),
	    cmocka_unit_test(test_matrix_in_job_without_matrix),
	    cmocka_unit_test(test_matrix_in_pipeline_env_is_refused),
	    cmocka_unit_test(test_unknown_context_suggests_nearest),
	    cmocka_unit_test(test_unknown_vmci_name),
	    cmocka_unit_test(test_unknown_env_name),
	    cmocka_unit_test(test_env_value_cannot_see_its_own_level),
	    cmocka_unit_test(test_expression_position_inside_literal_block),
	    cmocka_unit_test(test_expression_in_folded_block_points_at_scalar),
	    cmocka_unit_test(test_unterminated_and_unsupported_expressions),
	    cmocka_unit_test(test_expressions_refused_outside_expanding_fields),
	    cmocka_unit_test(test_key_added_by_some_includes_is_empty_elsewhere),
	    cmocka_unit_test(test_constant_steps_are_shared_by_combinations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
