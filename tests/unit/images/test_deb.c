/* images/deb.c: reading .deb packages, extracting a kernel, the package cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"
#include "fake_module.h"
#include "small_fs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static char home[256];

/* ---- building a synthetic .deb ------------------------------------------ */

struct member {
	const char *path; /* ending in '/' for a directory */
	const void *data;
	size_t len;
};

/* Writes one entry (directory or regular file) to a. */
static void put(struct archive *a, const struct member *m)
{
	struct archive_entry *e = archive_entry_new();
	bool dir = m->path[strlen(m->path) - 1] == '/';
	archive_entry_set_pathname(e, m->path);
	archive_entry_set_mode(e, dir ? AE_IFDIR | 0755 : AE_IFREG | 0644);
	archive_entry_set_size(e, dir ? 0 : (la_int64_t)m->len);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	if (!dir && m->len)
		assert_int_equal(archive_write_data(a, m->data, m->len), (la_ssize_t)m->len);
	archive_entry_free(e);
}

/* A tar.xz of the members, built in memory. */
static void make_tar_xz(const struct member *m, size_t n, struct buf *out)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_xz(a);
	assert_int_equal(buf_reserve(out, 1 << 20), 0);
	size_t used = 0;
	assert_int_equal(archive_write_open_memory(a, out->data, out->cap, &used), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++)
		put(a, &m[i]);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	out->len = used;
}

/* A .deb: the ar archive dpkg-deb makes, around data.tar.xz. */
static void make_deb(const char *path, const struct member *m, size_t n)
{
	struct buf control = {0}, data = {0};
	const struct member ctl = {"./control", "Package: test\n", 14};
	make_tar_xz(&ctl, 1, &control);
	make_tar_xz(m, n, &data);
	struct archive *a = archive_write_new();
	archive_write_set_format_ar_svr4(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	const struct member parts[] = {{"debian-binary", "2.0\n", 4},
				       {"control.tar.xz", control.data, control.len},
				       {"data.tar.xz", data.data, data.len}};
	for (size_t i = 0; i < ARRAY_LEN(parts); i++)
		put(a, &parts[i]);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	buf_free(&control);
	buf_free(&data);
}

/* data xz-compressed as a single raw stream, like a .ko.xz. */
static void xz(const void *data, size_t len, struct buf *out)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_raw(a);
	archive_write_add_filter_xz(a);
	assert_int_equal(buf_reserve(out, len + 4096), 0);
	size_t used = 0;
	assert_int_equal(archive_write_open_memory(a, out->data, out->cap, &used), ARCHIVE_OK);
	const struct member m = {"m", data, len};
	put(a, &m);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	out->len = used;
}

/* ---- tests --------------------------------------------------------------- */

#define MODDIR "./lib/modules/9.9.9-test/kernel/"

static void test_extract_kernel_writes_vmlinuz_and_orders_modules(void **state)
{
	size_t early_len, xz_len, top_len, other_len;
	uint8_t *early = fake_named_module("early_dep", "", &early_len);
	uint8_t *xzmod = fake_named_module("xz_dep", "early_dep", &xz_len);
	uint8_t *top = fake_named_module("top", "xz_dep,early_dep,built_in_thing", &top_len);
	uint8_t *other = fake_named_module("unrelated", "early_dep", &other_len);
	struct buf packed = {0};
	xz(xzmod, xz_len, &packed);
	/* early_dep comes first in the package: it is needed only once top is read. */
	const struct member m[] = {
	    {"./", NULL, 0},
	    {"./boot/", NULL, 0},
	    {"./boot/vmlinuz-9.9.9-test", "KERNEL-IMAGE", 12},
	    {"./boot/config-9.9.9-test", "CONFIG_X=y\n", 11},
	    {MODDIR "a/early_dep.ko", early, early_len},
	    {MODDIR "b/unrelated.ko", other, other_len},
	    {MODDIR "m/xz_dep.ko.xz", packed.data, packed.len},
	    {MODDIR "z/top.ko", top, top_len},
	    {"./lib/modules/9.9.9-test/modules.builtin", "kernel/x.ko\n", 12},
	    {"./usr/share/doc/linux-image/changelog.gz", "log", 3},
	};
	char deb[PATH_MAX], vmlinuz[PATH_MAX], release[64];
	fs_path(deb, sizeof(deb), "%s/kernel.deb", home);
	fs_path(vmlinuz, sizeof(vmlinuz), "%s/vmlinuz", home);
	make_deb(deb, m, ARRAY_LEN(m));

	const char *const wanted[] = {"top", NULL};
	struct img_kmods *mods = img_kmods_new(wanted);
	struct vmci_err err = {0};
	assert_int_equal(img_deb_extract_kernel(deb, vmlinuz, mods, release, sizeof(release), &err),
			 0);
	assert_string_equal(release, "9.9.9-test");
	struct buf k = {0};
	assert_int_equal(fs_read_file(vmlinuz, 1024, &k, NULL), 0);
	assert_string_equal(buf_cstr(&k), "KERNEL-IMAGE");

	assert_int_equal(img_kmods_count(mods), 3);
	const struct img_kmod *a = img_kmods_at(mods, 0), *b = img_kmods_at(mods, 1),
			      *c = img_kmods_at(mods, 2);
	assert_string_equal(a->name, "early_dep");
	assert_string_equal(b->name, "xz_dep");
	assert_string_equal(b->file, "xz_dep.ko");
	assert_string_equal(b->relpath, "kernel/m/xz_dep.ko.xz");
	assert_string_equal(c->name, "top");
	assert_int_equal(a->len, early_len);
	assert_memory_equal(a->data, early, early_len);
	assert_int_equal(b->len, xz_len);
	assert_memory_equal(b->data, xzmod, xz_len);
	img_kmods_free(mods);
	buf_free(&k);
	buf_free(&packed);
	free(early);
	free(xzmod);
	free(top);
	free(other);
}

