/*
 * images/extract.c and the device nodes of images/rootdisk.c: a root
 * filesystem archive extracted into a tree. A full disk fails the whole
 * extraction naming the entry; an entry that leaves the tree is refused
 * by its name; device nodes are never made on the host (mknod is spied
 * on) and end up in the ext4 disk, as debugfs reads it back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include "small_fs.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char tmp[PATH_MAX];

/* ---- spying on mknod ------------------------------------------------------ */

/*
 * libarchive makes device nodes with mknod(); these definitions take the
 * place of libc's for it (the executable's symbols win), and refuse.
 */
static int mknod_calls;

int mknod(const char *path, mode_t mode, dev_t dev)
{
	mknod_calls++;
	errno = EPERM;
	return -1;
}

int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
	mknod_calls++;
	errno = EPERM;
	return -1;
}

/* ---- archives --------------------------------------------------------------- */

struct ent {
	const char *path;
	char type; /* 'f' file, 'd' directory, 'c' char device, 'b' block device, 'h' hard link */
	const void *data;
	size_t len;
	unsigned mode;
	unsigned major, minor; /* devices */
	const char *link;      /* hard links */
};

static struct archive_entry *to_entry(const struct ent *v)
{
	struct archive_entry *e = archive_entry_new();
	static const mode_t types[] = {['f'] = AE_IFREG,
				       ['d'] = AE_IFDIR,
				       ['c'] = AE_IFCHR,
				       ['b'] = AE_IFBLK,
				       ['h'] = AE_IFREG};
	archive_entry_set_pathname(e, v->path);
	archive_entry_set_filetype(e, types[(unsigned char)v->type]);
	archive_entry_set_perm(e, v->mode ? v->mode : v->type == 'd' ? 0755 : 0644);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, v->type == 'c' || v->type == 'b' ? 6 : 0);
	archive_entry_set_mtime(e, 1700000000, 0);
	archive_entry_set_size(e, v->type == 'f' ? (la_int64_t)v->len : 0);
	if (v->type == 'c' || v->type == 'b') {
		archive_entry_set_rdevmajor(e, v->major);
		archive_entry_set_rdevminor(e, v->minor);
	}
	if (v->type == 'h')
		archive_entry_set_hardlink(e, v->link);
	return e;
}

#define D(p)                                                                                       \
	{                                                                                          \
		.path = (p), .type = 'd'                                                           \
	}
#define F(p, d, n)                                                                                 \
	{                                                                                          \
		.path = (p), .type = 'f', .data = (d), .len = (n)                                  \
	}
#define DEV(p, t, m, ma, mi)                                                                       \
	{                                                                                          \
		.path = (p), .type = (t), .mode = (m), .major = (ma), .minor = (mi)                \
	}
#define LINK(p, to)                                                                                \
	{                                                                                          \
		.path = (p), .type = 'h', .link = (to)                                             \
	}

/* Writes a gzip'd pax tarball of the entries at path. */
static void make_tar(const char *path, const struct ent *v, size_t n)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_gzip(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = to_entry(&v[i]);
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		if (v[i].type == 'f' && v[i].len)
			assert_int_equal(archive_write_data(a, v[i].data, v[i].len),
					 (la_ssize_t)v[i].len);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* A fresh, empty directory under the test's tmp. */
static void fresh_dir(char *out, const char *name)
{
	snprintf(out, PATH_MAX, "%s/%s", tmp, name);
	fs_rm_rf(out, NULL);
	assert_int_equal(fs_mkdir_p(out, 0755, NULL), 0);
}

/* How many character or block devices there are at or below path. */
static int devices_below(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		return 1;
	if (!S_ISDIR(st.st_mode))
		return 0;
	int n = 0;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		char sub[PATH_MAX];
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    !fs_path(sub, sizeof(sub), "%s/%s", path, de->d_name))
			n += devices_below(sub);
	}
	if (d)
		closedir(d);
	return n;
}

