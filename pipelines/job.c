/*
 * One job under `jobs:` and its parts (docs/pipeline.md "Jobs"): image,
 * strategy, needs, env, steps, timeout, retries, resources, artifacts, if,
 * log-limit, network and packages. What a run cannot run is refused here, not in the VM: an
 * image name the store would refuse, a script past PIPE_MAX_SCRIPT_SIZE.
 * The strategy is read first: its matrix keys are what the job's
 * expressions may name.
 */
#include "pipelines/internal.h"

#include <stdio.h>
#include <string.h>

static const char *const job_keys[] = {"image",	    "strategy", "needs",     "env",	  "steps",
				       "timeout",   "retries",	"resources", "artifacts", "if",
				       "log-limit", "network",	"packages"};
static const char *const strategy_keys[] = {"matrix", "fail-fast", "max-parallel"};
static const char *const resource_keys[] = {"cpus", "memory"};
static const char *const step_keys[] = {"name",	  "run", "env", "timeout", "continue-on-error",
					"workdir"};
static const char *const artifact_keys[] = {"paths", "max-size", "max-files"};

/* Folds a typed-read result into the job's: ENOMEM wins, then any error. */
static int fold(int rc, int r)
{
	if (rc == -ENOMEM || r == -ENOMEM)
		return -ENOMEM;
	return r ? r : rc;
}

static int parse_strategy(struct pipe_ctx *ctx, const struct ynode *n, struct job_spec *job,
			  const char *where)
{
	const char *what;
	if (n->kind != Y_MAP) {
		job->matrix_broken = true; /* matrix.X cannot be checked; say nothing of it */
		return pipe_error_at(ctx, n->pos, "strategy of %s must be a mapping, not %s", where,
				     pipe_node_what(n));
	}
	what = pipe_fmt(ctx, "strategy of %s", where);
	int rc =
	    pipe_check_keys(ctx, n, strategy_keys, ARRAY_LEN(strategy_keys), what) ? -EINVAL : 0;
	const struct ynode *v;
	if ((v = pipe_map_get(n, "matrix"))) {
		int r = pipe_matrix_parse(ctx, job->id, v, &job->matrix);
		job->matrix_broken = r != 0;
		rc = fold(rc, r);
		/* Refusals of the whole matrix (too many jobs) point at its key. */
		if (job->matrix)
			job->matrix->pos = pipe_map_key(n, "matrix")->pos;
	}
	if ((v = pipe_map_get(n, "fail-fast"))) {
		what = pipe_fmt(ctx, "fail-fast of %s", where);
		rc = fold(rc, pipe_node_bool(ctx, v, what, &job->fail_fast));
	}
	if ((v = pipe_map_get(n, "max-parallel"))) {
		what = pipe_fmt(ctx, "max-parallel of %s", where);
		rc = fold(rc, pipe_node_int(ctx, v, what, 1, 1000000, &job->max_parallel));
	}
	return rc;
}

static int parse_resources(struct pipe_ctx *ctx, const struct ynode *n, struct job_spec *job,
			   const char *where)
{
	const char *what;
	if (n->kind != Y_MAP)
		return pipe_error_at(
		    ctx, n->pos,
		    "resources of %s must be a mapping such as {cpus: 2, memory: 1G}, "
		    "not %s",
		    where, pipe_node_what(n));
	what = pipe_fmt(ctx, "resources of %s", where);
	int rc =
	    pipe_check_keys(ctx, n, resource_keys, ARRAY_LEN(resource_keys), what) ? -EINVAL : 0;
	const struct ynode *v;
	if ((v = pipe_map_get(n, "cpus"))) {
		what = pipe_fmt(ctx, "cpus of %s", where);
		rc = fold(rc, pipe_node_int(ctx, v, what, 1, PIPE_MAX_CPUS, &job->cpus));
	}
	if ((v = pipe_map_get(n, "memory"))) {
		what = pipe_fmt(ctx, "memory of %s", where);
		rc = fold(rc, pipe_node_size_mb(ctx, v, what, &job->memory_mb));
	}
	return rc;
}

/* `log-limit`: a size, in bytes from 1M to PIPE_MAX_LOG_LIMIT. */
static int parse_log_limit(struct pipe_ctx *ctx, const struct ynode *n, struct job_spec *job,
			   const char *where)
{
	const char *what = pipe_fmt(ctx, "log-limit of %s", where);
	int64_t mb;
	int rc = pipe_node_size_mb(ctx, n, what, &mb);
	if (rc)
		return rc;
	if (mb > PIPE_MAX_LOG_LIMIT >> 20)
		return pipe_error_at(ctx, n->pos, "%s must be at most %lldG, not '%s'", what,
				     (long long)(PIPE_MAX_LOG_LIMIT >> 30), n->str);
	job->log_limit = mb << 20;
	return 0;
}

