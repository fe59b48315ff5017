/*
 * runner/store private: the handle, and the few helpers every part of the
 * store runs its SQL through (runner/store/db.c).
 *
 * A public function locks the handle, opens a transaction, calls the
 * *_tx functions of the parts it needs, and ends the transaction with
 * db_end, which commits on success and rolls back on failure:
 *
 *	store_lock(s);
 *	int rc = db_begin(s, true, err);
 *	if (rc == 0)
 *		rc = thing_tx(s, ..., err);
 *	rc = db_end(s, rc, err);
 *	store_unlock(s);
 */
#ifndef VMCI_RUNNER_STORE_INTERNAL_H
#define VMCI_RUNNER_STORE_INTERNAL_H

#include "runner/store.h"
#include "runner/store/engine.h"

#include <pthread.h>

/* Prepared statements kept per handle, found by their SQL's address. */
#define STORE_STMT_CACHE 128

struct store_cached {
	const char *sql; /* a string literal of the store: its address is the key */
	struct store_stmt *st;
	bool busy; /* handed out by db_query and not yet given back */
};

struct store {
	const struct store_engine *engine;
	struct store_db *db;
	char url[512];
	pthread_mutex_t lock;
	int64_t (*now_ms)(void *ctx);
	void *now_ctx;
	struct store_cached cache[STORE_STMT_CACHE];
	size_t n_cached;
};

void store_lock(struct store *s);
void store_unlock(struct store *s);

/* ---- transactions --------------------------------------------------- */

int db_begin(struct store *s, bool write, struct vmci_err *err);
/* Commits when rc >= 0 (returning rc, or the commit's error), else rolls back and returns rc. */
int db_end(struct store *s, int rc, struct vmci_err *err);

/* ---- statements ------------------------------------------------------ */

/*
 * Parameters are given by a type string, one letter each:
 *   'I' int64_t   'J' int64_t, 0 binds NULL   'i' int   'e' int, negative binds NULL
 *   's' const char * (NULL binds NULL)   'b' const void *, size_t
 */

/*
 * Prepares sql (a string literal: it is cached by address), binds the
 * parameters, and returns the statement ready for db_step. Give it back
 * with db_done before the same sql is queried again.
 */
int db_query(struct store *s, struct store_stmt **out, struct vmci_err *err, const char *sql,
	     const char *types, ...);
/* 1: a row, 0: no more rows. */
int db_step(struct store *s, struct store_stmt *st, struct vmci_err *err);
void db_done(struct store *s, struct store_stmt *st);

/* Runs a statement that returns no rows; returns the rows it changed (>= 0). */
int64_t db_exec(struct store *s, struct vmci_err *err, const char *sql, const char *types, ...);

/*
 * Runs a query and reads the first column of its first row as an integer:
 * returns 1 with *out set, or 0 when there is no row (or it is NULL).
 */
int db_int(struct store *s, int64_t *out, struct vmci_err *err, const char *sql, const char *types,
	   ...);

/* Column readers (NULL-safe): a NULL integer reads as dflt, NULL text as NULL. */
int64_t col_int(struct store *s, struct store_stmt *st, int i, int64_t dflt);
/* A malloc'd copy of a text column (NULL stays NULL); -ENOMEM is left to the caller's check. */
char *col_strdup(struct store *s, struct store_stmt *st, int i);
const char *col_text(struct store *s, struct store_stmt *st, int i);
enum store_status col_status(struct store *s, struct store_stmt *st, int i);

/* Runs statements without parameters, {tokens} expanded (migrations). */
int db_exec_script(struct store *s, const char *sql, struct vmci_err *err);

/* Closes every cached statement (before the connection closes). */
void db_cache_clear(struct store *s);

int store_oom(struct vmci_err *err, const char *what);

/* ---- the parts' work inside a transaction ---------------------------- */

/* runner/store/migrations.c */
int migrations_apply(struct store *s, struct vmci_err *err);
int migrations_current(struct store *s, struct vmci_err *err);

/* runner/store/events.c: records an event; data_json NULL is "{}". */
int event_add_tx(struct store *s, int64_t run_id, int64_t job_id, const char *kind,
		 const char *data_json, struct vmci_err *err);

/* Records an event whose data is json_pack(fmt, ...) (jansson). */
int event_pack_tx(struct store *s, struct vmci_err *err, int64_t run_id, int64_t job_id,
		  const char *kind, const char *fmt, ...);

/*
 * runner/store/runs.c: brings the run's status and times in line with its
 * jobs, and records run.finished when it ends.
 */
int run_settle_tx(struct store *s, int64_t run_id, struct vmci_err *err);

/* runner/store/jobs.c: reads one job (without attempts) as store_job_get would. */
int job_read_tx(struct store *s, int64_t job_id, struct store_job **out, struct vmci_err *err);
/* Reads a run's jobs, in order, with their needs. */
int jobs_of_run_tx(struct store *s, int64_t run_id, struct store_job **out, size_t *n,
		   struct vmci_err *err);
void store_job_clear(struct store_job *job);

/*
 * runner/store/queue.c: checks that attempt is job's current running
 * attempt; 0, -ENOENT for an unknown job, -ESTALE otherwise. *run_id
 * and *log_len may be NULL.
 */
int job_current_tx(struct store *s, int64_t job_id, int attempt, int64_t *run_id, int64_t *log_len,
		   struct vmci_err *err);

/* runner/store/graph.c: what a job's end does to the rest of its run. */
int graph_job_ended_tx(struct store *s, int64_t job_id, enum store_status status,
		       struct vmci_err *err);
/* Queued jobs that need job_id count again how many of their needs have not succeeded. */
int graph_recount_dependents_tx(struct store *s, int64_t job_id, struct vmci_err *err);
/* Skips (transitively) every queued job that needs job_id. */
int graph_skip_dependents_tx(struct store *s, int64_t job_id, struct vmci_err *err);
/* Queues again the jobs skipped (transitively) because job_id did not succeed. */
int graph_requeue_dependents_tx(struct store *s, int64_t job_id, struct vmci_err *err);

/* runner/store/watch.c: tells the store_queue_watch watchers; after the commit, unlocked. */
void queue_changed(void);

#endif
