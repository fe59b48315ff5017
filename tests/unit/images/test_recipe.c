/* images/recipe.c: recipe files, their checks and the line:column of every error. */
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

static const char good[] = "name: mini\n"
			   "arch: x86_64\n"
			   "kernel:\n"
			   "  debian: cloud\n"
			   "  modules: [virtio_pci, virtio_blk]\n"
			   "rootfs:\n"
			   "  tarball: rootfs.tar.zst\n"
			   "disk_size: 2G\n"
			   "setup:\n"
			   "  - echo one > /etc/one\n"
			   "  - apt-get clean\n";

static struct img_spec *parse_ok(const char *text)
{
	struct img_spec *s = NULL;
	struct vmci_err err = {0};
	int rc = img_spec_parse("/r/mini.yml", text, strlen(text), NULL, &s, &err);
	if (rc)
		fail_msg("%s", err.msg);
	return s;
}

/* Parses text as file "t.yml" and checks the error message is exactly want. */
static void expect_error(const char *text, const char *want)
{
	struct img_spec *s = NULL;
	struct vmci_err err = {0};
	assert_int_equal(img_spec_parse("t.yml", text, strlen(text), NULL, &s, &err), -EINVAL);
	assert_null(s);
	if (strncmp(err.msg, want, strlen(want)))
		fail_msg("got:  %s\nwant: %s...", err.msg, want);
}

static void test_every_field_is_read(void **state)
{
	struct img_spec *s = parse_ok(good);
	assert_string_equal(s->name, "mini");
	assert_string_equal(s->arch, "x86_64");
	assert_string_equal(s->kernel_flavour, "cloud");
	assert_int_equal(s->modules.n, 2);
	assert_string_equal(s->modules.v[1], "virtio_blk");
	assert_string_equal(s->busybox, "busybox-static");
	assert_int_equal(s->rootfs, IMG_ROOTFS_TARBALL);
	/* Relative to the recipe's directory. */
	assert_string_equal(s->source, "/r/rootfs.tar.zst");
	assert_int_equal(s->disk_size, 2LL << 30);
	assert_int_equal(s->setup.n, 2);
	assert_string_equal(s->setup.v[0], "echo one > /etc/one");
	assert_int_equal(strlen(s->sha256), SHA256_HEX_LEN);
	img_spec_free(s);
}

static void test_debootstrap_defaults_to_minbase(void **state)
{
	struct img_spec *s = parse_ok("name: d\narch: x86_64\nkernel: {debian: cloud}\n"
				      "rootfs:\n  debootstrap:\n    suite: bookworm\n"
				      "    packages: [git, build-essential]\ndisk_size: 4G\n");
	assert_int_equal(s->rootfs, IMG_ROOTFS_DEBOOTSTRAP);
	assert_string_equal(s->suite, "bookworm");
	assert_string_equal(s->variant, "minbase");
	assert_string_equal(s->mirror, "");
	assert_int_equal(s->packages.n, 2);
	img_spec_free(s);
}

static void test_any_change_to_the_file_changes_its_hash(void **state)
{
	struct img_spec *a = parse_ok(good);
	char *edited = strdup(good);
	edited[strlen(edited) - 2] = 'x'; /* "apt-get clean" -> "apt-get clex" */
	struct img_spec *b = parse_ok(edited);
	assert_string_not_equal(a->sha256, b->sha256);
	img_spec_free(a);
	img_spec_free(b);
	free(edited);
}

static void test_shipped_recipes_parse(void **state)
{
	char **names = NULL;
	struct vmci_err err = {0};
	if (img_recipe_names(&names, &err))
		fail_msg("%s", err.msg);
	assert_non_null(names[0]);
	for (size_t i = 0; names[i]; i++) {
		struct img_spec *s = NULL;
		if (img_spec_find(names[i], &s, &err))
			fail_msg("%s", err.msg);
		assert_string_equal(s->name, names[i]);
		assert_string_equal(s->kernel_flavour, "cloud");
		img_spec_free(s);
	}
	img_names_free(names);
	struct img_spec *s = NULL;
	assert_int_equal(img_spec_find("debian-12", &s, NULL), 0);
	assert_int_equal(s->rootfs, IMG_ROOTFS_DEBOOTSTRAP);
	assert_string_equal(s->suite, "bookworm");
	assert_int_equal(s->disk_size, 4LL << 30);
	img_spec_free(s);
	assert_int_equal(img_spec_find("busybox-aarch64", &s, NULL), 0);
	assert_string_equal(s->arch, "aarch64");
	assert_string_equal(s->busybox, "busybox-static");
	img_spec_free(s);
}

