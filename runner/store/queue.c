/*
 * The queue: claims under a lease, lease renewal and expiry, results,
 * cancel requests and retries. Each public function is one write
 * transaction, so claimers on any number of handles never share a job.
 */
#include "runner/store/internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_EXPIRED  "lease expired"
#define HOST_RESTARTED "host restarted"
#define HOST_STOPPED   "host stopped"

/* A job's row as the queue's rules read it, locked for the transaction's writes. */
struct job_row {
	int64_t id, run_id;
	enum store_status status;
	int attempt, retries, errors_retried, leases_lost;
	bool cancel_requested;
	int64_t log_len;
};

static int job_row_tx(struct store *s, int64_t job_id, struct job_row *j, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc =
	    db_query(s, &st, err,
		     "SELECT id, run_id, status, attempt, retries, errors_retried, leases_lost,"
		     " cancel_requested, log_len FROM jobs WHERE id = ? {for_update}",
		     "I", job_id);
	if (rc < 0)
		return rc;
	rc = db_step(s, st, err);
	if (rc == 0)
		rc = vmci_err_set(err, ENOENT, "job %lld not found", (long long)job_id);
	if (rc == 1) {
		j->id = col_int(s, st, 0, 0);
		j->run_id = col_int(s, st, 1, 0);
		j->status = col_status(s, st, 2);
		j->attempt = (int)col_int(s, st, 3, 0);
		j->retries = (int)col_int(s, st, 4, 0);
		j->errors_retried = (int)col_int(s, st, 5, 0);
		j->leases_lost = (int)col_int(s, st, 6, 0);
		j->cancel_requested = col_int(s, st, 7, 0) != 0;
		j->log_len = col_int(s, st, 8, 0);
		rc = 0;
	}
	db_done(s, st);
	return rc;
}

/* Reads job's row into *j and checks that attempt is its current running one (-ESTALE). */
static int job_current_row_tx(struct store *s, int64_t job_id, int attempt, struct job_row *j,
			      struct vmci_err *err)
{
	int rc = job_row_tx(s, job_id, j, err);
	if (rc == 0 && (j->status != STORE_RUNNING || j->attempt != attempt))
		rc = vmci_err_set(err, ESTALE,
				  "job %lld: attempt %d is not the current one (the job is %s, at "
				  "attempt %d): ignored",
				  (long long)job_id, attempt, store_status_name(j->status),
				  j->attempt);
	return rc;
}

int job_current_tx(struct store *s, int64_t job_id, int attempt, int64_t *run_id, int64_t *log_len,
		   struct vmci_err *err)
{
	struct job_row j;
	int rc = job_current_row_tx(s, job_id, attempt, &j, err);
	if (rc == 0 && run_id)
		*run_id = j.run_id;
	if (rc == 0 && log_len)
		*log_len = j.log_len;
	return rc;
}

/* ---- claim -------------------------------------------------------------------------------- */

static int claim_tx(struct store *s, const char *host, int lease_seconds, struct store_job **out,
		    struct vmci_err *err)
{
	/* A draining (or down) host takes nothing new; one never registered may claim. */
	int64_t not_up = 0;
	int rc = db_int(s, &not_up, err,
			"SELECT COUNT(*) FROM hosts WHERE name = ? AND state <> 'up'", "s", host);
	if (rc < 0 || not_up)
		return rc < 0 ? rc : 0;
	struct store_stmt *st;
	rc = db_query(s, &st, err,
		      "SELECT j.id, j.run_id FROM jobs j"
		      " WHERE j.status = 'queued' AND j.pending_needs = 0"
		      " AND (j.max_parallel = 0 OR j.max_parallel > (SELECT COUNT(*) FROM jobs r"
		      " WHERE r.run_id = j.run_id AND r.grp = j.grp AND r.status = 'running'))"
		      " ORDER BY j.run_id, j.idx LIMIT 1 {skip_locked}",
		      "");
	if (rc < 0)
		return rc;
	rc = db_step(s, st, err);
	int64_t job_id = rc == 1 ? col_int(s, st, 0, 0) : 0;
	int64_t run_id = rc == 1 ? col_int(s, st, 1, 0) : 0;
	db_done(s, st);
	if (rc <= 0)
		return rc;

