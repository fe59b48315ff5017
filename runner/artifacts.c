/*
 * A job's artifacts out of its VM (see artifacts.h): one tar stream per
 * artifact path, unpacked by a thread of ours within the job's limits.
 *
 * When a limit is reached the thread stops reading; the transfer's writer
 * then fails (EPIPE) and vmcore cancels the archiving in the guest, so a
 * job that made 20 GB of output spends no time sending what is not kept.
 */
#include "runner/artifacts.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- unpacking one stream ------------------------------------------------------------- */

/* A relative path without "..": it stays under the directory it is unpacked in. */
static bool path_inside(const char *p)
{
	if (!p || !*p || p[0] == '/')
		return false;
	for (const char *s = p; *s;) {
		size_t len = strcspn(s, "/");
		if (len == 2 && s[0] == '.' && s[1] == '.')
			return false;
		s += len;
		s += *s == '/';
	}
	return true;
}

static void refuse(struct artifact_copy *c, const char *name, const char *why)
{
	c->st.refused++;
	if (!c->refused[0])
		snprintf(c->refused, sizeof(c->refused), "'%s' (%s)", name, why);
}

/* A limit is reached at entry name: nothing more is copied. */
static int stop(struct artifact_copy *c, const char *name, const char *limit)
{
	char why[128], size[32];
	format_size(c->max_bytes, size, sizeof(size));
	if (!strcmp(limit, "max-files"))
		snprintf(why, sizeof(why), "past max-files: %lld entries", c->max_entries);
	else
		snprintf(why, sizeof(why), "past max-size: %s of data", size);
	c->full = true;
	c->refused[0] = 0; /* the limit is what matters now */
	refuse(c, name, why);
	return -EFBIG;
}

/* Why a member of this type is not copied; NULL when it is. */
static const char *type_refused(mode_t type)
{
	switch (type) {
	case AE_IFREG:
	case AE_IFDIR:
	case AE_IFLNK:
		return NULL;
	case AE_IFCHR:
		return "a character device";
	case AE_IFBLK:
		return "a block device";
	case AE_IFIFO:
		return "a FIFO";
	case AE_IFSOCK:
		return "a socket";
	default:
		return "an unknown file type";
	}
}

/* The bytes of a regular member that travel: its data regions when sparse, else its size. */
static long long data_size(struct archive_entry *e)
{
	if (archive_entry_sparse_reset(e) == 0)
		return archive_entry_size(e);
	long long total = 0;
	la_int64_t off, len;
	while (archive_entry_sparse_next(e, &off, &len) == ARCHIVE_OK)
		total += len;
	return total;
}

static int skip_data(struct archive *in, const char *name, struct vmci_err *err)
{
	if (archive_read_data_skip(in) != ARCHIVE_OK)
		return vmci_err_set(err, EPROTO, "the guest sent a broken tar stream at '%s': %s",
				    name, archive_error_string(in));
	return 0;
}

/* Writes a regular member's data blocks (at their offsets: holes stay holes). */
static int copy_data(struct archive *in, struct archive *disk, const char *name, const char *path,
		     struct artifact_copy *c, struct vmci_err *err)
{
	const void *block;
	size_t size;
	la_int64_t offset;
	int r;
	while ((r = archive_read_data_block(in, &block, &size, &offset)) == ARCHIVE_OK) {
		/* The header's size is the guest's word: hold the limit on what arrives. */
		if (c->st.data_bytes + (long long)size > c->max_bytes) {
			archive_write_finish_entry(disk);
			unlink(path);
			return stop(c, name, "max-size");
		}
		if (archive_write_data_block(disk, block, size, offset) < ARCHIVE_WARN)
			return vmci_err_set(err, EIO, "cannot write %s: %s", path,
					    archive_error_string(disk));
		c->st.data_bytes += (long long)size;
	}
	if (r != ARCHIVE_EOF)
		return vmci_err_set(err, EPROTO, "the guest sent a broken tar stream at '%s': %s",
				    name, archive_error_string(in));
	return 0;
}

