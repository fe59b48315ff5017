/*
 * The needs graph of a run: what one job's end, or its retry, does to the
 * jobs that need it and to its fail-fast group. Each function works
 * inside the caller's write transaction.
 */
#include "runner/store/internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* Queued jobs that need job_id count again how many of their needs have not succeeded. */
int graph_recount_dependents_tx(struct store *s, int64_t job_id, struct vmci_err *err)
{
	int64_t rc = db_exec(s, err,
			     "UPDATE jobs SET pending_needs = (SELECT COUNT(*) FROM job_needs n"
			     " JOIN jobs d ON d.id = n.need_id"
			     " WHERE n.job_id = jobs.id AND d.status <> 'success')"
			     " WHERE status = 'queued'"
			     " AND id IN (SELECT job_id FROM job_needs WHERE need_id = ?)",
			     "I", job_id);
	return rc < 0 ? (int)rc : 0;
}

int graph_skip_dependents_tx(struct store *s, int64_t job_id, struct vmci_err *err)
{
	int64_t rc = db_exec(s, err,
			     "WITH RECURSIVE dep(id) AS ("
			     " SELECT n.job_id FROM job_needs n JOIN jobs j ON j.id = n.job_id"
			     " WHERE n.need_id = ? AND j.status = 'queued'"
			     " UNION"
			     " SELECT n.job_id FROM job_needs n JOIN dep ON n.need_id = dep.id"
			     " JOIN jobs j ON j.id = n.job_id WHERE j.status = 'queued')"
			     " UPDATE jobs SET status = 'skipped', finished_ms = ?"
			     " WHERE id IN (SELECT id FROM dep)",
			     "II", job_id, store_now_ms(s));
	return rc < 0 ? (int)rc : 0;
}

/* Reads the ids a one-column query returns into *ids (malloc'd, *n of them). */
static int ids_tx(struct store *s, struct store_stmt *st, int64_t **ids, size_t *n,
		  struct vmci_err *err)
{
	int rc;
	*ids = NULL;
	*n = 0;
	while ((rc = db_step(s, st, err)) == 1) {
		int64_t *grown = realloc(*ids, (*n + 1) * sizeof(**ids));
		if (!grown) {
			rc = store_oom(err, "reading job ids");
			break;
		}
		*ids = grown;
		(*ids)[(*n)++] = col_int(s, st, 0, 0);
	}
	db_done(s, st);
	if (rc < 0) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return rc < 0 ? rc : 0;
}

/* fail-fast: the failed job's queued siblings are cancelled, its running ones asked to stop. */
static int fail_fast_tx(struct store *s, int64_t job_id, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc = db_query(s, &st, err, "SELECT run_id, grp, fail_fast, name FROM jobs WHERE id = ?",
			  "I", job_id);
	if (rc < 0)
		return rc;
	rc = db_step(s, st, err);
	int64_t run_id = rc == 1 ? col_int(s, st, 0, 0) : 0;
	int group = rc == 1 ? (int)col_int(s, st, 1, 0) : 0;
	bool on = rc == 1 && col_int(s, st, 2, 0);
	char why[200];
	snprintf(why, sizeof(why), "fail-fast: '%s' failed", rc == 1 ? col_text(s, st, 3) : "?");
	db_done(s, st);
	if (rc <= 0 || !on)
		return rc < 0 ? rc : 0;

	int64_t *ids = NULL;
	size_t n = 0;
	rc = db_query(s, &st, err,
		      "SELECT id FROM jobs WHERE run_id = ? AND grp = ? AND status = 'queued'"
		      " AND id <> ? ORDER BY idx",
		      "IiI", run_id, group, job_id);
	if (rc == 0)
		rc = ids_tx(s, st, &ids, &n, err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int64_t changed = db_exec(s, err,
					  "UPDATE jobs SET status = 'cancelled', finished_ms = ?"
					  " WHERE id = ?",
					  "II", store_now_ms(s), ids[i]);
		rc = changed < 0 ? (int)changed : 0;
		if (rc == 0)
			rc = event_pack_tx(s, err, run_id, ids[i], "job.finished", "{s:s, s:s}",
					   "status", "cancelled", "reason", why);
		if (rc == 0)
			rc = graph_skip_dependents_tx(s, ids[i], err);
	}
	free(ids);
	if (rc < 0)
		return rc;
	int64_t changed =
	    db_exec(s, err,
		    "UPDATE jobs SET cancel_requested = 1 WHERE run_id = ? AND grp = ?"
		    " AND status = 'running' AND id <> ?",
		    "IiI", run_id, group, job_id);
	return changed < 0 ? (int)changed : 0;
}

int graph_job_ended_tx(struct store *s, int64_t job_id, enum store_status status,
		       struct vmci_err *err)
{
	int rc = status == STORE_SUCCESS ? graph_recount_dependents_tx(s, job_id, err)
					 : graph_skip_dependents_tx(s, job_id, err);
	if (rc == 0 && (status == STORE_FAILURE || status == STORE_ERROR))
		rc = fail_fast_tx(s, job_id, err);
	return rc;
}

int graph_requeue_dependents_tx(struct store *s, int64_t job_id, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc =
	    db_query(s, &st, err,
		     "WITH RECURSIVE dep(id) AS ("
		     " SELECT n.job_id FROM job_needs n JOIN jobs j ON j.id = n.job_id"
		     " WHERE n.need_id = ? AND j.status = 'skipped'"
		     " UNION"
		     " SELECT n.job_id FROM job_needs n JOIN dep ON n.need_id = dep.id"
		     " JOIN jobs j ON j.id = n.job_id WHERE j.status = 'skipped')"
		     " SELECT j.id FROM jobs j WHERE j.id IN (SELECT id FROM dep) ORDER BY j.idx",
		     "I", job_id);
	int64_t *ids = NULL;
	size_t n = 0;
	if (rc == 0)
		rc = ids_tx(s, st, &ids, &n, err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int64_t changed = db_exec(s, err,
					  "UPDATE jobs SET status = 'queued', finished_ms = NULL"
					  " WHERE id = ?",
					  "I", ids[i]);
		rc = changed < 0 ? (int)changed : 0;
	}
	/*
	 * Each counts its needs again; one with a need that failed on its own
	 * (not through job_id) is skipped again, and so are its dependents.
	 */
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int64_t changed =
		    db_exec(s, err,
			    "UPDATE jobs SET pending_needs = (SELECT COUNT(*) FROM job_needs n"
			    " JOIN jobs d ON d.id = n.need_id"
			    " WHERE n.job_id = jobs.id AND d.status <> 'success')"
			    " WHERE id = ?",
			    "I", ids[i]);
		rc = changed < 0 ? (int)changed : 0;
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int64_t blocked = 0;
		rc = db_int(
		    s, &blocked, err,
		    "SELECT COUNT(*) FROM job_needs n JOIN jobs d ON d.id = n.need_id"
		    " WHERE n.job_id = ? AND d.status NOT IN ('queued', 'running', 'success')",
		    "I", ids[i]);
		if (rc >= 0 && blocked) {
			int64_t changed =
			    db_exec(s, err,
				    "UPDATE jobs SET status = 'skipped', finished_ms = ?"
				    " WHERE id = ? AND status = 'queued'",
				    "II", store_now_ms(s), ids[i]);
			rc = changed < 0 ? (int)changed : graph_skip_dependents_tx(s, ids[i], err);
		}
		rc = rc < 0 ? rc : 0;
	}
	free(ids);
	return rc;
}
