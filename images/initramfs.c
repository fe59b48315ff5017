/*
 * The initramfs: a newc cpio archive, gzip-compressed, as the kernel
 * unpacks it into its first root filesystem (Documentation/
 * driver-api/early-userspace/buffer-format.rst).
 *
 * Output is deterministic so that equal inputs give equal bytes: entries
 * are sorted by path (a parent always sorts before its children, which the
 * kernel's unpacker needs), owned by root, stamped with mtime 0, numbered
 * 1, 2, 3... as inodes, and the gzip header carries no timestamp.
 */
#include "images/internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum ent_kind { ENT_DIR, ENT_DATA, ENT_FILE, ENT_SYMLINK, ENT_CHR };

struct ent {
	char *path;
	enum ent_kind kind;
	mode_t mode; /* permission bits only */
	uint8_t *data;
	size_t len;
	char *target; /* ENT_FILE: the host file; ENT_SYMLINK: the link's target */
	unsigned major, minor;
};

struct img_initramfs {
	struct ent *v;
	size_t n, cap;
};

struct img_initramfs *img_initramfs_new(void)
{
	return calloc(1, sizeof(struct img_initramfs));
}

void img_initramfs_free(struct img_initramfs *ir)
{
	if (!ir)
		return;
	for (size_t i = 0; i < ir->n; i++) {
		free(ir->v[i].path);
		free(ir->v[i].data);
		free(ir->v[i].target);
	}
	free(ir->v);
	free(ir);
}

/* A path is relative, without empty, "." or ".." components. */
static bool path_ok(const char *path)
{
	if (!path[0] || path[0] == '/')
		return false;
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/' && !*++p)
			return false;
	}
	return true;
}

bool img_initramfs_has(const struct img_initramfs *ir, const char *path)
{
	while (*path == '/')
		path++;
	for (size_t i = 0; i < ir->n; i++)
		if (!strcmp(ir->v[i].path, path))
			return true;
	return false;
}

/* Appends an entry for path and points *out at it for the caller to fill. */
static int add(struct img_initramfs *ir, const char *path, enum ent_kind kind, mode_t mode,
	       struct ent **out, struct vmci_err *err)
{
	while (*path == '/')
		path++;
	if (!path_ok(path))
		return vmci_err_set(err, EINVAL, "%s: bad initramfs path '%s'", __func__, path);
	if (img_initramfs_has(ir, path))
		return vmci_err_set(err, EEXIST, "%s: '%s' is already in the initramfs", __func__,
				    path);
	if (ir->n == ir->cap) {
		size_t cap = ir->cap ? 2 * ir->cap : 64;
		struct ent *v = realloc(ir->v, cap * sizeof(*v));
		if (!v)
			return vmci_err_set(err, ENOMEM, "out of memory");
		ir->v = v;
		ir->cap = cap;
	}
	struct ent *e = &ir->v[ir->n];
	memset(e, 0, sizeof(*e));
	e->path = strdup(path);
	if (!e->path)
		return vmci_err_set(err, ENOMEM, "out of memory");
	e->kind = kind;
	e->mode = mode & 07777;
	ir->n++;
	if (out)
		*out = e;
	return 0;
}

int img_initramfs_add_dir(struct img_initramfs *ir, const char *path, mode_t mode,
			  struct vmci_err *err)
{
	return add(ir, path, ENT_DIR, mode, NULL, err);
}

int img_initramfs_add_data(struct img_initramfs *ir, const char *path, mode_t mode,
			   const void *data, size_t len, struct vmci_err *err)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return vmci_err_set(err, ENOMEM, "out of memory");
	memcpy(copy, data, len);
	struct ent *e;
	int rc = add(ir, path, ENT_DATA, mode, &e, err);
	if (rc) {
		free(copy);
		return rc;
	}
	e->data = copy;
	e->len = len;
	return 0;
}

/* An entry whose content is a string: a host path or a symlink target. */
static int add_with_target(struct img_initramfs *ir, const char *path, enum ent_kind kind,
			   mode_t mode, const char *target, struct vmci_err *err)
{
	char *copy = strdup(target);
	if (!copy)
		return vmci_err_set(err, ENOMEM, "out of memory");
	struct ent *e;
	int rc = add(ir, path, kind, mode, &e, err);
	if (rc) {
		free(copy);
		return rc;
	}
	e->target = copy;
	return 0;
}

int img_initramfs_add_file(struct img_initramfs *ir, const char *path, mode_t mode,
			   const char *host_path, struct vmci_err *err)
{
	return add_with_target(ir, path, ENT_FILE, mode, host_path, err);
}

int img_initramfs_add_symlink(struct img_initramfs *ir, const char *path, const char *target,
			      struct vmci_err *err)
{
	if (!target[0])
		return vmci_err_set(err, EINVAL, "%s: empty target for '%s'", __func__, path);
	return add_with_target(ir, path, ENT_SYMLINK, 0777, target, err);
}

int img_initramfs_add_chardev(struct img_initramfs *ir, const char *path, mode_t mode,
			      unsigned major, unsigned minor, struct vmci_err *err)
{
	struct ent *e;
	int rc = add(ir, path, ENT_CHR, mode, &e, err);
	if (!rc) {
		e->major = major;
		e->minor = minor;
	}
	return rc;
}

