/*
 * Unpacking what a guest sends as a job's artifacts (runner/artifacts.c):
 * sparse files stay sparse, symlinks stay symlinks and are counted
 * exactly, the job's limits stop the copy and say where, and what a
 * guest must not make on the host is refused. Streams are made with
 * libarchive, as a guest's agent or a hostile guest could send them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/artifacts.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct fixture {
	char root[64]; /* scratch */
	char dir[128]; /* where streams are unpacked */
	char tar[128];
	struct archive *w; /* the stream being written */
	struct artifact_copy c;
	struct vmci_err err;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/vmci-test-artifacts-XXXXXX");
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	snprintf(f->dir, sizeof(f->dir), "%s/out", f->root);
	snprintf(f->tar, sizeof(f->tar), "%s/in.tar", f->root);
	mkdir(f->dir, 0755);
	f->w = archive_write_new();
	archive_write_set_format_pax_restricted(f->w);
	assert_int_equal(archive_write_open_filename(f->w, f->tar), ARCHIVE_OK);
	f->c = (struct artifact_copy){.max_bytes = 1LL << 30, .max_entries = 10000};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	archive_write_free(f->w);
	fs_rm_rf(f->root, NULL);
	free(f);
	return 0;
}

static struct archive_entry *entry(const char *name, mode_t type, mode_t perm, int64_t size)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_size(e, size);
	archive_entry_set_mtime(e, 1000000000, 0);
	return e;
}

static void add_file(struct fixture *f, const char *name, const char *data)
{
	struct archive_entry *e = entry(name, AE_IFREG, 0644, (int64_t)strlen(data));
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_write_data(f->w, data, strlen(data));
	archive_entry_free(e);
}

static void add_dir(struct fixture *f, const char *name)
{
	struct archive_entry *e = entry(name, AE_IFDIR, 0755, 0);
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_entry_free(e);
}

static void add_symlink(struct fixture *f, const char *name, const char *target)
{
	struct archive_entry *e = entry(name, AE_IFLNK, 0777, 0);
	archive_entry_set_symlink(e, target);
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_entry_free(e);
}

/* Ends the stream and unpacks it into f->dir. */
static int unpack(struct fixture *f)
{
	assert_int_equal(archive_write_close(f->w), ARCHIVE_OK);
	int fd = open(f->tar, O_RDONLY);
	assert_true(fd >= 0);
	int rc = artifact_unpack(fd, f->dir, &f->c, &f->err);
	close(fd);
	if (rc && rc != -EFBIG)
		print_message("artifact_unpack: %s\n", f->err.msg);
	return rc;
}

static void path_of(struct fixture *f, const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", f->dir, name);
}

#define BIG (500LL << 20)

static void write_zeros(struct fixture *f, long long n)
{
	static const char zeros[1 << 16];
	for (; n > 0; n -= (long long)sizeof(zeros))
		archive_write_data(f->w, zeros,
				   n < (long long)sizeof(zeros) ? (size_t)n : sizeof(zeros));
}

static void test_sparse_member_stays_sparse_on_the_host(void **state)
{
	struct fixture *f = *state;
	/* 500 MB: "head" at 0, "tail" at 300 MB, a hole to the end. */
	struct archive_entry *e = entry("big.bin", AE_IFREG, 0644, BIG);
	archive_entry_sparse_add_entry(e, 0, 4);
	archive_entry_sparse_add_entry(e, 300LL << 20, 4);
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_entry_free(e);
	/* The writer takes the whole file and leaves out the holes' zeros itself. */
	archive_write_data(f->w, "head", 4);
	write_zeros(f, (300LL << 20) - 4);
	archive_write_data(f->w, "tail", 4);
	write_zeros(f, BIG - (300LL << 20) - 4);

	assert_int_equal(unpack(f), 0);
	char p[256], buf[4];
	path_of(f, "big.bin", p, sizeof(p));
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, BIG);
	assert_true((long long)st.st_blocks * 512 < (1LL << 20));
	int fd = open(p, O_RDONLY);
	assert_int_equal(pread(fd, buf, 4, 0), 4);
	assert_memory_equal(buf, "head", 4);
	assert_int_equal(pread(fd, buf, 4, 300LL << 20), 4);
	assert_memory_equal(buf, "tail", 4);
	close(fd);
	assert_int_equal(f->c.st.files, 1);
	assert_int_equal(f->c.st.bytes, BIG);
	assert_int_equal(f->c.st.data_bytes, 8);
}

static void test_blocks_of_zeros_become_holes(void **state)
{
	struct fixture *f = *state;
	/* Not sparse in the stream: 8 MiB of zeros, then "end". */
	static char data[(8 << 20) + 3];
	memcpy(data + (8 << 20), "end", 3);
	struct archive_entry *e = entry("zeros.bin", AE_IFREG, 0644, sizeof(data));
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_write_data(f->w, data, sizeof(data));
	archive_entry_free(e);
	assert_int_equal(unpack(f), 0);
	char p[256];
	path_of(f, "zeros.bin", p, sizeof(p));
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, sizeof(data));
	assert_true((long long)st.st_blocks * 512 < (1LL << 20));
	assert_int_equal(f->c.st.data_bytes, sizeof(data)); /* what travelled */
}

