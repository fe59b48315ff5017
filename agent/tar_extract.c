/*
 * Extracting a tar stream into a directory (PUT). The target is walked
 * with openat(O_NOFOLLOW) from its fd, so no member is written through a
 * symlink, and members with absolute paths or ".." are refused.
 * Directories get their mode and times last, once their contents are in.
 * A sparse member's holes stay holes: only its data regions are written.
 */
#include "agent/tar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* A directory whose mode and times are set once its contents are in. */
struct dir_fix {
	char *path;
	mode_t mode;
	int64_t uid, gid;
	struct timespec mtime;
};

struct untar {
	int root;    /* the target directory */
	char *pdir;  /* the cached parent directory of the last member... */
	int pdir_fd; /* ...and its fd */
	struct dir_fix *dirs;
	size_t ndirs, capdirs;
	bool as_root; /* restore owners */
	char *err;
	size_t errlen;
};

/*
 * Opens rel (a clean relative path, "" for the root) below the target
 * without following symlinks; missing directories are made when create.
 * Returns an fd or -errno.
 */
static int open_dir(struct untar *u, const char *rel, bool create)
{
	int fd = fcntl(u->root, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return agent_tar_fail(u->err, u->errlen, errno, "cannot dup a directory fd: %s",
				      strerror(errno));
	char *copy = strdup(rel), *save = NULL;
	if (!copy) {
		close(fd);
		return agent_tar_fail(u->err, u->errlen, ENOMEM, "out of memory");
	}
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, c, 0755) && errno != EEXIST)
				next = -1;
			else
				next =
				    openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		int e = errno;
		close(fd);
		if (next < 0) {
			int rc =
			    e == ELOOP || e == ENOTDIR
				? agent_tar_fail(
				      u->err, u->errlen, ENOTDIR,
				      "refusing to extract %s: '%s' is not a directory (a "
				      "symlink?)",
				      rel, c)
				: agent_tar_fail(u->err, u->errlen, e,
						 "cannot open directory %s: %s", rel, strerror(e));
			free(copy);
			return rc;
		}
		fd = next;
	}
	free(copy);
	return fd;
}

/* Returns the fd of the parent directory dir, cached across members. */
static int parent_fd(struct untar *u, const char *dir)
{
	if (u->pdir && !strcmp(u->pdir, dir))
		return u->pdir_fd;
	if (u->pdir) {
		close(u->pdir_fd);
		free(u->pdir);
		u->pdir = NULL;
	}
	int fd = open_dir(u, dir, true);
	if (fd < 0)
		return fd;
	u->pdir = strdup(dir);
	if (!u->pdir) {
		close(fd);
		return agent_tar_fail(u->err, u->errlen, ENOMEM, "out of memory");
	}
	u->pdir_fd = fd;
	return fd;
}

/* Removes whatever is at name so a member can take its place. */
static int make_room(int pfd, const char *name)
{
	if (!unlinkat(pfd, name, 0) || errno == ENOENT)
		return 0;
	if ((errno == EISDIR || errno == EPERM) && !unlinkat(pfd, name, AT_REMOVEDIR))
		return 0;
	return -errno;
}

