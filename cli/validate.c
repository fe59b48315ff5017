/*
 * vmci validate [FILE]: checks a pipeline file (default ./.vmci.yml) and
 * prints every error in the compiler form FILE:LINE:COL: error: MESSAGE.
 * Exits 0 when the file is valid and 2 (EXIT_USAGE) otherwise.
 */
#include "cli/cli.h"

#include "common/common.h"
#include "pipelines/pipelines.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmci validate [OPTIONS] [FILE]\n"
    "\n"
    "Checks a pipeline file (default: ./.vmci.yml) against the format: keys, types,\n"
    "durations, expressions, matrices, needs. Prints every error as FILE:LINE:COL.";

/* The repository's name, as a run without `name:` is called: the directory holding the file. */
static char *dir_name(const char *path)
{
	char real[PATH_MAX];
	if (!realpath(path, real))
		return NULL;
	char *dir = dirname(real);
	char *base = basename(dir);
	return strdup(base && *base && strcmp(base, "/") ? base : "pipeline");
}

static void print_errors(const struct pipe_errors *errors)
{
	struct buf out = {0};
	bool color = vmci_use_color(STDERR_FILENO);
	for (size_t i = 0; i < errors->len; i++) {
		out.len = 0;
		if (pipe_error_format(errors, i, &out))
			break;
		const char *line = buf_cstr(&out);
		const char *tag = strstr(line, ": error: ");
		if (color && tag)
			fprintf(stderr, "\033[1m%.*s:\033[0m \033[1;31merror:\033[0m %s",
				(int)(tag - line), line, tag + strlen(": error: "));
		else
			fputs(line, stderr);
	}
	buf_free(&out);
}

int cmd_validate(int argc, char **argv)
{
	int max_jobs = PIPE_DEFAULT_MAX_JOBS;
	bool quiet = false;
	const struct cli_option opts[] = {
	    {0, "max-jobs", OPT_INT, &max_jobs, "N",
	     "refuse a pipeline that expands to more than N jobs (default 10000)"},
	    {'q', "quiet", OPT_FLAG, &quiet, NULL, "print nothing when the file is valid"},
	    {0, NULL, OPT_FLAG, NULL, NULL, NULL},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	if (argc - first > 1) {
		cli_error("validate: one pipeline file at a time (see: vmci validate --help)");
		return EXIT_USAGE;
	}
	if (max_jobs < 1) {
		cli_error("validate: --max-jobs must be at least 1");
		return EXIT_USAGE;
	}
	const char *path = first < argc ? argv[first] : PIPE_DEFAULT_FILE;
	char *name = dir_name(path);
	struct pipe_load_opts lo = {
	    .file = path, .default_name = name, .max_jobs = (size_t)max_jobs};
	struct pipe_errors errors = {0};
	struct vmci_err err = {0};
	struct pipe_run *run = NULL;
	int rc = pipe_load_file(path, &lo, &run, &errors, &err);
	free(name);
	int status = EXIT_OK;
	if (rc == -EINVAL) {
		print_errors(&errors);
		status = EXIT_USAGE;
	} else if (rc == -ENOENT) {
		cli_error(
		    "no pipeline file at %s (write one, or give its path: vmci validate FILE)",
		    path);
		status = EXIT_USAGE;
	} else if (rc) {
		cli_error("%s", err.msg);
		status = rc == -ENOMEM ? EXIT_FAILED : EXIT_USAGE;
	} else if (!quiet) {
		printf("%s: valid: %zu job%s from %zu definition%s\n", path, run->n_jobs,
		       run->n_jobs == 1 ? "" : "s", run->n_groups, run->n_groups == 1 ? "" : "s");
	}
	pipe_run_free(run);
	pipe_errors_free(&errors);
	return status;
}
