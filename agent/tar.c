/*
 * The tar format: header fields, numbers, checksums, pax records, and
 * reading a stream into members. See tar.h for what is supported.
 */
#include "agent/tar.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAX_MAX	      (1u << 20) /* the largest extended header we accept */
#define LONG_MAX_NAME PATH_MAX

int agent_tar_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -code;
}

int agent_tar_write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- numbers and checksums ---------------------------------------------- */

/* Reads an octal or base-256 field. Returns 0, or -1 when malformed. */
int agent_tar_get_num(const uint8_t *h, size_t off, size_t n, int64_t *out)
{
	const uint8_t *f = h + off;
	if (f[0] & 0x80) { /* base-256, two's complement, big-endian */
		bool neg = f[0] & 0x40;
		uint64_t v = neg ? UINT64_MAX : 0;
		v = (v << 6) | (f[0] & 0x3f);
		for (size_t i = 1; i < n; i++) {
			if ((v >> 55) != (neg ? 0x1ffu : 0)) /* the shift would lose bits */
				return -1;
			v = (v << 8) | f[i];
		}
		*out = (int64_t)v;
		return 0;
	}
	size_t i = 0;
	while (i < n && f[i] == ' ')
		i++;
	uint64_t v = 0;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v * 8 + (uint64_t)(f[i] - '0');
	}
	if (i < n && f[i] != ' ' && f[i] != 0)
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* Writes v as n - 1 octal digits and a NUL; v must fit. */
static void put_octal(uint8_t *f, size_t n, uint64_t v)
{
	f[n - 1] = 0;
	for (size_t i = n - 1; i-- > 0; v >>= 3)
		f[i] = (uint8_t)('0' + (v & 7));
}

/* Writes v in n bytes: octal with a NUL when it fits, else base-256. */
void agent_tar_put_num(uint8_t *h, size_t off, size_t n, int64_t v)
{
	uint8_t *f = h + off;
	if (v >= 0 && (uint64_t)v < (1ull << (3 * (n - 1)))) {
		put_octal(f, n, (uint64_t)v);
		return;
	}
	uint64_t u = (uint64_t)v, sign = v < 0 ? 0xffull << 56 : 0;
	for (size_t i = n; i-- > 1;) {
		f[i] = (uint8_t)u;
		u = (u >> 8) | sign; /* sign-extends past 64 bits */
	}
	f[0] = v < 0 ? 0xff : 0x80;
}

bool agent_tar_fits_octal(int64_t v, size_t n)
{
	return v >= 0 && (uint64_t)v < (1ull << (3 * (n - 1)));
}

static void checksums(const uint8_t *h, int64_t *usum, int64_t *ssum)
{
	*usum = *ssum = 0;
	for (int i = 0; i < TAR_BLOCK; i++) {
		bool in_field = i >= 148 && i < 156;
		*usum += in_field ? ' ' : h[i];
		*ssum += in_field ? ' ' : (signed char)h[i];
	}
}

void agent_tar_put_str(uint8_t *h, size_t off, size_t n, const char *s)
{
	size_t len = strlen(s);
	memcpy(h + off, s, len < n ? len : n); /* a field may be full, without NUL */
}

/* A field's string, which may fill the field without a NUL. */
static char *get_str(const uint8_t *h, size_t off, size_t n)
{
	return strndup((const char *)h + off, strnlen((const char *)h + off, n));
}

/* ---- paths ---------------------------------------------------------------- */

/*
 * Normalizes an archive path in place: drops "." and empty components.
 * Returns 0, or -1 for an absolute path or a ".." component.
 */
int agent_tar_clean_path(char *path)
{
	if (path[0] == '/')
		return -1;
	char *out = path;
	for (char *p = path; *p;) {
		char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return -1;
		if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (out != path)
				*out++ = '/';
			memmove(out, p, n);
			out += n;
		}
		p = *end ? end + 1 : end;
	}
	*out = 0;
	return 0;
}

/* ---- reading ---------------------------------------------------------------- */

