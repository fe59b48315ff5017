/*
 * A run of a vmci server followed from a client (contract in runner/remote.h).
 *
 * What was already sent to the sink is kept per job (the attempt, how
 * many of its steps started and finished, whether it ended), so that each
 * poll sends only what is new, in the executor's order, however many
 * changes one poll sees at once.
 */
#include "runner/remote.h"

#include "pipelines/pipelines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct remote_job {
	int64_t id;
	int attempt;		  /* the last attempt sent as started; 0: none */
	size_t started, finished; /* steps of that attempt sent as started, as finished */
	bool ended;
	struct pipe_step *steps; /* names learnt so far, owned */
	size_t n_steps;
};

struct remote_run {
	struct pipe_run run;
	struct pipe_job *jobs; /* run.jobs, owned */
	struct remote_job *state;
	int64_t id;
	char *name; /* run.name */
};

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static long long num(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

int64_t remote_time_ms(const json_t *time)
{
	const char *s = json_string_value(time);
	struct tm tm = {0};
	int frac = 0, n = 0;
	if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			 &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return 0;
	if (s[n] == '.') /* milliseconds: the first three digits of the fraction */
		for (int k = 1, scale = 100; k <= 3 && s[n + k] >= '0' && s[n + k] <= '9';
		     k++, scale /= 10)
			frac += (s[n + k] - '0') * scale;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	return t < 0 ? 0 : (int64_t)t * 1000 + frac;
}

static int64_t span_ms(const json_t *o)
{
	int64_t start = remote_time_ms(json_object_get(o, "started_at"));
	int64_t end = remote_time_ms(json_object_get(o, "finished_at"));
	return start && end > start ? end - start : 0;
}

int64_t remote_run_elapsed_ms(const json_t *run)
{
	int64_t start = remote_time_ms(json_object_get(run, "created_at"));
	int64_t end = remote_time_ms(json_object_get(run, "finished_at"));
	if (!end) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		end = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	}
	return start && end > start ? end - start : 0;
}

static bool status_finished(const char *st)
{
	return *st && strcmp(st, "queued") && strcmp(st, "running");
}

bool remote_run_finished(const json_t *run)
{
	return status_finished(str(run, "status"));
}

static enum runner_result result_of(const char *st)
{
	if (!strcmp(st, "success"))
		return RUNNER_PASSED;
	if (!strcmp(st, "failure"))
		return RUNNER_FAILED;
	if (!strcmp(st, "cancelled"))
		return RUNNER_CANCELLED;
	if (!strcmp(st, "skipped"))
		return RUNNER_SKIPPED;
	return RUNNER_ERROR;
}

