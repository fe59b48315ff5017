/*
 * runner: one job in one VM, and the executor the scheduler drives.
 */
#ifndef VMCI_RUNNER_EXECUTOR_H
#define VMCI_RUNNER_EXECUTOR_H

#include "runner/result.h"
#include "runner/sched.h"
#include "runner/vmsource.h"
#include "runner/workspace.h"
#include "runner/log_cap.h"

struct pipe_run;

/* ---- one job in one VM (runner/executor.c) --------------------------- */

struct runner_exec_opts {
	const struct pipe_run *run;
	const struct runner_workspace *ws; /* uploaded to RUNNER_GUEST_WORKSPACE; NULL: none */
	enum runner_ws_via ws_via;	   /* as a tar stream or a disk; AUTO by its size */
	const char *run_id;		   /* VMCI_RUN_ID in the guest */
	const char *artifacts_dir; /* host: each job's artifacts go to DIR/<job dir>/; NULL: none */
	const struct runner_vm_source *vms;
	const struct runner_sink *sink; /* steps, output, notes, vm_ready */
	bool keep_on_failure;		/* a failed job keeps its VM (res->kept) */
	/*
	 * A receiver's socket (runner_receive): a job asked to move
	 * (runner_run_move) hands its VM there and runs on there; NULL: a
	 * move asked for is refused and the job goes on here.
	 */
	const char *move_to;
};

/*
 * Runs one attempt of a job on the calling thread: a VM from opts->vms,
 * the workspace upload, each step as `sh -e -c RUN` in the workspace (or
 * its workdir) with the run's, job's and step's env, step and job
 * timeouts, continue-on-error, cancel, then the artifacts. Fills res; a
 * failing step is RUNNER_FAILED, a VM that would not boot or died is
 * RUNNER_ERROR. The VM goes back to opts->vms, except when
 * opts->keep_on_failure and the job failed: then res->kept is set, *kept
 * holds the VM and cancel stays attached to it; give it back later, from
 * the same thread, with runner_execute_release.
 */
void runner_execute(const struct runner_exec_opts *opts, size_t job, int attempt,
		    struct runner_cancel *cancel, struct runner_job_result *res,
		    struct runner_lease *kept);

/* Detaches cancel from a kept VM and gives it back to opts->vms. Safe on an empty lease. */
void runner_execute_release(const struct runner_exec_opts *opts, struct runner_lease *kept,
			    struct runner_cancel *cancel);

/*
 * "build (debian-12, gcc)" -> "build-debian-12-gcc": a job's name made
 * safe as one path component, for artifact and log directories.
 */
void runner_job_dirname(const char *name, char *out, size_t size);

/* ---- the executor behind the scheduler (runner/executor.c) ----------- */

struct runner_executor;

/* Keeps opts (which must outlive it) and the VMs of kept jobs. */
int runner_executor_new(const struct runner_exec_opts *opts, struct runner_executor **out,
			struct vmci_err *err);
/* Fills ops so that runner_run executes jobs with runner_execute. */
void runner_executor_ops(struct runner_executor *ex, struct runner_job_ops *ops);
/* The VM a kept job holds (NULL when none): for a shell in it until it is released. */
struct vm *runner_executor_kept_vm(struct runner_executor *ex, size_t job);
/* Frees; kept VMs must have been released (runner_run_release). Safe on NULL. */
void runner_executor_free(struct runner_executor *ex);

#endif
