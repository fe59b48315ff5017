/*
 * runner: executing work in VMs. It joins images (what to boot) and
 * vmcore (how to run it).
 */
#ifndef VMCI_RUNNER_H
#define VMCI_RUNNER_H

#include <limits.h>

#include "common/common.h"
#include "images/images.h"
#include "vmcore/vmcore.h"

struct pipe_run;

/* ---- a VM booted from a golden image (runner/guest.c) ---------------- */

struct runner_guest_opts {
	int cpus;	       /* 0: 1 */
	int memory_mb;	       /* 0: 256 */
	enum vm_accel accel;   /* AUTO by default */
	img_progress_fn progress; /* called while the image is built, may be NULL */
	void *progress_ctx;
};

struct runner_guest {
	struct vm *vm;
	struct img_boot image;
	char run_dir[PATH_MAX]; /* private temporary directory, removed by destroy */
	int run_dir_lock;	/* held while the VM lives (runner_make_run_dir) */
	char disk[PATH_MAX];	/* the VM's copy-on-write clone of the image, in run_dir */
};

/*
 * Finds (building if needed) the image and boots a fresh VM from it, in a
 * new temporary run directory under $TMPDIR (unix socket paths must stay
 * short), on its own copy-on-write clone of the image's disk (an empty
 * scratch disk for images without one). Returns 0 with *out ready for commands, or a negative code with
 * err naming the image and the failure; nothing is left behind on error.
 */
int runner_guest_boot(const char *image, const struct runner_guest_opts *opts,
		      struct runner_guest **out, struct vmci_err *err);

/* Stops the VM (QMP quit, then kill after timeout_ms), removes its run directory, frees g. */
void runner_guest_destroy(struct runner_guest *g, int timeout_ms);

/* ---- the accelerator canary (runner/accel_probe.c) ------------------- */

/*
 * Boots the canary (vm_accel_canary) again on the smallest image of the
 * host's architecture (busybox-<arch>, built if missing, with opts'
 * progress) and writes the verdict that AUTO follows from then on.
 */
int runner_accel_probe(const struct runner_guest_opts *opts, struct vm_accel_verdict *out,
		       struct vmci_err *err);

/* ---- private run directories of VMs (runner/run_dir.c) -------------- */

/*
 * A VM's sockets and disk live in a run directory of its own,
 * $TMPDIR/<prefix>-XXXXXX (default /tmp: unix socket paths in it must
 * stay short), about 100 MB once its guest has written to its disk. Its
 * maker holds a lock on it (flock on the directory) for as long as it
 * keeps *lock open, and marks it as vmci's (a file RUNNER_RUN_DIR_MARK
 * holding the maker's pid) once the lock is held. A process that dies,
 * SIGKILL included, drops its locks: every runner_make_run_dir first
 * sweeps $TMPDIR of marked directories whose lock is free. Directories
 * without the mark are never touched.
 */
#define RUNNER_RUN_DIR_MARK ".vmci-owner"

/*
 * Sweeps $TMPDIR (runner_sweep_run_dirs), then creates, locks and marks a
 * run directory; its path goes to out and its lock to *lock (-1 on
 * error). Release both with runner_remove_run_dir.
 */
int runner_make_run_dir(const char *prefix, char *out, size_t size, int *lock,
			struct vmci_err *err);

/* Removes a run directory and then drops its lock (lock may be -1: only removes). */
void runner_remove_run_dir(const char *dir, int lock);

/*
 * Removes the marked run directories right under tmp whose lock nobody
 * holds (their maker died), owned by this user. Returns how many.
 */
int runner_sweep_run_dirs(const char *tmp);

/* ---- ready-state templates (runner/template.c) ----------------------- */

