/*
 * runner/store: the service's durable state, and its queue.
 *
 * Everything `vmci serve` must not lose lives here: runs and their jobs,
 * the attempts of each job and their steps, log bytes, the artifact
 * index, hosts, events and API tokens. A call that returns 0 has
 * committed what it wrote: a SIGKILL a moment later loses none of it.
 *
 * The queue's rules are the store's, each applied in one transaction, so
 * any number of workers (threads with their own handle, processes, later
 * hosts sharing a PostgreSQL database) see one consistent state:
 *
 *   - A job is claimable when it is queued and every job it needs ended
 *     `success`. A need that ends any other way makes its dependents
 *     `skipped`, transitively.
 *   - A claim makes a job `running` as a new attempt, held by a host
 *     under a lease the host renews. An expired lease (the host died)
 *     ends the attempt as `error`, reason "lease expired", its log kept,
 *     and queues the job again as the next attempt.
 *   - A result is accepted only from the job's current attempt: a worker
 *     whose lease was lost cannot overwrite the attempt that replaced it.
 *   - As in `vmci run`: an infrastructure error is retried while the
 *     job's `retries` last; a failure or error cancels the rest of a
 *     fail-fast group; at most `max_parallel` jobs of a group run at once.
 *   - A run's status follows its jobs: `queued` until one is claimed,
 *     `running` while any is queued or running, then `failure` if any job
 *     failed, else `error` if any had an infrastructure error, else
 *     `cancelled` if any was cancelled, else `success`.
 *
 * Times are integers, milliseconds since the Unix epoch in UTC (the
 * *_ms fields); 0 means "not yet". store_time_format writes the RFC 3339
 * form the API shows. Log offsets are byte offsets into a job's log,
 * which is its attempts' logs one after the other.
 *
 * A list comes back as an array and a count, both for the matching
 * *_free, which must be called even when the count is 0.
 *
 * Threads: a handle may be shared (calls on it are serialized); threads
 * that want to work in parallel open their own. Every function returns 0
 * (or a non-negative count) on success and a negative errno code with err
 * filled on failure: -ENOENT for an unknown id or name, -ESTALE for a
 * result or log from an attempt that is no longer current, -EBUSY for a
 * job still queued or running, -EINVAL for a request the rules refuse.
 */
#ifndef VMCI_RUNNER_STORE_H
#define VMCI_RUNNER_STORE_H

#include "common/common.h"

struct store;

/* ---- opening (runner/store/open.c) ---------------------------------- */

/*
 * Opens the store at url and brings its schema up to date, each pending
 * migration in its own transaction. url is `sqlite:PATH` (the file is
 * created if missing, readable by its owner only; WAL, foreign keys on,
 * a busy timeout); a `postgresql://` url is refused for now with a
 * message saying so (a password in a url is never shown). A
 * database written by a newer vmci (a schema version this code does not
 * know) is refused, untouched. *out is freed with store_close.
 */
int store_open(const char *url, struct store **out, struct vmci_err *err);
void store_close(struct store *s);

/* The default url: sqlite:$VMCI_HOME/vmci.db. */
int store_default_url(char *out, size_t size);

/* The schema version of the open database, and the newest this code knows. */
int store_schema_version(struct store *s, struct vmci_err *err);
int store_schema_latest(void);

/*
 * Replaces the wall clock (milliseconds since the epoch) the store stamps
 * times with and leases are measured by; NULL restores the real clock.
 * For tests, which must not sleep to see a lease expire.
 */
void store_set_clock(struct store *s, int64_t (*now_ms)(void *ctx), void *ctx);
int64_t store_now_ms(struct store *s);

/* ---- statuses and times (runner/store/status.c) ---------------------- */

enum store_status {
	STORE_QUEUED,
	STORE_RUNNING,
	STORE_SUCCESS,
	STORE_FAILURE,	 /* a step failed */
	STORE_ERROR,	 /* the infrastructure failed (VM, host, lease) */
	STORE_CANCELLED, /* cancelled by a user, or by fail-fast */
	STORE_SKIPPED,	 /* a need did not succeed */
};

