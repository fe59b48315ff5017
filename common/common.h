/*
 * common: small generic helpers shared by every module.
 *
 * Errors are values: functions return 0 (or a non-negative count) on
 * success and a negative errno-style code on failure, and fill a
 * struct vmci_err with a message a user can act on. Nothing here exits.
 */
#ifndef VMCI_COMMON_H
#define VMCI_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- errors (common/err.c) ---------------------------------------- */

struct vmci_err {
	int code;	/* positive errno value, 0 when no error was set */
	char msg[1024]; /* "what failed, on what, what to do" */
};

/*
 * Sets err (which may be NULL) to code and the formatted message, and
 * returns -code so callers can write `return vmci_err_set(err, ...)`.
 * A code of 0 is stored as EIO.
 */
int vmci_err_set(struct vmci_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like vmci_err_set, appending ": strerror(code)". */
int vmci_err_errno(struct vmci_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with the formatted context. */
void vmci_err_wrap(struct vmci_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- logging (common/log.c) --------------------------------------- */

enum vmci_log_level { VMCI_LOG_ERROR, VMCI_LOG_WARN, VMCI_LOG_INFO, VMCI_LOG_DEBUG };

/* The level is read once from $VMCI_LOG (error|warn|info|debug, default warn). */
void vmci_log_set_level(enum vmci_log_level level);
bool vmci_log_enabled(enum vmci_log_level level);
void vmci_log(enum vmci_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) vmci_log(VMCI_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  vmci_log(VMCI_LOG_WARN, __VA_ARGS__)
#define log_info(...)  vmci_log(VMCI_LOG_INFO, __VA_ARGS__)
#define log_debug(...) vmci_log(VMCI_LOG_DEBUG, __VA_ARGS__)

/*
 * True when colour may be written to fd: it is a terminal, $NO_COLOR is
 * unset or empty, and $TERM is not "dumb".
 */
bool vmci_use_color(int fd);

/* ---- growable byte buffer (common/buf.c) --------------------------- */

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

/* Grows capacity to at least len + extra. Returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Returns the contents as a NUL-terminated string owned by b. */
const char *buf_cstr(struct buf *b);
void buf_free(struct buf *b);

/* ---- files and paths (common/fs.c) -------------------------------- */

/* mkdir -p with the given mode for created directories. */
int fs_mkdir_p(const char *path, mode_t mode, struct vmci_err *err);
bool fs_exists(const char *path);
/* Reads a whole file (at most max bytes) into out (appended). */
int fs_read_file(const char *path, size_t max, struct buf *out, struct vmci_err *err);
/*
 * Writes data to path atomically: a temporary file beside it, fsync,
 * rename, fsync of the directory. Readers see the old file or the new
 * one, never a part.
 */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct vmci_err *err);
/*
 * fs_write_atomic without the two syncs: readers still see the old file or
 * the new one, but a crash may lose the write. Only for records that mean
 * nothing once the machine went down (what a live process holds).
 */
int fs_write_replace(const char *path, const void *data, size_t len, mode_t mode,
		     struct vmci_err *err);
/* rename() then fsync of the target's directory. */
int fs_rename_durable(const char *from, const char *to, struct vmci_err *err);
/* rm -rf; a missing path is not an error. */
int fs_rm_rf(const char *path, struct vmci_err *err);
/*
 * Copies a regular file byte for byte (mode 0644 unless mode != 0), in the
 * kernel where it can. durable: on stable storage before this returns (a
 * file that outlives the process); false for a scratch copy that a crash
 * may as well lose.
 */
int fs_copy_file(const char *from, const char *to, mode_t mode, bool durable, struct vmci_err *err);
/* snprintf into a PATH_MAX buffer; returns -ENAMETOOLONG if it does not fit. */
int fs_path(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The directory holding the running executable (from /proc/self/exe). */
int fs_self_dir(char *out, size_t size);
/* $VMCI_HOME, or ~/.cache/vmci. Never fails; falls back to /tmp/vmci-$UID. */
const char *vmci_home(void);

/* ---- names that become file names (common/name.c) ----------------- */

/* The longest such name: an image's, which the store keeps as a file name. */
#define VMCI_NAME_MAX 63
/* What vmci_name_ok accepts, for messages that say how to fix a name. */
#define VMCI_NAME_RULE "1 to 63 letters, digits, '.', '_' and '-', not starting with '.'"

/*
 * True when name follows VMCI_NAME_RULE, so it is safe as one file name:
 * no '/', no "..", no hidden file. The image store refuses every other
 * image name, and pipeline validation checks `image:` with the same rule.
 */
bool vmci_name_ok(const char *name);

/*
 * True when name is a Debian package name (policy 5.6.1): two or more
 * lower case letters, digits, '+', '-' and '.', starting with a letter or
 * digit (at most 128 here). Safe to pass to apt-get unquoted.
 */
bool deb_package_name_ok(const char *name);

/*
 * True when word is one of the words of list: words are separated by
 * spaces or tabs, and the list ends at its first newline (a field of a
 * deb822 or key: value file) or at its end.
 */
bool word_listed(const char *list, const char *word);

/* ---- finding programs (common/path.c) ------------------------------- */

/*
 * Finds the program name as execvp would, and writes its path to out:
 * name itself when it holds a '/', else the first regular, executable
 * file of that name in the directories of $PATH (an empty entry is the
 * current directory; an unset or empty $PATH is
 * /usr/local/bin:/usr/bin:/bin). Returns 0, -ENOENT when there is none,
 * or -ENAMETOOLONG when a candidate's path does not fit in size and no
 * other one is found.
 */
int path_search(const char *name, char *out, size_t size);

/* ---- writing whole buffers (common/io.c) ---------------------------- */

/*
 * Writes data[0..len) to fd whole: retries short writes and EINTR, and
 * waits while a non-blocking fd is full. A socket is written with
 * MSG_NOSIGNAL, so a peer that went away is -EPIPE, never SIGPIPE (other
 * fds raise SIGPIPE as write does). Returns 0 or a negative errno code.
 */
int io_write_all(int fd, const void *data, size_t len);

/* ---- hashing (common/hash.c) -------------------------------------- */

#define SHA256_HEX_LEN 64

struct sha256_ctx;
struct sha256_ctx *sha256_new(void);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
/* Writes 64 hex digits and a NUL into hex, and frees ctx. */
void sha256_finish(struct sha256_ctx *ctx, char hex[SHA256_HEX_LEN + 1]);
int sha256_file(const char *path, char hex[SHA256_HEX_LEN + 1], struct vmci_err *err);
/* Adds a whole file to a running hash. */
int sha256_update_file(struct sha256_ctx *ctx, const char *path, struct vmci_err *err);

/* ---- helper programs (common/run.c) ------------------------------- */

/*
 * Runs argv[0] (looked up in PATH) with stdin from /dev/null, and waits.
 * Its stdout is appended to out when out is not NULL, otherwise
 * discarded; its stderr is kept, and its last lines go into err on
 * failure. Returns 0 when it exited 0, or a negative code with err
 * saying which command failed and why (not found: name the package).
 */
int run_command(char *const argv[], struct buf *out, struct vmci_err *err);

/* ---- Debian packages (common/packages.c, packages.txt) --------------- */

/* When a package is needed, as packages.txt says. */
enum pkg_need {
	PKG_BUILD,    /* to build vmci */
	PKG_TEST,     /* to test, lint or fuzz it */
	PKG_RUN,      /* to run it: required */
	PKG_OPTIONAL, /* to run some guests */
};

struct pkg_info {
	char name[64]; /* "qemu-utils" */
	enum pkg_need need;
	char programs[128]; /* what vmci runs from it, comma-separated: "qemu-img"; "" */
	char purpose[128];  /* "disk images (qemu-img)" */
};

/*
 * Walks the table of packages.txt (compiled in), in its order: *pos
 * starts at 0; each call fills out with the next package and returns
 * true, then false after the last.
 */
bool pkg_next(size_t *pos, struct pkg_info *out);

/*
 * The Debian package that installs program prog (a name, or a path whose
 * last component is taken): its name written to out, which is returned;
 * NULL when the table does not know prog.
 */
const char *pkg_providing(const char *prog, char *out, size_t size);

/*
 * Sets err to ENOENT with "PROG not found (install the Debian package
 * PKG, or run: make deps)", or "PROG not found in $PATH" when no package
 * is known, and returns -ENOENT.
 */
int pkg_err_missing(struct vmci_err *err, const char *prog);

/* ---- did you mean (common/suggest.c) ------------------------------ */

/*
 * The candidate nearest to word by edit distance (with transpositions), or
 * NULL when none is close: within 1 edit for words of up to 3 characters,
 * 2 up to 6, 3 beyond; fewer edits than the candidate has characters;
 * words over 64 characters are never close. The first of equally near
 * candidates wins. Compares at most n candidates, each once.
 */
const char *suggest_nearest(const char *word, const char *const *candidates, size_t n);

/* ---- typed reading of YAML files (common/ydoc.c) ------------------- */

/*
 * A YAML file of a known shape (an image recipe, the service's config),
 * loaded whole with libyaml and then read node by node, each read checking
 * the node's type and value. A refusal is "FILE:LINE:COL: error: ..." at
 * the node it is about (the form editors jump to), says what was expected
 * and what was found, and ends the read: the first mistake is the one
 * reported. Unknown keys of a mapping name the nearest known one and list
 * them all.
 *
 * Pipeline files have a reader of their own (pipelines/yaml_tree.c,
 * node.c): they need merge keys, a bound on what aliases multiply, scalar
 * positions for ${{ }} expressions and every error of a file at once.
 */
struct ydoc;	  /* a parsed document and where its refusals go */
struct ydoc_node; /* one of its nodes; valid until ydoc_free */

enum ydoc_kind {
	YDOC_NULL,   /* nothing, or a plain ~, null, Null or NULL */
	YDOC_SCALAR, /* any other scalar: quoted "~" is a string */
	YDOC_LIST,
	YDOC_MAP,
};

/*
 * Parses text, the contents of file (which messages name), as one YAML
 * document: a second one is refused. err (may be NULL) receives the
 * refusal of this and of every later read of *out. Returns 0 with *out to
 * free with ydoc_free, -EINVAL (libyaml's complaint at its place) or
 * -ENOMEM.
 */
int ydoc_parse(const char *file, const void *text, size_t len, struct vmci_err *err,
	       struct ydoc **out);
void ydoc_free(struct ydoc *d);

/* The top node, NULL when the document is empty. */
const struct ydoc_node *ydoc_root(struct ydoc *d);

/*
 * Sets the document's err to code and "FILE:LINE:COL: error: MESSAGE" at
 * node n ("FILE: error: MESSAGE" when n is NULL), and returns -code: for
 * the checks a format makes beyond types.
 */
int ydoc_error(struct ydoc *d, const struct ydoc_node *n, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

enum ydoc_kind ydoc_kind(const struct ydoc_node *n);
/* What n is, for messages: "empty", "a string", "a list", "a mapping". */
const char *ydoc_what(const struct ydoc_node *n);
/* The text of a scalar (also of a null one), NULL for a list or mapping. */
const char *ydoc_scalar(const struct ydoc_node *n);
/* The items of a list: how many (0 for anything else), and item i (NULL past the end). */
size_t ydoc_len(const struct ydoc_node *n);
const struct ydoc_node *ydoc_item(struct ydoc *d, const struct ydoc_node *n, size_t i);

/*
 * Checks that n is a mapping whose keys are strings among keys[0..n_keys),
 * none twice, and sets values[i] to the value of keys[i] (NULL when
 * absent). what names n in messages: "a recipe", "kernel", "host".
 */
int ydoc_map(struct ydoc *d, const struct ydoc_node *n, const char *what, const char *const *keys,
	     size_t n_keys, const struct ydoc_node **values);

/*
 * A non-empty string without NUL bytes: copied into out (of size bytes;
 * longer is an error), or duplicated into *out (free() it).
 */
int ydoc_string(struct ydoc *d, const struct ydoc_node *n, const char *what, char *out,
		size_t size);
int ydoc_strdup(struct ydoc *d, const struct ydoc_node *n, const char *what, char **out);

/*
 * A list of non-empty strings of at most max bytes each (a null node is
 * an empty list), appended to the array *v of *count strings (realloc'd;
 * the caller frees each and the array, also after an error).
 */
int ydoc_strings(struct ydoc *d, const struct ydoc_node *n, const char *what, size_t max, char ***v,
		 size_t *count);

/* A whole number from min to max, written in decimal. */
int ydoc_int(struct ydoc *d, const struct ydoc_node *n, const char *what, int min, int max,
	     int *out);

/* true or false (as YAML 1.2 writes them: also True, TRUE, False, FALSE). */
int ydoc_bool(struct ydoc *d, const struct ydoc_node *n, const char *what, bool *out);

/* ---- how long vmci waits (shared by every module) ------------------- */

/*
 * How long a VM may take to quit cleanly (QMP quit) before it is killed,
 * when its work is done and its disk is thrown away.
 */
#define VMCI_STOP_TIMEOUT_MS 3000
/*
 * The same for a VM whose disk is kept (an image's after its setup
 * commands, a template's after its state is saved): QEMU flushes the
 * disk as it quits, and a kill could leave it unfinished.
 */
#define VMCI_STOP_FLUSH_TIMEOUT_MS 10000
/* How long a guest's agent may take to answer a ping (vm_ping) before the VM counts as dead. */
#define VMCI_PING_TIMEOUT_MS 5000

/* ---- durations and sizes (common/units.c) -------------------------- */

/* For parse_duration: a lone number is seconds ("--timeout 30"). */
#define DURATION_BARE_SECONDS 1u

/*
 * Parses a duration: numbers of at most 9 digits, each followed by a unit
 * h, m, s or ms, largest first and each at most once: "90s", "20m",
 * "1h30m", "250ms", "0s". With DURATION_BARE_SECONDS a lone number is
 * that many seconds. Returns 0 with *out_ms, or -EINVAL. Zero is a
 * duration: callers that need a positive one say so.
 */
int parse_duration(const char *text, unsigned flags, int64_t *out_ms);

/* For parse_size: a bare number is refused; the size must name its unit. */
#define SIZE_NEED_UNIT 1u

/*
 * Parses a size: a whole number and a binary multiple K, M, G or T in
 * either case, optionally followed by "i", "B" or "iB" ("2G", "2g",
 * "2GiB" and "2GB" all mean 2 GiB); a bare number is bytes unless
 * SIZE_NEED_UNIT. Returns 0 with *out_bytes, or -EINVAL (also for a size
 * past INT64_MAX bytes).
 */
int parse_size(const char *text, unsigned flags, int64_t *out_bytes);

/* ---- time (common/clock.c) ---------------------------------------- */

/* Monotonic milliseconds and nanoseconds. */
int64_t clock_ms(void);
int64_t clock_ns(void);
/* Formats a duration in ms as "850ms", "3.2s", "2m05s". */
void format_duration(int64_t ms, char *out, size_t size);

/* ---- sizes (common/size.c) ---------------------------------------- */

/* Formats a byte count as "512 bytes", "4.0 KiB", "500.0 MiB", "1.5 GiB". */
void format_size(long long bytes, char *out, size_t size);

/* ---- server-sent events (common/sse.c) ----------------------------- */

/*
 * A byte stream (a job's log) as server-sent events (the WHATWG HTML
 * "server-sent events" format), such that a client gets back exactly
 * the same bytes. An event carries the bytes [P, N) of the stream:
 * `id: N`, then the bytes as `data:` lines split at each "\n" (a client
 * joins an event's data lines with "\n", so those come back as sent).
 * A "\r" cannot travel inside a data line: every SSE parser ends a line
 * at "\r", "\n" or "\r\n". So an event also ends after each "\r" and
 * leaves that "\r" out of its data: the client adds it back when the
 * event's id is one more than P + the length of its data.
 */

/*
 * Appends to out the event for a prefix of bytes[0..len), whose first
 * byte is at offset in the stream; returns how many bytes it carries.
 * The prefix ends after the first "\r", else at len; with more (bytes
 * will follow), a UTF-8 character cut at len is left for the next event
 * (returns 0 when that is all there is). Returns -ENOMEM.
 */
long sse_append_bytes(struct buf *out, int64_t offset, const void *bytes, size_t len, bool more);
/* Appends an event of type (NULL: the default) with id (NULL: none) and text as its data. */
int sse_append_event(struct buf *out, const char *type, const char *id, const char *text);

/* One event as a client reads it. */
struct sse_event {
	const char *type; /* "message" when the event named none */
	const char *data; /* len bytes (NUL-terminated too) */
	size_t len;
	const char *id; /* the last event id seen on the stream; "" when none */
};

/* Called for each event; a non-zero return stops sse_parse, which returns it. */
typedef int (*sse_event_fn)(void *ctx, const struct sse_event *ev);

/* The client's parser: zero it before use, sse_parser_free after. */
struct sse_parser {
	struct buf line, data;
	char type[64], id[64];
	bool cr;      /* the last byte fed was a "\r" (a "\n" after it ends nothing more) */
	bool started; /* past a leading byte order mark */
};

/* Feeds len bytes of the stream, calling fn for every event they complete. 0, fn's value, or
 * -ENOMEM. */
int sse_parse(struct sse_parser *p, const void *data, size_t len, sse_event_fn fn, void *ctx);
void sse_parser_free(struct sse_parser *p);

/*
 * The bytes an event of sse_append_bytes stands for, appended to out,
 * given the stream offset before it (*offset), which moves to the
 * event's id. -EINVAL when its id is not an offset that fits.
 */
int sse_event_bytes(const struct sse_event *ev, int64_t *offset, struct buf *out);

#endif
