/* What the files of runner/service share; not part of its contract. */
#ifndef VMCI_RUNNER_SERVICE_INTERNAL_H
#define VMCI_RUNNER_SERVICE_INTERNAL_H

#include "runner/service.h"

#include <stdarg.h>

struct pipe_run;

/*
 * The pipeline of commit sha in the bare cache git_dir, loaded with
 * vmci.* set: service_pipeline_read (its text; -ENOENT: no pipeline
 * file), then service_pipeline_parse (-EINVAL: invalid, err holding
 * every error). The trigger and the workers both parse it with the
 * run's id, so every name, image and step they expand is the same.
 */
int service_pipeline_read(const char *git_dir, const struct service_repo *repo, const char *sha,
			  struct buf *text, struct vmci_err *err);
int service_pipeline_parse(const struct buf *text, const struct service_repo *repo, const char *sha,
			   const char *ref, const char *run_id, struct pipe_run **out,
			   struct vmci_err *err);
/* Both at once. */
int service_pipeline_load(const char *git_dir, const struct service_repo *repo, const char *sha,
			  const char *ref, const char *run_id, struct pipe_run **out,
			  struct vmci_err *err);

/* ---- a job's steps and log into the store (sink.c) ---------------------- */

struct store;
struct runner_sink;
struct service_job_log;

/*
 * The sink of one attempt: its output, capped at limit bytes
 * (runner_log_cap), is held in memory and appended to the store by
 * service_job_log_flush (the worker calls it every ~100 ms), and its
 * steps are recorded as they start and end. Uses s, which the caller
 * keeps open.
 */
int service_job_log_new(struct store *s, int64_t job_id, int attempt, int64_t limit,
			const struct pipe_run *run, struct service_job_log **out,
			struct vmci_err *err);
void service_job_log_sink(struct service_job_log *l, struct runner_sink *out);
/* A line from vmci into the log ("vmci: TEXT\n"). */
void service_job_log_note(struct service_job_log *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends what is held to the store. -ESTALE once the attempt is no longer current. */
int service_job_log_flush(struct service_job_log *l);
/* Ends the log (the capped tail, the notice) and flushes it. */
int service_job_log_finish(struct service_job_log *l);
/* The exit code of the step that failed the job, or -1. */
int service_job_log_exit_code(const struct service_job_log *l);
void service_job_log_free(struct service_job_log *l);

#endif