/* "queued", "running", ...: the names the API shows and the store keeps. */
const char *store_status_name(enum store_status status);
/* Returns 0, or -EINVAL (with err naming the valid ones) for an unknown name. */
int store_status_parse(const char *name, enum store_status *out, struct vmci_err *err);
/* True for every status but queued and running. */
bool store_status_finished(enum store_status status);

#define STORE_TIME_LEN 32
/* "2026-05-01T12:00:00.123Z"; an empty string for 0 ("not yet"). */
void store_time_format(int64_t ms, char out[STORE_TIME_LEN]);

/* ---- runs (runner/store/runs.c) ------------------------------------- */

struct store_run_spec {
	const char *repo;    /* the repo's name in the service's config */
	const char *ref;     /* "refs/heads/main" */
	const char *sha;     /* may be NULL or "" while not yet resolved */
	const char *trigger; /* "push", "schedule", "api" */
};

/* One job of a run, expanded by the caller (pipelines/): its matrix is a combination. */
struct store_job_spec {
	const char *name;	 /* unique in the run: "build (debian-12, gcc)" */
	const char *image;	 /* golden image name */
	const char *matrix_json; /* this combination's values as a JSON object; NULL: "{}" */
	const size_t *needs;	 /* indices into the run's job array */
	size_t n_needs;
	int64_t timeout_s; /* the whole job; the worker enforces it */
	int retries;	   /* re-runs after an infrastructure error */
	int group;	   /* jobs made from one pipeline id share a group */
	bool fail_fast;	   /* a failure cancels the group's other jobs */
	int max_parallel;  /* jobs of the group running at once; 0: no limit */
};

struct store_job;

struct store_run {
	int64_t id;
	char *repo, *ref, *sha, *trigger;
	enum store_status status;
	int64_t created_ms, started_ms, finished_ms;
	struct store_job *jobs; /* store_run_get only: in job order */
	size_t n_jobs;
};

/*
 * Stores a run and all its jobs, queued, in one transaction: either all
 * of it is there when this returns 0, or none of it. Needs must point at
 * other jobs of the run and make no cycle (-EINVAL); a job name used
 * twice is refused (-EEXIST). The new run's id goes to *run_id.
 */
int store_run_create(struct store *s, const struct store_run_spec *run,
		     const struct store_job_spec *jobs, size_t n_jobs, int64_t *run_id,
		     struct vmci_err *err);

/*
 * Makes the jobs of a run whose id is now known (a trigger expands
 * ${{ vmci.run_id }} with it, as the run's workers will). Called once,
 * inside the store's transaction, so it must be quick and must not call
 * the store. Returns 0 with *jobs and *n (owned by ctx, read before
 * store_run_create_with returns); a negative code with err filled; or a
 * positive value of the caller's meaning (e.g. "no run for this ref").
 */
typedef int (*store_jobs_fn)(void *ctx, int64_t run_id, const struct store_job_spec **jobs,
			     size_t *n, struct vmci_err *err);

/*
 * store_run_create with the jobs made by make_jobs once the run has its
 * id, in the same transaction. When make_jobs returns anything but 0,
 * nothing is stored, *run_id is 0 and its value is returned. Ids a
 * declined or failed run would have had may be skipped.
 */
int store_run_create_with(struct store *s, const struct store_run_spec *run,
			  store_jobs_fn make_jobs, void *ctx, int64_t *run_id,
			  struct vmci_err *err);

/* The run with its jobs (each with its needs, without attempts); free with store_run_free. */
int store_run_get(struct store *s, int64_t run_id, struct store_run **out, struct vmci_err *err);
void store_run_free(struct store_run *run);

struct store_run_filter {
	const char *repo;   /* NULL or "": any */
	const char *status; /* a status name; NULL or "": any */
	int64_t before;	    /* only runs with a smaller id; 0: no bound */
	int limit;	    /* 0: 50; at most 500 */
};

/*
 * Runs matching filter, newest first, without their jobs, into *out (an
 * array of *n, free with store_runs_free). Page on with before = the last
 * id returned.
 */
