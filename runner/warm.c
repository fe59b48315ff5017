/*
 * The warm VM source of a run: a runner_pool with one entry per VM shape
 * (image, vCPUs, memory) the run uses, so VMs restore from the image's
 * ready-state template ahead of the jobs and are reverted, not rebooted,
 * between the jobs of one shape.
 */
#include "runner/build.h"
#include "runner/pool.h"
#include "runner/vmsource.h"
#include "pipelines/pipelines.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct warm_image {
	char name[64]; /* runner_job_image: the base, or the image with the job's packages */
	int cpus;
	int64_t memory_mb;
	enum vm_network network;
};

struct runner_warm_source {
	struct runner_pool *pool;
	struct warm_image *images;
	size_t n_images;
	/* A host's source (runner_warm_source_new_host): images are added on first use. */
	bool lazy;
	int per_image;
	size_t cap_images;
	char templates[PATH_MAX]; /* the pools' VMs start from templates there */
	pthread_mutex_t lock;
	struct runner_cold_source cold;
	struct runner_vm_source cold_src;
};

/* The entry of job's shape, or NULL. */
static struct warm_image *find(struct runner_warm_source *w, const struct pipe_job *job)
{
	char name[64];
	if (runner_job_image(job, name, sizeof(name), NULL))
		return NULL;
	for (size_t i = 0; i < w->n_images; i++) {
		struct warm_image *im = &w->images[i];
		if (!strcmp(im->name, name) && im->cpus == job->cpus &&
		    im->memory_mb == job->memory_mb && im->network == runner_job_network(job))
			return im;
	}
	return NULL;
}

static struct runner_pool_opts pool_opts(struct runner_warm_source *w, const struct warm_image *im,
					 int size)
{
	return (struct runner_pool_opts){
	    .image = im->name,
	    .size = size,
	    .guest = {.cpus = im->cpus,
		      .memory_mb = im->memory_mb > INT32_MAX ? INT32_MAX : (int)im->memory_mb,
		      .accel = w->cold.accel,
		      .network = im->network},
	    .templates = w->templates[0] ? w->templates : NULL,
	    /*
	     * A snapshot template: a pool VM starts on its own copy of the
	     * template's disk, by loading the snapshot in it, and reverts to
	     * that same snapshot, so it saves none of its own first (~0.6-1.3 s
	     * less before a new VM takes its first job). Its memory is
	     * anonymous, not a private mapping of a template's file: every
	     * revert reads the whole of a VM's memory (QEMU checks each page
	     * the snapshot has as zero), and memory the guest never touched is
	     * then the host's one zero page, where a file mapping has a page of
	     * its own for each (a 1 GiB VM reverts about a third faster).
	     */
	    .template_kind = RUNNER_TEMPLATE_SNAPSHOT,
	};
}

/*
 * Shares max_vms among the shapes by their demand (counts: jobs of each
 * shape): one VM each first, then one more in turn to each shape with
 * jobs left over, until the budget is spent.
 */
static void share_budget(const int *counts, int *sizes, size_t n, int max_vms)
{
	int left = max_vms;
	for (size_t i = 0; i < n; i++) {
		sizes[i] = 1;
		left--;
	}
	for (bool grew = true; left > 0 && grew;) {
		grew = false;
		for (size_t i = 0; i < n && left > 0; i++)
			if (sizes[i] < counts[i]) {
				sizes[i]++;
				left--;
				grew = true;
			}
	}
}