/* An artifact glob stays inside the workspace: relative, without "..". */
static bool inside_workspace(const char *path)
{
	if (path[0] == '/')
		return false;
	for (const char *p = path; *p;) {
		size_t len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return false;
		p += len;
		p += *p == '/';
	}
	return true;
}

static int parse_artifact_paths(struct pipe_ctx *ctx, const struct ynode *n, struct job_spec *job,
				const char *where)
{
	if (n->kind != Y_SEQ)
		return pipe_error_at(ctx, n->pos, "artifacts of %s must be a list of paths, not %s",
				     where, pipe_node_what(n));
	job->artifacts = pipe_arena_array(ctx->keep, n->n ? n->n : 1, sizeof(char *));
	if (!job->artifacts)
		return -ENOMEM;
	int rc = 0;
	const char *what;
	what = pipe_fmt(ctx, "an artifact of %s", where);
	for (size_t i = 0; i < n->n; i++) {
		const char *s;
		int r = pipe_node_string(ctx, n->items[i], what, &s);
		if (r == 0 && (!*s || !inside_workspace(s)))
			r = pipe_error_at(ctx, n->items[i]->pos,
					  "artifact '%s' of %s must be a path inside the workspace "
					  "(relative, without '..')",
					  s, where);
		if (r == 0)
			job->artifacts[job->n_artifacts++] = s;
		rc = fold(rc, r);
	}
	return rc;
}

/*
 * `artifacts`: a list of paths, or a mapping with `paths` and the job's
 * own limits (`max-size`: bytes of data, `max-files`: entries).
 */
static int parse_artifacts(struct pipe_ctx *ctx, const struct ynode *n, struct job_spec *job,
			   const char *where)
{
	if (n->kind != Y_MAP)
		return n->kind == Y_SEQ
			   ? parse_artifact_paths(ctx, n, job, where)
			   : pipe_error_at(ctx, n->pos,
					   "artifacts of %s must be a list of paths or a mapping "
					   "with 'paths', not %s",
					   where, pipe_node_what(n));
	const char *what = pipe_fmt(ctx, "artifacts of %s", where);
	int rc =
	    pipe_check_keys(ctx, n, artifact_keys, ARRAY_LEN(artifact_keys), what) ? -EINVAL : 0;
	const struct ynode *v;
	if (!(v = pipe_map_get(n, "paths")))
		rc = pipe_error_at(ctx, n->pos,
				   "%s has no 'paths': list the paths to copy out (write: paths: "
				   "[out/])",
				   what);
	else
		rc = fold(rc, parse_artifact_paths(ctx, v, job, where));
	if ((v = pipe_map_get(n, "max-size"))) {
		int64_t mb;
		what = pipe_fmt(ctx, "max-size of the artifacts of %s", where);
		int r = pipe_node_size_mb(ctx, v, what, &mb);
		if (r == 0 && mb > (PIPE_MAX_ARTIFACT_BYTES >> 20))
			r = pipe_error_at(ctx, v->pos, "%s must be at most %lldG", what,
					  PIPE_MAX_ARTIFACT_BYTES >> 30);
		if (r == 0)
			job->artifact_max_bytes = mb << 20;
		rc = fold(rc, r);
	}
	if ((v = pipe_map_get(n, "max-files"))) {
		what = pipe_fmt(ctx, "max-files of the artifacts of %s", where);
		rc = fold(rc, pipe_node_int(ctx, v, what, 1, PIPE_MAX_ARTIFACT_FILES,
					    &job->artifact_max_files));
	}
	return rc;
}

