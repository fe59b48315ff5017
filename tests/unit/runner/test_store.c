/*
 * The store on a real SQLite file: opening and migrations, runs stored
 * whole or not at all, durability across a reopen and a SIGKILL, and
 * claimers in several threads and processes that never share a job.
 */
#include "store_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- opening and migrations ------------------------------------------------------------- */

static void test_an_empty_file_is_migrated_to_the_latest_version(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	assert_int_equal(store_schema_version(f->s, &err), store_schema_latest());
	assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM schema_version"),
			 store_schema_latest());
	assert_int_equal(sql_int(f->path,
				 "SELECT COUNT(*) FROM sqlite_master WHERE name IN"
				 " ('runs', 'jobs', 'job_needs', 'attempts', 'steps',"
				 " 'log_chunks', 'events', 'artifacts', 'hosts', 'tokens')"),
			 10);
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_a_new_database_is_readable_by_its_owner_only(void **state)
{
	struct fx *f = *state;
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char wal[PATH_MAX + 8];
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_int_equal(stat(wal, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_reopening_applies_no_migration_twice(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	fx_open_store(f);
	store_close(f->s);
	fx_open_store(f);
	assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM schema_version"),
			 store_schema_latest());
}

static void test_a_file_from_a_newer_vmci_is_refused_untouched(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	f->s = NULL;
	int newer = store_schema_latest() + 1;
	char sql[200];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO schema_version VALUES (%d, 'from the future', 0);"
		 " CREATE TABLE future (x INTEGER)",
		 newer);
	sql_run(f->path, sql);
	int64_t objects = sql_int(f->path, "SELECT COUNT(*) FROM sqlite_master");

	struct vmci_err err = {0};
	struct store *s = NULL;
	assert_int_equal(store_open(f->url, &s, &err), -ENOTSUP);
	assert_null(s);
	assert_non_null(strstr(err.msg, f->path));
	assert_non_null(strstr(err.msg, "newer"));
	assert_non_null(strstr(err.msg, "upgrade vmci"));
	assert_int_equal(sql_int(f->path, "SELECT MAX(version) FROM schema_version"), newer);
	assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM sqlite_master"), objects);
}

/*
 * A database as version 1 of the store left it (the schema kept in
 * tests/fixtures/store/schema-v1.sql, rows as that code wrote them): run 1
 * with job a (succeeded, with a log) and job b (queued, needing a).
 */
static void make_v1_database(const char *path)
{
	struct buf schema = {0};
	struct vmci_err err = {0};
	if (fs_read_file("tests/fixtures/store/schema-v1.sql", 1 << 20, &schema, &err))
		fail_msg("%s", err.msg);
	sql_run(path, buf_cstr(&schema));
	buf_free(&schema);
	sql_run(path,
		"PRAGMA journal_mode=WAL;"
		"INSERT INTO runs VALUES (1, 'acme/widget', 'refs/heads/main', 'abc123', 'push',"
		" 'running', 1777593600000, 1777593601000, NULL);"
		"INSERT INTO jobs (id, run_id, idx, name, image, matrix, grp, fail_fast,"
		" max_parallel, timeout_s, retries, status, pending_needs, attempt, host,"
		" exit_code, log_len, created_ms, started_ms, finished_ms) VALUES"
		" (1, 1, 0, 'a', 'debian-12', '{\"cc\":\"gcc\"}', 0, 1, 0, 600, 0, 'success', 0,"
		" 1, 'build1', 0, 6, 1777593600000, 1777593601000, 1777593602000),"
		" (2, 1, 1, 'b', 'debian-12', '{}', 1, 1, 0, 600, 0, 'queued', 0, 0, NULL, NULL, 0,"
		" 1777593600000, NULL, NULL);"
		"INSERT INTO job_needs VALUES (2, 1);"
		"INSERT INTO attempts (job_id, number, host, status, exit_code, log_start,"
		" started_ms, finished_ms) VALUES (1, 1, 'build1', 'success', 0, 0, 1777593601000,"
		" 1777593602000);"
		"INSERT INTO log_chunks VALUES (1, 0, 6, 1, X'6275696c740a');"
		"INSERT INTO events (run_id, job_id, kind, data, created_ms) VALUES"
		" (1, NULL, 'run.created', '{}', 1777593600000);");
}

static void test_a_v1_file_is_migrated_with_its_data_intact(void **state)
{
	struct fx *f = fx_new();
	make_v1_database(f->path);
	assert_int_equal(sql_int(f->path, "SELECT MAX(version) FROM schema_version"), 1);
	fx_open_store(f);
	struct vmci_err err = {0};
	assert_int_equal(store_schema_version(f->s, &err), store_schema_latest());
	assert_true(store_schema_latest() > 1);

	struct store_run *r;
	assert_int_equal(store_run_get(f->s, 1, &r, &err), 0);
	assert_string_equal(r->repo, "acme/widget");
	assert_string_equal(r->trigger, "push");
	assert_int_equal(r->status, STORE_RUNNING);
	assert_int_equal(r->started_ms, T0 + 1000);
	assert_int_equal(r->n_jobs, 2);
	assert_string_equal(r->jobs[0].matrix_json, "{\"cc\":\"gcc\"}");
	assert_int_equal(r->jobs[0].status, STORE_SUCCESS);
	assert_int_equal(r->jobs[1].needs[0], 1);
	store_run_free(r);
	struct buf log = {0};
	int64_t next;
	bool done;
	assert_int_equal(store_log_read(f->s, 1, 0, 100, &log, &next, &done, &err), 6);
	assert_memory_equal(log.data, "built\n", 6);
	assert_true(done);
	buf_free(&log);

	/* The old run goes on under the new code, and what version 2 added works. */
	struct store_job *b = claim(f->s, "build1");
	assert_int_equal(b->id, 2);
	finish(f->s, b->id, 1, STORE_SUCCESS);
	store_job_free(b);
	assert_int_equal(run_status(f->s, 1), STORE_SUCCESS);
	assert_int_equal(run_of(f->s, "next"), 2);
	char token[STORE_TOKEN_LEN + 1];
	assert_int_equal(store_token_create(f->s, "admin", token, &err), 0);
	assert_int_equal(store_host_register(f->s, "build1", "http://build1:8080", 4, &err), 0);
	fx_teardown((void **)&f);
}

static void *open_and_close(void *arg)
{
	struct fx *f = arg;
	struct vmci_err err = {0};
	struct store *s = NULL;
	intptr_t rc = store_open(f->url, &s, &err);
	if (rc)
		print_error("store_open: %s\n", err.msg);
	store_close(s);
	return (void *)rc;
}

/* Services starting together on a new file: every one opens it, each migration runs once. */
static void test_openers_racing_on_a_new_file_migrate_it_once(void **state)
{
	for (int round = 0; round < 16; round++) {
		struct fx *f = fx_new();
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			assert_int_equal(pthread_create(&t[i], NULL, open_and_close, f), 0);
		for (int i = 0; i < 4; i++) {
			void *rc;
			pthread_join(t[i], &rc);
			assert_int_equal((intptr_t)rc, 0);
		}
		assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM schema_version"),
				 store_schema_latest());
		struct vmci_err err = {0};
		fs_rm_rf(f->dir, &err);
		free(f);
	}
}

