/*
 * The YAML a real pipeline file uses: anchors and aliases, merge keys,
 * block and flow styles, block scalars, quoting; and what the parser
 * refuses: duplicate keys, tabs, bad aliases, alias bombs, several
 * documents, text that is not UTF-8.
 */
#include "helpers.h"

static void test_alias_shares_anchored_steps(void **state)
{
	struct pipe_run *run = load_ok("x-steps: &steps\n"
				       "  - run: make\n"
				       "  - run: make check\n"
				       "jobs:\n"
				       "  a:\n"
				       "    image: debian-12\n"
				       "    steps: *steps\n"
				       "  b:\n"
				       "    image: busybox-x86_64\n"
				       "    steps: *steps\n");
	assert_int_equal(run->n_jobs, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(run->jobs[i].n_steps, 2);
		assert_string_equal(run->jobs[i].steps[1].run, "make check");
	}
	pipe_run_free(run);
}

static void test_merge_key_explicit_keys_win_wherever_written(void **state)
{
	struct pipe_run *run = load_ok("x-defaults: &defaults\n"
				       "  image: debian-12\n"
				       "  timeout: 5m\n"
				       "  retries: 2\n"
				       "jobs:\n"
				       "  a:\n"
				       "    retries: 1\n"
				       "    <<: *defaults\n"
				       "    steps: [{run: make}]\n");
	assert_string_equal(run->jobs[0].image, "debian-12");
	assert_int_equal(run->jobs[0].timeout_ms, 5 * 60 * 1000);
	assert_int_equal(run->jobs[0].retries, 1);
	pipe_run_free(run);
}

static void test_merge_key_list_earlier_maps_win(void **state)
{
	struct pipe_run *run = load_ok("x-a: &a { image: from-a, retries: 1 }\n"
				       "x-b: &b { image: from-b, retries: 2, timeout: 90s }\n"
				       "jobs:\n"
				       "  j:\n"
				       "    <<: [*a, *b]\n"
				       "    steps: [{run: make}]\n");
	assert_string_equal(run->jobs[0].image, "from-a");
	assert_int_equal(run->jobs[0].retries, 1);
	assert_int_equal(run->jobs[0].timeout_ms, 90 * 1000);
	pipe_run_free(run);
}

static void test_merge_key_chains_through_anchored_jobs(void **state)
{
	struct pipe_run *run = load_ok("x-base: &base { image: debian-12, timeout: 5m }\n"
				       "jobs:\n"
				       "  a: &job\n"
				       "    <<: *base\n"
				       "    steps: [{run: make}]\n"
				       "  b:\n"
				       "    <<: [*job, {retries: 2, image: ignored}]\n"
				       "    image: busybox-x86_64\n");
	assert_string_equal(run->jobs[1].image, "busybox-x86_64");
	assert_int_equal(run->jobs[1].retries, 2);
	assert_int_equal(run->jobs[1].timeout_ms, 5 * 60 * 1000);
	assert_string_equal(run->jobs[1].steps[0].run, "make");
	pipe_run_free(run);
}

static void test_merge_key_refuses_a_string(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "    <<: debian\n" JOB_BODY,
	    "t.yml:3:9: error: merge key '<<' needs a mapping or a list of mappings, not a "
	    "string\n");
}

static void test_repeated_merge_key_is_a_duplicate(void **state)
{
	assert_errors("x-a: &a {image: a}\n"
		      "x-b: &b {retries: 1}\n"
		      "jobs:\n"
		      "  j:\n"
		      "    <<: *a\n"
		      "    <<: *b\n"
		      "    steps: [{run: make}]\n",
		      "t.yml:6:5: error: duplicate key '<<' (first at line 5, column 5)\n");
}

static void test_quoted_merge_key_is_an_ordinary_key(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    \"<<\": {image: x}\n" JOB_BODY,
		      "t.yml:3:5: error: unknown key '<<' in job 'a'\n");
}

static void test_flow_and_block_styles_mix(void **state)
{
	struct pipe_run *run = load_ok("{jobs: {a: {image: debian-12, steps: [{run: make}, "
				       "{run: 'make check', timeout: 1m}]}}}\n");
	assert_int_equal(run->jobs[0].n_steps, 2);
	assert_int_equal(run->jobs[0].steps[1].timeout_ms, 60000);
	pipe_run_free(run);
}

