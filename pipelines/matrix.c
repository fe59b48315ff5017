/*
 * strategy.matrix as written: keys with their lists of values, exclude and
 * include entries, checked (combos.c makes the combinations). The
 * semantics follow GitHub Actions ("Using a matrix for your jobs",
 * docs.github.com):
 *
 *  - the combinations are the cross product of the list-valued keys, the
 *    first key varying slowest;
 *  - `exclude` removes every combination that matches all the keys of an
 *    entry (partial entries remove many);
 *  - each `include` entry is added to every (non-excluded) original
 *    combination whose original keys it does not contradict: it may add
 *    keys, and overwrite keys added by earlier includes, but never an
 *    original value; an entry that fits no original combination becomes
 *    a combination of its own, appended in order.
 *
 * Keys are ordered as written, then the keys only includes add, in the
 * order they first appear; job names list a combination's values in that
 * order. At most MAX_KEYS keys: past that, no product is small enough to
 * run anyway.
 */
#include "pipelines/internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 256

static const char *const reserved[] = {"include", "exclude"};

int pipe_matrix_key(const struct matrix_spec *m, const char *name, size_t len)
{
	for (size_t i = 0; i < m->n_keys; i++)
		if (strlen(m->keys[i].name) == len && !memcmp(m->keys[i].name, name, len))
			return (int)i;
	return -1;
}

struct parser {
	struct pipe_ctx *ctx;
	const char *id;
	struct matrix_spec *m;
	struct pipe_strmap *values; /* per product key: value -> index */
	int errors;
};

static int add_key(struct parser *p, const struct ynode *k)
{
	struct matrix_spec *m = p->m;
	if (m->n_keys >= MAX_KEYS) {
		p->errors++;
		pipe_error_at(p->ctx, k->pos, "the matrix of job '%s' has more than %d keys", p->id,
			      MAX_KEYS);
		return -1;
	}
	if (!pipe_is_ident(k->str, k->len, true)) {
		p->errors++;
		pipe_error_at(
		    p->ctx, k->pos,
		    "matrix key '%s' of job '%s' must start with a letter or '_' and hold "
		    "only letters, digits, '-' and '_'",
		    k->str, p->id);
		return -1;
	}
	struct mx_key *key = &m->keys[m->n_keys];
	key->name = pipe_arena_strndup(p->ctx->keep, k->str, k->len);
	key->pos = k->pos;
	if (!key->name)
		return -ENOMEM;
	return (int)m->n_keys++;
}

static int read_values(struct parser *p, const struct ynode *k, const struct ynode *v)
{
	const char *what;
	int idx = add_key(p, k);
	if (idx < 0)
		return idx;
	struct mx_key *key = &p->m->keys[idx];
	if (v->kind != Y_SEQ) {
		p->errors++;
		return pipe_error_at(p->ctx, v->pos,
				     "matrix key '%s' of job '%s' must be a list of values, not %s",
				     key->name, p->id, pipe_node_what(v));
	}
	if (v->n == 0) {
		p->errors++;
		return pipe_error_at(p->ctx, v->pos, "matrix key '%s' of job '%s' has no values",
				     key->name, p->id);
	}
	key->values = pipe_arena_array(p->ctx->tmp, v->n, sizeof(char *));
	if (!key->values)
		return -ENOMEM;
	what = pipe_fmt(p->ctx, "a value of matrix key '%s'", key->name);
	struct pipe_strmap *seen = &p->values[idx];
	for (size_t i = 0; i < v->n; i++) {
		const struct ynode *item = v->items[i];
		const char *s;
		if (item->kind != Y_SCALAR) {
			p->errors++;
			pipe_error_at(p->ctx, item->pos,
				      "%s must be a string or a number, not %s (nested values are "
				      "not supported)",
				      what, pipe_node_what(item));
			continue;
		}
		if (pipe_node_string(p->ctx, item, what, &s)) {
			p->errors++;
			continue;
		}
		int rc = pipe_strmap_add(seen, s, strlen(s), (long)key->n_values, NULL);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			p->errors++;
			pipe_error_at(p->ctx, item->pos, "matrix key '%s' lists '%s' twice",
				      key->name, s);
			continue;
		}
		key->values[key->n_values++] = s;
	}
	return 0;
}

static int cmp_assign(const void *a, const void *b)
{
	const struct mx_assign *x = a, *y = b;
	return x->key - y->key;
}

