/* Opening a store: the url picks the engine, then the schema is brought up to date. */
#include "runner/store/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every engine this vmci has; a new one is one more line. */
static const struct store_engine *const engines[] = {
    &store_engine_sqlite,
};

/* Engines a url may name that this vmci does not have (yet). */
static const char *const planned[] = {"postgresql://", "postgres://"};

/* url as messages may show it: a password in it becomes "***". */
static void redact(const char *url, char *out, size_t size)
{
	snprintf(out, size, "%s", url);
	char *scheme_end = strstr(out, "://");
	if (!scheme_end)
		return;
	char *user = scheme_end + 3;
	char *at = strchr(user, '@');
	char *colon = strchr(user, ':');
	if (at && colon && colon < at) {
		size_t tail = strlen(at) + 1;
		if ((size_t)(colon + 4 - out) + tail <= size) {
			memmove(colon + 4, at, tail);
			memcpy(colon + 1, "***", 3);
		}
	}
}

static int64_t real_clock(void *ctx)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct store_engine *engine_for(const char *url, const char **target)
{
	for (size_t i = 0; i < ARRAY_LEN(engines); i++)
		for (const char *const *sch = engines[i]->schemes; *sch; sch++)
			if (!strncmp(url, *sch, strlen(*sch))) {
				*target = url + strlen(*sch);
				return engines[i];
			}
	return NULL;
}

int store_open(const char *url, struct store **out, struct vmci_err *err)
{
	*out = NULL;
	char shown[512];
	redact(url ? url : "", shown, sizeof(shown));
	const char *target = NULL;
	const struct store_engine *engine = url ? engine_for(url, &target) : NULL;
	if (!engine) {
		for (size_t i = 0; i < ARRAY_LEN(planned); i++)
			if (!strncmp(shown, planned[i], strlen(planned[i])))
				return vmci_err_set(err, ENOTSUP,
						    "store %s: PostgreSQL is not supported by this "
						    "vmci yet; use sqlite:PATH",
						    shown);
		return vmci_err_set(
		    err, EINVAL, "store '%s': unknown kind of database (use sqlite:PATH)", shown);
	}
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return store_oom(err, "opening the store");
	s->engine = engine;
	snprintf(s->url, sizeof(s->url), "%s", shown);
	s->now_ms = real_clock;
	pthread_mutex_init(&s->lock, NULL);
	int rc = engine->open(target, &s->db, err);
	if (rc == 0)
		rc = migrations_apply(s, err);
	if (rc < 0) {
		store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	db_cache_clear(s);
	if (s->db)
		s->engine->close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int store_default_url(char *out, size_t size)
{
	int n = snprintf(out, size, "sqlite:%s/vmci.db", vmci_home());
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int store_schema_version(struct store *s, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, false, err);
	if (rc == 0)
		rc = migrations_current(s, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

void store_set_clock(struct store *s, int64_t (*now_ms)(void *ctx), void *ctx)
{
	store_lock(s);
	s->now_ms = now_ms ? now_ms : real_clock;
	s->now_ctx = now_ms ? ctx : NULL;
	store_unlock(s);
}

int64_t store_now_ms(struct store *s)
{
	return s->now_ms(s->now_ctx);
}
