/*
 * The store's way to its engine: transactions, statements prepared once
 * per handle and found again by their SQL's address, the dialect's
 * {tokens} expanded, and typed parameter binding.
 */
#include "runner/store/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void store_lock(struct store *s)
{
	pthread_mutex_lock(&s->lock);
}

void store_unlock(struct store *s)
{
	pthread_mutex_unlock(&s->lock);
}

int store_oom(struct vmci_err *err, const char *what)
{
	return vmci_err_set(err, ENOMEM, "store: out of memory while %s", what);
}

int db_begin(struct store *s, bool write, struct vmci_err *err)
{
	return s->engine->begin(s->db, write, err);
}

int db_end(struct store *s, int rc, struct vmci_err *err)
{
	if (rc < 0) {
		s->engine->rollback(s->db);
		return rc;
	}
	int crc = s->engine->commit(s->db, err);
	if (crc < 0) {
		s->engine->rollback(s->db);
		return crc;
	}
	return rc;
}

/* Writes sql into out with each {token} replaced by the engine's spelling of it. */
static int expand(const struct store_dialect *d, const char *sql, struct buf *out)
{
	static const struct {
		const char *name;
		size_t off;
	} tokens[] = {
	    {"{id}", offsetof(struct store_dialect, id)},
	    {"{blob}", offsetof(struct store_dialect, blob)},
	    {"{for_update}", offsetof(struct store_dialect, for_update)},
	    {"{skip_locked}", offsetof(struct store_dialect, skip_locked)},
	};
	for (const char *p = sql; *p;) {
		const char *brace = strchr(p, '{');
		if (!brace) {
			if (buf_append(out, p, strlen(p)) < 0)
				return -ENOMEM;
			break;
		}
		if (buf_append(out, p, (size_t)(brace - p)) < 0)
			return -ENOMEM;
		size_t t;
		for (t = 0; t < ARRAY_LEN(tokens); t++)
			if (!strncmp(brace, tokens[t].name, strlen(tokens[t].name)))
				break;
		if (t == ARRAY_LEN(tokens))
			return -EINVAL;
		const char *word = *(const char *const *)((const char *)d + tokens[t].off);
		if (buf_append(out, word, strlen(word)) < 0)
			return -ENOMEM;
		p = brace + strlen(tokens[t].name);
	}
	return buf_cstr(out) ? 0 : -ENOMEM;
}

static int prepare(struct store *s, const char *sql, struct store_stmt **out, struct vmci_err *err)
{
	struct buf text = {0};
	int rc = expand(s->engine->dialect, sql, &text);
	if (rc == -EINVAL)
		rc = vmci_err_set(err, EINVAL, "store: unknown {token} in SQL: %.80s", sql);
	else if (rc < 0)
		rc = store_oom(err, "preparing SQL");
	else
		rc = s->engine->prepare(s->db, (const char *)text.data, out, err);
	buf_free(&text);
	return rc;
}

int db_exec_script(struct store *s, const char *sql, struct vmci_err *err)
{
	struct buf text = {0};
	int rc = expand(s->engine->dialect, sql, &text);
	if (rc == -EINVAL)
		rc = vmci_err_set(err, EINVAL, "store: unknown {token} in SQL: %.80s", sql);
	else if (rc < 0)
		rc = store_oom(err, "expanding SQL");
	else
		rc = s->engine->exec(s->db, (const char *)text.data, err);
	buf_free(&text);
	return rc;
}

static int bind(struct store *s, struct store_stmt *st, const char *types, va_list ap)
{
	const struct store_engine *e = s->engine;
	int rc = 0;
	for (int i = 0; types[i] && rc == 0; i++) {
		switch (types[i]) {
		case 'I':
			rc = e->bind_int(st, i + 1, va_arg(ap, int64_t));
			break;
		case 'J': {
			int64_t v = va_arg(ap, int64_t);
			rc = v ? e->bind_int(st, i + 1, v) : e->bind_null(st, i + 1);
			break;
		}
		case 'e': {
			int v = va_arg(ap, int);
			rc = v >= 0 ? e->bind_int(st, i + 1, v) : e->bind_null(st, i + 1);
			break;
		}
		case 'i':
			rc = e->bind_int(st, i + 1, va_arg(ap, int));
			break;
		case 's':
			rc = e->bind_text(st, i + 1, va_arg(ap, const char *));
			break;
		case 'b': {
			const void *p = va_arg(ap, const void *);
			size_t len = va_arg(ap, size_t);
			rc = e->bind_blob(st, i + 1, p, len);
			break;
		}
		default:
			rc = -EINVAL;
		}
	}
	return rc;
}

