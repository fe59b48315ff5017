/*
 * pipelines: the pipeline file, `.vmci.yml` (the format: docs/pipeline.md).
 *
 * pipe_load() parses the YAML with libyaml, checks every rule of the
 * format, expands each job's matrix (GitHub Actions semantics) and
 * resolves `needs`. The result is a pipe_run: plain, read-only data the
 * runner walks, allocated as one block and freed with pipe_run_free().
 *
 * An invalid pipeline yields no run but a list of errors: every error
 * found, each with the 1-based line and column a compiler would print,
 * sorted in file order. Nothing here prints; the CLI and the service
 * render the list with pipe_error_format().
 *
 * ${{ vmci.sha }}, ${{ vmci.ref }} and ${{ vmci.run_id }} are known only
 * when a run starts: pipe_load() substitutes them when given pipe_vars,
 * and otherwise keeps them as written for pipe_expand_vars() later.
 * matrix.KEY and env.NAME are always expanded at load time. What each
 * expression may name: the pipeline's `name` and `env` see only vmci.*;
 * a job's `env` also sees its matrix and the pipeline's env; a step's
 * `env` also the job's env; `image`, `run` and step `name` see all that
 * encloses them (the innermost env wins). A matrix key only some
 * combinations have (added by an include) expands to "" in the others.
 *
 * Easy to miss in docs/pipeline.md: top-level keys starting with `x-`
 * are ignored, a place for anchors (as in Compose files); `on: push` and
 * `on: [push]` are accepted as in GitHub Actions; `if:` is kept, not
 * evaluated; a job's `log-limit` (a size from 1M to 1024G, default 64M)
 * bounds the log it keeps: past it, the log holds its beginning and its
 * end, and a line saying how many bytes were dropped between them.
 *
 * Bounds that hold on any input: 4 MiB of text (pipe_load_file), 10^6
 * nodes counting aliases as copies, 512 levels of nesting, 256 matrix
 * keys, max_jobs expanded jobs, 256 MiB of expanded run, and a step
 * budget for matrix rules; past one, the load fails with an error that
 * names it.
 */
#ifndef VMCI_PIPELINES_H
#define VMCI_PIPELINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define PIPE_DEFAULT_FILE	".vmci.yml"
#define PIPE_DEFAULT_MAX_JOBS	10000
#define PIPE_MAX_PACKAGES	256 /* `packages:` of one job (IMG_PACKAGES_MAX) */
#define PIPE_DEFAULT_CPUS	1
#define PIPE_DEFAULT_MEMORY_MB	1024
#define PIPE_DEFAULT_TIMEOUT_MS (60LL * 60 * 1000) /* a job without `timeout` */
#define PIPE_DEFAULT_LOG_LIMIT	(64LL << 20)	   /* bytes: a job without `log-limit` */
#define PIPE_MAX_LOG_LIMIT	(1LL << 40)
#define PIPE_MAX_RETRIES	10
#define PIPE_MAX_CPUS		256
#define PIPE_MAX_FILE_SIZE	(4 << 20)

/*
 * What a run can carry, checked at validation so that `vmci validate`
 * refuses what `vmci run` could not run: a step's script (expanded) and
 * the environment a step sees (the pipeline's, job's and step's env with
 * the job's name and image, as KEY=VALUE strings).
 */
#define PIPE_MAX_SCRIPT_SIZE (1 << 20)
#define PIPE_MAX_ENV_SIZE    (32 << 10)
#define PIPE_MAX_ENV_VARS    1000

/*
 * A job's artifacts: at most this much file data (holes of sparse files
 * are free) and this many entries (files, directories, symlinks), unless
 * the job sets `artifacts: {paths: [...], max-size: 2G, max-files: N}`,
 * up to the maxima.
 */
#define PIPE_DEFAULT_ARTIFACT_MAX_BYTES (1LL << 30)
#define PIPE_DEFAULT_ARTIFACT_MAX_FILES 10000
#define PIPE_MAX_ARTIFACT_BYTES		(8LL << 30)
#define PIPE_MAX_ARTIFACT_FILES		1000000

/* ---- the expanded run ------------------------------------------------ */

/* One environment variable or matrix value; both strings belong to the run. */
struct pipe_var {
	const char *key;
	const char *value;
};

