/*
 * images/qcow2.c: the overlays written in-process are the qcow2 files
 * qemu-img would make, as QEMU's own tools read them: `qemu-img check`
 * finds no error, `qemu-img info` reports the same facts as for
 * `qemu-img create`'s file, and QEMU reads the backing disk through the
 * overlay and allocates the guest's writes in it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char work[PATH_MAX];

static void path_of(char *out, const char *name)
{
	snprintf(out, PATH_MAX, "%s/%s", work, name);
}

/* A sparse raw disk of size bytes, with "golden" written at offset 1 MiB. */
static void make_raw(const char *path, long long size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(pwrite(fd, "golden", 6, 1 << 20), 6);
	close(fd);
}

static void run_ok(char *const argv[], struct buf *out)
{
	struct vmci_err err = {0};
	if (run_command(argv, out, &err))
		fail_msg("%s: %s", argv[0], err.msg);
}

/* `qemu-img info --output=json` of path (with -U: nothing holds it, but be safe). */
static json_t *info(const char *path)
{
	struct buf out = {0};
	char *argv[] = {"qemu-img", "info", "-U", "--output=json", (char *)path, NULL};
	run_ok(argv, &out);
	json_t *j = json_loadb((const char *)out.data, out.len, 0, NULL);
	buf_free(&out);
	assert_non_null(j);
	return j;
}

static void check_clean(const char *path)
{
	struct buf out = {0};
	char *argv[] = {"qemu-img", "check", "--output=json", (char *)path, NULL};
	run_ok(argv, &out); /* exit 0: no corruption, no leaked cluster */
	json_t *j = json_loadb((const char *)out.data, out.len, 0, NULL);
	buf_free(&out);
	assert_non_null(j);
	assert_null(json_object_get(j, "corruptions"));
	assert_null(json_object_get(j, "leaks"));
	json_decref(j);
}

static long long int_field(json_t *j, const char *key)
{
	return (long long)json_integer_value(json_object_get(j, key));
}

static const char *str_field(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));
	return s ? s : "";
}

/* Our overlay of backing and qemu-img's report the same facts. */
static void assert_like_qemu_img(const char *backing, const char *format, long long want_size)
{
	char ours[PATH_MAX], theirs[PATH_MAX];
	path_of(ours, "ours.qcow2");
	path_of(theirs, "theirs.qcow2");
	struct vmci_err err = {0};
	if (img_clone_file(backing, ours, 0, &err))
		fail_msg("img_clone_file: %s", err.msg);
	char *create[] = {"qemu-img", "create",	       "-q",   "-f", "qcow2", "-F", (char *)format,
			  "-b",	      (char *)backing, theirs, NULL};
	run_ok(create, NULL);
	check_clean(ours);
	json_t *a = info(ours), *b = info(theirs);
	assert_int_equal(int_field(a, "virtual-size"), want_size);
	assert_int_equal(int_field(a, "virtual-size"), int_field(b, "virtual-size"));
	assert_int_equal(int_field(a, "cluster-size"), 65536);
	assert_string_equal(str_field(a, "format"), "qcow2");
	assert_string_equal(str_field(a, "backing-filename"), backing);
	assert_string_equal(str_field(a, "backing-filename-format"), format);
	assert_string_equal(str_field(a, "backing-filename-format"),
			    str_field(b, "backing-filename-format"));
	/* compat 1.1, zlib, 16-bit refcounts, no lazy refcounts, not corrupt: all of it. */
	json_t *fa = json_object_get(json_object_get(a, "format-specific"), "data");
	json_t *fb = json_object_get(json_object_get(b, "format-specific"), "data");
	assert_non_null(fa);
	assert_true(json_equal(fa, fb));
	json_decref(a);
	json_decref(b);
	unlink(ours);
	unlink(theirs);
}

static void test_overlays_of_raw_disks_are_what_qemu_img_makes(void **state)
{
	static const long long sizes[] = {
	    1LL << 30,		       /* 1 GiB */
	    8LL << 30,		       /* 8 GiB */
	    100000000LL + 12345,       /* not a multiple of the cluster size, nor of 512 */
	    (3LL << 30) + 65536 + 512, /* one L2 table more than 3 GiB needs, partly used */
	};
	for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
		char raw[PATH_MAX];
		path_of(raw, "golden.raw");
		make_raw(raw, sizes[i]);
		assert_like_qemu_img(raw, "raw", (sizes[i] + 511) / 512 * 512);
		unlink(raw);
	}
}