/*
 * A template is the state of a freshly booted guest of one image, saved
 * once, so that a new VM starts by loading it instead of booting. It
 * lives in TEMPLATES/<image digest>/<arch>-<accel>-<MiB>m-<cpus>c-<kind>/:
 *
 *   state       the device state (a plain template: and the memory), as
 *               a QEMU migration stream
 *   ram         the guest memory (a mapped template), which every VM maps
 *               privately and reads page by page as its guest touches it
 *   disk.qcow2  the disk as the guest left it when the state was saved;
 *               each VM runs on its own copy-on-write overlay of it, so
 *               memory and disk always pair (a guest that wrote to its
 *               disk while booting finds those writes there)
 *
 * A template is made whole in a temporary directory beside it and renamed
 * into place; it is never modified afterwards. Deleting the directory is
 * always safe: the next VM makes it again.
 */
enum runner_template_kind {
	RUNNER_TEMPLATE_MAPPED, /* memory in a privately mapped file (the default) */
	RUNNER_TEMPLATE_PLAIN,	/* memory inside the state stream, read whole by each VM */
};

/* "mapped" / "plain" */
const char *runner_template_kind_name(enum runner_template_kind kind);

/* $VMCI_HOME/templates: where the CLI keeps templates. */
int runner_templates_default(char *out, size_t size);

/*
 * Finds or makes (by booting a VM, about as long as runner_guest_boot) the
 * template of image for VMs shaped by opts, under templates; its directory
 * goes to dir. Builds the image first if needed.
 */
int runner_template_ensure(const char *image, const struct runner_guest_opts *opts,
			   const char *templates, enum runner_template_kind kind, char *dir,
			   size_t size, struct vmci_err *err);

/*
 * Like runner_guest_boot, but the VM starts from the image's template under
 * templates (made on first use): on its own overlay of the template's disk,
 * with the host's time, fresh entropy and an instance id of its own
 * (vm_instance_id, /run/vmci/instance-id in the guest). A template that
 * does not load (left by another QEMU version, or damaged) is made again,
 * once. Destroy the VM with runner_guest_destroy.
 */
int runner_guest_restore(const char *image, const struct runner_guest_opts *opts,
			 const char *templates, enum runner_template_kind kind,
			 struct runner_guest **out, struct vmci_err *err);

/* ---- warm pool (runner/pool.c) --------------------------------------- */

/*
 * Warm VMs per image. Each VM takes an internal snapshot "clean" as soon
 * as its agent is first ready; a job gets a VM in that state, and when
 * the job gives it back the VM is reverted to "clean" (vm_snapshot_load:
 * memory, disk, processes, clock and entropy) and pinged before another
 * job may have it. A VM whose revert or ping fails, or that a job reports
 * broken, is destroyed, and a new one is started in its place.
 *
 * VMs are started and reverted by a pool thread, so acquire usually finds
 * one ready. Each pool records its VMs under STATE_DIR/<pid>/ (QEMU pid,
 * start time, run directory); a pool that starts later cleans up after
 * pools whose process died without runner_pool_free (SIGKILL, a crash):
 * it kills their QEMUs and deletes their run directories and records.
 */
struct runner_pool;

struct runner_pool_opts {
	const char *image;		/* golden image name, built if missing */
	int size;			/* VMs of the image, ready or busy; at least 1 */
	struct runner_guest_opts guest; /* the VMs' shape (progress is not used) */
	const char *templates;		/* start VMs from templates there; NULL: boot them */
	enum runner_template_kind template_kind;
};

struct runner_pool_stats {
	int ready, busy, starting;	    /* VMs of the image now */
	long long started, start_failures;  /* VMs started since runner_pool_add */
	long long reverts, revert_failures; /* releases that reverted, and that failed */
	long long destroyed;		    /* VMs taken out after a failure */
	int64_t last_revert_ms;		    /* revert + ping of the latest release */
};

/*
 * Creates an empty pool recording its VMs under state_dir/<pid>
 * ($VMCI_HOME/run/pool when NULL), after cleaning up what dead pools left
 * there. Free it with runner_pool_free.
 */
int runner_pool_new(const char *state_dir, struct runner_pool **out, struct vmci_err *err);

/*
 * Adds opts->image with opts->size VMs, started in the background. The
 * image is found (or built) before this returns; its VMs' failures are
 * reported by runner_pool_acquire.
 */