	int64_t now = store_now_ms(s), lease_ms = (int64_t)lease_seconds * 1000;
	int64_t changed =
	    db_exec(s, err,
		    "UPDATE jobs SET status = 'running', attempt = attempt + 1, host = ?,"
		    " lease_ms = ?, lease_expires_ms = ?, started_ms = ?,"
		    " finished_ms = NULL, exit_code = NULL, failed_step = NULL"
		    " WHERE id = ? AND status = 'queued'",
		    "sIIII", host, lease_ms, now + lease_ms, now, job_id);
	if (changed <= 0)
		return (int)changed;
	changed =
	    db_exec(s, err,
		    "INSERT INTO attempts (job_id, number, host, status, log_start, started_ms)"
		    " SELECT id, attempt, host, 'running', log_len, started_ms FROM jobs"
		    " WHERE id = ?",
		    "I", job_id);
	if (changed >= 0)
		changed = db_exec(
		    s, err,
		    "UPDATE runs SET status = 'running', started_ms = COALESCE(started_ms, ?)"
		    " WHERE id = ? AND status = 'queued'",
		    "II", now, run_id);
	if (changed < 0)
		return (int)changed;
	rc = job_read_tx(s, job_id, out, err);
	if (rc == 0)
		rc = event_pack_tx(s, err, run_id, job_id, "job.started", "{s:s, s:i}", "host",
				   host, "attempt", (*out)->attempt);
	if (rc < 0) {
		store_job_free(*out);
		*out = NULL;
		return rc;
	}
	return 1;
}