int store_runs_list(struct store *s, const struct store_run_filter *filter, struct store_run **out,
		    size_t *n, struct vmci_err *err);
void store_runs_free(struct store_run *runs, size_t n);

/*
 * Cancels a run: its queued jobs end `cancelled` at once, its running ones
 * are asked to stop (store_job_cancel_requested) and end when their
 * worker reports. Returns the number of jobs cancelled or asked to stop
 * (0 for a run already finished).
 */
int store_run_cancel(struct store *s, int64_t run_id, struct vmci_err *err);

/* ---- jobs and the queue (runner/store/queue.c, jobs.c) --------------- */

struct store_step {
	int index;
	char *name;
	enum store_status status; /* running, then success or failure */
	int exit_code;		  /* -1 while running */
	int64_t started_ms, finished_ms;
};

struct store_attempt {
	int number; /* 1, 2, ... */
	char *host;
	enum store_status status;
	char *reason;		    /* why an attempt ended as it did, e.g. "lease expired"; "" */
	int exit_code;		    /* -1: none */
	char *failed_step;	    /* NULL: none */
	int64_t log_start, log_end; /* its bytes in the job's log */
	int64_t started_ms, finished_ms;
	struct store_step *steps; /* by index */
	size_t n_steps;
};

struct store_job {
	int64_t id, run_id;
	int index; /* in the run */
	char *name, *image, *matrix_json;
	enum store_status status;
	int attempt;	   /* the current (or last) attempt; 0 before the first claim */
	char *host;	   /* the host of that attempt; NULL while queued */
	int exit_code;	   /* -1: none */
	char *failed_step; /* NULL: none */
	int64_t timeout_s;
	int retries, group, max_parallel;
	bool fail_fast;
	bool cancel_requested;
	int64_t lease_expires_ms; /* while running */
	int64_t log_len;	  /* bytes in the job's log */
	int64_t *needs;		  /* job ids */
	size_t n_needs;
	int64_t created_ms, started_ms, finished_ms;
	struct store_attempt *attempts; /* store_job_get only, oldest first */
	size_t n_attempts;
};

/* One job with its needs, attempts and their steps; free with store_job_free. */
int store_job_get(struct store *s, int64_t job_id, struct store_job **out, struct vmci_err *err);
void store_job_free(struct store_job *job);

/*
 * Takes one claimable job for host: of the oldest run first, then in job
 * order. It becomes `running` as a new attempt, under a lease of
 * lease_seconds from now. No two claimers ever get the same job. A host
 * registered in a state other than `up` gets nothing. Returns 1 with
 * *out (free with store_job_free), or 0 when nothing is claimable.
 */
int store_claim(struct store *s, const char *host, int lease_seconds, struct store_job **out,
		struct vmci_err *err);

/*
 * Calls fn(ctx) after each transaction of this process that may have
 * made jobs claimable commits (a run created, a job finished, requeued
 * or retried), in the thread that made it, so idle workers claim at once
 * instead of at their next poll. Stores of other processes are not seen:
 * their jobs are found by polling. fn must be quick and must not use the
 * store. Returns an id for store_queue_unwatch (>= 0), or -ENOSPC.
 */
int store_queue_watch(void (*fn)(void *ctx), void *ctx, struct vmci_err *err);
/* After it returns, fn is not called again. */
void store_queue_unwatch(int id);

/*
 * Extends the lease of every job host is running by the lease it was
 * claimed with, from now. Returns how many.
 */
int store_lease_renew(struct store *s, const char *host, struct vmci_err *err);

/*
 * Ends every attempt whose lease expired before now_ms as `error`, reason
 * "lease expired", keeping its log and steps, and queues its job again
 * as the next attempt; a job whose lease was lost STORE_LEASES_LOST_MAX
 * times ends `error` instead (a job that takes its host down must not go
 * round forever), and one asked to stop ends `cancelled`. Returns how
 * many attempts expired.
 */
#define STORE_LEASES_LOST_MAX 3
int store_requeue_expired(struct store *s, int64_t now_ms, struct vmci_err *err);