static void test_unknown_key_suggests_the_known_one(void **state)
{
	expect_error("name: a\narch: x86_64\nrootfs: busybox\nkernal: {debian: cloud}\n",
		     "t.yml:4:1: error: unknown key 'kernal' in a recipe (did you mean 'kernel'?)");
	expect_error("name: a\narch: x86_64\nkernel:\n  debain: cloud\nrootfs: busybox\n",
		     "t.yml:4:3: error: unknown key 'debain' in kernel (did you mean 'debian'?)");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs: busybox\nzzz: 1\n",
		     "t.yml:5:1: error: unknown key 'zzz' in a recipe (known: name, arch,");
}

static void test_yaml_syntax_errors_have_a_position(void **state)
{
	expect_error("name: a\narch: [x86_64\n", "t.yml:3:1: error: did not find expected");
	expect_error("name: a\n  bad indent: 1\n", "t.yml:2:");
	expect_error("name: a\n---\nname: b\n", "t.yml:");
}

static void test_wrong_types_and_values_are_placed(void **state)
{
	expect_error("name: a\narch: [x86_64]\nkernel: {debian: cloud}\nrootfs: busybox\n",
		     "t.yml:2:7: error: arch must be a non-empty string, not a list");
	expect_error("name: a\narch: riscv\nkernel: {debian: cloud}\nrootfs: busybox\n",
		     "t.yml:2:7: error: arch must be x86_64 or aarch64, not 'riscv'");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud, file: /k}\nrootfs: busybox\n",
		     "t.yml:3:9: error: kernel needs exactly one of");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs: floppy\n",
		     "t.yml:4:9: error: rootfs must be 'busybox' or a mapping");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs: {tarball: x}\n"
		     "disk_size: lots\n",
		     "t.yml:5:12: error: disk_size must be a size");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs: {tarball: x}\n",
		     "t.yml:4:9: error: this rootfs is made into a root disk");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs: busybox\n"
		     "setup: [true]\n",
		     "t.yml:5:8: error: setup commands need a root disk");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs:\n  debootstrap:\n"
		     "    suite: bookworm\n    packages: [Bad_Name]\ndisk_size: 1G\n",
		     "t.yml:7:16: error: 'Bad_Name' is not a Debian package name");
}

static void test_missing_and_repeated_keys(void **state)
{
	expect_error("name: a\narch: x86_64\nrootfs: busybox\n",
		     "t.yml:1:1: error: the recipe has no 'kernel'");
	expect_error("name: a\nname: b\n", "t.yml:2:1: error: 'name' appears twice in a recipe");
	expect_error("", "t.yml: error: the recipe is empty");
}

static void test_name_must_match_the_file(void **state)
{
	const char text[] = "name: other\narch: x86_64\nkernel: {debian: cloud}\nrootfs: busybox\n";
	struct img_spec *s = NULL;
	struct vmci_err err = {0};
	assert_int_equal(img_spec_parse("mine.yml", text, strlen(text), "mine", &s, &err), -EINVAL);
	assert_string_equal(
	    err.msg, "mine.yml:1:7: error: name 'other' does not match the file name mine.yml");
}

static void test_a_recipe_with_a_base_names_it_and_its_packages(void **state)
{
	struct img_spec *s = parse_ok("name: mini\nbase: debian-12\npackages: [hello, libtool]\n");
	assert_string_equal(s->name, "mini");
	assert_string_equal(s->base, "debian-12");
	assert_int_equal(s->packages.n, 2);
	assert_string_equal(s->packages.v[0], "hello");
	assert_string_equal(s->packages.v[1], "libtool");
	assert_int_equal(s->setup.n, 0);
	img_spec_free(s);
}