static void test_literal_and_folded_scalars(void **state)
{
	struct pipe_run *run = load_ok("jobs:\n"
				       "  a:\n"
				       "    image: debian-12\n"
				       "    steps:\n"
				       "      - run: |\n"
				       "          make\n"
				       "            indented\n"
				       "      - run: >\n"
				       "          one\n"
				       "          line\n"
				       "      - run: |-\n"
				       "          no newline\n");
	assert_string_equal(run->jobs[0].steps[0].run, "make\n  indented\n");
	assert_string_equal(run->jobs[0].steps[1].run, "one line\n");
	assert_string_equal(run->jobs[0].steps[2].run, "no newline");
	pipe_run_free(run);
}

static void test_quoted_strings_keep_their_text(void **state)
{
	struct pipe_run *run =
	    load_ok("jobs:\n"
		    "  a:\n"
		    "    image: \"debian-12\"\n"
		    "    env: { A: 'it''s', B: \"tab\\there\", C: \"true\", D: '007' }\n"
		    "    steps: [{run: \"echo \\\"hi\\\"\"}]\n");
	const struct pipe_job *j = &run->jobs[0];
	assert_string_equal(var(j->env, j->n_env, "A"), "it's");
	assert_string_equal(var(j->env, j->n_env, "B"), "tab\there");
	assert_string_equal(var(j->env, j->n_env, "C"), "true");
	assert_string_equal(var(j->env, j->n_env, "D"), "007");
	assert_string_equal(j->steps[0].run, "echo \"hi\"");
	pipe_run_free(run);
}

static void test_duplicate_key_names_first(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    image: x\n"
		      "    image: y\n"
		      "    steps: [{run: make}]\n",
		      "t.yml:4:5: error: duplicate key 'image' (first at line 3, column 5)\n");
}

static void test_duplicate_job_id_is_an_error(void **state)
{
	assert_errors("jobs:\n"
		      "  a: {image: x, steps: [{run: a}]}\n"
		      "  a: {image: y, steps: [{run: b}]}\n",
		      "t.yml:3:3: error: duplicate key 'a' (first at line 2, column 3)\n");
}

static void test_tab_indentation_gets_libyaml_error_and_hint(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n"
	    "\timage: x\n",
	    "t.yml:3:1: error: found character that cannot start any token (while scanning "
	    "for the next token); indent with spaces, not tabs\n");
}

static void test_tab_inside_block_sequence_gets_libyaml_error(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    image: x\n"
		      "    steps:\n"
		      "      - run: a\n"
		      "\t- run: b\n",
		      "t.yml:6:1: error: found a tab character that violates indentation (while "
		      "scanning a plain scalar)\n");
}

static void test_syntax_error_has_libyaml_position(void **state)
{
	assert_errors("jobs: [a\n",
		      "t.yml:2:1: error: did not find expected ',' or ']' (while parsing a flow "
		      "sequence)\n");
}

static void test_alias_to_unknown_anchor(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n"
		      "    image: x\n"
		      "    steps: *nope\n",
		      "t.yml:4:12: error: alias '*nope' refers to no anchor '&nope' defined before "
		      "it\n");
}

static void test_alias_inside_its_own_anchor_is_refused(void **state)
{
	assert_errors("x-a: &x [*x]\n"
		      "jobs:\n"
		      "  a:\n" JOB_BODY,
		      "t.yml:1:10: error: alias '*x' refers to a node that contains it\n");
}

static void test_billion_laughs_is_refused_quickly(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "x-0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
	for (int i = 1; i < 10; i++) {
		buf_appendf(&text, "x-%d: &a%d [", i, i);
		for (int j = 0; j < 10; j++)
			buf_appendf(&text, "%s*a%d", j ? ", " : "", i - 1);
		buf_appendf(&text, "]\n");
	}
	buf_appendf(&text, "jobs:\n  a:\n" JOB_BODY);
	int64_t t0 = clock_ms();
	char *got = errors_opts(buf_cstr(&text), text.len, (struct pipe_load_opts){0});
	assert_true(clock_ms() - t0 < 1000);
	assert_string_equal(got, "t.yml:6:56: error: the document has more than 1000000 nodes, "
				 "counting each alias as a copy of its anchor; anchors may not "
				 "multiply a file this much\n");
	free(got);
	buf_free(&text);
}