int runner_pool_add(struct runner_pool *p, const struct runner_pool_opts *opts,
		    struct vmci_err *err);

/*
 * Hands out a ready VM of image, waiting up to timeout_ms (negative: no
 * limit) for one to start or be reverted. The VM is the pool's: give it
 * back with runner_pool_release, never destroy it. Errors: -ENOENT when
 * the image was not added, the failure of the latest start when the image
 * has no VM left and none is starting, -ETIMEDOUT, -EINTR after
 * runner_pool_interrupt.
 */
int runner_pool_acquire(struct runner_pool *p, const char *image, int timeout_ms,
			struct runner_guest **out, struct vmci_err *err);

/*
 * Gives back a VM from runner_pool_acquire. broken: the job met an
 * infrastructure failure on it (vm_exec returned an error), so it is
 * destroyed and replaced; otherwise it is reverted in the background.
 */
void runner_pool_release(struct runner_pool *p, struct runner_guest *g, bool broken);

/* Counters for image (zeros when it was not added). */
void runner_pool_stats(struct runner_pool *p, const char *image, struct runner_pool_stats *out);

/*
 * Makes every waiting and later runner_pool_acquire return -EINTR.
 * Async-signal-safe: for a SIGTERM handler, which then lets the program
 * reach runner_pool_free.
 */
void runner_pool_interrupt(struct runner_pool *p);

/*
 * Stops every VM of the pool, busy ones included, removes its records and
 * frees it. Waits for a VM being started to finish starting. Safe on NULL.
 */
void runner_pool_free(struct runner_pool *p);

/* ---- interruption by signal (runner/interrupt.c) --------------------- */

/*
 * One scheme for every front end: SIGINT, SIGTERM and SIGHUP go to one
 * thread (sigwait), never to a handler inside a job's code. The first
 * calls the registered cancellation; a second, or a first with nothing
 * registered, runs cleanup and ends the process at once.
 */
struct runner_interrupt {
	/* Cancels the work in progress (any thread may be running it); returns at once. */
	void (*cancel)(void *ctx, int signo);
	void *ctx;
};

/*
 * Starts the signal thread; call it before any other thread exists (the
 * mask is inherited). cleanup (may be NULL) runs before the process ends,
 * which it does with exit_code (0: 128 + the signal). Later calls do
 * nothing: the first caller (the command) decides.
 */
void runner_interrupt_start(void (*cleanup)(void), int exit_code);

/* Registers what the first signal cancels (NULL: nothing); returns the one it replaces. */
struct runner_interrupt runner_interrupt_set(const struct runner_interrupt *handler);

/* The first signal received, or 0. */
int runner_interrupted(void);

/* ---- the images work needs (runner/run_images.c) --------------------- */

/*
 * Finds image, building it if needed with the setup hook wired (so a
 * recipe with `setup:` builds here) and progress (may be NULL). Every
 * runner path that boots an image gets it through this.
 */
int runner_image_ensure(const char *image, img_progress_fn progress, void *progress_ctx,
			struct img_boot *out, struct vmci_err *err);

/* What runner_ensure_images reports while it works; every member may be NULL. */
struct runner_image_progress {
	void (*begin)(void *ctx, const char *image); /* before an image is found or built */
	img_progress_fn step;			     /* while it builds */
	void (*end)(void *ctx);			     /* after, whatever happened */
	void *ctx;
};

/*
 * Finds or builds, once each and before any VM starts, every image the
 * selected jobs of run use. On failure *failed_job (may be NULL) is the
 * first job whose image failed; -ENOENT means no such image (the
 * pipeline's mistake), anything else an infrastructure failure.
 */
int runner_ensure_images(const struct pipe_run *run, const bool *selected,
			 const struct runner_image_progress *progress, size_t *failed_job,
			 struct vmci_err *err);

/* ---- image setup commands (runner/image_setup.c) -------------------- */

/*
 * An img_setup_fn (ctx unused): boots req's unpublished build under
 * vmcore, runs its setup commands in order, and stops the VM with the
 * disk synced. Pass it in img_ensure_opts wherever images may be built.
 */
