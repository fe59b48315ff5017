/*
 * The checked spec -> the run the runner reads: one pipe_job per matrix
 * combination, in file order, each id's combinations together.
 *
 * Everything a job shares with its siblings is shared, not copied: a
 * string that does not depend on the matrix was rendered once when it was
 * checked, and a job's steps, env, needs and artifacts are one array for
 * all its combinations unless they use the matrix. That keeps a 10,000
 * job matrix to a few allocations per job.
 */
#include "pipelines/internal.h"

#include <string.h>

#define DEFAULT_STEP_NAME_MAX 60

struct expander {
	struct pipe_ctx *ctx;
	struct pipe_arena *a;
	const char **pipeline_env; /* rendered pipeline env values */
};

/* -EFBIG when the run has outgrown PIPE_MAX_RUN_BYTES, else -ENOMEM: why a render failed. */
static int render_failure(const struct expander *x)
{
	return pipe_arena_failed(x->a) ? -ENOMEM : -EFBIG;
}

/* Renders t within what is left of PIPE_MAX_RUN_BYTES. NULL: see render_failure(). */
static const char *render(struct expander *x, const struct tmpl *t, const struct render_env *re)
{
	size_t used = pipe_arena_total(x->a);
	return pipe_tmpl_render(x->a, t, re,
				used < PIPE_MAX_RUN_BYTES ? PIPE_MAX_RUN_BYTES - used : 0);
}

/* A step without `name` is called by the first line of its script. */
static const char *default_step_name(struct pipe_arena *a, const char *run)
{
	run += strspn(run, " \t\r\n");
	size_t len = strcspn(run, "\r\n");
	bool cut = len > DEFAULT_STEP_NAME_MAX;
	return pipe_arena_printf(a, "%.*s%s", (int)(cut ? DEFAULT_STEP_NAME_MAX : len), run,
				 cut ? "..." : "");
}

static bool env_is_flat(const struct env_spec *env)
{
	for (size_t i = 0; i < env->n; i++)
		if (!env->items[i].value.flat)
			return false;
	return true;
}

static bool step_is_flat(const struct step_spec *s)
{
	return (!s->has_name || s->name.flat) && s->run.flat && env_is_flat(&s->env);
}

/* Renders an env level's values into an array of strings. NULL: ENOMEM. */
static const char **render_env_values(struct expander *x, const struct env_spec *env,
				      const struct render_env *re)
{
	const char **values = pipe_arena_array(x->a, env->n ? env->n : 1, sizeof(char *));
	for (size_t i = 0; values && i < env->n; i++)
		if (!(values[i] = render(x, &env->items[i].value, re)))
			return NULL;
	return values;
}

static struct pipe_var *to_vars(struct expander *x, const struct env_spec *env,
				const char *const *values)
{
	struct pipe_var *vars = pipe_arena_array(x->a, env->n ? env->n : 1, sizeof(*vars));
	for (size_t i = 0; vars && i < env->n; i++)
		vars[i] = (struct pipe_var){env->items[i].key, values[i]};
	return vars;
}

/*
 * The job's effective env: the pipeline's, each overridden by the job's
 * value of the same name, then the job's own names. `slot` maps each job
 * env entry to its place in the result.
 */
static struct pipe_var *merge_env(struct expander *x, const struct pipe_spec *spec,
				  const struct env_spec *job_env, const size_t *slot, size_t n,
				  const char *const *job_values)
{
	struct pipe_var *vars = pipe_arena_array(x->a, n ? n : 1, sizeof(*vars));
	if (!vars)
		return NULL;
	for (size_t i = 0; i < spec->env.n; i++)
		vars[i] = (struct pipe_var){spec->env.items[i].key, x->pipeline_env[i]};
	for (size_t i = 0; i < job_env->n; i++)
		vars[slot[i]] = (struct pipe_var){job_env->items[i].key, job_values[i]};
	return vars;
}