static void test_a_recipe_with_a_base_may_run_setup_commands_with_network(void **state)
{
	struct img_spec *s = parse_ok("name: mini\nbase: debian-12\nsetup: [echo hi > /etc/hi]\n"
				      "network: nat\n");
	assert_string_equal(s->base, "debian-12");
	assert_int_equal(s->packages.n, 0);
	assert_int_equal(s->setup.n, 1);
	assert_true(s->setup_network);
	img_spec_free(s);
}

static void test_a_recipe_with_a_base_takes_nothing_else(void **state)
{
	expect_error("name: a\nbase: debian-12\npackages: [hello]\nkernel: {debian: cloud}\n",
		     "t.yml:4:9: error: a recipe with a base takes 'kernel' from its base image");
	expect_error("name: a\nbase: debian-12\npackages: [hello]\ndisk_size: 4G\n",
		     "t.yml:4:12: error: a recipe with a base takes 'disk_size' from its base "
		     "image");
	expect_error("name: a\nbase: debian-12\n",
		     "t.yml:1:1: error: a recipe with a base needs 'packages' (Debian packages "
		     "to install on debian-12), 'setup' (commands to run on it) or both");
	expect_error("name: a\nbase: debian-12\npackages: []\n",
		     "t.yml:3:11: error: packages is empty");
	expect_error("name: a\nbase: debian-12\npackages: [hello]\nnetwork: nat\n",
		     "t.yml:4:10: error: network applies to the setup commands, and this recipe "
		     "has none");
	expect_error("name: a\nbase: a\npackages: [hello]\n",
		     "t.yml:2:7: error: image 'a' cannot be its own base");
	expect_error("name: a\nbase: Debian 12\npackages: [hello]\n",
		     "t.yml:2:7: error: bad image name 'Debian 12'");
}

static void test_package_names_are_checked_where_they_are(void **state)
{
	expect_error("name: a\nbase: debian-12\npackages:\n  - hello\n  - Hello_World\n",
		     "t.yml:5:5: error: 'Hello_World' is not a Debian package name");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs:\n  debootstrap:\n"
		     "    suite: bookworm\n    packages: [git, -x]\ndisk_size: 1G\n",
		     "t.yml:7:21: error: '-x' is not a Debian package name");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs: busybox\n"
		     "packages: [hello]\n",
		     "t.yml:5:11: error: packages at the top of a recipe go with a base image");
}

static void test_setup_network_is_none_unless_nat_is_asked(void **state)
{
	struct img_spec *s = parse_ok(good);
	assert_false(s->setup_network);
	img_spec_free(s);
	char text[sizeof(good) + 32];
	snprintf(text, sizeof(text), "%snetwork: nat\n", good);
	s = parse_ok(text);
	assert_true(s->setup_network);
	img_spec_free(s);
	snprintf(text, sizeof(text), "%snetwork: none\n", good);
	s = parse_ok(text);
	assert_false(s->setup_network);
	img_spec_free(s);
	snprintf(text, sizeof(text), "%snetwork: bridge\n", good);
	expect_error(text, "t.yml:12:10: error: network must be 'nat'");
	expect_error("name: a\narch: x86_64\nkernel: {debian: cloud}\nrootfs: {disk: d.qcow2}\n"
		     "network: nat\n",
		     "t.yml:5:10: error: network applies to the setup commands, and this recipe "
		     "has none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_field_is_read),
	    cmocka_unit_test(test_debootstrap_defaults_to_minbase),
	    cmocka_unit_test(test_any_change_to_the_file_changes_its_hash),
	    cmocka_unit_test(test_shipped_recipes_parse),
	    cmocka_unit_test(test_unknown_key_suggests_the_known_one),
	    cmocka_unit_test(test_yaml_syntax_errors_have_a_position),
	    cmocka_unit_test(test_wrong_types_and_values_are_placed),
	    cmocka_unit_test(test_missing_and_repeated_keys),
	    cmocka_unit_test(test_name_must_match_the_file),
	    cmocka_unit_test(test_a_recipe_with_a_base_names_it_and_its_packages),
	    cmocka_unit_test(test_a_recipe_with_a_base_may_run_setup_commands_with_network),
	    cmocka_unit_test(test_a_recipe_with_a_base_takes_nothing_else),
	    cmocka_unit_test(test_package_names_are_checked_where_they_are),
	    cmocka_unit_test(test_setup_network_is_none_unless_nat_is_asked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