static void test_overlays_of_qcow2_disks_are_what_qemu_img_makes(void **state)
{
	char golden[PATH_MAX];
	path_of(golden, "golden.qcow2");
	char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", golden, "8G", NULL};
	run_ok(create, NULL);
	assert_like_qemu_img(golden, "qcow2", 8LL << 30);
	/* An overlay of an overlay: the chain a template's disk makes. */
	char mid[PATH_MAX];
	path_of(mid, "mid.qcow2");
	assert_int_equal(img_clone_file(golden, mid, 0, NULL), 0);
	assert_like_qemu_img(mid, "qcow2", 8LL << 30);
	unlink(mid);
	unlink(golden);
}

static void test_reads_go_to_the_backing_disk_and_writes_stay_in_the_overlay(void **state)
{
	char raw[PATH_MAX], overlay[PATH_MAX];
	path_of(raw, "golden.raw");
	path_of(overlay, "vm.qcow2");
	make_raw(raw, 8LL << 30);
	assert_int_equal(img_clone_file(raw, overlay, 0, NULL), 0);
	struct buf out = {0};
	/* Read the backing data, write a cluster far out and one next to the data, read both. */
	char *io[] = {"qemu-io",
		      "-f",
		      "qcow2",
		      "-c",
		      "read -v 1048576 6",
		      "-c",
		      "write -P 0xab 7G 64k",
		      "-c",
		      "write -P 0xcd 2M 4k",
		      "-c",
		      "read -P 0xab 7G 64k",
		      "-c",
		      "read -P 0xcd 2M 4k",
		      overlay,
		      NULL};
	run_ok(io, &out);
	const char *text = buf_cstr(&out);
	assert_non_null(strstr(text, "golden"));
	assert_null(strstr(text, "Pattern verification failed"));
	buf_free(&out);
	check_clean(overlay); /* the refcounts of the new clusters are right */
	/* The backing disk is untouched. */
	struct stat st;
	assert_int_equal(stat(raw, &st), 0);
	assert_true(st.st_blocks * 512 < (1 << 20));
	unlink(overlay);
	unlink(raw);
}

static void test_a_disk_without_backing_is_an_empty_disk_of_its_size(void **state)
{
	char scratch[PATH_MAX];
	path_of(scratch, "scratch.qcow2");
	assert_int_equal(img_clone_file(NULL, scratch, 64, NULL), 0);
	check_clean(scratch);
	json_t *j = info(scratch);
	assert_int_equal(int_field(j, "virtual-size"), 64LL << 20);
	assert_null(json_object_get(j, "backing-filename"));
	json_decref(j);
	struct img_disk d;
	assert_int_equal(img_disk_probe(scratch, &d, NULL), 0);
	assert_string_equal(d.format, "qcow2");
	assert_string_equal(d.backing, "");
	unlink(scratch);
}

static void test_a_missing_backing_disk_is_named_and_leaves_nothing(void **state)
{
	char missing[PATH_MAX], overlay[PATH_MAX];
	path_of(missing, "no-such-disk.qcow2");
	path_of(overlay, "vm.qcow2");
	struct vmci_err err = {0};
	assert_int_equal(img_clone_file(missing, overlay, 0, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no-such-disk.qcow2"));
	assert_int_equal(access(overlay, F_OK), -1);
}

static void test_a_backing_name_qemu_cannot_store_is_refused(void **state)
{
	char name[1100], overlay[PATH_MAX];
	memset(name, 'a', sizeof(name) - 1);
	name[0] = '/';
	name[sizeof(name) - 1] = 0;
	path_of(overlay, "vm.qcow2");
	struct vmci_err err = {0};
	assert_int_equal(img_qcow2_create(overlay, 1 << 20, name, "raw", &err), -ENAMETOOLONG);
	assert_non_null(strstr(err.msg, "backing file name"));
	assert_int_equal(access(overlay, F_OK), -1);
	assert_int_equal(img_qcow2_create(overlay, 0, NULL, NULL, &err), -EINVAL);
	assert_int_equal(access(overlay, F_OK), -1);
}

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(work, sizeof(work), "%s/vmci-test-qcow2-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(work) ? 0 : -1;
}

static int teardown(void **state)
{
	fs_rm_rf(work, NULL);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_overlays_of_raw_disks_are_what_qemu_img_makes),
	    cmocka_unit_test(test_overlays_of_qcow2_disks_are_what_qemu_img_makes),
	    cmocka_unit_test(test_reads_go_to_the_backing_disk_and_writes_stay_in_the_overlay),
	    cmocka_unit_test(test_a_disk_without_backing_is_an_empty_disk_of_its_size),
	    cmocka_unit_test(test_a_missing_backing_disk_is_named_and_leaves_nothing),
	    cmocka_unit_test(test_a_backing_name_qemu_cannot_store_is_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