static void test_package_without_kernel_is_refused(void **state)
{
	const struct member m[] = {{"./usr/", NULL, 0}, {"./usr/bin/true", "x", 1}};
	char deb[PATH_MAX], vmlinuz[PATH_MAX], release[64];
	fs_path(deb, sizeof(deb), "%s/notkernel.deb", home);
	fs_path(vmlinuz, sizeof(vmlinuz), "%s/vmlinuz2", home);
	make_deb(deb, m, ARRAY_LEN(m));
	struct img_kmods *mods = img_kmods_new(NULL);
	struct vmci_err err = {0};
	assert_int_equal(img_deb_extract_kernel(deb, vmlinuz, mods, release, sizeof(release), &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "vmlinuz"));
	img_kmods_free(mods);
}

static int count_entries(void *ctx, const char *path, struct archive *a, struct archive_entry *e,
			 struct vmci_err *err)
{
	(*(int *)ctx)++;
	assert_true(path[0] != '.' && path[0] != '/');
	return 0;
}

static void test_non_deb_files_are_refused_by_name(void **state)
{
	char path[PATH_MAX];
	fs_path(path, sizeof(path), "%s/garbage.deb", home);
	assert_int_equal(fs_write_atomic(path, "not an ar archive at all", 24, 0644, NULL), 0);
	int n = 0;
	struct vmci_err err = {0};
	assert_true(img_deb_read(path, count_entries, &n, &err) < 0);
	assert_non_null(strstr(err.msg, path));
	assert_int_equal(n, 0);
}

static void test_truncated_package_is_an_error(void **state)
{
	uint8_t noise[64 * 1024];
	srand(7);
	for (size_t i = 0; i < sizeof(noise); i++)
		noise[i] = (uint8_t)rand(); /* incompressible, so data.tar.xz is large */
	const struct member m[] = {{"./boot/", NULL, 0}, {"./boot/big", noise, sizeof(noise)}};
	char deb[PATH_MAX];
	fs_path(deb, sizeof(deb), "%s/cut.deb", home);
	make_deb(deb, m, ARRAY_LEN(m));
	assert_int_equal(truncate(deb, 32 * 1024), 0);
	int n = 0;
	struct vmci_err err = {0};
	assert_true(img_deb_read(deb, count_entries, &n, &err) < 0);
	assert_non_null(strstr(err.msg, deb));
}

static void test_deb_arch_names(void **state)
{
	const char *d;
	assert_int_equal(img_deb_arch("x86_64", &d, NULL), 0);
	assert_string_equal(d, "amd64");
	assert_int_equal(img_deb_arch("aarch64", &d, NULL), 0);
	assert_string_equal(d, "arm64");
	struct vmci_err err = {0};
	assert_int_equal(img_deb_arch("mips", &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "mips"));
}

/* With apt unreachable (PATH emptied), fn runs against the cache alone. */
static int without_apt(int (*fn)(struct img_deb *, struct vmci_err *), struct img_deb *d,
		       struct vmci_err *err)
{
	char *saved = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", "/nonexistent", 1);
	int rc = fn(d, err);
	setenv("PATH", saved, 1);
	free(saved);
	return rc;
}

