/*
 * The agent's tar reader and writer, included whole (the agent is not part
 * of libvmci). Archives go through a temporary file; libarchive reads
 * them as the host does.
 */
#include "agent/tar.c"
#include "agent/tar_create.c"
#include "agent/tar_extract.c"

#include <archive.h>
#include <archive_entry.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/time.h>

#include <cmocka.h>

struct fixture {
	char root[64]; /* the test's scratch directory */
	char src[128]; /* where trees are made */
	char dst[128]; /* where archives are extracted */
	char tar[128]; /* the archive */
	char err[512];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/vmci-test-tar-XXXXXX");
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	snprintf(f->src, sizeof(f->src), "%s/src", f->root);
	snprintf(f->dst, sizeof(f->dst), "%s/dst", f->root);
	snprintf(f->tar, sizeof(f->tar), "%s/out.tar", f->root);
	mkdir(f->src, 0755);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode, time_t mtime)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(agent_tar_write_all(fd, data, len), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	struct timespec ts[2] = {{.tv_sec = mtime}, {.tv_sec = mtime}};
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);
}

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	fstat(fd, &st);
	char *data = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, data, (size_t)st.st_size), st.st_size);
	data[st.st_size] = 0;
	close(fd);
	*len = (size_t)st.st_size;
	return data;
}

/* Archives path into f->tar. */
static int create(struct fixture *f, const char *path)
{
	int fd = open(f->tar, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	int rc = agent_tar_create(fd, path, f->err, sizeof(f->err));
	close(fd);
	return rc;
}

/* Extracts f->tar (its first len bytes; 0: all) into f->dst. */
static int extract(struct fixture *f, off_t len)
{
	if (len)
		assert_int_equal(truncate(f->tar, len), 0);
	int fd = open(f->tar, O_RDONLY);
	assert_true(fd >= 0);
	int rc = agent_tar_extract(fd, f->dst, f->err, sizeof(f->err));
	close(fd);
	return rc;
}

static void assert_file(const char *path, const char *content, mode_t mode, time_t mtime)
{
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, mode);
	assert_int_equal(st.st_mtime, mtime);
	size_t len;
	char *data = read_file(path, &len);
	assert_string_equal(data, content);
	free(data);
}

