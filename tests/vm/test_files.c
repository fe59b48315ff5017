/*
 * Files into and out of a real VM: a tree of 1,000 files with modes and
 * symlinks goes in with put, is checked from inside the guest, and comes
 * back with get exactly as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct runner_guest *guest;
static char work[PATH_MAX];

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(work, sizeof(work), "%s/vmci-files-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(work))
		return -1;
	guest = vmtest_boot("busybox-x86_64");
	return 0;
}

static int teardown(void **state)
{
	runner_guest_destroy(guest, VMCI_STOP_TIMEOUT_MS);
	fs_rm_rf(work, NULL);
	return 0;
}

static void write_file(const char *path, const char *content, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

/* 1,000 entries: 20 directories of 45 files (varied modes and sizes) and 5 symlinks each. */
static void make_tree(const char *root)
{
	static const mode_t modes[] = {0644, 0755, 0600, 0444, 0700};
	assert_int_equal(mkdir(root, 0755), 0);
	for (int d = 0; d < 20; d++) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s/dir%02d", root, d);
		assert_int_equal(mkdir(dir, d % 2 ? 0750 : 0755), 0);
		for (int f = 0; f < 45; f++) {
			char path[PATH_MAX], content[600];
			snprintf(path, sizeof(path), "%s/file%03d.txt", dir, f);
			int len = snprintf(content, sizeof(content), "dir %d file %d\n", d, f);
			for (int i = 0; i < (f * 7) % 500; i++)
				content[len + i] = (char)('a' + (d + f + i) % 26);
			content[len + (f * 7) % 500] = 0;
			write_file(path, content, modes[(d + f) % 5]);
		}
		for (int s = 0; s < 5; s++) {
			char link[PATH_MAX], target[64];
			snprintf(link, sizeof(link), "%s/link%d", dir, s);
			snprintf(target, sizeof(target),
				 s % 2 ? "file%03d.txt" : "../dir00/file%03d.txt", s);
			assert_int_equal(symlink(target, link), 0);
		}
	}
}

/* Compares two trees entry by entry: type, mode, content, link target. Returns entries seen. */
static int compare_trees(const char *a, const char *b)
{
	int count = 0;
	DIR *d = opendir(a);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char pa[PATH_MAX], pb[PATH_MAX];
		snprintf(pa, sizeof(pa), "%s/%s", a, de->d_name);
		snprintf(pb, sizeof(pb), "%s/%s", b, de->d_name);
		struct stat sa, sb;
		assert_int_equal(lstat(pa, &sa), 0);
		if (lstat(pb, &sb) != 0)
			fail_msg("%s did not come back", pb);
		assert_int_equal(sa.st_mode, sb.st_mode);
		count++;
		if (S_ISDIR(sa.st_mode)) {
			count += compare_trees(pa, pb);
		} else if (S_ISLNK(sa.st_mode)) {
			char ta[PATH_MAX] = "", tb[PATH_MAX] = "";
			assert_true(readlink(pa, ta, sizeof(ta) - 1) > 0);
			assert_true(readlink(pb, tb, sizeof(tb) - 1) > 0);
			assert_string_equal(ta, tb);
		} else {
			struct buf ca = {0}, cb = {0};
			assert_int_equal(fs_read_file(pa, 1 << 20, &ca, NULL), 0);
			assert_int_equal(fs_read_file(pb, 1 << 20, &cb, NULL), 0);
			assert_int_equal(ca.len, cb.len);
			assert_memory_equal(ca.data, cb.data, ca.len);
			assert_int_equal(sa.st_mtime, sb.st_mtime);
			buf_free(&ca);
			buf_free(&cb);
		}
	}
	closedir(d);
	return count;
}

static void test_put_then_get_round_trips_1000_files(void **state)
{
	char src[PATH_MAX], dst[PATH_MAX];
	snprintf(src, sizeof(src), "%s/tree", work);
	snprintf(dst, sizeof(dst), "%s/back", work);
	make_tree(src);
	struct vmci_err err = {0};
	if (vm_put_dir(guest->vm, src, "/work/tree", &err))
		fail_msg("put: %s", err.msg);

	/* Inside the guest: the count, a mode and a symlink are right. */
	struct capture c = {0};
	vmtest_sh(guest->vm,
		  "find /work/tree -mindepth 1 | wc -l; stat -c %a /work/tree/dir01/file003.txt; "
		  "readlink /work/tree/dir03/link1; cat /work/tree/dir03/link0 | head -n1",
		  &c);
	assert_string_equal(buf_cstr(&c.out), "1020\n700\nfile001.txt\ndir 0 file 0\n");
	capture_free(&c);

	if (vm_get(guest->vm, "/work/tree", dst, &err))
		fail_msg("get: %s", err.msg);
	char back[PATH_MAX];
	snprintf(back, sizeof(back), "%s/tree", dst);
	assert_int_equal(compare_trees(src, back), 1020);
}

static void test_get_with_a_glob_copies_only_matches(void **state)
{
	vmtest_sh(guest->vm,
		  "mkdir -p /work/out && cd /work/out && echo a > a.log && echo b > b.log && echo "
		  "c > c.txt",
		  NULL);
	char dst[PATH_MAX];
	snprintf(dst, sizeof(dst), "%s/glob", work);
	struct vmci_err err = {0};
	if (vm_get(guest->vm, "/work/out/*.log", dst, &err))
		fail_msg("get: %s", err.msg);
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s/a.log", dst);
	assert_true(fs_exists(p));
	snprintf(p, sizeof(p), "%s/b.log", dst);
	assert_true(fs_exists(p));
	snprintf(p, sizeof(p), "%s/c.txt", dst);
	assert_false(fs_exists(p));
}

static void test_get_of_nothing_is_not_an_error(void **state)
{
	char dst[PATH_MAX];
	snprintf(dst, sizeof(dst), "%s/none", work);
	struct vmci_err err = {0};
	assert_int_equal(vm_get(guest->vm, "/work/out/*.nothing", dst, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_then_get_round_trips_1000_files),
	    cmocka_unit_test(test_get_with_a_glob_copies_only_matches),
	    cmocka_unit_test(test_get_of_nothing_is_not_an_error),
	};
	return cmocka_run_group_tests_name("vm files", tests, setup, teardown);
}