/* One include or exclude entry. Excludes may name only product keys; includes may add keys. */
static int read_rule(struct parser *p, const struct ynode *n, bool include, struct mx_rule *out)
{
	const char *kind = include ? "include" : "exclude";
	struct matrix_spec *m = p->m;
	if (n->kind != Y_MAP || n->n == 0) {
		p->errors++;
		return pipe_error_at(p->ctx, n->pos,
				     "an %s entry of job '%s' must be a mapping of matrix keys to "
				     "values, not %s",
				     kind, p->id,
				     n->kind == Y_MAP ? "an empty mapping" : pipe_node_what(n));
	}
	out->pos = n->pos;
	out->a = pipe_arena_array(p->ctx->tmp, n->n, sizeof(struct mx_assign));
	if (!out->a)
		return -ENOMEM;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->pairs[i].key, *v = n->pairs[i].val;
		int key = pipe_matrix_key(m, k->str, k->len);
		if (key >= 0 && (size_t)key >= m->n_product && !include)
			key = -1;
		if (key < 0 && !include) {
			const char **names =
			    pipe_arena_array(p->ctx->tmp, m->n_product + 1, sizeof(char *));
			for (size_t j = 0; names && j < m->n_product; j++)
				names[j] = m->keys[j].name;
			p->errors++;
			pipe_error_at(p->ctx, k->pos,
				      "exclude of job '%s' names '%s', which is not a matrix key%s",
				      p->id, k->str,
				      names ? pipe_did_you_mean(p->ctx, k->str, names, m->n_product)
					    : "");
			continue;
		}
		if (key < 0 && (key = add_key(p, k)) < 0) {
			if (key == -ENOMEM)
				return key;
			continue;
		}
		const char *what;
		what = pipe_fmt(p->ctx, "the value of '%s' in an %s entry", k->str, kind);
		const char *s;
		if (v->kind != Y_SCALAR) {
			p->errors++;
			pipe_error_at(p->ctx, v->pos, "%s must be a string or a number, not %s",
				      what, pipe_node_what(v));
			continue;
		}
		if (pipe_node_string(p->ctx, v, what, &s)) {
			p->errors++;
			continue;
		}
		long vi = (size_t)key < m->n_product
			      ? pipe_strmap_get(&p->values[key], s, strlen(s))
			      : -1;
		out->a[out->n++] = (struct mx_assign){key, s, (int)vi};
	}
	qsort(out->a, out->n, sizeof(*out->a), cmp_assign);
	return 0;
}

static int read_rules(struct parser *p, const struct ynode *v, bool include)
{
	const char *kind = include ? "include" : "exclude";
	if (v->kind != Y_SEQ) {
		p->errors++;
		return pipe_error_at(p->ctx, v->pos,
				     "%s of job '%s' must be a list of mappings, not %s", kind,
				     p->id, pipe_node_what(v));
	}
	struct mx_rule *rules = pipe_arena_array(p->ctx->tmp, v->n ? v->n : 1, sizeof(*rules));
	if (!rules)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < v->n; i++) {
		int rc = read_rule(p, v->items[i], include, &rules[n]);
		if (rc == -ENOMEM)
			return rc;
		if (rc == 0 && rules[n].n)
			n++;
	}
	if (include) {
		p->m->includes = rules;
		p->m->n_includes = n;
	} else {
		p->m->excludes = rules;
		p->m->n_excludes = n;
	}
	return 0;
}

int pipe_matrix_parse(struct pipe_ctx *ctx, const char *id, const struct ynode *n,
		      struct matrix_spec **out)
{
	*out = NULL;
	if (n->kind != Y_MAP)
		return pipe_error_at(ctx, n->pos,
				     "strategy.matrix of job '%s' must be a mapping, not %s", id,
				     pipe_node_what(n));
	struct matrix_spec *m = pipe_arena_alloc(ctx->tmp, sizeof(*m));
	struct parser p = {.ctx = ctx, .id = id, .m = m};
	if (!m)
		return -ENOMEM;
	m->pos = n->pos;
	m->keys = pipe_arena_array(ctx->tmp, MAX_KEYS, sizeof(*m->keys));
	p.values = pipe_arena_array(ctx->tmp, MAX_KEYS, sizeof(*p.values));
	if (!m->keys || !p.values)
		return -ENOMEM;
	for (size_t i = 0; i < MAX_KEYS; i++)
		p.values[i].arena = ctx->tmp;
	const struct ynode *include = NULL, *exclude = NULL;
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->pairs[i].key, *v = n->pairs[i].val;
		if (!strcmp(k->str, reserved[0])) {
			include = v;
		} else if (!strcmp(k->str, reserved[1])) {
			exclude = v;
		} else {
			int rc = read_values(&p, k, v);
			if (rc == -ENOMEM)
				return rc;
		}
	}
	m->n_product = m->n_keys;
	int rc = exclude ? read_rules(&p, exclude, false) : 0;
	if (rc == 0 && include)
		rc = read_rules(&p, include, true);
	if (rc == -ENOMEM)
		return rc;
	if (!p.errors && m->n_product == 0 && m->n_includes == 0) {
		p.errors++;
		pipe_error_at(ctx, n->pos,
			      "the matrix of job '%s' has no keys: give a key a list of values, or "
			      "add include entries",
			      id);
	}
	/* Even a broken matrix names its keys, so expressions are still checked against them. */
	*out = m;
	return p.errors ? -EINVAL : 0;
}