static int fetch_cloud_amd64(struct img_deb *d, struct vmci_err *err)
{
	return img_deb_fetch_kernel("cloud", "amd64", NULL, d, NULL, NULL, err);
}

static void write_resolution(const char *line, bool stale)
{
	char dir[PATH_MAX], path[PATH_MAX], deb[PATH_MAX];
	fs_path(dir, sizeof(dir), "%s/cache/debs", home);
	assert_int_equal(fs_mkdir_p(dir, 0755, NULL), 0);
	fs_path(path, sizeof(path), "%s/linux-image-cloud-amd64_amd64.resolved", dir);
	assert_int_equal(fs_write_atomic(path, line, strlen(line), 0644, NULL), 0);
	/* apt-get download spells an epoch's ':' as %3a. */
	fs_path(deb, sizeof(deb), "%s/linux-image-9.9-cloud-amd64_1%%3a9.9-1_amd64.deb", dir);
	assert_int_equal(fs_write_atomic(deb, "deb bytes", 9, 0644, NULL), 0);
	if (stale) {
		struct timeval old[2] = {{.tv_sec = 1000000}, {.tv_sec = 1000000}};
		assert_int_equal(utimes(path, old), 0);
	}
}

static void test_fresh_resolution_and_cached_deb_need_no_apt(void **state)
{
	write_resolution("linux-image-9.9-cloud-amd64 1:9.9-1\n", false);
	struct img_deb d;
	struct vmci_err err = {0};
	assert_int_equal(without_apt(fetch_cloud_amd64, &d, &err), 0);
	assert_string_equal(d.package, "linux-image-9.9-cloud-amd64");
	assert_string_equal(d.version, "1:9.9-1");
	assert_string_equal(d.arch, "amd64");
	assert_non_null(
	    strstr(d.path, "/cache/debs/linux-image-9.9-cloud-amd64_1%3a9.9-1_amd64.deb"));
	char want[SHA256_HEX_LEN + 1];
	assert_int_equal(sha256_file(d.path, want, NULL), 0);
	assert_string_equal(d.sha256, want);
}

static void test_stale_resolution_is_used_when_apt_fails(void **state)
{
	write_resolution("linux-image-9.9-cloud-amd64 1:9.9-1\n", true);
	struct img_deb d;
	assert_int_equal(without_apt(fetch_cloud_amd64, &d, NULL), 0);
	assert_string_equal(d.package, "linux-image-9.9-cloud-amd64");
}

static void test_no_resolution_and_no_apt_says_apt_get_update(void **state)
{
	char path[PATH_MAX];
	fs_path(path, sizeof(path), "%s/cache", home);
	assert_int_equal(fs_rm_rf(path, NULL), 0);
	struct img_deb d;
	struct vmci_err err = {0};
	assert_int_equal(without_apt(fetch_cloud_amd64, &d, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "linux-image-cloud-amd64:amd64"));
	assert_non_null(strstr(err.msg, "apt-get update"));
}

/* Runs fn with stderr going to a file; returns what fn printed there. */
static void capture_stderr(void (*fn)(void *), void *arg, struct buf *out)
{
	char path[PATH_MAX];
	fs_path(path, sizeof(path), "%s/stderr", home);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), saved = dup(2);
	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	assert_int_equal(fs_read_file(path, 1 << 16, out, NULL), 0);
}

struct extract_call {
	const char *deb;
	struct img_kmods *mods;
	int rc;
};

static void call_extract(void *arg)
{
	struct extract_call *c = arg;
	char vmlinuz[PATH_MAX], release[64];
	fs_path(vmlinuz, sizeof(vmlinuz), "%s/vmlinuz", home);
	c->rc = img_deb_extract_kernel(c->deb, vmlinuz, c->mods, release, sizeof(release), NULL);
}

