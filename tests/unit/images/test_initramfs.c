/* images/initramfs.c: the newc + gzip archive the kernel unpacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include "small_fs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[PATH_MAX];

static int make_tmp(void **state)
{
	snprintf(tmp, sizeof(tmp), "%s/vmci-initramfs-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmp) ? 0 : -1;
}

static int remove_tmp(void **state)
{
	return fs_rm_rf(tmp, NULL);
}

/* One entry as libarchive reads it back. */
struct got {
	char path[256];
	mode_t mode;
	long long uid, gid, mtime, size;
	char link[256];
	unsigned rmajor, rminor;
	char data[64];
};

/* Reads every entry of a gzip'd newc archive. Returns the count. */
static size_t read_back(const char *path, struct got *out, size_t max)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	assert_int_equal(archive_read_open_filename(a, path, 16384), ARCHIVE_OK);
	assert_int_equal(archive_filter_code(a, 0), ARCHIVE_FILTER_GZIP);
	struct archive_entry *e;
	size_t n = 0;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		assert_int_equal(archive_format(a), ARCHIVE_FORMAT_CPIO_SVR4_NOCRC);
		assert_true(n < max);
		struct got *g = &out[n++];
		memset(g, 0, sizeof(*g));
		snprintf(g->path, sizeof(g->path), "%s", archive_entry_pathname(e));
		g->mode = archive_entry_mode(e);
		g->uid = archive_entry_uid(e);
		g->gid = archive_entry_gid(e);
		g->mtime = archive_entry_mtime(e);
		g->size = archive_entry_size(e);
		if (archive_entry_symlink(e))
			snprintf(g->link, sizeof(g->link), "%s", archive_entry_symlink(e));
		g->rmajor = archive_entry_rdevmajor(e);
		g->rminor = archive_entry_rdevminor(e);
		if (S_ISREG(g->mode))
			archive_read_data(a, g->data, sizeof(g->data) - 1);
	}
	archive_read_free(a);
	return n;
}

static const struct got *find(const struct got *v, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].path, path))
			return &v[i];
	fail_msg("%s is not in the archive", path);
	return NULL;
}

static void test_written_archive_reads_back_sorted_with_parents(void **state)
{
	char host[PATH_MAX], out[PATH_MAX];
	fs_path(host, sizeof(host), "%s/agent", tmp);
	fs_path(out, sizeof(out), "%s/initramfs.cpio.gz", tmp);
	assert_int_equal(fs_write_atomic(host, "#!agent", 7, 0755, NULL), 0);

	struct img_initramfs *ir = img_initramfs_new();
	/* Deliberately out of order, with parents left implicit. */
	assert_int_equal(img_initramfs_add_symlink(ir, "usr/bin/env", "/bin/busybox", NULL), 0);
	assert_int_equal(img_initramfs_add_data(ir, "etc/passwd", 0644, "root:x:0:0", 10, NULL), 0);
	assert_int_equal(img_initramfs_add_file(ir, "/init", 0755, host, NULL), 0);
	assert_int_equal(img_initramfs_add_dir(ir, "tmp", 01777, NULL), 0);
	assert_int_equal(img_initramfs_add_chardev(ir, "dev/console", 0600, 5, 1, NULL), 0);
	assert_int_equal(img_initramfs_add_symlink(ir, "bin/sh", "/bin/busybox", NULL), 0);
	assert_int_equal(
	    img_initramfs_add_data(ir, "lib/modules/vmci/load-order", 0644, "", 0, NULL), 0);
	assert_true(img_initramfs_has(ir, "init"));
	assert_false(img_initramfs_has(ir, "usr/bin"));
	assert_int_equal(img_initramfs_write(ir, out, NULL), 0);
	img_initramfs_free(ir);

	struct got got[32];
	size_t n = read_back(out, got, ARRAY_LEN(got));
	static const char *const order[] = {
	    "bin",
	    "bin/sh",
	    "dev",
	    "dev/console",
	    "etc",
	    "etc/passwd",
	    "init",
	    "lib",
	    "lib/modules",
	    "lib/modules/vmci",
	    "lib/modules/vmci/load-order",
	    "tmp",
	    "usr",
	    "usr/bin",
	    "usr/bin/env",
	};
	assert_int_equal(n, ARRAY_LEN(order));
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(got[i].path, order[i]);
		assert_int_equal(got[i].uid, 0);
		assert_int_equal(got[i].gid, 0);
		assert_int_equal(got[i].mtime, 0);
	}
	const struct got *g = find(got, n, "init");
	assert_int_equal(g->mode, S_IFREG | 0755);
	assert_string_equal(g->data, "#!agent");
	g = find(got, n, "usr/bin/env");
	assert_true(S_ISLNK(g->mode));
	assert_string_equal(g->link, "/bin/busybox");
	g = find(got, n, "usr/bin");
	assert_int_equal(g->mode, S_IFDIR | 0755);
	g = find(got, n, "tmp");
	assert_int_equal(g->mode, S_IFDIR | 01777);
	g = find(got, n, "dev/console");
	assert_int_equal(g->mode, S_IFCHR | 0600);
	assert_int_equal(g->rmajor, 5);
	assert_int_equal(g->rminor, 1);
	g = find(got, n, "etc/passwd");
	assert_int_equal(g->mode, S_IFREG | 0644);
	assert_int_equal(g->size, 10);
	assert_string_equal(g->data, "root:x:0:0");
}

