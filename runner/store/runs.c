/* Runs: stored whole with their jobs, listed newest first, cancelled, and kept in step with their
 * jobs. */
#include "runner/store/internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define RUN_COLUMNS "id, repo, ref, sha, trigger_kind, status, created_ms, started_ms, finished_ms"

static int run_from_row(struct store *s, struct store_stmt *st, struct store_run *r,
			struct vmci_err *err)
{
	r->id = col_int(s, st, 0, 0);
	r->repo = col_strdup(s, st, 1);
	r->ref = col_strdup(s, st, 2);
	r->sha = col_strdup(s, st, 3);
	r->trigger = col_strdup(s, st, 4);
	r->status = col_status(s, st, 5);
	r->created_ms = col_int(s, st, 6, 0);
	r->started_ms = col_int(s, st, 7, 0);
	r->finished_ms = col_int(s, st, 8, 0);
	if (!r->repo || !r->ref || !r->sha || !r->trigger)
		return store_oom(err, "reading a run");
	return 0;
}

static void run_clear(struct store_run *r)
{
	free(r->repo);
	free(r->ref);
	free(r->sha);
	free(r->trigger);
	for (size_t i = 0; i < r->n_jobs; i++)
		store_job_clear(&r->jobs[i]);
	free(r->jobs);
}

void store_run_free(struct store_run *run)
{
	if (!run)
		return;
	run_clear(run);
	free(run);
}

void store_runs_free(struct store_run *runs, size_t n)
{
	for (size_t i = 0; runs && i < n; i++)
		run_clear(&runs[i]);
	free(runs);
}

/* ---- create ------------------------------------------------------------------------- */

/* Needs in range, not the job itself, not twice, and no cycle (Kahn's algorithm). */
static int check_graph(const struct store_job_spec *jobs, size_t n, struct vmci_err *err)
{
	size_t edges = 0;
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < jobs[i].n_needs; k++) {
			size_t need = jobs[i].needs[k];
			if (need >= n || need == i)
				return vmci_err_set(
				    err, EINVAL, "job '%s' needs job #%zu, which is %s",
				    jobs[i].name, need, need == i ? "itself" : "not in the run");
			for (size_t m = 0; m < k; m++)
				if (jobs[i].needs[m] == need)
					return vmci_err_set(err, EINVAL,
							    "job '%s' needs '%s' twice",
							    jobs[i].name, jobs[need].name);
		}
		edges += jobs[i].n_needs;
	}
	/* The jobs that need each job: first[j] .. first[j + 1] in users. */
	size_t *first = calloc(n + 1, sizeof(*first)), *users = calloc(edges + 1, sizeof(*users));
	size_t *blocked = calloc(n, sizeof(*blocked)), *ready = calloc(n, sizeof(*ready));
	int rc = first && users && blocked && ready ? 0 : store_oom(err, "checking a run's needs");
	for (size_t i = 0; rc == 0 && i < n; i++)
		for (size_t k = 0; k < jobs[i].n_needs; k++)
			first[jobs[i].needs[k] + 1]++;
	for (size_t i = 0; rc == 0 && i < n; i++)
		first[i + 1] += first[i];
	for (size_t i = 0; rc == 0 && i < n; i++)
		for (size_t k = 0; k < jobs[i].n_needs; k++)
			users[first[jobs[i].needs[k]] + blocked[jobs[i].needs[k]]++] = i;
	size_t head = 0, tail = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		blocked[i] = jobs[i].n_needs;
		if (!blocked[i])
			ready[tail++] = i;
	}
	/* A job whose needs are all done frees the jobs that need it. */
	while (rc == 0 && head < tail) {
		size_t done = ready[head++];
		for (size_t u = first[done]; u < first[done + 1]; u++)
			if (--blocked[users[u]] == 0)
				ready[tail++] = users[u];
	}
	for (size_t i = 0; rc == 0 && tail < n && i < n; i++)
		if (blocked[i])
			rc = vmci_err_set(err, EINVAL,
					  "job '%s' is in a cycle of needs: it could never start",
					  jobs[i].name);
	free(first);
	free(users);
	free(blocked);
	free(ready);
	return rc;
}