static void test_unknown_module_is_reported_not_dropped(void **state)
{
	size_t top_len;
	uint8_t *top = fake_named_module("top", "", &top_len);
	static const char builtin[] = "kernel/fs/ext4/ext4.ko\nkernel/fs/mbcache.ko\n";
	const struct member m[] = {
	    {"./boot/vmlinuz-9.9.9-test", "KERNEL-IMAGE", 12},
	    {MODDIR "z/top.ko", top, top_len},
	    {"./lib/modules/9.9.9-test/modules.builtin", builtin, sizeof(builtin) - 1},
	};
	char deb[PATH_MAX];
	fs_path(deb, sizeof(deb), "%s/unknown.deb", home);
	make_deb(deb, m, ARRAY_LEN(m));
	/* virtio_rgn: a typo. top is a module file, ext4 is built in. */
	const char *const wanted[] = {"top", "ext4", "virtio_rgn", NULL};
	struct extract_call c = {.deb = deb, .mods = img_kmods_new(wanted)};
	struct buf said = {0};
	vmci_log_set_level(VMCI_LOG_WARN);
	capture_stderr(call_extract, &c, &said);
	assert_int_equal(c.rc, 0);
	assert_int_equal(img_kmods_count(c.mods), 1);
	const char *text = buf_cstr(&said);
	if (!strstr(text, "warning") || !strstr(text, "'virtio_rgn'") ||
	    !strstr(text, "kernel.modules"))
		fail_msg("no warning naming virtio_rgn in: '%s'", text);
	assert_null(strstr(text, "'ext4'"));
	assert_null(strstr(text, "'top'"));
	img_kmods_free(c.mods);
	buf_free(&said);
	free(top);
}

/*
 * A fake apt first in PATH: apt-cache shows a kernel, and apt-get download
 * fills the disk and fails the way apt does, without naming the cause.
 */
static void test_download_onto_a_full_disk_says_no_space_left(void **state)
{
	char cache[PATH_MAX], partial[PATH_MAX], bin[PATH_MAX], path[PATH_MAX];
	fs_path(cache, sizeof(cache), "%s/cache", home);
	assert_int_equal(fs_rm_rf(cache, NULL), 0);
	fs_path(bin, sizeof(bin), "%s/fake-apt", home);
	assert_int_equal(fs_mkdir_p(bin, 0755, NULL), 0);
	static const char apt_cache[] =
	    "#!/bin/sh\n"
	    "printf 'Package: linux-image-cloud-amd64\\nVersion: 9.9-1\\n"
	    "Depends: linux-image-9.9-cloud-amd64 (= 9.9-1)\\n'\n";
	static const char apt_get[] =
	    "#!/bin/sh\n"
	    "head -c 4194304 /dev/zero >linux-image-9.9-cloud-amd64_9.9-1_amd64.deb 2>/dev/null\n"
	    "echo 'E: Failed to fetch http://deb.debian.org/debian/pool/main/l/linux.deb' >&2\n"
	    "exit 100\n";
	fs_path(path, sizeof(path), "%s/apt-cache", bin);
	assert_int_equal(fs_write_atomic(path, apt_cache, sizeof(apt_cache) - 1, 0755, NULL), 0);
	fs_path(path, sizeof(path), "%s/apt-get", bin);
	assert_int_equal(fs_write_atomic(path, apt_get, sizeof(apt_get) - 1, 0755, NULL), 0);
	fs_path(partial, sizeof(partial), "%s/cache/debs/partial", home);
	small_fs_mount_or_skip(partial, "1m");

	char *saved = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	char fake_path[PATH_MAX + 32];
	snprintf(fake_path, sizeof(fake_path), "%s:/usr/bin:/bin", bin);
	setenv("PATH", fake_path, 1);
	struct img_deb d;
	struct vmci_err err = {0};
	int rc = fetch_cloud_amd64(&d, &err);
	setenv("PATH", saved, 1);
	free(saved);
	small_fs_umount(partial);
	assert_int_equal(rc, -ENOSPC);
	assert_non_null(strstr(err.msg, "linux-image-9.9-cloud-amd64"));
	assert_non_null(strcasestr(err.msg, "no space left on device"));
	assert_null(strstr(err.msg, "check the network"));
}

int main(void)
{
	/* Before anything calls vmci_home(), which keeps the first value it sees. */
	snprintf(home, sizeof(home), "%s/vmci-deb-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(home))
		return 1;
	setenv("VMCI_HOME", home, 1);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_extract_kernel_writes_vmlinuz_and_orders_modules),
	    cmocka_unit_test(test_package_without_kernel_is_refused),
	    cmocka_unit_test(test_non_deb_files_are_refused_by_name),
	    cmocka_unit_test(test_truncated_package_is_an_error),
	    cmocka_unit_test(test_deb_arch_names),
	    cmocka_unit_test(test_fresh_resolution_and_cached_deb_need_no_apt),
	    cmocka_unit_test(test_stale_resolution_is_used_when_apt_fails),
	    cmocka_unit_test(test_no_resolution_and_no_apt_says_apt_get_update),
	    cmocka_unit_test(test_unknown_module_is_reported_not_dropped),
	    cmocka_unit_test(test_download_onto_a_full_disk_says_no_space_left),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	fs_rm_rf(home, NULL);
	return failed;
}
