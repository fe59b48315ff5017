/* Steps of the current attempt: started, then finished with a status and an exit code. */
#include "runner/store/internal.h"

#include <errno.h>

static int attempt_id_tx(struct store *s, int64_t job_id, int attempt, int64_t *id,
			 struct vmci_err *err)
{
	int rc = job_current_tx(s, job_id, attempt, NULL, NULL, err);
	if (rc < 0)
		return rc;
	rc = db_int(s, id, err, "SELECT id FROM attempts WHERE job_id = ? AND number = ?", "Ii",
		    job_id, attempt);
	if (rc == 0)
		rc = vmci_err_set(err, ENOENT, "job %lld has no attempt %d", (long long)job_id,
				  attempt);
	return rc < 0 ? rc : 0;
}

static int start_tx(struct store *s, int64_t job_id, int attempt, int index, const char *name,
		    struct vmci_err *err)
{
	int64_t id = 0;
	int rc = attempt_id_tx(s, job_id, attempt, &id, err);
	if (rc < 0)
		return rc;
	int64_t changed =
	    db_exec(s, err,
		    "INSERT INTO steps (attempt_id, idx, name, status, started_ms)"
		    " VALUES (?, ?, ?, 'running', ?)"
		    " ON CONFLICT (attempt_id, idx) DO UPDATE SET name = excluded.name,"
		    " status = 'running', exit_code = NULL,"
		    " started_ms = excluded.started_ms, finished_ms = NULL",
		    "IisI", id, index, name, store_now_ms(s));
	return changed < 0 ? (int)changed : 0;
}

int store_step_start(struct store *s, int64_t job_id, int attempt, int index, const char *name,
		     struct vmci_err *err)
{
	if (index < 0 || !name || !*name)
		return vmci_err_set(err, EINVAL, "job %lld: a step needs an index and a name",
				    (long long)job_id);
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = start_tx(s, job_id, attempt, index, name, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

static int finish_tx(struct store *s, int64_t job_id, int attempt, int index,
		     enum store_status status, int exit_code, struct vmci_err *err)
{
	int64_t id = 0;
	int rc = attempt_id_tx(s, job_id, attempt, &id, err);
	if (rc < 0)
		return rc;
	int64_t changed =
	    db_exec(s, err,
		    "UPDATE steps SET status = ?, exit_code = ?, finished_ms = ?"
		    " WHERE attempt_id = ? AND idx = ?",
		    "seIIi", store_status_name(status), exit_code, store_now_ms(s), id, index);
	if (changed == 0)
		return vmci_err_set(err, ENOENT, "job %lld attempt %d: step %d was never started",
				    (long long)job_id, attempt, index);
	return changed < 0 ? (int)changed : 0;
}

int store_step_finish(struct store *s, int64_t job_id, int attempt, int index,
		      enum store_status status, int exit_code, struct vmci_err *err)
{
	if (!store_status_finished(status))
		return vmci_err_set(err, EINVAL, "job %lld: a step cannot finish %s",
				    (long long)job_id, store_status_name(status));
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = finish_tx(s, job_id, attempt, index, status, exit_code, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}
