/*
 * common/ydoc.c: the one typed reader of YAML files of a known shape
 * (recipes, the service's config): types checked, unknown keys with the
 * nearest one, and every refusal at its FILE:LINE:COL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct vmci_err err;

/* Parses text as f.yml; the document's refusals go to err. */
static struct ydoc *parse(const char *text)
{
	struct ydoc *d = NULL;
	memset(&err, 0, sizeof(err));
	if (ydoc_parse("f.yml", text, strlen(text), &err, &d))
		fail_msg("%s", err.msg);
	return d;
}

/* The root mapping's values for keys (name, size, tags), or a failure with the refusal. */
static const char *const keys[] = {"name", "size", "tags"};

static void read_map(struct ydoc *d, const struct ydoc_node **v)
{
	if (ydoc_map(d, ydoc_root(d), "the file", keys, ARRAY_LEN(keys), v))
		fail_msg("%s", err.msg);
}

static void expect_msg(const char *want)
{
	if (strcmp(err.msg, want))
		fail_msg("got:  %s\nwant: %s", err.msg, want);
}

static void test_map_gives_each_known_key_its_value_or_null(void **state)
{
	struct ydoc *d = parse("tags: [a, b]\nname: box\n");
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	read_map(d, v);
	char name[16];
	assert_int_equal(ydoc_string(d, v[0], "name", name, sizeof(name)), 0);
	assert_string_equal(name, "box");
	assert_null(v[1]);
	assert_int_equal(ydoc_kind(v[2]), YDOC_LIST);
	assert_int_equal(ydoc_len(v[2]), 2);
	assert_string_equal(ydoc_scalar(ydoc_item(d, v[2], 1)), "b");
	assert_null(ydoc_item(d, v[2], 2));
	ydoc_free(d);
}

static void test_unknown_key_names_the_nearest_and_lists_the_known(void **state)
{
	struct ydoc *d = parse("name: a\nsiez: 3\n");
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	assert_int_equal(ydoc_map(d, ydoc_root(d), "the file", keys, ARRAY_LEN(keys), v), -EINVAL);
	expect_msg("f.yml:2:1: error: unknown key 'siez' in the file (did you mean 'size'?) "
		   "(known: name, size, tags)");
	ydoc_free(d);
	d = parse("zzz: 1\n");
	assert_int_equal(ydoc_map(d, ydoc_root(d), "the file", keys, ARRAY_LEN(keys), v), -EINVAL);
	expect_msg("f.yml:1:1: error: unknown key 'zzz' in the file (known: name, size, tags)");
	ydoc_free(d);
}

static void test_a_key_given_twice_is_refused_where_it_repeats(void **state)
{
	struct ydoc *d = parse("name: a\ntags: []\nname: b\n");
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	assert_int_equal(ydoc_map(d, ydoc_root(d), "the file", keys, ARRAY_LEN(keys), v), -EINVAL);
	expect_msg("f.yml:3:1: error: 'name' appears twice in the file");
	ydoc_free(d);
}

static void test_wrong_types_say_what_was_expected_and_found(void **state)
{
	struct ydoc *d = parse("name: [x]\nsize: ~\ntags: {a: 1}\n");
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	read_map(d, v);
	char out[16];
	assert_int_equal(ydoc_string(d, v[0], "name", out, sizeof(out)), -EINVAL);
	expect_msg("f.yml:1:7: error: name must be a non-empty string, not a list");
	assert_int_equal(ydoc_string(d, v[1], "size", out, sizeof(out)), -EINVAL);
	expect_msg("f.yml:2:7: error: size must be a non-empty string, not empty");
	char **tags = NULL;
	size_t n_tags = 0;
	assert_int_equal(ydoc_strings(d, v[2], "tags", 8, &tags, &n_tags), -EINVAL);
	assert_null(tags);
	expect_msg("f.yml:3:7: error: tags must be a list, not a mapping");
	assert_int_equal(ydoc_map(d, v[0], "name", keys, ARRAY_LEN(keys), v), -EINVAL);
	expect_msg("f.yml:1:7: error: name must be a mapping, not a list");
	ydoc_free(d);
}

static void test_null_is_only_plain_and_quoted_null_is_a_string(void **state)
{
	struct ydoc *d = parse("[~, null, NULL, '', '~', \"null\", x]\n");
	const struct ydoc_node *list = ydoc_root(d);
	static const enum ydoc_kind want[] = {YDOC_NULL,   YDOC_NULL,	YDOC_NULL,  YDOC_SCALAR,
					      YDOC_SCALAR, YDOC_SCALAR, YDOC_SCALAR};
	assert_int_equal(ydoc_len(list), ARRAY_LEN(want));
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_int_equal(ydoc_kind(ydoc_item(d, list, i)), want[i]);
	char out[8];
	/* Quoted, "~" is a string; quoted, "" is still empty. */
	assert_int_equal(ydoc_string(d, ydoc_item(d, list, 4), "it", out, sizeof(out)), 0);
	assert_string_equal(out, "~");
	assert_int_equal(ydoc_string(d, ydoc_item(d, list, 3), "it", out, sizeof(out)), -EINVAL);
	expect_msg("f.yml:1:17: error: it must be a non-empty string, not empty");
	ydoc_free(d);
}

static void test_strings_are_bounded_and_free_of_nul(void **state)
{
	struct ydoc *d = parse("- abcdefgh\n- \"a\\0b\"\n");
	char out[8];
	assert_int_equal(ydoc_string(d, ydoc_item(d, ydoc_root(d), 0), "it", out, sizeof(out)),
			 -EINVAL);
	expect_msg("f.yml:1:3: error: it is too long (at most 7 bytes)");
	char *dup = NULL;
	assert_int_equal(ydoc_strdup(d, ydoc_item(d, ydoc_root(d), 1), "it", &dup), -EINVAL);
	assert_null(dup);
	expect_msg("f.yml:2:3: error: it holds a NUL byte");
	ydoc_free(d);
}