static void test_second_document_is_refused(void **state)
{
	assert_errors(
	    "jobs:\n"
	    "  a:\n" JOB_BODY "---\n"
	    "jobs: {}\n",
	    "t.yml:6:1: error: a pipeline file holds one YAML document; remove this second "
	    "one or the '---' before it\n");
}

static void test_empty_file_has_no_position(void **state)
{
	assert_errors("", "t.yml: error: the file is empty: a pipeline needs at least 'jobs'\n");
	assert_errors("# only a comment\n",
		      "t.yml: error: the file is empty: a pipeline needs at least 'jobs'\n");
}

static void test_root_must_be_a_mapping(void **state)
{
	assert_errors("- a\n", "t.yml:1:1: error: a pipeline must be a mapping with 'jobs', not a "
			       "list\n");
}

static void test_invalid_utf8_names_the_byte(void **state)
{
	assert_errors(
	    "jobs:\n  a: \xff\n",
	    "t.yml:2:6: error: invalid leading UTF-8 octet (byte 0xff); a pipeline file must "
	    "be UTF-8 text\n");
}

static void test_nul_byte_is_refused_not_truncated(void **state)
{
	static const char text[] = "jobs:\n  a:\0\n";
	char *got = errors_opts(text, sizeof(text) - 1, (struct pipe_load_opts){0});
	assert_non_null(strstr(got, "t.yml:2:5: error: control characters are not allowed"));
	free(got);
}

static void test_mapping_key_must_be_a_string(void **state)
{
	assert_errors("jobs:\n"
		      "  a:\n" JOB_BODY "  ? [x, y]\n"
		      "  : 1\n",
		      "t.yml:6:5: error: a mapping key must be a string, not a list\n");
}

static void test_deep_nesting_is_refused(void **state)
{
	struct buf text = {0};
	buf_appendf(&text, "jobs: ");
	for (int i = 0; i < 2000; i++)
		buf_appendf(&text, "[");
	char *got = errors_opts(buf_cstr(&text), text.len, (struct pipe_load_opts){0});
	assert_string_equal(got, "t.yml:1:518: error: nesting deeper than 512 levels\n");
	free(got);
	buf_free(&text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alias_shares_anchored_steps),
	    cmocka_unit_test(test_merge_key_explicit_keys_win_wherever_written),
	    cmocka_unit_test(test_merge_key_list_earlier_maps_win),
	    cmocka_unit_test(test_merge_key_chains_through_anchored_jobs),
	    cmocka_unit_test(test_merge_key_refuses_a_string),
	    cmocka_unit_test(test_repeated_merge_key_is_a_duplicate),
	    cmocka_unit_test(test_quoted_merge_key_is_an_ordinary_key),
	    cmocka_unit_test(test_flow_and_block_styles_mix),
	    cmocka_unit_test(test_literal_and_folded_scalars),
	    cmocka_unit_test(test_quoted_strings_keep_their_text),
	    cmocka_unit_test(test_duplicate_key_names_first),
	    cmocka_unit_test(test_duplicate_job_id_is_an_error),
	    cmocka_unit_test(test_tab_indentation_gets_libyaml_error_and_hint),
	    cmocka_unit_test(test_tab_inside_block_sequence_gets_libyaml_error),
	    cmocka_unit_test(test_syntax_error_has_libyaml_position),
	    cmocka_unit_test(test_alias_to_unknown_anchor),
	    cmocka_unit_test(test_alias_inside_its_own_anchor_is_refused),
	    cmocka_unit_test(test_billion_laughs_is_refused_quickly),
	    cmocka_unit_test(test_second_document_is_refused),
	    cmocka_unit_test(test_empty_file_has_no_position),
	    cmocka_unit_test(test_root_must_be_a_mapping),
	    cmocka_unit_test(test_invalid_utf8_names_the_byte),
	    cmocka_unit_test(test_nul_byte_is_refused_not_truncated),
	    cmocka_unit_test(test_mapping_key_must_be_a_string),
	    cmocka_unit_test(test_deep_nesting_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
