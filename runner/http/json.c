/* Runs and jobs as the API shows them (SERVICE.md): times in RFC 3339 UTC. */
#include "runner/http/internal.h"

static json_t *time_json(int64_t ms)
{
	char t[STORE_TIME_LEN];
	store_time_format(ms, t);
	return ms ? json_string(t) : json_null();
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *step_json(const struct store_step *st)
{
	return json_pack("{s:i, s:s, s:s, s:i, s:o, s:o}", "index", st->index, "name", st->name,
			 "status", store_status_name(st->status), "exit_code", st->exit_code,
			 "started_at", time_json(st->started_ms), "finished_at",
			 time_json(st->finished_ms));
}

static json_t *attempt_json(const struct store_attempt *a)
{
	json_t *steps = json_array();
	for (size_t i = 0; i < a->n_steps; i++)
		json_array_append_new(steps, step_json(&a->steps[i]));
	return json_pack("{s:i, s:o, s:s, s:s, s:i, s:o, s:I, s:I, s:o, s:o, s:o}", "number",
			 a->number, "host", str_or_null(a->host), "status",
			 store_status_name(a->status), "reason", a->reason ? a->reason : "",
			 "exit_code", a->exit_code, "failed_step", str_or_null(a->failed_step),
			 "log_start", (json_int_t)a->log_start, "log_end", (json_int_t)a->log_end,
			 "started_at", time_json(a->started_ms), "finished_at",
			 time_json(a->finished_ms), "steps", steps);
}

json_t *http_job_json(const struct store_job *j)
{
	json_t *matrix = json_loads(j->matrix_json ? j->matrix_json : "{}", 0, NULL);
	json_t *needs = json_array();
	for (size_t i = 0; i < j->n_needs; i++)
		json_array_append_new(needs, json_integer(j->needs[i]));
	json_t *o = json_pack(
	    "{s:I, s:I, s:s, s:s, s:o, s:s, s:i, s:o, s:i, s:o, s:o, s:o, s:o, s:I, s:o}", "id",
	    (json_int_t)j->id, "run_id", (json_int_t)j->run_id, "name", j->name, "image", j->image,
	    "matrix", matrix ? matrix : json_object(), "status", store_status_name(j->status),
	    "attempt", j->attempt, "host", str_or_null(j->host), "exit_code", j->exit_code,
	    "failed_step", str_or_null(j->failed_step), "needs", needs, "started_at",
	    time_json(j->started_ms), "finished_at", time_json(j->finished_ms), "log_len",
	    (json_int_t)j->log_len, "cancel_requested", json_boolean(j->cancel_requested));
	if (o && j->attempts) {
		json_t *attempts = json_array();
		for (size_t i = 0; i < j->n_attempts; i++)
			json_array_append_new(attempts, attempt_json(&j->attempts[i]));
		json_object_set_new(o, "attempts", attempts);
	}
	return o;
}

json_t *http_run_json(const struct store_run *r)
{
	json_t *o = json_pack(
	    "{s:I, s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:o}", "id", (json_int_t)r->id, "repo",
	    r->repo, "ref", r->ref, "sha", str_or_null(r->sha), "trigger", r->trigger, "status",
	    store_status_name(r->status), "created_at", time_json(r->created_ms), "started_at",
	    time_json(r->started_ms), "finished_at", time_json(r->finished_ms));
	if (o && r->jobs) {
		json_t *jobs = json_array();
		for (size_t i = 0; i < r->n_jobs; i++)
			json_array_append_new(jobs, http_job_json(&r->jobs[i]));
		json_object_set_new(o, "jobs", jobs);
	}
	return o;
}
