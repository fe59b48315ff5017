/* The cold-boot VM source: each job a fresh VM, destroyed when it ends. */
#include "runner/vmsource.h"
#include "runner/build.h"
#include "pipelines/pipelines.h"

#include <stdint.h>

enum vm_network runner_job_network(const struct pipe_job *job)
{
	return job->network == PIPE_NETWORK_NONE ? VM_NET_NONE : VM_NET_NAT;
}

static int cold_acquire(void *ctx, const struct pipe_job *job, struct runner_lease *lease,
			struct vmci_err *err)
{
	struct runner_cold_source *cold = ctx;
	struct runner_guest_opts opts = {
	    .cpus = job->cpus,
	    .memory_mb = job->memory_mb > INT32_MAX ? INT32_MAX : (int)job->memory_mb,
	    .accel = cold->accel,
	    .network = runner_job_network(job),
	};
	lease->priv = NULL;
	char image[64];
	int rc = runner_job_image(job, image, sizeof(image), err);
	return rc ? rc : runner_guest_boot(image, &opts, &lease->guest, err);
}

static void cold_release(void *ctx, struct runner_lease *lease, bool broken)
{
	runner_guest_destroy(lease->guest, broken ? 0 : VMCI_STOP_TIMEOUT_MS);
	lease->guest = NULL;
}

void runner_vm_source_cold(struct runner_vm_source *out, struct runner_cold_source *cold)
{
	*out = (struct runner_vm_source){
	    .ctx = cold, .acquire = cold_acquire, .release = cold_release};
}