static void set_owner_times(struct untar *u, int pfd, const char *name,
			    const struct agent_tar_entry *e)
{
	if (u->as_root)
		(void)fchownat(pfd, name, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW);
	struct timespec ts[2] = {e->mtime, e->mtime};
	(void)utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

/* Copies the next len bytes of the stream to fd at its current offset. */
static int copy_data(struct untar *u, struct agent_tar_in *in, int fd,
		     const struct agent_tar_entry *e, uint64_t len)
{
	while (len > 0) {
		ssize_t avail = agent_tar_in_fill(in);
		if (avail <= 0)
			return agent_tar_fail(u->err, u->errlen, avail < 0 ? (int)-avail : EIO,
					      "truncated tar stream in %s", e->path);
		size_t k = (uint64_t)avail < len ? (size_t)avail : (size_t)len;
		int rc = agent_tar_write_all(fd, in->buf + in->off, k);
		if (rc)
			return agent_tar_fail(u->err, u->errlen, -rc, "cannot write %s: %s",
					      e->path, strerror(-rc));
		in->off += k;
		len -= k;
	}
	return 0;
}

/* Reads one "%lld\n" line of a sparse map, counting what it used in *used (at most max). */
static int map_number(struct untar *u, struct agent_tar_in *in, const struct agent_tar_entry *e,
		      uint64_t *used, uint64_t max, int64_t *out)
{
	int64_t v = 0;
	for (int digits = 0;; digits++) {
		if (*used >= max || agent_tar_in_fill(in) <= 0)
			return agent_tar_fail(u->err, u->errlen, EINVAL,
					      "truncated sparse map in %s", e->path);
		char c = (char)in->buf[in->off++];
		(*used)++;
		if (c == '\n' && digits > 0)
			break;
		if (c < '0' || c > '9' || digits >= 18)
			return agent_tar_fail(u->err, u->errlen, EINVAL,
					      "malformed sparse map in %s", e->path);
		v = v * 10 + (c - '0');
	}
	*out = v;
	return 0;
}

/*
 * A sparse member's data into fd: the map of its regions, then each
 * region's bytes at its offset; what lies between stays a hole.
 */
static int extract_sparse(struct untar *u, struct agent_tar_in *in, int fd,
			  const struct agent_tar_entry *e)
{
	uint64_t used = 0, max = (uint64_t)e->size;
	int64_t n, off, len, end = 0, data = 0;
	int rc = map_number(u, in, e, &used, max, &n);
	if (!rc && n > (int64_t)(max / 4)) /* each entry takes at least four bytes */
		rc = agent_tar_fail(u->err, u->errlen, EINVAL, "malformed sparse map in %s",
				    e->path);
	struct region {
		int64_t off, len;
	} *r = rc ? NULL : calloc((size_t)n + 1, sizeof(*r));
	if (!rc && !r)
		rc = agent_tar_fail(u->err, u->errlen, ENOMEM, "out of memory");
	for (int64_t i = 0; !rc && i < n; i++) {
		rc = map_number(u, in, e, &used, max, &off);
		if (!rc)
			rc = map_number(u, in, e, &used, max, &len);
		if (!rc && (off < end || len > e->realsize - off))
			rc = agent_tar_fail(u->err, u->errlen, EINVAL,
					    "sparse map of %s has regions out of order or past its "
					    "size",
					    e->path);
		if (!rc) {
			r[i] = (struct region){off, len};
			end = off + len;
			data += len;
		}
	}
	uint64_t pad = agent_tar_padding(used);
	if (!rc && (used + pad + (uint64_t)data != max))
		rc = agent_tar_fail(u->err, u->errlen, EINVAL,
				    "sparse map of %s does not match its size", e->path);
	if (!rc && (rc = agent_tar_in_read(in, NULL, pad)))
		rc = agent_tar_fail(u->err, u->errlen, rc < 0 ? -rc : EIO, "truncated tar stream");
	for (int64_t i = 0; !rc && i < n; i++) {
		if (lseek(fd, r[i].off, SEEK_SET) < 0)
			rc = agent_tar_fail(u->err, u->errlen, errno, "cannot seek in %s: %s",
					    e->path, strerror(errno));
		else
			rc = copy_data(u, in, fd, e, (uint64_t)r[i].len);
	}
	if (!rc && ftruncate(fd, e->realsize))
		rc = agent_tar_fail(u->err, u->errlen, errno, "cannot size %s: %s", e->path,
				    strerror(errno));
	free(r);
	return rc;
}

static int extract_file(struct untar *u, struct agent_tar_in *in, int pfd, const char *name,
			const struct agent_tar_entry *e)
{
	int fd = -1;
	for (int tries = 0; fd < 0; tries++) {
		fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && (errno != EEXIST || tries > 0 || make_room(pfd, name)))
			return agent_tar_fail(u->err, u->errlen, errno, "cannot create %s: %s",
					      e->path, strerror(errno));
	}
	int rc =
	    e->sparse ? extract_sparse(u, in, fd, e) : copy_data(u, in, fd, e, (uint64_t)e->size);
	if (!rc && u->as_root)
		(void)fchown(fd, (uid_t)e->uid, (gid_t)e->gid); /* before chmod: it clears setuid */
	if (!rc && fchmod(fd, e->mode))
		rc = agent_tar_fail(u->err, u->errlen, errno, "cannot chmod %s: %s", e->path,
				    strerror(errno));
	struct timespec ts[2] = {e->mtime, e->mtime};
	if (!rc)
		(void)futimens(fd, ts);
	if (close(fd) && !rc)
		rc = agent_tar_fail(u->err, u->errlen, errno, "cannot write %s: %s", e->path,
				    strerror(errno));
	if (!rc) {
		int r = agent_tar_in_read(in, NULL, agent_tar_padding((uint64_t)e->size));
		if (r)
			rc = agent_tar_fail(u->err, u->errlen, r < 0 ? -r : EIO,
					    "truncated tar stream");
	}
	return rc;
}