static void test_round_trip_keeps_files_modes_links_and_long_paths(void **state)
{
	struct fixture *f = *state;
	char p[1024], q[1024], longdir[512];
	snprintf(p, sizeof(p), "%s/tree", f->src);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/tree/a.txt", f->src);
	write_file(p, "hello\n", 6, 0640, 1000000000);
	snprintf(p, sizeof(p), "%s/tree/empty", f->src);
	write_file(p, "", 0, 0600, 1000000001);
	snprintf(p, sizeof(p), "%s/tree/bin", f->src);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/tree/bin/run", f->src);
	write_file(p, "#!/bin/sh\n", 10, 04755, 1000000002);
	snprintf(p, sizeof(p), "%s/tree/link", f->src);
	assert_int_equal(symlink("a.txt", p), 0);
	snprintf(p, sizeof(p), "%s/tree/a.txt", f->src);
	snprintf(q, sizeof(q), "%s/tree/hard", f->src);
	assert_int_equal(link(p, q), 0);

	/* A path of 220 bytes with a 150-byte last part fits no ustar split: pax. */
	char seg[151];
	memset(seg, 'e', 150);
	seg[150] = 0;
	snprintf(longdir, sizeof(longdir), "%s/tree/%.60s", f->src, seg);
	mkdir(longdir, 0700);
	snprintf(p, sizeof(p), "%s/%s", longdir, seg);
	write_file(p, "deep\n", 5, 0644, 1000000003);
	snprintf(p, sizeof(p), "%s/tree/longlink", f->src);
	snprintf(q, sizeof(q), "%.60s/%s", seg, seg);
	assert_int_equal(symlink(q, p), 0);

	/* A file bigger than the I/O buffers, not a multiple of 512. */
	size_t big_len = 3 * TAR_IO_BUF + 77;
	char *big = malloc(big_len + 1);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (char)('a' + (i * 7 + i / 13) % 26);
	big[big_len] = 0;
	snprintf(p, sizeof(p), "%s/tree/bin/big", f->src);
	write_file(p, big, big_len, 0644, 1000000004);
	snprintf(p, sizeof(p), "%s/tree/bin", f->src);
	struct timespec ts[2] = {{.tv_sec = 1000000005}, {.tv_sec = 1000000005}};
	utimensat(AT_FDCWD, p, ts, 0);
	chmod(p, 0750);

	snprintf(p, sizeof(p), "%s/tree", f->src);
	assert_int_equal(create(f, p), 0);
	assert_int_equal(extract(f, 0), 0);

	snprintf(p, sizeof(p), "%s/tree/a.txt", f->dst);
	assert_file(p, "hello\n", 0640, 1000000000);
	snprintf(p, sizeof(p), "%s/tree/empty", f->dst);
	assert_file(p, "", 0600, 1000000001);
	snprintf(p, sizeof(p), "%s/tree/bin/run", f->dst);
	assert_file(p, "#!/bin/sh\n", 04755, 1000000002);
	snprintf(p, sizeof(p), "%s/tree/bin/big", f->dst);
	assert_file(p, big, 0644, 1000000004);
	free(big);

	struct stat st, st2;
	snprintf(p, sizeof(p), "%s/tree/bin", f->dst);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(st.st_mtime, 1000000005);

	char target[PATH_MAX];
	snprintf(p, sizeof(p), "%s/tree/link", f->dst);
	ssize_t n = readlink(p, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = 0;
	assert_string_equal(target, "a.txt");
	snprintf(p, sizeof(p), "%s/tree/longlink", f->dst);
	n = readlink(p, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = 0;
	assert_string_equal(target, q);

	snprintf(p, sizeof(p), "%s/tree/a.txt", f->dst);
	snprintf(q, sizeof(q), "%s/tree/hard", f->dst);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(stat(q, &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino);

	snprintf(p, sizeof(p), "%s/tree/%.60s/%s", f->dst, seg, seg);
	assert_true(strlen(p) - strlen(f->dst) > 200);
	assert_file(p, "deep\n", 0644, 1000000003);
}

static void test_single_file_is_stored_by_its_name(void **state)
{
	struct fixture *f = *state;
	char p[512];
	snprintf(p, sizeof(p), "%s/report.txt", f->src);
	write_file(p, "ok\n", 3, 0644, 1234567890);
	assert_int_equal(create(f, p), 0);
	assert_int_equal(extract(f, 0), 0);
	snprintf(p, sizeof(p), "%s/report.txt", f->dst);
	assert_file(p, "ok\n", 0644, 1234567890);
}

static void test_glob_stores_matches_relative_to_its_directory(void **state)
{
	struct fixture *f = *state;
	char p[512];
	snprintf(p, sizeof(p), "%s/x.log", f->src);
	write_file(p, "x\n", 2, 0644, 1000000000);
	snprintf(p, sizeof(p), "%s/y.log", f->src);
	write_file(p, "y\n", 2, 0644, 1000000000);
	snprintf(p, sizeof(p), "%s/z.txt", f->src);
	write_file(p, "z\n", 2, 0644, 1000000000);
	snprintf(p, sizeof(p), "%s/*.log", f->src);
	assert_int_equal(create(f, p), 0);
	assert_int_equal(extract(f, 0), 0);
	snprintf(p, sizeof(p), "%s/x.log", f->dst);
	assert_file(p, "x\n", 0644, 1000000000);
	snprintf(p, sizeof(p), "%s/y.log", f->dst);
	assert_file(p, "y\n", 0644, 1000000000);
	snprintf(p, sizeof(p), "%s/z.txt", f->dst);
	assert_int_equal(access(p, F_OK), -1);
}

static void test_glob_matching_nothing_gives_an_empty_archive(void **state)
{
	struct fixture *f = *state;
	char p[512];
	snprintf(p, sizeof(p), "%s/*.none", f->src);
	assert_int_equal(create(f, p), 0);
	size_t len;
	char *data = read_file(f->tar, &len);
	assert_int_equal(len, 2 * TAR_BLOCK);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(data[i], 0);
	free(data);
	assert_int_equal(extract(f, 0), 0);
}

static void test_missing_path_is_an_error(void **state)
{
	struct fixture *f = *state;
	char p[512];
	snprintf(p, sizeof(p), "%s/nothing-here", f->src);
	assert_int_equal(create(f, p), -ENOENT);
	assert_non_null(strstr(f->err, "nothing-here"));
}

/* Writes an archive of one member built by hand, then the end marker. */
static void write_member(struct fixture *f, const char *name, char type, const char *link,
			 const char *data)
{
	int fd = open(f->tar, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	uint8_t h[TAR_BLOCK];
	size_t len = data ? strlen(data) : 0;
	agent_tar_header_init(h, name, 0, type, 0644, 0, 0, (int64_t)len, 1000000000);
	if (link)
		agent_tar_put_str(h, F_LINK, link);
	agent_tar_header_finish(h);
	assert_int_equal(agent_tar_write_all(fd, h, TAR_BLOCK), 0);
	uint8_t pad[3 * TAR_BLOCK] = {0};
	if (len) {
		assert_int_equal(agent_tar_write_all(fd, data, len), 0);
		assert_int_equal(agent_tar_write_all(fd, pad, agent_tar_padding(len)), 0);
	}
	assert_int_equal(agent_tar_write_all(fd, pad, 2 * TAR_BLOCK), 0);
	close(fd);
}

static void test_extract_refuses_dotdot(void **state)
{
	struct fixture *f = *state;
	write_member(f, "a/../../escaped", '0', NULL, "bad\n");
	assert_int_equal(extract(f, 0), -EINVAL);
	assert_non_null(strstr(f->err, "unsafe path"));
	char p[512];
	snprintf(p, sizeof(p), "%s/escaped", f->root);
	assert_int_equal(access(p, F_OK), -1);
}

static void test_extract_refuses_absolute_paths(void **state)
{
	struct fixture *f = *state;
	char p[512];
	snprintf(p, sizeof(p), "%s/absolute", f->root);
	write_member(f, p, '0', NULL, "bad\n");
	assert_int_equal(extract(f, 0), -EINVAL);
	assert_int_equal(access(p, F_OK), -1);
}

static void test_extract_refuses_hard_link_outside(void **state)
{
	struct fixture *f = *state;
	write_member(f, "passwd", '1', "../../etc/passwd", NULL);
	assert_int_equal(extract(f, 0), -EINVAL);
}

static void test_extract_does_not_write_through_symlinks(void **state)
{
	struct fixture *f = *state;
	/* A symlink to outside, then a file "through" it. */
	int fd = open(f->tar, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint8_t h[TAR_BLOCK], zero[2 * TAR_BLOCK] = {0};
	agent_tar_header_init(h, "out", 0, '2', 0777, 0, 0, 0, 1000000000);
	agent_tar_put_str(h, F_LINK, f->root);
	agent_tar_header_finish(h);
	agent_tar_write_all(fd, h, TAR_BLOCK);
	agent_tar_header_init(h, "out/planted", 0, '0', 0644, 0, 0, 0, 1000000000);
	agent_tar_header_finish(h);
	agent_tar_write_all(fd, h, TAR_BLOCK);
	agent_tar_write_all(fd, zero, sizeof(zero));
	close(fd);
	assert_int_equal(extract(f, 0), -ENOTDIR);
	char p[512];
	snprintf(p, sizeof(p), "%s/planted", f->root);
	assert_int_equal(access(p, F_OK), -1);
}

static void test_gnu_long_names_are_read(void **state)
{
	struct fixture *f = *state;
	char name[300];
	memset(name, 'n', 250);
	memcpy(name + 100, "/", 1);
	name[250] = 0;
	int fd = open(f->tar, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint8_t h[TAR_BLOCK], zero[2 * TAR_BLOCK] = {0};
	agent_tar_header_init(h, "././@LongLink", 0, 'L', 0644, 0, 0, (int64_t)strlen(name) + 1, 0);
	memcpy(h + F_MAGIC, "ustar  ", 8); /* the GNU magic */
	agent_tar_header_finish(h);
	agent_tar_write_all(fd, h, TAR_BLOCK);
	agent_tar_write_all(fd, name, strlen(name) + 1);
	agent_tar_write_all(fd, zero, agent_tar_padding(strlen(name) + 1));
	agent_tar_header_init(h, "truncated-name", 0, '0', 0600, 0, 0, 3, 1000000000);
	memcpy(h + F_MAGIC, "ustar  ", 8);
	agent_tar_header_finish(h);
	agent_tar_write_all(fd, h, TAR_BLOCK);
	agent_tar_write_all(fd, "gnu", 3);
	agent_tar_write_all(fd, zero, agent_tar_padding(3));
	agent_tar_write_all(fd, zero, sizeof(zero));
	close(fd);
	assert_int_equal(extract(f, 0), 0);
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", f->dst, name);
	assert_file(p, "gnu", 0600, 1000000000);
}

static void test_base256_numbers_are_read(void **state)
{
	uint8_t h[TAR_BLOCK] = {0};
	h[124] = 0x80;
	h[135] = 0x01;
	h[134] = 0x02; /* 0x0201 */
	int64_t v;
	assert_int_equal(agent_tar_get_num(h, F_SIZE, &v), 0);
	assert_int_equal(v, 0x201);
	agent_tar_put_num(h, F_SIZE, 077777777777LL + 1); /* too big for octal */
	assert_int_equal(agent_tar_get_num(h, F_SIZE, &v), 0);
	assert_int_equal(v, 077777777777LL + 1);
	agent_tar_put_num(h, F_MTIME, -5);
	assert_int_equal(agent_tar_get_num(h, F_MTIME, &v), 0);
	assert_int_equal(v, -5);
}

static void test_truncated_stream_is_an_error(void **state)
{
	struct fixture *f = *state;
	char p[512];
	size_t len;
	snprintf(p, sizeof(p), "%s/file", f->src);
	write_file(p, "0123456789", 10, 0644, 1000000000);
	assert_int_equal(create(f, p), 0);
	char *whole = read_file(f->tar, &len);
	assert_int_equal(len, 4 * TAR_BLOCK); /* header, data, end marker */
	/* Cut inside the header, inside the data, and before the end marker. */
	const off_t cuts[] = {100, TAR_BLOCK + 5, 2 * TAR_BLOCK};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		int fd = open(f->tar, O_WRONLY | O_TRUNC);
		agent_tar_write_all(fd, whole, len);
		close(fd);
		f->err[0] = 0;
		assert_int_equal(extract(f, cuts[i]), -EIO);
		assert_non_null(strstr(f->err, "truncated"));
	}
	free(whole);
}

static void test_garbage_is_not_a_tar_stream(void **state)
{
	struct fixture *f = *state;
	char junk[TAR_BLOCK];
	memset(junk, 'j', sizeof(junk));
	int fd = open(f->tar, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	agent_tar_write_all(fd, junk, sizeof(junk));
	close(fd);
	assert_int_equal(extract(f, 0), -EINVAL);
	assert_non_null(strstr(f->err, "checksum"));
}

/* ---- sparse files and symlinks ------------------------------------------- */

#define SPARSE_SIZE (64LL << 20)

/* A 64 MiB file of two small data regions, at 0 and at 40 MiB, ending in a hole. */
static void make_sparse(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "head", 4, 0), 4);
	assert_int_equal(pwrite(fd, "middle", 6, 40LL << 20), 6);
	assert_int_equal(ftruncate(fd, SPARSE_SIZE), 0);
	close(fd);
}

static void assert_sparse_copy(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, SPARSE_SIZE);
	assert_true((long long)st.st_blocks * 512 < (1LL << 20));
	int fd = open(path, O_RDONLY);
	char buf[8] = {0};
	assert_int_equal(pread(fd, buf, 4, 0), 4);
	assert_memory_equal(buf, "head", 4);
	assert_int_equal(pread(fd, buf, 6, 40LL << 20), 6);
	assert_memory_equal(buf, "middle", 6);
	assert_int_equal(pread(fd, buf, 8, (20LL << 20)), 8);
	assert_memory_equal(buf, "\0\0\0\0\0\0\0\0", 8);
	close(fd);
}

static void test_sparse_file_travels_as_its_data_regions(void **state)
{
	struct fixture *f = *state;
	char p[512];
	snprintf(p, sizeof(p), "%s/big.bin", f->src);
	make_sparse(p);
	assert_int_equal(create(f, p), 0);
	struct stat st;
	assert_int_equal(stat(f->tar, &st), 0);
	assert_true(st.st_size < 128 * 1024); /* headers, the map, two blocks of data */

	/* libarchive, as the host reads it: the real name, size and regions. */
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	assert_int_equal(archive_read_open_filename(a, f->tar, 10240), ARCHIVE_OK);
	struct archive_entry *e;
	assert_int_equal(archive_read_next_header(a, &e), ARCHIVE_OK);
	assert_string_equal(archive_entry_pathname(e), "big.bin");
	assert_int_equal(archive_entry_size(e), SPARSE_SIZE);
	const void *block;
	size_t size, data = 0;
	la_int64_t offset;
	while (archive_read_data_block(a, &block, &size, &offset) == ARCHIVE_OK) {
		if (size && offset == 0)
			assert_memory_equal(block, "head", 4);
		else if (size)
			assert_int_equal(offset, 40LL << 20);
		data += size;
	}
	assert_true(data >= 10 && data <= 64 * 1024); /* regions are whole filesystem blocks */
	assert_int_equal(archive_read_next_header(a, &e), ARCHIVE_EOF);
	archive_read_free(a);

	/* The agent's own extractor keeps the holes too. */
	assert_int_equal(extract(f, 0), 0);
	snprintf(p, sizeof(p), "%s/big.bin", f->dst);
	assert_sparse_copy(p);
}

static void test_file_that_is_all_hole_travels_as_its_map(void **state)
{
	struct fixture *f = *state;
	char p[512];
	snprintf(p, sizeof(p), "%s/empty.img", f->src); /* as `truncate -s 500M` makes it */
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(ftruncate(fd, 500LL << 20), 0);
	close(fd);
	assert_int_equal(create(f, p), 0);
	struct stat st;
	assert_int_equal(stat(f->tar, &st), 0);
	assert_true(st.st_size <= 6 * TAR_BLOCK); /* pax header and records, header, map, end */
	assert_int_equal(extract(f, 0), 0);
	snprintf(p, sizeof(p), "%s/empty.img", f->dst);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 500LL << 20);
	assert_int_equal(st.st_blocks, 0);
}

static void test_sparse_file_from_libarchive_is_extracted_sparse(void **state)
{
	struct fixture *f = *state;
	/* What vm_put_dir sends for a sparse host file: libarchive's pax writer. */
	char p[512];
	snprintf(p, sizeof(p), "%s/big.bin", f->src);
	make_sparse(p);
	struct archive *out = archive_write_new(), *disk = archive_read_disk_new();
	archive_write_set_format_pax_restricted(out);
	assert_int_equal(archive_write_open_filename(out, f->tar), ARCHIVE_OK);
	assert_int_equal(archive_read_disk_open(disk, p), ARCHIVE_OK);
	struct archive_entry *e = archive_entry_new();
	assert_int_equal(archive_read_next_header2(disk, e), ARCHIVE_OK);
	assert_true(archive_entry_sparse_count(e) > 0);
	archive_entry_set_pathname(e, "big.bin");
	assert_int_equal(archive_write_header(out, e), ARCHIVE_OK);
	/* As bsdtar does: the writer skips the holes' zeros itself. */
	static const char zeros[65536];
	const void *block;
	size_t size;
	la_int64_t offset, done = 0;
	while (archive_read_data_block(disk, &block, &size, &offset) == ARCHIVE_OK) {
		for (; done < offset; done += (la_int64_t)sizeof(zeros))
			archive_write_data(out, zeros,
					   (size_t)(offset - done) < sizeof(zeros)
					       ? (size_t)(offset - done)
					       : sizeof(zeros));
		done = offset + (la_int64_t)size;
		assert_int_equal(archive_write_data(out, block, size), (la_ssize_t)size);
	}
	archive_entry_free(e);
	archive_read_free(disk);
	assert_int_equal(archive_write_close(out), ARCHIVE_OK);
	archive_write_free(out);

	assert_int_equal(extract(f, 0), 0);
	snprintf(p, sizeof(p), "%s/big.bin", f->dst);
	assert_sparse_copy(p);
	snprintf(p, sizeof(p), "%s/GNUSparseFile.0", f->dst);
	assert_int_equal(access(p, F_OK), -1);
}

/* The members of f->tar as "type name[ -> link]" lines, in archive order. */
static char *list_members(struct fixture *f)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	assert_int_equal(archive_read_open_filename(a, f->tar, 10240), ARCHIVE_OK);
	char *s = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&s, &len);
	struct archive_entry *e;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		mode_t t = archive_entry_filetype(e);
		fprintf(out, "%s %s%s%s\n",
			t == AE_IFLNK	? "link"
			: t == AE_IFDIR ? "dir"
					: "file",
			archive_entry_pathname(e), t == AE_IFLNK ? " -> " : "",
			t == AE_IFLNK ? archive_entry_symlink(e) : "");
	}
	archive_read_free(a);
	fclose(out);
	return s;
}