/*
 * Why a host gives back the jobs it holds (store_requeue_host):
 *
 *   STORE_REQUEUE_STOPPED    reason "host stopped": the host stopped them
 *                            itself (a graceful shutdown past its grace
 *                            period). Does not count toward
 *                            STORE_LEASES_LOST_MAX: a job must not fail
 *                            because its host was stopped three times.
 *   STORE_REQUEUE_RESTARTED  reason "host restarted": the host starts
 *                            again after dying with them (SIGKILL, a
 *                            crash, a power cut). Counts as a lost lease:
 *                            on one host, a job that takes its host down
 *                            comes back only this way, and would
 *                            otherwise bring the service down forever.
 */
enum store_requeue_why { STORE_REQUEUE_STOPPED, STORE_REQUEUE_RESTARTED };

/*
 * The same as lease expiry for every attempt host holds, whatever its
 * lease, for the reason why. Returns how many attempts ended.
 */
int store_requeue_host(struct store *s, const char *host, enum store_requeue_why why,
		       struct vmci_err *err);

/*
 * The worker's result for attempt of job: status is success, failure,
 * error or cancelled; exit_code -1 when there is none; failed_step NULL
 * when no step failed. Dependents are unblocked or skipped, fail-fast
 * applied, and the run's status updated, in the same transaction. An
 * `error` with retries left queues the job again as the next attempt and
 * returns 1; otherwise returns 0. -ESTALE when attempt is not the job's
 * current running attempt (nothing is changed).
 */
int store_job_finish(struct store *s, int64_t job_id, int attempt, enum store_status status,
		     int exit_code, const char *failed_step, struct vmci_err *err);

/*
 * Whether the worker of attempt should stop: 1 when its job was
 * cancelled, 0 when not, -ESTALE when attempt is no longer current (the
 * lease was lost: stop, and report nothing).
 */
int store_job_cancel_requested(struct store *s, int64_t job_id, int attempt, struct vmci_err *err);

/*
 * Queues a finished job again as a new attempt, with its retries renewed,
 * and its skipped dependents with it. -EBUSY while it is queued or
 * running; -EINVAL for a skipped job or one with a need that did not
 * succeed (retry that first).
 */
int store_job_retry(struct store *s, int64_t job_id, struct vmci_err *err);

/*
 * Steps of the current attempt, by index in the job (0, 1, ...): start
 * records it running, finish ends it with status (success or failure)
 * and exit_code. -ESTALE for an attempt that is not current.
 */
int store_step_start(struct store *s, int64_t job_id, int attempt, int index, const char *name,
		     struct vmci_err *err);
int store_step_finish(struct store *s, int64_t job_id, int attempt, int index,
		      enum store_status status, int exit_code, struct vmci_err *err);

/* ---- logs (runner/store/logs.c) ------------------------------------- */

/*
 * Appends len bytes to the job's log from its current running attempt,
 * and returns the log's new length (>= 0). -ESTALE for any other attempt:
 * what a lost attempt wrote stays as it was.
 */
int64_t store_log_append(struct store *s, int64_t job_id, int attempt, const void *data, size_t len,
			 struct vmci_err *err);

/*
 * Appends to out at most max bytes of the job's log from offset, sets
 * *next_offset to the offset after them, and *finished when the job has
 * finished and nothing lies beyond (a follower may stop). Returns the
 * number of bytes appended; -EINVAL for an offset past the end.
 */
int64_t store_log_read(struct store *s, int64_t job_id, int64_t offset, size_t max, struct buf *out,
		       int64_t *next_offset, bool *finished, struct vmci_err *err);

/* ---- artifacts (runner/store/artifacts.c) --------------------------- */

struct store_artifact {
	int64_t job_id;
	int attempt;
	char *path; /* relative to the job's artifact directory */
	int64_t size;
	char sha256[SHA256_HEX_LEN + 1];
	int64_t created_ms;
};

/*
 * Indexes a file the current attempt produced; the same path again
 * replaces the entry (a retried job rewrites its files). -ESTALE for an
 * attempt that is not current.
 */