static int extract_dir(struct untar *u, int pfd, const char *name, const struct agent_tar_entry *e)
{
	if (mkdirat(pfd, name, 0700) && errno == EEXIST) {
		struct stat st;
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
		    make_room(pfd, name) == 0)
			(void)mkdirat(pfd, name, 0700);
	}
	if (u->ndirs == u->capdirs) {
		size_t cap = u->capdirs ? u->capdirs * 2 : 64;
		struct dir_fix *d = realloc(u->dirs, cap * sizeof(*d));
		if (!d)
			return agent_tar_fail(u->err, u->errlen, ENOMEM, "out of memory");
		u->dirs = d;
		u->capdirs = cap;
	}
	struct dir_fix *d = &u->dirs[u->ndirs];
	d->path = strdup(e->path);
	if (!d->path)
		return agent_tar_fail(u->err, u->errlen, ENOMEM, "out of memory");
	d->mode = e->mode;
	d->uid = e->uid;
	d->gid = e->gid;
	d->mtime = e->mtime;
	u->ndirs++;
	return 0;
}

/* Creates a symlink, hard link or special file: retried once after make_room. */
static int extract_other(struct untar *u, int pfd, const char *name,
			 const struct agent_tar_entry *e)
{
	int tpfd = -1, rc = 0;
	char *tdir = NULL;
	const char *tname = NULL;
	if (e->type == '1') {
		tdir = strdup(e->link);
		if (!tdir)
			return agent_tar_fail(u->err, u->errlen, ENOMEM, "out of memory");
		if (agent_tar_clean_path(tdir) || !tdir[0]) {
			free(tdir);
			return agent_tar_fail(u->err, u->errlen, EINVAL,
					      "refusing hard link %s to '%s'", e->path, e->link);
		}
		char *slash = strrchr(tdir, '/');
		tname = slash ? slash + 1 : tdir;
		if (slash)
			*slash = 0;
		tpfd = open_dir(u, slash ? tdir : "", false);
		if (tpfd < 0) {
			free(tdir);
			return tpfd;
		}
	}
	for (int tries = 0; tries < 2; tries++) {
		switch (e->type) {
		case '1':
			rc = linkat(tpfd, tname, pfd, name, 0);
			break;
		case '2':
			rc = symlinkat(e->link, pfd, name);
			break;
		case '3':
		case '4':
		case '6': {
			mode_t kind = e->type == '3' ? S_IFCHR : e->type == '4' ? S_IFBLK : S_IFIFO;
			rc = mknodat(pfd, name, kind | (e->mode & 0777),
				     makedev(e->devmajor, e->devminor));
			break;
		}
		}
		if (!rc || errno != EEXIST || tries > 0 || make_room(pfd, name))
			break;
	}
	if (rc)
		rc = agent_tar_fail(u->err, u->errlen, errno, "cannot create %s: %s", e->path,
				    strerror(errno));
	else if (e->type != '1') {
		set_owner_times(u, pfd, name, e);
		if (e->type != '2')
			(void)fchmodat(pfd, name, e->mode, 0);
	}
	if (tpfd >= 0)
		close(tpfd);
	free(tdir);
	return rc;
}