static int unpack_entry(struct archive *in, struct archive *disk, struct archive_entry *e,
			const char *dir, struct artifact_copy *c, struct vmci_err *err)
{
	char name[256], path[PATH_MAX], target[PATH_MAX];
	const char *raw = archive_entry_pathname(e), *link = archive_entry_hardlink(e);
	snprintf(name, sizeof(name), "%s", raw ? raw : "");
	mode_t type = archive_entry_filetype(e);
	const char *why = !path_inside(raw)	       ? "a path outside the artifact directory"
			  : link && !path_inside(link) ? "a hard link out of the artifact directory"
			  : link		       ? NULL
						       : type_refused(type);
	if (!why && (fs_path(path, sizeof(path), "%s/%s", dir, raw) ||
		     (link && fs_path(target, sizeof(target), "%s/%s", dir, link))))
		why = "a path too long for the host";
	if (why) {
		refuse(c, name, why);
		return skip_data(in, name, err);
	}
	bool regular = type == AE_IFREG && !link;
	if (c->st.files + c->st.dirs + c->st.symlinks >= c->max_entries)
		return stop(c, name, "max-files");
	if (regular && c->st.data_bytes + data_size(e) > c->max_bytes)
		return stop(c, name, "max-size");

	archive_entry_set_pathname(e, path);
	if (link)
		archive_entry_set_hardlink(e, target);
	/* No set-id or sticky bits from a guest; the host user can always read and remove. */
	archive_entry_set_perm(e,
			       (archive_entry_perm(e) & 0777) | (type == AE_IFDIR ? 0700 : 0600));
	int w = archive_write_header(disk, e);
	/* This entry only: libarchive's own checks refused it (a symlink in its way). */
	if (w == ARCHIVE_FAILED) {
		refuse(c, name, archive_error_string(disk));
		return skip_data(in, name, err);
	}
	if (w < ARCHIVE_WARN)
		return vmci_err_set(err, EIO, "cannot write %s: %s", path,
				    archive_error_string(disk));
	int rc = regular ? copy_data(in, disk, name, path, c, err) : 0;
	if (rc)
		return rc;
	if (archive_write_finish_entry(disk) < ARCHIVE_WARN)
		return vmci_err_set(err, EIO, "cannot write %s: %s", path,
				    archive_error_string(disk));
	if (type == AE_IFDIR && !link)
		c->st.dirs++;
	else if (type == AE_IFLNK && !link)
		c->st.symlinks++;
	else
		c->st.files++;
	if (regular)
		c->st.bytes += archive_entry_size(e);
	return 0;
}