static int extract(const char *tar, const char *target, struct img_nodes *nodes,
		   struct vmci_err *err)
{
	long long bytes;
	return img_extract_rootfs(tar, target, NULL, &bytes, nodes, err);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_full_disk_fails_the_extraction_naming_the_entry(void **state)
{
	enum { BIG = 4 << 20 };
	uint8_t *big = malloc(BIG);
	for (size_t i = 0; i < BIG; i++)
		big[i] = (uint8_t)(i * 7 + (i >> 12));
	const struct ent v[] = {D("./etc/"), F("./etc/os-release", "NAME=full\n", 10),
				F("./etc/big", big, BIG), F("./etc/after", "after\n", 6)};
	char tar[PATH_MAX], target[PATH_MAX];
	snprintf(tar, sizeof(tar), "%s/full.tar.gz", tmp);
	make_tar(tar, v, ARRAY_LEN(v));
	free(big);
	fresh_dir(target, "small");
	small_fs_mount_or_skip(target, "1m");

	struct img_nodes nodes = {0};
	struct vmci_err err = {0};
	int rc = extract(tar, target, &nodes, &err);
	small_fs_umount(target);
	assert_int_equal(rc, -ENOSPC);
	assert_non_null(strstr(err.msg, "etc/big"));
	assert_non_null(strcasestr(err.msg, "no space left on device"));
	img_nodes_free(&nodes);
}

static void test_entry_leaving_the_tree_is_refused_by_its_name(void **state)
{
	const struct ent v[] = {D("./etc/"), F("./etc/x", "x", 1), F("../evil", "e", 1)};
	char tar[PATH_MAX], target[PATH_MAX], evil[PATH_MAX];
	snprintf(tar, sizeof(tar), "%s/dotdot.tar.gz", tmp);
	make_tar(tar, v, ARRAY_LEN(v));
	fresh_dir(target, "dotdot/target");
	struct img_nodes nodes = {0};
	struct vmci_err err = {0};
	assert_true(extract(tar, target, &nodes, &err) < 0);
	char want[PATH_MAX + 64];
	snprintf(want, sizeof(want), "cannot extract ../evil from %s", tar);
	if (!strstr(err.msg, want))
		fail_msg("expected '%s' in: %s", want, err.msg);
	snprintf(evil, sizeof(evil), "%s/dotdot/evil", tmp);
	assert_false(fs_exists(evil));
	img_nodes_free(&nodes);
}

static void test_device_nodes_are_never_made_on_the_host(void **state)
{
	/* The spy works: libarchive asked directly does call mknod. */
	char target[PATH_MAX], path[PATH_MAX];
	fresh_dir(target, "spy");
	snprintf(path, sizeof(path), "%s/null", target);
	struct archive *w = archive_write_disk_new();
	const struct ent null = DEV(path, 'c', 0666, 1, 3);
	struct archive_entry *e = to_entry(&null);
	mknod_calls = 0;
	archive_write_header(w, e);
	archive_entry_free(e);
	archive_write_free(w);
	assert_int_equal(mknod_calls, 1);

	const struct ent v[] = {
	    D("./dev/"), DEV("./dev/evil", 'c', 0666, 1, 3), DEV("./dev/sda", 'b', 0660, 8, 1),
	    LINK("./dev/also-evil", "./dev/evil"), F("./etc/os-release", "NAME=dev\n", 9)};
	char tar[PATH_MAX];
	snprintf(tar, sizeof(tar), "%s/dev.tar.gz", tmp);
	make_tar(tar, v, ARRAY_LEN(v));
	fresh_dir(target, "dev");
	struct img_nodes nodes = {0};
	struct vmci_err err = {0};
	mknod_calls = 0;
	if (extract(tar, target, &nodes, &err))
		fail_msg("extract: %s", err.msg);
	assert_int_equal(mknod_calls, 0);
	assert_int_equal(devices_below(target), 0);

	assert_int_equal(nodes.n, 3);
	assert_string_equal(nodes.v[0].path, "dev/evil");
	assert_int_equal(nodes.v[0].mode, S_IFCHR | 0666);
	assert_int_equal(nodes.v[0].major, 1);
	assert_int_equal(nodes.v[0].minor, 3);
	assert_int_equal(nodes.v[0].gid, 6);
	assert_int_equal(nodes.v[0].mtime, 1700000000);
	assert_string_equal(nodes.v[1].path, "dev/sda");
	assert_int_equal(nodes.v[1].mode, S_IFBLK | 0660);
	assert_string_equal(nodes.v[2].path, "dev/also-evil");
	assert_int_equal(nodes.v[2].mode, S_IFCHR | 0666);
	/* What stands in for a node on the host is an empty file only root can read. */
	struct stat st;
	snprintf(path, sizeof(path), "%s/dev/evil", target);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 0);
	img_nodes_free(&nodes);
}

/* `debugfs -R 'stat PATH' raw`, as text. */
static void debugfs_stat(const char *raw, const char *path, struct buf *out)
{
	char request[PATH_MAX];
	snprintf(request, sizeof(request), "stat \"%s\"", path);
	char *argv[] = {"debugfs", "-R", request, (char *)raw, NULL};
	out->len = 0;
	struct vmci_err err = {0};
	if (run_command(argv, out, &err))
		fail_msg("debugfs: %s", err.msg);
}

