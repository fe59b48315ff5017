/* images/os_release.c: what an image's /etc/os-release says, for its manifest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[PATH_MAX];

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(root, sizeof(root), "%s/vmci-os-release-XXXXXX", tmp ? tmp : "/tmp");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	fs_rm_rf(root, NULL);
	return 0;
}

static void put(const char *rel, const char *text)
{
	char path[PATH_MAX], dir[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = 0;
	assert_int_equal(fs_mkdir_p(dir, 0755, NULL), 0);
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, NULL), 0);
}

/* etc/os-release as a link to target, as Debian has it. */
static void link_os_release(const char *target)
{
	char link[PATH_MAX + 32];
	snprintf(link, sizeof(link), "%s/etc", root);
	assert_int_equal(fs_mkdir_p(link, 0755, NULL), 0);
	snprintf(link, sizeof(link), "%s/etc/os-release", root);
	assert_int_equal(symlink(target, link), 0);
}

static const char *os(json_t *m, const char *key)
{
	return json_string_value(json_object_get(json_object_get(m, "os"), key));
}

static void test_quoted_and_bare_values_are_read(void **state)
{
	json_t *m = json_object();
	img_manifest_set_os(m, "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n"
			       "NAME=\"Debian GNU/Linux\"\n"
			       "VERSION_ID='13'\n"
			       "VERSION_CODENAME=trixie\n"
			       "ID=debian\n");
	assert_string_equal(os(m, "pretty_name"), "Debian GNU/Linux 13 (trixie)");
	assert_string_equal(os(m, "version_id"), "13");
	assert_string_equal(os(m, "codename"), "trixie");
	assert_string_equal(os(m, "id"), "debian");
	json_decref(m);
}

static void test_missing_keys_are_left_out(void **state)
{
	json_t *m = json_object();
	img_manifest_set_os(m, "PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nID=debian");
	assert_null(os(m, "version_id"));
	assert_string_equal(os(m, "id"), "debian");
	json_decref(m);
}

static void test_a_debian_tree_is_read_through_its_relative_link(void **state)
{
	put("usr/lib/os-release", "ID=debian\nVERSION_ID=\"12\"\n");
	link_os_release("../usr/lib/os-release");
	struct buf text = {0};
	assert_int_equal(img_os_release_from_tree(root, &text), 0);
	assert_string_equal(buf_cstr(&text), "ID=debian\nVERSION_ID=\"12\"\n");
	buf_free(&text);
}

static void test_a_link_out_of_the_tree_is_not_followed(void **state)
{
	link_os_release("/etc/os-release");
	struct buf text = {0};
	assert_int_equal(img_os_release_from_tree(root, &text), -ENOENT);
	buf_free(&text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quoted_and_bare_values_are_read),
	    cmocka_unit_test(test_missing_keys_are_left_out),
	    cmocka_unit_test_setup_teardown(test_a_debian_tree_is_read_through_its_relative_link,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_link_out_of_the_tree_is_not_followed, setup,
					    teardown),
	};
	return cmocka_run_group_tests_name("images os-release", tests, NULL, NULL);
}
