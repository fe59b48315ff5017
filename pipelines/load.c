/*
 * pipe_load(): the module's entry point. It runs the passes in order:
 * parse the tree, validate it into a spec, check the job graph, count
 * every matrix against --max-jobs, and only when the file has no error
 * at all, expand the run. Every pass records errors and goes on, so the
 * user sees all of them at once.
 */
#include "pipelines/internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *count_text(char *out, size_t size, uint64_t n)
{
	if (n == UINT64_MAX)
		snprintf(out, size, "more than %" PRIu64, n - 1);
	else
		snprintf(out, size, "%" PRIu64, n);
	return out;
}

/* Counts each matrix without making it, and refuses what passes the limit. */
static int check_sizes(struct pipe_ctx *ctx, struct pipe_spec *spec)
{
	uint64_t total = 0;
	bool refused = false;
	char text[64];
	for (size_t i = 0; i < spec->n_jobs; i++) {
		struct job_spec *job = &spec->jobs[i];
		uint64_t count = 1;
		if (job->matrix_broken) {
			refused = true;
			continue;
		}
		if (job->matrix) {
			int rc = pipe_matrix_count(job->matrix, &count);
			if (rc == -ENOMEM)
				return rc;
			if (rc) {
				pipe_error_at(ctx, job->matrix->pos,
					      "the matrix of job '%s' is too complex to count: its "
					      "exclude entries interact too much; simplify them",
					      job->id);
				refused = true;
				continue;
			}
			if (count == 0) {
				pipe_error_at(
				    ctx, job->matrix->pos,
				    "the matrix of job '%s' makes no jobs: its excludes remove "
				    "every combination",
				    job->id);
				refused = true;
			} else if (count > ctx->max_jobs) {
				pipe_error_at(
				    ctx, job->matrix->pos,
				    "the matrix of job '%s' would make %s jobs, more than the "
				    "limit of %zu (--max-jobs)",
				    job->id, count_text(text, sizeof(text), count), ctx->max_jobs);
				refused = true;
			}
		}
		job->n_combos = count;
		total = total > UINT64_MAX - count ? UINT64_MAX : total + count;
	}
	if (!refused && total > ctx->max_jobs)
		pipe_error_at(
		    ctx, spec->jobs_pos,
		    "the pipeline would make %s jobs, more than the limit of %zu (--max-jobs)",
		    count_text(text, sizeof(text), total), ctx->max_jobs);
	return 0;
}

int pipe_load(const char *text, size_t len, const struct pipe_load_opts *opts,
	      struct pipe_run **out, struct pipe_errors *errors)
{
	static const struct pipe_load_opts defaults;
	if (!opts)
		opts = &defaults;
	*out = NULL;
	free(errors->file);
	errors->file = strdup(opts->file ? opts->file : PIPE_DEFAULT_FILE);
	struct pipe_ctx ctx = {
	    .errors = errors,
	    .text = text,
	    .len = len,
	    .max_jobs = opts->max_jobs ? opts->max_jobs : PIPE_DEFAULT_MAX_JOBS,
	    .vars = opts->vars,
	    .suggest_budget = PIPE_SUGGEST_BUDGET,
	    .tmp = pipe_arena_new(),
	    .keep = pipe_arena_new(),
	};
	struct pipe_run *run = NULL;
	struct ynode *root = NULL;
	struct pipe_spec spec = {0};
	int rc = -ENOMEM;
	if (!errors->file || !ctx.tmp || !ctx.keep)
		goto out;
	/* A syntax error leaves no tree to check; duplicate keys do not stop the parse. */
	rc = pipe_tree_parse(&ctx, &root);
	if (rc == 0) {
		rc = pipe_validate(&ctx, root, &spec);
		if (rc != -ENOMEM)
			rc = pipe_graph_check(&ctx, &spec);
		if (rc != -ENOMEM)
			rc = check_sizes(&ctx, &spec);
		if (rc != -ENOMEM && errors->len == 0)
			rc = pipe_expand(&ctx, &spec, opts->default_name, &run);
	}
out:
	if (rc == -ENOMEM || ctx.oom || (ctx.tmp && pipe_arena_failed(ctx.tmp)) ||
	    (ctx.keep && pipe_arena_failed(ctx.keep))) {
		rc = -ENOMEM;
	} else if (errors->len || ctx.n_dropped) {
		pipe_errors_finish(&ctx);
		rc = ctx.oom ? -ENOMEM : -EINVAL;
	} else if (rc == -ERANGE) {
		/* The count and the expansion disagree: say so rather than return a wrong run. */
		pipe_error_at(&ctx, (struct ypos){0, 0},
			      "internal error: the matrix expansion did not match its count");
		rc = -EINVAL;
	} else if (rc == 0 && run) {
		run->arena = ctx.keep;
		ctx.keep = NULL;
		*out = run;
	} else {
		rc = rc ? rc : -EINVAL;
	}
	pipe_arena_free(ctx.tmp);
	pipe_arena_free(ctx.keep);
	return rc;
}

