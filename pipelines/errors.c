/*
 * The error list: every error of a load with its position, rendered in
 * the compiler form editors jump to, and the did-you-mean suggestions.
 */
#include "pipelines/internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int push(struct pipe_errors *errors, int line, int col, char *msg)
{
	if (errors->len == errors->cap) {
		size_t cap = errors->cap ? errors->cap * 2 : 16;
		struct pipe_error *items = realloc(errors->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		errors->items = items;
		errors->cap = cap;
	}
	errors->items[errors->len++] = (struct pipe_error){line, col, msg};
	return 0;
}

int pipe_error_at(struct pipe_ctx *ctx, struct ypos pos, const char *fmt, ...)
{
	if (ctx->errors->len >= PIPE_MAX_ERRORS) {
		ctx->n_dropped++;
		return -EINVAL;
	}
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0) {
		ctx->oom = true;
		return -EINVAL;
	}
	if (push(ctx->errors, pos.line, pos.col, msg)) {
		free(msg);
		ctx->oom = true;
	}
	return -EINVAL;
}

int pipe_errors_add(struct pipe_errors *errors, int line, int col, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	if (push(errors, line, col, msg)) {
		free(msg);
		return -ENOMEM;
	}
	return 0;
}

const char *pipe_fmt(struct pipe_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = n < 0 ? NULL : pipe_arena_alloc(ctx->tmp, (size_t)n + 1);
	if (!s) {
		ctx->oom = true;
		return "";
	}
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

struct ranked {
	struct pipe_error e;
	size_t seq;
};

static int cmp_ranked(const void *pa, const void *pb)
{
	const struct ranked *a = pa, *b = pb;
	if (a->e.line != b->e.line)
		return a->e.line < b->e.line ? -1 : 1;
	if (a->e.col != b->e.col)
		return a->e.col < b->e.col ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void pipe_errors_finish(struct pipe_ctx *ctx)
{
	struct pipe_errors *errors = ctx->errors;
	size_t n = errors->len;
	struct ranked *r = n ? malloc(n * sizeof(*r)) : NULL;
	if (r) {
		for (size_t i = 0; i < n; i++)
			r[i] = (struct ranked){errors->items[i], i};
		qsort(r, n, sizeof(*r), cmp_ranked);
		/* Keep the first of each (position, message). */
		struct pipe_strmap seen = {.arena = ctx->tmp};
		size_t out = 0;
		for (size_t i = 0; i < n; i++) {
			const char *key = pipe_arena_printf(ctx->tmp, "%d:%d:%s", r[i].e.line,
							    r[i].e.col, r[i].e.message);
			int added = key ? pipe_strmap_add(&seen, key, strlen(key), 0, NULL) : 1;
			if (added == 0)
				free(r[i].e.message);
			else
				errors->items[out++] = r[i].e;
		}
		errors->len = out;
		free(r);
	}
	if (ctx->n_dropped) {
		char *msg = NULL;
		if (asprintf(&msg, "%zu more errors not shown; fix the ones above first",
			     ctx->n_dropped) < 0 ||
		    push(errors, 0, 0, msg)) {
			free(msg);
			ctx->oom = true;
		}
		/* Shown last although it has no position. */
		if (errors->len)
			errors->items[errors->len - 1].line = INT_MAX;
	}
}

void pipe_errors_free(struct pipe_errors *errors)
{
	if (!errors)
		return;
	for (size_t i = 0; i < errors->len; i++)
		free(errors->items[i].message);
	free(errors->items);
	free(errors->file);
	memset(errors, 0, sizeof(*errors));
}

int pipe_error_format(const struct pipe_errors *errors, size_t i, struct buf *out)
{
	const struct pipe_error *e = &errors->items[i];
	const char *file = errors->file ? errors->file : PIPE_DEFAULT_FILE;
	if (e->line > 0 && e->line != INT_MAX)
		return buf_appendf(out, "%s:%d:%d: error: %s\n", file, e->line, e->col, e->message);
	return buf_appendf(out, "%s: error: %s\n", file, e->message);
}

const char *pipe_suggest(struct pipe_ctx *ctx, const char *word, const char *const *candidates,
			 size_t n)
{
	if (n > ctx->suggest_budget)
		return NULL;
	ctx->suggest_budget -= n;
	return suggest_nearest(word, candidates, n);
}

const char *pipe_did_you_mean(struct pipe_ctx *ctx, const char *word, const char *const *candidates,
			      size_t n)
{
	const char *s = pipe_suggest(ctx, word, candidates, n);
	if (!s)
		return "";
	const char *text = pipe_arena_printf(ctx->tmp, " (did you mean '%s'?)", s);
	if (!text)
		ctx->oom = true;
	return text ? text : "";
}