static int vquery(struct store *s, struct store_stmt **out, struct vmci_err *err, const char *sql,
		  const char *types, va_list ap)
{
	struct store_cached *c = NULL;
	for (size_t i = 0; i < s->n_cached; i++)
		if (s->cache[i].sql == sql) {
			c = &s->cache[i];
			break;
		}
	struct store_stmt *st = NULL;
	int rc;
	if (c && !c->busy) {
		st = c->st;
		c->busy = true;
	} else {
		if ((rc = prepare(s, sql, &st, err)) < 0)
			return rc;
		if (!c && s->n_cached < STORE_STMT_CACHE) {
			c = &s->cache[s->n_cached++];
			c->sql = sql;
			c->st = st;
			c->busy = true;
		}
	}
	/* A parameter too many or too few is a bug that binding would not catch. */
	size_t marks = 0;
	for (const char *q = sql; *q; q++)
		marks += *q == '?';
	rc = marks == strlen(types) ? bind(s, st, types, ap) : -EINVAL;
	if (rc < 0) {
		db_done(s, st);
		return vmci_err_set(err, EINVAL, "store: cannot bind the parameters of: %.80s",
				    sql);
	}
	*out = st;
	return 0;
}

int db_query(struct store *s, struct store_stmt **out, struct vmci_err *err, const char *sql,
	     const char *types, ...)
{
	va_list ap;
	va_start(ap, types);
	int rc = vquery(s, out, err, sql, types, ap);
	va_end(ap);
	return rc;
}

int db_step(struct store *s, struct store_stmt *st, struct vmci_err *err)
{
	return s->engine->step(st, err);
}

void db_done(struct store *s, struct store_stmt *st)
{
	for (size_t i = 0; i < s->n_cached; i++)
		if (s->cache[i].st == st) {
			s->engine->reset(st);
			s->cache[i].busy = false;
			return;
		}
	/* Not cached (the cache was full, or its entry was in use): used once. */
	s->engine->finalize(st);
}

int64_t db_exec(struct store *s, struct vmci_err *err, const char *sql, const char *types, ...)
{
	struct store_stmt *st;
	va_list ap;
	va_start(ap, types);
	int rc = vquery(s, &st, err, sql, types, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	while ((rc = db_step(s, st, err)) == 1)
		;
	int64_t changed = rc < 0 ? rc : s->engine->changes(st);
	db_done(s, st);
	return changed;
}

int db_int(struct store *s, int64_t *out, struct vmci_err *err, const char *sql, const char *types,
	   ...)
{
	struct store_stmt *st;
	va_list ap;
	va_start(ap, types);
	int rc = vquery(s, &st, err, sql, types, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	rc = db_step(s, st, err);
	if (rc == 1) {
		if (s->engine->col_null(st, 0))
			rc = 0;
		else
			*out = s->engine->col_int(st, 0);
		/* Run it to its end: an INSERT ... RETURNING is only complete then. */
		int more;
		while ((more = db_step(s, st, err)) == 1)
			;
		if (more < 0)
			rc = more;
	}
	db_done(s, st);
	return rc;
}

int64_t col_int(struct store *s, struct store_stmt *st, int i, int64_t dflt)
{
	return s->engine->col_null(st, i) ? dflt : s->engine->col_int(st, i);
}

const char *col_text(struct store *s, struct store_stmt *st, int i)
{
	return s->engine->col_text(st, i);
}

char *col_strdup(struct store *s, struct store_stmt *st, int i)
{
	const char *t = s->engine->col_text(st, i);
	return t ? strdup(t) : NULL;
}

enum store_status col_status(struct store *s, struct store_stmt *st, int i)
{
	enum store_status status = STORE_ERROR;
	const char *t = s->engine->col_text(st, i);
	if (t)
		store_status_parse(t, &status, NULL);
	return status;
}

void db_cache_clear(struct store *s)
{
	for (size_t i = 0; i < s->n_cached; i++)
		s->engine->finalize(s->cache[i].st);
	s->n_cached = 0;
}