static int extract_entry(struct untar *u, struct agent_tar_in *in, struct agent_tar_entry *e)
{
	char *rel = strdup(e->path);
	if (!rel)
		return agent_tar_fail(u->err, u->errlen, ENOMEM, "out of memory");
	int rc = 0;
	bool data_done = false;
	if (agent_tar_clean_path(rel)) {
		rc = agent_tar_fail(u->err, u->errlen, EINVAL,
				    "refusing unsafe path '%s' in the archive", e->path);
		goto out;
	}
	if (!rel[0]) /* the target directory itself */
		goto out;
	free(e->path);
	if (!(e->path = strdup(rel))) {
		rc = agent_tar_fail(u->err, u->errlen, ENOMEM, "out of memory");
		goto out;
	}
	char *slash = strrchr(rel, '/');
	const char *name = slash ? slash + 1 : rel;
	if (slash)
		*slash = 0;
	int pfd = parent_fd(u, slash ? rel : "");
	if (pfd < 0) {
		rc = pfd;
		goto out;
	}
	switch (e->type) {
	case '0':
		rc = extract_file(u, in, pfd, name, e);
		data_done = true;
		break;
	case '5':
		rc = extract_dir(u, pfd, name, e);
		break;
	case '1':
	case '2':
	case '3':
	case '4':
	case '6':
		rc = extract_other(u, pfd, name, e);
		break;
	default:
		rc = agent_tar_fail(u->err, u->errlen, ENOTSUP,
				    "unsupported tar entry type '%c' for %s", e->type, e->path);
	}
out:
	free(rel);
	if (!rc && !data_done) {
		int r = agent_tar_in_read(in, NULL,
					  (uint64_t)e->size + agent_tar_padding((uint64_t)e->size));
		if (r)
			rc = agent_tar_fail(u->err, u->errlen, r < 0 ? -r : EIO,
					    "truncated tar stream");
	}
	return rc;
}

/* Gives each directory its mode, owner and time, now that its contents are in. */
static int fix_dirs(struct untar *u)
{
	int rc = 0;
	for (size_t i = 0; i < u->ndirs; i++) {
		struct dir_fix *d = &u->dirs[i];
		int fd = rc ? -1 : open_dir(u, d->path, false);
		if (fd >= 0) {
			if (u->as_root)
				(void)fchown(fd, (uid_t)d->uid, (gid_t)d->gid);
			if (fchmod(fd, d->mode))
				rc = agent_tar_fail(u->err, u->errlen, errno, "cannot chmod %s: %s",
						    d->path, strerror(errno));
			struct timespec ts[2] = {d->mtime, d->mtime};
			(void)futimens(fd, ts);
			close(fd);
		} else if (!rc) {
			rc = fd;
		}
		free(d->path);
	}
	free(u->dirs);
	u->dirs = NULL;
	u->ndirs = u->capdirs = 0;
	return rc;
}

/* mkdir -p, following symlinks (the target itself is the caller's choice). */
static int mkdir_p(const char *dir, char *err, size_t errlen)
{
	char *p = strdup(dir);
	if (!p)
		return agent_tar_fail(err, errlen, ENOMEM, "out of memory");
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, 0755) && errno != EEXIST) {
			rc = agent_tar_fail(err, errlen, errno, "cannot create directory %s: %s", p,
					    strerror(errno));
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return rc;
}

int agent_tar_extract(int fd, const char *dir, char *err, size_t errlen)
{
	if (!dir || !dir[0])
		return agent_tar_fail(err, errlen, EINVAL, "no directory to extract into");
	int rc = mkdir_p(dir, err, errlen);
	if (rc)
		return rc;
	struct untar u = {.pdir_fd = -1, .as_root = geteuid() == 0, .err = err, .errlen = errlen};
	u.root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (u.root < 0)
		return agent_tar_fail(err, errlen, errno, "cannot open %s: %s", dir,
				      strerror(errno));
	struct agent_tar_in in = {.fd = fd, .buf = malloc(TAR_IO_BUF)};
	if (!in.buf) {
		close(u.root);
		return agent_tar_fail(err, errlen, ENOMEM, "out of memory");
	}
	struct agent_tar_entry e;
	while ((rc = agent_tar_read_entry(&in, &e, err, errlen)) > 0) {
		rc = extract_entry(&u, &in, &e);
		agent_tar_entry_free(&e);
		if (rc)
			break;
	}
	int fixed = fix_dirs(&u);
	if (!rc)
		rc = fixed;
	/* Read to the end, so the writer never fails on trailing blocks. */
	while (!rc && agent_tar_in_fill(&in) > 0)
		in.off = in.len;
	if (u.pdir) {
		close(u.pdir_fd);
		free(u.pdir);
	}
	close(u.root);
	free(in.buf);
	return rc;
}
