/*
 * vmci plan [--json] [FILE]: the jobs a pipeline file expands to, as a
 * table (job, image, matrix values, needs) or as JSON with everything the
 * runner would get. Invalid files get the errors `vmci validate` prints
 * and exit 2 (EXIT_USAGE).
 */
#include "cli/cli.h"

#include "common/common.h"
#include "pipelines/pipelines.h"

#include <jansson.h>
#include <string.h>

static const char usage[] =
    "Usage: vmci plan [OPTIONS] [FILE]\n"
    "\n"
    "Shows the jobs a pipeline file (default: ./.vmci.yml) expands to: each matrix\n"
    "combination with its image, matrix values and the jobs it needs.\n"
    "${{ vmci.sha }}, ${{ vmci.ref }} and ${{ vmci.run_id }} are shown as written.";

static void matrix_text(const struct pipe_job *j, struct buf *out)
{
	out->len = 0;
	for (size_t i = 0; i < j->n_matrix; i++)
		buf_appendf(out, "%s%s=%s", i ? " " : "", j->matrix[i].key, j->matrix[i].value);
	if (!j->n_matrix)
		buf_appendf(out, "-");
}

static void needs_text(const struct pipe_job *j, struct buf *out)
{
	out->len = 0;
	for (size_t i = 0; i < j->n_needs; i++)
		buf_appendf(out, "%s%s", i ? ", " : "", j->needs[i].job);
	if (!j->n_needs)
		buf_appendf(out, "-");
}

static int print_table(const struct pipe_run *run)
{
	size_t w_name = strlen("JOB"), w_image = strlen("IMAGE"), w_matrix = strlen("MATRIX");
	struct buf cell = {0};
	for (size_t i = 0; i < run->n_jobs; i++) {
		const struct pipe_job *j = &run->jobs[i];
		matrix_text(j, &cell);
		if (strlen(j->name) > w_name)
			w_name = strlen(j->name);
		if (strlen(j->image) > w_image)
			w_image = strlen(j->image);
		if (cell.len > w_matrix)
			w_matrix = cell.len;
	}
	printf("%s: %zu job%s\n\n", run->name, run->n_jobs, run->n_jobs == 1 ? "" : "s");
	printf("%-*s  %-*s  %-*s  %s\n", (int)w_name, "JOB", (int)w_image, "IMAGE", (int)w_matrix,
	       "MATRIX", "NEEDS");
	struct buf needs = {0};
	for (size_t i = 0; i < run->n_jobs; i++) {
		const struct pipe_job *j = &run->jobs[i];
		matrix_text(j, &cell);
		needs_text(j, &needs);
		printf("%-*s  %-*s  %-*s  %s\n", (int)w_name, j->name, (int)w_image, j->image,
		       (int)w_matrix, buf_cstr(&cell), buf_cstr(&needs));
	}
	buf_free(&cell);
	buf_free(&needs);
	return EXIT_OK;
}

static json_t *vars_json(const struct pipe_var *vars, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, vars[i].key, json_string(vars[i].value));
	return o;
}

static json_t *strings_json(const char *const *s, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(s[i]));
	return a;
}

static json_t *optional_string(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *job_json(const struct pipe_job *j)
{
	json_t *steps = json_array();
	for (size_t i = 0; i < j->n_steps; i++) {
		const struct pipe_step *s = &j->steps[i];
		json_array_append_new(
		    steps, json_pack("{s:s, s:s, s:o, s:o, s:b, s:o}", "name", s->name, "run",
				     s->run, "env", vars_json(s->env, s->n_env), "timeout_ms",
				     s->timeout_ms ? json_integer(s->timeout_ms) : json_null(),
				     "continue_on_error", s->continue_on_error, "workdir",
				     optional_string(s->workdir)));
	}
	json_t *needs = json_array();
	for (size_t i = 0; i < j->n_needs; i++)
		json_array_append_new(needs, json_string(j->needs[i].job));
	return json_pack(
	    "{s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:i, s:{s:i, s:I}, s:s, s:o, s:o, s:b, "
	    "s:o, s:o}",
	    "name", j->name, "id", j->id, "image", j->image, "matrix",
	    vars_json(j->matrix, j->n_matrix), "env", vars_json(j->env, j->n_env), "steps", steps,
	    "timeout_ms", (json_int_t)j->timeout_ms, "retries", j->retries, "resources", "cpus",
	    j->cpus, "memory_mb", (json_int_t)j->memory_mb, "network",
	    j->network == PIPE_NETWORK_NONE ? "none" : "nat", "artifacts",
	    strings_json(j->artifacts, j->n_artifacts), "needs", needs, "fail_fast", j->fail_fast,
	    "max_parallel", j->max_parallel ? json_integer(j->max_parallel) : json_null(), "if",
	    optional_string(j->condition));
}

static int print_json(const struct pipe_run *run)
{
	json_t *jobs = json_array();
	for (size_t i = 0; i < run->n_jobs; i++)
		json_array_append_new(jobs, job_json(&run->jobs[i]));
	json_t *root = json_pack("{s:s, s:{s:b, s:o, s:o}, s:o, s:o}", "name", run->name, "on",
				 "push", run->on_push, "branches",
				 strings_json(run->push_branches, run->n_push_branches),
				 "schedules", strings_json(run->schedules, run->n_schedules), "env",
				 vars_json(run->env, run->n_env), "jobs", jobs);
	if (!root) {
		cli_error("plan: out of memory writing JSON");
		return EXIT_FAILED;
	}
	int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (rc) {
		cli_error("plan: cannot write JSON to stdout");
		return EXIT_FAILED;
	}
	putchar('\n');
	return EXIT_OK;
}

int cmd_plan(int argc, char **argv)
{
	int max_jobs = PIPE_DEFAULT_MAX_JOBS;
	bool json = false;
	const struct cli_option opts[] = {
	    {0, "json", OPT_FLAG, &json, NULL, "print the expanded run as JSON"},
	    {0, "max-jobs", OPT_INT, &max_jobs, "N",
	     "refuse a pipeline that expands to more than N jobs (default 10000)"},
	    {0, NULL, OPT_FLAG, NULL, NULL, NULL},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	const char *path;
	struct pipe_run *run;
	int status = cli_pipeline_file_load("plan", argc, argv, first, max_jobs, &path, &run);
	if (status == EXIT_OK)
		status = json ? print_json(run) : print_table(run);
	pipe_run_free(run);
	return status;
}
