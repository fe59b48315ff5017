/*
 * The SQLite engine: one file, WAL, many readers and one writer at a time.
 *
 * A write transaction is BEGIN IMMEDIATE: it takes the write lock at its
 * start (waiting up to the busy timeout), so no transaction ever fails
 * half way for a lock it could not upgrade to. synchronous=FULL syncs the
 * WAL at every commit, so a committed transaction survives a crash of the
 * machine as well as of the process.
 */
#include "runner/store/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 10000

struct store_db {
	sqlite3 *db;
	int64_t busy_since; /* when the current wait for the write lock began */
	unsigned seed;
	char path[4096];
};

struct store_stmt {
	sqlite3_stmt *st;
	struct store_db *db;
	int64_t changes;
};

/* Maps a SQLite result to an errno code and a message naming the file and the statement. */
static int fail(struct store_db *db, int rc, const char *sql, struct vmci_err *err)
{
	int code;
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		code = EBUSY;
		break;
	case SQLITE_CONSTRAINT:
		code = rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY
			   ? EEXIST
			   : EINVAL;
		break;
	case SQLITE_NOMEM:
		code = ENOMEM;
		break;
	case SQLITE_FULL:
		code = ENOSPC;
		break;
	case SQLITE_READONLY:
		code = EROFS;
		break;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		code = EACCES;
		break;
	case SQLITE_CANTOPEN:
		code = ENOENT;
		break;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		code = EILSEQ;
		break;
	default:
		code = EIO;
	}
	const char *msg = db && db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc);
	if (sql)
		return vmci_err_set(err, code, "sqlite %s: %s (in: %.80s)", db ? db->path : "?",
				    msg, sql);
	return vmci_err_set(err, code, "sqlite %s: %s", db ? db->path : "?", msg);
}

static int pragma(struct store_db *db, const char *sql, const char *expect, struct vmci_err *err)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, sql, err);
	/*
	 * Switching a new file to WAL needs it to itself for a moment: another
	 * opener doing the same gets SQLITE_BUSY at once, without the busy
	 * handler, so wait here as the handler would.
	 */
	int64_t start = clock_ms();
	while (((rc = sqlite3_step(st)) & 0xff) == SQLITE_BUSY &&
	       clock_ms() - start < BUSY_TIMEOUT_MS) {
		sqlite3_reset(st);
		struct timespec ts = {.tv_nsec = 200000 + (long)(rand_r(&db->seed) % 800) * 1000};
		nanosleep(&ts, NULL);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		rc = fail(db, rc, sql, err);
		sqlite3_finalize(st);
		return rc;
	}
	if (expect) {
		const char *got =
		    rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
		if (!got || strcasecmp(got, expect) != 0) {
			rc = vmci_err_set(err, EIO, "sqlite %s: '%s' answered '%s', not '%s'",
					  db->path, sql, got ? got : "nothing", expect);
			sqlite3_finalize(st);
			return rc;
		}
	}
	sqlite3_finalize(st);
	return 0;
}

/*
 * Waiting for another writer: short sleeps with jitter, up to the timeout.
 * SQLite's own handler backs off to 100 ms sleeps, so a waiter keeps
 * losing the lock to a writer that comes straight back for it, and an API
 * request waits 100 ms for a commit that took one.
 */
static int on_busy(void *ctx, int count)
{
	struct store_db *db = ctx;
	int64_t now = clock_ms();
	if (count == 0)
		db->busy_since = now;
	if (now - db->busy_since >= BUSY_TIMEOUT_MS)
		return 0;
	struct timespec ts = {.tv_nsec = 50000 + (long)(rand_r(&db->seed) % 450) * 1000};
	nanosleep(&ts, NULL);
	return 1;
}

static void sq_close(struct store_db *db)
{
	if (!db)
		return;
	sqlite3_close(db->db);
	free(db);
}

static int sq_open(const char *target, struct store_db **out, struct vmci_err *err)
{
	if (!*target)
		return vmci_err_set(err, EINVAL, "sqlite: no file in the url (use sqlite:PATH)");
	struct store_db *db = calloc(1, sizeof(*db));
	if (!db)
		return vmci_err_set(err, ENOMEM, "sqlite %s: out of memory", target);
	if (strlen(target) >= sizeof(db->path)) {
		free(db);
		return vmci_err_set(err, ENAMETOOLONG, "sqlite: path too long: %.100s...", target);
	}
	strcpy(db->path, target);
	/*
	 * The database holds job logs and token hashes: created for its owner
	 * only (SQLite gives the -wal and -shm files the database's mode).
	 */
	int fd = open(target, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		free(db);
		return vmci_err_set(err, e, "sqlite %s: cannot open or create the database: %s%s",
				    target, strerror(e),
				    e == ENOENT ? " (create its directory first)" : "");
	}
	close(fd);
	/* Our handle serializes its callers, so SQLite need not lock for us. */
	int rc =
	    sqlite3_open_v2(target, &db->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = fail(db, rc, NULL, err);
		sq_close(db);
		return rc;
	}
	sqlite3_extended_result_codes(db->db, 1);
	db->seed = (unsigned)clock_ns() ^ (unsigned)(uintptr_t)db;
	sqlite3_busy_handler(db->db, on_busy, db);
	if ((rc = pragma(db, "PRAGMA journal_mode=WAL", "wal", err)) ||
	    (rc = pragma(db, "PRAGMA synchronous=FULL", NULL, err)) ||
	    (rc = pragma(db, "PRAGMA foreign_keys=ON", NULL, err)) ||
	    (rc = pragma(db, "PRAGMA foreign_keys", "1", err))) {
		sq_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

static int sq_exec(struct store_db *db, const char *sql, struct vmci_err *err)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db->db, sql, NULL, NULL, &msg);
	sqlite3_free(msg);
	return rc == SQLITE_OK ? 0 : fail(db, rc, sql, err);
}

