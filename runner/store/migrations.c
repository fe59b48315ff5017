/*
 * The schema, as the list of migrations that build it.
 *
 * A migration is applied once, in order, each in its own write
 * transaction together with its row in schema_version, so a database is
 * always at exactly one version, and several processes opening it at
 * once apply each migration once (SQLite's write transaction excludes the
 * others from its BEGIN; an engine without such a lock must take one, e.g.
 * a PostgreSQL advisory lock, in its begin). Published migrations are never edited:
 * a change is a new migration at the end (tests/fixtures/store/ keeps the
 * schema of each earlier version, and the tests migrate from it).
 *
 * Conventions: times are BIGINT milliseconds since the epoch (UTC),
 * NULL while not yet; statuses are their names (store_status_name);
 * booleans are INTEGER 0/1.
 */
#include "runner/store/internal.h"

#include <errno.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

static const struct migration migrations[] = {
    {1, "runs, jobs, attempts, steps, logs, events",
     /* A run is what one trigger asked for. */
     "CREATE TABLE runs ("
     " id {id},"
     " repo TEXT NOT NULL,"
     " ref TEXT NOT NULL,"
     " sha TEXT NOT NULL,"
     " trigger_kind TEXT NOT NULL,"
     " status TEXT NOT NULL,"
     " created_ms BIGINT NOT NULL,"
     " started_ms BIGINT,"
     " finished_ms BIGINT);"
     "CREATE INDEX runs_by_repo ON runs (repo, id);"
     "CREATE INDEX runs_by_status ON runs (status, id);"
     /*
      * A job is one expanded combination. pending_needs counts its needs
      * that have not succeeded yet: 0 makes a queued job claimable.
      * attempt is the current attempt's number; host, lease_* describe
      * it while it runs. errors_retried and leases_lost count what its
      * retries and the lease rule have used up.
      */
     "CREATE TABLE jobs ("
     " id {id},"
     " run_id BIGINT NOT NULL REFERENCES runs (id),"
     " idx INTEGER NOT NULL,"
     " name TEXT NOT NULL,"
     " image TEXT NOT NULL,"
     " matrix TEXT NOT NULL,"
     " grp INTEGER NOT NULL,"
     " fail_fast INTEGER NOT NULL,"
     " max_parallel INTEGER NOT NULL,"
     " timeout_s BIGINT NOT NULL,"
     " retries INTEGER NOT NULL,"
     " status TEXT NOT NULL,"
     " pending_needs INTEGER NOT NULL,"
     " attempt INTEGER NOT NULL DEFAULT 0,"
     " errors_retried INTEGER NOT NULL DEFAULT 0,"
     " leases_lost INTEGER NOT NULL DEFAULT 0,"
     " cancel_requested INTEGER NOT NULL DEFAULT 0,"
     " host TEXT,"
     " lease_ms BIGINT,"
     " lease_expires_ms BIGINT,"
     " exit_code INTEGER,"
     " failed_step TEXT,"
     " log_len BIGINT NOT NULL DEFAULT 0,"
     " created_ms BIGINT NOT NULL,"
     " started_ms BIGINT,"
     " finished_ms BIGINT,"
     " UNIQUE (run_id, idx),"
     " UNIQUE (run_id, name));"
     "CREATE INDEX jobs_queue ON jobs (status, pending_needs, run_id, idx);"
     "CREATE INDEX jobs_leases ON jobs (status, lease_expires_ms);"
     "CREATE TABLE job_needs ("
     " job_id BIGINT NOT NULL REFERENCES jobs (id),"
     " need_id BIGINT NOT NULL REFERENCES jobs (id),"
     " PRIMARY KEY (job_id, need_id));"
     "CREATE INDEX job_needs_by_need ON job_needs (need_id);"
     /* log_start: where the attempt's bytes begin in the job's log. */
     "CREATE TABLE attempts ("
     " id {id},"
     " job_id BIGINT NOT NULL REFERENCES jobs (id),"
     " number INTEGER NOT NULL,"
     " host TEXT NOT NULL,"
     " status TEXT NOT NULL,"
     " reason TEXT NOT NULL DEFAULT '',"
     " exit_code INTEGER,"
     " failed_step TEXT,"
     " log_start BIGINT NOT NULL,"
     " started_ms BIGINT NOT NULL,"
     " finished_ms BIGINT,"
     " UNIQUE (job_id, number));"
     "CREATE TABLE steps ("
     " attempt_id BIGINT NOT NULL REFERENCES attempts (id),"
     " idx INTEGER NOT NULL,"
     " name TEXT NOT NULL,"
     " status TEXT NOT NULL,"
     " exit_code INTEGER,"
     " started_ms BIGINT NOT NULL,"
     " finished_ms BIGINT,"
     " PRIMARY KEY (attempt_id, idx));"
     /* A job's log: chunks at byte offsets pos .. pos + len, whichever attempt wrote them. */
     "CREATE TABLE log_chunks ("
     " job_id BIGINT NOT NULL REFERENCES jobs (id),"
     " pos BIGINT NOT NULL,"
     " len INTEGER NOT NULL,"
     " attempt INTEGER NOT NULL,"
     " data {blob} NOT NULL,"
     " PRIMARY KEY (job_id, pos));"
     "CREATE TABLE events ("
     " id {id},"
     " run_id BIGINT NOT NULL REFERENCES runs (id),"
     " job_id BIGINT REFERENCES jobs (id),"
     " kind TEXT NOT NULL,"
     " data TEXT NOT NULL,"
     " created_ms BIGINT NOT NULL);"
     "CREATE INDEX events_by_run ON events (run_id, id);"},
    {2, "artifacts, hosts, tokens",
     /* One entry per file of a job: a retried job rewrites its files, and their entries. */
     "CREATE TABLE artifacts ("
     " job_id BIGINT NOT NULL REFERENCES jobs (id),"
     " path TEXT NOT NULL,"
     " attempt INTEGER NOT NULL,"
     " size BIGINT NOT NULL,"
     " sha256 TEXT NOT NULL,"
     " created_ms BIGINT NOT NULL,"
     " PRIMARY KEY (job_id, path));"
     "CREATE TABLE hosts ("
     " name TEXT PRIMARY KEY,"
     " url TEXT NOT NULL,"
     " capacity INTEGER NOT NULL,"
     " state TEXT NOT NULL,"
     " drain_deadline_ms BIGINT,"
     " heartbeat_ms BIGINT NOT NULL,"
     " registered_ms BIGINT NOT NULL);"
     /* hash: the token's SHA-256 in hex; the token itself is never stored. */
     "CREATE TABLE tokens ("
     " name TEXT PRIMARY KEY,"
     " hash TEXT NOT NULL UNIQUE,"
     " created_ms BIGINT NOT NULL);"},
};