/* src/loop: a file, a link to itself, one to its parent, and two links to each other. */
static void make_loops(struct fixture *f)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/loop", f->src);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/loop/f", f->src);
	write_file(p, "f\n", 2, 0644, 1000000000);
	snprintf(p, sizeof(p), "%s/loop/self", f->src);
	assert_int_equal(symlink(".", p), 0);
	snprintf(p, sizeof(p), "%s/loop/up", f->src);
	assert_int_equal(symlink("..", p), 0);
	snprintf(p, sizeof(p), "%s/loop/a", f->src);
	assert_int_equal(symlink("b", p), 0);
	snprintf(p, sizeof(p), "%s/loop/b", f->src);
	assert_int_equal(symlink("a", p), 0);
	snprintf(p, sizeof(p), "%s/link-to-loop", f->src);
	assert_int_equal(symlink("loop", p), 0);
}

static void test_symlinks_are_archived_as_symlinks_never_followed(void **state)
{
	struct fixture *f = *state;
	make_loops(f);
	char p[512];
	snprintf(p, sizeof(p), "%s/loop", f->src);
	assert_int_equal(create(f, p), 0);
	char *got = list_members(f);
	assert_string_equal(got, "dir loop/\n"
				 "link loop/a -> b\n"
				 "link loop/b -> a\n"
				 "file loop/f\n"
				 "link loop/self -> .\n"
				 "link loop/up -> ..\n");
	free(got);
	/* Glob matches that are symlinks, loops included. */
	snprintf(p, sizeof(p), "%s/loop/*", f->src);
	assert_int_equal(create(f, p), 0);
	got = list_members(f);
	assert_string_equal(got, "link a -> b\n"
				 "link b -> a\n"
				 "file f\n"
				 "link self -> .\n"
				 "link up -> ..\n");
	free(got);
	/* A path asked for by name that is a symlink is a symlink too. */
	snprintf(p, sizeof(p), "%s/link-to-loop", f->src);
	assert_int_equal(create(f, p), 0);
	got = list_members(f);
	assert_string_equal(got, "link link-to-loop -> loop\n");
	free(got);
}