int store_claim(struct store *s, const char *host, int lease_seconds, struct store_job **out,
		struct vmci_err *err)
{
	*out = NULL;
	if (!host || !*host || lease_seconds <= 0)
		return vmci_err_set(err, EINVAL,
				    "claim: a host name and a positive lease are needed");
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = claim_tx(s, host, lease_seconds, out, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	if (rc < 0 && *out) {
		store_job_free(*out);
		*out = NULL;
	}
	return rc;
}

int store_lease_renew(struct store *s, const char *host, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, true, err);
	int64_t n = 0;
	if (rc == 0) {
		n = db_exec(s, err,
			    "UPDATE jobs SET lease_expires_ms = ? + lease_ms"
			    " WHERE status = 'running' AND host = ?",
			    "Is", store_now_ms(s), host);
		rc = (int)n;
	}
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

/* ---- the end of an attempt, and of a job ---------------------------------------------------- */

static int attempt_end_tx(struct store *s, int64_t job_id, int attempt, enum store_status status,
			  int exit_code, const char *failed_step, const char *reason,
			  struct vmci_err *err)
{
	int64_t changed = db_exec(s, err,
				  "UPDATE attempts SET status = ?, exit_code = ?, failed_step = ?,"
				  " reason = ?, finished_ms = ? WHERE job_id = ? AND number = ?",
				  "sessIIi", store_status_name(status), exit_code, failed_step,
				  reason ? reason : "", store_now_ms(s), job_id, attempt);
	return changed < 0 ? (int)changed : 0;
}

/* The job ends with status: its dependents, its fail-fast group and its run follow. */
static int job_end_tx(struct store *s, int64_t job_id, int64_t run_id, int attempt,
		      enum store_status status, int exit_code, const char *failed_step,
		      struct vmci_err *err)
{
	int64_t changed = db_exec(s, err,
				  "UPDATE jobs SET status = ?, exit_code = ?, failed_step = ?,"
				  " finished_ms = ?, lease_ms = NULL, lease_expires_ms = NULL"
				  " WHERE id = ?",
				  "sesII", store_status_name(status), exit_code, failed_step,
				  store_now_ms(s), job_id);
	int rc = changed < 0 ? (int)changed : 0;
	if (rc == 0)
		rc = event_pack_tx(s, err, run_id, job_id, "job.finished", "{s:s, s:i, s:i, s:s?}",
				   "status", store_status_name(status), "attempt", attempt,
				   "exit_code", exit_code, "failed_step", failed_step);
	if (rc == 0)
		rc = graph_job_ended_tx(s, job_id, status, err);
	if (rc == 0)
		rc = run_settle_tx(s, run_id, err);
	return rc;
}

/* The job goes back to the queue; its next claim makes the next attempt. */
static int requeue_tx(struct store *s, int64_t job_id, int64_t run_id, int attempt,
		      const char *counter_sql, const char *reason, struct vmci_err *err)
{
	int64_t changed = db_exec(s, err, counter_sql, "I", job_id);
	int rc = changed < 0 ? (int)changed : 0;
	if (rc == 0)
		rc = event_pack_tx(s, err, run_id, job_id, "job.requeued", "{s:i, s:s}", "attempt",
				   attempt, "reason", reason);
	return rc;
}

/* ---- finish ------------------------------------------------------------------------------- */

static int finish_tx(struct store *s, int64_t job_id, int attempt, enum store_status status,
		     int exit_code, const char *failed_step, struct vmci_err *err)
{
	struct job_row j;
	int rc = job_current_row_tx(s, job_id, attempt, &j, err);
	if (rc < 0)
		return rc;
	rc = attempt_end_tx(s, job_id, attempt, status, exit_code, failed_step, NULL, err);
	if (rc < 0)
		return rc;
	/* Only the infrastructure is retried: a failing step fails the same way again. */
	if (status == STORE_ERROR && j.errors_retried < j.retries && !j.cancel_requested) {
		char why[96];
		snprintf(why, sizeof(why), "infrastructure error, retry %d of %d",
			 j.errors_retried + 1, j.retries);
		rc = requeue_tx(s, job_id, j.run_id, attempt,
				"UPDATE jobs SET status = 'queued', host = NULL, lease_ms = NULL,"
				" lease_expires_ms = NULL, errors_retried = errors_retried + 1"
				" WHERE id = ?",
				why, err);
		return rc < 0 ? rc : 1;
	}
	return job_end_tx(s, job_id, j.run_id, attempt, status, exit_code, failed_step, err);
}

int store_job_finish(struct store *s, int64_t job_id, int attempt, enum store_status status,
		     int exit_code, const char *failed_step, struct vmci_err *err)
{
	if (status != STORE_SUCCESS && status != STORE_FAILURE && status != STORE_ERROR &&
	    status != STORE_CANCELLED)
		return vmci_err_set(err, EINVAL,
				    "job %lld: a job ends success, failure, error or cancelled, "
				    "not %s",
				    (long long)job_id, store_status_name(status));
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = finish_tx(s, job_id, attempt, status, exit_code, failed_step, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	if (rc >= 0)
		queue_changed();
	return rc;
}

/* ---- lease expiry ---------------------------------------------------------------------------- */

/* lost: the attempt counts toward STORE_LEASES_LOST_MAX. */
static int expire_one_tx(struct store *s, const struct job_row *j, const char *reason, bool lost,
			 struct vmci_err *err)
{
	int rc = attempt_end_tx(s, j->id, j->attempt, STORE_ERROR, -1, NULL, reason, err);
	if (rc < 0)
		return rc;
	if (j->cancel_requested)
		return job_end_tx(s, j->id, j->run_id, j->attempt, STORE_CANCELLED, -1, NULL, err);
	if (!lost)
		return requeue_tx(s, j->id, j->run_id, j->attempt,
				  "UPDATE jobs SET status = 'queued', host = NULL, lease_ms = NULL,"
				  " lease_expires_ms = NULL WHERE id = ?",
				  reason, err);
	if (j->leases_lost + 1 >= STORE_LEASES_LOST_MAX)
		return job_end_tx(s, j->id, j->run_id, j->attempt, STORE_ERROR, -1, NULL, err);
	return requeue_tx(s, j->id, j->run_id, j->attempt,
			  "UPDATE jobs SET status = 'queued', host = NULL, lease_ms = NULL,"
			  " lease_expires_ms = NULL, leases_lost = leases_lost + 1 WHERE id = ?",
			  reason, err);
}

/*
 * Expires the running jobs whose lease ended before now_ms, or (host not
 * NULL) held by host, for why.
 */
static int expire_tx(struct store *s, int64_t now_ms, const char *host, enum store_requeue_why why,
		     struct vmci_err *err)
{
	struct store_stmt *st;
	int rc =
	    host ? db_query(s, &st, err,
			    "SELECT id FROM jobs WHERE status = 'running' AND host = ?"
			    " ORDER BY id {for_update}",
			    "s", host)
		 : db_query(s, &st, err,
			    "SELECT id FROM jobs WHERE status = 'running' AND lease_expires_ms < ?"
			    " ORDER BY id {for_update}",
			    "I", now_ms);
	if (rc < 0)
		return rc;
	int64_t *ids = NULL;
	size_t n = 0;
	while ((rc = db_step(s, st, err)) == 1) {
		int64_t *grown = realloc(ids, (n + 1) * sizeof(*ids));
		if (!grown) {
			rc = store_oom(err, "requeueing expired jobs");
			break;
		}
		ids = grown;
		ids[n++] = col_int(s, st, 0, 0);
	}
	db_done(s, st);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct job_row j;
		rc = job_row_tx(s, ids[i], &j, err);
		if (rc == 0 && !host)
			rc = expire_one_tx(s, &j, LEASE_EXPIRED, true, err);
		else if (rc == 0)
			rc = expire_one_tx(
			    s, &j, why == STORE_REQUEUE_STOPPED ? HOST_STOPPED : HOST_RESTARTED,
			    why == STORE_REQUEUE_RESTARTED, err);
	}
	free(ids);
	return rc < 0 ? rc : (int)n;
}

int store_requeue_expired(struct store *s, int64_t now_ms, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = expire_tx(s, now_ms, NULL, STORE_REQUEUE_RESTARTED, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	if (rc > 0)
		queue_changed();
	return rc;
}

int store_requeue_host(struct store *s, const char *host, enum store_requeue_why why,
		       struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = expire_tx(s, 0, host, why, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	if (rc > 0)
		queue_changed();
	return rc;
}

/* ---- cancel requests and retries ------------------------------------------------------- */

int store_job_cancel_requested(struct store *s, int64_t job_id, int attempt, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, false, err);
	struct job_row j;
	if (rc == 0)
		rc = job_row_tx(s, job_id, &j, err);
	if (rc == 0 && (j.status != STORE_RUNNING || j.attempt != attempt))
		rc = vmci_err_set(err, ESTALE,
				  "job %lld: attempt %d is no longer current (the job is %s, at "
				  "attempt %d): stop",
				  (long long)job_id, attempt, store_status_name(j.status),
				  j.attempt);
	if (rc == 0)
		rc = j.cancel_requested;
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

static int retry_tx(struct store *s, int64_t job_id, struct vmci_err *err)
{
	struct job_row j;
	int rc = job_row_tx(s, job_id, &j, err);
	if (rc < 0)
		return rc;
	if (!store_status_finished(j.status))
		return vmci_err_set(err, EBUSY,
				    "job %lld is still %s: only a finished job is retried",
				    (long long)job_id, store_status_name(j.status));
	if (j.status == STORE_SKIPPED)
		return vmci_err_set(err, EINVAL,
				    "job %lld was skipped because a job it needs did not succeed: "
				    "retry that one",
				    (long long)job_id);
	struct store_stmt *st;
	rc = db_query(
	    s, &st, err,
	    "SELECT d.id, d.name, d.status FROM job_needs n JOIN jobs d ON d.id = n.need_id"
	    " WHERE n.job_id = ? AND d.status <> 'success' ORDER BY d.idx LIMIT 1",
	    "I", job_id);
	if (rc < 0)
		return rc;
	rc = db_step(s, st, err);
	if (rc == 1)
		rc = vmci_err_set(
		    err, EINVAL,
		    "job %lld needs job %lld ('%s'), which is %s: retry that one first",
		    (long long)job_id, (long long)col_int(s, st, 0, 0), col_text(s, st, 1),
		    col_text(s, st, 2));
	db_done(s, st);
	if (rc < 0)
		return rc;
	int64_t changed =
	    db_exec(s, err,
		    "UPDATE jobs SET status = 'queued', host = NULL, exit_code = NULL,"
		    " failed_step = NULL, finished_ms = NULL, cancel_requested = 0,"
		    " errors_retried = 0, leases_lost = 0, pending_needs = 0,"
		    " lease_ms = NULL, lease_expires_ms = NULL WHERE id = ?",
		    "I", job_id);
	rc = changed < 0 ? (int)changed : 0;
	/* Jobs that need it wait for it again, and those it had skipped come back. */
	if (rc == 0)
		rc = graph_recount_dependents_tx(s, job_id, err);
	if (rc == 0)
		rc = graph_requeue_dependents_tx(s, job_id, err);
	if (rc == 0)
		rc = event_pack_tx(s, err, j.run_id, job_id, "job.retried", "{s:i}",
				   "after_attempt", j.attempt);
	if (rc == 0)
		rc = run_settle_tx(s, j.run_id, err);
	return rc;
}

int store_job_retry(struct store *s, int64_t job_id, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = retry_tx(s, job_id, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	if (rc == 0)
		queue_changed();
	return rc;
}