/* Returns the bytes buffered (reading more when none), 0 at EOF, or -errno. */
ssize_t agent_tar_in_fill(struct agent_tar_in *in)
{
	if (in->off < in->len)
		return (ssize_t)(in->len - in->off);
	in->off = in->len = 0;
	for (;;) {
		ssize_t n = read(in->fd, in->buf, TAR_IO_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		in->len = (size_t)n;
		return n;
	}
}

/* Reads n bytes (dst NULL: skips them). Returns 0, 1 at EOF before any, or -errno. */
int agent_tar_in_read(struct agent_tar_in *in, void *dst, uint64_t n)
{
	uint8_t *d = dst;
	bool started = false;
	while (n > 0) {
		ssize_t avail = agent_tar_in_fill(in);
		if (avail < 0)
			return (int)avail;
		if (avail == 0)
			return started ? -EIO : 1;
		size_t k = (uint64_t)avail < n ? (size_t)avail : (size_t)n;
		if (d) {
			memcpy(d, in->buf + in->off, k);
			d += k;
		}
		in->off += k;
		n -= k;
		started = true;
	}
	return 0;
}

void agent_tar_entry_free(struct agent_tar_entry *e)
{
	free(e->path);
	free(e->link);
	memset(e, 0, sizeof(*e));
}

/* Overrides from pax and GNU headers for the next member. */
struct tar_ext {
	char *path, *link;
	bool has_size, has_mtime, has_uid, has_gid;
	int64_t size, uid, gid;
	struct timespec mtime;
	/* GNU sparse files: format major.minor (-1: absent), real name and size */
	int64_t sparse_major, sparse_minor, realsize;
	char *sparse_name;
	bool has_realsize;
};

static void ext_free(struct tar_ext *x)
{
	free(x->path);
	free(x->link);
	free(x->sparse_name);
	memset(x, 0, sizeof(*x));
	x->sparse_major = x->sparse_minor = -1;
}

static int parse_pax_time(const char *v, struct timespec *ts)
{
	char *end;
	errno = 0;
	long long sec = strtoll(v, &end, 10);
	if (errno || end == v)
		return -1;
	long nsec = 0;
	if (*end == '.') {
		long scale = 100000000;
		for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
			nsec += (*end - '0') * scale;
		if (v[0] == '-' && nsec) { /* -1.5 is 2 s before, plus 0.5 */
			sec--;
			nsec = 1000000000 - nsec;
		}
	}
	if (*end)
		return -1;
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = nsec;
	return 0;
}

static int parse_pax_int(const char *v, int64_t *out)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < 0)
		return -1;
	*out = n;
	return 0;
}

/* Applies "len key=value\n" records; returns 0 or -1 when malformed. */
static int parse_pax(char *data, size_t n, struct tar_ext *x)
{
	size_t pos = 0;
	while (pos < n) {
		char *rec = data + pos, *end;
		unsigned long len = strtoul(rec, &end, 10);
		if (end == rec || *end != ' ' || len < 5 || len > n - pos || rec[len - 1] != '\n')
			return -1;
		rec[len - 1] = 0;
		char *key = end + 1, *eq = strchr(key, '=');
		if (!eq)
			return -1;
		*eq = 0;
		const char *val = eq + 1;
		int rc = 0;
		if (!strcmp(key, "path")) {
			free(x->path);
			x->path = strdup(val);
		} else if (!strcmp(key, "linkpath")) {
			free(x->link);
			x->link = strdup(val);
		} else if (!strcmp(key, "size")) {
			rc = parse_pax_int(val, &x->size);
			x->has_size = true;
		} else if (!strcmp(key, "mtime")) {
			rc = parse_pax_time(val, &x->mtime);
			x->has_mtime = true;
		} else if (!strcmp(key, "uid")) {
			rc = parse_pax_int(val, &x->uid);
			x->has_uid = true;
		} else if (!strcmp(key, "gid")) {
			rc = parse_pax_int(val, &x->gid);
			x->has_gid = true;
		} else if (!strcmp(key, "GNU.sparse.major")) {
			rc = parse_pax_int(val, &x->sparse_major);
		} else if (!strcmp(key, "GNU.sparse.minor")) {
			rc = parse_pax_int(val, &x->sparse_minor);
		} else if (!strcmp(key, "GNU.sparse.name")) {
			free(x->sparse_name);
			x->sparse_name = strdup(val);
		} else if (!strcmp(key, "GNU.sparse.realsize") || !strcmp(key, "GNU.sparse.size")) {
			rc = parse_pax_int(val, &x->realsize);
			x->has_realsize = true;
		}
		if (rc)
			return -1;
		pos += len;
	}
	return 0;
}