static int sq_begin(struct store_db *db, bool write, struct vmci_err *err)
{
	return sq_exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN", err);
}

static int sq_commit(struct store_db *db, struct vmci_err *err)
{
	return sq_exec(db, "COMMIT", err);
}

static void sq_rollback(struct store_db *db)
{
	if (!sqlite3_get_autocommit(db->db))
		sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

static int sq_prepare(struct store_db *db, const char *sql, struct store_stmt **out,
		      struct vmci_err *err)
{
	struct store_stmt *st = calloc(1, sizeof(*st));
	if (!st)
		return vmci_err_set(err, ENOMEM, "sqlite %s: out of memory", db->path);
	int rc = sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->st, NULL);
	if (rc != SQLITE_OK) {
		free(st);
		return fail(db, rc, sql, err);
	}
	st->db = db;
	*out = st;
	return 0;
}

static int sq_bind_null(struct store_stmt *st, int i)
{
	return sqlite3_bind_null(st->st, i) == SQLITE_OK ? 0 : -EINVAL;
}

static int sq_bind_int(struct store_stmt *st, int i, int64_t v)
{
	return sqlite3_bind_int64(st->st, i, v) == SQLITE_OK ? 0 : -EINVAL;
}

static int sq_bind_text(struct store_stmt *st, int i, const char *v)
{
	int rc = v ? sqlite3_bind_text(st->st, i, v, -1, SQLITE_TRANSIENT)
		   : sqlite3_bind_null(st->st, i);
	return rc == SQLITE_OK ? 0 : -EINVAL;
}

static int sq_bind_blob(struct store_stmt *st, int i, const void *v, size_t len)
{
	return sqlite3_bind_blob64(st->st, i, v ? v : "", len, SQLITE_TRANSIENT) == SQLITE_OK
		   ? 0
		   : -EINVAL;
}

static int sq_step(struct store_stmt *st, struct vmci_err *err)
{
	int rc = sqlite3_step(st->st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		st->changes = sqlite3_stmt_readonly(st->st) ? 0 : sqlite3_changes64(st->db->db);
		return 0;
	}
	return fail(st->db, rc, sqlite3_sql(st->st), err);
}

static bool sq_col_null(struct store_stmt *st, int i)
{
	return sqlite3_column_type(st->st, i) == SQLITE_NULL;
}

static int64_t sq_col_int(struct store_stmt *st, int i)
{
	return sqlite3_column_int64(st->st, i);
}

static const char *sq_col_text(struct store_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st->st, i);
}

static const void *sq_col_blob(struct store_stmt *st, int i, size_t *len)
{
	const void *p = sqlite3_column_blob(st->st, i);
	*len = (size_t)sqlite3_column_bytes(st->st, i);
	return p;
}

static int64_t sq_changes(struct store_stmt *st)
{
	return st->changes;
}

static void sq_reset(struct store_stmt *st)
{
	sqlite3_reset(st->st);
	sqlite3_clear_bindings(st->st);
	st->changes = 0;
}

static void sq_finalize(struct store_stmt *st)
{
	if (!st)
		return;
	sqlite3_finalize(st->st);
	free(st);
}

static const char *const schemes[] = {"sqlite:", NULL};

static const struct store_dialect dialect = {
    .id = "INTEGER PRIMARY KEY AUTOINCREMENT",
    .blob = "BLOB",
    .for_update = "",
    .skip_locked = "",
};

const struct store_engine store_engine_sqlite = {
    .name = "sqlite",
    .schemes = schemes,
    .dialect = &dialect,
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .prepare = sq_prepare,
    .bind_null = sq_bind_null,
    .bind_int = sq_bind_int,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .step = sq_step,
    .col_null = sq_col_null,
    .col_int = sq_col_int,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
    .changes = sq_changes,
    .reset = sq_reset,
    .finalize = sq_finalize,
};