struct pipe_step {
	const char *name;	    /* `name`, or else the first line of `run` */
	const char *run;	    /* a script for `sh -e`, run in the workspace */
	const struct pipe_var *env; /* the step's own `env`, applied over the job's */
	size_t n_env;
	int64_t timeout_ms;	/* 0: only the job's timeout applies */
	bool continue_on_error; /* a failure does not fail the job */
	const char *workdir;	/* NULL: the workspace; relative paths are inside it */
	int line, col;		/* where the step starts in the file */
};

/* A job this job waits for: every expanded job of the id `job`. */
struct pipe_need {
	const char *job; /* the needed job's id, e.g. "build" */
	size_t first;	 /* its expanded jobs are run->jobs[first .. first + count) */
	size_t count;
};

/* `network:` of a job: what its VM reaches (docs/pipeline.md). */
enum pipe_network {
	PIPE_NETWORK_NAT, /* the default: outbound through the host, not the host itself */
	PIPE_NETWORK_NONE /* no network device: a hermetic job */
};

/* A place in the pipeline file, 1-based. */
struct pipe_place {
	int line, col;
};

struct pipe_job {
	const char *name;  /* "build (busybox-x86_64, gcc)"; the id when there is no matrix */
	const char *id;	   /* the key under `jobs:` ("build") */
	size_t group;	   /* index into run->groups: all jobs made from this id */
	const char *image; /* golden image name, expressions expanded */
	const struct pipe_var *matrix; /* this combination's values, in matrix key order */
	size_t n_matrix;
	const struct pipe_var *env; /* effective: the pipeline's env overlaid by the job's */
	size_t n_env;
	const struct pipe_step *steps;
	size_t n_steps;	    /* at least 1 */
	int64_t timeout_ms; /* whole job; PIPE_DEFAULT_TIMEOUT_MS when not set */
	int retries;	    /* re-runs after an infrastructure failure */
	int cpus;
	int64_t memory_mb;
	enum pipe_network network;
	/* `packages:` of the guest distribution, as written (names checked), installed
	   once into a derived image the job runs in */
	const char *const *packages;
	size_t n_packages;
	const struct pipe_place *package_places; /* where each of packages is written */
	int64_t log_limit; /* bytes of log the job keeps (head and tail); PIPE_DEFAULT_LOG_LIMIT */
	const char *const *artifacts; /* globs relative to the workspace */
	size_t n_artifacts;
	int64_t artifact_max_bytes;    /* what the artifacts may hold: data bytes... */
	int artifact_max_files;	       /* ...and entries (see PIPE_DEFAULT_ARTIFACT_MAX_BYTES) */
	const struct pipe_need *needs; /* distinct ids, in the order written */
	size_t n_needs;
	bool fail_fast;	       /* strategy.fail-fast (default true) */
	int max_parallel;      /* strategy.max-parallel; 0: no limit */
	const char *condition; /* `if:` as written, NULL when absent; not evaluated yet */
	int line, col;	       /* where the job's id is in the file */
};

/* The expanded jobs made from one id under `jobs:`, contiguous in run->jobs. */
struct pipe_group {
	const char *id;
	size_t first;
	size_t count;
	bool fail_fast;
	int max_parallel;
};

struct pipe_arena;

struct pipe_run {
	const char *name; /* `name`, else pipe_load_opts.default_name, else "pipeline" */
	bool on_push;	  /* pushes start it: `on.push`, or `on` absent */
	const char *const *push_branches; /* glob patterns; none: every branch */
	size_t n_push_branches;
	const char *const *schedules; /* cron expressions (5 fields, UTC), checked */
	size_t n_schedules;
	const struct pipe_var *env; /* the pipeline-level `env` */
	size_t n_env;
	const struct pipe_job *jobs; /* in file order, each id's combinations together */
	size_t n_jobs;
	const struct pipe_group *groups; /* one per id under `jobs:`, in file order */
	size_t n_groups;
	struct pipe_arena *arena; /* private: owns everything above */
};

/* ---- errors ------------------------------------------------------------ */

struct pipe_error {
	int line, col; /* 1-based; 0 when the error is about the whole file */
	char *message; /* "unknown key 'stpes' in job 'build' (did you mean 'steps'?)" */
};

/* The errors of one load, in file order. Owned by the caller. */
struct pipe_errors {
	char *file; /* the name given in pipe_load_opts.file */
	struct pipe_error *items;
	size_t len;
	size_t cap;
};

/* Frees the list's contents and leaves it empty; safe on a zeroed list. */
void pipe_errors_free(struct pipe_errors *errors);

