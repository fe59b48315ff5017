/*
 * The workers of one host: each a thread with its own store handle that
 * claims a job, runs it with the executor of `vmci run` on the host's
 * warm pools, and reports it; idle workers wait for a store transaction
 * of this process that may have made a job claimable (store_queue_watch),
 * or poll_ms for jobs queued by other processes; a heartbeat thread
 * renews the host's leases. A monitor thread per running job flushes its log every
 * LOG_FLUSH_MS and turns a cancel request in the store into a cancel of
 * the job.
 */
#include "runner/service/internal.h"
#include "runner/git_source.h"
#include "runner/runner.h"
#include "runner/store.h"
#include "pipelines/pipelines.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DEFAULT_LEASE_S 30
#define LOG_FLUSH_MS	100
#define CANCEL_POLL_MS	500
#define DEFAULT_POLL_MS 300

struct worker {
	struct service *svc;
	pthread_t thread;
	bool started;
	struct store *store;
	struct runner_cancel *cancel; /* of the running job, under svc->lock */
};

struct service {
	struct service_opts o;
	struct runner_warm_source *warm; /* NULL when cold */
	struct runner_cold_source cold;
	struct runner_vm_source vms;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping; /* no more claims */
	bool shutdown; /* running jobs were cancelled to stop: they are requeued, not finished */
	int running;
	unsigned wakes; /* store_queue_watch calls: jobs may have become claimable */
	int watch;	/* its id, or -1 */
	struct worker *workers;
	int n_workers;
	struct store *hb_store;
	pthread_t heartbeat;
	bool hb_started;
	bool git_held; /* git_source_hold while the workers run */
};

/* Waits on svc->cond (locked) for at most ms. */
static void wait_ms(struct service *svc, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&svc->cond, &svc->lock, &ts);
}

/* A transaction of this process may have made jobs claimable: wake the idle workers. */
static void on_queue_changed(void *ctx)
{
	struct service *svc = ctx;
	pthread_mutex_lock(&svc->lock);
	svc->wakes++;
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
}

/* ---- the monitor of a running job ---------------------------------------------------- */

struct monitor {
	struct store *store;
	int64_t job_id;
	int attempt;
	struct service_job_log *log;
	struct runner_cancel *cancel;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	bool lost; /* the attempt is no longer current */
};

static void *monitor_main(void *arg)
{
	struct monitor *m = arg;
	int64_t next_poll = clock_ms() + CANCEL_POLL_MS;
	pthread_mutex_lock(&m->lock);
	while (!m->done) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += LOG_FLUSH_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&m->cond, &m->lock, &ts);
		pthread_mutex_unlock(&m->lock);
		if (service_job_log_flush(m->log) == -ESTALE)
			m->lost = true;
		if (clock_ms() >= next_poll) {
			next_poll = clock_ms() + CANCEL_POLL_MS;
			struct vmci_err err = {0};
			int rc = store_job_cancel_requested(m->store, m->job_id, m->attempt, &err);
			if (rc == -ESTALE)
				m->lost = true;
			if (rc == 1 || rc == -ESTALE)
				runner_cancel_request(m->cancel);
		}
		pthread_mutex_lock(&m->lock);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* ---- artifacts ------------------------------------------------------------------------- */