/* Reads an extension's data (a pax header or a GNU long name) into a string. */
static int read_ext_data(struct agent_tar_in *in, int64_t size, size_t max, char **out, char *err,
			 size_t errlen)
{
	if (size < 0 || (uint64_t)size > max)
		return agent_tar_fail(err, errlen, EINVAL,
				      "extended header of %lld bytes is too large",
				      (long long)size);
	char *data = malloc((size_t)size + 1);
	if (!data)
		return agent_tar_fail(err, errlen, ENOMEM,
				      "out of memory reading an extended header");
	int rc = agent_tar_in_read(in, data, (uint64_t)size);
	if (!rc)
		rc = agent_tar_in_read(in, NULL, agent_tar_padding((uint64_t)size));
	if (rc) {
		free(data);
		return agent_tar_fail(err, errlen, rc < 0 ? -rc : EIO, "truncated tar stream");
	}
	data[size] = 0;
	*out = data;
	return 0;
}

/*
 * Reads the next member's headers. Returns 1 with an entry, 0 at the end
 * of the archive, or -errno.
 */
int agent_tar_read_entry(struct agent_tar_in *in, struct agent_tar_entry *e, char *err,
			 size_t errlen)
{
	struct tar_ext x = {.sparse_major = -1, .sparse_minor = -1};
	uint8_t h[TAR_BLOCK];
	int rc;
	memset(e, 0, sizeof(*e));
	for (;;) {
		rc = agent_tar_in_read(in, h, TAR_BLOCK);
		if (rc > 0)
			rc = agent_tar_fail(err, errlen, EIO,
					    "truncated tar stream (no end-of-archive marker)");
		else if (rc == -EIO)
			rc = agent_tar_fail(err, errlen, EIO,
					    "truncated tar stream (a partial header)");
		else if (rc < 0)
			rc = agent_tar_fail(err, errlen, -rc, "cannot read the tar stream: %s",
					    strerror(-rc));
		if (rc)
			break;
		static const uint8_t zero[TAR_BLOCK];
		if (!memcmp(h, zero, TAR_BLOCK)) {
			rc = 0;
			break;
		}
		int64_t sum, usum, ssum, size;
		checksums(h, &usum, &ssum);
		if (agent_tar_get_num(h, F_CHKSUM, &sum) || (sum != usum && sum != ssum)) {
			rc = agent_tar_fail(err, errlen, EINVAL,
					    "bad tar header checksum (not a tar stream?)");
			break;
		}
		if (agent_tar_get_num(h, F_SIZE, &size) || size < 0) {
			rc = agent_tar_fail(err, errlen, EINVAL, "bad size in a tar header");
			break;
		}
		char type = (char)h[F_TYPE];
		if (type == 'x' || type == 'g') {
			char *data;
			rc = read_ext_data(in, size, PAX_MAX, &data, err, errlen);
			if (rc)
				break;
			if (type == 'x' && parse_pax(data, (size_t)size, &x))
				rc = agent_tar_fail(err, errlen, EINVAL,
						    "malformed pax extended header");
			free(data);
			if (rc)
				break;
			continue;
		}
		if (type == 'L' || type == 'K') {
			char *data;
			rc = read_ext_data(in, size, LONG_MAX_NAME, &data, err, errlen);
			if (rc)
				break;
			char **slot = type == 'L' ? &x.path : &x.link;
			free(*slot);
			*slot = data;
			continue;
		}

		e->type = type == 0 || type == '7' ? '0' : type;
		int64_t v;
		agent_tar_get_num(h, F_MODE, &v);
		e->mode = (mode_t)(v & 07777);
		agent_tar_get_num(h, F_UID, &e->uid);
		agent_tar_get_num(h, F_GID, &e->gid);
		agent_tar_get_num(h, F_MTIME, &v);
		e->mtime.tv_sec = (time_t)v;
		agent_tar_get_num(h, F_DEVMAJOR, &v);
		e->devmajor = (unsigned)v;
		agent_tar_get_num(h, F_DEVMINOR, &v);
		e->devminor = (unsigned)v;
		e->size = x.has_size ? x.size : size;
		if (x.has_mtime)
			e->mtime = x.mtime;
		if (x.has_uid)
			e->uid = x.uid;
		if (x.has_gid)
			e->gid = x.gid;
		if (x.sparse_major >= 0 || x.sparse_minor >= 0) {
			/*
			 * Only format 1.0 (the map in the data): what GNU tar and libarchive write.
			 */
			if (x.sparse_major != 1 || x.sparse_minor != 0 || !x.has_realsize ||
			    e->type != '0') {
				rc = agent_tar_fail(
				    err, errlen, ENOTSUP,
				    "unsupported GNU sparse member (format %lld.%lld%s)",
				    (long long)x.sparse_major, (long long)x.sparse_minor,
				    x.has_realsize ? "" : " without a real size");
				break;
			}
			e->sparse = true;
			e->realsize = x.realsize;
			if (x.sparse_name) {
				free(x.path);
				x.path = x.sparse_name;
				x.sparse_name = NULL;
			}
		}
		if (x.path) {
			e->path = x.path;
			x.path = NULL;
		} else {
			char *name = get_str(h, F_NAME), *prefix = NULL;
			if (!memcmp(h + F_MAGIC, "ustar\0", 6))
				prefix = get_str(h, F_PREFIX);
			if (name && prefix && prefix[0]) {
				if (asprintf(&e->path, "%s/%s", prefix, name) < 0)
					e->path = NULL;
			} else {
				e->path = name;
				name = NULL;
			}
			free(name);
			free(prefix);
		}
		if (x.link) {
			e->link = x.link;
			x.link = NULL;
		} else {
			e->link = get_str(h, F_LINK);
		}
		rc = 1;
		if (!e->path || !e->link) {
			agent_tar_entry_free(e);
			rc = agent_tar_fail(err, errlen, ENOMEM,
					    "out of memory reading a tar header");
		}
		/* Old archives mark directories by a trailing slash only. */
		else if (e->type == '0' && e->path[0] && e->path[strlen(e->path) - 1] == '/')
			e->type = '5';
		break;
	}
	ext_free(&x);
	return rc;
}