/* `needs`: one job id or a list of them. Repeats are dropped. */
static int parse_needs(struct pipe_ctx *ctx, const struct ynode *n, struct job_spec *job,
		       const char *where)
{
	const struct ynode *const *items = (const struct ynode *const *)&n;
	size_t count = 1;
	if (n->kind == Y_SEQ) {
		items = (const struct ynode *const *)n->items;
		count = n->n;
	}
	job->needs = pipe_arena_array(ctx->tmp, count ? count : 1, sizeof(*job->needs));
	if (!job->needs)
		return -ENOMEM;
	const char *what;
	what = pipe_fmt(ctx, "needs of %s", where);
	struct pipe_strmap seen = {.arena = ctx->tmp};
	int rc = 0;
	for (size_t i = 0; i < count; i++) {
		const char *id;
		int r = pipe_node_string(ctx, items[i], what, &id);
		rc = fold(rc, r);
		if (r)
			continue;
		r = pipe_strmap_add(&seen, id, strlen(id), 0, NULL);
		if (r < 0)
			return r;
		if (r == 1)
			job->needs[job->n_needs++] = (struct need_ref){id, items[i]->pos, -1};
	}
	return rc;
}

static int parse_step(struct pipe_ctx *ctx, const struct pipe_spec *spec, struct job_spec *job,
		      const struct ynode *n, size_t index, struct step_spec *step)
{
	const char *where, *what;
	where = pipe_fmt(ctx, "step %zu of job '%s'", index + 1, job->id);
	step->pos = n->pos;
	if (n->kind != Y_MAP)
		return pipe_error_at(ctx, n->pos,
				     "%s must be a mapping with 'run', not %s (write: - run: ...)",
				     where, pipe_node_what(n));
	int rc = pipe_check_keys(ctx, n, step_keys, ARRAY_LEN(step_keys), where) ? -EINVAL : 0;
	const struct ynode *v;
	struct expr_scope scope = {.matrix = job->matrix,
				   .env = {&spec->env, &job->env, NULL},
				   .where = where,
				   .job_has_no_matrix = !job->matrix,
				   .matrix_unchecked = job->matrix_broken};
	if ((v = pipe_map_get(n, "env"))) {
		what = pipe_fmt(ctx, "env of %s", where);
		rc = fold(rc, pipe_env_parse(ctx, v, &scope, what, &step->env));
	}
	scope.env[ENV_STEP] = &step->env;
	if ((v = pipe_map_get(n, "name"))) {
		what = pipe_fmt(ctx, "name of %s", where);
		int r = pipe_tmpl_compile(ctx, &scope, v, what, &step->name);
		if (r == 0 && pipe_node_is_null(v))
			r = pipe_error_at(ctx, v->pos, "%s must be a string, not null", what);
		step->has_name = r == 0;
		rc = fold(rc, r);
	}
	if (!(v = pipe_map_get(n, "run"))) {
		rc = pipe_error_at(ctx, n->pos, "%s has no 'run': give the commands to run", where);
	} else {
		what = pipe_fmt(ctx, "run of %s", where);
		step->run_pos = v->pos;
		int r = pipe_tmpl_compile(ctx, &scope, v, what, &step->run);
		if (r == 0 && step->run.flat && !step->run.flat[strspn(step->run.flat, " \t\r\n")])
			r = pipe_error_at(ctx, v->pos, "%s is empty: give the commands to run",
					  what);
		if (r == 0 && step->run.flat)
			r = pipe_script_check(ctx, v->pos, step->run.flat, what);
		rc = fold(rc, r);
	}
	if ((v = pipe_map_get(n, "timeout"))) {
		what = pipe_fmt(ctx, "timeout of %s", where);
		rc = fold(rc, pipe_node_duration(ctx, v, what, &step->timeout_ms));
	}
	if ((v = pipe_map_get(n, "continue-on-error"))) {
		what = pipe_fmt(ctx, "continue-on-error of %s", where);
		rc = fold(rc, pipe_node_bool(ctx, v, what, &step->continue_on_error));
	}
	if ((v = pipe_map_get(n, "workdir"))) {
		what = pipe_fmt(ctx, "workdir of %s", where);
		rc = fold(rc, pipe_node_string(ctx, v, what, &step->workdir));
	}
	return rc;
}

static int parse_steps(struct pipe_ctx *ctx, const struct pipe_spec *spec, const struct ynode *n,
		       struct job_spec *job, const char *where)
{
	if (n->kind != Y_SEQ)
		return pipe_error_at(ctx, n->pos, "steps of %s must be a list of steps, not %s",
				     where, pipe_node_what(n));
	if (n->n == 0)
		return pipe_error_at(
		    ctx, n->pos, "steps of %s is empty: list at least one step with 'run'", where);
	job->steps = pipe_arena_array(ctx->tmp, n->n, sizeof(*job->steps));
	if (!job->steps)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < n->n; i++)
		rc = fold(rc,
			  parse_step(ctx, spec, job, n->items[i], i, &job->steps[job->n_steps++]));
	return rc;
}