static void test_device_nodes_are_made_in_the_disk(void **state)
{
	const struct ent v[] = {D("./dev/"),
				DEV("./dev/evil", 'c', 0620, 1, 3),
				DEV("./dev/sda", 'b', 0660, 8, 1),
				DEV("./dev/with space", 'c', 0600, 5, 1),
				DEV("./console", 'c', 0600, 5, 1),
				F("./etc/os-release", "NAME=dev\n", 9)};
	char tar[PATH_MAX], target[PATH_MAX], raw[PATH_MAX];
	snprintf(tar, sizeof(tar), "%s/disk.tar.gz", tmp);
	make_tar(tar, v, ARRAY_LEN(v));
	fresh_dir(target, "disk/target");
	snprintf(raw, sizeof(raw), "%s/disk/disk.raw", tmp);
	struct img_nodes nodes = {0};
	struct vmci_err err = {0};
	if (extract(tar, target, &nodes, &err) || img_rootdisk_make(target, 32 << 20, raw, &err) ||
	    img_rootdisk_add_nodes(raw, &nodes, &err))
		fail_msg("%s", err.msg);
	img_nodes_free(&nodes);

	struct buf out = {0};
	debugfs_stat(raw, "/dev/evil", &out);
	assert_non_null(strstr(buf_cstr(&out), "Type: character special"));
	assert_non_null(strstr(buf_cstr(&out), "Mode:  0620"));
	assert_non_null(strstr(buf_cstr(&out), "Group:     6"));
	assert_non_null(strstr(buf_cstr(&out), "Device major/minor number: 01:03"));
	debugfs_stat(raw, "/dev/sda", &out);
	assert_non_null(strstr(buf_cstr(&out), "Type: block special"));
	assert_non_null(strstr(buf_cstr(&out), "Device major/minor number: 08:01"));
	debugfs_stat(raw, "/dev/with space", &out);
	assert_non_null(strstr(buf_cstr(&out), "Type: character special"));
	debugfs_stat(raw, "/console", &out);
	assert_non_null(strstr(buf_cstr(&out), "Device major/minor number: 05:01"));
	/* The file system is sound: no placeholder left behind, no name twice. */
	char *fsck[] = {"e2fsck", "-fn", raw, NULL};
	if (run_command(fsck, NULL, &err))
		fail_msg("e2fsck: %s", err.msg);
	buf_free(&out);
}

static void test_a_later_entry_replaces_a_device_node(void **state)
{
	const struct ent v[] = {D("./dev/"), DEV("./dev/evil", 'c', 0666, 1, 3),
				F("./dev/evil", "now a file\n", 11)};
	char tar[PATH_MAX], target[PATH_MAX], path[PATH_MAX];
	snprintf(tar, sizeof(tar), "%s/later.tar.gz", tmp);
	make_tar(tar, v, ARRAY_LEN(v));
	fresh_dir(target, "later");
	struct img_nodes nodes = {0};
	struct vmci_err err = {0};
	if (extract(tar, target, &nodes, &err))
		fail_msg("extract: %s", err.msg);
	assert_int_equal(nodes.n, 0);
	snprintf(path, sizeof(path), "%s/dev/evil", target);
	struct buf b = {0};
	assert_int_equal(fs_read_file(path, 64, &b, NULL), 0);
	assert_string_equal(buf_cstr(&b), "now a file\n");
	buf_free(&b);
	img_nodes_free(&nodes);
}

static void test_device_node_with_a_quote_in_its_name_is_refused(void **state)
{
	const struct ent v[] = {D("./dev/"), DEV("./dev/a\"b", 'c', 0666, 1, 3)};
	char tar[PATH_MAX], target[PATH_MAX];
	snprintf(tar, sizeof(tar), "%s/quote.tar.gz", tmp);
	make_tar(tar, v, ARRAY_LEN(v));
	fresh_dir(target, "quote");
	struct img_nodes nodes = {0};
	struct vmci_err err = {0};
	assert_int_equal(extract(tar, target, &nodes, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "dev/a\"b"));
	assert_int_equal(devices_below(target), 0);
	img_nodes_free(&nodes);
}

int main(void)
{
	snprintf(tmp, sizeof(tmp), "%s/vmci-extract-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmp))
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_disk_fails_the_extraction_naming_the_entry),
	    cmocka_unit_test(test_entry_leaving_the_tree_is_refused_by_its_name),
	    cmocka_unit_test(test_device_nodes_are_never_made_on_the_host),
	    cmocka_unit_test(test_device_nodes_are_made_in_the_disk),
	    cmocka_unit_test(test_a_later_entry_replaces_a_device_node),
	    cmocka_unit_test(test_device_node_with_a_quote_in_its_name_is_refused),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	fs_rm_rf(tmp, NULL);
	return failed;
}
