/*
 * runner: the warm pool: VMs kept ready at a clean snapshot and reverted
 * between jobs.
 */
#ifndef VMCI_RUNNER_POOL_H
#define VMCI_RUNNER_POOL_H

#include "runner/guest.h"
#include "runner/template.h"

/* ---- warm pool (runner/pool.c) --------------------------------------- */

/*
 * Warm VMs per shape: image, vCPUs and memory. Each VM takes an internal snapshot "clean" as soon
 * as its agent is first ready; a job gets a VM in that state, and when
 * the job gives it back the VM is reverted to "clean" (vm_snapshot_load:
 * memory, disk, processes, clock and entropy; its last step is a round
 * trip through the agent) and, under an emulator, warmed up with one
 * shell command (a snapshot load drops the emulator's translated code)
 * before another job may have it. A job only gets a VM of the shape it
 * asks for. A VM whose revert or warm-up fails, or that a job reports
 * broken, is destroyed, and a new one is started in its place.
 *
 * VMs are started and reverted by pool threads, as many as the host can
 * start VMs at once (runner_default_max_vms for the largest shape), so the
 * pool fills in parallel, a VM is reverted as soon as it is released, and
 * acquire usually finds one ready. Each pool records its VMs under STATE_DIR/<pid>/ (QEMU pid,
 * start time, run directory); a pool that starts later cleans up after
 * pools whose process died without runner_pool_free (SIGKILL, a crash):
 * it kills their QEMUs and deletes their run directories and records.
 */
struct runner_pool;

struct runner_pool_opts {
	const char *image; /* golden image name, built if missing */
	int size;	   /* VMs of the shape, ready or busy; at least 1 */
	/*
	 * Above size: the shape grows by demand, one VM at a time up to
	 * max_size, whenever more jobs wait for one of its VMs than are on
	 * their way (starting, or being reverted). It never shrinks. 0: size.
	 */
	int max_size;
	struct runner_guest_opts guest; /* the VMs' shape (progress is not used) */
	const char *templates;		/* start VMs from templates there; NULL: boot them */
	enum runner_template_kind template_kind;
};

struct runner_pool_stats {
	int ready, busy, starting;	    /* VMs of the image now, all shapes */
	long long started, start_failures;  /* VMs started since runner_pool_add */
	long long reverts, revert_failures; /* releases that reverted, and that failed */
	long long destroyed;		    /* VMs taken out after a failure */
	int64_t last_revert_ms; /* revert (snapshot load + reconnect) of the latest release */
};

/*
 * Creates an empty pool recording its VMs under state_dir/<pid>
 * ($VMCI_HOME/run/pool when NULL), after cleaning up what dead pools left
 * there. Free it with runner_pool_free.
 */
int runner_pool_new(const char *state_dir, struct runner_pool **out, struct vmci_err *err);

/*
 * Adds opts->size VMs of opts->image shaped by opts->guest (cpus and
 * memory_mb; 0 means runner_guest_opts' defaults), started in the
 * background, from the image's template when opts->templates is set. The
 * image is found (or built) before this returns; its VMs' failures are
 * reported by runner_pool_acquire. -EEXIST when that shape is already in.
 */
int runner_pool_add(struct runner_pool *p, const struct runner_pool_opts *opts,
		    struct vmci_err *err);

/*
 * Hands out a ready VM of image with shape's cpus and memory_mb (NULL or
 * 0: the defaults), never one of another shape, waiting up to timeout_ms
 * (negative: no limit) for one to start or be reverted. The VM is the
 * pool's: give it back with runner_pool_release, never destroy it.
 * Errors: -ENOENT when that shape of the image was not added, the failure of the latest start when
 * the image has no VM left and none is starting, -ETIMEDOUT, -EINTR after runner_pool_interrupt.
 */
int runner_pool_acquire(struct runner_pool *p, const char *image,
			const struct runner_guest_opts *shape, int timeout_ms,
			struct runner_guest **out, struct vmci_err *err);

/*
 * Gives back a VM from runner_pool_acquire. broken: the job met an
 * infrastructure failure on it (vm_exec returned an error), so it is
 * destroyed and replaced; otherwise it is reverted in the background.
 */
void runner_pool_release(struct runner_pool *p, struct runner_guest *g, bool broken);

/* Counters for image, summed over its shapes (zeros when it was not added). */
void runner_pool_stats(struct runner_pool *p, const char *image, struct runner_pool_stats *out);

/*
 * Makes every waiting and later runner_pool_acquire return -EINTR.
 * Async-signal-safe: for a SIGTERM handler, which then lets the program
 * reach runner_pool_free.
 */
void runner_pool_interrupt(struct runner_pool *p);

/*
 * Stops every VM of the pool, busy ones included, removes its records and
 * frees it. Waits for VMs being started or reverted to finish. Safe on NULL.
 */
void runner_pool_free(struct runner_pool *p);

#endif
