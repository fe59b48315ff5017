/*
 * vmci run [JOB...]: the pipeline of the repository run locally, each job
 * in its own VM, exactly as the farm would run it, on the working tree as
 * it is now (uncommitted changes included).
 *
 * Exit codes: 0 every job passed, 1 a job failed, 2 usage or pipeline
 * error, 3 an infrastructure error (and no job failed), 130 cancelled by
 * the user (Ctrl-C, SIGTERM).
 */
#include "cli/cli.h"
#include "cli/board.h"

#include "images/images.h"
#include "pipelines/pipelines.h"
#include "runner/runner.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmci run [OPTIONS] [JOB...]\n"
    "\n"
    "Runs the pipeline (.vmci.yml at the top of the repository) on this machine, every\n"
    "job in its own VM, on the working tree as it is: committed, staged, unstaged and\n"
    "untracked files (not ignored ones) are copied to /work/src in each guest.\n"
    "JOB names a job (all of its matrix combinations) or one combination, e.g.\n"
    "'build (debian-12)'; the jobs it needs run too. Without JOB: every job.\n"
    "\n"
    "Each run keeps its logs and artifacts in .vmci/runs/<ID>/ (logs/<job>.log,\n"
    "artifacts/<job>/); .vmci/runs/latest is the newest; the last 20 runs are kept.\n"
    "Ctrl-C cancels the jobs and stops their VMs; a second Ctrl-C kills vmci and its\n"
    "VMs at once.\n"
    "With --move-to SOCKET, SIGUSR1 moves each running job's VM live (memory, disk\n"
    "and the command it runs) to `vmci vm receive --listen SOCKET` in another\n"
    "process, and the job runs on there with its output still shown here; a move\n"
    "that fails says why and the job goes on here. Ctrl-C during a move gives the\n"
    "move up, after it cancels the job there. A VM that moved never returns to the\n"
    "warm pool, which starts another.\n"
    "Exit status: 0 all passed, 1 a job failed, 2 usage or pipeline error,\n"
    "3 infrastructure error (a VM failed), 130 cancelled.";

struct run_args {
	const char *file;
	int jobs;
	bool keep, logs, json, cold;
	const char *accel;
	const char *workspace; /* tar|disk|auto */
	const char *move_to;   /* a receiver's socket: SIGUSR1 moves the running jobs there */
	const char **matrix;   /* "KEY=VALUE" */
	size_t n_matrix;
};

/* ---- arguments ---------------------------------------------------------------------- */

/*
 * -m KEY=VALUE may be repeated, which the shared parser does not do: the
 * occurrences are taken out of argv first.
 */
static int take_matrix_args(int *argc, char **argv, struct run_args *a)
{
	a->matrix = calloc((size_t)*argc, sizeof(*a->matrix));
	if (!a->matrix)
		return -1;
	int out = 1;
	for (int i = 1; i < *argc; i++) {
		const char *arg = argv[i], *value = NULL;
		if (!strcmp(arg, "--")) {
			while (i < *argc)
				argv[out++] = argv[i++];
			break;
		}
		if (!strcmp(arg, "-m") || !strcmp(arg, "--matrix")) {
			if (i + 1 >= *argc) {
				cli_error("run: %s needs a value (KEY=VALUE)", arg);
				return -1;
			}
			value = argv[++i];
		} else if (!strncmp(arg, "-m", 2) && arg[2]) {
			value = arg + 2;
		} else if (!strncmp(arg, "--matrix=", 9)) {
			value = arg + 9;
		}
		if (!value) {
			argv[out++] = argv[i];
			continue;
		}
		const char *eq = strchr(value, '=');
		if (!eq || eq == value) {
			cli_error("run: -m wants KEY=VALUE, e.g. -m os=debian-12, not '%s'", value);
			return -1;
		}
		a->matrix[a->n_matrix++] = value;
	}
	*argc = out;
	return 0;
}

/* ---- the pipeline and its images ---------------------------------------------------------- */

