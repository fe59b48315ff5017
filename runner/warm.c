/*
 * The warm VM source of a run: a runner_pool with one entry per image the
 * run uses, so VMs boot (or restore from a template) ahead of the jobs
 * and are reverted, not rebooted, between the jobs of one image.
 */
#include "runner/pool.h"
#include "runner/vmsource.h"
#include "pipelines/pipelines.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct warm_image {
	const char *name;
	int cpus;
	int64_t memory_mb;
};

struct runner_warm_source {
	struct runner_pool *pool;
	struct warm_image *images;
	size_t n_images;
	/* A host's source (runner_warm_source_new_host): images are added on first use. */
	bool lazy;
	int per_image;
	size_t cap_images;
	pthread_mutex_t lock;
	struct runner_cold_source cold;
	struct runner_vm_source cold_src;
};

static struct warm_image *find(struct runner_warm_source *w, const char *image)
{
	for (size_t i = 0; i < w->n_images; i++)
		if (!strcmp(w->images[i].name, image))
			return &w->images[i];
	return NULL;
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
	int *counts = calloc(run->n_jobs ? run->n_jobs : 1, sizeof(*counts));
	if (!counts) {
		runner_warm_source_free(w);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	/* Each image's VMs take the shape of its first job. */
	for (size_t i = 0; i < run->n_jobs; i++) {
		if (selected && !selected[i])
			continue;
		const struct pipe_job *j = &run->jobs[i];
		struct warm_image *im = find(w, j->image);
		if (!im) {
			im = &w->images[w->n_images++];
			*im = (struct warm_image){j->image, j->cpus, j->memory_mb};
		}
		if (im->cpus == j->cpus && im->memory_mb == j->memory_mb)
			counts[im - w->images]++;
	}
	int rc = runner_pool_new(NULL, &w->pool, err);
	for (size_t i = 0; i < w->n_images && !rc; i++) {
		struct warm_image *im = &w->images[i];
		struct runner_pool_opts po = {
		    .image = im->name,
		    .size = counts[i] < max_vms ? counts[i] : max_vms,
		    .guest = {.cpus = im->cpus,
			      .memory_mb =
				  im->memory_mb > INT32_MAX ? INT32_MAX : (int)im->memory_mb,
			      .accel = accel},
		};
		rc = runner_pool_add(w->pool, &po, err);
	}
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

/* A host's source: the pool of job's image, added (shaped by job) on its first use. */
static struct warm_image *find_or_add(struct runner_warm_source *w, const struct pipe_job *job,
				      struct vmci_err *err)
{
	pthread_mutex_lock(&w->lock);
	struct warm_image *im = find(w, job->image);
	if (im || !w->lazy) {
		pthread_mutex_unlock(&w->lock);
		return im;
	}
	if (w->n_images == w->cap_images) {
		size_t cap = w->cap_images ? w->cap_images * 2 : 8;
		struct warm_image *grown = realloc(w->images, cap * sizeof(*grown));
		if (!grown) {
			pthread_mutex_unlock(&w->lock);
			return NULL;
		}
		w->images = grown;
		w->cap_images = cap;
	}
	struct runner_pool_opts po = {
	    .image = job->image,
	    .size = w->per_image,
	    .guest = {.cpus = job->cpus,
		      .memory_mb = job->memory_mb > INT32_MAX ? INT32_MAX : (int)job->memory_mb,
		      .accel = w->cold.accel},
	};
	/* The pool keeps its own copy of the name; ours must outlive the job's run. */
	im = &w->images[w->n_images];
	*im = (struct warm_image){strdup(job->image), job->cpus, job->memory_mb};
	if (im->name && runner_pool_add(w->pool, &po, err) == 0) {
		w->n_images++;
	} else {
		free((char *)im->name);
		im = NULL;
	}
	pthread_mutex_unlock(&w->lock);
	return im;
}

static int warm_acquire(void *ctx, const struct pipe_job *job, struct runner_lease *lease,
			struct vmci_err *err)
{
	struct runner_warm_source *w = ctx;
	struct warm_image *im = w->lazy ? find_or_add(w, job, err) : find(w, job->image);
	if (!im || im->cpus != job->cpus || im->memory_mb != job->memory_mb) {
		int rc = w->cold_src.acquire(w->cold_src.ctx, job, lease, err);
		lease->priv = NULL;
		return rc;
	}
	lease->priv = w;
	return runner_pool_acquire(w->pool, job->image, -1, &lease->guest, err);
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
	for (size_t i = 0; warm->lazy && i < warm->n_images; i++)
		free((char *)warm->images[i].name);
	pthread_mutex_destroy(&warm->lock);
	free(warm->images);
	free(warm);
}