int pipe_load_file(const char *path, const struct pipe_load_opts *opts, struct pipe_run **out,
		   struct pipe_errors *errors, struct vmci_err *err)
{
	struct buf text = {0};
	*out = NULL;
	int rc = fs_read_file(path, PIPE_MAX_FILE_SIZE, &text, err);
	if (rc == -ENOENT) {
		buf_free(&text);
		return vmci_err_set(err, ENOENT,
				    "no pipeline file at %s (write one, or give its path)", path);
	}
	if (rc) {
		buf_free(&text);
		return rc;
	}
	struct pipe_load_opts o = opts ? *opts : (struct pipe_load_opts){0};
	if (!o.file)
		o.file = path;
	rc = pipe_load((const char *)text.data, text.len, &o, out, errors);
	buf_free(&text);
	if (rc == -EINVAL)
		vmci_err_set(err, EINVAL, "%s is not a valid pipeline (%zu errors)", o.file,
			     errors->len);
	else if (rc == -ENOMEM)
		vmci_err_set(err, ENOMEM, "out of memory loading %s", o.file);
	return rc;
}

void pipe_run_free(struct pipe_run *run)
{
	if (run)
		pipe_arena_free(run->arena);
}

long pipe_run_find_job(const struct pipe_run *run, const char *name)
{
	for (size_t i = 0; i < run->n_jobs; i++)
		if (!strcmp(run->jobs[i].name, name))
			return (long)i;
	return -1;
}

int pipe_expand_vars(const char *text, const struct pipe_vars *vars, struct buf *out)
{
	static const char *const names[] = {"vmci.sha", "vmci.ref", "vmci.run_id"};
	const char *p = text;
	int rc = buf_append(out, "", 0);
	while (!rc) {
		const char *open = strstr(p, "${{");
		const char *close = open ? strstr(open + 3, "}}") : NULL;
		if (!close) {
			rc = buf_append(out, p, strlen(p));
			break;
		}
		const char *in = open + 3, *end = close;
		while (in < end && isspace((unsigned char)*in))
			in++;
		while (end > in && isspace((unsigned char)end[-1]))
			end--;
		const char *value = NULL;
		for (size_t i = 0; i < ARRAY_LEN(names) && vars; i++) {
			if ((size_t)(end - in) == strlen(names[i]) &&
			    !memcmp(in, names[i], end - in))
				value = i == 0 ? vars->sha : i == 1 ? vars->ref : vars->run_id;
		}
		rc = buf_append(out, p, (size_t)(open - p));
		if (!rc)
			rc = value ? buf_append(out, value, strlen(value))
				   : buf_append(out, open, (size_t)(close + 2 - open));
		p = close + 2;
	}
	return rc ? -ENOMEM : 0;
}
