/*
 * images/pkgindex.c: packages checked against the package lists of the
 * suite an image is installed from, found through its recipe (and the
 * bases of recipes with one), compressed or not; images whose origin is
 * unknown, or whose lists are not kept, are not judged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/images.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char root[PATH_MAX];

static void write_file(const char *rel, const char *text)
{
	char path[PATH_MAX], dir[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	struct vmci_err err = {0};
	assert_int_equal(fs_mkdir_p(dir, 0755, &err), 0);
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, &err), 0);
}

static const char recipe_deb[] = "name: deb-x\n"
				 "arch: x86_64\n"
				 "kernel: {debian: cloud}\n"
				 "rootfs:\n"
				 "  debootstrap: {suite: bookworm}\n"
				 "disk_size: 1G\n";

#define LISTS "home/cache/apt/bookworm-amd64/state/lists/"

static int setup(void **state)
{
	snprintf(root, sizeof(root), "%s/vmci-pkgindex-XXXXXX", getenv("TMPDIR") ?: "/tmp");
	if (!mkdtemp(root))
		return -1;
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/home", root);
	setenv("VMCI_HOME", path, 1);
	snprintf(path, sizeof(path), "%s/recipes", root);
	setenv("VMCI_RECIPES_DIR", path, 1);
	write_file("recipes/deb-x.yml", recipe_deb);
	write_file("recipes/deb-x-tools.yml", "name: deb-x-tools\nbase: deb-x\npackages: [make]\n");
	write_file("recipes/deb-y.yml", "name: deb-y\n"
					"arch: x86_64\n"
					"kernel: {debian: cloud}\n"
					"rootfs:\n"
					"  debootstrap: {suite: trixie}\n"
					"disk_size: 1G\n");
	write_file(LISTS "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
		   "Package: hello\nVersion: 2.10-3\n\n"
		   "Package: mawk\nProvides: awk, mawk:any (= 1.3)\nVersion: 1.3\n\n");
	/* A second list, gzip-compressed as apt may keep them, and the Release apt also keeps. */
	write_file(LISTS "deb.debian.org_debian_dists_bookworm_contrib_binary-amd64_Packages",
		   "Package: libtool\nVersion: 2.4\n");
	write_file(LISTS "deb.debian.org_debian_dists_bookworm_InRelease", "Package: not-a-list\n");
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "gzip %s/" LISTS "*contrib*", root);
	return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	fs_rm_rf(root, NULL);
	return 0;
}

static void test_packages_and_what_they_provide_are_known(void **state)
{
	const char *want[] = {"hello", "awk", "libtool", "no-such-thing", "not-a-list"};
	bool known[5];
	char index[PATH_MAX + 128];
	struct vmci_err err = {0};
	assert_int_equal(img_packages_known("deb-x", want, 5, known, index, sizeof(index), &err),
			 1);
	assert_true(known[0]);
	assert_true(known[1]);
	assert_true(known[2]);
	assert_false(known[3]);
	assert_false(known[4]);
	assert_non_null(strstr(index, "Debian bookworm amd64 (package lists of "));
	assert_non_null(strstr(index, "/cache/apt/bookworm-amd64/state/lists)"));
}

static void test_a_recipe_with_a_base_is_checked_against_its_base(void **state)
{
	const char *want[] = {"hello", "helo"};
	bool known[2];
	char index[PATH_MAX + 128];
	struct vmci_err err = {0};
	assert_int_equal(
	    img_packages_known("deb-x-tools", want, 2, known, index, sizeof(index), &err), 1);
	assert_true(known[0]);
	assert_false(known[1]);
}

static void test_images_of_unknown_origin_or_without_lists_are_not_judged(void **state)
{
	const char *want[] = {"hello"};
	bool known[1];
	char index[64];
	struct vmci_err err = {0};
	/* No recipe: an imported image. */
	assert_int_equal(img_packages_known("imported", want, 1, known, index, sizeof(index), &err),
			 0);
	/* A recipe whose suite's lists vmci does not keep. */
	assert_int_equal(img_packages_known("deb-y", want, 1, known, index, sizeof(index), &err),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_packages_and_what_they_provide_are_known),
	    cmocka_unit_test(test_a_recipe_with_a_base_is_checked_against_its_base),
	    cmocka_unit_test(test_images_of_unknown_origin_or_without_lists_are_not_judged),
	};
	return cmocka_run_group_tests_name("package lists", tests, setup, teardown);
}
