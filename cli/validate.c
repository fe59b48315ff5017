/*
 * vmci validate [FILE]: checks a pipeline file (default ./.vmci.yml) and
 * prints every error in the compiler form FILE:LINE:COL: error: MESSAGE.
 * Exits 0 when the file is valid and 2 (EXIT_USAGE) otherwise.
 */
#include "cli/cli.h"

#include "pipelines/pipelines.h"

static const char usage[] =
    "Usage: vmci validate [OPTIONS] [FILE]\n"
    "\n"
    "Checks a pipeline file (default: ./.vmci.yml) against the format: keys, types,\n"
    "durations, expressions, matrices, needs; and that the packages of jobs on a\n"
    "Debian image are in its distribution, when vmci keeps its package lists.\n"
    "Prints every error as FILE:LINE:COL.";

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
	const char *path;
	struct pipe_run *run;
	int status = cli_pipeline_file_load("validate", argc, argv, first, max_jobs, &path, &run);
	if (status == EXIT_OK)
		status = cli_pipeline_check_packages(path, run, NULL);
	if (status == EXIT_OK && !quiet)
		printf("%s: valid: %zu job%s from %zu definition%s\n", path, run->n_jobs,
		       run->n_jobs == 1 ? "" : "s", run->n_groups, run->n_groups == 1 ? "" : "s");
	pipe_run_free(run);
	return status;
}