static int check_spec(const struct store_run_spec *run, const struct store_job_spec *jobs, size_t n,
		      struct vmci_err *err)
{
	if (!run->repo || !*run->repo || !run->ref || !*run->ref || !run->trigger || !*run->trigger)
		return vmci_err_set(err, EINVAL, "a run needs a repo, a ref and a trigger");
	if (n == 0)
		return vmci_err_set(err, EINVAL, "run of %s %s: no jobs", run->repo, run->ref);
	for (size_t i = 0; i < n; i++) {
		const struct store_job_spec *j = &jobs[i];
		if (!j->name || !*j->name || !j->image || !*j->image)
			return vmci_err_set(err, EINVAL, "run of %s %s: job #%zu has no %s",
					    run->repo, run->ref, i,
					    !j->name || !*j->name ? "name" : "image");
		if (j->matrix_json) {
			json_t *m = json_loads(j->matrix_json, JSON_DECODE_ANY, NULL);
			bool object = json_is_object(m);
			json_decref(m);
			if (!object)
				return vmci_err_set(
				    err, EINVAL, "job '%s': its matrix is not a JSON object: %.60s",
				    j->name, j->matrix_json);
		}
		if (j->timeout_s < 0 || j->retries < 0 || j->max_parallel < 0)
			return vmci_err_set(err, EINVAL,
					    "job '%s': timeout, retries and max-parallel cannot be "
					    "negative",
					    j->name);
	}
	return check_graph(jobs, n, err);
}

/* *declined: what make_jobs returned when it was positive (the transaction is then rolled back). */
static int create_tx(struct store *s, const struct store_run_spec *run, store_jobs_fn make_jobs,
		     void *ctx, int64_t *run_id, int *declined, struct vmci_err *err)
{
	int64_t now = store_now_ms(s), id = 0;
	int rc = db_int(s, &id, err,
			"INSERT INTO runs (repo, ref, sha, trigger_kind, status, created_ms) "
			"VALUES (?, ?, ?, ?, 'queued', ?) RETURNING id",
			"ssssI", run->repo, run->ref, run->sha ? run->sha : "", run->trigger, now);
	if (rc == 0)
		rc = vmci_err_set(err, EIO, "store %s: a new run got no id", s->url);
	if (rc < 0)
		return rc;
	/* The jobs are made knowing the id: ${{ vmci.run_id }} expands as the workers will. */
	const struct store_job_spec *jobs = NULL;
	size_t n = 0;
	rc = make_jobs(ctx, id, &jobs, &n, err);
	if (rc > 0)
		*declined = rc;
	if (rc != 0)
		return rc > 0 ? -ECANCELED : rc;
	rc = check_spec(run, jobs, n, err);
	if (rc < 0)
		return rc;
	int64_t *ids = calloc(n, sizeof(*ids));
	if (!ids)
		return store_oom(err, "storing a run");
	for (size_t i = 0; i < n && rc >= 0; i++) {
		const struct store_job_spec *j = &jobs[i];
		rc = db_int(s, &ids[i], err,
			    "INSERT INTO jobs (run_id, idx, name, image, matrix, grp, fail_fast, "
			    "max_parallel, timeout_s, retries, status, pending_needs, created_ms) "
			    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?) RETURNING id",
			    "IisssiiiIiiI", id, (int)i, j->name, j->image,
			    j->matrix_json ? j->matrix_json : "{}", j->group, (int)j->fail_fast,
			    j->max_parallel, j->timeout_s, j->retries, (int)j->n_needs, now);
		if (rc == -EEXIST)
			rc = vmci_err_set(err, EEXIST,
					  "run of %s %s: job name '%s' is used twice (names of a "
					  "run's jobs are unique)",
					  run->repo, run->ref, j->name);
	}
	for (size_t i = 0; i < n && rc >= 0; i++)
		for (size_t k = 0; k < jobs[i].n_needs && rc >= 0; k++) {
			int64_t changed =
			    db_exec(s, err, "INSERT INTO job_needs (job_id, need_id) VALUES (?, ?)",
				    "II", ids[i], ids[jobs[i].needs[k]]);
			rc = changed < 0 ? (int)changed : 0;
		}
	free(ids);
	if (rc >= 0)
		rc = event_pack_tx(s, err, id, 0, "run.created", "{s:s, s:s, s:s, s:I}", "ref",
				   run->ref, "sha", run->sha ? run->sha : "", "trigger",
				   run->trigger, "jobs", (json_int_t)n);
	if (rc >= 0)
		*run_id = id;
	return rc < 0 ? rc : 0;
}

