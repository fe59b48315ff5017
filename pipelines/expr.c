/*
 * ${{ ... }} expressions: `matrix.KEY`, `env.NAME`, `vmci.sha`,
 * `vmci.ref` and `vmci.run_id` (docs/pipeline.md). Each string is checked once,
 * when its job is validated, against what is visible where it is written;
 * an unknown name is an error with its position, never an empty string at
 * run time. The string is then either constant (rendered once, shared by
 * every combination) or a list of segments rendered per combination.
 *
 * Visibility: the pipeline's env and name see only vmci.*; a job's env
 * sees its matrix and the pipeline's env; a step's env also sees the job's
 * env; image, run and step names see everything around them. A matrix key
 * that only some combinations have (added by an include) renders as ""
 * in the others, as in GitHub Actions.
 */
#include "pipelines/internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const contexts[] = {"matrix", "env", "vmci"};
static const char *const vmci_names[] = {"sha", "ref", "run_id"};

struct compiler {
	struct pipe_ctx *ctx;
	const struct expr_scope *scope;
	const struct ynode *n;
	struct seg *segs;
	size_t n_segs;
	bool dynamic;
	int errors;
};

static void add_text(struct compiler *c, const char *text, size_t len)
{
	if (len)
		c->segs[c->n_segs++] = (struct seg){.kind = SEG_TEXT, .text = text, .len = len};
}

static bool is_name_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '-';
}