static void test_symlink_loops_are_stored_as_symlinks_and_counted_exactly(void **state)
{
	struct fixture *f = *state;
	add_dir(f, "loop/");
	add_symlink(f, "loop/a", "b");
	add_symlink(f, "loop/b", "a");
	add_file(f, "loop/f", "f\n");
	add_symlink(f, "loop/self", ".");
	add_symlink(f, "loop/up", "..");
	assert_int_equal(unpack(f), 0);
	assert_int_equal(f->c.st.files, 1);
	assert_int_equal(f->c.st.dirs, 1);
	assert_int_equal(f->c.st.symlinks, 4);
	assert_int_equal(f->c.st.bytes, 2);
	assert_int_equal(f->c.st.refused, 0);
	static const char *const links[][2] = {
	    {"loop/a", "b"}, {"loop/b", "a"}, {"loop/self", "."}, {"loop/up", ".."}};
	for (size_t i = 0; i < 4; i++) {
		char p[256], target[64] = "";
		path_of(f, links[i][0], p, sizeof(p));
		assert_true(readlink(p, target, sizeof(target) - 1) > 0);
		assert_string_equal(target, links[i][1]);
	}
}

static void test_writes_through_a_symlink_are_refused(void **state)
{
	struct fixture *f = *state;
	char outside[128];
	snprintf(outside, sizeof(outside), "%s", f->root);
	add_symlink(f, "escape", outside);
	add_file(f, "escape/planted", "x\n");
	add_file(f, "kept.txt", "k\n");
	assert_int_equal(unpack(f), 0);
	char p[256];
	snprintf(p, sizeof(p), "%s/planted", f->root);
	assert_int_equal(access(p, F_OK), -1);
	assert_int_equal(f->c.st.symlinks, 1);
	assert_int_equal(f->c.st.files, 1);
	assert_int_equal(f->c.st.refused, 1);
	assert_non_null(strstr(f->c.refused, "'escape/planted'"));
}

static void test_devices_fifos_and_paths_outside_are_refused(void **state)
{
	struct fixture *f = *state;
	struct archive_entry *e = entry("null", AE_IFCHR, 0666, 0);
	archive_entry_set_rdev(e, makedev(1, 3));
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_entry_free(e);
	e = entry("pipe", AE_IFIFO, 0644, 0);
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_entry_free(e);
	add_file(f, "../escaped", "x\n");
	add_file(f, "/tmp/absolute-from-guest", "x\n");
	e = entry("hard", AE_IFREG, 0644, 0);
	archive_entry_set_hardlink(e, "../../etc/passwd");
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_entry_free(e);
	add_file(f, "ok.txt", "ok\n");
	assert_int_equal(unpack(f), 0);
	assert_int_equal(f->c.st.refused, 5);
	assert_int_equal(f->c.st.files, 1);
	assert_string_equal(f->c.refused, "'null' (a character device)");
	char p[256];
	path_of(f, "null", p, sizeof(p));
	assert_int_equal(access(p, F_OK), -1);
	path_of(f, "pipe", p, sizeof(p));
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/escaped", f->root);
	assert_int_equal(access(p, F_OK), -1);
	assert_int_equal(access("/tmp/absolute-from-guest", F_OK), -1);
}

static void test_set_id_bits_are_dropped(void **state)
{
	struct fixture *f = *state;
	struct archive_entry *e = entry("suid", AE_IFREG, 06755, 2);
	assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
	archive_write_data(f->w, "x\n", 2);
	archive_entry_free(e);
	assert_int_equal(unpack(f), 0);
	char p[256];
	path_of(f, "suid", p, sizeof(p));
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
}

static void test_max_files_stops_the_copy_and_says_where(void **state)
{
	struct fixture *f = *state;
	f->c.max_entries = 5;
	for (int i = 0; i < 20; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%02d", i);
		add_file(f, name, "x\n");
	}
	assert_int_equal(unpack(f), -EFBIG);
	assert_true(f->c.full);
	assert_int_equal(f->c.st.files, 5);
	assert_string_equal(f->c.refused, "'f05' (past max-files: 5 entries)");
	char p[256];
	path_of(f, "f04", p, sizeof(p));
	assert_int_equal(access(p, F_OK), 0);
	path_of(f, "f05", p, sizeof(p));
	assert_int_equal(access(p, F_OK), -1);
}

static void test_max_size_stops_before_the_file_that_does_not_fit(void **state)
{
	struct fixture *f = *state;
	f->c.max_bytes = 1 << 20;
	static char data[600 << 10];
	memset(data, 'd', sizeof(data));
	for (int i = 0; i < 2; i++) {
		struct archive_entry *e =
		    entry(i ? "second" : "first", AE_IFREG, 0644, sizeof(data));
		assert_int_equal(archive_write_header(f->w, e), ARCHIVE_OK);
		archive_write_data(f->w, data, sizeof(data));
		archive_entry_free(e);
	}
	assert_int_equal(unpack(f), -EFBIG);
	assert_int_equal(f->c.st.files, 1);
	assert_int_equal(f->c.st.data_bytes, sizeof(data));
	assert_string_equal(f->c.refused, "'second' (past max-size: 1.0 MiB of data)");
	char p[256];
	path_of(f, "second", p, sizeof(p));
	assert_int_equal(access(p, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_sparse_member_stays_sparse_on_the_host, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_blocks_of_zeros_become_holes, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_symlink_loops_are_stored_as_symlinks_and_counted_exactly, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writes_through_a_symlink_are_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_devices_fifos_and_paths_outside_are_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_set_id_bits_are_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_files_stops_the_copy_and_says_where, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_max_size_stops_before_the_file_that_does_not_fit,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
