/*
 * The top level of a pipeline (docs/pipeline.md "The top level"): `name`, `on`, `env`
 * and `jobs`, plus keys starting with `x-`, which are ignored so that a
 * file has somewhere to define anchors (`x-defaults: &defaults ...`).
 * Every check records its error and goes on, so one run of `vmci
 * validate` shows everything wrong with a file.
 */
#include "pipelines/internal.h"

#include <stdio.h>
#include <string.h>

static const char *const top_keys[] = {"name", "on", "env", "jobs"};
static const char *const on_keys[] = {"push", "schedule"};
static const char *const push_keys[] = {"branches"};
static const char *const schedule_keys[] = {"cron"};

int pipe_env_parse(struct pipe_ctx *ctx, const struct ynode *n, const struct expr_scope *scope,
		   const char *where, struct env_spec *out)
{
	memset(out, 0, sizeof(*out));
	out->index.arena = ctx->tmp;
	if (pipe_node_is_null(n))
		return 0;
	if (n->kind != Y_MAP)
		return pipe_error_at(ctx, n->pos, "%s must be a mapping of names to values, not %s",
				     where, pipe_node_what(n));
	out->items = pipe_arena_array(ctx->tmp, n->n ? n->n : 1, sizeof(*out->items));
	if (!out->items)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->pairs[i].key, *v = n->pairs[i].val;
		const char *what;
		if (!pipe_is_ident(k->str, k->len, false)) {
			rc = pipe_error_at(ctx, k->pos,
					   "env name '%s' in %s must be letters, digits and '_', "
					   "not starting with a digit",
					   k->str, where);
			continue;
		}
		what = pipe_fmt(ctx, "env '%s' in %s", k->str, where);
		struct env_entry *e = &out->items[out->n];
		int r = pipe_tmpl_compile(ctx, scope, v, what, &e->value);
		if (r == -ENOMEM)
			return r;
		if (r) {
			/* Kept, empty, so uses of it do not report a second error. */
			rc = r;
			e->value = (struct tmpl){.flat = ""};
		}
		e->key = pipe_arena_strndup(ctx->keep, k->str, k->len);
		if (!e->key)
			return -ENOMEM;
		e->pos = k->pos;
		if (pipe_strmap_add(&out->index, e->key, k->len, (long)out->n, NULL) < 0)
			return -ENOMEM;
		out->n++;
	}
	return rc;
}

/* A list of strings into a NULL-free array in ctx->keep. */
static int string_list(struct pipe_ctx *ctx, const struct ynode *n, const char *what,
		       const char ***out, size_t *n_out)
{
	*n_out = 0;
	if (n->kind != Y_SEQ)
		return pipe_error_at(ctx, n->pos, "%s must be a list of strings, not %s", what,
				     pipe_node_what(n));
	*out = pipe_arena_array(ctx->keep, n->n ? n->n : 1, sizeof(char *));
	if (!*out)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < n->n; i++) {
		const char *s;
		int r = pipe_node_string(ctx, n->items[i], what, &s);
		if (r == -ENOMEM)
			return r;
		if (r == 0 && !*s)
			r = pipe_error_at(ctx, n->items[i]->pos, "%s must not be empty", what);
		if (r)
			rc = r;
		else
			(*out)[(*n_out)++] = s;
	}
	return rc;
}

static int parse_push(struct pipe_ctx *ctx, const struct ynode *n, struct pipe_spec *spec)
{
	spec->on_push = true;
	if (pipe_node_is_null(n))
		return 0;
	if (n->kind != Y_MAP)
		return pipe_error_at(ctx, n->pos,
				     "on.push must be a mapping with 'branches', not %s",
				     pipe_node_what(n));
	int rc = pipe_check_keys(ctx, n, push_keys, ARRAY_LEN(push_keys), "on.push") ? -EINVAL : 0;
	const struct ynode *b = pipe_map_get(n, "branches");
	if (b && !pipe_node_is_null(b)) {
		int r = string_list(ctx, b, "a branch pattern in on.push.branches", &spec->branches,
				    &spec->n_branches);
		rc = r ? r : rc;
	}
	return rc;
}

static int parse_schedule(struct pipe_ctx *ctx, const struct ynode *n, struct pipe_spec *spec)
{
	if (n->kind != Y_SEQ)
		return pipe_error_at(
		    ctx, n->pos,
		    "on.schedule must be a list of entries such as '- cron: \"0 3 * * *\"', "
		    "not %s",
		    pipe_node_what(n));
	spec->crons = pipe_arena_array(ctx->keep, n->n ? n->n : 1, sizeof(char *));
	if (!spec->crons)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *e = n->items[i];
		if (e->kind != Y_MAP) {
			rc = pipe_error_at(
			    ctx, e->pos,
			    "an on.schedule entry must be a mapping with 'cron', not %s",
			    pipe_node_what(e));
			continue;
		}
		if (pipe_check_keys(ctx, e, schedule_keys, ARRAY_LEN(schedule_keys), "on.schedule"))
			rc = -EINVAL;
		const struct ynode *c = pipe_map_get(e, "cron");
		const char *expr;
		char why[256];
		if (!c) {
			rc = pipe_error_at(ctx, e->pos, "an on.schedule entry needs 'cron'");
		} else if (pipe_node_string(ctx, c, "on.schedule.cron", &expr)) {
			rc = -EINVAL;
		} else if (pipe_cron_check(expr, why, sizeof(why))) {
			rc = pipe_error_at(ctx, c->pos, "invalid cron expression '%s': %s", expr,
					   why);
		} else {
			spec->crons[spec->n_crons++] = expr;
		}
	}
	return rc;
}