/* ---- writing headers ------------------------------------------------------- */

/* Appends "len key=value\n" to a pax header being built. */
int agent_tar_pax_add(char **recs, size_t *n, const char *key, const char *val)
{
	size_t base = strlen(key) + strlen(val) + 3, len = base + 1;
	for (;;) { /* the length counts its own digits */
		size_t digits = (size_t)snprintf(NULL, 0, "%zu", len);
		if (base + digits == len)
			break;
		len = base + digits;
	}
	char *p = realloc(*recs, *n + len + 1);
	if (!p)
		return -1;
	snprintf(p + *n, len + 1, "%zu %s=%s\n", len, key, val);
	*recs = p;
	*n += len;
	return 0;
}

/* Splits name into ustar prefix and name fields; false when it cannot fit. */
bool agent_tar_ustar_split(const char *name, size_t *prefix_len)
{
	size_t len = strlen(name);
	*prefix_len = 0;
	if (len <= 100)
		return true;
	for (size_t i = len > 101 ? len - 101 : 0; i < len && i <= 155; i++) {
		if (name[i] == '/' && i > 0 && len - i - 1 <= 100 && len - i - 1 > 0) {
			*prefix_len = i;
			return true;
		}
	}
	return false;
}

void agent_tar_header_finish(uint8_t *h)
{
	int64_t usum, ssum;
	memset(h + 148, ' ', 8);
	checksums(h, &usum, &ssum);
	put_octal(h + 148, 7, (uint64_t)usum); /* six digits, NUL, space */
	h[155] = ' ';
}

void agent_tar_header_init(uint8_t *h, const char *name, size_t prefix_len, char type, int64_t mode,
			   int64_t uid, int64_t gid, int64_t size, int64_t mtime)
{
	memset(h, 0, TAR_BLOCK);
	if (prefix_len) {
		memcpy(h + 345, name, prefix_len);
		agent_tar_put_str(h, F_NAME, name + prefix_len + 1);
	} else {
		agent_tar_put_str(h, F_NAME, name);
	}
	agent_tar_put_num(h, F_MODE, mode);
	agent_tar_put_num(h, F_UID, uid);
	agent_tar_put_num(h, F_GID, gid);
	agent_tar_put_num(h, F_SIZE, size);
	agent_tar_put_num(h, F_MTIME, mtime);
	h[F_TYPE] = (uint8_t)type;
	memcpy(h + F_MAGIC,
	       "ustar\0"
	       "00",
	       8);
}
