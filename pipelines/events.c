/*
 * Which events start a pipeline (its `on:`): whether a push to a ref is
 * one of them, with branch patterns matched as GitHub Actions does.
 */
#include "pipelines/pipelines.h"

#include <stdio.h>
#include <string.h>

/* Whether name matches pattern: `**` any characters, `*` any but '/', `?` one but '/'. */
static bool glob_match(const char *pattern, const char *name)
{
	for (; *pattern; pattern++, name++) {
		if (pattern[0] == '*' && pattern[1] == '*') {
			for (const char *rest = name;; rest++) {
				if (glob_match(pattern + 2, rest))
					return true;
				if (!*rest)
					return false;
			}
		}
		if (*pattern == '*') {
			for (const char *rest = name;; rest++) {
				if (glob_match(pattern + 1, rest))
					return true;
				if (!*rest || *rest == '/')
					return false;
			}
		}
		if (!*name || (*pattern == '?' ? *name == '/' : *pattern != *name))
			return false;
	}
	return !*name;
}

bool pipe_push_selects(const struct pipe_run *run, const char *ref, char *why, size_t why_size)
{
	char scratch[1];
	if (!why || !why_size) {
		why = scratch;
		why_size = sizeof(scratch);
	}
	*why = 0;
	if (!run->on_push) {
		snprintf(why, why_size,
			 "the pipeline's 'on' does not name push (it runs on schedules only)");
		return false;
	}
	if (run->n_push_branches == 0)
		return true;
	const char *branch = NULL;
	if (!strncmp(ref, "refs/heads/", 11))
		branch = ref + 11;
	else if (strncmp(ref, "refs/", 5))
		branch = ref;
	for (size_t i = 0; branch && i < run->n_push_branches; i++)
		if (glob_match(run->push_branches[i], branch))
			return true;
	size_t n = (size_t)snprintf(why, why_size, "%s %s not in on.push.branches (", ref,
				    branch ? "is" : "is not a branch, so");
	for (size_t i = 0; i < run->n_push_branches && n < why_size; i++)
		n += (size_t)snprintf(why + n, why_size - n, "%s%s", i ? ", " : "",
				      run->push_branches[i]);
	if (n < why_size)
		snprintf(why + n, why_size - n, ")");
	return false;
}