static int render_steps(struct expander *x, const struct job_spec *b, struct render_env *re,
			struct pipe_step **out)
{
	struct pipe_step *steps = pipe_arena_array(x->a, b->n_steps, sizeof(*steps));
	if (!steps)
		return -ENOMEM;
	for (size_t i = 0; i < b->n_steps; i++) {
		const struct step_spec *s = &b->steps[i];
		struct pipe_step *st = &steps[i];
		re->env[ENV_STEP] = render_env_values(x, &s->env, re);
		if (!re->env[ENV_STEP])
			return render_failure(x);
		st->env = to_vars(x, &s->env, re->env[ENV_STEP]);
		st->n_env = s->env.n;
		st->run = render(x, &s->run, re);
		st->name = s->has_name ? render(x, &s->name, re)
			   : st->run   ? default_step_name(x->a, st->run)
				       : NULL;
		if (!st->env || !st->run || !st->name)
			return render_failure(x);
		if (!s->run.flat) /* flat scripts were checked when read */
			pipe_script_check(
			    x->ctx, s->run_pos, st->run,
			    pipe_fmt(x->ctx, "run of step %zu of job '%s'", i + 1, b->id));
		st->timeout_ms = s->timeout_ms;
		st->continue_on_error = s->continue_on_error;
		st->workdir = s->workdir;
		st->line = s->pos.line;
		st->col = s->pos.col;
	}
	re->env[ENV_STEP] = NULL;
	*out = steps;
	return 0;
}

/* What an env entry takes in the exec request: "KEY=VALUE" and its end. */
static size_t var_size(const struct pipe_var *v)
{
	return strlen(v->key) + strlen(v->value) + 2;
}

/*
 * Checks each step's environment against PIPE_MAX_ENV_SIZE and
 * PIPE_MAX_ENV_VARS: the job's env and the step's, with VMCI_JOB,
 * VMCI_JOB_ID and VMCI_IMAGE, which the runner adds from the job.
 * Records the first step over a limit; returns -EINVAL then, else 0.
 */
static int check_env_size(struct expander *x, const struct job_spec *b, const struct pipe_job *j)
{
	size_t base = strlen(j->name) + strlen(j->id) + strlen(j->image) + 3 * 16;
	for (size_t i = 0; i < j->n_env; i++)
		base += var_size(&j->env[i]);
	for (size_t k = 0; k < j->n_steps; k++) {
		const struct pipe_step *st = &j->steps[k];
		size_t size = base, count = j->n_env + st->n_env;
		for (size_t i = 0; i < st->n_env; i++)
			size += var_size(&st->env[i]);
		if (size <= PIPE_MAX_ENV_SIZE && count <= PIPE_MAX_ENV_VARS)
			continue;
		struct ypos pos = st->n_env ? b->steps[k].pos : b->pos;
		pipe_error_at(x->ctx, pos,
			      "the environment of step %zu of job '%s' has %zu variables in %zu "
			      "KiB, more than the %d variables in %d KiB a step may have",
			      k + 1, j->name, count, (size + 1023) >> 10, PIPE_MAX_ENV_VARS,
			      PIPE_MAX_ENV_SIZE >> 10);
		return -EINVAL;
	}
	return 0;
}

/* "build (busybox-x86_64, gcc)": the id and the combination's values in key order. */
static const char *job_name(struct expander *x, const struct job_spec *b, const char *const *row,
			    const struct matrix_spec *m)
{
	if (!m)
		return b->id;
	size_t len = strlen(b->id) + 3;
	for (size_t k = 0; k < m->n_keys; k++)
		if (row[k])
			len += strlen(row[k]) + 2;
	char *name = pipe_arena_alloc(x->a, len + 1);
	if (!name)
		return NULL;
	char *p = stpcpy(stpcpy(name, b->id), " (");
	bool first = true;
	for (size_t k = 0; k < m->n_keys; k++) {
		if (!row[k])
			continue;
		if (!first)
			p = stpcpy(p, ", ");
		p = stpcpy(p, row[k]);
		first = false;
	}
	strcpy(p, ")");
	return name;
}