static void test_string_lists_append_and_refuse_at_the_entry(void **state)
{
	struct ydoc *d = parse("a: [one, two]\nb:\nc: [three, [four]]\n");
	const struct ydoc_node *root = ydoc_root(d), *v[3];
	static const char *const abc[] = {"a", "b", "c"};
	assert_int_equal(ydoc_map(d, root, "it", abc, 3, v), 0);
	char **list = NULL;
	size_t n = 0;
	assert_int_equal(ydoc_strings(d, v[0], "a", 8, &list, &n), 0);
	assert_int_equal(ydoc_strings(d, v[1], "b", 8, &list, &n), 0); /* null: no entries */
	assert_int_equal(n, 2);
	assert_string_equal(list[1], "two");
	assert_int_equal(ydoc_strings(d, v[2], "c", 8, &list, &n), -EINVAL);
	expect_msg("f.yml:3:12: error: each entry of c must be a non-empty string, not a list");
	assert_int_equal(n, 3); /* what was read stays the caller's to free */
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
	ydoc_free(d);
}

static void test_whole_numbers_within_bounds(void **state)
{
	struct ydoc *d = parse("[4, '7', -3, 9, many, 0x10, 12345678901, [1]]\n");
	const struct ydoc_node *l = ydoc_root(d);
	int v = 0;
	assert_int_equal(ydoc_int(d, ydoc_item(d, l, 0), "n", -5, 8, &v), 0);
	assert_int_equal(v, 4);
	assert_int_equal(ydoc_int(d, ydoc_item(d, l, 1), "n", -5, 8, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(ydoc_int(d, ydoc_item(d, l, 2), "n", -5, 8, &v), 0);
	assert_int_equal(v, -3);
	assert_int_equal(ydoc_int(d, ydoc_item(d, l, 3), "n", -5, 8, &v), -EINVAL);
	expect_msg("f.yml:1:14: error: n must be a whole number from -5 to 8, not '9'");
	assert_int_equal(ydoc_int(d, ydoc_item(d, l, 4), "n", -5, 8, &v), -EINVAL);
	expect_msg("f.yml:1:17: error: n must be a whole number from -5 to 8, not 'many'");
	assert_int_equal(ydoc_int(d, ydoc_item(d, l, 5), "n", 0, 99, &v), -EINVAL);
	assert_int_equal(ydoc_int(d, ydoc_item(d, l, 6), "n", 0, 99, &v), -EINVAL);
	assert_int_equal(ydoc_int(d, ydoc_item(d, l, 7), "n", 0, 99, &v), -EINVAL);
	expect_msg("f.yml:1:42: error: n must be a whole number from 0 to 99, not a list");
	assert_int_equal(v, -3); /* untouched by refusals */
	ydoc_free(d);
}

static void test_not_yaml_is_refused_at_libyamls_place(void **state)
{
	struct ydoc *d = NULL;
	const char text[] = "name: a\ntags: [x\n";
	assert_int_equal(ydoc_parse("f.yml", text, strlen(text), &err, &d), -EINVAL);
	assert_null(d);
	assert_non_null(strstr(err.msg, "f.yml:3:1: error: did not find expected"));
}

static void test_a_second_document_is_refused(void **state)
{
	struct ydoc *d = NULL;
	const char text[] = "name: a\n---\nname: b\n";
	assert_int_equal(ydoc_parse("f.yml", text, strlen(text), &err, &d), -EINVAL);
	assert_null(d);
	expect_msg("f.yml:3:1: error: a second YAML document: the file must hold one (remove "
		   "what follows '---')");
}

static void test_an_empty_document_has_no_root(void **state)
{
	struct ydoc *d = parse("# nothing but a comment\n");
	assert_null(ydoc_root(d));
	assert_int_equal(ydoc_error(d, NULL, ENOENT, "the %s is empty", "file"), -ENOENT);
	expect_msg("f.yml: error: the file is empty");
	assert_int_equal(err.code, ENOENT);
	ydoc_free(d);
	struct ydoc *none = NULL;
	assert_int_equal(ydoc_parse("f.yml", NULL, 0, &err, &none), 0);
	assert_null(ydoc_root(none));
	ydoc_free(none);
}

static void test_an_alias_reads_as_its_anchor(void **state)
{
	struct ydoc *d = parse("tags: &t [a]\nname: &n box\nsize: *n\n");
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	read_map(d, v);
	char out[8];
	assert_int_equal(ydoc_string(d, v[1], "size", out, sizeof(out)), 0);
	assert_string_equal(out, "box");
	ydoc_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_map_gives_each_known_key_its_value_or_null),
	    cmocka_unit_test(test_unknown_key_names_the_nearest_and_lists_the_known),
	    cmocka_unit_test(test_a_key_given_twice_is_refused_where_it_repeats),
	    cmocka_unit_test(test_wrong_types_say_what_was_expected_and_found),
	    cmocka_unit_test(test_null_is_only_plain_and_quoted_null_is_a_string),
	    cmocka_unit_test(test_strings_are_bounded_and_free_of_nul),
	    cmocka_unit_test(test_string_lists_append_and_refuse_at_the_entry),
	    cmocka_unit_test(test_whole_numbers_within_bounds),
	    cmocka_unit_test(test_not_yaml_is_refused_at_libyamls_place),
	    cmocka_unit_test(test_a_second_document_is_refused),
	    cmocka_unit_test(test_an_empty_document_has_no_root),
	    cmocka_unit_test(test_an_alias_reads_as_its_anchor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
