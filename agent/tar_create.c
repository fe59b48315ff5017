/*
 * Writing a tar stream of a file, a directory or a glob's matches (GET).
 * Directories are walked in name order; a file with several links is
 * archived once and linked to after that.
 *
 * Symlinks are never followed, the paths asked for and glob matches
 * included: a symlink is archived as a symlink, so a link loop or a link
 * to "/" costs one entry, not a walk of whatever it points to.
 *
 * A file with holes (SEEK_HOLE says where) is written as a GNU sparse
 * file, format 1.0 inside pax (what GNU tar and libarchive write and
 * read): the holes are never read nor sent, and the host re-creates them.
 * A 500 MB file made by `truncate` travels as a few hundred bytes.
 */
#include "agent/tar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* A regular file with several links, archived once; later names link to it. */
struct seen_link {
	dev_t dev;
	ino_t ino;
	char *name;
};

/* A sparse file keeps at most this many data regions; past it, the rest is sent whole. */
#define SPARSE_MAX_REGIONS 10000

/* A run of data in a sparse file; the bytes between two regions are a hole. */
struct region {
	int64_t off, len;
};

/* How a regular file is stored: whole, or as its data regions. */
struct file_layout {
	struct region *regions; /* NULL: the file is stored whole */
	size_t n;
	char *map; /* the sparse map that starts the member's data, padded to a block */
	size_t map_len;
	int64_t stored; /* the member's data size: map and regions, or the file's size */
};

struct tar_out {
	int fd;
	uint8_t *buf;
	size_t len;
	struct seen_link *links;
	size_t nlinks, caplinks;
	char *err;
	size_t errlen;
};

static int out_flush(struct tar_out *o)
{
	int rc = agent_tar_write_all(o->fd, o->buf, o->len);
	o->len = 0;
	if (rc)
		return agent_tar_fail(o->err, o->errlen, -rc, "cannot write the tar stream: %s",
				      strerror(-rc));
	return 0;
}

/* Appends data (NULL: zeros). */
static int out_write(struct tar_out *o, const void *data, size_t n)
{
	const uint8_t *p = data;
	while (n > 0) {
		if (o->len == TAR_IO_BUF) {
			int rc = out_flush(o);
			if (rc)
				return rc;
		}
		size_t k = TAR_IO_BUF - o->len < n ? TAR_IO_BUF - o->len : n;
		if (p) {
			memcpy(o->buf + o->len, p, k);
			p += k;
		} else {
			memset(o->buf + o->len, 0, k);
		}
		o->len += k;
		n -= k;
	}
	return 0;
}

/*
 * The name a sparse member's ustar header carries, as GNU tar writes it:
 * readers that know the format take the real one from GNU.sparse.name.
 */
static void sparse_stand_in(const char *name, char *out, size_t size)
{
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	size_t len = strlen(base);
	snprintf(out, size, "GNUSparseFile.0/%s", base + (len > 80 ? len - 80 : 0));
}

/*
 * Writes the headers of one member: a pax header first when needed.
 * layout: a regular file's (NULL for other types); a sparse one adds the
 * GNU.sparse records and stores its real name there.
 */
