/* Reading jobs: one with its attempts and steps, or all of a run's with their needs. */
#include "runner/store/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JOB_COLUMNS                                                                                \
	"id, run_id, idx, name, image, matrix, status, attempt, host, exit_code, failed_step,"     \
	" timeout_s, retries, grp, max_parallel, fail_fast, cancel_requested, lease_expires_ms,"   \
	" log_len, created_ms, started_ms, finished_ms"

static int job_from_row(struct store *s, struct store_stmt *st, struct store_job *j,
			struct vmci_err *err)
{
	j->id = col_int(s, st, 0, 0);
	j->run_id = col_int(s, st, 1, 0);
	j->index = (int)col_int(s, st, 2, 0);
	j->name = col_strdup(s, st, 3);
	j->image = col_strdup(s, st, 4);
	j->matrix_json = col_strdup(s, st, 5);
	j->status = col_status(s, st, 6);
	j->attempt = (int)col_int(s, st, 7, 0);
	j->host = col_strdup(s, st, 8);
	j->exit_code = (int)col_int(s, st, 9, -1);
	j->failed_step = col_strdup(s, st, 10);
	j->timeout_s = col_int(s, st, 11, 0);
	j->retries = (int)col_int(s, st, 12, 0);
	j->group = (int)col_int(s, st, 13, 0);
	j->max_parallel = (int)col_int(s, st, 14, 0);
	j->fail_fast = col_int(s, st, 15, 0) != 0;
	j->cancel_requested = col_int(s, st, 16, 0) != 0;
	j->lease_expires_ms = col_int(s, st, 17, 0);
	j->log_len = col_int(s, st, 18, 0);
	j->created_ms = col_int(s, st, 19, 0);
	j->started_ms = col_int(s, st, 20, 0);
	j->finished_ms = col_int(s, st, 21, 0);
	if (!j->name || !j->image || !j->matrix_json)
		return store_oom(err, "reading a job");
	return 0;
}

static void attempt_clear(struct store_attempt *a)
{
	free(a->host);
	free(a->reason);
	free(a->failed_step);
	for (size_t i = 0; i < a->n_steps; i++)
		free(a->steps[i].name);
	free(a->steps);
}

void store_job_clear(struct store_job *job)
{
	free(job->name);
	free(job->image);
	free(job->matrix_json);
	free(job->host);
	free(job->failed_step);
	free(job->needs);
	for (size_t i = 0; i < job->n_attempts; i++)
		attempt_clear(&job->attempts[i]);
	free(job->attempts);
	memset(job, 0, sizeof(*job));
}

void store_job_free(struct store_job *job)
{
	if (!job)
		return;
	store_job_clear(job);
	free(job);
}

static int push_need(struct store_job *j, int64_t need, struct vmci_err *err)
{
	int64_t *grown = realloc(j->needs, (j->n_needs + 1) * sizeof(*grown));
	if (!grown)
		return store_oom(err, "reading a job's needs");
	j->needs = grown;
	j->needs[j->n_needs++] = need;
	return 0;
}

