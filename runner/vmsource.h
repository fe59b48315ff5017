/*
 * runner: where jobs get VMs: booted cold, or leased from a warm pool.
 */
#ifndef VMCI_RUNNER_VMSOURCE_H
#define VMCI_RUNNER_VMSOURCE_H

#include "runner/guest.h"
#include "runner/pool.h"
#include "runner/workspace.h"

struct pipe_run;
struct pipe_job;

/* ---- where jobs get VMs (runner/vmsource.c, runner/warm.c) ----------- */

struct runner_lease {
	struct runner_guest *guest;
	void *priv;		   /* the source's */
	struct runner_ws_mount ws; /* the executor's: the workspace disk it mounted */
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

/* The VM network a job asked for (`network:`). */
enum vm_network runner_job_network(const struct pipe_job *job);

/*
 * Cold boot: every job a fresh VM (runner_guest_boot) with the job's cpus
 * and memory, destroyed on release. accel is passed to the guest.
 */
struct runner_cold_source {
	enum vm_accel accel;
};
void runner_vm_source_cold(struct runner_vm_source *out, struct runner_cold_source *cold);

/*
 * Warm pools: one runner_pool entry per VM shape (image, cpus, memory, network)
 * the run's selected jobs ask for, max_vms VMs in all shared by demand
 * (each shape one, then more to the shapes with more jobs), restored
 * from the image's ready-state template ($VMCI_HOME/templates). A job
 * always gets a VM of its own shape. Jobs' VMs go back to the pool
 * (reverted in the background) when they end.
 */
struct runner_warm_source;
int runner_warm_source_new(const struct pipe_run *run, const bool *selected, int max_vms,
			   enum vm_accel accel, struct runner_warm_source **out,
			   struct vmci_err *err);
/*
 * A host's warm pools (the service): no image at first; each shape
 * (image, cpus, memory) gets one VM when the first job of that shape asks
 * for one, and more, up to per_image, only while its jobs wait for one
 * (runner_pool_opts.max_size): a shape used by one job at a time keeps
 * one VM. Thread-safe acquire and release.
 */
int runner_warm_source_new_host(int per_image, enum vm_accel accel, struct runner_warm_source **out,
				struct vmci_err *err);
void runner_vm_source_warm(struct runner_vm_source *out, struct runner_warm_source *warm);
/* Makes waiting and later acquires fail (runner_pool_interrupt): for a cancelled run. */
void runner_warm_source_interrupt(struct runner_warm_source *warm);
/* Stops the pools' VMs. Safe on NULL. */
void runner_warm_source_free(struct runner_warm_source *warm);

#endif