/* `on`: a mapping, or the GitHub shorthands `on: push` and `on: [push]`. Absent: every push. */
static int parse_on(struct pipe_ctx *ctx, const struct ynode *n, struct pipe_spec *spec)
{
	if (!n) {
		spec->on_push = true;
		return 0;
	}
	if (n->kind == Y_SCALAR && !strcmp(n->str, "push")) {
		spec->on_push = true;
		return 0;
	}
	if (n->kind == Y_SEQ) {
		int rc = 0;
		for (size_t i = 0; i < n->n; i++) {
			if (n->items[i]->kind == Y_SCALAR && !strcmp(n->items[i]->str, "push"))
				spec->on_push = true;
			else
				rc = pipe_error_at(
				    ctx, n->items[i]->pos,
				    "'on' as a list may only name 'push' (schedules need "
				    "a mapping: on: {schedule: [{cron: ...}]})");
		}
		return rc;
	}
	if (n->kind != Y_MAP)
		return pipe_error_at(ctx, n->pos,
				     "'on' must be a mapping with push and schedule, not %s",
				     pipe_node_what(n));
	int rc = pipe_check_keys(ctx, n, on_keys, ARRAY_LEN(on_keys), "'on'") ? -EINVAL : 0;
	const struct ynode *push = pipe_map_get(n, "push");
	const struct ynode *schedule = pipe_map_get(n, "schedule");
	int r = push ? parse_push(ctx, push, spec) : 0;
	rc = r ? r : rc;
	r = schedule ? parse_schedule(ctx, schedule, spec) : 0;
	return r ? r : rc;
}

static int parse_jobs(struct pipe_ctx *ctx, const struct ynode *key, const struct ynode *n,
		      struct pipe_spec *spec)
{
	spec->jobs_pos = key->pos;
	if (n->kind != Y_MAP)
		return pipe_error_at(ctx, n->pos,
				     "'jobs' must be a mapping of job ids to jobs, not %s",
				     pipe_node_what(n));
	if (n->n == 0)
		return pipe_error_at(ctx, n->pos, "'jobs' is empty: define at least one job");
	spec->jobs = pipe_arena_array(ctx->tmp, n->n, sizeof(*spec->jobs));
	if (!spec->jobs)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->pairs[i].key;
		if (!pipe_is_ident(k->str, k->len, true))
			rc = pipe_error_at(
			    ctx, k->pos,
			    "job id '%s' must start with a letter or '_' and hold only "
			    "letters, digits, '-' and '_'",
			    k->str);
		/* Checked all the same: its other errors are worth seeing now. */
		int r = pipe_job_parse(ctx, spec, k, n->pairs[i].val, &spec->jobs[spec->n_jobs++]);
		if (r == -ENOMEM)
			return r;
		rc = r ? r : rc;
	}
	return rc;
}

int pipe_validate(struct pipe_ctx *ctx, const struct ynode *root, struct pipe_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	if (!root)
		return pipe_error_at(ctx, (struct ypos){0, 0},
				     "the file is empty: a pipeline needs at least 'jobs'");
	if (root->kind != Y_MAP)
		return pipe_error_at(ctx, root->pos,
				     "a pipeline must be a mapping with 'jobs', not %s",
				     pipe_node_what(root));
	int rc = 0;
	for (size_t i = 0; i < root->n; i++) {
		const struct ynode *k = root->pairs[i].key;
		bool known = pipe_is_extension_key(k);
		for (size_t j = 0; j < ARRAY_LEN(top_keys) && !known; j++)
			known = !strcmp(k->str, top_keys[j]);
		if (!known)
			rc = pipe_error_at(
			    ctx, k->pos,
			    "unknown key '%s' in the pipeline%s (keys starting with "
			    "'x-' are free for anchors)",
			    k->str, pipe_did_you_mean(ctx, k->str, top_keys, ARRAY_LEN(top_keys)));
	}
	const struct expr_scope top = {.where = "the pipeline"};
	const struct ynode *name = pipe_map_get(root, "name");
	if (name) {
		int r = pipe_tmpl_compile(ctx, &top, name, "the pipeline's name", &spec->name_tmpl);
		if (r == 0 && pipe_node_is_null(name))
			r = pipe_error_at(ctx, name->pos,
					  "the pipeline's name must be a string, not null");
		spec->has_name = r == 0;
		rc = r ? r : rc;
	}
	int r = parse_on(ctx, pipe_map_get(root, "on"), spec);
	rc = r ? r : rc;
	const struct ynode *env = pipe_map_get(root, "env");
	if (env) {
		const struct expr_scope scope = {.where = "the pipeline's env"};
		r = pipe_env_parse(ctx, env, &scope, "the pipeline's env", &spec->env);
		rc = r ? r : rc;
	}
	const struct ynode *jobs = pipe_map_get(root, "jobs");
	if (!jobs)
		r = pipe_error_at(ctx, root->pos,
				  "the pipeline has no 'jobs': add 'jobs:' with at least one job");
	else
		r = parse_jobs(ctx, pipe_map_key(root, "jobs"), jobs, spec);
	rc = r ? r : rc;
	return ctx->oom ? -ENOMEM : rc;
}
