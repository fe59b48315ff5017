/* common/path.c: path_search finds programs as execvp does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[PATH_MAX];
static char *saved_path;
static char saved_cwd[PATH_MAX];

static int setup(void **state)
{
	const char *t = getenv("TMPDIR");
	snprintf(tmp, sizeof(tmp), "%s/vmci-path-XXXXXX", t ? t : "/tmp");
	saved_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	return mkdtemp(tmp) && getcwd(saved_cwd, sizeof(saved_cwd)) ? 0 : -1;
}

static int teardown(void **state)
{
	if (saved_path)
		setenv("PATH", saved_path, 1);
	else
		unsetenv("PATH");
	free(saved_path);
	int rc = chdir(saved_cwd);
	return fs_rm_rf(tmp, NULL) || rc ? -1 : 0;
}

/* Makes tmp/dir/name with mode (a directory when mode is 0). */
static void make(const char *dir, const char *name, mode_t mode)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", tmp, dir);
	assert_int_equal(fs_mkdir_p(path, 0755, NULL), 0);
	snprintf(path, sizeof(path), "%s/%s/%s", tmp, dir, name);
	if (mode)
		assert_int_equal(fs_write_atomic(path, "#!/bin/sh\n", 10, mode, NULL), 0);
	else
		assert_int_equal(fs_mkdir_p(path, 0755, NULL), 0);
}

static void set_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void set_path(const char *fmt, ...)
{
	char path[4 * PATH_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	setenv("PATH", path, 1);
}

static void test_the_first_executable_in_path_order_wins(void **state)
{
	make("a", "prog", 0644); /* not executable */
	make("b", "prog", 0);	 /* a directory */
	make("c", "prog", 0755);
	make("d", "prog", 0755);
	set_path("%s/none:%s/a:%s/b:%s/c:%s/d", tmp, tmp, tmp, tmp, tmp);
	char out[PATH_MAX], want[PATH_MAX];
	assert_int_equal(path_search("prog", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "%s/c/prog", tmp);
	assert_string_equal(out, want);
}

static void test_a_missing_program_is_enoent(void **state)
{
	set_path("%s/a:%s/b", tmp, tmp);
	char out[PATH_MAX];
	assert_int_equal(path_search("prog", out, sizeof(out)), -ENOENT);
	assert_int_equal(path_search("no-such-program", out, sizeof(out)), -ENOENT);
	assert_int_equal(path_search("", out, sizeof(out)), -ENOENT);
}

static void test_an_empty_entry_is_the_current_directory(void **state)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/d", tmp);
	assert_int_equal(chdir(dir), 0);
	set_path("%s/a:", tmp);
	char out[PATH_MAX];
	assert_int_equal(path_search("prog", out, sizeof(out)), 0);
	assert_string_equal(out, "./prog");
	assert_int_equal(chdir(saved_cwd), 0);
}

static void test_a_name_with_a_slash_is_not_searched(void **state)
{
	set_path("%s/c", tmp);
	char out[PATH_MAX], name[PATH_MAX];
	snprintf(name, sizeof(name), "%s/d/prog", tmp);
	assert_int_equal(path_search(name, out, sizeof(out)), 0);
	assert_string_equal(out, name);
	snprintf(name, sizeof(name), "%s/a/prog", tmp);
	assert_int_equal(path_search(name, out, sizeof(out)), -ENOENT);
	assert_int_equal(chdir(tmp), 0); /* no prog here, though PATH has one */
	assert_int_equal(path_search("./prog", out, sizeof(out)), -ENOENT);
	assert_int_equal(chdir(saved_cwd), 0);
}

static void test_without_path_the_system_directories_are_searched(void **state)
{
	char out[PATH_MAX];
	unsetenv("PATH");
	assert_int_equal(path_search("sh", out, sizeof(out)), 0);
	assert_true(!strcmp(out, "/usr/local/bin/sh") || !strcmp(out, "/usr/bin/sh") ||
		    !strcmp(out, "/bin/sh"));
	setenv("PATH", "", 1);
	assert_int_equal(path_search("sh", out, sizeof(out)), 0);
}

static void test_a_path_too_long_for_out_is_reported(void **state)
{
	set_path("%s/c", tmp);
	char out[8];
	assert_int_equal(path_search("prog", out, sizeof(out)), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_first_executable_in_path_order_wins),
	    cmocka_unit_test(test_a_missing_program_is_enoent),
	    cmocka_unit_test(test_an_empty_entry_is_the_current_directory),
	    cmocka_unit_test(test_a_name_with_a_slash_is_not_searched),
	    cmocka_unit_test(test_without_path_the_system_directories_are_searched),
	    cmocka_unit_test(test_a_path_too_long_for_out_is_reported),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