int artifact_unpack(int fd, const char *dir, struct artifact_copy *c, struct vmci_err *err)
{
	struct archive *in = archive_read_new(), *disk = archive_write_disk_new();
	int rc = 0;
	if (!in || !disk) {
		rc = vmci_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	archive_read_support_format_tar(in);
	/*
	 * Entries are re-rooted under dir by hand (libarchive's absolute-path
	 * check cannot be used on them); its symlink checks still apply. Not
	 * ARCHIVE_EXTRACT_UNLINK: it would replace a symlink in an entry's way
	 * by a directory, where the entry must be refused.
	 */
	archive_write_disk_set_options(
	    disk, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
		      ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SPARSE);
	if (archive_read_open_fd(in, fd, 65536) != ARCHIVE_OK) {
		rc = vmci_err_set(err, EPROTO, "cannot read what the guest sent: %s",
				  archive_error_string(in));
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		rc = unpack_entry(in, disk, e, dir, c, err);
		if (rc)
			goto out;
	}
	if (r != ARCHIVE_EOF)
		rc = vmci_err_set(err, EPROTO, "the guest sent a broken tar stream: %s",
				  archive_error_string(in));
out:
	archive_read_free(in);
	archive_write_free(disk); /* sets the directories' modes and times, last */
	return rc;
}

/* ---- one artifact path ------------------------------------------------------------------ */

struct unpack_job {
	int fd; /* our end of the socket pair */
	const char *dir;
	struct artifact_copy *c;
	int rc;
	struct vmci_err err;
};

static void *unpack_thread(void *arg)
{
	struct unpack_job *u = arg;
	u->rc = artifact_unpack(u->fd, u->dir, u->c, &u->err);
	if (u->rc == 0) {
		/* Anything after the end of the archive, so the transfer never blocks on us. */
		char sink[65536];
		while (read(u->fd, sink, sizeof(sink)) > 0)
			;
	} else {
		shutdown(u->fd, SHUT_RD); /* the writer fails, and the guest is told to stop */
	}
	return NULL;
}

/* Where a path's matches land: relative to its last '/' before the first wildcard. */
static size_t glob_prefix(const char *glob)
{
	size_t prefix = 0;
	for (const char *p = glob; *p && !strchr("*?[", *p); p++)
		if (*p == '/')
			prefix = (size_t)(p - glob) + 1;
	return prefix;
}

struct collect {
	const struct runner_job_vm *vm;
	const char *host_dir;
	struct artifact_copy c;
	artifact_note_fn note;
	void *ctx;
	char *problem;
	size_t size;
};

static void note(struct collect *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct collect *k, const char *fmt, ...)
{
	char text[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (k->note)
		k->note(k->ctx, text);
}

/* Something was not copied: the job's artifacts are incomplete; the first problem is kept. */
static void incomplete(struct collect *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void incomplete(struct collect *k, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	k->c.st.incomplete = true;
	if (!k->problem[0])
		snprintf(k->problem, k->size, "%s", text);
	note(k, "artifacts: %s", text);
}

static long long entries(const struct runner_artifact_stats *st)
{
	return st->files + st->dirs + st->symlinks;
}

/* Copies one artifact path. Returns 0, or a negative code when the VM failed (err). */
static int collect_path(struct collect *k, const char *path, struct vmci_err *err)
{
	char rel[PATH_MAX], guest[PATH_MAX], host[PATH_MAX], real[PATH_MAX];
	snprintf(rel, sizeof(rel), "%s", path);
	/* "out/" is the directory out: its entries are stored as out/..., like "out". */
	for (size_t n = strlen(rel); n > 1 && rel[n - 1] == '/'; n--)
		rel[n - 1] = 0;
	struct vmci_err e = {0};
	if (!path_inside(rel)) {
		incomplete(k, "'%s' is not a path inside the workspace", path);
		return 0;
	}
	if (fs_path(guest, sizeof(guest), "%s/%s", RUNNER_GUEST_WORKSPACE, rel) ||
	    fs_path(host, sizeof(host), "%s/%.*s", k->host_dir, (int)glob_prefix(rel), rel)) {
		incomplete(k, "'%s': path too long", path);
		return 0;
	}
	if (fs_mkdir_p(host, 0755, &e) || !realpath(host, real)) {
		incomplete(k, "'%s': cannot make %s: %s", path, host,
			   e.code ? e.msg : strerror(errno));
		return 0;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		incomplete(k, "'%s': cannot create a socket pair: %s", path, strerror(errno));
		return 0;
	}
	long long before = entries(&k->c.st), refused_before = k->c.st.refused;
	struct unpack_job u = {.fd = sv[1], .dir = real, .c = &k->c};
	pthread_t thread;
	if (pthread_create(&thread, NULL, unpack_thread, &u)) {
		close(sv[0]);
		close(sv[1]);
		incomplete(k, "'%s': cannot start a thread to unpack it", path);
		return 0;
	}
	int rc = runner_job_vm_get_tar(k->vm, guest, sv[0], &e);
	shutdown(sv[0], SHUT_WR); /* the end of the stream for the unpacker */
	pthread_join(thread, NULL);
	close(sv[0]);
	close(sv[1]);
	long long copied = entries(&k->c.st) - before, refused = k->c.st.refused - refused_before;

	/* A guest that still answers only failed to archive (a permission, a race, a cancel). */
	struct vmci_err ping = {0};
	if (rc < 0 && runner_job_vm_ping(k->vm, 5000, &ping)) {
		*err = e;
		return rc;
	}
	if (u.rc == -EFBIG) {
		incomplete(k, "stopped at %s: the rest of '%s' and what follows was not copied",
			   k->c.refused, path);
		return 0;
	}
	if (rc == -ENOENT && copied == 0 && refused == 0) {
		k->c.st.missing++;
		note(k, "artifacts: '%s' matched nothing in the guest", path);
		return 0;
	}
	if (rc < 0) {
		incomplete(k, "'%s' could not be archived in the guest: %s", path, e.msg);
		return 0;
	}
	if (u.rc < 0) {
		incomplete(k, "'%s': %s", path, u.err.msg);
		return 0;
	}
	if (refused) {
		incomplete(k, "refused %lld entr%s of '%s', first %s", refused,
			   refused == 1 ? "y" : "ies", path, k->c.refused);
		k->c.refused[0] = 0; /* the next path names its own */
		return 0;
	}
	if (copied == 0) {
		k->c.st.missing++;
		note(k, "artifacts: '%s' matched nothing in the guest", path);
	}
	return 0;
}

/* "3 files", "1 directory": a count and its noun. */
static const char *count(char *out, size_t size, long long n, const char *one, const char *many)
{
	snprintf(out, size, "%lld %s", n, n == 1 ? one : many);
	return out;
}

int artifact_collect(const struct runner_job_vm *vm, const struct pipe_job *job,
		     const char *host_dir, artifact_note_fn note_fn, void *ctx,
		     struct runner_artifact_stats *st, char *problem, size_t size,
		     struct vmci_err *err)
{
	struct collect k = {
	    .vm = vm,
	    .host_dir = host_dir,
	    .c = {.max_bytes = job->artifact_max_bytes, .max_entries = job->artifact_max_files},
	    .note = note_fn,
	    .ctx = ctx,
	    .problem = problem,
	    .size = size,
	};
	problem[0] = 0;
	int rc = 0;
	for (size_t i = 0; i < job->n_artifacts && !rc; i++) {
		if (k.c.full)
			incomplete(&k,
				   "'%s' was not copied: the job's artifacts reached their limit",
				   job->artifacts[i]);
		else
			rc = collect_path(&k, job->artifacts[i], err);
	}
	*st = k.c.st;
	if (rc)
		return rc;
	char files[48], dirs[48], links[48], bytes[32], data[32], extra[96] = "";
	format_size(st->bytes, bytes, sizeof(bytes));
	format_size(st->data_bytes, data, sizeof(data));
	if (st->data_bytes != st->bytes)
		snprintf(extra, sizeof(extra), " (sparse: %s of data)", data);
	note(&k, "artifacts: %s, %s, %s, %s%s copied to %s%s",
	     count(files, 48, st->files, "file", "files"),
	     count(dirs, 48, st->dirs, "directory", "directories"),
	     count(links, 48, st->symlinks, "symlink", "symlinks"), bytes, extra, host_dir,
	     st->incomplete ? "; incomplete, the job fails" : "");
	return 0;
}
