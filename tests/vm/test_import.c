/*
 * Import: a root filesystem tarball made here (files, a symlink, a hard
 * link, a setuid file, a file owned by uid 1234) becomes an image, boots,
 * and each is checked from inside the guest; the image's own disk, as raw
 * and as qcow2, imports and boots too; a recipe's setup commands run in a
 * VM and their changes are kept.
 *
 * The store is private to this test (removed at the end), so every run
 * really imports; the package cache is shared with $VMCI_HOME.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char home[PATH_MAX], work[PATH_MAX], tarball[PATH_MAX];

/* ---- the tarball --------------------------------------------------------------- */

static void add(struct archive *a, const char *path, mode_t type_mode, int uid, const void *data,
		size_t len, const char *link, bool hard)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, path);
	archive_entry_set_mode(e, type_mode);
	archive_entry_set_uid(e, uid);
	archive_entry_set_gid(e, uid);
	archive_entry_set_mtime(e, 1700000000, 0);
	if (link && hard)
		archive_entry_set_hardlink(e, link);
	else if (link)
		archive_entry_set_symlink(e, link);
	archive_entry_set_size(e, (la_int64_t)len);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	if (len)
		assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
	archive_entry_free(e);
}

/* A tiny root filesystem: the host's static busybox and the files under test. */
static void make_tarball(const char *path)
{
	struct buf bb = {0}, applets = {0};
	assert_int_equal(fs_read_file("/bin/busybox", 16 << 20, &bb, NULL), 0);
	char *argv[] = {"/bin/busybox", "--list", NULL};
	assert_int_equal(run_command(argv, &applets, NULL), 0);

	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_zstd(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	static const char *const dirs[] = {"bin", "etc", "dev",	 "proc", "sys",
					   "run", "tmp", "root", "data", "work"};
	for (size_t i = 0; i < ARRAY_LEN(dirs); i++)
		add(a, dirs[i], AE_IFDIR | (strcmp(dirs[i], "tmp") ? 0755 : 01777), 0, NULL, 0,
		    NULL, false);
	add(a, "bin/busybox", AE_IFREG | 0755, 0, bb.data, bb.len, NULL, false);
	char *save = NULL;
	for (char *name = strtok_r((char *)buf_cstr(&applets), "\n", &save); name;
	     name = strtok_r(NULL, "\n", &save)) {
		char p[128];
		snprintf(p, sizeof(p), "bin/%s", name);
		if (strcmp(name, "busybox"))
			add(a, p, AE_IFLNK | 0777, 0, NULL, 0, "busybox", false);
	}
	static const char os[] = "PRETTY_NAME=\"Imported Test System\"\nID=imported\n";
	static const char hello[] = "hello from the tarball\n";
	static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\n";
	add(a, "etc/os-release", AE_IFREG | 0644, 0, os, sizeof(os) - 1, NULL, false);
	add(a, "etc/passwd", AE_IFREG | 0644, 0, passwd, sizeof(passwd) - 1, NULL, false);
	add(a, "data/hello.txt", AE_IFREG | 0640, 0, hello, sizeof(hello) - 1, NULL, false);
	add(a, "data/link", AE_IFLNK | 0777, 0, NULL, 0, "hello.txt", false);
	add(a, "data/hard", AE_IFREG | 0640, 0, NULL, 0, "data/hello.txt", true);
	add(a, "data/suid", AE_IFREG | 04755, 0, "#!/bin/sh\n", 10, NULL, false);
	add(a, "data/owned", AE_IFREG | 0600, 1234, "mine\n", 5, NULL, false);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	buf_free(&bb);
	buf_free(&applets);
}

/* ---- checks in the guest -------------------------------------------------------- */

static void expect_output(struct runner_guest *g, const char *script, const char *want)
{
	struct capture c = {0};
	struct vm_exec_result r = vmtest_sh(g->vm, script, &c);
	if (r.kind != VM_EXITED || r.code != 0 || strcmp(buf_cstr(&c.out), want))
		fail_msg("`%s` gave (status %d) stdout:\n%s\nstderr:\n%s\nexpected:\n%s", script,
			 r.code, buf_cstr(&c.out), buf_cstr(&c.err), want);
	capture_free(&c);
}

/* What the tarball put there, seen from inside the booted image. */
static void check_imported_files_on(const char *image, const char *root_mount)
{
	struct runner_guest *g = vmtest_boot(image);
	printf("# %s booted to a ready agent in %lld ms\n", image, (long long)vm_boot_ms(g->vm));
	expect_output(g, "grep PRETTY_NAME /etc/os-release",
		      "PRETTY_NAME=\"Imported Test System\"\n");
	expect_output(g, "grep ' / ' /proc/mounts | cut -d' ' -f1-3", root_mount);
	expect_output(g, "cat /data/hello.txt; stat -c '%a %u %g' /data/hello.txt",
		      "hello from the tarball\n640 0 0\n");
	expect_output(g, "readlink /data/link; cat /data/link",
		      "hello.txt\nhello from the tarball\n");
	expect_output(g,
		      "stat -c '%h %i' /data/hard | cut -d' ' -f1; "
		      "[ $(stat -c %i /data/hard) = $(stat -c %i /data/hello.txt) ] && echo same",
		      "2\nsame\n");
	expect_output(g, "stat -c '%a %u %g' /data/suid", "4755 0 0\n");
	expect_output(g, "stat -c '%a %u %g' /data/owned; cat /data/owned",
		      "600 1234 1234\nmine\n");
	/* The guest writes to its own clone. */
	expect_output(g, "echo changed > /data/hello.txt && cat /data/hello.txt", "changed\n");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

static void check_imported_files(const char *image)
{
	check_imported_files_on(image, "/dev/vda / ext4\n");
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_tarball_import_keeps_files_links_modes_and_owners(void **state)
{
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	if (img_import("imported-tar", tarball, NULL, NULL, &err))
		fail_msg("%s", err.msg);
	printf("# imported a tar.zst in %lld ms\n", (long long)(clock_ms() - t0));
	check_imported_files("imported-tar");
	/* A fresh VM sees the golden image again, not the last VM's change. */
	check_imported_files("imported-tar");
}

static void test_same_source_imports_to_the_same_digest(void **state)
{
	struct img_boot a, b;
	struct vmci_err err = {0};
	assert_int_equal(img_import("imported-tar", tarball, NULL, NULL, &err), 0);
	assert_int_equal(img_find("imported-tar", &a, &err), 0);
	assert_int_equal(img_import("imported-again", tarball, NULL, NULL, &err), 0);
	assert_int_equal(img_find("imported-again", &b, &err), 0);
	assert_string_equal(a.digest, b.digest);
	assert_string_equal(a.cmdline, "vmci.root=/dev/vda vmci.rootfstype=ext4");
	assert_true(a.disk[0] != 0);
}

static void test_raw_and_qcow2_disks_import_as_they_are(void **state)
{
	struct img_boot tar;
	struct vmci_err err = {0};
	assert_int_equal(img_find("imported-tar", &tar, &err), 0);
	char raw[PATH_MAX];
	fs_path(raw, sizeof(raw), "%s/disk.raw", work);
	char *argv[] = {"qemu-img", "convert", "-f", "qcow2", "-O", "raw", tar.disk, raw, NULL};
	assert_int_equal(run_command(argv, NULL, &err), 0);
	if (img_import("imported-raw", raw, NULL, NULL, &err))
		fail_msg("%s", err.msg);
	check_imported_files("imported-raw");
	if (img_import("imported-qcow2", tar.disk, NULL, NULL, &err))
		fail_msg("%s", err.msg);
	check_imported_files("imported-qcow2");
	unlink(raw);
}

/* An MBR with one Linux partition (type 0x83) from sector 2048 on. */
static void write_mbr(const char *path, long long sectors)
{
	uint8_t mbr[512] = {0};
	uint8_t *e = mbr + 446;
	e[4] = 0x83;
	uint32_t start = 2048, count = (uint32_t)sectors;
	for (int i = 0; i < 4; i++) {
		e[8 + i] = (uint8_t)(start >> (8 * i));
		e[12 + i] = (uint8_t)(count >> (8 * i));
	}
	mbr[510] = 0x55;
	mbr[511] = 0xaa;
	FILE *f = fopen(path, "r+");
	assert_non_null(f);
	assert_int_equal(fwrite(mbr, 1, sizeof(mbr), f), sizeof(mbr));
	fclose(f);
}

static void test_partitioned_disk_boots_from_its_linux_partition(void **state)
{
	struct img_boot tar;
	struct vmci_err err = {0};
	assert_int_equal(img_find("imported-tar", &tar, &err), 0);
	char raw[PATH_MAX], disk[PATH_MAX];
	fs_path(raw, sizeof(raw), "%s/fs.raw", work);
	fs_path(disk, sizeof(disk), "%s/partitioned.img", work);
	char *convert[] = {"qemu-img", "convert", "-f", "qcow2", "-O", "raw", tar.disk, raw, NULL};
	assert_int_equal(run_command(convert, NULL, &err), 0);
	char of[PATH_MAX + 8], in[PATH_MAX + 8];
	snprintf(in, sizeof(in), "if=%s", raw);
	snprintf(of, sizeof(of), "of=%s", disk);
	char *dd[] = {"dd", in, of, "bs=1M", "seek=1", "conv=sparse,notrunc", "status=none", NULL};
	assert_int_equal(run_command(dd, NULL, &err), 0);
	struct stat st;
	assert_int_equal(stat(raw, &st), 0);
	write_mbr(disk, st.st_size / 512);
	unlink(raw);
	if (img_import("imported-parts", disk, NULL, NULL, &err))
		fail_msg("%s", err.msg);
	struct img_boot img;
	assert_int_equal(img_find("imported-parts", &img, &err), 0);
	assert_string_equal(img.cmdline, "vmci.root=/dev/vda1");
	check_imported_files_on("imported-parts", "/dev/vda1 / ext4\n");
	unlink(disk);
}

static void test_bad_sources_and_names_are_refused(void **state)
{
	struct vmci_err err = {0};
	char junk[PATH_MAX];
	fs_path(junk, sizeof(junk), "%s/junk.bin", work);
	assert_int_equal(fs_write_atomic(junk, "not an archive at all", 21, 0644, NULL), 0);
	assert_true(img_import("junk", junk, NULL, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, junk));
	assert_int_equal(img_find("junk", &(struct img_boot){0}, NULL), -ENOENT);

	assert_int_equal(img_import("debian-12", tarball, NULL, NULL, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "recipe"));
	assert_true(img_import("x", "/no/such/file.tar", NULL, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "/no/such/file.tar"));
	assert_true(img_import("../escape", tarball, NULL, NULL, &err) < 0);
}

static void test_recipe_setup_commands_run_in_a_vm_and_persist(void **state)
{
	char dir[PATH_MAX], recipe[PATH_MAX];
	fs_path(dir, sizeof(dir), "%s/recipes", work);
	assert_int_equal(fs_mkdir_p(dir, 0755, NULL), 0);
	fs_path(recipe, sizeof(recipe), "%s/setup-test.yml", dir);
	char text[2048];
	int n = snprintf(text, sizeof(text),
			 "name: setup-test\narch: x86_64\n"
			 "kernel:\n  debian: cloud\n"
			 "  modules: [virtio_pci, virtio_console, virtio_blk, virtio_rng]\n"
			 "busybox: /bin/busybox\n"
			 "rootfs:\n  tarball: %s\n"
			 "disk_size: 64M\n"
			 "setup:\n"
			 "  - echo configured > /etc/setup-ran\n"
			 "  - chmod 600 /etc/setup-ran && rm /data/owned\n",
			 tarball);
	assert_int_equal(fs_write_atomic(recipe, text, (size_t)n, 0644, NULL), 0);
	setenv("VMCI_RECIPES_DIR", dir, 1);
	struct runner_guest *g = vmtest_boot("setup-test");
	expect_output(g, "cat /etc/setup-ran; stat -c %a /etc/setup-ran", "configured\n600\n");
	expect_output(g, "ls /data", "hard\nhello.txt\nlink\nsuid\n");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);

	/* A failing command fails the build and names itself; nothing is published. */
	n = snprintf(text, sizeof(text),
		     "name: setup-fails\narch: x86_64\n"
		     "kernel:\n  debian: cloud\n"
		     "  modules: [virtio_pci, virtio_console, virtio_blk, virtio_rng]\n"
		     "busybox: /bin/busybox\nrootfs:\n  tarball: %s\ndisk_size: 64M\n"
		     "setup:\n  - 'true'\n  - echo doomed >&2; exit 7\n",
		     tarball);
	fs_path(recipe, sizeof(recipe), "%s/setup-fails.yml", dir);
	assert_int_equal(fs_write_atomic(recipe, text, (size_t)n, 0644, NULL), 0);
	struct runner_guest *bad = NULL;
	struct vmci_err err = {0};
	assert_true(runner_guest_boot("setup-fails", NULL, &bad, &err) < 0);
	assert_null(bad);
	assert_non_null(strstr(err.msg, "setup command 2"));
	assert_non_null(strstr(err.msg, "exited 7"));
	assert_non_null(strstr(err.msg, "doomed"));
	/* Without a VM to run them in, images refuses to build it. */
	fs_path(recipe, sizeof(recipe), "%s/setup-nohook.yml", dir);
	n = snprintf(text, sizeof(text),
		     "name: setup-nohook\narch: x86_64\nkernel: {debian: cloud}\n"
		     "busybox: /bin/busybox\nrootfs: {tarball: %s}\ndisk_size: 64M\n"
		     "setup: ['true']\n",
		     tarball);
	assert_int_equal(fs_write_atomic(recipe, text, (size_t)n, 0644, NULL), 0);
	struct img_boot img;
	assert_true(img_ensure("setup-nohook", &img, NULL, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "vmci image build setup-nohook"));

	/*
	 * The template path (the warm pool's and `vm run --start template`'s)
	 * builds an unbuilt recipe with its setup commands, like a plain boot.
	 */
	n = snprintf(text, sizeof(text),
		     "name: setup-template\narch: x86_64\n"
		     "kernel:\n  debian: cloud\n"
		     "  modules: [virtio_pci, virtio_console, virtio_blk, virtio_rng]\n"
		     "busybox: /bin/busybox\nrootfs: {tarball: %s}\ndisk_size: 64M\n"
		     "setup: ['echo templated > /etc/setup-ran']\n",
		     tarball);
	fs_path(recipe, sizeof(recipe), "%s/setup-template.yml", dir);
	assert_int_equal(fs_write_atomic(recipe, text, (size_t)n, 0644, NULL), 0);
	char templates[PATH_MAX];
	fs_path(templates, sizeof(templates), "%s/templates", work);
	struct runner_guest *t = NULL;
	if (runner_guest_restore("setup-template", NULL, templates, RUNNER_TEMPLATE_MAPPED, &t,
				 &err))
		fail_msg("template of an unbuilt recipe with setup: %s", err.msg);
	expect_output(t, "cat /etc/setup-ran", "templated\n");
	runner_guest_destroy(t, 3000);
	unsetenv("VMCI_RECIPES_DIR");
}

/* ---- set-up ------------------------------------------------------------------------- */

/* A private store whose package cache is the real one: no download is repeated. */
static int make_home(void **state)
{
	const char *real = getenv("VMCI_HOME");
	char real_cache[PATH_MAX], link[PATH_MAX];
	if (real && *real)
		fs_path(real_cache, sizeof(real_cache), "%s/cache", real);
	else
		fs_path(real_cache, sizeof(real_cache), "%s/.cache/vmci/cache",
			getenv("HOME") ? getenv("HOME") : "/root");
	const char *tmp = getenv("TMPDIR");
	fs_path(home, sizeof(home), "%s/vmci-import-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(home) || fs_mkdir_p(real_cache, 0755, NULL))
		return -1;
	fs_path(link, sizeof(link), "%s/cache", home);
	fs_path(work, sizeof(work), "%s/work", home);
	fs_path(tarball, sizeof(tarball), "%s/rootfs.tar.zst", work);
	if (symlink(real_cache, link) || fs_mkdir_p(work, 0755, NULL))
		return -1;
	setenv("VMCI_HOME", home, 1);
	make_tarball(tarball);
	return 0;
}

static int remove_home(void **state)
{
	/* The store's golden files are read-only; fs_rm_rf handles that. */
	return fs_rm_rf(home, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tarball_import_keeps_files_links_modes_and_owners),
	    cmocka_unit_test(test_same_source_imports_to_the_same_digest),
	    cmocka_unit_test(test_raw_and_qcow2_disks_import_as_they_are),
	    cmocka_unit_test(test_partitioned_disk_boots_from_its_linux_partition),
	    cmocka_unit_test(test_bad_sources_and_names_are_refused),
	    cmocka_unit_test(test_recipe_setup_commands_run_in_a_vm_and_persist),
	};
	return cmocka_run_group_tests_name("import", tests, make_home, remove_home);
}
