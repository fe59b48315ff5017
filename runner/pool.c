/*
 * The warm pool: VMs per image, each with a snapshot "clean" taken when
 * its agent was first ready, handed to one job at a time and reverted
 * between jobs (the contract is in runner.h).
 *
 * Pool threads do all the slow work: they start VMs (so they are children
 * of threads that live as long as the pool: QEMU dies with the thread that
 * started it), revert released ones, and destroy the ones that failed.
 * There are as many threads as the host can hold VMs starting at once
 * (runner_default_max_vms), so a pool fills in parallel and a released VM
 * is reverted the moment it comes back, not after a start in progress.
 * Jobs only take ready VMs and give them back. Reverts come before
 * starts: a released VM is usually the quickest way to a ready one.
 *
 * An entry of the pool is one VM shape: image, vCPUs and memory. A job
 * only ever gets a VM of the shape it asked for.
 *
 * A VM moves READY -> BUSY (acquire) -> DIRTY or BROKEN (release) ->
 * REVERTING -> READY, or is destroyed when its revert (which ends with
 * a round trip through the agent) or its warm-up fails; a destroyed VM
 * leaves room for the pool thread to start another.
 */
#include "runner/run_dir.h"
#include "runner/build.h"
#include "runner/pool.h"

#include "runner/pool_records.h"
#include "runner/sched.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A VM from a snapshot template starts with this snapshot in its disk already. */
#define POOL_SNAPSHOT RUNNER_TEMPLATE_SNAPSHOT_NAME
#define WAIT_SLICE_MS 100   /* how often a waiting acquire looks at runner_pool_interrupt */
#define RETRY_MIN_MS  1000  /* after a failed start, then doubling... */
#define RETRY_MAX_MS  60000 /* ...up to this */
#define MAX_THREADS   16    /* VMs started at once, whatever the host */
#define DEFAULT_CPUS  1	    /* runner_guest_opts' defaults */
#define DEFAULT_MB    256
#define WARM_UP_MS    30000 /* the warm-up command's time limit */

enum pool_vm_state { PV_READY, PV_BUSY, PV_DIRTY, PV_BROKEN, PV_REVERTING };

struct pool_vm {
	struct pool_vm *next;
	struct runner_guest *g;
	enum pool_vm_state state;
	pthread_t owner;       /* the pool thread that started it: QEMU dies with it */
	char record[PATH_MAX]; /* pool_records_add */
};

struct pool_image {
	char name[64];
	int size, max_size;		/* size grows up to max_size by demand */
	int waiting;			/* acquires waiting for a VM of it */
	struct runner_guest_opts guest; /* cpus and memory_mb never 0: the entry's shape */
	bool from_template;
	bool template_ready; /* its template exists: VMs may restore from it in parallel */
	char templates[PATH_MAX];
	enum runner_template_kind kind;

	struct pool_vm *vms;
	int live; /* VMs in vms plus VMs starting */
	int starting;
	int failures;	  /* consecutive failed starts */
	int64_t retry_at; /* no start before this (clock_ms) after a failure */
	struct vmci_err last_err;
	struct runner_pool_stats stats;
};

struct runner_pool {
	pthread_mutex_t mu;
	pthread_cond_t changed; /* for acquire: a VM became ready, or a start failed */
	pthread_cond_t work;	/* for the pool threads: a VM was released, or stop */
	pthread_t threads[MAX_THREADS];
	int nthreads;
	bool stopping;
	volatile sig_atomic_t interrupted;
	struct pool_image **images;
	size_t nimages;
	char dir[PATH_MAX]; /* pool_records_open */
};

/* ---- the pool thread ------------------------------------------------ */

