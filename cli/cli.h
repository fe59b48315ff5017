/*
 * cli: the `vmci` command. One file per subcommand, each a cmd_* entry in
 * the table of cli/main.c, all sharing the option parser below.
 */
#ifndef VMCI_CLI_H
#define VMCI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes shared by every subcommand. */
enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1, /* a job or check failed */
	EXIT_USAGE = 2,	 /* bad arguments or an invalid pipeline */
	EXIT_INFRA = 3,	 /* the VM, an image or the host failed */
	/* `vmci vm run` passes the command's status through, so its own errors use: */
	EXIT_VM_TIMEOUT = 124, /* the command timed out (as timeout(1)) */
	EXIT_VM_ERROR = 125,   /* vmci could not run the command (as docker run) */
};

/* ---- options (cli/options.c) ------------------------------------ */

enum cli_opt_type {
	OPT_FLAG,     /* bool */
	OPT_STRING,   /* const char * */
	OPT_INT,      /* int */
	OPT_DURATION, /* int milliseconds: "90s", "20m", "1h30m", "500ms" or plain seconds */
};

struct cli_option {
	char short_name;       /* 0: none */
	const char *long_name; /* without dashes */
	enum cli_opt_type type;
	void *value;
	const char *arg_name; /* for help: "SECONDS" */
	const char *help;
};

/*
 * Parses argv (argv[0] is the subcommand's name) against opts, which ends
 * with an entry whose long_name is NULL. Options stop at "--" or at the
 * first operand when stop_at_operand is true. On success returns the index
 * of the first operand; on an error prints it with the usage and returns -1.
 * "-h"/"--help" print usage and return -2.
 */
int cli_parse(int argc, char **argv, const struct cli_option *opts, const char *usage,
	      bool stop_at_operand);
void cli_usage(FILE *out, const char *usage, const struct cli_option *opts);

/*
 * cli_parse for a command of exactly one operand (`vmci status RUN`; what
 * names it in the error: "RUN id"). Returns true with *operand; otherwise
 * false with *status the command's exit status: EXIT_OK after --help,
 * EXIT_USAGE after saying what was wrong.
 */
bool cli_parse_operand(int argc, char **argv, const struct cli_option *opts, const char *usage,
		       const char *what, const char **operand, int *status);

/*
 * usage followed by the names of the images a recipe builds (" a, b, c"),
 * for a --help that ends with "Images with a recipe:". Returns a string
 * to free, or NULL when out of memory. (cli/image.c)
 */
char *cli_usage_with_recipes(const char *usage);

/* Prints "vmci: error: ..." in red on a terminal. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- progress (cli/progress.c) ---------------------------------- */

struct cli_progress {
	const char *label; /* "building busybox-x86_64" */
	char step[128];
	int64_t last_draw_ms;
	bool drawn;
};

/* An img_progress_fn: redraws one line on a terminal, prints each step once otherwise. */
void cli_progress(void *ctx, const char *step, long long done, long long total);
/* Clears the line before other output. */
void cli_progress_end(struct cli_progress *p);

/* ---- the pipeline file (cli/pipeline_file.c) ---------------------- */

struct pipe_errors;
struct pipe_run;

/* Prints each error of an invalid pipeline as FILE:LINE:COL: error: MESSAGE (colored on a tty). */
void cli_print_pipeline_errors(const struct pipe_errors *errors);

/*
 * Loads the pipeline file of `vmci CMD [FILE]`: the operand argv[first]
 * (at most one), else ./.vmci.yml, expanded to at most max_jobs jobs,
 * the run named after the directory holding the file when it has no
 * `name:`. Returns EXIT_OK with *path (argv's or a constant) and *run,
 * which the caller frees with pipe_run_free(); otherwise prints every
 * error (too many operands, max_jobs below 1, a missing or invalid file)
 * and returns the exit status, *run NULL.
 */
int cli_pipeline_file_load(const char *cmd, int argc, char **argv, int first, int max_jobs,
			   const char **path, struct pipe_run **run);

/*
 * Checks the packages of run's selected jobs (selected NULL: all) against
 * their images' package lists (runner_check_packages), printing each
 * unknown package as FILE:LINE:COL like the pipeline's own errors.
 * Returns EXIT_OK, or EXIT_USAGE after printing.
 */
int cli_pipeline_check_packages(const char *file, const struct pipe_run *run, const bool *selected);

/* ---- subcommands -------------------------------------------------- */

int cmd_vm(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_shell(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_submit(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_hook(int argc, char **argv);

/* ---- a command's output and status (cli/exec_status.c) ----------- */

struct vm_exec_result;

/*
 * A vm_output_fn (ctx unused): writes data[0..len) to fd whole, retrying
 * short writes and EINTR. A closed fd loses the output, silently.
 */
void cli_write_output(void *ctx, int fd, const void *data, size_t len);

/*
 * The exit status a shell would report for res: the command's own, 128+N
 * when killed by signal N, 124 (EXIT_VM_TIMEOUT) when timed out, 130
 * (128+SIGINT) when cancelled, 127 when not found, 126 when it could not
 * start.
 */
int cli_exec_status(const struct vm_exec_result *res);

/* ---- interactive shells in a VM (cli/shell.c) ---------------------- */

struct vm;
struct vmci_err;

/*
 * Runs argv (NULL: a login shell, bash when the guest has it) in cwd in
 * the VM with env ("KEY=VALUE", NULL-terminated, may be NULL) and the
 * host's stdin: on a guest pseudo-terminal in raw mode when stdin and
 * stdout are terminals (SIGWINCH forwarded), else as a pipe. SIGTERM,
 * SIGHUP and (without a terminal) SIGINT cancel it. *status: the exit
 * status as a shell reports it. Returns 0, or a negative code when the VM
 * failed (err).
 */
int cli_shell_session(struct vm *vm, const char *cwd, const char *const *env,
		      const char *const *argv, int *status, struct vmci_err *err);

/* Puts the terminal back as it was before a session's raw mode; async-signal-safe. */
void cli_shell_restore_terminal(void);

#endif