/* A progress line per image built: "building debian-12". */
struct image_progress {
	char label[128];
	struct cli_progress line;
};

static void image_begin(void *ctx, const char *image)
{
	struct image_progress *p = ctx;
	snprintf(p->label, sizeof(p->label), "building %s", image);
	p->line = (struct cli_progress){.label = p->label};
}

static void image_step(void *ctx, const char *step, long long done, long long total)
{
	struct image_progress *p = ctx;
	cli_progress(&p->line, step, done, total);
}

static void image_end(void *ctx)
{
	struct image_progress *p = ctx;
	cli_progress_end(&p->line);
}

/* Finds or builds every image the selected jobs use, before any VM starts. */
static int ensure_images(const struct pipe_run *run, const bool *selected)
{
	struct image_progress p;
	struct runner_image_progress progress = {image_begin, image_step, image_end, &p};
	size_t failed = 0;
	struct vmci_err err = {0};
	int rc = runner_ensure_images(run, selected, &progress, &failed, &err);
	if (rc)
		cli_error("job '%s': %s", run->jobs[failed].name, err.msg);
	return !rc ? 0 : rc == -ENOENT ? EXIT_USAGE : EXIT_INFRA;
}

/* ---- signals ---------------------------------------------------------------------------- */

/* What the first Ctrl-C or SIGTERM cancels once the jobs run (runner_interrupt). */
struct cancel_target {
	struct runner_run *run;
	struct runner_warm_source *warm;
	struct board *board;
};

static void cancel_run(void *ctx, int signo)
{
	struct cancel_target *t = ctx;
	board_message(t->board,
		      "cancelling: stopping the jobs and their VMs (Ctrl-C again to kill at once)");
	runner_warm_source_interrupt(t->warm);
	runner_run_cancel(t->run);
}

static void move_run(void *ctx)
{
	struct cancel_target *t = ctx;
	board_message(t->board, "moving the running jobs' VMs (SIGUSR1)");
	runner_run_move(t->run);
}

static bool interrupted(void)
{
	return runner_interrupted() != 0;
}

/* ---- the summary --------------------------------------------------------------------------- */

static int exit_code_of(const struct pipe_run *run, const bool *selected, struct board *b)
{
	bool failed = false, error = false, cancelled = false;
	for (size_t i = 0; i < run->n_jobs; i++) {
		if (!selected[i])
			continue;
		enum runner_result r = board_job(b, i)->res.result;
		failed |= r == RUNNER_FAILED;
		error |= r == RUNNER_ERROR;
		cancelled |= r == RUNNER_CANCELLED;
	}
	if (interrupted())
		return RUN_EXIT_CANCELLED;
	if (failed)
		return EXIT_FAILED;
	if (error)
		return EXIT_INFRA;
	return cancelled ? EXIT_FAILED : EXIT_OK;
}

/* --keep-on-failure: a shell in each kept VM, one after the other. */
static void visit_kept(const struct pipe_run *run, const bool *selected, struct runner_executor *ex)
{
	for (size_t i = 0; i < run->n_jobs; i++) {
		struct vm *vm = selected[i] ? runner_executor_kept_vm(ex, i) : NULL;
		if (!vm || interrupted())
			continue;
		const struct pipe_job *j = &run->jobs[i];
		bool tty = isatty(STDIN_FILENO);
		fprintf(
		    stderr,
		    "\nvmci: job '%s' failed; its VM (QEMU pid %d) is kept. A shell in %s "
		    "follows,\nwith the job's files as the failing step left them; %s stops the "
		    "VM.\n",
		    j->name, (int)vm_pid(vm), RUNNER_GUEST_WORKSPACE,
		    tty ? "'exit' or Ctrl-D" : "the end of the input");
		const char **env = calloc(j->n_env + 2, sizeof(*env));
		char **owned = calloc(j->n_env + 1, sizeof(*owned));
		size_t n = 0;
		for (size_t k = 0; env && owned && k < j->n_env; k++)
			if (asprintf(&owned[k], "%s=%s", j->env[k].key, j->env[k].value) >= 0)
				env[n++] = owned[k];
		int status = 0;
		struct vmci_err err = {0};
		if (cli_shell_session(vm, RUNNER_GUEST_WORKSPACE, env, NULL, &status, &err) < 0)
			cli_error("shell in job '%s': %s", j->name, err.msg);
		for (size_t k = 0; owned && k < j->n_env; k++)
			free(owned[k]);
		free(owned);
		free(env);
		fprintf(stderr, "vmci: stopping the VM of job '%s'\n", j->name);
	}
}

