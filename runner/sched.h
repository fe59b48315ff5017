/*
 * runner: scheduling a run: needs, fail-fast, max-parallel, the VM budget,
 * cancellation.
 */
#ifndef VMCI_RUNNER_SCHED_H
#define VMCI_RUNNER_SCHED_H

#include "runner/result.h"

struct pipe_run;

/* ---- cancelling a running job (runner/sched.c) ---------------------- */

/*
 * Shared by the scheduler and one job's thread: a request to stop, and
 * the VM a request must reach while the job holds one.
 */
struct runner_cancel;

/* A request not yet made, for a caller that runs jobs itself (the service); free with _free. */
struct runner_cancel *runner_cancel_new(void);
void runner_cancel_free(struct runner_cancel *c);

/* Sets the request and cancels the running command of the attached VM. Thread-safe. */
void runner_cancel_request(struct runner_cancel *c);
bool runner_cancel_requested(struct runner_cancel *c);
/* Attaches the job's VM; false (nothing attached) when a cancel was already requested. */
bool runner_cancel_attach(struct runner_cancel *c, struct vm *vm);
struct runner_remote;
/*
 * Attaches the job's VM that moved (runner_remote_cancel reaches its
 * command); false (nothing attached) when a cancel was already requested.
 */
bool runner_cancel_attach_remote(struct runner_cancel *c, struct runner_remote *r);
/* Detaches the VM, here or moved: no request reaches it from then on. */
void runner_cancel_detach(struct runner_cancel *c);
/*
 * Asks the command running in the attached VM to be let go of for a move
 * (vm_detach; the executor then moves the VM). A no-op without a VM.
 */
void runner_cancel_move(struct runner_cancel *c);

/* ---- scheduling a run (runner/sched.c) ------------------------------- */

/*
 * How the scheduler runs jobs: the executor (runner_executor_ops) or, in
 * tests, fakes. run is called on the job's own thread, once per attempt;
 * when it leaves res->kept set, that thread waits until runner_run_release
 * and then calls release (same thread) to let the VM go.
 */
struct runner_job_ops {
	void *ctx;
	void (*run)(void *ctx, size_t job, int attempt, struct runner_cancel *cancel,
		    struct runner_job_result *res);
	void (*release)(void *ctx, size_t job, struct runner_cancel *cancel);
};

struct runner_run_opts {
	const struct pipe_run *run;
	const bool *selected; /* run->n_jobs flags; NULL: every job */
	int max_vms;	      /* jobs at once; < 1: 1 */
	const struct runner_job_ops *ops;
	const struct runner_sink *sink; /* job_started, job_retrying, job_finished */
};

struct runner_run;

/* A run ready to start. opts and what it points to must outlive it. */
int runner_run_new(const struct runner_run_opts *opts, struct runner_run **out,
		   struct vmci_err *err);

/*
 * Runs the selected jobs, each on its own thread: a job starts once every
 * selected job it needs passed (it is skipped when one did not), at most
 * max_vms at once and max-parallel per matrix; a failure in a fail-fast
 * matrix cancels the rest of it; an infrastructure error is retried up to
 * the job's `retries`, a failing step never. Returns when every selected
 * job has its final result (kept VMs stay up: runner_run_release).
 */
void runner_run_exec(struct runner_run *r);

/*
 * Cancels the run: jobs not started end CANCELLED, running ones are asked
 * to stop (their command is cancelled, their VM reverted or stopped).
 * Thread-safe; not for signal handlers.
 */
void runner_run_cancel(struct runner_run *r);

/*
 * Asks every running job to move its VM (see runner_exec_opts.move_to):
 * a job running a command hands it over; one between commands is not
 * moved. Thread-safe; not for signal handlers.
 */
void runner_run_move(struct runner_run *r);

/* A job's result; RUNNER_PENDING until it ends (and for jobs not selected). */
const struct runner_job_result *runner_run_result(const struct runner_run *r, size_t job);

/* Lets kept VMs go and waits for every job thread. Idempotent. */
void runner_run_release(struct runner_run *r);

/* runner_run_release, then frees. Safe on NULL. */
void runner_run_free(struct runner_run *r);

/*
 * The default for -j: how many VMs of memory_mb this machine holds at once,
 * min(online CPUs, available memory / (memory_mb + QEMU's overhead)), at
 * least 1.
 */
int runner_default_max_vms(int64_t memory_mb);

#endif
