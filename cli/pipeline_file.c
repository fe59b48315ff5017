/*
 * The pipeline file as `vmci validate`, `vmci plan` and `vmci run` load
 * it: its errors printed in the compiler form FILE:LINE:COL: error: MESSAGE,
 * the way each of them reports a file that is missing or invalid.
 */
#include "cli/cli.h"

#include "common/common.h"
#include "pipelines/pipelines.h"
#include "runner/build.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_print_pipeline_errors(const struct pipe_errors *errors)
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

/* The repository's name, as a run without `name:` is called: the directory holding the file. */
static char *dir_name(const char *path)
{
	char real[PATH_MAX];
	if (!realpath(path, real))
		return NULL;
	char *base = basename(dirname(real));
	return strdup(base && *base && strcmp(base, "/") ? base : "pipeline");
}

int cli_pipeline_file_load(const char *cmd, int argc, char **argv, int first, int max_jobs,
			   const char **path, struct pipe_run **run)
{
	*run = NULL;
	if (argc - first > 1) {
		cli_error("%s: one pipeline file at a time (see: vmci %s --help)", cmd, cmd);
		return EXIT_USAGE;
	}
	if (max_jobs < 1) {
		cli_error("%s: --max-jobs must be at least 1", cmd);
		return EXIT_USAGE;
	}
	*path = first < argc ? argv[first] : PIPE_DEFAULT_FILE;
	char *name = dir_name(*path);
	struct pipe_load_opts lo = {
	    .file = *path, .default_name = name, .max_jobs = (size_t)max_jobs};
	struct pipe_errors errors = {0};
	struct vmci_err err = {0};
	int rc = pipe_load_file(*path, &lo, run, &errors, &err);
	free(name);
	int status = EXIT_OK;
	if (rc == -EINVAL) {
		cli_print_pipeline_errors(&errors);
		status = EXIT_USAGE;
	} else if (rc == -ENOENT) {
		cli_error("no pipeline file at %s (write one, or give its path: vmci %s FILE)",
			  *path, cmd);
		status = EXIT_USAGE;
	} else if (rc) {
		cli_error("%s", err.msg);
		status = rc == -ENOMEM ? EXIT_FAILED : EXIT_USAGE;
	}
	pipe_errors_free(&errors);
	if (status != EXIT_OK) {
		pipe_run_free(*run);
		*run = NULL;
	}
	return status;
}

int cli_pipeline_check_packages(const char *file, const struct pipe_run *run, const bool *selected)
{
	struct pipe_errors errors = {.file = strdup(file)};
	struct vmci_err err = {0};
	int rc = errors.file ? runner_check_packages(run, selected, &errors, &err)
			     : vmci_err_set(&err, ENOMEM, "out of memory");
	if (rc == -EINVAL)
		cli_print_pipeline_errors(&errors);
	else if (rc)
		cli_error("%s", err.msg);
	pipe_errors_free(&errors);
	return rc ? EXIT_USAGE : EXIT_OK;
}