static void fail(struct compiler *c, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records an error at the "${{" that starts at byte off of the string. */
static void fail(struct compiler *c, size_t off, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->errors++;
	pipe_error_at(c->ctx, pipe_scalar_pos(c->ctx, c->n, off), "%s", msg);
}

/* "matrix.nope": suggests a key of the matrix. */
static void ref_matrix(struct compiler *c, size_t off, const char *name, size_t len)
{
	const struct matrix_spec *m = c->scope->matrix;
	if (!m && c->scope->matrix_unchecked)
		return; /* its own errors come first; the file will not be expanded */
	if (!m) {
		if (c->scope->job_has_no_matrix)
			fail(c, off, "unknown name 'matrix.%s': %s has no matrix", name,
			     c->scope->where);
		else
			fail(c, off,
			     "unknown name 'matrix.%s': the matrix belongs to a job, not %s", name,
			     c->scope->where);
		return;
	}
	int k = pipe_matrix_key(m, name, len);
	if (k < 0) {
		const char **names = pipe_arena_array(c->ctx->tmp, m->n_keys, sizeof(char *));
		for (size_t i = 0; names && i < m->n_keys; i++)
			names[i] = m->keys[i].name;
		fail(c, off, "unknown matrix key '%s' in %s%s", name, c->scope->where,
		     names ? pipe_did_you_mean(c->ctx, name, names, m->n_keys) : "");
		return;
	}
	c->segs[c->n_segs++] = (struct seg){.kind = SEG_MATRIX, .index = k};
	c->dynamic = true;
}

/* "env.NAME": the innermost visible level that sets NAME. */
static void ref_env(struct compiler *c, size_t off, const char *name)
{
	size_t total = 0;
	for (int level = ENV_LEVELS - 1; level >= 0; level--) {
		const struct env_spec *env = c->scope->env[level];
		if (!env)
			continue;
		total += env->n;
		long i = pipe_strmap_get(&env->index, name, strlen(name));
		if (i >= 0) {
			const struct env_entry *e = &env->items[i];
			if (e->value.flat) {
				add_text(c, e->value.flat, strlen(e->value.flat));
			} else {
				c->segs[c->n_segs++] =
				    (struct seg){.kind = SEG_ENV, .level = level, .index = (int)i};
				c->dynamic = true;
			}
			return;
		}
	}
	/* Candidates for a suggestion, unless there are more than the budget allows. */
	const char **names = total <= c->ctx->suggest_budget
				 ? pipe_arena_array(c->ctx->tmp, total + 1, sizeof(char *))
				 : NULL;
	size_t k = 0;
	for (int level = 0; names && level < ENV_LEVELS; level++)
		for (size_t i = 0; c->scope->env[level] && i < c->scope->env[level]->n; i++)
			names[k++] = c->scope->env[level]->items[i].key;
	const char *s = names ? pipe_suggest(c->ctx, name, names, k) : NULL;
	if (s)
		fail(c, off,
		     "unknown name 'env.%s' in %s: no env sets it here (did you mean 'env.%s'?)",
		     name, c->scope->where, s);
	else
		fail(c, off, "unknown name 'env.%s' in %s: no env sets it here", name,
		     c->scope->where);
}

static void ref_vmci(struct compiler *c, size_t off, const char *name, const char *whole,
		     size_t whole_len)
{
	for (size_t i = 0; i < ARRAY_LEN(vmci_names); i++) {
		if (strcmp(name, vmci_names[i]))
			continue;
		const struct pipe_vars *v = c->ctx->vars;
		const char *value = !v ? NULL : i == 0 ? v->sha : i == 1 ? v->ref : v->run_id;
		if (value)
			add_text(c, value, strlen(value));
		else
			add_text(c, whole, whole_len);
		return;
	}
	const char *s = pipe_suggest(c->ctx, name, vmci_names, ARRAY_LEN(vmci_names));
	if (s)
		fail(c, off, "unknown name 'vmci.%s' (did you mean 'vmci.%s'?)", name, s);
	else
		fail(c, off, "unknown name 'vmci.%s'; vmci has sha, ref and run_id", name);
}

/* One expression: the text between "${{" (at off) and "}}", trimmed. */
static void compile_ref(struct compiler *c, size_t off, const char *in, size_t len,
			const char *whole, size_t whole_len)
{
	while (len && isspace((unsigned char)*in)) {
		in++;
		len--;
	}
	while (len && isspace((unsigned char)in[len - 1]))
		len--;
	char *text = pipe_arena_strndup(c->ctx->tmp, in, len);
	if (!text) {
		c->ctx->oom = true;
		return;
	}
	size_t dot = 0;
	while (dot < len && is_name_char(text[dot]))
		dot++;
	size_t end = dot + 1;
	while (end < len && is_name_char(text[end]))
		end++;
	if (len == 0 || dot == 0 || dot >= len || text[dot] != '.' || end == dot + 1 ||
	    end != len || memchr(text, 0, len)) {
		fail(c, off,
		     "unsupported expression '%s': only matrix.KEY, env.NAME, vmci.sha, vmci.ref "
		     "and "
		     "vmci.run_id expand",
		     text);
		return;
	}
	text[dot] = 0;
	const char *name = text + dot + 1;
	if (!strcmp(text, "matrix")) {
		ref_matrix(c, off, name, len - dot - 1);
	} else if (!strcmp(text, "env")) {
		ref_env(c, off, name);
	} else if (!strcmp(text, "vmci")) {
		ref_vmci(c, off, name, whole, whole_len);
	} else {
		const char *s = pipe_suggest(c->ctx, text, contexts, ARRAY_LEN(contexts));
		const char *hint =
		    s ? pipe_arena_printf(c->ctx->tmp, " (did you mean '%s.%s'?)", s, name) : NULL;
		fail(c, off, "unknown name '%s.%s'%s; expressions know matrix, env and vmci", text,
		     name, hint ? hint : "");
	}
}

int pipe_tmpl_compile(struct pipe_ctx *ctx, const struct expr_scope *scope, const struct ynode *n,
		      const char *what, struct tmpl *out)
{
	memset(out, 0, sizeof(*out));
	if (n->kind != Y_SCALAR)
		return pipe_error_at(ctx, n->pos, "%s must be a string, not %s", what,
				     pipe_node_what(n));
	const char *s = pipe_node_is_null(n) ? "" : n->str;
	size_t len = pipe_node_is_null(n) ? 0 : n->len;
	size_t count = 0;
	for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), "${{", 3)); p += 3)
		count++;
	struct compiler c = {.ctx = ctx, .scope = scope, .n = n};
	c.segs = pipe_arena_array(ctx->tmp, 2 * count + 1, sizeof(struct seg));
	if (!c.segs) {
		ctx->oom = true;
		return -ENOMEM;
	}
	size_t pos = 0;
	while (pos < len) {
		const char *open = memmem(s + pos, len - pos, "${{", 3);
		if (!open) {
			add_text(&c, s + pos, len - pos);
			break;
		}
		size_t at = (size_t)(open - s);
		add_text(&c, s + pos, at - pos);
		const char *close = memmem(open + 3, len - at - 3, "}}", 2);
		if (!close) {
			fail(&c, at, "unterminated expression: '${{' without '}}'");
			break;
		}
		size_t end = (size_t)(close - s) + 2;
		compile_ref(&c, at, open + 3, (size_t)(close - open) - 3, open, end - at);
		pos = end;
	}
	if (c.errors)
		return -EINVAL;
	if (c.dynamic) {
		out->segs = c.segs;
		out->n_segs = c.n_segs;
		return 0;
	}
	size_t total = 0;
	for (size_t i = 0; i < c.n_segs; i++)
		total += c.segs[i].len;
	char *flat = pipe_arena_alloc(ctx->keep, total + 1);
	if (!flat) {
		ctx->oom = true;
		return -ENOMEM;
	}
	for (size_t i = 0, o = 0; i < c.n_segs; o += c.segs[i].len, i++)
		memcpy(flat + o, c.segs[i].text, c.segs[i].len);
	out->flat = flat;
	return 0;
}

static const char *seg_value(const struct seg *g, const struct render_env *re, size_t *len)
{
	const char *v = NULL;
	switch (g->kind) {
	case SEG_TEXT:
		*len = g->len;
		return g->text;
	case SEG_MATRIX:
		v = re->matrix ? re->matrix[g->index] : NULL;
		break;
	case SEG_ENV:
		v = re->env[g->level] ? re->env[g->level][g->index] : NULL;
		break;
	}
	*len = v ? strlen(v) : 0;
	return v ? v : "";
}

const char *pipe_tmpl_render(struct pipe_arena *a, const struct tmpl *t,
			     const struct render_env *re, size_t limit)
{
	if (t->flat)
		return t->flat;
	size_t total = 0, len;
	for (size_t i = 0; i < t->n_segs; i++) {
		seg_value(&t->segs[i], re, &len);
		total += len;
		if (total > limit)
			return NULL;
	}
	char *out = pipe_arena_alloc(a, total + 1);
	if (!out)
		return NULL;
	for (size_t i = 0, o = 0; i < t->n_segs; i++) {
		const char *v = seg_value(&t->segs[i], re, &len);
		memcpy(out + o, v, len);
		o += len;
	}
	return out;
}
