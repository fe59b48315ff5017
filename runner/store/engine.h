/*
 * runner/store private: what a database engine gives the store.
 *
 * The store's SQL is written once, for every engine:
 *
 *   - `?` placeholders, numbered in order; an engine whose library wants
 *     `$1, $2, ...` (libpq) translates them when it prepares.
 *   - Portable SQL only: BIGINT/INTEGER/TEXT columns, INSERT ... RETURNING,
 *     INSERT ... ON CONFLICT, WITH RECURSIVE, LIMIT; no INSERT OR ...,
 *     no UPDATE ... FROM, no engine-only functions.
 *   - What cannot be portable is a `{token}` the engine's dialect spells:
 *       {id}          an auto-numbered BIGINT primary key column type
 *       {blob}        a column of raw bytes
 *       {for_update}  after a SELECT in a write transaction whose rows the
 *                     transaction will change (row locks on PostgreSQL;
 *                     nothing on SQLite, where a write transaction holds
 *                     the database's one write lock from its BEGIN)
 *       {skip_locked} after the claim's SELECT: FOR UPDATE SKIP LOCKED on
 *                     PostgreSQL, so concurrent claimers pass each other
 *
 * A write transaction (begin with write = true) must exclude every other
 * writer from the rows it reads with {for_update} until it ends; a read
 * transaction sees one consistent snapshot.
 */
#ifndef VMCI_RUNNER_STORE_ENGINE_H
#define VMCI_RUNNER_STORE_ENGINE_H

#include "common/common.h"

struct store_db;   /* a connection of one engine */
struct store_stmt; /* a prepared statement of one engine */

struct store_dialect {
	const char *id, *blob, *for_update, *skip_locked;
};

struct store_engine {
	const char *name;	    /* "sqlite" */
	const char *const *schemes; /* url prefixes it opens, NULL-terminated */
	const struct store_dialect *dialect;

	/* target is the url without its scheme (for sqlite: the file's path). */
	int (*open)(const char *target, struct store_db **out, struct vmci_err *err);
	void (*close)(struct store_db *db);

	/* Runs statements without parameters, one after another (migrations). */
	int (*exec)(struct store_db *db, const char *sql, struct vmci_err *err);
	int (*begin)(struct store_db *db, bool write, struct vmci_err *err);
	int (*commit)(struct store_db *db, struct vmci_err *err);
	void (*rollback)(struct store_db *db);

	/* sql has its tokens already expanded; `?` placeholders remain. */
	int (*prepare)(struct store_db *db, const char *sql, struct store_stmt **out,
		       struct vmci_err *err);
	/* Parameters count from 1. text NULL binds NULL. */
	int (*bind_null)(struct store_stmt *st, int i);
	int (*bind_int)(struct store_stmt *st, int i, int64_t v);
	int (*bind_text)(struct store_stmt *st, int i, const char *v);
	int (*bind_blob)(struct store_stmt *st, int i, const void *v, size_t len);
	/*
	 * Runs the statement or moves to its next row: 1 with a row to read,
	 * 0 when done. A unique or primary key violation is -EEXIST, a lock
	 * that could not be had in time -EBUSY.
	 */
	int (*step)(struct store_stmt *st, struct vmci_err *err);
	/* Columns count from 0; valid until the next step or reset. */
	bool (*col_null)(struct store_stmt *st, int i);
	int64_t (*col_int)(struct store_stmt *st, int i);
	const char *(*col_text)(struct store_stmt *st, int i); /* NULL for NULL */
	const void *(*col_blob)(struct store_stmt *st, int i, size_t *len);
	/* Rows the last completed INSERT/UPDATE/DELETE of st changed. */
	int64_t (*changes)(struct store_stmt *st);
	/* Makes st ready to bind and run again, its parameters cleared. */
	void (*reset)(struct store_stmt *st);
	void (*finalize)(struct store_stmt *st);
};

extern const struct store_engine store_engine_sqlite;

#endif