int remote_run_new(const json_t *run, struct remote_run **out, struct vmci_err *err)
{
	*out = NULL;
	json_t *jobs = json_object_get(run, "jobs");
	if (!json_is_object(run) || !json_is_array(jobs))
		return vmci_err_set(err, EINVAL, "the server's answer is not a run with its jobs");
	size_t n = json_array_size(jobs);
	struct remote_run *r = calloc(1, sizeof(*r));
	if (r) {
		r->jobs = calloc(n ? n : 1, sizeof(*r->jobs));
		r->state = calloc(n ? n : 1, sizeof(*r->state));
	}
	if (r && r->jobs && r->state &&
	    asprintf(&r->name, "%s #%lld", str(run, "repo"), num(run, "id")) < 0)
		r->name = NULL;
	for (size_t i = 0; r && r->name && i < n; i++) {
		json_t *j = json_array_get(jobs, i);
		r->state[i].id = num(j, "id");
		r->jobs[i].name = strdup(str(j, "name"));
		r->jobs[i].image = strdup(str(j, "image"));
		r->jobs[i].id = r->jobs[i].name;
		r->run.n_jobs = i + 1;
		if (!r->jobs[i].name || !r->jobs[i].image) {
			remote_run_free(r);
			r = NULL;
		}
	}
	if (!r || !r->name) {
		remote_run_free(r);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	r->id = num(run, "id");
	r->run.name = r->name;
	r->run.jobs = r->jobs;
	r->run.n_jobs = n;
	*out = r;
	return 0;
}

const struct pipe_run *remote_run_pipeline(const struct remote_run *r)
{
	return &r->run;
}

/* Makes job i's step k known by name (the steps of every attempt are the same). */
static int learn_step(struct remote_run *r, size_t i, size_t k, const char *name)
{
	struct remote_job *st = &r->state[i];
	if (k < st->n_steps)
		return 0;
	struct pipe_step *steps = realloc(st->steps, (k + 1) * sizeof(*steps));
	if (!steps)
		return -ENOMEM;
	st->steps = steps;
	for (size_t s = st->n_steps; s <= k; s++) {
		steps[s] = (struct pipe_step){.name = strdup(s == k ? name : "")};
		if (!steps[s].name)
			return -ENOMEM;
		st->n_steps = s + 1;
	}
	r->jobs[i].steps = steps;
	r->jobs[i].n_steps = st->n_steps;
	return 0;
}

static void step_result(const json_t *step, struct runner_step_result *res)
{
	memset(res, 0, sizeof(*res));
	int code = (int)num(step, "exit_code");
	res->result = !strcmp(str(step, "status"), "success") ? RUNNER_PASSED : RUNNER_FAILED;
	res->exit.kind = VM_EXITED;
	res->exit.code = code;
	res->duration_ms = span_ms(step);
	if (code >= 0)
		snprintf(res->how, sizeof(res->how), "exited %d", code);
	else
		snprintf(res->how, sizeof(res->how), "%s", str(step, "status"));
}

/* The end of attempt a's log, at most REMOTE_TAIL_MAX bytes. */
static int log_tail(const struct remote_api *api, int64_t job_id, const json_t *a, struct buf *out)
{
	long long start = num(a, "log_start"), end = num(a, "log_end");
	long long from = end - REMOTE_TAIL_MAX > start ? end - REMOTE_TAIL_MAX : start;
	if (end <= from)
		return 0;
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld/log?offset=%lld", (long long)job_id, from);
	int rc = api->get_bytes(api->ctx, path, out);
	if (!rc && out->len > (size_t)(end - from))
		out->len = (size_t)(end - from);
	return rc;
}

/* The index of the step named name that failed in attempt a, or -1. */
static long failed_index(const json_t *a, const char *name)
{
	size_t k;
	json_t *step;
	json_array_foreach(json_object_get(a, "steps"), k, step)
	{
		if (!strcmp(str(step, "name"), name) && !strcmp(str(step, "status"), "failure"))
			return (long)k;
	}
	return -1;
}

static void job_result(const json_t *job, const json_t *last, struct runner_job_result *res)
{
	memset(res, 0, sizeof(*res));
	const char *st = str(job, "status");
	res->result = result_of(st);
	res->attempts = (int)num(job, "attempt");
	res->duration_ms = span_ms(job);
	res->failed_step = -1;
	const char *failed = json_string_value(json_object_get(job, "failed_step"));
	if (failed && last)
		res->failed_step = failed_index(last, failed);
	long long code = num(job, "exit_code");
	switch (res->result) {
	case RUNNER_FAILED:
		if (code >= 0)
			snprintf(res->how, sizeof(res->how), "exited %lld", code);
		else
			snprintf(res->how, sizeof(res->how), "failed");
		break;
	case RUNNER_ERROR: {
		const char *why = last ? str(last, "reason") : "";
		snprintf(res->how, sizeof(res->how), "error");
		snprintf(res->error, sizeof(res->error), "%s (its log: vmci logs %lld)",
			 *why ? why : "the infrastructure failed", num(job, "id"));
		break;
	}
	case RUNNER_SKIPPED:
		snprintf(res->how, sizeof(res->how), "a job it needs did not succeed");
		break;
	case RUNNER_CANCELLED:
		snprintf(res->how, sizeof(res->how), "cancelled");
		break;
	default: /* as the executor says it: the last step's end */
		snprintf(res->how, sizeof(res->how), "exited %lld", code > 0 ? code : 0);
		break;
	}
}

/* Sends the steps of attempt a that the sink has not heard of. */
static int send_steps(struct remote_run *r, size_t i, const json_t *job, const json_t *a, bool last,
		      const struct remote_api *api, const struct runner_sink *sink)
{
	struct remote_job *st = &r->state[i];
	json_t *steps = json_object_get(a, "steps");
	const char *failed = json_string_value(json_object_get(job, "failed_step"));
	bool job_failed = !strcmp(str(job, "status"), "failure");
	bool job_ended = status_finished(str(job, "status"));
	for (size_t k = 0; k < json_array_size(steps); k++) {
		json_t *step = json_array_get(steps, k);
		if (learn_step(r, i, k, str(step, "name")))
			return -ENOMEM;
		if (k >= st->started) {
			if (sink->step_started)
				sink->step_started(sink->ctx, i, k);
			st->started = k + 1;
		}
		if (k < st->finished || !status_finished(str(step, "status")))
			continue;
		/*
		 * A failed step whose job goes on ending (artifacts, the VM) waits for
		 * the job: when it is the job's failing step, the end of the log goes
		 * before it, as output, for the summary.
		 */
		if (last && !job_ended && !strcmp(str(step, "status"), "failure") &&
		    k + 1 == json_array_size(steps))
			break;
		if (last && job_failed && failed && (long)k == failed_index(a, failed)) {
			struct buf tail = {0};
			int rc = log_tail(api, st->id, a, &tail);
			if (!rc && tail.len && sink->output)
				sink->output(sink->ctx, i, k, 1, tail.data, tail.len);
			buf_free(&tail);
			if (rc)
				return rc;
		}
		struct runner_step_result res;
		step_result(step, &res);
		if (sink->step_finished)
			sink->step_finished(sink->ctx, i, k, &res);
		st->finished = k + 1;
	}
	return 0;
}

/* Job i as its detail (GET /api/v1/jobs/ID) shows it. */
static int send_job(struct remote_run *r, size_t i, const json_t *job, const struct remote_api *api,
		    const struct runner_sink *sink)
{
	struct remote_job *st = &r->state[i];
	json_t *attempts = json_object_get(job, "attempts");
	size_t n = json_array_size(attempts);
	const json_t *last = n ? json_array_get(attempts, n - 1) : NULL;
	for (size_t k = 0; k < n; k++) {
		json_t *a = json_array_get(attempts, k);
		int number = (int)num(a, "number");
		if (number < st->attempt)
			continue;
		if (number > st->attempt) {
			if (st->attempt && sink->job_retrying) {
				json_t *prev = k ? json_array_get(attempts, k - 1) : NULL;
				const char *why = prev ? str(prev, "reason") : "";
				sink->job_retrying(sink->ctx, i, st->attempt,
						   *why ? why : "the infrastructure failed");
			}
			if (sink->job_started)
				sink->job_started(sink->ctx, i, number);
			st->attempt = number;
			st->started = st->finished = 0;
		}
		int rc = send_steps(r, i, job, a, a == last, api, sink);
		if (rc)
			return rc;
	}
	return 0;
}

int remote_run_update(struct remote_run *r, const json_t *run, const struct remote_api *api,
		      const struct runner_sink *sink)
{
	json_t *jobs = json_object_get(run, "jobs");
	for (size_t i = 0; i < r->run.n_jobs; i++) {
		struct remote_job *st = &r->state[i];
		json_t *job = json_array_get(jobs, i);
		if (st->ended || num(job, "id") != st->id)
			continue;
		const char *status = str(job, "status");
		bool ended = status_finished(status);
		int attempt = (int)num(job, "attempt");
		/* Nothing new: still queued as it was, or running the attempt and steps known. */
		if (!ended && attempt == st->attempt && !strcmp(status, "queued"))
			continue;
		json_t *detail = NULL;
		if (attempt > 0) {
			char path[64];
			snprintf(path, sizeof(path), "/api/v1/jobs/%lld", (long long)st->id);
			int rc = api->get_json(api->ctx, path, &detail);
			if (rc)
				return rc;
			/* The detail is newer than the run: the ending is the detail's. */
			ended = status_finished(str(detail, "status"));
			rc = send_job(r, i, detail, api, sink);
			if (rc) {
				json_decref(detail);
				return rc;
			}
		}
		if (ended) {
			const json_t *src = detail ? detail : job;
			json_t *attempts = json_object_get(src, "attempts");
			size_t n = json_array_size(attempts);
			struct runner_job_result res;
			job_result(src, n ? json_array_get(attempts, n - 1) : NULL, &res);
			if (sink->job_finished)
				sink->job_finished(sink->ctx, i, &res);
			st->ended = true;
		}
		json_decref(detail);
	}
	return 0;
}

int remote_run_follow(struct remote_run *r, const struct remote_api *api,
		      const struct runner_sink *sink, int interval_ms, json_t **last)
{
	char path[64];
	snprintf(path, sizeof(path), "/api/v1/runs/%lld", (long long)r->id);
	if (last)
		*last = NULL;
	for (;;) {
		json_t *run = NULL;
		int rc = api->get_json(api->ctx, path, &run);
		if (!rc)
			rc = remote_run_update(r, run, api, sink);
		bool done = !rc && remote_run_finished(run);
		if (rc || done) {
			if (last && !rc)
				*last = run;
			else
				json_decref(run);
			return rc;
		}
		json_decref(run);
		usleep((useconds_t)interval_ms * 1000);
	}
}

void remote_run_free(struct remote_run *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->jobs && r->state && i < r->run.n_jobs; i++) {
		free((char *)r->jobs[i].name);
		free((char *)r->jobs[i].image);
		for (size_t k = 0; k < r->state[i].n_steps; k++)
			free((char *)r->state[i].steps[k].name);
		free(r->state[i].steps);
	}
	free(r->jobs);
	free(r->state);
	free(r->name);
	free(r);
}
