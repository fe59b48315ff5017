/*
 * Private to the agent's tar code: tar.c (the format, and reading a
 * stream into members), tar_extract.c (members onto disk) and
 * tar_create.c (disk into a stream). The entry points are
 * agent_tar_extract() and agent_tar_create() in agent.h.
 *
 * Format (POSIX.1-2001 pax, the ustar layout): 512-byte headers, data
 * padded to 512 bytes, two zero blocks at the end. We read ustar, pax
 * extended headers ('x'; global 'g' headers are skipped), GNU long names
 * ('L', 'K'), base-256 numbers and GNU sparse files (format 1.0: pax
 * records GNU.sparse.*, the map of data regions at the start of the
 * data); we write ustar with a pax header when a path, link or number
 * does not fit, and files with holes as GNU sparse 1.0.
 *
 * All of it works on blocking fds, in a child of the agent. Functions
 * return 0 or -errno with a message in err.
 */
#ifndef VMCI_AGENT_TAR_H
#define VMCI_AGENT_TAR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "agent/agent.h"

#define TAR_BLOCK  512
#define TAR_IO_BUF (64 * 1024)

/* ustar header fields: offset, size. */
#define F_NAME	   0, 100
#define F_MODE	   100, 8
#define F_UID	   108, 8
#define F_GID	   116, 8
#define F_SIZE	   124, 12
#define F_MTIME	   136, 12
#define F_CHKSUM   148, 8
#define F_TYPE	   156
#define F_LINK	   157, 100
#define F_MAGIC	   257
#define F_DEVMAJOR 329, 8
#define F_DEVMINOR 337, 8
#define F_PREFIX   345, 155

/* Fills err and returns -code. */
int agent_tar_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Writes all of data; returns 0 or -errno. */
int agent_tar_write_all(int fd, const void *data, size_t len);

/* Zeros after size bytes of data, to the next block. */
static inline uint64_t agent_tar_padding(uint64_t size)
{
	return (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
}

/* ---- header fields ---- */

/* Reads an octal or base-256 field. Returns 0, or -1 when malformed. */
int agent_tar_get_num(const uint8_t *h, size_t off, size_t n, int64_t *out);
/* Writes v in n bytes: octal with a NUL when it fits, else base-256. */
void agent_tar_put_num(uint8_t *h, size_t off, size_t n, int64_t v);
bool agent_tar_fits_octal(int64_t v, size_t n);
/* Copies s into a field; a string as long as the field fills it without NUL. */
void agent_tar_put_str(uint8_t *h, size_t off, size_t n, const char *s);
/* Starts a ustar header; prefix_len from agent_tar_ustar_split (0: name only). */
void agent_tar_header_init(uint8_t *h, const char *name, size_t prefix_len, char type, int64_t mode,
			   int64_t uid, int64_t gid, int64_t size, int64_t mtime);
/* Fills in the checksum: the last step of a header. */
void agent_tar_header_finish(uint8_t *h);
/* Where name splits into ustar prefix and name fields; false when it cannot fit. */
bool agent_tar_ustar_split(const char *name, size_t *prefix_len);
/* Appends a "len key=value\n" record to a pax header being built; -1 when out of memory. */
int agent_tar_pax_add(char **recs, size_t *n, const char *key, const char *val);

/*
 * Normalizes an archive path in place, dropping "." and empty components.
 * Returns 0, or -1 for an absolute path or a ".." component.
 */
int agent_tar_clean_path(char *path);

/* ---- reading a stream ---- */

/* A buffered reader: buf[off..len) is read and not yet used. */
struct agent_tar_in {
	int fd;
	uint8_t *buf;
	size_t off, len;
};

/* Returns the bytes buffered (reading more when none), 0 at EOF, or -errno. */
ssize_t agent_tar_in_fill(struct agent_tar_in *in);
/* Reads n bytes (dst NULL: skips them). Returns 0, 1 at EOF before any, or -errno. */
int agent_tar_in_read(struct agent_tar_in *in, void *dst, uint64_t n);

/* One archive member, after any pax or GNU headers that describe it. */
struct agent_tar_entry {
	char *path, *link;
	char type;
	mode_t mode;
	int64_t uid, gid, size; /* size: of the member's data in the stream */
	struct timespec mtime;
	unsigned devmajor, devminor;
	/*
	 * A GNU sparse file (format 1.0): its data starts with the map of
	 * its data regions, and the file is realsize bytes once extracted.
	 */
	bool sparse;
	int64_t realsize;
};

/*
 * Reads the next member's headers (pax and GNU extensions applied); its
 * data follows in the stream. Returns 1 with an entry to free with
 * agent_tar_entry_free, 0 at the end of the archive, or -errno.
 */
int agent_tar_read_entry(struct agent_tar_in *in, struct agent_tar_entry *e, char *err,
			 size_t errlen);
void agent_tar_entry_free(struct agent_tar_entry *e);

#endif