/* ---- the command --------------------------------------------------------------------------- */

struct run_state {
	struct run_args a;
	char cwd[PATH_MAX];
	char file[PATH_MAX];
	char run_id[64];
	struct runner_local_run out; /* where its logs and artifacts go */
	struct runner_workspace *ws;
	struct pipe_run *run;
	bool *selected;
};

static int no_pipeline_file(const struct run_state *st)
{
	cli_error("run: no pipeline file at %s (write one: see examples/ and README.md, or give "
		  "its path with -f)",
		  summary_path(st->file, st->cwd));
	return EXIT_USAGE;
}

/*
 * Workspace, the run's directory, pipeline, selection, images. Returns 0
 * or an exit code.
 */
static int prepare(struct run_state *st, char **names, int n_names)
{
	struct vmci_err err = {0};
	if (!getcwd(st->cwd, sizeof(st->cwd))) {
		cli_error("run: cannot read the current directory: %s", strerror(errno));
		return EXIT_USAGE;
	}
	if (runner_workspace_open(st->cwd, &st->ws, &err)) {
		cli_error("run: %s", err.msg);
		return EXIT_USAGE;
	}
	if (st->a.file)
		snprintf(st->file, sizeof(st->file), "%s", st->a.file);
	else if (fs_path(st->file, sizeof(st->file), "%s/%s", st->ws->root, PIPE_DEFAULT_FILE))
		return EXIT_USAGE;
	/* Checked before the run's directory is made: a tree without a pipeline gets no .vmci/. */
	if (!fs_exists(st->file))
		return no_pipeline_file(st);
	if (runner_local_run_new(st->ws->root, &st->out, &err)) {
		cli_error("run: %s", err.msg);
		return EXIT_USAGE;
	}
	snprintf(st->run_id, sizeof(st->run_id), "local-%s", st->out.id);
	const char *base = strrchr(st->ws->root, '/');
	struct pipe_vars vars = {.sha = st->ws->sha, .ref = st->ws->ref, .run_id = st->run_id};
	struct pipe_load_opts lo = {
	    .file = summary_path(st->file, st->cwd),
	    .default_name = base && base[1] ? base + 1 : "pipeline",
	    .vars = &vars,
	};
	struct pipe_errors errors = {0};
	int rc = pipe_load_file(st->file, &lo, &st->run, &errors, &err);
	if (rc == -EINVAL)
		cli_print_pipeline_errors(&errors);
	else if (rc == -ENOENT)
		no_pipeline_file(st);
	else if (rc)
		cli_error("run: %s", err.msg);
	pipe_errors_free(&errors);
	if (rc)
		return EXIT_USAGE;
	st->selected = calloc(st->run->n_jobs ? st->run->n_jobs : 1, sizeof(*st->selected));
	if (!st->selected)
		return EXIT_FAILED;
	struct pipe_selection sel = {.names = (const char *const *)names,
				     .n_names = (size_t)n_names,
				     .matrix = st->a.matrix,
				     .n_matrix = st->a.n_matrix};
	if (pipe_select(st->run, &sel, st->selected, &err)) {
		cli_error("run: %s", err.msg);
		return EXIT_USAGE;
	}
	if (cli_pipeline_check_packages(lo.file, st->run, st->selected) != EXIT_OK)
		return EXIT_USAGE;
	return ensure_images(st->run, st->selected);
}