static void test_urls_of_other_databases_are_refused_clearly(void **state)
{
	struct vmci_err err = {0};
	struct store *s = NULL;
	assert_int_equal(store_open("postgresql://ci:s3cret@db.example.org/vmci", &s, &err),
			 -ENOTSUP);
	assert_non_null(strstr(err.msg, "PostgreSQL"));
	assert_null(strstr(err.msg, "s3cret")); /* never show a password */
	assert_int_equal(store_open("mysql://db/vmci", &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "sqlite:PATH"));
	assert_int_equal(store_open("sqlite:", &s, &err), -EINVAL);
	assert_int_equal(store_open("sqlite:/nonexistent-dir/x/vmci.db", &s, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent-dir/x/vmci.db"));
	assert_non_null(strstr(err.msg, "create its directory"));
	assert_null(s);
}

/* ---- runs stored whole ------------------------------------------------------------------- */

static void test_run_creation_is_atomic(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t id = 0;
	/* The third job's name is taken: the database refuses it after two jobs went in. */
	assert_int_equal(run_try(f->s, "acme/widget", "build test:build build", NULL, &id, &err),
			 -EEXIST);
	assert_non_null(strstr(err.msg, "'build'"));
	assert_int_equal(id, 0);
	struct store_run *runs;
	size_t n;
	assert_int_equal(store_runs_list(f->s, NULL, &runs, &n, &err), 0);
	assert_int_equal(n, 0);
	store_runs_free(runs, n);
	for (const char *const *t =
		 (const char *const[]){"runs", "jobs", "job_needs", "events", NULL};
	     *t; t++) {
		char sql[64];
		snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", *t);
		assert_int_equal(sql_int(f->path, sql), 0);
	}
	assert_null(claim(f->s, "h"));
	/* And the store takes the next run as usual. */
	assert_int_equal(run_try(f->s, "acme/widget", "build test:build", NULL, &id, &err), 0);
}

static void test_impossible_needs_are_refused(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t id = 0;
	assert_int_equal(run_try(f->s, "r", "a:b b:a", NULL, &id, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "cycle"));
	assert_int_equal(run_try(f->s, "r", "a b:a,ghost", NULL, &id, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not in the run"));
	assert_int_equal(run_try(f->s, "r", "a:a", NULL, &id, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "itself"));
	assert_int_equal(run_try(f->s, "r", "", NULL, &id, &err), -EINVAL);
	struct store_job_spec bad = {.matrix_json = "[1, 2]"};
	assert_int_equal(run_try(f->s, "r", "a", &bad, &id, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "matrix"));
	assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM runs"), 0);
}

static void test_a_run_keeps_what_it_was_given(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	struct store_job_spec opts = {.matrix_json = "{\"os\":\"debian-12\",\"cc\":\"gcc\"}",
				      .timeout_s = 600,
				      .retries = 2,
				      .group = 3,
				      .fail_fast = true,
				      .max_parallel = 4};
	int64_t id;
	assert_int_equal(run_try(f->s, "acme/widget", "build test:build", &opts, &id, &err), 0);
	struct store_run *r;
	assert_int_equal(store_run_get(f->s, id, &r, &err), 0);
	assert_string_equal(r->repo, "acme/widget");
	assert_string_equal(r->ref, "refs/heads/main");
	assert_string_equal(r->sha, "abc123");
	assert_string_equal(r->trigger, "api");
	assert_int_equal(r->created_ms, T0);
	assert_int_equal(r->started_ms, 0);
	assert_int_equal(r->n_jobs, 2);
	struct store_job *t = &r->jobs[1];
	assert_string_equal(t->name, "test");
	assert_string_equal(t->image, "img");
	assert_string_equal(t->matrix_json, opts.matrix_json);
	assert_int_equal(t->index, 1);
	assert_int_equal(t->timeout_s, 600);
	assert_int_equal(t->retries, 2);
	assert_int_equal(t->group, 3);
	assert_true(t->fail_fast);
	assert_int_equal(t->max_parallel, 4);
	assert_int_equal(t->n_needs, 1);
	assert_int_equal(t->needs[0], r->jobs[0].id);
	assert_int_equal(t->attempt, 0);
	assert_int_equal(t->exit_code, -1);
	store_run_free(r);
	assert_int_equal(store_run_get(f->s, id + 1, &r, &err), -ENOENT);
	assert_null(r);
	assert_non_null(strstr(err.msg, "not found"));
}

/* ---- durability ---------------------------------------------------------------------------- */

static void test_committed_data_survives_a_reopen(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "a b:a");
	struct store_job *a = claim(f->s, "h");
	assert_int_equal(store_log_append(f->s, a->id, 1, "kept\n", 5, &err), 5);
	finish(f->s, a->id, 1, STORE_SUCCESS);
	store_close(f->s);
	fx_open_store(f);

	assert_int_equal(status_of(f->s, run, "a"), STORE_SUCCESS);
	assert_string_equal(claim_name(f->s, "h"), "b");
	struct buf b = {0};
	int64_t next;
	bool done;
	assert_int_equal(store_log_read(f->s, a->id, 0, 100, &b, &next, &done, &err), 5);
	assert_memory_equal(b.data, "kept\n", 5);
	buf_free(&b);
	store_job_free(a);
}

static void test_an_acknowledged_run_survives_sigkill(void **state)
{
	struct fx *f = *state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The writer: acknowledges each run once stored, until it is killed. */
		close(fds[0]);
		struct store *s;
		struct vmci_err err = {0};
		if (store_open(f->url, &s, &err))
			_exit(1);
		for (;;) {
			int64_t id;
			if (run_try(s, "acme/widget", "a b:a", NULL, &id, &err) ||
			    write(fds[1], &id, sizeof(id)) != sizeof(id))
				_exit(1);
		}
	}
	close(fds[1]);
	int64_t acked[20];
	for (int i = 0; i < 20; i++)
		assert_int_equal(read(fds[0], &acked[i], sizeof(acked[i])), sizeof(acked[i]));
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFSIGNALED(status));
	close(fds[0]);

	store_close(f->s);
	fx_open_store(f);
	struct vmci_err err = {0};
	for (int i = 0; i < 20; i++) {
		struct store_run *r;
		assert_int_equal(store_run_get(f->s, acked[i], &r, &err), 0);
		assert_int_equal(r->n_jobs, 2);
		assert_int_equal(r->jobs[1].n_needs, 1);
		store_run_free(r);
	}
}

/* ---- claimers in parallel ------------------------------------------------------------------- */

#define CLAIM_JOBS 200

struct claimer {
	const char *url;
	pthread_barrier_t *start;
	int64_t ids[CLAIM_JOBS];
	int n;
	char error[256];
};

/* Whether every run has finished (nothing left to claim, now or later). */
static bool all_runs_finished(struct store *s)
{
	struct vmci_err err = {0};
	bool done = true;
	for (const char *const *st = (const char *const[]){"queued", "running", NULL}; *st; st++) {
		struct store_run_filter filter = {.status = *st, .limit = 1};
		struct store_run *runs = NULL;
		size_t n = 0;
		if (store_runs_list(s, &filter, &runs, &n, &err) != 0 || n > 0)
			done = false;
		store_runs_free(runs, n);
	}
	return done;
}

/* Claims and finishes jobs on its own handle until every run is done. */
static void *claimer_thread(void *arg)
{
	struct claimer *c = arg;
	struct vmci_err err = {0};
	struct store *s = NULL;
	if (store_open(c->url, &s, &err))
		snprintf(c->error, sizeof(c->error), "open: %s", err.msg);
	pthread_barrier_wait(c->start);
	char host[32];
	snprintf(host, sizeof(host), "host-%p", (void *)c);
	for (;;) {
		if (!s)
			break;
		struct store_job *j = NULL;
		int rc = store_claim(s, host, 60, &j, &err);
		if (rc < 0) {
			snprintf(c->error, sizeof(c->error), "claim: %s", err.msg);
			break;
		}
		if (rc == 0) {
			/* Nothing claimable yet: the jobs left wait for a setup job to finish. */
			if (all_runs_finished(s))
				break;
			usleep(1000);
			continue;
		}
		if (c->n < CLAIM_JOBS)
			c->ids[c->n] = j->id;
		c->n++;
		rc = store_job_finish(s, j->id, j->attempt, STORE_SUCCESS, 0, NULL, &err);
		store_job_free(j);
		if (rc < 0) {
			snprintf(c->error, sizeof(c->error), "finish: %s", err.msg);
			break;
		}
	}
	store_close(s);
	return NULL;
}

/* Every job of the store's runs, each seen exactly once in the claimers' lists. */
static void assert_each_claimed_once(struct fx *f, int64_t ids[], int n)
{
	assert_int_equal(n, CLAIM_JOBS);
	for (int i = 0; i < n; i++)
		for (int k = 0; k < i; k++)
			if (ids[i] == ids[k])
				fail_msg("job %lld was claimed twice", (long long)ids[i]);
	assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM jobs WHERE status = 'success'"),
			 CLAIM_JOBS);
	assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM attempts"), CLAIM_JOBS);
}

