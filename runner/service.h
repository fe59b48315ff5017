/*
 * runner/service: `vmci serve` on one host, the second front end of the
 * runner (SERVICE.md). Triggers turn a commit into a run in the store;
 * workers claim its jobs and run each one with the same executor and
 * warm pool as `vmci run`, with the store as the log and result sink.
 *
 *   runner/service/config.c   the config file (YAML)
 *   runner/service/trigger.c  commit -> pipeline -> run and jobs, stored
 *   runner/service/sink.c     a job's steps and log into the store
 *   runner/service/worker.c   claim, run, report; heartbeat; shutdown
 */
#ifndef VMCI_RUNNER_SERVICE_H
#define VMCI_RUNNER_SERVICE_H

#include "common/common.h"
#include "vmcore/vmcore.h"

#include <limits.h>

struct store;

/* ---- configuration (runner/service/config.c) ------------------------ */

struct service_repo {
	char *name; /* what runs and triggers call it: "acme/widget" */
	char *url;  /* any URL libgit2 fetches, or a path */
};

#define SERVICE_DEFAULT_LISTEN "127.0.0.1:8080"

struct service_config {
	char *listen;	  /* "ADDR:PORT"; SERVICE_DEFAULT_LISTEN when not set */
	char *db;	  /* store url; NULL: store_default_url */
	char *host;	  /* this host's name; NULL: the machine's hostname */
	int capacity;	  /* jobs at once; 0: runner_default_max_vms */
	bool public_read; /* GET requests of the API need no token (writes still do) */
	struct service_repo *repos;
	size_t n_repos;
};

/*
 * Reads the YAML config at path into *out (zeroed first):
 *
 *   listen: 127.0.0.1:8080
 *   db: sqlite:/var/lib/vmci/vmci.db
 *   host: { name: build1, capacity: 4 }
 *   repos: [{ name: acme/widget, url: /srv/git/widget.git }]
 *   public_read: true      # reads without a token
 *
 * Keys of SERVICE.md this host does not use yet (public_url, forge
 * settings) are accepted and ignored. A mistake is -EINVAL with err
 * "FILE:LINE:COL: error: ...", as pipeline files report theirs.
 */
int service_config_load(const char *path, struct service_config *out, struct vmci_err *err);
/* The same from text (file names it in errors). */
int service_config_parse(const char *file, const char *text, size_t len, struct service_config *out,
			 struct vmci_err *err);
void service_config_free(struct service_config *c);
/* The repo named name, or NULL. */
const struct service_repo *service_config_repo(const struct service_config *c, const char *name);

/* ---- triggers (runner/service/trigger.c) ---------------------------- */

/* Where the service keeps repositories and artifacts; NULL members: under $VMCI_HOME. */
struct service_dirs {
	const char *git;       /* bare caches (git_source); $VMCI_HOME/git */
	const char *artifacts; /* RUN/JOB/...; $VMCI_HOME/artifacts */
};

/* What a trigger made: a run, or none on purpose, and why. */
struct service_triggered {
	int64_t run_id; /* 0: no run */
	char
	    reason[512]; /* with run_id 0: why not, for the pusher ("refs/heads/x is not in ...") */
};

/*
 * Makes a run of repo at ref (sha_or_null: that commit; else what ref
 * points at): fetches the commit, loads .vmci.yml from it, expands it
 * with the run's id, and stores the run with every job (needs, timeouts,
 * retries, groups) before returning 0 with out->run_id. trigger is
 * "push", "schedule" or "api". A push whose ref the pipeline's `on` does
 * not select (pipe_push_selects) stores nothing: 0, with out->run_id 0
 * and out->reason; an "api" run is asked for by name and always made.
 * -ENOENT: no such ref, commit or pipeline file; -EINVAL: the pipeline
 * is invalid (err holds its errors as FILE:LINE:COL lines); other codes:
 * fetch or store failures.
 */
int service_trigger(struct store *s, const struct service_dirs *dirs,
		    const struct service_repo *repo, const char *ref, const char *sha_or_null,
		    const char *trigger, struct service_triggered *out, struct vmci_err *err);

/* ---- the workers (runner/service/worker.c) -------------------------- */

struct service_opts {
	const char *db_url; /* each worker opens its own handle */
	const char *host;   /* this host's name in the store */
	const char *url;    /* how peers reach it; may be NULL */
	int capacity;	    /* worker threads, and at most as many warm VMs per image shape */
	const struct service_config *config; /* its repos */
	struct service_dirs dirs;
	int lease_s; /* claims' lease; 0: 30 */
	/*
	 * How often an idle worker looks for jobs queued by other processes
	 * (0: 300 ms); jobs queued or unblocked by this process are claimed
	 * at once.
	 */
	int poll_ms;
	enum vm_accel accel;
	bool cold; /* boot a VM for every job instead of keeping warm pools (to compare) */
};

struct service;

/*
 * Registers the host, requeues the jobs a previous process of this host
 * left running (it died: they rerun as new attempts) and the expired
 * leases of others, then starts capacity workers and a heartbeat that
 * renews their leases. Returns 0 with *out, or a negative code.
 */
int service_start(const struct service_opts *opts, struct service **out, struct vmci_err *err);

/*
 * Stops claiming, lets running jobs finish for up to grace_ms, then
 * cancels what still runs, stops the VMs, and requeues those jobs as new
 * attempts. Then frees. Safe on NULL.
 */
void service_stop(struct service *svc, int grace_ms);

/* Jobs running on this host now. */
int service_running(struct service *svc);

#endif
