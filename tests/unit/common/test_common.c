/* common/: buffers, durable files, hashing, helper programs, durations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[PATH_MAX];

static int make_tmp(void **state)
{
	snprintf(tmp, sizeof(tmp), "%s/vmci-common-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmp) ? 0 : -1;
}

static int remove_tmp(void **state)
{
	return fs_rm_rf(tmp, NULL);
}

static void test_buf_appends_and_consumes(void **state)
{
	struct buf b = {0};
	assert_int_equal(buf_append(&b, "hello ", 6), 0);
	assert_int_equal(buf_appendf(&b, "%s %d", "world", 42), 0);
	assert_string_equal(buf_cstr(&b), "hello world 42");
	buf_consume(&b, 6);
	assert_string_equal(buf_cstr(&b), "world 42");
	buf_consume(&b, 100);
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

static void test_write_atomic_replaces_whole_file(void **state)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/file", tmp);
	struct vmci_err err = {0};
	assert_int_equal(fs_write_atomic(path, "first version", 13, 0644, &err), 0);
	assert_int_equal(fs_write_atomic(path, "second", 6, 0600, &err), 0);
	struct buf b = {0};
	assert_int_equal(fs_read_file(path, 1024, &b, &err), 0);
	assert_string_equal(buf_cstr(&b), "second");
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	buf_free(&b);
}

static void test_write_replace_replaces_whole_file_and_leaves_no_temporary(void **state)
{
	char dir[PATH_MAX + 16], path[PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s/replace", tmp);
	snprintf(path, sizeof(path), "%s/rec.json", dir);
	struct vmci_err err = {0};
	assert_int_equal(fs_mkdir_p(dir, 0755, &err), 0);
	assert_int_equal(fs_write_replace(path, "first version", 13, 0644, &err), 0);
	assert_int_equal(fs_write_replace(path, "second", 6, 0600, &err), 0);
	struct buf b = {0};
	assert_int_equal(fs_read_file(path, 1024, &b, &err), 0);
	assert_string_equal(buf_cstr(&b), "second");
	buf_free(&b);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int entries = 0;
	for (struct dirent *de; (de = readdir(d)) != NULL;)
		entries += de->d_name[0] != '.';
	closedir(d);
	assert_int_equal(entries, 1);
	/* A directory that does not exist: an error naming the path. */
	snprintf(path, sizeof(path), "%s/missing/rec.json", dir);
	assert_int_equal(fs_write_replace(path, "x", 1, 0644, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing"));
}

static void test_read_file_refuses_oversized(void **state)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/big", tmp);
	struct vmci_err err = {0};
	assert_int_equal(fs_write_atomic(path, "0123456789", 10, 0644, &err), 0);
	struct buf b = {0};
	assert_int_equal(fs_read_file(path, 5, &b, &err), -EFBIG);
	assert_non_null(strstr(err.msg, path));
	buf_free(&b);
}

static void test_mkdir_p_and_rm_rf(void **state)
{
	char deep[PATH_MAX + 32], top[PATH_MAX + 16];
	snprintf(top, sizeof(top), "%s/a", tmp);
	snprintf(deep, sizeof(deep), "%s/a/b/c/d", tmp);
	struct vmci_err err = {0};
	assert_int_equal(fs_mkdir_p(deep, 0755, &err), 0);
	assert_true(fs_exists(deep));
	/* A read-only directory, like a published image, is removed too. */
	chmod(deep, 0555);
	assert_int_equal(fs_rm_rf(top, &err), 0);
	assert_false(fs_exists(top));
	assert_int_equal(fs_rm_rf(top, &err), 0);
}