static void test_sparse_map_past_the_real_size_is_refused(void **state)
{
	struct fixture *f = *state;
	/* A GNU sparse 1.0 member whose one region (8 bytes at 100) ends past its 50 bytes. */
	char *recs = NULL;
	size_t nrecs = 0;
	agent_tar_pax_add(&recs, &nrecs, "GNU.sparse.major", "1");
	agent_tar_pax_add(&recs, &nrecs, "GNU.sparse.minor", "0");
	agent_tar_pax_add(&recs, &nrecs, "GNU.sparse.name", "bad.bin");
	agent_tar_pax_add(&recs, &nrecs, "GNU.sparse.realsize", "50");
	uint8_t h[TAR_BLOCK], block[TAR_BLOCK] = "1\n100\n8\n", zero[2 * TAR_BLOCK] = {0};
	int fd = open(f->tar, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	agent_tar_header_init(h, "PaxHeader", 0, 'x', 0644, 0, 0, (int64_t)nrecs, 0);
	agent_tar_header_finish(h);
	agent_tar_write_all(fd, h, TAR_BLOCK);
	agent_tar_write_all(fd, recs, nrecs);
	agent_tar_write_all(fd, zero, agent_tar_padding(nrecs));
	agent_tar_header_init(h, "GNUSparseFile.0/bad.bin", 0, '0', 0644, 0, 0, TAR_BLOCK + 8, 0);
	agent_tar_header_finish(h);
	agent_tar_write_all(fd, h, TAR_BLOCK);
	agent_tar_write_all(fd, block, TAR_BLOCK);
	agent_tar_write_all(fd, "12345678", 8);
	agent_tar_write_all(fd, zero, TAR_BLOCK - 8);
	agent_tar_write_all(fd, zero, sizeof(zero));
	close(fd);
	free(recs);
	assert_int_equal(extract(f, 0), -EINVAL);
	assert_non_null(strstr(f->err, "past its size"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip_keeps_files_modes_links_and_long_paths,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_single_file_is_stored_by_its_name, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_glob_stores_matches_relative_to_its_directory,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_glob_matching_nothing_gives_an_empty_archive,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_path_is_an_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_extract_refuses_dotdot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_extract_refuses_absolute_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_extract_refuses_hard_link_outside, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_extract_does_not_write_through_symlinks, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_gnu_long_names_are_read, setup, teardown),
	    cmocka_unit_test(test_base256_numbers_are_read),
	    cmocka_unit_test_setup_teardown(test_truncated_stream_is_an_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_is_not_a_tar_stream, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sparse_file_travels_as_its_data_regions, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_file_that_is_all_hole_travels_as_its_map, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_sparse_file_from_libarchive_is_extracted_sparse,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sparse_map_past_the_real_size_is_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_symlinks_are_archived_as_symlinks_never_followed,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