static void timespec_in(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void destroy_vm(struct pool_vm *v)
{
	runner_guest_destroy(v->g, VMCI_STOP_TIMEOUT_MS);
	if (v->record[0])
		unlink(v->record);
	free(v);
}

static void unlink_vm(struct pool_image *im, struct pool_vm *v)
{
	for (struct pool_vm **pp = &im->vms; *pp; pp = &(*pp)->next)
		if (*pp == v) {
			*pp = v->next;
			return;
		}
}

/* Starts a VM of im and takes its clean snapshot. Runs unlocked. */
static int start_vm(struct runner_pool *p, struct pool_image *im, struct pool_vm **out,
		    struct vmci_err *err)
{
	struct pool_vm *v = calloc(1, sizeof(*v));
	if (!v)
		return vmci_err_set(err, ENOMEM, "out of memory");
	int rc = im->from_template ? runner_guest_restore(im->name, &im->guest, im->templates,
							  im->kind, &v->g, err)
				   : runner_guest_boot(im->name, &im->guest, &v->g, err);
	if (rc) {
		free(v);
		return rc;
	}
	rc = pool_records_add(p->dir, vm_pid(v->g->vm), v->g->run_dir, v->record, sizeof(v->record),
			      err);
	bool has_snapshot = im->from_template && im->kind == RUNNER_TEMPLATE_SNAPSHOT;
	if (!rc && !has_snapshot)
		rc = vm_snapshot_save(v->g->vm, POOL_SNAPSHOT, err);
	/* The guest stood still while its memory was saved: its clock is behind. */
	if (!rc && !has_snapshot)
		rc = vm_refresh_guest(v->g->vm, err);
	if (rc) {
		vmci_err_wrap(err, "cannot prepare a pool VM of '%s'", im->name);
		destroy_vm(v);
		return rc;
	}
	*out = v;
	return 0;
}

/* The load ends with a round trip through the agent: a VM it returns is healthy. */
static int revert_vm(struct pool_vm *v, struct vmci_err *err)
{
	return vm_snapshot_load(v->g->vm, POOL_SNAPSHOT, err);
}

/*
 * After a revert an emulated guest (TCG) runs every piece of code afresh
 * (a snapshot load drops the translated code): the first command of a job
 * would take ~10x its usual time. One shell command, as a job's step
 * starts, takes that cost in the background instead; it leaves nothing
 * behind in the guest.
 */
static int warm_up(struct pool_vm *v, struct vmci_err *err)
{
	if (vm_accel_used(v->g->vm) == VM_ACCEL_KVM)
		return 0;
	const char *argv[] = {"sh", "-e", "-c", ":", NULL};
	struct vm_exec_opts o = {.argv = argv, .stdin_fd = -1, .timeout_ms = WARM_UP_MS};
	struct vm_exec_result res;
	int rc = vm_exec(v->g->vm, &o, &res, err);
	if (!rc && (res.kind != VM_EXITED || res.code != 0))
		rc = vmci_err_set(err, EIO, "the guest failed to run a shell after its revert");
	return rc;
}

/* Reverts or destroys one released VM, if there is one. Called locked; returns true if it did. */
static bool handle_released(struct runner_pool *p)
{
	for (size_t i = 0; i < p->nimages; i++) {
		struct pool_image *im = p->images[i];
		for (struct pool_vm *v = im->vms; v; v = v->next) {
			if (v->state != PV_DIRTY && v->state != PV_BROKEN)
				continue;
			bool broken = v->state == PV_BROKEN;
			v->state = PV_REVERTING;
			pthread_mutex_unlock(&p->mu);
			struct vmci_err err = {0};
			int64_t t0 = clock_ms();
			int rc = broken ? -EIO : revert_vm(v, &err);
			/* The revert alone is what runner_pool_stats reports. */
			int64_t took = clock_ms() - t0;
			if (!rc)
				rc = warm_up(v, &err);
			if (rc && !broken)
				log_warn("pool VM %d of '%s' is out of the pool: %s",
					 (int)vm_pid(v->g->vm), im->name, err.msg);
			pthread_mutex_lock(&p->mu);
			if (!broken) {
				im->stats.reverts++;
				im->stats.last_revert_ms = took;
			}
			if (rc == 0) {
				v->state = PV_READY;
			} else {
				im->stats.revert_failures += !broken;
				im->stats.destroyed++;
				unlink_vm(im, v);
				pthread_mutex_unlock(&p->mu);
				destroy_vm(v);
				pthread_mutex_lock(&p->mu);
				im->live--;
			}
			pthread_cond_broadcast(&p->changed);
			return true;
		}
	}
	return false;
}

/* An image short of VMs that may start one now, or NULL; *wake_at: its next retry. */
static struct pool_image *image_to_fill(struct runner_pool *p, int64_t now, int64_t *wake_at)
{
	*wake_at = 0;
	for (size_t i = 0; i < p->nimages; i++) {
		struct pool_image *im = p->images[i];
		if (im->live >= im->size)
			continue;
		/* The first start makes sure the template exists; the others wait to load it. */
		if (im->from_template && !im->template_ready && im->starting > 0)
			continue;
		if (im->retry_at <= now)
			return im;
		if (!*wake_at || im->retry_at < *wake_at)
			*wake_at = im->retry_at;
	}
	return NULL;
}

/* Starts one VM of im. Called locked. */
static void fill(struct runner_pool *p, struct pool_image *im)
{
	im->live++;
	im->starting++;
	bool make_template = im->from_template && !im->template_ready;
	pthread_mutex_unlock(&p->mu);
	struct pool_vm *v = NULL;
	struct vmci_err err = {0};
	int rc = 0;
	if (make_template) {
		/* Alone (image_to_fill), then the other threads restore from it with this one. */
		char dir[PATH_MAX];
		rc = runner_template_ensure(im->name, &im->guest, im->templates, im->kind, dir,
					    sizeof(dir), &err);
		pthread_mutex_lock(&p->mu);
		im->template_ready = rc == 0;
		pthread_cond_broadcast(&p->work);
		pthread_mutex_unlock(&p->mu);
	}
	if (!rc)
		rc = start_vm(p, im, &v, &err);
	if (rc)
		log_warn("pool: %s", err.msg);
	pthread_mutex_lock(&p->mu);
	im->starting--;
	if (rc) {
		im->live--;
		im->failures++;
		im->stats.start_failures++;
		im->last_err = err;
		int64_t delay = RETRY_MIN_MS;
		for (int i = 1; i < im->failures && delay < RETRY_MAX_MS; i++)
			delay *= 2;
		im->retry_at = clock_ms() + (delay < RETRY_MAX_MS ? delay : RETRY_MAX_MS);
	} else {
		im->failures = 0;
		im->stats.started++;
		v->state = PV_READY;
		v->owner = pthread_self();
		v->next = im->vms;
		im->vms = v;
	}
	pthread_cond_broadcast(&p->changed);
}

static bool any_reverting(struct runner_pool *p)
{
	for (size_t i = 0; i < p->nimages; i++)
		for (struct pool_vm *v = p->images[i]->vms; v; v = v->next)
			if (v->state == PV_REVERTING)
				return true;
	return false;
}

static void *pool_thread(void *arg)
{
	struct runner_pool *p = arg;
	pthread_mutex_lock(&p->mu);
	while (!p->stopping) {
		if (handle_released(p))
			continue;
		int64_t wake_at;
		struct pool_image *im = image_to_fill(p, clock_ms(), &wake_at);
		if (im) {
			fill(p, im);
			continue;
		}
		int64_t wait = wake_at ? wake_at - clock_ms() + 1 : 60000;
		struct timespec ts;
		timespec_in(&ts, wait > 0 ? wait : 1);
		pthread_cond_timedwait(&p->work, &p->mu, &ts);
	}
	/*
	 * The VMs this thread started are its children: they go with it, in
	 * order. None may be in another thread's hands (a revert) meanwhile.
	 */
	while (any_reverting(p))
		pthread_cond_wait(&p->changed, &p->mu);
	for (size_t i = 0; i < p->nimages; i++) {
		struct pool_image *im = p->images[i];
		struct pool_vm **pp = &im->vms;
		while (*pp) {
			struct pool_vm *v = *pp;
			if (!pthread_equal(v->owner, pthread_self())) {
				pp = &v->next;
				continue;
			}
			*pp = v->next;
			im->live--;
			pthread_mutex_unlock(&p->mu);
			destroy_vm(v);
			pthread_mutex_lock(&p->mu);
			pp = &im->vms; /* the list may have changed meanwhile */
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* ---- the API -------------------------------------------------------- */

int runner_pool_new(const char *state_dir, struct runner_pool **out, struct vmci_err *err)
{
	*out = NULL;
	char def[PATH_MAX];
	if (!state_dir) {
		if (fs_path(def, sizeof(def), "%s/run/pool", vmci_home()))
			return vmci_err_set(err, ENAMETOOLONG, "$VMCI_HOME is too long");
		state_dir = def;
	}
	struct runner_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return vmci_err_set(err, ENOMEM, "out of memory");
	int rc = pool_records_open(state_dir, p->dir, sizeof(p->dir), err);
	if (rc) {
		free(p);
		return rc;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->changed, &ca);
	pthread_cond_init(&p->work, &ca);
	pthread_condattr_destroy(&ca);
	*out = p;
	return 0;
}

/* The pool's entry of image shaped by shape (NULL: the defaults), or NULL. */
static struct pool_image *find_image(struct runner_pool *p, const char *image,
				     const struct runner_guest_opts *shape)
{
	int cpus = shape && shape->cpus > 0 ? shape->cpus : DEFAULT_CPUS;
	int mb = shape && shape->memory_mb > 0 ? shape->memory_mb : DEFAULT_MB;
	enum vm_network net = shape ? shape->network : VM_NET_NONE;
	for (size_t i = 0; i < p->nimages; i++) {
		struct pool_image *im = p->images[i];
		if (!strcmp(im->name, image) && im->guest.cpus == cpus &&
		    im->guest.memory_mb == mb && im->guest.network == net)
			return im;
	}
	return NULL;
}

/*
 * Starts pool threads until there is one per VM the pool may hold (an
 * entry that grows by demand counts at its max_size: its VMs are
 * reverted in parallel once it has grown), up to as many as the host can
 * start at once. Called locked.
 */
static int grow_threads(struct runner_pool *p, struct vmci_err *err)
{
	int want = 0, mb = 0;
	for (size_t i = 0; i < p->nimages; i++) {
		want += p->images[i]->max_size;
		if (p->images[i]->guest.memory_mb > mb)
			mb = p->images[i]->guest.memory_mb;
	}
	int budget = runner_default_max_vms(mb);
	if (want > budget)
		want = budget;
	if (want > MAX_THREADS)
		want = MAX_THREADS;
	while (p->nthreads < want) {
		int rc = pthread_create(&p->threads[p->nthreads], NULL, pool_thread, p);
		if (rc)
			return p->nthreads ? 0
					   : vmci_err_errno(err, rc, "cannot start a pool thread");
		p->nthreads++;
	}
	return 0;
}

int runner_pool_add(struct runner_pool *p, const struct runner_pool_opts *opts,
		    struct vmci_err *err)
{
	if (!opts->image || opts->size < 1)
		return vmci_err_set(
		    err, EINVAL, "%s: a pool image needs a name and a size of 1 or more", __func__);
	struct pool_image *im = calloc(1, sizeof(*im));
	if (!im)
		return vmci_err_set(err, ENOMEM, "out of memory");
	if (snprintf(im->name, sizeof(im->name), "%s", opts->image) >= (int)sizeof(im->name) ||
	    (opts->templates &&
	     fs_path(im->templates, sizeof(im->templates), "%s", opts->templates))) {
		free(im);
		return vmci_err_set(err, ENAMETOOLONG, "image name or template path too long");
	}
	im->size = opts->size;
	im->max_size = opts->max_size > opts->size ? opts->max_size : opts->size;
	im->guest = opts->guest;
	if (im->guest.cpus <= 0)
		im->guest.cpus = DEFAULT_CPUS;
	if (im->guest.memory_mb <= 0)
		im->guest.memory_mb = DEFAULT_MB;
	im->from_template = opts->templates != NULL;
	im->kind = opts->template_kind;
	/* Built here, with the caller's progress display; the pool thread only finds it. */
	struct img_boot img;
	int rc = runner_image_ensure(opts->image, opts->guest.progress, opts->guest.progress_ctx,
				     &img, err);
	im->guest.progress = NULL;
	im->guest.progress_ctx = NULL;
	pthread_mutex_lock(&p->mu);
	struct pool_image **grown =
	    rc ? NULL : realloc(p->images, (p->nimages + 1) * sizeof(*grown));
	if (!rc && !grown)
		rc = vmci_err_set(err, ENOMEM, "out of memory");
	if (grown)
		p->images = grown; /* before any read: realloc may have moved it */
	if (!rc && find_image(p, opts->image, &im->guest))
		rc = vmci_err_set(err, EEXIST,
				  "image '%s' with %d vCPUs, %d MiB and network %s is already in "
				  "the pool",
				  opts->image, im->guest.cpus, im->guest.memory_mb,
				  vm_network_name(im->guest.network));
	if (!rc) {
		p->images[p->nimages++] = im;
		rc = grow_threads(p, err);
		if (rc)
			p->nimages--;
		pthread_cond_broadcast(&p->work);
	}
	pthread_mutex_unlock(&p->mu);
	if (rc)
		free(im);
	return rc;
}

/*
 * One more VM for im when more jobs wait for one than are on their way:
 * wanted but not started yet, starting, being reverted or replaced.
 * Called locked.
 */
static void grow_for_demand(struct runner_pool *p, struct pool_image *im)
{
	if (im->size >= im->max_size)
		return;
	int coming = im->size - im->live + im->starting;
	for (struct pool_vm *v = im->vms; v; v = v->next)
		if (v->state != PV_READY && v->state != PV_BUSY)
			coming++;
	if (im->waiting > coming) {
		im->size++;
		pthread_cond_broadcast(&p->work);
	}
}

int runner_pool_acquire(struct runner_pool *p, const char *image,
			const struct runner_guest_opts *shape, int timeout_ms,
			struct runner_guest **out, struct vmci_err *err)
{
	*out = NULL;
	int64_t deadline = timeout_ms >= 0 ? clock_ms() + timeout_ms : INT64_MAX;
	int rc;
	pthread_mutex_lock(&p->mu);
	struct pool_image *im = find_image(p, image, shape);
	for (;;) {
		if (!im) {
			rc = vmci_err_set(
			    err, ENOENT,
			    "image '%s' with %d vCPUs, %d MiB and network %s is not in the pool",
			    image, shape && shape->cpus > 0 ? shape->cpus : DEFAULT_CPUS,
			    shape && shape->memory_mb > 0 ? shape->memory_mb : DEFAULT_MB,
			    vm_network_name(shape ? shape->network : VM_NET_NONE));
			break;
		}
		if (p->interrupted || p->stopping) {
			rc = vmci_err_set(err, EINTR, "interrupted while waiting for a VM of '%s'",
					  image);
			break;
		}
		struct pool_vm *v = im->vms;
		while (v && v->state != PV_READY)
			v = v->next;
		if (v) {
			v->state = PV_BUSY;
			*out = v->g;
			rc = 0;
			break;
		}
		if (im->live == 0 && im->failures > 0) {
			if (err)
				*err = im->last_err;
			rc = -(im->last_err.code ? im->last_err.code : EIO);
			break;
		}
		int64_t now = clock_ms();
		if (now >= deadline) {
			rc = vmci_err_set(err, ETIMEDOUT, "no VM of '%s' became ready within %d ms",
					  image, timeout_ms);
			break;
		}
		struct timespec ts;
		timespec_in(&ts, deadline - now < WAIT_SLICE_MS ? deadline - now : WAIT_SLICE_MS);
		im->waiting++;
		grow_for_demand(p, im);
		pthread_cond_timedwait(&p->changed, &p->mu, &ts);
		im->waiting--;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void runner_pool_release(struct runner_pool *p, struct runner_guest *g, bool broken)
{
	if (!g)
		return;
	pthread_mutex_lock(&p->mu);
	bool found = false;
	for (size_t i = 0; i < p->nimages && !found; i++)
		for (struct pool_vm *v = p->images[i]->vms; v && !found; v = v->next)
			if (v->g == g && v->state == PV_BUSY) {
				v->state = broken ? PV_BROKEN : PV_DIRTY;
				found = true;
			}
	if (found)
		pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	if (!found)
		log_error("%s: VM %d was not handed out by this pool", __func__,
			  (int)vm_pid(g->vm));
}

void runner_pool_stats(struct runner_pool *p, const char *image, struct runner_pool_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < p->nimages; i++) {
		struct pool_image *im = p->images[i];
		if (strcmp(im->name, image))
			continue;
		out->started += im->stats.started;
		out->start_failures += im->stats.start_failures;
		out->reverts += im->stats.reverts;
		out->revert_failures += im->stats.revert_failures;
		out->destroyed += im->stats.destroyed;
		if (im->stats.reverts)
			out->last_revert_ms = im->stats.last_revert_ms;
		out->starting += im->starting;
		for (struct pool_vm *v = im->vms; v; v = v->next) {
			out->ready += v->state == PV_READY;
			out->busy += v->state == PV_BUSY;
		}
	}
	pthread_mutex_unlock(&p->mu);
}

void runner_pool_interrupt(struct runner_pool *p)
{
	p->interrupted = 1;
}

void runner_pool_free(struct runner_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->work);
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pool_records_close(p->dir);
	for (size_t i = 0; i < p->nimages; i++)
		free(p->images[i]);
	free(p->images);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->changed);
	pthread_cond_destroy(&p->work);
	free(p);
}
