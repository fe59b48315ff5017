/*
 * pipelines/events.c: whether a push to a ref starts a pipeline, by its
 * `on:` and the branch globs of on.push.branches.
 */
#include "helpers.h"

static bool selects(const char *on, const char *ref, char *why, size_t why_size)
{
	char yaml[1024];
	snprintf(yaml, sizeof(yaml), "%sjobs:\n  a:\n    image: debian-12\n    steps: [{run: x}]\n",
		 on);
	struct pipe_run *run = load_ok(yaml);
	bool yes = pipe_push_selects(run, ref, why, why_size);
	pipe_run_free(run);
	return yes;
}

static void test_without_on_every_push_starts_the_pipeline(void **state)
{
	assert_true(selects("", "refs/heads/anything", NULL, 0));
	assert_true(selects("", "refs/tags/v1.0", NULL, 0));
	assert_true(selects("on: push\n", "refs/heads/feature/x", NULL, 0));
	assert_true(selects("on: {push: {branches: []}}\n", "refs/heads/x", NULL, 0));
}

static void test_a_branch_list_selects_only_matching_branches(void **state)
{
	const char *on = "on: {push: {branches: [main, \"release/*\"]}}\n";
	char why[256];
	assert_true(selects(on, "refs/heads/main", why, sizeof(why)));
	assert_true(selects(on, "refs/heads/release/1.0", why, sizeof(why)));
	assert_true(selects(on, "main", why, sizeof(why)));
	assert_false(selects(on, "refs/heads/feature", why, sizeof(why)));
	assert_string_equal(why, "refs/heads/feature is not in on.push.branches (main, release/*)");
	assert_false(selects(on, "refs/heads/mainline", NULL, 0));
}

static void test_a_star_stays_in_one_path_segment_and_two_stars_do_not(void **state)
{
	const char *one = "on: {push: {branches: [\"release/*\", \"v?\"]}}\n";
	assert_false(selects(one, "refs/heads/release/1.0/hotfix", NULL, 0));
	assert_false(selects(one, "refs/heads/release", NULL, 0));
	assert_true(selects(one, "refs/heads/v2", NULL, 0));
	assert_false(selects(one, "refs/heads/v22", NULL, 0));
	const char *two = "on: {push: {branches: [\"release/**\", \"**-ci\"]}}\n";
	assert_true(selects(two, "refs/heads/release/1.0/hotfix", NULL, 0));
	assert_true(selects(two, "refs/heads/me/try-ci", NULL, 0));
	assert_false(selects(two, "refs/heads/me/try-cd", NULL, 0));
}

static void test_a_tag_is_not_a_branch_the_list_selects(void **state)
{
	char why[256];
	assert_false(
	    selects("on: {push: {branches: [\"**\"]}}\n", "refs/tags/v1.0", why, sizeof(why)));
	assert_string_equal(why, "refs/tags/v1.0 is not a branch, so not in on.push.branches (**)");
}

static void test_a_schedule_only_pipeline_runs_on_no_push(void **state)
{
	char why[256];
	assert_false(selects("on: {schedule: [{cron: \"0 3 * * *\"}]}\n", "refs/heads/main", why,
			     sizeof(why)));
	assert_non_null(strstr(why, "does not name push"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_without_on_every_push_starts_the_pipeline),
	    cmocka_unit_test(test_a_branch_list_selects_only_matching_branches),
	    cmocka_unit_test(test_a_star_stays_in_one_path_segment_and_two_stars_do_not),
	    cmocka_unit_test(test_a_tag_is_not_a_branch_the_list_selects),
	    cmocka_unit_test(test_a_schedule_only_pipeline_runs_on_no_push),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
