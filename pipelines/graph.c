/*
 * The job graph: `needs` names job ids (not matrix combinations); every
 * name must be a job, and the needs may not form a cycle (docs/pipeline.md).
 * The graph is over ids, so it is as small as the file whatever the
 * matrices make; the runner gets each need as a range of expanded jobs.
 */
#include "pipelines/internal.h"

#include <stdlib.h>
#include <string.h>

static int resolve(struct pipe_ctx *ctx, struct pipe_spec *spec)
{
	struct pipe_strmap ids = {.arena = ctx->tmp};
	const char **names = pipe_arena_array(ctx->tmp, spec->n_jobs + 1, sizeof(char *));
	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < spec->n_jobs; i++) {
		names[i] = spec->jobs[i].id;
		if (pipe_strmap_add(&ids, names[i], strlen(names[i]), (long)i, NULL) < 0)
			return -ENOMEM;
	}
	int rc = 0;
	for (size_t i = 0; i < spec->n_jobs; i++) {
		struct job_spec *job = &spec->jobs[i];
		for (size_t j = 0; j < job->n_needs; j++) {
			struct need_ref *need = &job->needs[j];
			need->target = pipe_strmap_get(&ids, need->id, strlen(need->id));
			if (need->target == (long)i) {
				rc =
				    pipe_error_at(ctx, need->pos, "job '%s' needs itself", job->id);
				need->target = -1;
			} else if (need->target < 0) {
				const char *hint =
				    pipe_did_you_mean(ctx, need->id, names, spec->n_jobs);
				rc = pipe_error_at(ctx, need->pos,
						   "job '%s' needs '%s', which is not a job%s",
						   job->id, need->id, hint);
			}
		}
	}
	return rc;
}

/* Names the cycle that closes at the edge from stack[top] back to stack[from]. */
static int report_cycle(struct pipe_ctx *ctx, const struct pipe_spec *spec, const size_t *stack,
			const size_t *edge, size_t from, size_t top)
{
	struct buf text = {0};
	for (size_t i = from; i <= top; i++)
		buf_appendf(&text, "%s -> ", spec->jobs[stack[i]].id);
	buf_appendf(&text, "%s", spec->jobs[stack[from]].id);
	/* At the need that starts the cycle: the first job's need of the second. */
	const struct job_spec *first = &spec->jobs[stack[from]];
	struct ypos pos = first->needs[from < top ? edge[from] - 1 : edge[top] - 1].pos;
	int rc = pipe_error_at(ctx, pos, "needs form a cycle: %s", buf_cstr(&text));
	buf_free(&text);
	return rc;
}

/*
 * Depth-first search without recursion (a generated file may chain
 * thousands of jobs). Each back edge closes one cycle, reported once.
 */
static int find_cycles(struct pipe_ctx *ctx, const struct pipe_spec *spec)
{
	size_t n = spec->n_jobs;
	enum { WHITE, GREY, BLACK };
	unsigned char *color = calloc(n + 1, 1);
	size_t *stack = malloc((n + 1) * sizeof(size_t));
	size_t *edge = malloc((n + 1) * sizeof(size_t)); /* next need to follow, per stack entry */
	size_t *depth_of = malloc((n + 1) * sizeof(size_t));
	int rc = 0;
	if (!color || !stack || !edge || !depth_of) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t root = 0; root < n; root++) {
		if (color[root] != WHITE)
			continue;
		size_t top = 0;
		stack[0] = root;
		edge[0] = 0;
		depth_of[root] = 0;
		color[root] = GREY;
		for (;;) {
			const struct job_spec *job = &spec->jobs[stack[top]];
			if (edge[top] == job->n_needs) {
				color[stack[top]] = BLACK;
				if (top == 0)
					break;
				top--;
				continue;
			}
			long t = job->needs[edge[top]++].target;
			if (t < 0 || color[t] == BLACK)
				continue;
			if (color[t] == GREY) {
				rc = report_cycle(ctx, spec, stack, edge, depth_of[t], top);
				continue;
			}
			color[t] = GREY;
			stack[++top] = (size_t)t;
			edge[top] = 0;
			depth_of[t] = top;
		}
	}
out:
	free(color);
	free(stack);
	free(edge);
	free(depth_of);
	return rc;
}

int pipe_graph_check(struct pipe_ctx *ctx, struct pipe_spec *spec)
{
	int rc = resolve(ctx, spec);
	if (rc == -ENOMEM)
		return rc;
	int r = find_cycles(ctx, spec);
	return r ? r : rc;
}
