/* images/agent_path.c: finding the guest agent and the recipe files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];

static int make_tmp(void **state)
{
	snprintf(tmp, sizeof(tmp), "%s/vmci-agent-path-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmp) ? 0 : -1;
}

static int remove_tmp(void **state)
{
	unsetenv("VMCI_AGENT_DIR");
	unsetenv("VMCI_RECIPES_DIR");
	return fs_rm_rf(tmp, NULL);
}

static void test_agent_dir_from_the_environment(void **state)
{
	char agent[PATH_MAX], real[PATH_MAX], got[PATH_MAX];
	fs_path(agent, sizeof(agent), "%s/vmci-agent-x86_64", tmp);
	assert_int_equal(fs_write_atomic(agent, "\177ELF", 4, 0755, NULL), 0);
	setenv("VMCI_AGENT_DIR", tmp, 1);
	assert_int_equal(img_agent_path("x86_64", got, sizeof(got), NULL), 0);
	assert_non_null(realpath(agent, real));
	assert_string_equal(got, real);

	struct vmci_err err = {0};
	assert_int_equal(img_agent_path("aarch64", got, sizeof(got), &err), -ENOENT);
	assert_non_null(strstr(err.msg, "make build/agent/vmci-agent-aarch64"));
	assert_non_null(strstr(err.msg, tmp));
}

static void test_agent_that_is_not_executable_is_not_found(void **state)
{
	char agent[PATH_MAX], got[PATH_MAX];
	fs_path(agent, sizeof(agent), "%s/vmci-agent-x86_64", tmp);
	assert_int_equal(fs_write_atomic(agent, "data", 4, 0644, NULL), 0);
	setenv("VMCI_AGENT_DIR", tmp, 1);
	assert_int_equal(img_agent_path("x86_64", got, sizeof(got), NULL), -ENOENT);
}

static void test_agent_beside_the_executable(void **state)
{
	unsetenv("VMCI_AGENT_DIR");
	char self[PATH_MAX], got[PATH_MAX];
	assert_int_equal(fs_self_dir(self, sizeof(self)), 0);
	struct vmci_err err = {0};
	/* No test build puts an agent for this made-up arch there. */
	assert_int_equal(img_agent_path("testarch", got, sizeof(got), &err), -ENOENT);
	assert_non_null(strstr(err.msg, self));
	assert_non_null(strstr(err.msg, "VMCI_AGENT_DIR"));
}

static void test_bad_arch_names_are_refused(void **state)
{
	char got[PATH_MAX];
	assert_int_equal(img_agent_path("../x86_64", got, sizeof(got), NULL), -EINVAL);
	assert_int_equal(img_agent_path("", got, sizeof(got), NULL), -EINVAL);
	assert_int_equal(img_recipe_path("a/b", got, sizeof(got), NULL), -EINVAL);
}

static void test_recipe_found_in_the_source_tree(void **state)
{
	/* Tests run from build/tests/unit/images inside the checkout. */
	unsetenv("VMCI_RECIPES_DIR");
	char got[PATH_MAX];
	struct vmci_err err = {0};
	assert_int_equal(img_recipe_path("busybox-x86_64", got, sizeof(got), &err), 0);
	assert_non_null(strstr(got, "/images/recipes/busybox-x86_64.yml"));
	assert_int_equal(img_recipe_path("no-such-recipe", got, sizeof(got), &err), -ENOENT);
	assert_non_null(strstr(err.msg, "VMCI_RECIPES_DIR"));
}

static void test_recipe_dir_from_the_environment(void **state)
{
	char file[PATH_MAX], got[PATH_MAX];
	fs_path(file, sizeof(file), "%s/mine.yml", tmp);
	assert_int_equal(fs_write_atomic(file, "name: mine\n", 11, 0644, NULL), 0);
	setenv("VMCI_RECIPES_DIR", tmp, 1);
	assert_int_equal(img_recipe_path("mine", got, sizeof(got), NULL), 0);
	assert_non_null(strstr(got, "/mine.yml"));
	struct vmci_err err = {0};
	assert_int_equal(img_recipe_path("busybox-x86_64", got, sizeof(got), &err), -ENOENT);
	assert_non_null(strstr(err.msg, tmp));
	unsetenv("VMCI_RECIPES_DIR");
}