/* Indexes every regular file under root/rel in the store. */
static void index_artifacts(struct store *s, int64_t job_id, int attempt, const char *root,
			    const char *rel)
{
	char path[PATH_MAX];
	if (fs_path(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel))
		return;
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char child[PATH_MAX], full[PATH_MAX];
		if (fs_path(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", de->d_name) ||
		    fs_path(full, sizeof(full), "%s/%s", root, child))
			continue;
		struct stat st;
		if (lstat(full, &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			index_artifacts(s, job_id, attempt, root, child);
			continue;
		}
		char sha[SHA256_HEX_LEN + 1];
		struct vmci_err err = {0};
		if (!S_ISREG(st.st_mode) || sha256_file(full, sha, &err) ||
		    store_artifact_add(s, job_id, attempt, child, st.st_size, sha, &err))
			if (err.code)
				log_warn("job %lld: artifact %s: %s", (long long)job_id, child,
					 err.msg);
	}
	closedir(d);
}

/* ---- one job ---------------------------------------------------------------------------- */

static enum store_status status_of(enum runner_result r)
{
	switch (r) {
	case RUNNER_PASSED:
		return STORE_SUCCESS;
	case RUNNER_FAILED:
		return STORE_FAILURE;
	case RUNNER_CANCELLED:
		return STORE_CANCELLED;
	default:
		return STORE_ERROR;
	}
}

/* What a job needs before it runs: its run, commit, pipeline and workspace. */
struct job_input {
	struct store_run *run;
	struct pipe_run *pipeline;
	long index;
	struct runner_workspace *ws;
	char run_id[32];
	char artifacts[PATH_MAX];
};

static int prepare(struct worker *w, const struct store_job *job, struct job_input *in,
		   struct vmci_err *err)
{
	const struct service_opts *o = &w->svc->o;
	int rc = store_run_get(w->store, job->run_id, &in->run, err);
	if (rc)
		return rc;
	const struct service_repo *repo = service_config_repo(o->config, in->run->repo);
	if (!repo)
		return vmci_err_set(err, ENOENT,
				    "repository '%s' is not in this host's config (add it under "
				    "repos:)",
				    in->run->repo);
	char sha[GIT_SHA_HEX_LEN + 1], git_dir[PATH_MAX];
	rc = git_source_fetch(o->dirs.git, repo->name, repo->url, in->run->ref, in->run->sha, sha,
			      err);
	if (rc == 0)
		rc = git_source_dir(o->dirs.git, repo->name, git_dir, sizeof(git_dir), err);
	if (rc)
		return rc;
	snprintf(in->run_id, sizeof(in->run_id), "%lld", (long long)job->run_id);
	rc =
	    service_pipeline_load(git_dir, repo, sha, in->run->ref, in->run_id, &in->pipeline, err);
	if (rc)
		return rc;
	in->index = pipe_run_find_job(in->pipeline, job->name);
	if (in->index < 0)
		return vmci_err_set(err, ENOENT, "the pipeline at %.12s has no job '%s'", sha,
				    job->name);
	rc = runner_workspace_from_commit(git_dir, sha, in->run->ref, &in->ws, err);
	if (rc)
		return rc;
	char root[PATH_MAX];
	if (o->dirs.artifacts)
		snprintf(root, sizeof(root), "%s", o->dirs.artifacts);
	else if (fs_path(root, sizeof(root), "%s/artifacts", vmci_home()))
		return vmci_err_set(err, ENAMETOOLONG, "$VMCI_HOME is too long");
	if (fs_path(in->artifacts, sizeof(in->artifacts), "%s/%s", root, in->run_id))
		return vmci_err_set(err, ENAMETOOLONG, "artifact path too long");
	return fs_mkdir_p(in->artifacts, 0755, err);
}

static void job_input_free(struct job_input *in)
{
	runner_workspace_free(in->ws);
	pipe_run_free(in->pipeline);
	store_run_free(in->run);
}

static void report(struct worker *w, const struct store_job *job, enum store_status status,
		   int exit_code, const char *failed_step)
{
	struct vmci_err err = {0};
	int rc =
	    store_job_finish(w->store, job->id, job->attempt, status, exit_code, failed_step, &err);
	if (rc < 0 && rc != -ESTALE)
		log_error("job %lld: cannot record its result: %s", (long long)job->id, err.msg);
}

static void run_job(struct worker *w, const struct store_job *job)
{
	struct service *svc = w->svc;
	struct vmci_err err = {0};
	struct job_input in = {0};
	struct service_job_log *log = NULL;
	int rc = prepare(w, job, &in, &err);
	int64_t limit = rc == 0 ? in.pipeline->jobs[in.index].log_limit : PIPE_DEFAULT_LOG_LIMIT;
	struct vmci_err lerr = {0};
	if (service_job_log_new(w->store, job->id, job->attempt, limit, in.pipeline, &log, &lerr)) {
		log_error("job %lld: %s", (long long)job->id, lerr.msg);
		report(w, job, STORE_ERROR, -1, NULL);
		job_input_free(&in);
		return;
	}
	if (rc) {
		service_job_log_note(log, "%s", err.msg);
		service_job_log_finish(log);
		report(w, job, STORE_ERROR, -1, NULL);
		service_job_log_free(log);
		job_input_free(&in);
		return;
	}
	service_job_log_note(log, "attempt %d of job '%s' on host %s, commit %.12s", job->attempt,
			     job->name, svc->o.host, in.ws->sha);
	struct runner_sink sink;
	service_job_log_sink(log, &sink);
	struct runner_exec_opts xo = {
	    .run = in.pipeline,
	    .ws = in.ws,
	    .run_id = in.run_id,
	    .artifacts_dir = in.artifacts,
	    .vms = &svc->vms,
	    .sink = &sink,
	};
	struct monitor m = {.store = w->store,
			    .job_id = job->id,
			    .attempt = job->attempt,
			    .log = log,
			    .cancel = runner_cancel_new()};
	pthread_mutex_init(&m.lock, NULL);
	pthread_cond_init(&m.cond, NULL);
	pthread_t monitor;
	bool monitored = m.cancel && pthread_create(&monitor, NULL, monitor_main, &m) == 0;
	struct runner_job_result res = {0};
	if (monitored) {
		pthread_mutex_lock(&svc->lock);
		w->cancel = m.cancel;
		if (svc->shutdown)
			runner_cancel_request(m.cancel);
		pthread_mutex_unlock(&svc->lock);
		struct runner_lease kept;
		runner_execute(&xo, (size_t)in.index, job->attempt, m.cancel, &res, &kept);
		pthread_mutex_lock(&svc->lock);
		w->cancel = NULL;
		pthread_mutex_unlock(&svc->lock);
		pthread_mutex_lock(&m.lock);
		m.done = true;
		pthread_cond_signal(&m.cond);
		pthread_mutex_unlock(&m.lock);
		pthread_join(monitor, NULL);
	} else {
		res.result = RUNNER_ERROR;
		snprintf(res.error, sizeof(res.error), "cannot start the job's monitor thread");
	}
	if (res.result == RUNNER_ERROR && res.error[0])
		service_job_log_note(log, "%s", res.error);
	bool lost = m.lost || service_job_log_finish(log) == -ESTALE;
	pthread_mutex_lock(&svc->lock);
	bool shutdown = svc->shutdown;
	pthread_mutex_unlock(&svc->lock);
	if (!lost && !(shutdown && res.result == RUNNER_CANCELLED)) {
		char dir[PATH_MAX], name[256];
		runner_job_dirname(job->name, name, sizeof(name));
		if (!fs_path(dir, sizeof(dir), "%s/%s", in.artifacts, name))
			index_artifacts(w->store, job->id, job->attempt, dir, "");
		const char *failed = res.failed_step >= 0
					 ? in.pipeline->jobs[in.index].steps[res.failed_step].name
					 : NULL;
		report(w, job, status_of(res.result), service_job_log_exit_code(log), failed);
	}
	runner_cancel_free(m.cancel);
	pthread_cond_destroy(&m.cond);
	pthread_mutex_destroy(&m.lock);
	service_job_log_free(log);
	job_input_free(&in);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct service *svc = w->svc;
	pthread_mutex_lock(&svc->lock);
	while (!svc->stopping) {
		unsigned seen = svc->wakes;
		pthread_mutex_unlock(&svc->lock);
		struct store_job *job = NULL;
		struct vmci_err err = {0};
		int rc = store_claim(w->store, svc->o.host, svc->o.lease_s, &job, &err);
		if (rc < 0)
			log_warn("host %s: cannot claim a job: %s", svc->o.host, err.msg);
		pthread_mutex_lock(&svc->lock);
		if (rc != 1) {
			/* Jobs queued by this process wake it at once; others are polled for. */
			if (!svc->stopping && svc->wakes == seen)
				wait_ms(svc, svc->o.poll_ms);
			continue;
		}
		svc->running++;
		pthread_mutex_unlock(&svc->lock);
		run_job(w, job);
		store_job_free(job);
		pthread_mutex_lock(&svc->lock);
		svc->running--;
		pthread_cond_broadcast(&svc->cond);
	}
	pthread_mutex_unlock(&svc->lock);
	return NULL;
}

/* ---- the heartbeat ------------------------------------------------------------------------ */

static void *heartbeat_main(void *arg)
{
	struct service *svc = arg;
	int every = svc->o.lease_s * 1000 / 3;
	pthread_mutex_lock(&svc->lock);
	/* Beats until the workers are gone: a job finishing during shutdown keeps its lease. */
	while (!svc->shutdown || svc->running) {
		/* Every `every` ms, not at each wake of the workers (a job's end, a queued run). */
		int64_t beat = clock_ms() + every;
		while (clock_ms() < beat && !(svc->stopping && !svc->running))
			wait_ms(svc, (int)(beat - clock_ms()));
		pthread_mutex_unlock(&svc->lock);
		struct vmci_err err = {0};
		if (store_lease_renew(svc->hb_store, svc->o.host, &err) < 0 ||
		    store_host_heartbeat(svc->hb_store, svc->o.host, &err) < 0)
			log_warn("host %s: heartbeat: %s", svc->o.host, err.msg);
		pthread_mutex_lock(&svc->lock);
		if (svc->stopping && !svc->running)
			break;
	}
	pthread_mutex_unlock(&svc->lock);
	return NULL;
}

/* ---- start and stop ----------------------------------------------------------------------- */

int service_start(const struct service_opts *opts, struct service **out, struct vmci_err *err)
{
	*out = NULL;
	struct service *svc = calloc(1, sizeof(*svc));
	if (!svc)
		return vmci_err_set(err, ENOMEM, "out of memory");
	svc->o = *opts;
	if (svc->o.lease_s <= 0)
		svc->o.lease_s = DEFAULT_LEASE_S;
	if (svc->o.capacity < 1)
		svc->o.capacity = 1;
	if (svc->o.poll_ms <= 0)
		svc->o.poll_ms = DEFAULT_POLL_MS;
	svc->watch = -1;
	pthread_mutex_init(&svc->lock, NULL);
	pthread_cond_init(&svc->cond, NULL);
	int rc = store_open(opts->db_url, &svc->hb_store, err);
	if (rc == 0)
		rc = store_host_register(svc->hb_store, opts->host, opts->url ? opts->url : "",
					 svc->o.capacity, err);
	/* A previous process of this host died: its jobs' VMs died with it. */
	if (rc == 0 &&
	    (rc = store_requeue_host(svc->hb_store, opts->host, STORE_REQUEUE_RESTARTED, err)) > 0)
		log_info("host %s: requeued %d job(s) left running by a previous process",
			 opts->host, rc);
	if (rc >= 0)
		rc = store_requeue_expired(svc->hb_store, store_now_ms(svc->hb_store), err);
	svc->cold.accel = opts->accel;
	if (rc >= 0 && !opts->cold)
		rc = runner_warm_source_new_host(svc->o.capacity, opts->accel, &svc->warm, err);
	if (rc < 0) {
		store_close(svc->hb_store);
		free(svc);
		return rc;
	}
	if (svc->warm)
		runner_vm_source_warm(&svc->vms, svc->warm);
	else
		runner_vm_source_cold(&svc->vms, &svc->cold);
	svc->watch = store_queue_watch(on_queue_changed, svc, NULL);
	if (svc->watch < 0)
		log_warn("host %s: idle workers poll for every queued job", svc->o.host);
	git_source_hold();
	svc->git_held = true;
	svc->workers = calloc((size_t)svc->o.capacity, sizeof(*svc->workers));
	if (!svc->workers) {
		service_stop(svc, 0);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	for (int i = 0; i < svc->o.capacity; i++) {
		struct worker *w = &svc->workers[i];
		w->svc = svc;
		rc = store_open(opts->db_url, &w->store, err);
		if (rc == 0 && pthread_create(&w->thread, NULL, worker_main, w))
			rc = vmci_err_set(err, EAGAIN, "cannot start a worker thread");
		if (rc) {
			service_stop(svc, 0);
			return rc;
		}
		w->started = true;
		svc->n_workers++;
	}
	if (pthread_create(&svc->heartbeat, NULL, heartbeat_main, svc) == 0)
		svc->hb_started = true;
	*out = svc;
	return 0;
}

int service_running(struct service *svc)
{
	pthread_mutex_lock(&svc->lock);
	int n = svc->running;
	pthread_mutex_unlock(&svc->lock);
	return n;
}

void service_stop(struct service *svc, int grace_ms)
{
	if (!svc)
		return;
	int64_t deadline = clock_ms() + grace_ms;
	pthread_mutex_lock(&svc->lock);
	svc->stopping = true;
	pthread_cond_broadcast(&svc->cond);
	while (svc->running && clock_ms() < deadline)
		wait_ms(svc, (int)(deadline - clock_ms() < 200 ? deadline - clock_ms() + 1 : 200));
	if (svc->running) {
		log_warn("host %s: %d job(s) still running after the grace period: stopping them "
			 "to run again later",
			 svc->o.host, svc->running);
		svc->shutdown = true;
		for (int i = 0; i < svc->n_workers; i++)
			if (svc->workers[i].cancel)
				runner_cancel_request(svc->workers[i].cancel);
		runner_warm_source_interrupt(svc->warm);
	}
	svc->shutdown = true;
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
	for (int i = 0; i < svc->n_workers; i++)
		pthread_join(svc->workers[i].thread, NULL);
	pthread_mutex_lock(&svc->lock);
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
	if (svc->hb_started)
		pthread_join(svc->heartbeat, NULL);
	store_queue_unwatch(svc->watch);
	struct vmci_err err = {0};
	/* Stopped by this host on purpose: these attempts do not count as lost leases. */
	if (svc->hb_store &&
	    store_requeue_host(svc->hb_store, svc->o.host, STORE_REQUEUE_STOPPED, &err) < 0)
		log_warn("host %s: cannot requeue its jobs: %s", svc->o.host, err.msg);
	if (svc->git_held)
		git_source_release();
	runner_warm_source_free(svc->warm);
	for (int i = 0; i < svc->o.capacity && svc->workers; i++)
		store_close(svc->workers[i].store);
	free(svc->workers);
	store_close(svc->hb_store);
	pthread_cond_destroy(&svc->cond);
	pthread_mutex_destroy(&svc->lock);
	free(svc);
}