static int expand_job(struct expander *x, const struct pipe_spec *spec, size_t bi,
		      const size_t *first_of, struct pipe_job *jobs, struct pipe_group *group)
{
	const struct job_spec *b = &spec->jobs[bi];
	const struct matrix_spec *m = b->matrix;
	const char **rows = NULL;
	size_t n_rows = 1;
	if (m) {
		int rc = pipe_matrix_expand(x->ctx->tmp, m, &rows, &n_rows);
		if (rc)
			return rc;
		if (n_rows != b->n_combos)
			return -ERANGE; /* the count and the expansion disagree: a bug */
	}
	*group = (struct pipe_group){b->id, first_of[bi], n_rows, b->fail_fast, b->max_parallel};

	/* Shared by every combination. */
	struct pipe_need *needs = pipe_arena_array(x->a, b->n_needs + 1, sizeof(*needs));
	size_t *slot = pipe_arena_array(x->ctx->tmp, b->env.n + 1, sizeof(size_t));
	if (!needs || !slot)
		return -ENOMEM;
	for (size_t i = 0; i < b->n_needs; i++) {
		long t = b->needs[i].target;
		needs[i] =
		    (struct pipe_need){spec->jobs[t].id, first_of[t], spec->jobs[t].n_combos};
	}
	size_t n_env = spec->env.n; /* names in a mapping are unique: no repeats within a level */
	for (size_t i = 0; i < b->env.n; i++) {
		const char *key = b->env.items[i].key;
		long j = pipe_strmap_get(&spec->env.index, key, strlen(key));
		slot[i] = j >= 0 ? (size_t)j : n_env++;
	}
	bool env_flat = env_is_flat(&b->env), steps_flat = true;
	for (size_t i = 0; i < b->n_steps; i++)
		steps_flat = steps_flat && step_is_flat(&b->steps[i]);
	struct pipe_var *shared_env = NULL;
	struct pipe_step *shared_steps = NULL;
	struct render_env re = {.env = {x->pipeline_env, NULL, NULL}};
	const char **job_values = NULL;

	struct pipe_strmap names = {.arena = x->ctx->tmp};
	bool env_refused = false; /* said once per id, not once per combination */
	for (size_t r = 0; r < n_rows; r++) {
		const char *const *row = m ? rows + r * m->n_keys : NULL;
		struct pipe_job *j = &jobs[first_of[bi] + r];
		re.matrix = row;
		if (!env_flat || !job_values) {
			job_values = render_env_values(x, &b->env, &re);
			if (!job_values)
				return render_failure(x);
		}
		re.env[ENV_JOB] = job_values;
		if (!env_flat || !shared_env) {
			shared_env = merge_env(x, spec, &b->env, slot, n_env, job_values);
			if (!shared_env)
				return -ENOMEM;
		}
		if (!steps_flat || !shared_steps) {
			int rc = render_steps(x, b, &re, &shared_steps);
			if (rc)
				return rc;
		}
		struct pipe_var *mvars = NULL;
		size_t n_m = 0;
		if (m) {
			mvars = pipe_arena_array(x->a, m->n_keys, sizeof(*mvars));
			if (!mvars)
				return -ENOMEM;
			for (size_t k = 0; k < m->n_keys; k++)
				if (row[k])
					mvars[n_m++] = (struct pipe_var){m->keys[k].name, row[k]};
		}
		*j = (struct pipe_job){
		    .name = job_name(x, b, row, m),
		    .id = b->id,
		    .group = bi,
		    .image = render(x, &b->image, &re),
		    .matrix = mvars,
		    .n_matrix = n_m,
		    .env = shared_env,
		    .n_env = n_env,
		    .steps = shared_steps,
		    .n_steps = b->n_steps,
		    .timeout_ms = b->timeout_ms,
		    .retries = b->retries,
		    .cpus = b->cpus,
		    .memory_mb = b->memory_mb,
		    .network = b->network,
		    .packages = b->packages,
		    .n_packages = b->n_packages,
		    .package_places = b->package_places,
		    .log_limit = b->log_limit,
		    .artifacts = b->artifacts,
		    .n_artifacts = b->n_artifacts,
		    .artifact_max_bytes = b->artifact_max_bytes,
		    .artifact_max_files = b->artifact_max_files,
		    .needs = needs,
		    .n_needs = b->n_needs,
		    .fail_fast = b->fail_fast,
		    .max_parallel = b->max_parallel,
		    .condition = b->condition,
		    .line = b->pos.line,
		    .col = b->pos.col,
		};
		if (!j->name || !j->image || pipe_arena_total(x->a) > PIPE_MAX_RUN_BYTES)
			return render_failure(x);
		if (!*j->image)
			pipe_error_at(x->ctx, b->image_pos, "image of job '%s' is empty", j->name);
		else if (!b->image.flat) /* flat names were checked when read */
			pipe_image_check(x->ctx, b->image_pos, j->image,
					 pipe_fmt(x->ctx, "job '%s'", j->name));
		if (!env_refused)
			env_refused = check_env_size(x, b, j) != 0;
		if (m) {
			int rc = pipe_strmap_add(&names, j->name, strlen(j->name), (long)r, NULL);
			if (rc < 0)
				return rc;
			if (rc == 0)
				pipe_error_at(
				    x->ctx, m->pos,
				    "the matrix of job '%s' makes two jobs named '%s'; give "
				    "each combination different values",
				    b->id, j->name);
		}
	}
	return 0;
}