static int write_header(struct tar_out *o, const char *name, const struct stat *st, char type,
			const char *link, const struct file_layout *layout)
{
	int64_t size = layout ? layout->stored : 0;
	bool sparse = layout && layout->regions;
	char *recs = NULL, num[32], stand_in[128];
	size_t nrecs = 0, prefix_len;
	bool oom = false;
	if (sparse) {
		snprintf(num, sizeof(num), "%lld", (long long)st->st_size);
		oom |= agent_tar_pax_add(&recs, &nrecs, "GNU.sparse.major", "1") != 0;
		oom |= agent_tar_pax_add(&recs, &nrecs, "GNU.sparse.minor", "0") != 0;
		oom |= agent_tar_pax_add(&recs, &nrecs, "GNU.sparse.name", name) != 0;
		oom |= agent_tar_pax_add(&recs, &nrecs, "GNU.sparse.realsize", num) != 0;
		sparse_stand_in(name, stand_in, sizeof(stand_in));
		name = stand_in;
	}
	bool fits = agent_tar_ustar_split(name, &prefix_len);
	if (!fits)
		oom |= agent_tar_pax_add(&recs, &nrecs, "path", name) != 0;
	if (link && strlen(link) > 100)
		oom |= agent_tar_pax_add(&recs, &nrecs, "linkpath", link) != 0;
	if (!agent_tar_fits_octal(size, 12)) {
		snprintf(num, sizeof(num), "%lld", (long long)size);
		oom |= agent_tar_pax_add(&recs, &nrecs, "size", num) != 0;
	}
	if (!agent_tar_fits_octal(st->st_mtim.tv_sec, 12)) {
		snprintf(num, sizeof(num), "%lld", (long long)st->st_mtim.tv_sec);
		oom |= agent_tar_pax_add(&recs, &nrecs, "mtime", num) != 0;
	}
	if (!agent_tar_fits_octal(st->st_uid, 8)) {
		snprintf(num, sizeof(num), "%u", (unsigned)st->st_uid);
		oom |= agent_tar_pax_add(&recs, &nrecs, "uid", num) != 0;
	}
	if (!agent_tar_fits_octal(st->st_gid, 8)) {
		snprintf(num, sizeof(num), "%u", (unsigned)st->st_gid);
		oom |= agent_tar_pax_add(&recs, &nrecs, "gid", num) != 0;
	}
	if (oom) {
		free(recs);
		return agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
	}
	uint8_t h[TAR_BLOCK];
	int rc = 0;
	if (nrecs) {
		agent_tar_header_init(h, "././@PaxHeader", 0, 'x', 0644, 0, 0, (int64_t)nrecs, 0);
		agent_tar_header_finish(h);
		rc = out_write(o, h, TAR_BLOCK);
		if (!rc)
			rc = out_write(o, recs, nrecs);
		if (!rc)
			rc = out_write(o, NULL, agent_tar_padding(nrecs));
	}
	free(recs);
	if (rc)
		return rc;
	agent_tar_header_init(h, fits ? name : name + strlen(name) - 100, fits ? prefix_len : 0,
			      type, st->st_mode & 07777, st->st_uid, st->st_gid, size,
			      st->st_mtim.tv_sec);
	if (link)
		agent_tar_put_str(h, F_LINK, link);
	if (type == '3' || type == '4') {
		agent_tar_put_num(h, F_DEVMAJOR, major(st->st_rdev));
		agent_tar_put_num(h, F_DEVMINOR, minor(st->st_rdev));
	}
	agent_tar_header_finish(h);
	return out_write(o, h, TAR_BLOCK);
}

/* Appends "%lld\n" to the map being built. */
static void map_num(char *map, size_t *len, int64_t v)
{
	*len += (size_t)sprintf(map + *len, "%lld\n", (long long)v);
}

/*
 * Finds the data regions of fd (size bytes) with SEEK_DATA/SEEK_HOLE,
 * reading nothing. A file without holes, or on a filesystem that cannot
 * tell, is stored whole (layout->regions stays NULL). Returns 0 or -ENOMEM.
 */