int runner_image_setup(void *ctx, const struct img_setup_vm *req, struct vmci_err *err);

/* ==== running a pipeline: `vmci run` and, later, the farm service ==== */

struct pipe_run;
struct pipe_job;

/* Where a job's workspace is in the guest; steps run there. */
#define RUNNER_GUEST_WORKSPACE "/work/src"

/* ---- the workspace (runner/workspace.c) ------------------------------ */

/*
 * The working tree as the user sees it, for a local run: the files git
 * tracks (HEAD plus staged changes) as they are in the working directory
 * now, plus untracked files, minus what .gitignore ignores. Deleted files
 * are absent. The contents always come from the working directory, so
 * uncommitted edits travel. Not a clone: no .git directory is shipped.
 * The top-level .vmci/ directory (where runs put artifacts and logs:
 * runner_local_run_new) is never shipped either.
 */
struct runner_workspace {
	char root[PATH_MAX]; /* the working tree's top directory (absolute) */
	bool git;	     /* false: a plain directory, shipped whole */
	char sha[41];	     /* HEAD's commit; "" without commits or git */
	char ref[256];	     /* "refs/heads/main"; "HEAD" when detached; "" without git */
	char **files;	     /* paths relative to root, sorted; regular files and symlinks */
	size_t n_files;
	/*
	 * A commit's tree (runner_workspace_from_commit, runner/git_source.h):
	 * root is a bare repository and the files are read from commit sha,
	 * stamped with its time; never from a working directory.
	 */
	bool from_commit;
	int64_t commit_time;
};

/*
 * Reads the workspace containing dir: the git repository found from dir
 * upwards (libgit2), or dir itself when it is in no repository. Returns 0
 * with *out to free with runner_workspace_free, or a negative code with
 * err (a damaged repository, an unreadable directory).
 */
int runner_workspace_open(const char *dir, struct runner_workspace **out, struct vmci_err *err);
void runner_workspace_free(struct runner_workspace *ws);

/*
 * Writes the workspace to fd as a tar stream (libarchive, pax): parent
 * directories, regular files with their modes, symlinks as symlinks.
 * Blocking writes; a file that vanished since runner_workspace_open is
 * left out. Returns 0 or a negative code with err.
 */
int runner_workspace_write_tar(const struct runner_workspace *ws, int fd, struct vmci_err *err);

/*
 * Streams the workspace into guest_dir through the agent (a writer thread
 * feeds vm_put_tar through a socket pair). On failure *host_side tells a
 * problem reading the workspace (true) from a failure of the VM (false).
 */
int runner_workspace_upload(const struct runner_workspace *ws, struct vm *vm,
			    const char *guest_dir, bool *host_side, struct vmci_err *err);

/* ---- a local run's logs and artifacts (runner/local_run.c) ---------- */

/*
 * `vmci run` keeps each run's output apart, so that runs at once in one
 * working tree never share a log file or delete each other's artifacts:
 *
 *   ROOT/.vmci/.gitignore                  "*": git ignores all of it
 *   ROOT/.vmci/runs/<ID>/logs/<job>.log
 *   ROOT/.vmci/runs/<ID>/artifacts/<job>/
 *   ROOT/.vmci/runs/latest -> <ID>         the newest run
 *
 * ID is the run's start in UTC and a counter, "20250102-150405-01": made
 * by mkdir, which fails when the name exists, so it is unique, and the
 * names sort by age. The run's process holds a lock (flock) on its
 * directory while it lives. Publishing a run points `latest` at it, by a
 * new symlink renamed over the old one (readers see one or the other),
 * and deletes the runs beyond the newest RUNNER_KEEP_RUNS whose lock is
 * free: a run still going, however old, is never deleted.
 */
#define RUNNER_KEEP_RUNS 20

