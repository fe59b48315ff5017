/*
 * The name of an image with packages: one per base and package set,
 * whatever the order or repeats, and only for Debian package names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/images.h"

#include <errno.h>
#include <string.h>

static void test_the_same_set_in_any_order_names_one_image(void **state)
{
	const char *a[] = {"libtool", "autoconf", "automake"};
	const char *b[] = {"automake", "libtool", "autoconf", "libtool"};
	char na[64], nb[64];
	struct vmci_err err = {0};
	assert_int_equal(img_packages_name("debian-12", a, 3, na, sizeof(na), &err), 0);
	assert_int_equal(img_packages_name("debian-12", b, 4, nb, sizeof(nb), &err), 0);
	assert_string_equal(na, nb);
	assert_int_equal(strncmp(na, "debian-12.pkgs-", 15), 0);
	assert_int_equal(strlen(na), 15 + 12);
	assert_true(vmci_name_ok(na));
}

static void test_another_set_or_base_names_another_image(void **state)
{
	const char *a[] = {"autoconf"};
	const char *b[] = {"autoconf", "m4"};
	char na[64], nb[64], nc[64];
	struct vmci_err err = {0};
	assert_int_equal(img_packages_name("debian-12", a, 1, na, sizeof(na), &err), 0);
	assert_int_equal(img_packages_name("debian-12", b, 2, nb, sizeof(nb), &err), 0);
	assert_int_equal(img_packages_name("debian-13", a, 1, nc, sizeof(nc), &err), 0);
	assert_string_not_equal(na, nb);
	assert_string_not_equal(strchr(na, '.'), strchr(nb, '.'));
	assert_string_equal(strchr(na, '.'), strchr(nc, '.'));
	assert_string_not_equal(na, nc);
}

static void test_names_that_are_not_debian_packages_are_refused(void **state)
{
	static const char *const bad[] = {"Autoconf", "a", "-rf", "x;rm", "lib foo", "../x"};
	char name[64];
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct vmci_err err = {0};
		const char *v[] = {"make", bad[i]};
		assert_int_equal(img_packages_name("debian-12", v, 2, name, sizeof(name), &err),
				 -EINVAL);
		assert_non_null(strstr(err.msg, "is not a Debian package name"));
	}
	const char *good[] = {"g++", "libstdc++6", "python3.11", "0ad"};
	struct vmci_err err = {0};
	assert_int_equal(img_packages_name("debian-12", good, 4, name, sizeof(name), &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_same_set_in_any_order_names_one_image),
	    cmocka_unit_test(test_another_set_or_base_names_another_image),
	    cmocka_unit_test(test_names_that_are_not_debian_packages_are_refused),
	};
	return cmocka_run_group_tests_name("images with packages", tests, NULL, NULL);
}