int pipe_image_check(struct pipe_ctx *ctx, struct ypos pos, const char *image, const char *where)
{
	/* ${{ vmci.* }} not known yet stands for a plain name until the run gives its value. */
	char probe[VMCI_NAME_MAX + 2];
	size_t n = 0;
	for (const char *p = image; *p && n <= VMCI_NAME_MAX;) {
		const char *close = strncmp(p, "${{", 3) ? NULL : strstr(p + 3, "}}");
		probe[n++] = close ? 'x' : *p;
		p = close ? close + 2 : p + 1;
	}
	probe[n] = 0;
	if (vmci_name_ok(probe))
		return 0;
	return pipe_error_at(ctx, pos, "image '%s' of %s is not an image name: use " VMCI_NAME_RULE,
			     image, where);
}

int pipe_script_check(struct pipe_ctx *ctx, struct ypos pos, const char *script, const char *what)
{
	size_t len = strlen(script);
	if (len <= PIPE_MAX_SCRIPT_SIZE)
		return 0;
	return pipe_error_at(ctx, pos,
			     "%s is %zu KiB, more than the %d KiB a step's script may have: put "
			     "the commands in a file of the workspace and run that",
			     what, (len + 1023) >> 10, PIPE_MAX_SCRIPT_SIZE >> 10);
}

static const char *const network_modes[] = {
    [PIPE_NETWORK_NAT] = "nat", [PIPE_NETWORK_NONE] = "none"};

static int parse_network(struct pipe_ctx *ctx, const struct ynode *n, struct job_spec *job,
			 const char *where)
{
	const char *what = pipe_fmt(ctx, "network of %s", where);
	const char *mode;
	int rc = pipe_node_string(ctx, n, what, &mode);
	if (rc)
		return rc;
	for (size_t i = 0; i < ARRAY_LEN(network_modes); i++) {
		if (!strcmp(mode, network_modes[i])) {
			job->network = (enum pipe_network)i;
			return 0;
		}
	}
	const char *near = pipe_suggest(ctx, mode, network_modes, ARRAY_LEN(network_modes));
	return pipe_error_at(ctx, n->pos,
			     "%s is '%s'; it must be 'nat' (outbound access, the default) or "
			     "'none' (no network)%s%s%s",
			     what, mode, near ? " (did you mean '" : "", near ? near : "",
			     near ? "'?)" : "");
}

/* `packages`: a list of Debian package names (apt-get says later whether they exist). */
static int parse_packages(struct pipe_ctx *ctx, const struct ynode *n, struct job_spec *job,
			  const char *where)
{
	if (n->kind != Y_SEQ || n->n == 0)
		return pipe_error_at(ctx, n->pos,
				     "packages of %s must be a list of package names such as "
				     "[autoconf, libtool], not %s",
				     where, n->kind == Y_SEQ ? "an empty list" : pipe_node_what(n));
	if (n->n > PIPE_MAX_PACKAGES)
		return pipe_error_at(ctx, n->pos, "packages of %s lists %zu packages, more than %d",
				     where, n->n, PIPE_MAX_PACKAGES);
	job->packages = pipe_arena_array(ctx->keep, n->n, sizeof(char *));
	job->package_places = pipe_arena_array(ctx->keep, n->n, sizeof(struct pipe_place));
	if (!job->packages || !job->package_places)
		return -ENOMEM;
	const char *what = pipe_fmt(ctx, "a package of %s", where);
	int rc = 0;
	for (size_t i = 0; i < n->n; i++) {
		const char *s;
		int r = pipe_node_string(ctx, n->items[i], what, &s);
		if (r == 0 && !deb_package_name_ok(s))
			r = pipe_error_at(ctx, n->items[i]->pos,
					  "package '%s' of %s is not a Debian package name (lower "
					  "case letters, digits, '+', '-' and '.')",
					  s, where);
		if (r == 0) {
			job->package_places[job->n_packages] =
			    (struct pipe_place){n->items[i]->pos.line, n->items[i]->pos.col};
			job->packages[job->n_packages++] = s;
		}
		rc = fold(rc, r);
	}
	return rc;
}

