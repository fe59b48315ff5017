/*
 * Choosing the jobs of a run: by name and by matrix value, with what they
 * need. The same choice for `vmci run JOB -m KEY=VALUE` on a laptop and
 * for a run the service is asked to start with a subset of jobs.
 */
#include "pipelines/pipelines.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The length of the KEY in a "KEY=VALUE" filter (checked by pipe_select). */
static size_t filter_key_len(const char *filter)
{
	return (size_t)(strchr(filter, '=') - filter);
}

/* Whether job passes the filters: for each key it has that a filter names, one of their values. */
static bool matrix_matches(const struct pipe_job *job, const struct pipe_selection *sel)
{
	for (size_t v = 0; v < job->n_matrix; v++) {
		const struct pipe_var *mv = &job->matrix[v];
		bool asked = false, match = false;
		for (size_t f = 0; f < sel->n_matrix; f++) {
			size_t klen = filter_key_len(sel->matrix[f]);
			if (strlen(mv->key) != klen || strncmp(mv->key, sel->matrix[f], klen))
				continue;
			asked = true;
			match |= !strcmp(mv->value, sel->matrix[f] + klen + 1);
		}
		if (asked && !match)
			return false;
	}
	return true;
}

/* Whether any job has the filter's matrix key. */
static bool key_known(const struct pipe_run *run, const char *filter)
{
	size_t klen = filter_key_len(filter);
	for (size_t i = 0; i < run->n_jobs; i++)
		for (size_t v = 0; v < run->jobs[i].n_matrix; v++)
			if (strlen(run->jobs[i].matrix[v].key) == klen &&
			    !strncmp(run->jobs[i].matrix[v].key, filter, klen))
				return true;
	return false;
}

/* Marks job i and, transitively, the jobs it needs that the filters allow. */
static void select_with_needs(const struct pipe_run *run, size_t i, const bool *allowed,
			      bool *selected)
{
	if (selected[i] || !allowed[i])
		return;
	selected[i] = true;
	const struct pipe_job *j = &run->jobs[i];
	for (size_t n = 0; n < j->n_needs; n++)
		for (size_t k = j->needs[n].first; k < j->needs[n].first + j->needs[n].count; k++)
			select_with_needs(run, k, allowed, selected);
}

int pipe_select(const struct pipe_run *run, const struct pipe_selection *sel, bool *selected,
		struct vmci_err *err)
{
	memset(selected, 0, run->n_jobs * sizeof(*selected));
	for (size_t f = 0; f < sel->n_matrix; f++) {
		const char *eq = strchr(sel->matrix[f], '=');
		if (!eq || eq == sel->matrix[f])
			return vmci_err_set(
			    err, EINVAL,
			    "a matrix filter is KEY=VALUE, e.g. os=debian-12, not '%s'",
			    sel->matrix[f]);
		if (!key_known(run, sel->matrix[f]))
			return vmci_err_set(err, EINVAL, "no job has a matrix key '%.*s' (%s)",
					    (int)filter_key_len(sel->matrix[f]), sel->matrix[f],
					    sel->matrix[f]);
	}
	bool *allowed = calloc(run->n_jobs ? run->n_jobs : 1, sizeof(*allowed));
	if (!allowed)
		return vmci_err_set(err, ENOMEM, "out of memory choosing jobs");
	size_t n_allowed = 0;
	for (size_t i = 0; i < run->n_jobs; i++)
		n_allowed += allowed[i] = matrix_matches(&run->jobs[i], sel);

	int rc = 0;
	for (size_t k = 0; k < sel->n_names && !rc; k++) {
		bool found = false, any = false;
		for (size_t i = 0; i < run->n_jobs; i++) {
			if (strcmp(run->jobs[i].id, sel->names[k]) &&
			    strcmp(run->jobs[i].name, sel->names[k]))
				continue;
			found = true;
			any |= allowed[i];
			select_with_needs(run, i, allowed, selected);
		}
		if (!found) {
			struct buf ids = {0};
			for (size_t g = 0; g < run->n_groups; g++)
				buf_appendf(&ids, "%s%s", g ? ", " : "", run->groups[g].id);
			rc = vmci_err_set(err, EINVAL, "no job '%s' in the pipeline (jobs: %s)",
					  sel->names[k], buf_cstr(&ids));
			buf_free(&ids);
		} else if (!any) {
			rc = vmci_err_set(err, EINVAL,
					  "no combination of '%s' matches the matrix filters",
					  sel->names[k]);
		}
	}
	if (sel->n_names == 0)
		memcpy(selected, allowed, run->n_jobs * sizeof(*selected));
	free(allowed);
	if (!rc && n_allowed == 0)
		rc = vmci_err_set(err, EINVAL, "no job matches the matrix filters");
	if (rc)
		memset(selected, 0, run->n_jobs * sizeof(*selected));
	return rc;
}