/* A copy has every byte of the original (3 MiB: more than one read's worth), durable or not. */
static void test_copy_file_copies_every_byte_durable_or_not(void **state)
{
	char from[PATH_MAX + 16], to[PATH_MAX + 16];
	snprintf(from, sizeof(from), "%s/from", tmp);
	size_t size = 3u << 20;
	char *data = malloc(size);
	assert_non_null(data);
	for (size_t i = 0; i < size; i++)
		data[i] = (char)(i * 131 + i / 4096);
	struct vmci_err err = {0};
	assert_int_equal(fs_write_atomic(from, data, size, 0644, &err), 0);
	for (int durable = 0; durable < 2; durable++) {
		snprintf(to, sizeof(to), "%s/to-%d", tmp, durable);
		assert_int_equal(fs_copy_file(from, to, 0600, durable, &err), 0);
		struct buf b = {0};
		assert_int_equal(fs_read_file(to, size + 1, &b, &err), 0);
		assert_int_equal(b.len, size);
		assert_memory_equal(b.data, data, size);
		buf_free(&b);
		struct stat st;
		assert_int_equal(stat(to, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}
	snprintf(to, sizeof(to), "%s/missing/to", tmp);
	assert_int_equal(fs_copy_file(from, to, 0, false, &err), -ENOENT);
	free(data);
}

static void test_sha256_matches_known_vector(void **state)
{
	struct sha256_ctx *ctx = sha256_new();
	sha256_update(ctx, "abc", 3);
	char hex[SHA256_HEX_LEN + 1];
	sha256_finish(ctx, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_run_command_reports_status_and_stderr(void **state)
{
	char *ok[] = {"sh", "-c", "echo out", NULL};
	struct buf out = {0};
	struct vmci_err err = {0};
	assert_int_equal(run_command(ok, &out, &err), 0);
	assert_string_equal(buf_cstr(&out), "out\n");
	buf_free(&out);
	char *bad[] = {"sh", "-c", "echo broken pipe dream >&2; exit 4", NULL};
	assert_true(run_command(bad, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "exited with status 4"));
	assert_non_null(strstr(err.msg, "broken pipe dream"));
}

static void test_run_command_names_the_package_of_a_missing_tool(void **state)
{
	char *argv[] = {"qemu-img", NULL};
	char *saved = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	setenv("PATH", "/nonexistent", 1);
	struct vmci_err err = {0};
	int rc = run_command(argv, NULL, &err);
	if (saved) {
		setenv("PATH", saved, 1);
		free(saved);
	}
	assert_int_equal(rc, -ENOENT);
	assert_non_null(strstr(err.msg, "qemu-utils"));
}

static void test_format_duration(void **state)
{
	char s[32];
	format_duration(850, s, sizeof(s));
	assert_string_equal(s, "850ms");
	format_duration(3200, s, sizeof(s));
	assert_string_equal(s, "3.2s");
	format_duration(125000, s, sizeof(s));
	assert_string_equal(s, "2m05s");
}

static void test_word_listed_matches_whole_words_of_the_first_line(void **state)
{
	(void)state;
	assert_true(word_listed("deb deb-src", "deb"));
	assert_true(word_listed("  bookworm\tbookworm-updates ", "bookworm-updates"));
	assert_false(word_listed("deb-src", "deb"));
	assert_false(word_listed("bookworm-updates", "bookworm"));
	assert_false(word_listed("deb\nbookworm", "bookworm"));
	assert_false(word_listed("", "deb"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buf_appends_and_consumes),
	    cmocka_unit_test(test_write_atomic_replaces_whole_file),
	    cmocka_unit_test(test_write_replace_replaces_whole_file_and_leaves_no_temporary),
	    cmocka_unit_test(test_read_file_refuses_oversized),
	    cmocka_unit_test(test_mkdir_p_and_rm_rf),
	    cmocka_unit_test(test_copy_file_copies_every_byte_durable_or_not),
	    cmocka_unit_test(test_sha256_matches_known_vector),
	    cmocka_unit_test(test_run_command_reports_status_and_stderr),
	    cmocka_unit_test(test_run_command_names_the_package_of_a_missing_tool),
	    cmocka_unit_test(test_format_duration),
	    cmocka_unit_test(test_word_listed_matches_whole_words_of_the_first_line),
	};
	return cmocka_run_group_tests_name("common", tests, make_tmp, remove_tmp);
}