int pipe_expand(struct pipe_ctx *ctx, const struct pipe_spec *spec, const char *default_name,
		struct pipe_run **out)
{
	struct expander x = {.ctx = ctx, .a = ctx->keep};
	struct pipe_run *run = pipe_arena_alloc(x.a, sizeof(*run));
	size_t *first_of = pipe_arena_array(ctx->tmp, spec->n_jobs + 1, sizeof(size_t));
	if (!run || !first_of)
		return -ENOMEM;
	size_t total = 0;
	for (size_t i = 0; i < spec->n_jobs; i++) {
		first_of[i] = total;
		total += spec->jobs[i].n_combos;
	}
	struct pipe_job *jobs = pipe_arena_array(x.a, total ? total : 1, sizeof(*jobs));
	struct pipe_group *groups = pipe_arena_array(x.a, spec->n_jobs + 1, sizeof(*groups));
	struct render_env top = {0};
	x.pipeline_env = render_env_values(&x, &spec->env, &top);
	if (!jobs || !groups || !x.pipeline_env)
		return -ENOMEM;
	for (size_t i = 0; i < spec->n_jobs; i++) {
		const struct job_spec *b = &spec->jobs[i];
		int rc = expand_job(&x, spec, i, first_of, jobs, &groups[i]);
		if (rc == -EFBIG)
			return pipe_error_at(
			    ctx, b->pos,
			    "job '%s' expands to more than %u MiB of names, env and "
			    "scripts; make its matrix or its steps smaller",
			    b->id, PIPE_MAX_RUN_BYTES >> 20);
		if (rc == -E2BIG)
			return pipe_error_at(
			    ctx, b->matrix ? b->matrix->pos : b->pos,
			    "the matrix of job '%s' is too complex to expand: its "
			    "include and exclude entries interact too much; simplify "
			    "them",
			    b->id);
		if (rc)
			return rc;
	}
	const char *name = spec->has_name ? spec->name_tmpl.flat : default_name;
	run->name = pipe_arena_strdup(x.a, name && *name ? name : "pipeline");
	run->on_push = spec->on_push;
	run->push_branches = spec->branches;
	run->n_push_branches = spec->n_branches;
	run->schedules = spec->crons;
	run->n_schedules = spec->n_crons;
	run->env = to_vars(&x, &spec->env, x.pipeline_env);
	run->n_env = spec->env.n;
	run->jobs = jobs;
	run->n_jobs = total;
	run->groups = groups;
	run->n_groups = spec->n_jobs;
	if (!run->name || !run->env)
		return -ENOMEM;
	*out = run;
	return 0;
}