static int parse_args(int *argc, char **argv, struct run_args *a, int *first)
{
	const char *matrix_help = NULL;
	const struct cli_option opts[] = {
	    {'f', "file", OPT_STRING, &a->file, "FILE", "the pipeline file (default: .vmci.yml)"},
	    {'m', "matrix", OPT_STRING, &matrix_help, "KEY=VALUE",
	     "only matrix combinations with this value (repeatable)"},
	    {'j', "jobs", OPT_INT, &a->jobs, "N", "at most N VMs at once (default: what fits)"},
	    {0, "keep-on-failure", OPT_FLAG, &a->keep, NULL,
	     "keep a failed job's VM and open a shell in it"},
	    {0, "logs", OPT_FLAG, &a->logs, NULL, "print every job's output, prefixed by its name"},
	    {0, "json", OPT_FLAG, &a->json, NULL, "write the result as JSON to stdout"},
	    {0, "cold", OPT_FLAG, &a->cold, NULL, "boot every job's VM afresh (no warm pool)"},
	    {0, "accel", OPT_STRING, &a->accel, "kvm|tcg",
	     "the accelerator (default: kvm if usable)"},
	    {0, "workspace", OPT_STRING, &a->workspace, "tar|disk|auto",
	     "how the working tree reaches the VMs (default: auto, a disk for large trees)"},
	    {0, "move-to", OPT_STRING, &a->move_to, "SOCKET",
	     "on SIGUSR1, move running jobs' VMs to `vmci vm receive` there"},
	    {0},
	};
	if (take_matrix_args(argc, argv, a))
		return EXIT_USAGE;
	*first = cli_parse(*argc, argv, opts, usage, false);
	if (*first == -2)
		return -1;
	if (*first < 0)
		return EXIT_USAGE;
	if (a->jobs < 0) {
		cli_error("run: -j wants 1 or more VMs, not %d", a->jobs);
		return EXIT_USAGE;
	}
	enum vm_accel accel;
	if (vm_accel_parse(a->accel, &accel)) {
		cli_error("run: --accel takes kvm, tcg or auto, not '%s'", a->accel);
		return EXIT_USAGE;
	}
	enum runner_ws_via via;
	if (a->workspace && runner_ws_via_parse(a->workspace, &via)) {
		cli_error("run: --workspace takes tar, disk or auto, not '%s'", a->workspace);
		return EXIT_USAGE;
	}
	return 0;
}

static void free_state(struct run_state *st)
{
	runner_local_run_close(&st->out, false);
	free(st->selected);
	pipe_run_free(st->run);
	runner_workspace_free(st->ws);
	free(st->a.matrix);
}

