/*
 * Scheduling a run: which job starts when.
 *
 * The calling thread (runner_run_exec) is the scheduler: under one mutex
 * it walks the jobs in file order, starts every job whose needs passed
 * while there is room (the run's max_vms, the matrix's max-parallel),
 * skips jobs whose needs did not pass, and sleeps on a condition variable
 * until a job ends or the run is cancelled. Each job runs on a thread of
 * its own, which makes and stops the job's VMs (a QEMU dies with the
 * thread that started it), retries infrastructure failures, and, when
 * the job keeps its VM, parks until runner_run_release.
 *
 * What runs a job is behind runner_job_ops, so the logic here is tested
 * with fake jobs (tests/unit/runner).
 */
#include "runner/sched.h"
#include "runner/handoff.h"
#include "pipelines/pipelines.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How often the scheduler repeats pending cancels (see runner_cancel_request). */
#define TICK_MS 200
/* What QEMU itself takes besides the guest's memory, for runner_default_max_vms. */
#define QEMU_OVERHEAD_MB 192

/* ---- cancel -------------------------------------------------------------------- */

struct runner_cancel {
	pthread_mutex_t lock;
	bool requested;
	struct vm *vm;
	struct runner_remote *remote; /* the job's VM moved there */
};

struct runner_cancel *runner_cancel_new(void)
{
	struct runner_cancel *c = calloc(1, sizeof(*c));
	if (c)
		pthread_mutex_init(&c->lock, NULL);
	return c;
}

void runner_cancel_free(struct runner_cancel *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void runner_cancel_request(struct runner_cancel *c)
{
	pthread_mutex_lock(&c->lock);
	c->requested = true;
	/*
	 * vm_cancel reaches a command only while one runs; a request that
	 * lands between two steps is seen by the executor before the next
	 * one, and the scheduler repeats requests every tick for the window
	 * in which vm_exec is just starting.
	 */
	if (c->vm)
		vm_cancel(c->vm);
	if (c->remote)
		runner_remote_cancel(c->remote);
	pthread_mutex_unlock(&c->lock);
}

bool runner_cancel_requested(struct runner_cancel *c)
{
	pthread_mutex_lock(&c->lock);
	bool r = c->requested;
	pthread_mutex_unlock(&c->lock);
	return r;
}

bool runner_cancel_attach(struct runner_cancel *c, struct vm *vm)
{
	pthread_mutex_lock(&c->lock);
	bool ok = !c->requested;
	if (ok)
		c->vm = vm;
	pthread_mutex_unlock(&c->lock);
	return ok;
}

bool runner_cancel_attach_remote(struct runner_cancel *c, struct runner_remote *r)
{
	pthread_mutex_lock(&c->lock);
	bool ok = !c->requested;
	if (ok)
		c->remote = r;
	pthread_mutex_unlock(&c->lock);
	return ok;
}

void runner_cancel_detach(struct runner_cancel *c)
{
	pthread_mutex_lock(&c->lock);
	c->vm = NULL;
	c->remote = NULL;
	pthread_mutex_unlock(&c->lock);
}

void runner_cancel_move(struct runner_cancel *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->vm && !c->requested)
		vm_detach(c->vm);
	pthread_mutex_unlock(&c->lock);
}

/* ---- the run ------------------------------------------------------------------------ */

enum phase { WAITING, RUNNING, DONE };

struct job_slot {
	struct runner_run *run;
	size_t index;
	bool selected;
	enum phase phase;
	bool has_thread;
	pthread_t thread;
	struct runner_cancel cancel;
	struct runner_job_result res;
};

struct runner_run {
	struct runner_run_opts opts;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job_slot *jobs;
	size_t n_jobs;
	int *group_running; /* per pipe_group */
	int running;
	bool cancelled;
	bool releasing;
	bool released;
};

const char *runner_result_name(enum runner_result r)
{
	switch (r) {
	case RUNNER_PENDING:
		return "pending";
	case RUNNER_PASSED:
		return "passed";
	case RUNNER_FAILED:
		return "failed";
	case RUNNER_ERROR:
		return "error";
	case RUNNER_CANCELLED:
		return "cancelled";
	case RUNNER_SKIPPED:
		return "skipped";
	}
	return "?";
}

