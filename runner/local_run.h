/*
 * runner: a local run's directory (.vmci/runs/ID): its logs and artifacts.
 */
#ifndef VMCI_RUNNER_LOCAL_RUN_H
#define VMCI_RUNNER_LOCAL_RUN_H

#include <limits.h>

#include "common/common.h"

/* ---- a local run's logs and artifacts (runner/local_run.c) ---------- */

/*
 * `vmci run` keeps each run's output apart, so that runs at once in one
 * working tree never share a log file or delete each other's artifacts:
 *
 *   ROOT/.vmci/.gitignore                  "*": git ignores all of it
 *   ROOT/.vmci/runs/<ID>/logs/<job>.log
 *   ROOT/.vmci/runs/<ID>/artifacts/<job>/
 *   ROOT/.vmci/runs/latest -> <ID>         the newest run
 *
 * ID is the run's start in UTC and a counter, "20250102-150405-01": made
 * by mkdir, which fails when the name exists, so it is unique, and the
 * names sort by age. The run's process holds a lock (flock) on its
 * directory while it lives. Publishing a run points `latest` at it, by a
 * new symlink renamed over the old one (readers see one or the other),
 * and deletes the runs beyond the newest RUNNER_KEEP_RUNS whose lock is
 * free: a run still going, however old, is never deleted.
 */
#define RUNNER_KEEP_RUNS 20

struct runner_local_run {
	char id[32];		  /* "20250102-150405-01" */
	char runs[PATH_MAX];	  /* ROOT/.vmci/runs */
	char dir[PATH_MAX];	  /* runs/ID */
	char logs[PATH_MAX];	  /* dir/logs: made by whoever writes the logs */
	char artifacts[PATH_MAX]; /* dir/artifacts */
	int lock;		  /* held until runner_local_run_close; -1: none */
};

/*
 * Makes and locks a new run directory under root (the working tree's top),
 * with ROOT/.vmci and its .gitignore when missing. Returns 0, or a
 * negative code with err (out->lock is then -1).
 */
int runner_local_run_new(const char *root, struct runner_local_run *out, struct vmci_err *err);

/*
 * Makes the run the latest (ROOT/.vmci/runs/latest), then prunes old runs
 * (runner_local_runs_prune, RUNNER_KEEP_RUNS). Returns 0 or a negative
 * code with err when `latest` could not be replaced.
 */
int runner_local_run_publish(struct runner_local_run *r, struct vmci_err *err);

/* Drops the lock; discard: deletes the directory first (a run that never started). */
void runner_local_run_close(struct runner_local_run *r, bool discard);

/*
 * Deletes the runs in runs (ROOT/.vmci/runs) beyond the newest keep,
 * except those a process holds. Returns how many went.
 */
int runner_local_runs_prune(const char *runs, int keep);

#endif
