/*
 * Shared by the store's tests: a store on a real SQLite file in a fresh
 * directory, a clock the test moves by hand, and runs written in a
 * one-line notation.
 */
#ifndef VMCI_TESTS_STORE_HELPERS_H
#define VMCI_TESTS_STORE_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/store.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2026-05-01T00:00:00Z: far from 0, which the store reads as "not yet". */
#define T0 1777593600000LL

struct fx {
	char dir[PATH_MAX];
	char path[PATH_MAX]; /* the database file */
	char url[PATH_MAX + 8];
	struct store *s;
	int64_t now;
};

static inline int64_t fx_clock(void *ctx)
{
	return *(const int64_t *)ctx;
}

static inline void fx_open_store(struct fx *f)
{
	struct vmci_err err = {0};
	int rc = store_open(f->url, &f->s, &err);
	if (rc)
		fail_msg("store_open %s: %s", f->url, err.msg);
	store_set_clock(f->s, fx_clock, &f->now);
}

/* A fresh directory with a path for the database; the store is not opened. */
static inline struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/vmci-store-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/vmci.db", f->dir);
	snprintf(f->url, sizeof(f->url), "sqlite:%s", f->path);
	f->now = T0;
	return f;
}

static inline int fx_setup(void **state)
{
	struct fx *f = fx_new();
	fx_open_store(f);
	*state = f;
	return 0;
}

static inline int fx_teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	struct vmci_err err = {0};
	fs_rm_rf(f->dir, &err);
	free(f);
	return 0;
}

/* ---- runs in one line ---------------------------------------------------------------- */

#define MAX_SPEC_JOBS 256

/*
 * "build test:build deploy:test,lint lint": jobs in order, each NAME or
 * NAME:NEED,NEED. Every job runs image "img"; opts (may be NULL) is
 * copied into each job's spec for retries, groups and limits.
 * Returns what store_run_create returns.
 */
static inline int run_try(struct store *s, const char *repo, const char *line,
			  const struct store_job_spec *opts, int64_t *run_id, struct vmci_err *err)
{
	static char names[MAX_SPEC_JOBS][64], need_names[MAX_SPEC_JOBS][256];
	static size_t needs[MAX_SPEC_JOBS][8];
	static struct store_job_spec jobs[MAX_SPEC_JOBS];
	char copy[8192];
	snprintf(copy, sizeof(copy), "%s", line);
	size_t n = 0;
	char *save = NULL;
	for (char *word = strtok_r(copy, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
		assert_true(n < MAX_SPEC_JOBS);
		char *colon = strchr(word, ':');
		if (colon)
			*colon = 0;
		snprintf(names[n], sizeof(names[n]), "%s", word);
		snprintf(need_names[n], sizeof(need_names[n]), "%s", colon ? colon + 1 : "");
		n++;
	}
	/* Needs by name, once every name is known; an unknown one points past the run. */
	for (size_t i = 0; i < n; i++) {
		jobs[i] = opts ? *opts : (struct store_job_spec){0};
		jobs[i].name = names[i];
		jobs[i].image = "img";
		jobs[i].needs = needs[i];
		jobs[i].n_needs = 0;
		char *save2 = NULL;
		for (char *need = strtok_r(need_names[i], ",", &save2); need;
		     need = strtok_r(NULL, ",", &save2)) {
			size_t k;
			for (k = 0; k < n && strcmp(names[k], need); k++)
				;
			needs[i][jobs[i].n_needs++] = k < n ? k : 9999;
		}
	}
	struct store_run_spec run = {
	    .repo = repo, .ref = "refs/heads/main", .sha = "abc123", .trigger = "api"};
	return store_run_create(s, &run, jobs, n, run_id, err);
}

static inline int64_t run_of(struct store *s, const char *line)
{
	struct vmci_err err = {0};
	int64_t id = 0;
	int rc = run_try(s, "acme/widget", line, NULL, &id, &err);
	if (rc)
		fail_msg("store_run_create '%s': %s", line, err.msg);
	return id;
}

/* Claims one job as host and returns it (the test frees it), or NULL when none is claimable. */
static inline struct store_job *claim(struct store *s, const char *host)
{
	struct vmci_err err = {0};
	struct store_job *j = NULL;
	int rc = store_claim(s, host, 30, &j, &err);
	if (rc < 0)
		fail_msg("store_claim: %s", err.msg);
	return rc == 1 ? j : NULL;
}

/* Claims one job and returns its name ("" for none), freeing it. */
static inline const char *claim_name(struct store *s, const char *host)
{
	static char name[64];
	struct store_job *j = claim(s, host);
	snprintf(name, sizeof(name), "%s", j ? j->name : "");
	store_job_free(j);
	return name;
}

static inline void finish(struct store *s, int64_t job, int attempt, enum store_status status)
{
	struct vmci_err err = {0};
	int rc =
	    store_job_finish(s, job, attempt, status, status == STORE_SUCCESS ? 0 : 1, NULL, &err);
	if (rc < 0)
		fail_msg("store_job_finish %lld/%d: %s", (long long)job, attempt, err.msg);
}

/* The job of run named name, read fresh (the test frees it). */
static inline struct store_job *job_named(struct store *s, int64_t run_id, const char *name)
{
	struct vmci_err err = {0};
	struct store_run *r = NULL;
	if (store_run_get(s, run_id, &r, &err))
		fail_msg("store_run_get: %s", err.msg);
	int64_t id = 0;
	for (size_t i = 0; i < r->n_jobs; i++)
		if (!strcmp(r->jobs[i].name, name))
			id = r->jobs[i].id;
	store_run_free(r);
	if (!id)
		fail_msg("run %lld has no job '%s'", (long long)run_id, name);
	struct store_job *j = NULL;
	if (store_job_get(s, id, &j, &err))
		fail_msg("store_job_get: %s", err.msg);
	return j;
}

static inline enum store_status status_of(struct store *s, int64_t run_id, const char *name)
{
	struct store_job *j = job_named(s, run_id, name);
	enum store_status st = j->status;
	store_job_free(j);
	return st;
}

static inline enum store_status run_status(struct store *s, int64_t run_id)
{
	struct vmci_err err = {0};
	struct store_run *r = NULL;
	if (store_run_get(s, run_id, &r, &err))
		fail_msg("store_run_get: %s", err.msg);
	enum store_status st = r->status;
	store_run_free(r);
	return st;
}

/* The first column of the first row of sql on the file, straight through SQLite. */
static inline int64_t sql_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static inline void sql_run(const char *path, const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

#endif