int runner_run_new(const struct runner_run_opts *opts, struct runner_run **out,
		   struct vmci_err *err)
{
	*out = NULL;
	const struct pipe_run *p = opts->run;
	struct runner_run *r = calloc(1, sizeof(*r));
	if (!r)
		return vmci_err_set(err, ENOMEM, "out of memory");
	r->opts = *opts;
	if (r->opts.max_vms < 1)
		r->opts.max_vms = 1;
	r->n_jobs = p->n_jobs;
	r->jobs = calloc(p->n_jobs ? p->n_jobs : 1, sizeof(*r->jobs));
	r->group_running = calloc(p->n_groups ? p->n_groups : 1, sizeof(*r->group_running));
	if (!r->jobs || !r->group_running) {
		free(r->jobs);
		free(r->group_running);
		free(r);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	for (size_t i = 0; i < p->n_jobs; i++) {
		struct job_slot *s = &r->jobs[i];
		s->run = r;
		s->index = i;
		s->selected = !opts->selected || opts->selected[i];
		s->phase = s->selected ? WAITING : DONE;
		s->res.result = RUNNER_PENDING;
		s->res.failed_step = -1;
		pthread_mutex_init(&s->cancel.lock, NULL);
	}
	*out = r;
	return 0;
}

/* ---- ending a job (under the lock) ------------------------------------------------ */

static void report_finished(struct runner_run *r, struct job_slot *s)
{
	const struct runner_sink *k = r->opts.sink;
	if (k && k->job_finished)
		k->job_finished(k->ctx, s->index, &s->res);
}

/* Ends a job that never started. */
static void finish_unstarted(struct runner_run *r, struct job_slot *s, enum runner_result res,
			     const char *why)
{
	s->phase = DONE;
	s->res.result = res;
	snprintf(s->res.how, sizeof(s->res.how), "%s", why);
	report_finished(r, s);
}

/* fail-fast: the rest of the failed job's matrix is cancelled. */
static void fail_fast(struct runner_run *r, struct job_slot *failed)
{
	const struct pipe_run *p = r->opts.run;
	const struct pipe_group *g = &p->groups[p->jobs[failed->index].group];
	if (!g->fail_fast)
		return;
	char why[160];
	snprintf(why, sizeof(why), "fail-fast: '%s' failed", p->jobs[failed->index].name);
	for (size_t i = g->first; i < g->first + g->count; i++) {
		struct job_slot *s = &r->jobs[i];
		if (s->phase == WAITING)
			finish_unstarted(r, s, RUNNER_CANCELLED, why);
		else if (s->phase == RUNNING)
			runner_cancel_request(&s->cancel);
	}
}

/* ---- a job's thread ------------------------------------------------------------------- */

static void *job_thread(void *arg)
{
	struct job_slot *s = arg;
	struct runner_run *r = s->run;
	const struct pipe_job *job = &r->opts.run->jobs[s->index];
	const struct runner_job_ops *ops = r->opts.ops;
	const struct runner_sink *k = r->opts.sink;
	int64_t t0 = clock_ms();
	struct runner_job_result res;
	int attempt = 1;
	for (;; attempt++) {
		memset(&res, 0, sizeof(res));
		res.failed_step = -1;
		if (k && k->job_started)
			k->job_started(k->ctx, s->index, attempt);
		ops->run(ops->ctx, s->index, attempt, &s->cancel, &res);
		/* Only the infrastructure is retried: a failing step fails the same way again. */
		if (res.result != RUNNER_ERROR || attempt > job->retries ||
		    runner_cancel_requested(&s->cancel))
			break;
		if (k && k->job_retrying)
			k->job_retrying(k->ctx, s->index, attempt, res.error);
	}
	res.attempts = attempt;
	res.duration_ms = clock_ms() - t0;

	pthread_mutex_lock(&r->lock);
	s->res = res;
	s->phase = DONE;
	r->running--;
	r->group_running[job->group]--;
	report_finished(r, s);
	if (res.result == RUNNER_FAILED || res.result == RUNNER_ERROR)
		fail_fast(r, s);
	pthread_cond_broadcast(&r->cond);
	if (res.kept) {
		/* The VM stays up (for a shell in it) until the run lets it go. */
		while (!r->releasing)
			pthread_cond_wait(&r->cond, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	if (res.kept && ops->release)
		ops->release(ops->ctx, s->index, &s->cancel);
	return NULL;
}

/* ---- the scheduler ------------------------------------------------------------------------ */

enum readiness { READY, BLOCKED, NEVER };

/* Whether a waiting job may start: every selected job it needs passed. */
static enum readiness needs_state(struct runner_run *r, size_t i, char *why, size_t whylen)
{
	const struct pipe_job *job = &r->opts.run->jobs[i];
	enum readiness state = READY;
	for (size_t n = 0; n < job->n_needs; n++) {
		const struct pipe_need *need = &job->needs[n];
		for (size_t k = need->first; k < need->first + need->count; k++) {
			struct job_slot *s = &r->jobs[k];
			if (!s->selected)
				continue;
			if (s->phase != DONE) {
				state = BLOCKED;
				continue;
			}
			if (s->res.result != RUNNER_PASSED) {
				snprintf(why, whylen, "needs '%s', which %s",
					 r->opts.run->jobs[k].name,
					 s->res.result == RUNNER_SKIPPED     ? "was skipped"
					 : s->res.result == RUNNER_CANCELLED ? "was cancelled"
									     : "failed");
				return NEVER;
			}
		}
	}
	return state;
}

static void start_job(struct runner_run *r, struct job_slot *s)
{
	const struct pipe_job *job = &r->opts.run->jobs[s->index];
	s->phase = RUNNING;
	r->running++;
	r->group_running[job->group]++;
	if (pthread_create(&s->thread, NULL, job_thread, s) == 0) {
		s->has_thread = true;
		return;
	}
	r->running--;
	r->group_running[job->group]--;
	s->phase = DONE;
	s->res.result = RUNNER_ERROR;
	snprintf(s->res.error, sizeof(s->res.error), "cannot start a thread for job '%s'",
		 job->name);
	report_finished(r, s);
}

/* One pass over the waiting jobs. Returns whether any is still waiting or running. */
static bool schedule(struct runner_run *r)
{
	const struct pipe_run *p = r->opts.run;
	bool busy = false;
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct job_slot *s = &r->jobs[i];
		if (s->phase == RUNNING) {
			busy = true;
			if (r->cancelled || runner_cancel_requested(&s->cancel))
				runner_cancel_request(&s->cancel); /* repeated: see above */
			continue;
		}
		if (s->phase != WAITING)
			continue;
		if (r->cancelled) {
			finish_unstarted(r, s, RUNNER_CANCELLED, "cancelled");
			continue;
		}
		char why[256] = "";
		enum readiness ready = needs_state(r, i, why, sizeof(why));
		if (ready == NEVER) {
			finish_unstarted(r, s, RUNNER_SKIPPED, why);
			/* Jobs before it may need it: look again from the start. */
			i = (size_t)-1;
			continue;
		}
		busy = true;
		const struct pipe_group *g = &p->groups[p->jobs[i].group];
		if (ready == BLOCKED || r->running >= r->opts.max_vms ||
		    (g->max_parallel > 0 && r->group_running[p->jobs[i].group] >= g->max_parallel))
			continue;
		start_job(r, s);
	}
	return busy;
}

void runner_run_exec(struct runner_run *r)
{
	pthread_mutex_lock(&r->lock);
	while (schedule(r)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
}

void runner_run_cancel(struct runner_run *r)
{
	pthread_mutex_lock(&r->lock);
	r->cancelled = true;
	for (size_t i = 0; i < r->n_jobs; i++)
		if (r->jobs[i].has_thread)
			runner_cancel_request(&r->jobs[i].cancel); /* kept VMs' shells too */
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

void runner_run_move(struct runner_run *r)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_jobs; i++)
		if (r->jobs[i].has_thread)
			runner_cancel_move(&r->jobs[i].cancel);
	pthread_mutex_unlock(&r->lock);
}

const struct runner_job_result *runner_run_result(const struct runner_run *r, size_t job)
{
	return &r->jobs[job].res;
}

void runner_run_release(struct runner_run *r)
{
	pthread_mutex_lock(&r->lock);
	if (r->released) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	r->releasing = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < r->n_jobs; i++) {
		if (r->jobs[i].has_thread) {
			pthread_join(r->jobs[i].thread, NULL);
			r->jobs[i].has_thread = false;
		}
	}
	r->released = true;
}

void runner_run_free(struct runner_run *r)
{
	if (!r)
		return;
	runner_run_release(r);
	for (size_t i = 0; i < r->n_jobs; i++)
		pthread_mutex_destroy(&r->jobs[i].cancel.lock);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r->group_running);
	free(r->jobs);
	free(r);
}

/* ---- capacity ------------------------------------------------------------------------------- */

static long long mem_available_mb(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return -1;
	char line[256];
	long long kb = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb / 1024;
}

int runner_default_max_vms(int64_t memory_mb)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	long long n = cpus > 0 ? cpus : 1;
	long long avail = mem_available_mb();
	if (avail > 0) {
		long long by_mem = avail / ((memory_mb > 0 ? memory_mb : 256) + QEMU_OVERHEAD_MB);
		if (by_mem < n)
			n = by_mem;
	}
	return n < 1 ? 1 : (int)(n > 1024 ? 1024 : n);
}