int pipe_job_parse(struct pipe_ctx *ctx, const struct pipe_spec *spec, const struct ynode *key,
		   const struct ynode *n, struct job_spec *job)
{
	const char *where, *what;
	job->id = pipe_arena_strndup(ctx->keep, key->str, key->len);
	if (!job->id)
		return -ENOMEM;
	job->pos = key->pos;
	job->timeout_ms = PIPE_DEFAULT_TIMEOUT_MS;
	job->cpus = PIPE_DEFAULT_CPUS;
	job->memory_mb = PIPE_DEFAULT_MEMORY_MB;
	job->log_limit = PIPE_DEFAULT_LOG_LIMIT;
	job->artifact_max_bytes = PIPE_DEFAULT_ARTIFACT_MAX_BYTES;
	job->artifact_max_files = PIPE_DEFAULT_ARTIFACT_MAX_FILES;
	job->fail_fast = true;
	where = pipe_fmt(ctx, "job '%s'", job->id);
	if (n->kind != Y_MAP)
		return pipe_error_at(ctx, n->pos,
				     "%s must be a mapping with 'image' and 'steps', not %s", where,
				     pipe_node_what(n));
	int rc = pipe_check_keys(ctx, n, job_keys, ARRAY_LEN(job_keys), where) ? -EINVAL : 0;
	const struct ynode *v;
	if ((v = pipe_map_get(n, "strategy")))
		rc = fold(rc, parse_strategy(ctx, v, job, where));
	struct expr_scope scope = {.matrix = job->matrix,
				   .env = {&spec->env, NULL, NULL},
				   .where = where,
				   .job_has_no_matrix = !job->matrix,
				   .matrix_unchecked = job->matrix_broken};
	if ((v = pipe_map_get(n, "env"))) {
		what = pipe_fmt(ctx, "the env of %s", where);
		rc = fold(rc, pipe_env_parse(ctx, v, &scope, what, &job->env));
	}
	scope.env[ENV_JOB] = &job->env;
	if (!(v = pipe_map_get(n, "image"))) {
		rc = pipe_error_at(ctx, key->pos,
				   "%s has no 'image': name the golden image it runs in", where);
	} else {
		what = pipe_fmt(ctx, "image of %s", where);
		job->image_pos = v->pos;
		int r = pipe_tmpl_compile(ctx, &scope, v, what, &job->image);
		if (r == 0 && pipe_node_is_null(v))
			r = pipe_error_at(ctx, v->pos, "%s must be a string, not null", what);
		else if (r == 0 && job->image.flat && !*job->image.flat)
			r = pipe_error_at(ctx, v->pos, "%s is empty", what);
		else if (r == 0 && job->image.flat)
			r = pipe_image_check(ctx, v->pos, job->image.flat, where);
		rc = fold(rc, r);
	}
	if (!(v = pipe_map_get(n, "steps")))
		rc = pipe_error_at(ctx, key->pos,
				   "%s has no 'steps': list at least one step with 'run'", where);
	else
		rc = fold(rc, parse_steps(ctx, spec, v, job, where));
	if ((v = pipe_map_get(n, "needs")))
		rc = fold(rc, parse_needs(ctx, v, job, where));
	if ((v = pipe_map_get(n, "timeout"))) {
		what = pipe_fmt(ctx, "timeout of %s", where);
		rc = fold(rc, pipe_node_duration(ctx, v, what, &job->timeout_ms));
	}
	if ((v = pipe_map_get(n, "retries"))) {
		what = pipe_fmt(ctx, "retries of %s", where);
		rc = fold(rc, pipe_node_int(ctx, v, what, 0, PIPE_MAX_RETRIES, &job->retries));
	}
	if ((v = pipe_map_get(n, "resources")))
		rc = fold(rc, parse_resources(ctx, v, job, where));
	if ((v = pipe_map_get(n, "artifacts")))
		rc = fold(rc, parse_artifacts(ctx, v, job, where));
	if ((v = pipe_map_get(n, "log-limit")))
		rc = fold(rc, parse_log_limit(ctx, v, job, where));
	if ((v = pipe_map_get(n, "network")))
		rc = fold(rc, parse_network(ctx, v, job, where));
	if ((v = pipe_map_get(n, "packages")))
		rc = fold(rc, parse_packages(ctx, v, job, where));
	if ((v = pipe_map_get(n, "if"))) {
		/* Kept as written for the runner; conditions are not evaluated yet. */
		if (v->kind != Y_SCALAR || pipe_node_is_null(v))
			rc = pipe_error_at(ctx, v->pos, "if of %s must be a string, not %s", where,
					   pipe_node_what(v));
		else if (!(job->condition = pipe_arena_strndup(ctx->keep, v->str, v->len)))
			return -ENOMEM;
	}
	return ctx->oom ? -ENOMEM : rc;
}