/* Adds a directory (0755) for every parent that was not added explicitly. */
static int add_parents(struct img_initramfs *ir, struct vmci_err *err)
{
	size_t n = ir->n;
	for (size_t i = 0; i < n; i++) {
		char parent[PATH_MAX];
		if (fs_path(parent, sizeof(parent), "%s", ir->v[i].path))
			return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", ir->v[i].path);
		for (char *slash = strchr(parent, '/'); slash; slash = strchr(slash + 1, '/')) {
			*slash = 0;
			int rc = img_initramfs_has(ir, parent)
				     ? 0
				     : add(ir, parent, ENT_DIR, 0755, NULL, err);
			*slash = '/';
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct ent *)a)->path, ((const struct ent *)b)->path);
}

/*
 * A failure of the writer a: the file's own errno when there is one (a
 * full disk says "No space left on device"), else libarchive's words.
 */
static int write_failed(struct archive *a, const char *what, struct vmci_err *err)
{
	int e = archive_errno(a);
	if (e > 0)
		return vmci_err_errno(err, e, "%s", what);
	return vmci_err_set(err, EIO, "%s: %s", what, archive_error_string(a));
}

static int write_data(struct archive *a, const void *data, size_t len, const char *what,
		      struct vmci_err *err)
{
	if (len && archive_write_data(a, data, len) != (la_ssize_t)len)
		return write_failed(a, what, err);
	return 0;
}

/* Streams a host file as the body of an entry whose size was set from st. */
static int write_host_file(struct archive *a, int fd, const struct ent *e, off_t size,
			   struct vmci_err *err)
{
	static __thread uint8_t chunk[1 << 16];
	off_t done = 0;
	while (done < size) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vmci_err_errno(err, errno, "cannot read %s", e->target);
		if (n == 0 || n > size - done)
			return vmci_err_set(err, EIO, "%s changed while it was being read",
					    e->target);
		int rc = write_data(a, chunk, (size_t)n, e->path, err);
		if (rc)
			return rc;
		done += n;
	}
	return 0;
}

static int write_entry(struct archive *a, struct archive_entry *ae, const struct ent *e,
		       unsigned ino, struct vmci_err *err)
{
	static const mode_t type[] = {[ENT_DIR] = AE_IFDIR,
				      [ENT_DATA] = AE_IFREG,
				      [ENT_FILE] = AE_IFREG,
				      [ENT_SYMLINK] = AE_IFLNK,
				      [ENT_CHR] = AE_IFCHR};
	archive_entry_clear(ae);
	archive_entry_set_pathname(ae, e->path);
	archive_entry_set_mode(ae, type[e->kind] | e->mode);
	archive_entry_set_uid(ae, 0);
	archive_entry_set_gid(ae, 0);
	archive_entry_set_mtime(ae, 0, 0);
	archive_entry_set_ino(ae, ino);
	archive_entry_set_nlink(ae, e->kind == ENT_DIR ? 2 : 1);
	int fd = -1;
	off_t size = 0;
	switch (e->kind) {
	case ENT_DATA:
		size = (off_t)e->len;
		break;
	case ENT_FILE: {
		struct stat st;
		fd = open(e->target, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) != 0) {
			int rc = vmci_err_errno(err, errno, "cannot open %s", e->target);
			if (fd >= 0)
				close(fd);
			return rc;
		}
		size = st.st_size;
		break;
	}
	case ENT_SYMLINK:
		archive_entry_set_symlink(ae, e->target);
		break;
	case ENT_CHR:
		archive_entry_set_rdevmajor(ae, e->major);
		archive_entry_set_rdevminor(ae, e->minor);
		break;
	case ENT_DIR:
		break;
	}
	archive_entry_set_size(ae, size);
	int rc = 0;
	if (archive_write_header(a, ae) != ARCHIVE_OK)
		rc = write_failed(a, e->path, err);
	else if (e->kind == ENT_DATA)
		rc = write_data(a, e->data, e->len, e->path, err);
	else if (e->kind == ENT_FILE)
		rc = write_host_file(a, fd, e, size, err);
	if (fd >= 0)
		close(fd);
	return rc;
}

int img_initramfs_write(struct img_initramfs *ir, const char *out, struct vmci_err *err)
{
	int rc = add_parents(ir, err);
	if (rc)
		return rc;
	qsort(ir->v, ir->n, sizeof(*ir->v), by_path);

	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot create %s", out);
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();
	if (!a || !ae) {
		rc = vmci_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	/* "!timestamp": no mtime in the gzip header; no padding after the stream. */
	if (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
	    archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
	    archive_write_set_filter_option(a, "gzip", "timestamp", NULL) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(a, fd) != ARCHIVE_OK) {
		rc = vmci_err_set(err, EIO, "cannot start the initramfs %s: %s", out,
				  archive_error_string(a));
		goto out;
	}
	for (size_t i = 0; i < ir->n && !rc; i++)
		rc = write_entry(a, ae, &ir->v[i], (unsigned)i + 1, err);
	if (!rc && archive_write_close(a) != ARCHIVE_OK)
		rc = write_failed(a, "the last entries", err);
	if (rc)
		vmci_err_wrap(err, "cannot write the initramfs %s", out);
	if (!rc && fsync(fd) != 0)
		rc = vmci_err_errno(err, errno, "cannot sync %s", out);
out:
	archive_entry_free(ae);
	archive_write_free(a);
	close(fd);
	if (rc)
		unlink(out);
	return rc;
}
