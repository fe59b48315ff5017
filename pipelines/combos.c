/*
 * The combinations of a matrix: counted first, without making them, then
 * made once the count is known to be acceptable.
 *
 * Counting is exact for any size (saturating at UINT64_MAX) because it
 * never enumerates: it walks only the keys that excludes name, in key
 * order, and treats all the values no exclude names at a key as one
 * branch. Making the combinations then walks the product in GitHub
 * Actions order (first key slowest), skipping with the same count every
 * subtree the excludes empty, and applies the includes. A step budget
 * (PIPE_MATRIX_BUDGET) bounds both against exclude lists built to blow up.
 */
#include "pipelines/internal.h"

#include <stdlib.h>
#include <string.h>

/* An exclude still in play: the index of its next assignment not yet matched. */
struct active {
	uint32_t rule;
	uint32_t cur;
};

struct counter {
	const struct matrix_spec *m;
	/* Per product key: -1 for any value, else the only index allowed. NULL: no restriction. */
	const int *fixed;
	uint64_t budget;
};

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
	if (a == 0 || b == 0)
		return 0;
	return a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t allowed(const struct counter *c, size_t k)
{
	return c->fixed && c->fixed[k] >= 0 ? 1 : c->m->keys[k].n_values;
}

static bool allows(const struct counter *c, size_t k, int v)
{
	return !c->fixed || c->fixed[k] < 0 || c->fixed[k] == v;
}

static const struct mx_assign *next_of(const struct counter *c, const struct active *e)
{
	const struct mx_rule *r = &c->m->excludes[e->rule];
	return e->cur < r->n ? &r->a[e->cur] : NULL;
}

static int cmp_value_at(const void *pa, const void *pb, void *arg)
{
	const struct counter *c = arg;
	int a = next_of(c, pa)->vindex, b = next_of(c, pb)->vindex;
	return a < b ? -1 : a > b;
}

/*
 * Counts the combinations of keys k0.. (those before are decided) that no
 * exclude in E matches, where each exclude in E matched every key it
 * names before k0. E is reordered. Returns 0 with *out set, -E2BIG when
 * the budget is spent, or -ENOMEM.
 */
static int count_rec(struct counter *c, size_t k0, struct active *E, size_t n, uint64_t *out)
{
	const size_t np = c->m->n_product;
	uint64_t total = 0, mult = 1;
	struct active *buf = n ? malloc(n * sizeof(*buf)) : NULL;
	if (n && !buf)
		return -ENOMEM;
	for (;;) {
		if (c->budget < n + 1) {
			free(buf);
			return -E2BIG;
		}
		c->budget -= n + 1;
		size_t k = np;
		for (size_t i = 0; i < n; i++) {
			const struct mx_assign *a = next_of(c, &E[i]);
			if ((size_t)a->key < k)
				k = (size_t)a->key;
		}
		for (size_t j = k0; j < k && mult; j++)
			mult = sat_mul(mult, allowed(c, j));
		if (n == 0 || mult == 0)
			break;
		/* Excludes naming key k go to the front, sorted by the value they want there. */
		size_t named = 0;
		for (size_t i = 0; i < n; i++) {
			if ((size_t)next_of(c, &E[i])->key == k) {
				struct active t = E[named];
				E[named++] = E[i];
				E[i] = t;
			}
		}
		qsort_r(E, named, sizeof(*E), cmp_value_at, c);
		uint64_t specific = 0;
		for (size_t i = 0; i < named;) {
			int v = next_of(c, &E[i])->vindex;
			size_t j = i;
			while (j < named && next_of(c, &E[j])->vindex == v)
				j++;
			if (allows(c, k, v)) {
				specific++;
				/* The excludes wanting v advance; one now complete removes v. */
				bool gone = false;
				size_t m = 0;
				for (size_t x = i; x < j; x++) {
					buf[m] = (struct active){E[x].rule, E[x].cur + 1};
					gone = gone || !next_of(c, &buf[m]);
					m++;
				}
				for (size_t x = named; x < n; x++)
					buf[m++] = E[x];
				if (!gone) {
					uint64_t sub;
					int rc = count_rec(c, k + 1, buf, m, &sub);
					if (rc) {
						free(buf);
						return rc;
					}
					total = sat_add(total, sat_mul(mult, sub));
				}
			}
			i = j;
		}
		/* Every other value at k: only the excludes that do not name k stay. */
		mult = sat_mul(mult, allowed(c, k) - specific);
		memmove(E, E + named, (n - named) * sizeof(*E));
		n -= named;
		k0 = k + 1;
	}
	free(buf);
	*out = sat_add(total, mult);
	return 0;
}