int store_run_create_with(struct store *s, const struct store_run_spec *run,
			  store_jobs_fn make_jobs, void *ctx, int64_t *run_id, struct vmci_err *err)
{
	*run_id = 0;
	int declined = 0;
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = create_tx(s, run, make_jobs, ctx, run_id, &declined, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	if (declined)
		*run_id = 0;
	else if (rc == 0)
		queue_changed();
	return declined ? declined : rc;
}

struct given_jobs {
	const struct store_job_spec *jobs;
	size_t n;
};

static int given(void *ctx, int64_t run_id, const struct store_job_spec **jobs, size_t *n,
		 struct vmci_err *err)
{
	const struct given_jobs *g = ctx;
	*jobs = g->jobs;
	*n = g->n;
	return 0;
}

int store_run_create(struct store *s, const struct store_run_spec *run,
		     const struct store_job_spec *jobs, size_t n_jobs, int64_t *run_id,
		     struct vmci_err *err)
{
	*run_id = 0;
	int rc = check_spec(run, jobs, n_jobs, err);
	if (rc < 0)
		return rc;
	struct given_jobs g = {jobs, n_jobs};
	return store_run_create_with(s, run, given, &g, run_id, err);
}

/* ---- read ---------------------------------------------------------------------------- */

static int get_tx(struct store *s, int64_t run_id, struct store_run **out, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc =
	    db_query(s, &st, err, "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?", "I", run_id);
	if (rc < 0)
		return rc;
	struct store_run *r = calloc(1, sizeof(*r));
	rc = r ? db_step(s, st, err) : store_oom(err, "reading a run");
	if (rc == 0)
		rc = vmci_err_set(err, ENOENT, "run %lld not found", (long long)run_id);
	if (rc == 1)
		rc = run_from_row(s, st, r, err);
	db_done(s, st);
	if (rc == 0)
		rc = jobs_of_run_tx(s, run_id, &r->jobs, &r->n_jobs, err);
	if (rc < 0) {
		store_run_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int store_run_get(struct store *s, int64_t run_id, struct store_run **out, struct vmci_err *err)
{
	*out = NULL;
	store_lock(s);
	int rc = db_begin(s, false, err);
	if (rc == 0)
		rc = get_tx(s, run_id, out, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	if (rc < 0 && *out) {
		store_run_free(*out);
		*out = NULL;
	}
	return rc;
}

static int list_tx(struct store *s, const struct store_run_filter *f, int limit,
		   struct store_run **out, size_t *n, struct vmci_err *err)
{
	const char *repo = f && f->repo ? f->repo : "";
	const char *status = f && f->status ? f->status : "";
	int64_t before = f ? f->before : 0;
	struct store_stmt *st;
	int rc = db_query(s, &st, err,
			  "SELECT " RUN_COLUMNS " FROM runs"
			  " WHERE (? = '' OR repo = ?) AND (? = '' OR status = ?)"
			  " AND (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?",
			  "ssssIIi", repo, repo, status, status, before, before, limit);
	if (rc < 0)
		return rc;
	struct store_run *runs = calloc((size_t)limit, sizeof(*runs));
	size_t len = 0;
	if (!runs)
		rc = store_oom(err, "listing runs");
	while (runs && (rc = db_step(s, st, err)) == 1)
		if ((rc = run_from_row(s, st, &runs[len++], err)) < 0)
			break;
	db_done(s, st);
	if (rc < 0) {
		store_runs_free(runs, len);
		return rc;
	}
	*out = runs;
	*n = len;
	return 0;
}

int store_runs_list(struct store *s, const struct store_run_filter *filter, struct store_run **out,
		    size_t *n, struct vmci_err *err)
{
	*out = NULL;
	*n = 0;
	enum store_status status;
	if (filter && filter->status && *filter->status &&
	    store_status_parse(filter->status, &status, err) < 0)
		return -EINVAL;
	int limit = filter && filter->limit > 0 ? filter->limit : 50;
	if (limit > 500)
		limit = 500;
	store_lock(s);
	int rc = db_begin(s, false, err);
	if (rc == 0)
		rc = list_tx(s, filter, limit, out, n, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

/* ---- status --------------------------------------------------------------------------- */

int run_settle_tx(struct store *s, int64_t run_id, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc =
	    db_query(s, &st, err,
		     "SELECT status, started_ms, finished_ms FROM runs WHERE id = ? {for_update}",
		     "I", run_id);
	if (rc < 0)
		return rc;
	rc = db_step(s, st, err);
	enum store_status old = rc == 1 ? col_status(s, st, 0) : STORE_QUEUED;
	bool started = rc == 1 && col_int(s, st, 1, 0) != 0;
	db_done(s, st);
	if (rc == 0)
		return vmci_err_set(err, ENOENT, "run %lld not found", (long long)run_id);
	if (rc < 0)
		return rc;

	int count[STORE_SKIPPED + 1] = {0};
	rc = db_query(s, &st, err,
		      "SELECT status, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY status", "I",
		      run_id);
	if (rc < 0)
		return rc;
	while ((rc = db_step(s, st, err)) == 1)
		count[col_status(s, st, 0)] += (int)col_int(s, st, 1, 0);
	db_done(s, st);
	if (rc < 0)
		return rc;

	enum store_status now;
	if (count[STORE_QUEUED] || count[STORE_RUNNING])
		now = started || count[STORE_RUNNING] ? STORE_RUNNING : STORE_QUEUED;
	else if (count[STORE_FAILURE])
		now = STORE_FAILURE;
	else if (count[STORE_ERROR])
		now = STORE_ERROR;
	else if (count[STORE_CANCELLED])
		now = STORE_CANCELLED;
	else
		now = STORE_SUCCESS;
	if (now == old)
		return 0;
	bool finished = store_status_finished(now);
	int64_t changed =
	    db_exec(s, err, "UPDATE runs SET status = ?, finished_ms = ? WHERE id = ?", "sJI",
		    store_status_name(now), finished ? store_now_ms(s) : (int64_t)0, run_id);
	if (changed < 0)
		return (int)changed;
	if (finished)
		return event_pack_tx(s, err, run_id, 0, "run.finished", "{s:s}", "status",
				     store_status_name(now));
	return 0;
}

/* ---- cancel ---------------------------------------------------------------------------- */

static int cancel_tx(struct store *s, int64_t run_id, struct vmci_err *err)
{
	int64_t found = 0;
	int rc =
	    db_int(s, &found, err, "SELECT id FROM runs WHERE id = ? {for_update}", "I", run_id);
	if (rc == 0)
		return vmci_err_set(err, ENOENT, "run %lld not found", (long long)run_id);
	if (rc < 0)
		return rc;
	int64_t queued = db_exec(s, err,
				 "UPDATE jobs SET status = 'cancelled', cancel_requested = 1,"
				 " finished_ms = ? WHERE run_id = ? AND status = 'queued'",
				 "II", store_now_ms(s), run_id);
	if (queued < 0)
		return (int)queued;
	int64_t running =
	    db_exec(s, err,
		    "UPDATE jobs SET cancel_requested = 1"
		    " WHERE run_id = ? AND status = 'running' AND cancel_requested = 0",
		    "I", run_id);
	if (running < 0)
		return (int)running;
	if (queued + running == 0)
		return 0;
	rc = event_pack_tx(s, err, run_id, 0, "run.cancelled", "{s:I, s:I}", "queued",
			   (json_int_t)queued, "running", (json_int_t)running);
	if (rc == 0)
		rc = run_settle_tx(s, run_id, err);
	return rc < 0 ? rc : (int)(queued + running);
}

int store_run_cancel(struct store *s, int64_t run_id, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = cancel_tx(s, run_id, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}
