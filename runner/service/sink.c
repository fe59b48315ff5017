/*
 * A job's sink for the service: steps into the store as they start and
 * end, output through the job's log cap into a buffer that the worker
 * flushes to the store every ~100 ms, so a follower sees lines quickly
 * without a write transaction per chunk.
 */
#include "runner/service/internal.h"
#include "runner/runner.h"
#include "runner/store.h"
#include "pipelines/pipelines.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct service_job_log {
	struct store *store;
	int64_t job_id;
	int attempt;
	const struct pipe_run *run;
	pthread_mutex_t lock;	    /* cap and pending */
	pthread_mutex_t flush_lock; /* one flush at a time: bytes stay in order */
	struct runner_log_cap *cap;
	struct buf pending;
	int exit_code;
	bool stale;
};

static int to_pending(void *ctx, const void *data, size_t len)
{
	struct service_job_log *l = ctx;
	return buf_append(&l->pending, data, len);
}

int service_job_log_new(struct store *s, int64_t job_id, int attempt, int64_t limit,
			const struct pipe_run *run, struct service_job_log **out,
			struct vmci_err *err)
{
	*out = NULL;
	struct service_job_log *l = calloc(1, sizeof(*l));
	if (!l)
		return vmci_err_set(err, ENOMEM, "out of memory");
	*l = (struct service_job_log){
	    .store = s, .job_id = job_id, .attempt = attempt, .run = run, .exit_code = -1};
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->flush_lock, NULL);
	if (limit < RUNNER_LOG_MIN_LIMIT)
		limit = PIPE_DEFAULT_LOG_LIMIT;
	int rc = runner_log_cap_new(limit, to_pending, l, &l->cap, err);
	if (rc) {
		service_job_log_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

static void write_log(struct service_job_log *l, const void *data, size_t len)
{
	pthread_mutex_lock(&l->lock);
	runner_log_cap_write(l->cap, data, len);
	pthread_mutex_unlock(&l->lock);
}

void service_job_log_note(struct service_job_log *l, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 2;
	line[len++] = '\n';
	write_log(l, "vmci: ", 6);
	write_log(l, line, len);
}

int service_job_log_flush(struct service_job_log *l)
{
	pthread_mutex_lock(&l->flush_lock);
	pthread_mutex_lock(&l->lock);
	struct buf out = l->pending;
	l->pending = (struct buf){0};
	pthread_mutex_unlock(&l->lock);
	int rc = 0;
	if (out.len && !l->stale) {
		struct vmci_err err = {0};
		int64_t n =
		    store_log_append(l->store, l->job_id, l->attempt, out.data, out.len, &err);
		if (n == -ESTALE)
			l->stale = true;
		else if (n < 0)
			log_warn("job %lld: log lost: %s", (long long)l->job_id, err.msg);
		rc = n < 0 ? (int)n : 0;
	}
	buf_free(&out);
	pthread_mutex_unlock(&l->flush_lock);
	return l->stale ? -ESTALE : rc;
}

int service_job_log_finish(struct service_job_log *l)
{
	pthread_mutex_lock(&l->lock);
	runner_log_cap_finish(l->cap);
	pthread_mutex_unlock(&l->lock);
	return service_job_log_flush(l);
}

int service_job_log_exit_code(const struct service_job_log *l)
{
	return l->exit_code;
}

void service_job_log_free(struct service_job_log *l)
{
	if (!l)
		return;
	runner_log_cap_free(l->cap);
	buf_free(&l->pending);
	pthread_mutex_destroy(&l->lock);
	pthread_mutex_destroy(&l->flush_lock);
	free(l);
}

/* ---- the runner_sink -------------------------------------------------------------- */

static void on_step_started(void *ctx, size_t job, size_t step)
{
	struct service_job_log *l = ctx;
	const char *name = l->run->jobs[job].steps[step].name;
	char line[600];
	int n = snprintf(line, sizeof(line), "==> %s\n", name);
	write_log(l, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
	service_job_log_flush(l);
	struct vmci_err err = {0};
	if (store_step_start(l->store, l->job_id, l->attempt, (int)step, name, &err) &&
	    err.code != ESTALE)
		log_warn("job %lld: %s", (long long)l->job_id, err.msg);
}

static void on_output(void *ctx, size_t job, size_t step, int stream, const void *data, size_t len)
{
	write_log(ctx, data, len);
}

static void on_step_finished(void *ctx, size_t job, size_t step,
			     const struct runner_step_result *res)
{
	struct service_job_log *l = ctx;
	bool ok = res->result == RUNNER_PASSED || res->continued;
	if (!ok) {
		l->exit_code = res->exit.code;
		char line[256];
		int n = snprintf(line, sizeof(line), "==> step '%s' failed: %s\n",
				 l->run->jobs[job].steps[step].name, res->how);
		write_log(l, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
	service_job_log_flush(l);
	struct vmci_err err = {0};
	if (store_step_finish(l->store, l->job_id, l->attempt, (int)step,
			      ok ? STORE_SUCCESS : STORE_FAILURE, res->exit.code, &err) &&
	    err.code != ESTALE)
		log_warn("job %lld: %s", (long long)l->job_id, err.msg);
}

static void on_note(void *ctx, size_t job, const char *text)
{
	service_job_log_note(ctx, "%s", text);
}

void service_job_log_sink(struct service_job_log *l, struct runner_sink *out)
{
	*out = (struct runner_sink){
	    .ctx = l,
	    .step_started = on_step_started,
	    .output = on_output,
	    .step_finished = on_step_finished,
	    .note = on_note,
	};
}