int job_read_tx(struct store *s, int64_t job_id, struct store_job **out, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc =
	    db_query(s, &st, err, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?", "I", job_id);
	if (rc < 0)
		return rc;
	struct store_job *j = calloc(1, sizeof(*j));
	rc = j ? db_step(s, st, err) : store_oom(err, "reading a job");
	if (rc == 0)
		rc = vmci_err_set(err, ENOENT, "job %lld not found", (long long)job_id);
	if (rc == 1)
		rc = job_from_row(s, st, j, err);
	db_done(s, st);
	if (rc == 0)
		rc = db_query(s, &st, err,
			      "SELECT need_id FROM job_needs WHERE job_id = ? ORDER BY need_id",
			      "I", job_id);
	if (rc == 0) {
		while ((rc = db_step(s, st, err)) == 1)
			if ((rc = push_need(j, col_int(s, st, 0, 0), err)) < 0)
				break;
		db_done(s, st);
	}
	if (rc < 0) {
		store_job_free(j);
		return rc;
	}
	*out = j;
	return 0;
}

static int by_id(const void *a, const void *b)
{
	const struct store_job *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

static int by_index(const void *a, const void *b)
{
	const struct store_job *x = a, *y = b;
	return (x->index > y->index) - (x->index < y->index);
}

/* Reads the run's needs into its jobs, found by id (ids need not follow job order). */
static int needs_of_run_tx(struct store *s, int64_t run_id, struct store_job *jobs, size_t n,
			   struct vmci_err *err)
{
	qsort(jobs, n, sizeof(*jobs), by_id);
	struct store_stmt *st;
	int rc =
	    db_query(s, &st, err,
		     "SELECT n.job_id, n.need_id FROM job_needs n JOIN jobs j ON j.id = n.job_id"
		     " WHERE j.run_id = ? ORDER BY n.job_id, n.need_id",
		     "I", run_id);
	if (rc == 0) {
		while ((rc = db_step(s, st, err)) == 1) {
			struct store_job key = {.id = col_int(s, st, 0, 0)};
			struct store_job *j = bsearch(&key, jobs, n, sizeof(*jobs), by_id);
			if (j && (rc = push_need(j, col_int(s, st, 1, 0), err)) < 0)
				break;
		}
		db_done(s, st);
	}
	qsort(jobs, n, sizeof(*jobs), by_index);
	return rc < 0 ? rc : 0;
}

int jobs_of_run_tx(struct store *s, int64_t run_id, struct store_job **out, size_t *n,
		   struct vmci_err *err)
{
	int64_t count = 0;
	int rc = db_int(s, &count, err, "SELECT COUNT(*) FROM jobs WHERE run_id = ?", "I", run_id);
	if (rc < 0)
		return rc;
	struct store_job *jobs = calloc(count ? (size_t)count : 1, sizeof(*jobs));
	if (!jobs)
		return store_oom(err, "reading a run's jobs");
	struct store_stmt *st;
	size_t len = 0;
	rc = db_query(s, &st, err, "SELECT " JOB_COLUMNS " FROM jobs WHERE run_id = ? ORDER BY idx",
		      "I", run_id);
	if (rc == 0) {
		while (len < (size_t)count && (rc = db_step(s, st, err)) == 1)
			if ((rc = job_from_row(s, st, &jobs[len++], err)) < 0)
				break;
		db_done(s, st);
	}
	if (rc >= 0)
		rc = needs_of_run_tx(s, run_id, jobs, len, err);
	if (rc < 0) {
		for (size_t i = 0; i < len; i++)
			store_job_clear(&jobs[i]);
		free(jobs);
		return rc;
	}
	*out = jobs;
	*n = len;
	return 0;
}

/* ---- attempts and steps ------------------------------------------------------------------ */

static int attempts_tx(struct store *s, struct store_job *j, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc = db_query(s, &st, err,
			  "SELECT number, host, status, reason, exit_code, failed_step, log_start,"
			  " started_ms, finished_ms FROM attempts WHERE job_id = ? ORDER BY number",
			  "I", j->id);
	if (rc < 0)
		return rc;
	while ((rc = db_step(s, st, err)) == 1) {
		struct store_attempt *grown =
		    realloc(j->attempts, (j->n_attempts + 1) * sizeof(*grown));
		if (!grown) {
			rc = store_oom(err, "reading a job's attempts");
			break;
		}
		j->attempts = grown;
		struct store_attempt *a = &j->attempts[j->n_attempts++];
		memset(a, 0, sizeof(*a));
		a->number = (int)col_int(s, st, 0, 0);
		a->host = col_strdup(s, st, 1);
		a->status = col_status(s, st, 2);
		a->reason = col_strdup(s, st, 3);
		a->exit_code = (int)col_int(s, st, 4, -1);
		a->failed_step = col_strdup(s, st, 5);
		a->log_start = col_int(s, st, 6, 0);
		a->started_ms = col_int(s, st, 7, 0);
		a->finished_ms = col_int(s, st, 8, 0);
		if (!a->host || !a->reason) {
			rc = store_oom(err, "reading a job's attempts");
			break;
		}
	}
	db_done(s, st);
	/* An attempt's log ends where the next one's begins; the last one's at the log's end. */
	for (size_t i = 0; i < j->n_attempts; i++)
		j->attempts[i].log_end =
		    i + 1 < j->n_attempts ? j->attempts[i + 1].log_start : j->log_len;
	return rc < 0 ? rc : 0;
}

static int steps_tx(struct store *s, struct store_job *j, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc = db_query(s, &st, err,
			  "SELECT a.number, s.idx, s.name, s.status, s.exit_code, s.started_ms,"
			  " s.finished_ms FROM steps s JOIN attempts a ON a.id = s.attempt_id"
			  " WHERE a.job_id = ? ORDER BY a.number, s.idx",
			  "I", j->id);
	if (rc < 0)
		return rc;
	while ((rc = db_step(s, st, err)) == 1) {
		int number = (int)col_int(s, st, 0, 0);
		struct store_attempt *a = NULL;
		for (size_t i = 0; i < j->n_attempts; i++)
			if (j->attempts[i].number == number)
				a = &j->attempts[i];
		if (!a)
			continue;
		struct store_step *grown = realloc(a->steps, (a->n_steps + 1) * sizeof(*grown));
		if (!grown) {
			rc = store_oom(err, "reading a job's steps");
			break;
		}
		a->steps = grown;
		struct store_step *step = &a->steps[a->n_steps++];
		step->index = (int)col_int(s, st, 1, 0);
		step->name = col_strdup(s, st, 2);
		step->status = col_status(s, st, 3);
		step->exit_code = (int)col_int(s, st, 4, -1);
		step->started_ms = col_int(s, st, 5, 0);
		step->finished_ms = col_int(s, st, 6, 0);
		if (!step->name) {
			rc = store_oom(err, "reading a job's steps");
			break;
		}
	}
	db_done(s, st);
	return rc < 0 ? rc : 0;
}

int store_job_get(struct store *s, int64_t job_id, struct store_job **out, struct vmci_err *err)
{
	*out = NULL;
	store_lock(s);
	int rc = db_begin(s, false, err);
	if (rc == 0)
		rc = job_read_tx(s, job_id, out, err);
	if (rc == 0)
		rc = attempts_tx(s, *out, err);
	if (rc == 0)
		rc = steps_tx(s, *out, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	if (rc < 0) {
		store_job_free(*out);
		*out = NULL;
	}
	return rc;
}