int store_schema_latest(void)
{
	return migrations[ARRAY_LEN(migrations) - 1].version;
}

static int current_tx(struct store *s, struct vmci_err *err)
{
	int rc = db_exec_script(s,
				"CREATE TABLE IF NOT EXISTS schema_version ("
				" version INTEGER PRIMARY KEY,"
				" name TEXT NOT NULL,"
				" applied_ms BIGINT NOT NULL)",
				err);
	if (rc < 0)
		return rc;
	int64_t v = 0;
	rc = db_int(s, &v, err, "SELECT MAX(version) FROM schema_version", "");
	return rc < 0 ? rc : (int)v;
}

int migrations_current(struct store *s, struct vmci_err *err)
{
	int64_t v = 0;
	int rc = db_int(s, &v, err, "SELECT MAX(version) FROM schema_version", "");
	return rc < 0 ? rc : (int)v;
}

/* Applies the next migration, if any: 1 when one was applied, 0 when up to date. */
static int step_tx(struct store *s, struct vmci_err *err)
{
	int current = current_tx(s, err);
	if (current < 0)
		return current;
	int latest = store_schema_latest();
	if (current > latest)
		return vmci_err_set(err, ENOTSUP,
				    "store %s is at schema version %d, newer than this vmci knows "
				    "(%d): it was written by a newer vmci; upgrade vmci, or use "
				    "another database (--db)",
				    s->url, current, latest);
	if (current == latest)
		return 0;
	const struct migration *m = &migrations[current];
	int rc = db_exec_script(s, m->sql, err);
	if (rc == 0) {
		int64_t n = db_exec(s, err,
				    "INSERT INTO schema_version (version, name, applied_ms) "
				    "VALUES (?, ?, ?)",
				    "isI", m->version, m->name, store_now_ms(s));
		if (n < 0)
			rc = (int)n;
	}
	if (rc < 0) {
		vmci_err_wrap(err, "store %s: migration %d (%s)", s->url, m->version, m->name);
		return rc;
	}
	return 1;
}

int migrations_apply(struct store *s, struct vmci_err *err)
{
	for (;;) {
		int rc = db_begin(s, true, err);
		if (rc == 0)
			rc = step_tx(s, err);
		rc = db_end(s, rc, err);
		if (rc <= 0)
			return rc;
	}
}