/*
 * Adds an error at line:col (0: about the whole file) for a check made
 * after loading (a job's packages against an image's package index), so it
 * is printed like the load's own. Returns 0 or -ENOMEM.
 */
int pipe_errors_add(struct pipe_errors *errors, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Appends "FILE:LINE:COL: error: MESSAGE\n" for errors->items[i] to out
 * ("FILE: error: ..." without a position). Returns 0 or -ENOMEM.
 */
int pipe_error_format(const struct pipe_errors *errors, size_t i, struct buf *out);

/* ---- loading ------------------------------------------------------------ */

/* The values of ${{ vmci.* }} for one run; a NULL member is kept as written. */
struct pipe_vars {
	const char *sha;
	const char *ref;
	const char *run_id;
};

struct pipe_load_opts {
	const char *file;	  /* the name errors show; NULL: ".vmci.yml" */
	const char *default_name; /* run name when the file has none (the repository's) */
	size_t max_jobs; /* refuse pipelines expanding past this; 0: PIPE_DEFAULT_MAX_JOBS */
	const struct pipe_vars *vars; /* NULL: keep ${{ vmci.* }} for pipe_expand_vars() */
};

/*
 * Parses, checks and expands the pipeline in text[0..len) (need not be
 * NUL-terminated). opts may be NULL. errors must be zeroed or emptied;
 * it is filled only on -EINVAL.
 *
 * Returns 0 with *out a run the caller frees with pipe_run_free();
 * -EINVAL when the pipeline is invalid: *out is NULL and errors holds
 * every error in file order (at least one); -ENOMEM. Bounded on any
 * input: anchors may not expand past a fixed number of nodes, and the
 * matrix size is computed before anything is materialized.
 */
int pipe_load(const char *text, size_t len, const struct pipe_load_opts *opts,
	      struct pipe_run **out, struct pipe_errors *errors);

/*
 * pipe_load() on the file at path (at most PIPE_MAX_FILE_SIZE bytes).
 * opts->file defaults to path. Returns as pipe_load(), or -ENOENT when
 * the file does not exist and another negative code when it cannot be
 * read, with err saying which file and what to do.
 */
int pipe_load_file(const char *path, const struct pipe_load_opts *opts, struct pipe_run **out,
		   struct pipe_errors *errors, struct vmci_err *err);

/* Frees a run and everything it points to; NULL is fine. */
void pipe_run_free(struct pipe_run *run);

/*
 * Appends text to out with every ${{ vmci.sha }}, ${{ vmci.ref }} and
 * ${{ vmci.run_id }} (any spacing inside the braces) replaced by the
 * value in vars; NULL members and all other text are copied as they
 * are. For a run loaded without vars. Returns 0 or -ENOMEM.
 */
int pipe_expand_vars(const char *text, const struct pipe_vars *vars, struct buf *out);

/* ---- choosing jobs (pipelines/select.c) -------------------------------- */

struct pipe_selection {
	const char *const *names;  /* job ids ("build") or expanded names ("build (gcc)") */
	size_t n_names;		   /* 0: every job the filters allow */
	const char *const *matrix; /* "KEY=VALUE" filters: a job with KEY must have one of
				      the VALUEs given for it; jobs without KEY pass */
	size_t n_matrix;
};

/*
 * Fills selected (run->n_jobs entries) with the jobs sel chooses and,
 * transitively, the jobs they need (where the filters allow them).
 * Returns 0, or -EINVAL with err naming the job or filter that chose
 * nothing (an unknown name, a key no job has, a filter that rules out
 * every job); selected is then all false.
 */
int pipe_select(const struct pipe_run *run, const struct pipe_selection *sel, bool *selected,
		struct vmci_err *err);

/* The index of the expanded job called name in run->jobs, or -1. Linear. */
long pipe_run_find_job(const struct pipe_run *run, const char *name);

/* ---- events (pipelines/events.c) ---------------------------------------- */

/*
 * Whether a push to ref ("refs/heads/main", or a bare branch name) starts
 * run: its `on` names push and, when on.push.branches lists patterns, ref
 * is a branch that one of them matches (a tag is not a branch). Patterns
 * are GitHub Actions' globs: `*` any characters but '/', `**` any
 * characters, `?` one character but '/', anything else itself. false
 * comes with why (when not NULL) saying what the pipeline selects
 * instead, for the pusher to read.
 */
bool pipe_push_selects(const struct pipe_run *run, const char *ref, char *why, size_t why_size);

#endif