int store_artifact_add(struct store *s, int64_t job_id, int attempt, const char *path, int64_t size,
		       const char *sha256, struct vmci_err *err);
/* The job's artifacts by path, into *out (free with store_artifacts_free). */
int store_artifacts_list(struct store *s, int64_t job_id, struct store_artifact **out, size_t *n,
			 struct vmci_err *err);
void store_artifacts_free(struct store_artifact *list, size_t n);

/* ---- hosts (runner/store/hosts.c) ----------------------------------- */

enum store_host_state { STORE_HOST_UP, STORE_HOST_DRAINING, STORE_HOST_DOWN };

/* "up", "draining", "down" */
const char *store_host_state_name(enum store_host_state state);

struct store_host {
	char *name, *url;
	int capacity;
	enum store_host_state state;
	int64_t drain_deadline_ms; /* while draining */
	int64_t heartbeat_ms, registered_ms;
	int running; /* jobs it runs now */
};

/*
 * Registers host, `up`, with a heartbeat now; registered already, its url
 * and capacity are updated, and it stays draining if it was (a `down`
 * host comes back up).
 */
int store_host_register(struct store *s, const char *name, const char *url, int capacity,
			struct vmci_err *err);
/* Records a heartbeat; a `down` host comes back `up`. -ENOENT when not registered. */
int store_host_heartbeat(struct store *s, const char *name, struct vmci_err *err);
/* Sets the state (a deadline only means something for draining; 0: none). */
int store_host_set_state(struct store *s, const char *name, enum store_host_state state,
			 int64_t drain_deadline_ms, struct vmci_err *err);
/* Marks `down` every host whose last heartbeat is older than older_than_ms; returns how many. */
int store_hosts_mark_down(struct store *s, int64_t older_than_ms, struct vmci_err *err);
/* Every host by name, into *out (free with store_hosts_free). */
int store_hosts_list(struct store *s, struct store_host **out, size_t *n, struct vmci_err *err);
void store_hosts_free(struct store_host *hosts, size_t n);

/* ---- events (runner/store/events.c) --------------------------------- */

/*
 * What happened to a run, in order. The store records its own transitions
 * ("run.created", "job.started", "job.finished", "job.requeued",
 * "job.retried", "run.cancelled", "run.finished") in the transaction that
 * makes them; other modules add theirs ("job.migrated", ...).
 */
struct store_event {
	int64_t id, run_id;
	int64_t job_id; /* 0: the run itself */
	char *kind;
	char *data_json; /* a JSON object */
	int64_t created_ms;
};

/* data_json NULL: "{}". job_id 0: about the run. */
int store_event_add(struct store *s, int64_t run_id, int64_t job_id, const char *kind,
		    const char *data_json, struct vmci_err *err);
/* The run's events with an id above after_id, oldest first, at most limit (0: 100). */
int store_events_list(struct store *s, int64_t run_id, int64_t after_id, int limit,
		      struct store_event **out, size_t *n, struct vmci_err *err);
void store_events_free(struct store_event *events, size_t n);

/* ---- API tokens (runner/store/tokens.c) ----------------------------- */

/* "vmci_" and 64 hex digits (256 random bits). */
#define STORE_TOKEN_LEN	     69
#define STORE_TOKEN_NAME_MAX 64

/*
 * Makes a token named name and writes it (the only time it exists in
 * plain text) to token; the store keeps its SHA-256 only. -EEXIST when
 * the name is taken.
 */
int store_token_create(struct store *s, const char *name, char token[STORE_TOKEN_LEN + 1],
		       struct vmci_err *err);
/*
 * Returns 1 and the token's name (when name is not NULL) if token is
 * valid, 0 if not. Every stored hash is compared in constant time, so
 * the answer takes as long whichever token matches, or none.
 */
int store_token_verify(struct store *s, const char *token, char name[STORE_TOKEN_NAME_MAX + 1],
		       struct vmci_err *err);
/* -ENOENT when there is no such token. */
int store_token_delete(struct store *s, const char *name, struct vmci_err *err);

#endif
