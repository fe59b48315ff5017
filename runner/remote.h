/*
 * runner/remote: a run of a vmci server followed from a client.
 *
 * The API shows a run as JSON (`GET /api/v1/runs/ID`, its jobs'
 * attempts and steps at `GET /api/v1/jobs/ID`). A front end that shows
 * runs the way `vmci run` does (a board of jobs fed by a runner_sink, a
 * summary at the end) needs them as the runner's model instead: a
 * pipe_run of the run's jobs, and the sink's events in the order the
 * executor would send them, each once. This module makes both by polling
 * the API; the front end brings the HTTP requests (remote_api) and the
 * sink.
 *
 * What the API does not keep is not made up: step names are learnt as
 * the steps start (a job's pipe_job.steps grow until its job_finished),
 * there is no vm_ready event (the guest's os and arch are not stored),
 * and the output sent to the sink is only the end of a failed job's log
 * (the last REMOTE_TAIL_MAX bytes of its last attempt), for the summary.
 * Times on the sink are the client's; durations in the results are the
 * server's.
 */
#ifndef VMCI_RUNNER_REMOTE_H
#define VMCI_RUNNER_REMOTE_H

#include "common/common.h"
#include "runner/result.h"

#include <jansson.h>

#define REMOTE_TAIL_MAX 8192

/*
 * The requests the module makes, by the front end. Each returns 0 with
 * its answer, or a non-zero code of the front end's (after saying why),
 * which remote_run_follow returns as it is.
 */
struct remote_api {
	void *ctx;
	/* GET path ("/api/v1/jobs/31"): a 2xx JSON answer into *out (json_decref). */
	int (*get_json)(void *ctx, const char *path, json_t **out);
	/* GET path: the answer's bytes appended to out. */
	int (*get_bytes)(void *ctx, const char *path, struct buf *out);
};

struct remote_run;

/*
 * Makes the model of run, an API run with its jobs: a pipe_run named
 * "REPO #ID" whose jobs are the run's, in order, with their names and
 * images, every one queued. Returns 0 with *out (remote_run_free), or
 * -EINVAL (err) when run is not a run with jobs.
 */
int remote_run_new(const json_t *run, struct remote_run **out, struct vmci_err *err);

/* The model, owned by r; a job's steps grow as remote_run_update learns them. */
const struct pipe_run *remote_run_pipeline(const struct remote_run *r);

/*
 * Sends sink what changed since the last call, as run (a newer answer of
 * the same run) shows it: job_started for each new attempt (after
 * job_retrying for the one before), step_started and step_finished,
 * the end of a failed job's log as output of its failing step, and
 * job_finished once per job. Asks api for the jobs whose attempts or
 * steps it needs. Returns 0, or api's code.
 */
int remote_run_update(struct remote_run *r, const json_t *run, const struct remote_api *api,
		      const struct runner_sink *sink);

/* True once every job of the run has ended (its status is none of queued, running). */
bool remote_run_finished(const json_t *run);

/*
 * Polls `GET /api/v1/runs/ID` every interval_ms and sends each answer to
 * remote_run_update, until the run has ended. *last (may be NULL) gets
 * the last answer (json_decref). Returns 0, or api's code.
 */
int remote_run_follow(struct remote_run *r, const struct remote_api *api,
		      const struct runner_sink *sink, int interval_ms, json_t **last);

/* The run's wall time from its creation to its end (or to now), by the server's clock. */
int64_t remote_run_elapsed_ms(const json_t *run);

/* Milliseconds since the epoch of an API time ("2026-05-01T12:00:00.123Z"); 0: null or bad. */
int64_t remote_time_ms(const json_t *time);

void remote_run_free(struct remote_run *r);

#endif