/* Bytes 4..7 of a gzip member are its MTIME; 0 means none. */
static void test_output_is_deterministic(void **state)
{
	char a[PATH_MAX], b[PATH_MAX];
	fs_path(a, sizeof(a), "%s/a.gz", tmp);
	fs_path(b, sizeof(b), "%s/b.gz", tmp);
	for (int round = 0; round < 2; round++) {
		struct img_initramfs *ir = img_initramfs_new();
		/* Same entries, added in a different order each round. */
		const char *paths[] = {"x/one", "a/two", "m/three"};
		for (int i = 0; i < 3; i++) {
			const char *p = paths[round ? 2 - i : i];
			assert_int_equal(img_initramfs_add_data(ir, p, 0644, p, strlen(p), NULL),
					 0);
		}
		assert_int_equal(img_initramfs_write(ir, round ? b : a, NULL), 0);
		img_initramfs_free(ir);
	}
	struct buf ba = {0}, bb = {0};
	assert_int_equal(fs_read_file(a, 1 << 20, &ba, NULL), 0);
	assert_int_equal(fs_read_file(b, 1 << 20, &bb, NULL), 0);
	assert_int_equal(ba.len, bb.len);
	assert_memory_equal(ba.data, bb.data, ba.len);
	assert_int_equal(ba.data[0], 0x1f);
	assert_int_equal(ba.data[1], 0x8b);
	assert_int_equal(ba.data[4] | ba.data[5] | ba.data[6] | ba.data[7], 0);
	buf_free(&ba);
	buf_free(&bb);
}

static void test_bad_and_duplicate_paths_are_refused(void **state)
{
	struct img_initramfs *ir = img_initramfs_new();
	struct vmci_err err = {0};
	assert_int_equal(img_initramfs_add_dir(ir, "../etc", 0755, &err), -EINVAL);
	assert_int_equal(img_initramfs_add_dir(ir, "a//b", 0755, &err), -EINVAL);
	assert_int_equal(img_initramfs_add_dir(ir, "a/./b", 0755, &err), -EINVAL);
	assert_int_equal(img_initramfs_add_dir(ir, "a/", 0755, &err), -EINVAL);
	assert_int_equal(img_initramfs_add_dir(ir, "", 0755, &err), -EINVAL);
	assert_int_equal(img_initramfs_add_symlink(ir, "x", "", &err), -EINVAL);
	assert_int_equal(img_initramfs_add_dir(ir, "/etc", 0755, NULL), 0);
	assert_int_equal(img_initramfs_add_data(ir, "etc", 0644, "x", 1, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "etc"));
	img_initramfs_free(ir);
}

static void test_missing_host_file_fails_and_leaves_nothing(void **state)
{
	char out[PATH_MAX];
	fs_path(out, sizeof(out), "%s/broken.gz", tmp);
	struct img_initramfs *ir = img_initramfs_new();
	assert_int_equal(img_initramfs_add_file(ir, "init", 0755, "/nonexistent/agent", NULL), 0);
	struct vmci_err err = {0};
	assert_int_equal(img_initramfs_write(ir, out, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/agent"));
	assert_false(fs_exists(out));
	img_initramfs_free(ir);
}

static void test_full_disk_says_no_space_left_on_device(void **state)
{
	char dir[PATH_MAX], out[PATH_MAX];
	fs_path(dir, sizeof(dir), "%s/small", tmp);
	fs_path(out, sizeof(out), "%s/initramfs.cpio.gz", dir);
	small_fs_mount_or_skip(dir, "1m");
	/* Bytes gzip cannot shrink, more than the file system holds. */
	enum { LEN = 3 << 20 };
	uint8_t *noise = malloc(LEN);
	uint32_t x = 1;
	for (size_t i = 0; i < LEN; i++) {
		x = x * 1103515245u + 12345u;
		noise[i] = (uint8_t)(x >> 23);
	}
	struct img_initramfs *ir = img_initramfs_new();
	assert_int_equal(img_initramfs_add_data(ir, "bin/big", 0755, noise, LEN, NULL), 0);
	free(noise);
	struct vmci_err err = {0};
	int rc = img_initramfs_write(ir, out, &err);
	bool left = fs_exists(out);
	small_fs_umount(dir);
	img_initramfs_free(ir);
	assert_int_equal(rc, -ENOSPC);
	assert_non_null(strstr(err.msg, out));
	assert_non_null(strcasestr(err.msg, "no space left on device"));
	assert_false(left);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_written_archive_reads_back_sorted_with_parents),
	    cmocka_unit_test(test_output_is_deterministic),
	    cmocka_unit_test(test_bad_and_duplicate_paths_are_refused),
	    cmocka_unit_test(test_missing_host_file_fails_and_leaves_nothing),
	    cmocka_unit_test(test_full_disk_says_no_space_left_on_device),
	};
	return cmocka_run_group_tests(tests, make_tmp, remove_tmp);
}