/* Two runs of 100 jobs: a setup job that 99 others need. */
static void two_runs_of_100(struct store *s)
{
	char line[2048] = "setup";
	for (int i = 1; i < CLAIM_JOBS / 2; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " j%d:setup", i);
	run_of(s, line);
	run_of(s, line);
}

static void test_concurrent_claimers_never_share_a_job(void **state)
{
	struct fx *f = *state;
	two_runs_of_100(f->s);
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 4);
	struct claimer c[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].url = f->url;
		c[i].start = &start;
		assert_int_equal(pthread_create(&t[i], NULL, claimer_thread, &c[i]), 0);
	}
	int64_t all[CLAIM_JOBS * 4];
	int n = 0, busy = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		if (c[i].error[0])
			fail_msg("claimer %d: %s", i, c[i].error);
		for (int k = 0; k < c[i].n && n < CLAIM_JOBS * 4; k++)
			all[n++] = c[i].ids[k];
		busy += c[i].n > 0;
	}
	pthread_barrier_destroy(&start);
	assert_each_claimed_once(f, all, n);
	assert_true(busy >= 2); /* they did claim side by side */
}

static void test_claimers_in_two_processes_never_share_a_job(void **state)
{
	struct fx *f = *state;
	two_runs_of_100(f->s);
	int fds[2][2];
	pid_t pid[2];
	for (int p = 0; p < 2; p++) {
		assert_int_equal(pipe(fds[p]), 0);
		pid[p] = fork();
		assert_true(pid[p] >= 0);
		if (pid[p] == 0) {
			close(fds[p][0]);
			pthread_barrier_t one;
			pthread_barrier_init(&one, NULL, 1);
			struct claimer c = {.url = f->url, .start = &one};
			claimer_thread(&c);
			int ok = c.error[0] == 0;
			if (write(fds[p][1], &c.n, sizeof(c.n)) != sizeof(c.n) ||
			    write(fds[p][1], c.ids, sizeof(int64_t) * (size_t)c.n) < 0 || !ok)
				_exit(1);
			_exit(0);
		}
		close(fds[p][1]);
	}
	int64_t all[CLAIM_JOBS * 2];
	int n = 0;
	for (int p = 0; p < 2; p++) {
		int count = 0;
		assert_int_equal(read(fds[p][0], &count, sizeof(count)), sizeof(count));
		assert_true(count >= 0 && n + count <= CLAIM_JOBS * 2);
		size_t want = sizeof(int64_t) * (size_t)count, got = 0;
		while (got < want) {
			ssize_t r = read(fds[p][0], (char *)&all[n] + got, want - got);
			assert_true(r > 0);
			got += (size_t)r;
		}
		n += count;
		close(fds[p][0]);
		int status;
		waitpid(pid[p], &status, 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_each_claimed_once(f, all, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
	    T(test_an_empty_file_is_migrated_to_the_latest_version),
	    T(test_a_new_database_is_readable_by_its_owner_only),
	    T(test_reopening_applies_no_migration_twice),
	    cmocka_unit_test(test_a_v1_file_is_migrated_with_its_data_intact),
	    T(test_a_file_from_a_newer_vmci_is_refused_untouched),
	    cmocka_unit_test(test_openers_racing_on_a_new_file_migrate_it_once),
	    cmocka_unit_test(test_urls_of_other_databases_are_refused_clearly),
	    T(test_run_creation_is_atomic),
	    T(test_impossible_needs_are_refused),
	    T(test_a_run_keeps_what_it_was_given),
	    T(test_committed_data_survives_a_reopen),
	    T(test_an_acknowledged_run_survives_sigkill),
	    T(test_concurrent_claimers_never_share_a_job),
	    T(test_claimers_in_two_processes_never_share_a_job),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