static int map_layout(int fd, int64_t size, struct file_layout *l)
{
	*l = (struct file_layout){.stored = size};
	if (size == 0)
		return 0;
	size_t n = 0, cap = 16; /* room for the last region of a file that is all hole */
	struct region *r = malloc(cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	int64_t data = 0;
	for (int64_t off = 0; off < size;) {
		off_t d = lseek(fd, off, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break; /* a hole to the end */
		off_t h = d < 0 ? -1 : lseek(fd, d, SEEK_HOLE);
		if (h < 0) { /* the filesystem cannot tell */
			free(r);
			return 0;
		}
		if (h > size)
			h = size;
		if (n + 2 > cap) {
			cap *= 2;
			struct region *p = realloc(r, cap * sizeof(*p));
			if (!p) {
				free(r);
				return -ENOMEM;
			}
			r = p;
		}
		if (n + 2 == SPARSE_MAX_REGIONS)
			h = size; /* enough regions: the rest goes whole */
		r[n++] = (struct region){d, h - d};
		data += h - d;
		off = h;
	}
	if (data == size) { /* no hole */
		free(r);
		return 0;
	}
	if (n == 0 || r[n - 1].off + r[n - 1].len < size)
		r[n++] = (struct region){size, 0}; /* ends in a hole: GNU tar marks the end */
	/* The map: entries, then offset and size of each, one number a line, in whole blocks. */
	size_t room = (2 * n + 1) * 21 + TAR_BLOCK;
	char *map = malloc(room);
	if (!map) {
		free(r);
		return -ENOMEM;
	}
	size_t len = 0;
	map_num(map, &len, (int64_t)n);
	for (size_t i = 0; i < n; i++) {
		map_num(map, &len, r[i].off);
		map_num(map, &len, r[i].len);
	}
	size_t pad = (size_t)agent_tar_padding(len);
	memset(map + len, 0, pad);
	*l = (struct file_layout){.regions = r,
				  .n = n,
				  .map = map,
				  .map_len = len + pad,
				  .stored = (int64_t)(len + pad) + data};
	return 0;
}

static void layout_free(struct file_layout *l)
{
	free(l->regions);
	free(l->map);
}

/* Appends len bytes of fd from off; a file that ends early is an error. */
static int copy_range(struct tar_out *o, int fd, const char *disk, int64_t off, int64_t len)
{
	while (len > 0) {
		if (o->len == TAR_IO_BUF) {
			int rc = out_flush(o);
			if (rc)
				return rc;
		}
		size_t room = TAR_IO_BUF - o->len, want = (uint64_t)len < room ? (size_t)len : room;
		ssize_t n = pread(fd, o->buf + o->len, want, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return agent_tar_fail(o->err, o->errlen, errno, "cannot read %s: %s", disk,
					      strerror(errno));
		if (n == 0)
			return agent_tar_fail(o->err, o->errlen, EIO,
					      "%s shrank while being archived", disk);
		o->len += (size_t)n;
		off += n;
		len -= n;
	}
	return 0;
}

/* The member's data: the whole file, or the sparse map and the data regions. */
static int write_file_data(struct tar_out *o, int fd, const char *disk, const struct file_layout *l,
			   int64_t size)
{
	int rc = 0;
	if (!l->regions)
		rc = copy_range(o, fd, disk, 0, size);
	else
		rc = out_write(o, l->map, l->map_len);
	for (size_t i = 0; l->regions && i < l->n && !rc; i++)
		rc = copy_range(o, fd, disk, l->regions[i].off, l->regions[i].len);
	return rc ? rc : out_write(o, NULL, agent_tar_padding((uint64_t)l->stored));
}

/* Archives the regular file disk (lstat'ed as st) as name. */
static int add_file(struct tar_out *o, const char *disk, const char *name, const struct stat *st)
{
	/* O_NONBLOCK: a file swapped for a FIFO since lstat must not hang the archive. */
	int fd = open(disk, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return agent_tar_fail(o->err, o->errlen, errno, "cannot open %s: %s", disk,
				      strerror(errno));
	struct stat now;
	struct file_layout l = {0};
	int rc = 0;
	if (fstat(fd, &now) || !S_ISREG(now.st_mode) || now.st_ino != st->st_ino)
		rc = agent_tar_fail(o->err, o->errlen, EAGAIN,
				    "%s was replaced while being archived", disk);
	else if (map_layout(fd, st->st_size, &l))
		rc = agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
	if (!rc)
		rc = write_header(o, name, st, '0', NULL, &l);
	if (!rc)
		rc = write_file_data(o, fd, disk, &l, st->st_size);
	layout_free(&l);
	close(fd);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_path(struct tar_out *o, const char *disk, const char *name);

/* Archives a directory's entries, sorted, below name. */
static int add_dir_contents(struct tar_out *o, const char *disk, const char *name)
{
	DIR *d = opendir(disk);
	if (!d)
		return agent_tar_fail(o->err, o->errlen, errno, "cannot open %s: %s", disk,
				      strerror(errno));
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while (!rc && (errno = 0, de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			char **p = realloc(names, cap * sizeof(*p));
			if (!p) {
				rc = agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
				break;
			}
			names = p;
		}
		if (!(names[n] = strdup(de->d_name)))
			rc = agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
		else
			n++;
	}
	if (!rc && errno)
		rc = agent_tar_fail(o->err, o->errlen, errno, "cannot read %s: %s", disk,
				    strerror(errno));
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), name_cmp);
	const char *sep = strcmp(disk, "/") ? "/" : "";
	for (size_t i = 0; i < n; i++) {
		char *cdisk, *cname;
		if (!rc && asprintf(&cdisk, "%s%s%s", disk, sep, names[i]) >= 0) {
			if (asprintf(&cname, "%s/%s", name, names[i]) >= 0) {
				rc = add_path(o, cdisk, cname);
				free(cname);
			} else {
				rc = agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
			}
			free(cdisk);
		} else if (!rc) {
			rc = agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

/* Archives disk as name; a symlink as a symlink, wherever it is. */
static int add_path(struct tar_out *o, const char *disk, const char *name)
{
	struct stat st;
	if (lstat(disk, &st) < 0)
		return agent_tar_fail(o->err, o->errlen, errno, "cannot stat %s: %s", disk,
				      strerror(errno));
	if (strlen(name) >= PATH_MAX)
		return agent_tar_fail(o->err, o->errlen, ENAMETOOLONG, "path too long: %s", disk);
	if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
		for (size_t i = 0; i < o->nlinks; i++)
			if (o->links[i].dev == st.st_dev && o->links[i].ino == st.st_ino)
				return write_header(o, name, &st, '1', o->links[i].name, NULL);
		if (o->nlinks == o->caplinks) {
			size_t cap = o->caplinks ? o->caplinks * 2 : 16;
			struct seen_link *l = realloc(o->links, cap * sizeof(*l));
			if (!l)
				return agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
			o->links = l;
			o->caplinks = cap;
		}
		struct seen_link *l = &o->links[o->nlinks];
		if (!(l->name = strdup(name)))
			return agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		o->nlinks++;
	}
	int rc;
	if (S_ISREG(st.st_mode))
		return add_file(o, disk, name, &st);
	if (S_ISDIR(st.st_mode)) {
		char *dname;
		if (asprintf(&dname, "%s/", name) < 0)
			return agent_tar_fail(o->err, o->errlen, ENOMEM, "out of memory");
		rc = write_header(o, dname, &st, '5', NULL, NULL);
		free(dname);
		return rc ? rc : add_dir_contents(o, disk, name);
	}
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(disk, target, sizeof(target) - 1);
		if (n < 0)
			return agent_tar_fail(o->err, o->errlen, errno, "cannot read link %s: %s",
					      disk, strerror(errno));
		target[n] = 0;
		return write_header(o, name, &st, '2', target, NULL);
	}
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode))
		return write_header(o, name, &st,
				    S_ISCHR(st.st_mode)	  ? '3'
				    : S_ISBLK(st.st_mode) ? '4'
							  : '6',
				    NULL, NULL);
	return 0; /* sockets have no place in an archive */
}

/* The name a non-glob path is stored under: its last component. */
static char *top_name(const char *path)
{
	char *p = strdup(path);
	if (!p)
		return NULL;
	size_t len = strlen(p);
	while (len > 1 && p[len - 1] == '/')
		p[--len] = 0;
	char *base = strrchr(p, '/');
	base = base && base[1] ? base + 1 : p;
	if (!strcmp(base, "/") || !strcmp(base, ".") || !strcmp(base, ".."))
		base = ".";
	char *name = strdup(base);
	free(p);
	return name;
}

static int add_glob(struct tar_out *o, const char *pattern)
{
	size_t prefix = 0;
	for (const char *p = pattern; *p && !strchr("*?[", *p); p++)
		if (*p == '/')
			prefix = (size_t)(p - pattern) + 1;
	glob_t g;
	int grc = glob(pattern, 0, NULL, &g);
	if (grc == GLOB_NOMATCH)
		return 0;
	if (grc)
		return agent_tar_fail(o->err, o->errlen, grc == GLOB_NOSPACE ? ENOMEM : EIO,
				      "cannot expand %s", pattern);
	int rc = 0;
	for (size_t i = 0; i < g.gl_pathc && !rc; i++) {
		const char *m = g.gl_pathv[i];
		const char *name = strncmp(m, pattern, prefix) ? m : m + prefix;
		while (*name == '/')
			name++;
		rc = add_path(o, m, *name ? name : ".");
	}
	globfree(&g);
	return rc;
}

int agent_tar_create(int fd, const char *path, char *err, size_t errlen)
{
	if (!path || !path[0])
		return agent_tar_fail(err, errlen, EINVAL, "no path to archive");
	struct tar_out o = {.fd = fd, .buf = malloc(TAR_IO_BUF), .err = err, .errlen = errlen};
	if (!o.buf)
		return agent_tar_fail(err, errlen, ENOMEM, "out of memory");
	int rc;
	if (strpbrk(path, "*?[")) {
		rc = add_glob(&o, path);
	} else {
		char *name = top_name(path);
		rc = name ? add_path(&o, path, name)
			  : agent_tar_fail(err, errlen, ENOMEM, "out of memory");
		free(name);
	}
	if (!rc)
		rc = out_write(&o, NULL, 2 * TAR_BLOCK);
	if (!rc)
		rc = out_flush(&o);
	for (size_t i = 0; i < o.nlinks; i++)
		free(o.links[i].name);
	free(o.links);
	free(o.buf);
	return rc;
}