int runner_warm_source_new(const struct pipe_run *run, const bool *selected, int max_vms,
			   enum vm_accel accel, struct runner_warm_source **out,
			   struct vmci_err *err)
{
	*out = NULL;
	struct runner_warm_source *w = calloc(1, sizeof(*w));
	if (w)
		w->images = calloc(run->n_jobs ? run->n_jobs : 1, sizeof(*w->images));
	if (!w || !w->images) {
		free(w);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	w->cold.accel = accel;
	pthread_mutex_init(&w->lock, NULL);
	runner_vm_source_cold(&w->cold_src, &w->cold);
	if (runner_templates_default(w->templates, sizeof(w->templates)))
		w->templates[0] = 0; /* no template store: the pools boot their VMs */
	size_t n = run->n_jobs ? run->n_jobs : 1;
	int *counts = calloc(n, sizeof(*counts));
	int *sizes = calloc(n, sizeof(*sizes));
	if (!counts || !sizes) {
		free(counts);
		free(sizes);
		runner_warm_source_free(w);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	/* One entry per shape the selected jobs ask for, and how many jobs ask for it. */
	for (size_t i = 0; i < run->n_jobs; i++) {
		if (selected && !selected[i])
			continue;
		const struct pipe_job *j = &run->jobs[i];
		struct warm_image *im = find(w, j);
		if (!im) {
			im = &w->images[w->n_images++];
			*im = (struct warm_image){.cpus = j->cpus,
						  .memory_mb = j->memory_mb,
						  .network = runner_job_network(j)};
			runner_job_image(j, im->name, sizeof(im->name), NULL);
		}
		counts[im - w->images]++;
	}
	share_budget(counts, sizes, w->n_images, max_vms);
	int rc = runner_pool_new(NULL, &w->pool, err);
	for (size_t i = 0; i < w->n_images && !rc; i++) {
		struct runner_pool_opts po = pool_opts(w, &w->images[i], sizes[i]);
		rc = runner_pool_add(w->pool, &po, err);
	}
	free(sizes);
	free(counts);
	if (rc) {
		runner_warm_source_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int runner_warm_source_new_host(int per_image, enum vm_accel accel, struct runner_warm_source **out,
				struct vmci_err *err)
{
	*out = NULL;
	struct runner_warm_source *w = calloc(1, sizeof(*w));
	if (!w)
		return vmci_err_set(err, ENOMEM, "out of memory");
	w->lazy = true;
	w->per_image = per_image < 1 ? 1 : per_image;
	w->cold.accel = accel;
	if (runner_templates_default(w->templates, sizeof(w->templates)))
		w->templates[0] = 0;
	pthread_mutex_init(&w->lock, NULL);
	runner_vm_source_cold(&w->cold_src, &w->cold);
	int rc = runner_pool_new(NULL, &w->pool, err);
	if (rc) {
		runner_warm_source_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

/*
 * A host's source: a copy of the pool entry of job's shape in *out, the
 * entry added on its first use. A copy, since another thread may grow
 * the array meanwhile. False (err) when the entry cannot be added.
 */
static bool find_or_add(struct runner_warm_source *w, const struct pipe_job *job,
			struct warm_image *out, struct vmci_err *err)
{
	pthread_mutex_lock(&w->lock);
	struct warm_image *im = find(w, job);
	if (im)
		*out = *im;
	pthread_mutex_unlock(&w->lock);
	if (im)
		return true;
	/*
	 * The image (for a job with packages, the one derived from its base)
	 * is found or built outside the lock: a build takes minutes and must
	 * not hold up the jobs of other shapes. The image store builds it once
	 * for all the threads that ask.
	 */
	struct img_boot img;
	if (runner_job_image_ensure(job, NULL, NULL, &img, err))
		return false;
	pthread_mutex_lock(&w->lock);
	im = find(w, job); /* another thread may have added it meanwhile */
	if (!im && w->n_images == w->cap_images) {
		size_t cap = w->cap_images ? w->cap_images * 2 : 8;
		struct warm_image *grown = realloc(w->images, cap * sizeof(*grown));
		if (!grown) {
			pthread_mutex_unlock(&w->lock);
			vmci_err_set(err, ENOMEM, "out of memory");
			return false;
		}
		w->images = grown;
		w->cap_images = cap;
	}
	if (!im) {
		im = &w->images[w->n_images];
		*im = (struct warm_image){.cpus = job->cpus,
					  .memory_mb = job->memory_mb,
					  .network = runner_job_network(job)};
		/* One VM at first; more only while the shape's jobs wait for one
		 * (runner_pool_opts). */
		struct runner_pool_opts po = pool_opts(w, im, 1);
		po.max_size = w->per_image;
		if (runner_job_image(job, im->name, sizeof(im->name), err) == 0 &&
		    runner_pool_add(w->pool, &po, err) == 0)
			w->n_images++;
		else
			im = NULL;
	}
	if (im)
		*out = *im;
	pthread_mutex_unlock(&w->lock);
	return im != NULL;
}

static int warm_acquire(void *ctx, const struct pipe_job *job, struct runner_lease *lease,
			struct vmci_err *err)
{
	struct runner_warm_source *w = ctx;
	struct warm_image im;
	bool have;
	if (w->lazy) {
		have = find_or_add(w, job, &im, err);
	} else {
		/* A run's source has every entry from the start: the array never moves. */
		const struct warm_image *found = find(w, job);
		if ((have = found != NULL))
			im = *found;
	}
	if (!have) {
		int rc = w->cold_src.acquire(w->cold_src.ctx, job, lease, err);
		lease->priv = NULL;
		return rc;
	}
	lease->priv = w;
	struct runner_pool_opts po = pool_opts(w, &im, 1);
	return runner_pool_acquire(w->pool, im.name, &po.guest, -1, &lease->guest, err);
}

static void warm_release(void *ctx, struct runner_lease *lease, bool broken)
{
	struct runner_warm_source *w = ctx;
	if (lease->priv)
		runner_pool_release(w->pool, lease->guest, broken);
	else
		w->cold_src.release(w->cold_src.ctx, lease, broken);
	lease->guest = NULL;
}

void runner_vm_source_warm(struct runner_vm_source *out, struct runner_warm_source *warm)
{
	*out = (struct runner_vm_source){
	    .ctx = warm, .acquire = warm_acquire, .release = warm_release};
}

void runner_warm_source_interrupt(struct runner_warm_source *warm)
{
	if (warm && warm->pool)
		runner_pool_interrupt(warm->pool);
}

void runner_warm_source_free(struct runner_warm_source *warm)
{
	if (!warm)
		return;
	runner_pool_free(warm->pool);
	pthread_mutex_destroy(&warm->lock);
	free(warm->images);
	free(warm);
}
