/* common/packages.c: the table of packages.txt, compiled in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* packages.txt of the source tree this test was built from: above the test binary. */
static void read_packages_txt(struct buf *out)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	assert_int_equal(fs_self_dir(dir, sizeof(dir)), 0);
	for (;;) {
		snprintf(path, sizeof(path), "%s/packages.txt", dir);
		if (fs_exists(path))
			break;
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir)
			fail_msg("no packages.txt above the test binary");
		*slash = 0;
	}
	assert_int_equal(fs_read_file(path, 1 << 20, out, NULL), 0);
}

static void test_the_compiled_table_is_packages_txt(void **state)
{
	struct buf text = {0};
	read_packages_txt(&text);
	size_t pos = 0, rows = 0;
	struct pkg_info pkg;
	char *save = NULL;
	for (char *line = strtok_r((char *)buf_cstr(&text), "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[64];
		if (sscanf(line, " %63s", name) != 1 || name[0] == '#')
			continue;
		/* Every line is read, none skipped as malformed. */
		assert_true(pkg_next(&pos, &pkg));
		assert_string_equal(pkg.name, name);
		assert_true(pkg.purpose[0] != 0);
		rows++;
	}
	assert_false(pkg_next(&pos, &pkg));
	assert_true(rows >= 20);
	buf_free(&text);
}

static void test_programs_map_to_their_packages(void **state)
{
	static const struct {
		const char *prog, *pkg;
	} known[] = {
	    {"qemu-img", "qemu-utils"},
	    {"qemu-system-x86_64", "qemu-system-x86"},
	    {"qemu-system-aarch64", "qemu-system-arm"},
	    {"mke2fs", "e2fsprogs"},
	    {"/usr/sbin/debootstrap", "debootstrap"},
	    {"apt-get", "apt"},
	    {"apt-cache", "apt"},
	    {"busybox", "busybox-static"},
	};
	char out[64];
	for (size_t i = 0; i < ARRAY_LEN(known); i++) {
		assert_ptr_equal(pkg_providing(known[i].prog, out, sizeof(out)), out);
		assert_string_equal(out, known[i].pkg);
	}
	/* Whole program names only. */
	assert_null(pkg_providing("qemu", out, sizeof(out)));
	assert_null(pkg_providing("apt", out, sizeof(out)));
	assert_null(pkg_providing("no-such-program", out, sizeof(out)));
}

static void test_run_time_packages_are_required_or_optional(void **state)
{
	static const struct {
		const char *name;
		enum pkg_need need;
	} run[] = {
	    {"qemu-system-x86", PKG_RUN}, {"qemu-system-arm", PKG_OPTIONAL},
	    {"qemu-utils", PKG_RUN},	  {"busybox-static", PKG_RUN},
	    {"e2fsprogs", PKG_RUN},	  {"debootstrap", PKG_OPTIONAL},
	    {"libcmocka-dev", PKG_TEST},  {"build-essential", PKG_BUILD},
	};
	for (size_t i = 0; i < ARRAY_LEN(run); i++) {
		struct pkg_info pkg;
		size_t pos = 0;
		bool found = false;
		while (!found && pkg_next(&pos, &pkg))
			found = !strcmp(pkg.name, run[i].name);
		if (!found)
			fail_msg("%s is not in packages.txt", run[i].name);
		assert_int_equal(pkg.need, run[i].need);
	}
}

static void test_a_missing_program_names_its_package(void **state)
{
	struct vmci_err err = {0};
	assert_int_equal(pkg_err_missing(&err, "mke2fs"), -ENOENT);
	assert_int_equal(err.code, ENOENT);
	assert_string_equal(
	    err.msg, "mke2fs not found (install the Debian package e2fsprogs, or run: make deps)");
	assert_int_equal(pkg_err_missing(&err, "frobnicate"), -ENOENT);
	assert_string_equal(err.msg, "frobnicate not found in $PATH");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_compiled_table_is_packages_txt),
	    cmocka_unit_test(test_programs_map_to_their_packages),
	    cmocka_unit_test(test_run_time_packages_are_required_or_optional),
	    cmocka_unit_test(test_a_missing_program_names_its_package),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
