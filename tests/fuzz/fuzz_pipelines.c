/*
 * libFuzzer target for the whole pipeline path: YAML parse, validation,
 * matrix counting and expansion, error sorting and rendering (`make fuzz`).
 *
 * Besides the sanitizers' checks, every outcome must be well formed: a run
 * whose needs point inside it and whose strings are all readable, or at
 * least one error, sorted by position. Anything else aborts.
 */
#include "pipelines/pipelines.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t touch(const char *s)
{
	if (!s)
		abort();
	return strlen(s);
}

static void check_run(const struct pipe_run *run)
{
	size_t sum = touch(run->name);
	if (run->n_jobs == 0 || run->n_jobs > 2000 || run->n_groups == 0)
		abort();
	for (size_t i = 0; i < run->n_push_branches; i++)
		sum += touch(run->push_branches[i]);
	for (size_t i = 0; i < run->n_schedules; i++)
		sum += touch(run->schedules[i]);
	for (size_t i = 0; i < run->n_env; i++)
		sum += touch(run->env[i].key) + touch(run->env[i].value);
	for (size_t g = 0, next = 0; g < run->n_groups; g++) {
		if (run->groups[g].first != next || run->groups[g].count == 0)
			abort();
		next += run->groups[g].count;
		if (g + 1 == run->n_groups && next != run->n_jobs)
			abort();
	}
	struct buf out = {0};
	struct pipe_vars vars = {"0123abc", "refs/heads/main", "17"};
	for (size_t i = 0; i < run->n_jobs; i++) {
		const struct pipe_job *j = &run->jobs[i];
		sum += touch(j->name) + touch(j->id) + touch(j->image);
		if (j->group >= run->n_groups || j->n_steps == 0)
			abort();
		for (size_t k = 0; k < j->n_matrix; k++)
			sum += touch(j->matrix[k].key) + touch(j->matrix[k].value);
		for (size_t k = 0; k < j->n_env; k++)
			sum += touch(j->env[k].key) + touch(j->env[k].value);
		for (size_t k = 0; k < j->n_steps; k++) {
			sum += touch(j->steps[k].name) + touch(j->steps[k].run);
			for (size_t e = 0; e < j->steps[k].n_env; e++)
				sum += touch(j->steps[k].env[e].value);
			out.len = 0;
			if (pipe_expand_vars(j->steps[k].run, &vars, &out))
				abort();
		}
		for (size_t k = 0; k < j->n_artifacts; k++)
			sum += touch(j->artifacts[k]);
		for (size_t k = 0; k < j->n_needs; k++) {
			const struct pipe_need *n = &j->needs[k];
			sum += touch(n->job);
			if (n->count == 0 || n->first + n->count > run->n_jobs ||
			    strcmp(run->jobs[n->first].id, n->job))
				abort();
		}
	}
	buf_free(&out);
	if (sum == SIZE_MAX)
		abort();
}

static void check_errors(const struct pipe_errors *errors)
{
	if (errors->len == 0)
		abort();
	struct buf out = {0};
	for (size_t i = 0; i < errors->len; i++) {
		const struct pipe_error *e = &errors->items[i];
		if (i && e->line != INT_MAX &&
		    (e->line < errors->items[i - 1].line ||
		     (e->line == errors->items[i - 1].line && e->col < errors->items[i - 1].col)))
			abort();
		if (pipe_error_format(errors, i, &out))
			abort();
	}
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pipe_vars vars = {"abc", "refs/tags/v1", "9"};
	struct pipe_load_opts opts = {
	    .file = "fuzz.yml",
	    .max_jobs = 2000, /* keeps each input fast; the count itself is unbounded */
	    .vars = size % 2 ? &vars : NULL,
	};
	struct pipe_errors errors = {0};
	struct pipe_run *run = NULL;
	int rc = pipe_load((const char *)data, size, &opts, &run, &errors);
	if (rc == 0)
		check_run(run);
	else if (rc == -EINVAL)
		check_errors(&errors);
	else if (rc != -ENOMEM)
		abort();
	if ((rc == 0) != (run != NULL))
		abort();
	pipe_run_free(run);
	pipe_errors_free(&errors);
	return 0;
}
