/*
 * Private to cli/ (`vmci run`, and `vmci status` through runner/remote.h):
 * the terminal side of a run. The board is the
 * run's runner_sink: it writes every job's log to a file, capped at the
 * job's log-limit (runner_log_cap), and shows the run either as a live
 * status board redrawn in place (a terminal) or as interleaved log lines
 * prefixed by the job's name (--logs, or not a terminal), which show a
 * job's output up to where its log starts to hold back the tail. It also
 * keeps what the summary and --json (cli/summary.c) need.
 */
#ifndef VMCI_CLI_BOARD_H
#define VMCI_CLI_BOARD_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/common.h"
#include "runner/runner.h"

enum board_phase { BOARD_QUEUED, BOARD_BOOTING, BOARD_RUNNING, BOARD_DONE };

/* What the board knows of one job; read it after the run (board_job). */
struct board_job {
	enum board_phase phase;
	int attempt;
	size_t step; /* the step running, or the last one that ran */
	int64_t started_ms, ended_ms;
	struct runner_job_result res;	  /* final once phase is BOARD_DONE */
	struct runner_step_result *steps; /* per step; RUNNER_PENDING: did not run */
	size_t n_steps;			  /* of steps: the job's as far as known */
	struct buf tail;		  /* the newest output of the current step, bounded */
	struct buf fail_tail;		  /* that of the step that failed the job */
	char log_path[PATH_MAX];	  /* "" when logs are not kept */
	int64_t log_dropped;		  /* bytes its log-limit cut from the log */
	char note[200];			  /* the latest note, shown on the board */

	/* private */
	FILE *log;
	struct runner_log_cap *cap; /* what goes into log */
	bool held;		    /* output past the log's head: no longer printed */
	struct buf partial[3];	    /* --logs: the unfinished line of stdout (1) and stderr (2) */
};

/*
 * run's jobs' steps may grow until each job's job_finished (a run followed
 * from a server learns them as they start: runner/remote.h); the board
 * reads them only in the sink's callbacks and after the run.
 */
struct board_opts {
	const struct pipe_run *run;
	const bool *selected; /* NULL: every job */
	bool live;	      /* redraw a status board in place; otherwise log lines */
	bool color;
	FILE *out;	      /* where the board or the log lines go */
	const char *logs_dir; /* a log file per job there (created); NULL: none */
};

struct board;

/* Returns 0 or a negative code with err. opts' pointers must outlive the board. */
int board_new(const struct board_opts *opts, struct board **out, struct vmci_err *err);

/* The sink to give the run (and the executor). */
void board_sink(struct board *b, struct runner_sink *out);

/* Starts redrawing (live boards: a thread redraws every 200 ms). */
void board_start(struct board *b);

/* Stops redrawing and leaves the final state on the screen. */
void board_stop(struct board *b);

/* Prints a line from vmci itself above the board (or among the log lines). */
void board_message(struct board *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A job's record. */
const struct board_job *board_job(const struct board *b, size_t job);

/* Wall time since board_new. */
int64_t board_elapsed_ms(const struct board *b);

/* Closes the log files and frees. Safe on NULL. */
void board_free(struct board *b);

/* ---- the end of a run (cli/summary.c) --------------------------------- */

/* `vmci run`'s exit status when the user cancelled it (as a shell reports SIGINT). */
#define RUN_EXIT_CANCELLED 130

struct run_summary {
	const struct pipe_run *run;
	const bool *selected; /* NULL: every job */
	struct board *board;
	const char *cwd;	   /* paths below it are shown relative to it */
	const char *run_dir;	   /* the run's own directory (runner_local_run) */
	const char *artifacts_dir; /* where the jobs' artifacts went */
	bool color;
};

/*
 * The summary table (job, result, duration, failing step), then for each
 * job that failed the last lines of its failing step's output (or the
 * infrastructure error) and its log file, then the counts and where the
 * run's logs and artifacts are.
 */
void summary_print(FILE *out, const struct run_summary *s, int64_t elapsed_ms);

/* The run's result as JSON (the caller json_decref()s it), or NULL when out of memory. */
json_t *summary_json(const struct run_summary *s, const struct runner_workspace *ws,
		     const char *run_id, int exit_code, int64_t elapsed_ms);

/* path relative to cwd when it is below cwd, else path itself. */
const char *summary_path(const char *path, const char *cwd);

#endif