struct runner_local_run {
	char id[32];		  /* "20250102-150405-01" */
	char runs[PATH_MAX];	  /* ROOT/.vmci/runs */
	char dir[PATH_MAX];	  /* runs/ID */
	char logs[PATH_MAX];	  /* dir/logs: made by whoever writes the logs */
	char artifacts[PATH_MAX]; /* dir/artifacts */
	int lock;		  /* held until runner_local_run_close; -1: none */
};

/*
 * Makes and locks a new run directory under root (the working tree's top),
 * with ROOT/.vmci and its .gitignore when missing. Returns 0, or a
 * negative code with err (out->lock is then -1).
 */
int runner_local_run_new(const char *root, struct runner_local_run *out, struct vmci_err *err);

/*
 * Makes the run the latest (ROOT/.vmci/runs/latest), then prunes old runs
 * (runner_local_runs_prune, RUNNER_KEEP_RUNS). Returns 0 or a negative
 * code with err when `latest` could not be replaced.
 */
int runner_local_run_publish(struct runner_local_run *r, struct vmci_err *err);

/* Drops the lock; discard: deletes the directory first (a run that never started). */
void runner_local_run_close(struct runner_local_run *r, bool discard);

/*
 * Deletes the runs in runs (ROOT/.vmci/runs) beyond the newest keep,
 * except those a process holds. Returns how many went.
 */
int runner_local_runs_prune(const char *runs, int keep);

/* ---- results and the log sink (runner/executor.c) -------------------- */

enum runner_result {
	RUNNER_PENDING,	  /* not finished */
	RUNNER_PASSED,	  /* every step passed (or failed with continue-on-error) */
	RUNNER_FAILED,	  /* a step failed or timed out, or the job timed out */
	RUNNER_ERROR,	  /* infrastructure: a VM failed to boot or died, the agent broke */
	RUNNER_CANCELLED, /* stopped by fail-fast or by the user */
	RUNNER_SKIPPED,	  /* never started: a job it needs did not pass */
};

/* "pending", "passed", "failed", "error", "cancelled", "skipped" */
const char *runner_result_name(enum runner_result r);