/* Makes tmp/NAME with a line of text. */
static void touch(const char *name)
{
	char path[PATH_MAX];
	fs_path(path, sizeof(path), "%s/%s", tmp, name);
	assert_int_equal(fs_write_atomic(path, "name: x\n", 8, 0644, NULL), 0);
}

static void test_recipe_names_are_the_files_in_the_recipes_dir(void **state)
{
	touch("zeta.yml");
	touch("alpha.yml");
	touch("notes.txt");
	touch(".hidden.yml");
	touch(".yml");
	setenv("VMCI_RECIPES_DIR", tmp, 1);
	char **names = NULL;
	assert_int_equal(img_recipe_names(&names, NULL), 0);
	assert_string_equal(names[0], "alpha");
	assert_string_equal(names[1], "zeta");
	assert_null(names[2]);
	img_names_free(names);
	char dir[PATH_MAX], real[PATH_MAX];
	assert_int_equal(img_recipes_dir(dir, sizeof(dir), NULL), 0);
	assert_non_null(realpath(tmp, real));
	assert_string_equal(dir, real);
}

static void test_an_empty_recipes_dir_has_no_names(void **state)
{
	setenv("VMCI_RECIPES_DIR", tmp, 1);
	char **names = NULL;
	assert_int_equal(img_recipe_names(&names, NULL), 0);
	assert_null(names[0]);
	img_names_free(names);
}

static void test_the_source_tree_recipes_are_found(void **state)
{
	unsetenv("VMCI_RECIPES_DIR");
	char **names = NULL;
	struct vmci_err err = {0};
	if (img_recipe_names(&names, &err))
		fail_msg("%s", err.msg);
	size_t n = 0;
	while (names[n])
		n++;
	static const char *const shipped[] = {"busybox-aarch64", "busybox-x86_64", "debian-12"};
	for (size_t i = 0; i < ARRAY_LEN(shipped); i++) {
		bool found = false;
		for (size_t k = 0; k < n && !found; k++)
			found = !strcmp(names[k], shipped[i]);
		if (!found)
			fail_msg("recipe %s was not listed", shipped[i]);
	}
	for (size_t k = 1; k < n; k++)
		assert_true(strcmp(names[k - 1], names[k]) < 0);
	img_names_free(names);
}

static void test_a_missing_recipes_dir_is_an_error(void **state)
{
	char missing[PATH_MAX];
	fs_path(missing, sizeof(missing), "%s/none", tmp);
	setenv("VMCI_RECIPES_DIR", missing, 1);
	char **names = NULL;
	struct vmci_err err = {0};
	assert_int_equal(img_recipe_names(&names, &err), -ENOENT);
	assert_null(names);
	assert_non_null(strstr(err.msg, missing));
	assert_non_null(strstr(err.msg, "VMCI_RECIPES_DIR"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_agent_dir_from_the_environment, make_tmp,
					    remove_tmp),
	    cmocka_unit_test_setup_teardown(test_agent_that_is_not_executable_is_not_found,
					    make_tmp, remove_tmp),
	    cmocka_unit_test(test_agent_beside_the_executable),
	    cmocka_unit_test(test_bad_arch_names_are_refused),
	    cmocka_unit_test(test_recipe_found_in_the_source_tree),
	    cmocka_unit_test_setup_teardown(test_recipe_dir_from_the_environment, make_tmp,
					    remove_tmp),
	    cmocka_unit_test_setup_teardown(test_recipe_names_are_the_files_in_the_recipes_dir,
					    make_tmp, remove_tmp),
	    cmocka_unit_test_setup_teardown(test_an_empty_recipes_dir_has_no_names, make_tmp,
					    remove_tmp),
	    cmocka_unit_test(test_the_source_tree_recipes_are_found),
	    cmocka_unit_test_setup_teardown(test_a_missing_recipes_dir_is_an_error, make_tmp,
					    remove_tmp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