/* Combinations of the product (restricted by fixed) that survive the excludes. */
static int count_survivors(struct counter *c, uint64_t *out)
{
	const struct matrix_spec *m = c->m;
	if (m->n_product == 0) {
		*out = 0;
		return 0;
	}
	if (c->budget < m->n_excludes + 1)
		return -E2BIG;
	c->budget -= m->n_excludes + 1;
	struct active *E = malloc((m->n_excludes + 1) * sizeof(*E));
	if (!E)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < m->n_excludes; i++) {
		/* An exclude naming a value the key does not have matches nothing. */
		bool live = true;
		for (size_t j = 0; j < m->excludes[i].n; j++)
			live = live && m->excludes[i].a[j].vindex >= 0;
		if (live)
			E[n++] = (struct active){(uint32_t)i, 0};
	}
	int rc = count_rec(c, 0, E, n, out);
	free(E);
	return rc;
}

/* Whether include entry r fits at least one surviving original combination. */
static int include_matches(struct counter *c, const struct mx_rule *r, int *fixed, bool *out)
{
	const struct matrix_spec *m = c->m;
	*out = false;
	if (m->n_product == 0)
		return 0;
	for (size_t k = 0; k < m->n_product; k++)
		fixed[k] = -1;
	for (size_t i = 0; i < r->n; i++) {
		if ((size_t)r->a[i].key >= m->n_product)
			continue;
		if (r->a[i].vindex < 0)
			return 0;
		fixed[r->a[i].key] = r->a[i].vindex;
	}
	uint64_t n = 0;
	c->fixed = fixed;
	int rc = count_survivors(c, &n);
	c->fixed = NULL;
	*out = n > 0;
	return rc;
}

int pipe_matrix_count(const struct matrix_spec *m, uint64_t *count)
{
	struct counter c = {.m = m, .budget = PIPE_MATRIX_BUDGET};
	uint64_t total;
	int rc = count_survivors(&c, &total);
	if (rc)
		return rc;
	int *fixed = malloc((m->n_product + 1) * sizeof(int));
	if (!fixed)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_includes && !rc; i++) {
		bool fits;
		rc = include_matches(&c, &m->includes[i], fixed, &fits);
		if (!fits)
			total = sat_add(total, 1);
	}
	free(fixed);
	*count = total;
	return rc;
}

/* ---- expanding ------------------------------------------------------------- */

struct expander {
	struct counter c;
	const char **rows; /* n_rows * n_keys */
	size_t n_rows, cap_rows;
	const char **row; /* the combination being built */
};

/*
 * Emits the surviving combinations of keys k.. in order. E lists the
 * excludes that still match the choices made so far.
 */