int cmd_run(int argc, char **argv)
{
	struct run_state st = {.out.lock = -1};
	int first = 0;
	int rc = parse_args(&argc, argv, &st.a, &first);
	if (rc) {
		free(st.a.matrix);
		return rc < 0 ? EXIT_OK : rc;
	}
	/* Before any thread starts: the first signal kills until the jobs can be cancelled. */
	runner_interrupt_start(cli_shell_restore_terminal, RUN_EXIT_CANCELLED);
	rc = prepare(&st, argv + first, argc - first);
	if (rc) {
		runner_local_run_close(&st.out, true); /* nothing ran: no directory to keep */
		free_state(&st);
		return rc;
	}
	struct vmci_err err = {0};
	if (runner_local_run_publish(&st.out, &err))
		log_warn("%s", err.msg);
	const struct pipe_run *run = st.run;
	int64_t memory = 0;
	for (size_t i = 0; i < run->n_jobs; i++)
		if (st.selected[i] && run->jobs[i].memory_mb > memory)
			memory = run->jobs[i].memory_mb;
	int max_vms = st.a.jobs ? st.a.jobs : runner_default_max_vms(memory);
	enum vm_accel accel;
	vm_accel_parse(st.a.accel, &accel); /* checked with the other arguments */
	enum runner_ws_via via = RUNNER_WS_AUTO;
	if (st.a.workspace)
		runner_ws_via_parse(st.a.workspace, &via);

	FILE *out = st.a.json ? stderr : stdout;
	struct board_opts bo = {
	    .run = run,
	    .selected = st.selected,
	    .live = !st.a.logs && isatty(fileno(out)),
	    .color = vmci_use_color(fileno(out)),
	    .out = out,
	    .logs_dir = st.out.logs,
	};
	struct board *board = NULL;
	struct runner_warm_source *warm = NULL;
	struct runner_cold_source cold = {.accel = accel};
	struct runner_vm_source vms;
	if (board_new(&bo, &board, &err)) {
		cli_error("run: %s", err.msg);
		free_state(&st);
		return EXIT_FAILED;
	}
	if (st.a.cold) {
		runner_vm_source_cold(&vms, &cold);
	} else if (runner_warm_source_new(run, st.selected, max_vms, accel, &warm, &err) == 0) {
		runner_vm_source_warm(&vms, warm);
	} else {
		log_warn("no warm pool (%s): every job boots its VM", err.msg);
		runner_vm_source_cold(&vms, &cold);
	}
	struct runner_sink sink;
	board_sink(board, &sink);
	struct runner_exec_opts xo = {
	    .run = run,
	    .ws = st.ws,
	    .ws_via = via,
	    .run_id = st.run_id,
	    .artifacts_dir = st.out.artifacts,
	    .vms = &vms,
	    .sink = &sink,
	    .keep_on_failure = st.a.keep,
	    .move_to = st.a.move_to,
	};
	struct runner_executor *ex = NULL;
	struct runner_job_ops ops;
	struct runner_run *r = NULL;
	if (runner_executor_new(&xo, &ex, &err) == 0) {
		runner_executor_ops(ex, &ops);
		struct runner_run_opts ro = {.run = run,
					     .selected = st.selected,
					     .max_vms = max_vms,
					     .ops = &ops,
					     .sink = &sink};
		rc = runner_run_new(&ro, &r, &err);
	} else {
		rc = -1;
	}
	if (rc) {
		cli_error("run: %s", err.msg);
		runner_executor_free(ex);
		runner_warm_source_free(warm);
		board_free(board);
		free_state(&st);
		return EXIT_FAILED;
	}
	if (!bo.live) {
		size_t n = 0;
		for (size_t i = 0; i < run->n_jobs; i++)
			n += st.selected[i];
		fprintf(out,
			"vmci: running %s: %zu of %zu jobs, at most %d VMs at once, from %s%s%s; "
			"logs and artifacts in %s/\n",
			run->name, n, run->n_jobs, max_vms, st.ws->root, st.ws->sha[0] ? " @ " : "",
			st.ws->sha, summary_path(st.out.dir, st.cwd));
	}
	struct cancel_target target = {.run = r, .warm = warm, .board = board};
	struct runner_interrupt cancel = {.cancel = cancel_run, .move = move_run, .ctx = &target};
	runner_interrupt_set(&cancel);
	board_start(board);
	runner_run_exec(r);
	board_stop(board);

	int code = exit_code_of(run, st.selected, board);
	struct run_summary sc = {.run = run,
				 .selected = st.selected,
				 .board = board,
				 .cwd = st.cwd,
				 .run_dir = st.out.dir,
				 .artifacts_dir = st.out.artifacts,
				 .color = bo.color};
	summary_print(out, &sc, board_elapsed_ms(board));
	if (st.a.json) {
		json_t *j = summary_json(&sc, st.ws, st.run_id, code, board_elapsed_ms(board));
		if (j) {
			json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			fputc('\n', stdout);
			json_decref(j);
		}
		fflush(stdout);
	}
	if (st.a.keep)
		visit_kept(run, st.selected, ex);
	runner_interrupt_set(NULL);
	runner_run_free(r); /* lets kept VMs go */
	runner_executor_free(ex);
	runner_warm_source_free(warm);
	board_free(board);
	free_state(&st);
	return code;
}
