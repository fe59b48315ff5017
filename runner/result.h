/*
 * runner: how jobs and steps end, and the sink that hears about it.
 */
#ifndef VMCI_RUNNER_RESULT_H
#define VMCI_RUNNER_RESULT_H

#include "common/common.h"
#include "vmcore/vmcore.h"

struct pipe_run;

/* ---- results and the log sink (runner/executor.c) -------------------- */

enum runner_result {
	RUNNER_PENDING,	  /* not finished */
	RUNNER_PASSED,	  /* every step passed (or failed with continue-on-error) */
	RUNNER_FAILED,	  /* a step failed or timed out, the job timed out, artifacts incomplete */
	RUNNER_ERROR,	  /* infrastructure: a VM failed to boot or died, the agent broke */
	RUNNER_CANCELLED, /* stopped by fail-fast or by the user */
	RUNNER_SKIPPED,	  /* never started: a job it needs did not pass */
};

/* "pending", "passed", "failed", "error", "cancelled", "skipped" */
const char *runner_result_name(enum runner_result r);

struct runner_step_result {
	enum runner_result result;  /* PASSED, FAILED, CANCELLED or ERROR */
	bool continued;		    /* FAILED, but continue-on-error let the job go on */
	struct vm_exec_result exit; /* how the script ended (when it ran) */
	int64_t duration_ms;
	char how[160]; /* "exited 3", "timed out after 5s (step timeout)" */
};

/*
 * What a job's artifacts came to (runner/artifacts.c). Symlinks are
 * copied as symlinks, never followed; sparse files stay sparse.
 */
struct runner_artifact_stats {
	long long files; /* regular files, hard links included */
	long long dirs;
	long long symlinks;
	long long bytes;      /* the files' sizes */
	long long data_bytes; /* what the guest sent of them: bytes less sparse files' holes */
	long long refused;    /* entries not copied: unsafe, a device or FIFO, past a limit */
	int missing;	      /* paths that matched nothing: a warning, the job goes on */
	/*
	 * Something a path matched was not copied (refused, past the job's
	 * max-size or max-files, unreadable in the guest): the job fails, as
	 * GitLab Runner fails a job whose artifacts it cannot upload.
	 */
	bool incomplete;
};

struct runner_job_result {
	enum runner_result result;
	int attempts;	     /* 1 + retries used */
	int64_t duration_ms; /* wall time over all attempts */
	long failed_step;    /* the step that failed the job, or -1 */
	char how[160];	     /* how it failed: the failing step's end, or "job timed out..." */
	char error[1024];    /* RUNNER_ERROR, or a problem besides a step (artifacts): what */
	char os[96];	     /* what the guest reported: "Debian GNU/Linux 12 (bookworm)" */
	char arch[16];
	int64_t boot_ms; /* how long the VM took to be ready */
	struct runner_artifact_stats artifacts;
	bool kept; /* --keep-on-failure: its VM stays up (runner_executor_kept_vm) */
};

/*
 * Where results and logs go: the terminal UI now, the service's store
 * later. Callbacks come from job threads, several at once for different
 * jobs (never for the same job at once); each may be NULL. They must not
 * call back into the run. Jobs are indexes into pipe_run.jobs.
 */
struct runner_sink {
	void *ctx;
	/* An attempt starts: the job is waiting for its VM. attempt counts from 1. */
	void (*job_started)(void *ctx, size_t job, int attempt);
	/* The VM is ready; res has os, arch and boot_ms filled. */
	void (*vm_ready)(void *ctx, size_t job, const struct runner_job_result *res);
	void (*step_started)(void *ctx, size_t job, size_t step);
	/* Output of a step as it arrives; stream is 1 (stdout) or 2 (stderr). */
	void (*output)(void *ctx, size_t job, size_t step, int stream, const void *data,
		       size_t len);
	void (*step_finished)(void *ctx, size_t job, size_t step,
			      const struct runner_step_result *res);
	/* A line from vmci about the job (upload, artifacts), without a newline. */
	void (*note)(void *ctx, size_t job, const char *text);
	/* An infrastructure failure ended attempt; another one follows. */
	void (*job_retrying)(void *ctx, size_t job, int attempt, const char *why);
	/* The final result, once per job, started or not. */
	void (*job_finished)(void *ctx, size_t job, const struct runner_job_result *res);
};

#endif