static int gen(struct expander *x, size_t k, const struct active *E, size_t n)
{
	const struct matrix_spec *m = x->c.m;
	if (k == m->n_product) {
		if (x->n_rows == x->cap_rows)
			return -ERANGE; /* more than counted: cannot happen */
		memcpy(x->rows + x->n_rows * m->n_keys, x->row, m->n_keys * sizeof(char *));
		x->n_rows++;
		return 0;
	}
	struct active *next = malloc((n + 1) * sizeof(*next));
	if (!next)
		return -ENOMEM;
	int rc = 0;
	const struct mx_key *key = &m->keys[k];
	for (size_t v = 0; v < key->n_values && !rc; v++) {
		size_t nn = 0;
		bool gone = false;
		for (size_t i = 0; i < n && !gone; i++) {
			const struct mx_assign *a = next_of(&x->c, &E[i]);
			if ((size_t)a->key != k) {
				next[nn++] = E[i];
			} else if (a->vindex == (int)v) {
				next[nn] = (struct active){E[i].rule, E[i].cur + 1};
				gone = !next_of(&x->c, &next[nn++]);
			}
		}
		if (gone)
			continue;
		if (nn) {
			/* Skip a subtree the excludes empty entirely, without walking it. */
			uint64_t left;
			struct active *copy = malloc(nn * sizeof(*copy));
			if (!copy) {
				rc = -ENOMEM;
				break;
			}
			memcpy(copy, next, nn * sizeof(*copy));
			rc = count_rec(&x->c, k + 1, copy, nn, &left);
			free(copy);
			if (rc || left == 0)
				continue;
		}
		x->row[k] = key->values[v];
		rc = gen(x, k + 1, next, nn);
	}
	free(next);
	return rc;
}

int pipe_matrix_expand(struct pipe_arena *a, const struct matrix_spec *m, const char ***out,
		       size_t *n_out)
{
	uint64_t count;
	int rc = pipe_matrix_count(m, &count);
	if (rc)
		return rc;
	if (count > SIZE_MAX / 2 / (m->n_keys ? m->n_keys : 1) / sizeof(char *))
		return -E2BIG;
	struct expander x = {.c = {.m = m, .budget = PIPE_MATRIX_BUDGET}, .cap_rows = count};
	x.rows = pipe_arena_array(a, count ? count * m->n_keys : 1, sizeof(char *));
	x.row = calloc(m->n_keys + 1, sizeof(char *));
	struct active *E = malloc((m->n_excludes + 1) * sizeof(*E));
	if (!x.rows || !x.row || !E) {
		free(x.row);
		free(E);
		return -ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < m->n_excludes; i++) {
		bool live = true;
		for (size_t j = 0; j < m->excludes[i].n; j++)
			live = live && m->excludes[i].a[j].vindex >= 0;
		if (live)
			E[n++] = (struct active){(uint32_t)i, 0};
	}
	rc = m->n_product ? gen(&x, 0, E, n) : 0;
	free(E);
	free(x.row);
	if (rc)
		return rc;
	/* Includes: extend every original combination that fits, or add one. */
	size_t n_orig = x.n_rows;
	if (m->n_includes && n_orig > PIPE_MATRIX_BUDGET / m->n_includes)
		return -E2BIG;
	for (size_t i = 0; i < m->n_includes; i++) {
		const struct mx_rule *r = &m->includes[i];
		bool fitted = false;
		for (size_t j = 0; j < n_orig; j++) {
			const char **row = x.rows + j * m->n_keys;
			bool fits = true;
			for (size_t t = 0; t < r->n && fits; t++) {
				const struct mx_assign *as = &r->a[t];
				if ((size_t)as->key < m->n_product)
					fits = as->vindex >= 0 &&
					       row[as->key] == m->keys[as->key].values[as->vindex];
			}
			if (!fits)
				continue;
			fitted = true;
			for (size_t t = 0; t < r->n; t++)
				if ((size_t)r->a[t].key >= m->n_product)
					row[r->a[t].key] = r->a[t].value;
		}
		if (fitted)
			continue;
		if (x.n_rows == x.cap_rows)
			return -ERANGE; /* more than counted: cannot happen */
		const char **row = x.rows + x.n_rows++ * m->n_keys;
		for (size_t t = 0; t < r->n; t++)
			row[r->a[t].key] = r->a[t].value;
	}
	*out = x.rows;
	*n_out = x.n_rows;
	return 0;
}