struct runner_step_result {
	enum runner_result result; /* PASSED, FAILED, CANCELLED or ERROR */
	bool continued;		   /* FAILED, but continue-on-error let the job go on */
	struct vm_exec_result exit; /* how the script ended (when it ran) */
	int64_t duration_ms;
	char how[160]; /* "exited 3", "timed out after 5s (step timeout)" */
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
	int64_t boot_ms;    /* how long the VM took to be ready */
	int artifacts;	    /* artifact globs copied out */
	bool kept;	    /* --keep-on-failure: its VM stays up (runner_executor_kept_vm) */
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

/* ---- a job's log, capped (runner/log_cap.c) -------------------------- */

/*
 * A log of at most `limit` bytes (a job's log-limit), for whatever keeps
 * logs (the terminal's log files, the service's store). Its first bytes,
 * the head, go straight through to write; once the head is full, the
 * newest bytes are held in memory (the tail: half the limit, at most
 * RUNNER_LOG_TAIL_MAX) and written when the log ends. A log that outgrew
 * its limit then reads: the head, a notice line
 *
 *   ==> log cut: N bytes dropped here (log-limit 1M keeps the first H and the last T bytes)
 *
 * and the tail, never more than `limit` bytes in all; N is exactly the
 * bytes given that are not in the log. A log within its limit is written
 * whole, unchanged. Not thread-safe: the caller serializes.
 */
#define RUNNER_LOG_TAIL_MAX   (8 << 20)
#define RUNNER_LOG_NOTICE_MAX 200 /* bytes the notice may take */
#define RUNNER_LOG_MIN_LIMIT  (4 * RUNNER_LOG_NOTICE_MAX)

/* Where a log's bytes go, in order. Returns 0 or a negative code (which stops the writes). */
typedef int (*runner_log_write_fn)(void *ctx, const void *data, size_t len);

struct runner_log_cap;

/* Returns 0 with *out, or -EINVAL (limit below RUNNER_LOG_MIN_LIMIT) or -ENOMEM with err. */
int runner_log_cap_new(int64_t limit, runner_log_write_fn write, void *ctx,
		       struct runner_log_cap **out, struct vmci_err *err);

/*
 * Adds data to the log. Returns how many of its first bytes went through
 * to write now (all of them while the head has room; the others are held
 * for the tail), or the first negative code of write (or -ENOMEM), after
 * which nothing more is written.
 */
ssize_t runner_log_cap_write(struct runner_log_cap *c, const void *data, size_t len);

/*
 * Ends the log: writes what is held, after the notice when bytes were
 * dropped. Returns 0 or the first failure of write. Later writes fail.
 */
int runner_log_cap_finish(struct runner_log_cap *c);

/* Bytes dropped so far (final after runner_log_cap_finish). */
int64_t runner_log_cap_dropped(const struct runner_log_cap *c);

/* Frees without finishing (the held tail is lost). Safe on NULL. */
void runner_log_cap_free(struct runner_log_cap *c);

/* ---- cancelling a running job (runner/run.c) ------------------------ */

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
void runner_cancel_detach(struct runner_cancel *c);

/* ---- where jobs get VMs (runner/vmsource.c, runner/warm.c) ----------- */

struct runner_lease {
	struct runner_guest *guest;
	void *priv; /* the source's */
};

/*
 * A provider of VMs for jobs. acquire is called on the job's own thread,
 * which lives until release (vm_start's rule); it returns 0 with a VM
 * ready for commands or a negative code (an infrastructure failure) with
 * err. release gives it back: broken when an infrastructure failure
 * happened on it (destroy it), otherwise it may be reverted and reused.
 */
struct runner_vm_source {
	void *ctx;
	int (*acquire)(void *ctx, const struct pipe_job *job, struct runner_lease *lease,
		       struct vmci_err *err);
	void (*release)(void *ctx, struct runner_lease *lease, bool broken);
};

/*
 * Cold boot: every job a fresh VM (runner_guest_boot) with the job's cpus
 * and memory, destroyed on release. accel is passed to the guest.
 */
struct runner_cold_source {
	enum vm_accel accel;
};
void runner_vm_source_cold(struct runner_vm_source *out, struct runner_cold_source *cold);

/*
 * Warm pools: one runner_pool per image of the run, sized by the run's
 * parallelism, VMs shaped by the first job of each image; a job whose
 * shape differs, or whose image has no pool, boots cold. Jobs' VMs go
 * back to the pool (reverted) when they end.
 */
struct runner_warm_source;
int runner_warm_source_new(const struct pipe_run *run, const bool *selected, int max_vms,
			   enum vm_accel accel, struct runner_warm_source **out,
			   struct vmci_err *err);
/*
 * A host's warm pools (the service): no image at first; each image gets
 * a pool of per_image VMs, shaped by the first job that asks for it,
 * when that job does. Thread-safe acquire and release.
 */
int runner_warm_source_new_host(int per_image, enum vm_accel accel,
				struct runner_warm_source **out, struct vmci_err *err);
void runner_vm_source_warm(struct runner_vm_source *out, struct runner_warm_source *warm);
/* Makes waiting and later acquires fail (runner_pool_interrupt): for a cancelled run. */
void runner_warm_source_interrupt(struct runner_warm_source *warm);
/* Stops the pools' VMs. Safe on NULL. */
void runner_warm_source_free(struct runner_warm_source *warm);

/* ---- one job in one VM (runner/executor.c) --------------------------- */

struct runner_exec_opts {
	const struct pipe_run *run;
	const struct runner_workspace *ws; /* uploaded to RUNNER_GUEST_WORKSPACE; NULL: none */
	const char *run_id;		   /* VMCI_RUN_ID in the guest */
	const char *artifacts_dir; /* host: each job's artifacts go to DIR/<job dir>/; NULL: none */
	const struct runner_vm_source *vms;
	const struct runner_sink *sink; /* steps, output, notes, vm_ready */
	bool keep_on_failure;		/* a failed job keeps its VM (res->kept) */
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

/* ---- scheduling a run (runner/run.c) --------------------------------- */

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
