/*
 * A bump allocator. A pipeline is many small strings and arrays that all
 * live exactly as long as the run (or, for the YAML tree and the checked
 * spec, as long as one pipe_load call), so they come from one arena and
 * go back in one free: no per-field ownership, no leak on an error path.
 */
#include "pipelines/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_MIN (64 * 1024)
#define ALIGN	  16

struct chunk {
	struct chunk *next;
	size_t used;
	size_t cap;
	/* data follows, aligned by the allocation below */
	max_align_t data[];
};

struct pipe_arena {
	struct chunk *head;
	size_t total; /* bytes handed out */
	bool failed;  /* an allocation failed: whatever was being built is incomplete */
};

struct pipe_arena *pipe_arena_new(void)
{
	return calloc(1, sizeof(struct pipe_arena));
}

void pipe_arena_free(struct pipe_arena *a)
{
	if (!a)
		return;
	struct chunk *c = a->head;
	while (c) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
	free(a);
}

void *pipe_arena_alloc(struct pipe_arena *a, size_t size)
{
	if (size > SIZE_MAX / 2) {
		a->failed = true;
		return NULL;
	}
	size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	if (size == 0)
		size = ALIGN;
	struct chunk *c = a->head;
	if (!c || c->cap - c->used < size) {
		size_t cap = size > CHUNK_MIN ? size : CHUNK_MIN;
		/* Grow chunks with the arena so a large run takes few mallocs. */
		if (c && cap < c->cap * 2 && c->cap < 16 * 1024 * 1024)
			cap = c->cap * 2;
		c = malloc(sizeof(struct chunk) + cap);
		if (!c) {
			a->failed = true;
			return NULL;
		}
		c->used = 0;
		c->cap = cap;
		/* A large one-off allocation goes behind the current chunk so its free space stays
		 * usable. */
		if (a->head && size > CHUNK_MIN && a->head->cap - a->head->used > CHUNK_MIN / 4) {
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	void *p = (char *)c->data + c->used;
	c->used += size;
	a->total += size;
	memset(p, 0, size);
	return p;
}

void *pipe_arena_array(struct pipe_arena *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / 4 / size) {
		a->failed = true;
		return NULL;
	}
	return pipe_arena_alloc(a, n * size);
}

char *pipe_arena_strndup(struct pipe_arena *a, const char *s, size_t n)
{
	char *p = pipe_arena_alloc(a, n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *pipe_arena_strdup(struct pipe_arena *a, const char *s)
{
	return pipe_arena_strndup(a, s, strlen(s));
}

char *pipe_arena_printf(struct pipe_arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *p = pipe_arena_alloc(a, (size_t)n + 1);
	if (!p)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

size_t pipe_arena_total(const struct pipe_arena *a)
{
	return a->total;
}

bool pipe_arena_failed(const struct pipe_arena *a)
{
	return a->failed;
}
