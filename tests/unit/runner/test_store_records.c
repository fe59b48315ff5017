/*
 * What the store keeps beside the queue, on a real SQLite file: API
 * tokens (only their hashes), hosts and drain, the artifact index, the
 * events of a run, and the times the API shows.
 */
#include "store_helpers.h"

#include <errno.h>

/* ---- tokens ---------------------------------------------------------------------------- */

/* Whether needle is anywhere in the file's bytes (a missing file holds nothing). */
static bool file_holds(const char *path, const char *needle)
{
	struct buf b = {0};
	struct vmci_err err = {0};
	if (fs_read_file(path, 64 << 20, &b, &err) < 0)
		return false;
	bool found = b.len && memmem(b.data, b.len, needle, strlen(needle)) != NULL;
	buf_free(&b);
	return found;
}

static void test_a_token_is_stored_only_as_its_hash(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	char token[STORE_TOKEN_LEN + 1];
	assert_int_equal(store_token_create(f->s, "admin", token, &err), 0);
	assert_int_equal(strlen(token), STORE_TOKEN_LEN);
	assert_memory_equal(token, "vmci_", 5);
	char hex[SHA256_HEX_LEN + 1];
	struct sha256_ctx *ctx = sha256_new();
	sha256_update(ctx, token, strlen(token));
	sha256_finish(ctx, hex);

	char wal[PATH_MAX + 8];
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	/* While open (the row may still be in the WAL) and after close (checkpointed). */
	for (int closed = 0; closed < 2; closed++) {
		assert_false(file_holds(f->path, token));
		assert_false(file_holds(wal, token));
		assert_false(file_holds(f->path, token + 5)); /* nor its random part */
		assert_true(file_holds(f->path, hex) || file_holds(wal, hex));
		store_close(f->s);
		f->s = NULL;
	}
	fx_open_store(f);
	assert_int_equal(store_token_verify(f->s, token, NULL, &err), 1);
}

static void test_only_a_created_token_verifies(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	char admin[STORE_TOKEN_LEN + 1], ci[STORE_TOKEN_LEN + 1], name[STORE_TOKEN_NAME_MAX + 1];
	assert_int_equal(store_token_create(f->s, "admin", admin, &err), 0);
	assert_int_equal(store_token_create(f->s, "ci-bot@farm", ci, &err), 0);
	assert_string_not_equal(admin, ci);
	assert_int_equal(store_token_verify(f->s, admin, name, &err), 1);
	assert_string_equal(name, "admin");
	assert_int_equal(store_token_verify(f->s, ci, name, &err), 1);
	assert_string_equal(name, "ci-bot@farm");

	char wrong[STORE_TOKEN_LEN + 1];
	memcpy(wrong, admin, sizeof(wrong));
	wrong[STORE_TOKEN_LEN - 1] = wrong[STORE_TOKEN_LEN - 1] == '0' ? '1' : '0';
	assert_int_equal(store_token_verify(f->s, wrong, name, &err), 0);
	assert_string_equal(name, "");
	assert_int_equal(store_token_verify(f->s, "", name, &err), 0);
	assert_int_equal(store_token_verify(f->s, NULL, name, &err), 0);

	assert_int_equal(store_token_create(f->s, "admin", wrong, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "'admin'"));
	assert_string_equal(wrong, "");
	assert_int_equal(store_token_create(f->s, "not a name", wrong, &err), -EINVAL);
	assert_int_equal(store_token_delete(f->s, "admin", &err), 0);
	assert_int_equal(store_token_verify(f->s, admin, name, &err), 0);
	assert_int_equal(store_token_delete(f->s, "admin", &err), -ENOENT);
	assert_int_equal(store_token_verify(f->s, ci, name, &err), 1);
}

/* ---- hosts ---------------------------------------------------------------------------- */

static struct store_host *host_named(struct store_host *hosts, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(hosts[i].name, name))
			return &hosts[i];
	fail_msg("no host '%s'", name);
	return NULL;
}

static void test_hosts_register_beat_and_drain(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	run_of(f->s, "a b c");
	assert_int_equal(store_host_register(f->s, "build1", "http://build1:8080", 4, &err), 0);
	assert_int_equal(store_host_register(f->s, "build2", "http://build2:8080", 2, &err), 0);
	assert_int_equal(store_host_register(f->s, "", "x", 1, &err), -EINVAL);
	store_job_free(claim(f->s, "build1"));

	/* A draining host takes nothing new, even after it registers again. */
	assert_int_equal(
	    store_host_set_state(f->s, "build2", STORE_HOST_DRAINING, T0 + 1800000, &err), 0);
	assert_int_equal(store_host_register(f->s, "build2", "http://build2:9090", 3, &err), 0);
	assert_null(claim(f->s, "build2"));
	assert_string_equal(claim_name(f->s, "build1"), "b");
	assert_int_equal(store_host_set_state(f->s, "ghost", STORE_HOST_UP, 0, &err), -ENOENT);
	assert_int_equal(store_host_heartbeat(f->s, "ghost", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "'ghost'"));

	struct store_host *hosts;
	size_t n;
	assert_int_equal(store_hosts_list(f->s, &hosts, &n, &err), 0);
	assert_int_equal(n, 2);
	struct store_host *b1 = host_named(hosts, n, "build1"),
			  *b2 = host_named(hosts, n, "build2");
	assert_int_equal(b1->running, 2);
	assert_int_equal(b1->capacity, 4);
	assert_int_equal(b1->state, STORE_HOST_UP);
	assert_int_equal(b2->state, STORE_HOST_DRAINING);
	assert_int_equal(b2->drain_deadline_ms, T0 + 1800000);
	assert_string_equal(b2->url, "http://build2:9090");
	assert_int_equal(b2->capacity, 3);
	assert_string_equal(store_host_state_name(b2->state), "draining");
	store_hosts_free(hosts, n);

	/* build1 keeps beating, build2 falls silent: down; a beat brings it back. */
	f->now = T0 + 60000;
	assert_int_equal(store_host_heartbeat(f->s, "build1", &err), 0);
	assert_int_equal(store_hosts_mark_down(f->s, T0 + 30000, &err), 1);
	assert_int_equal(store_hosts_list(f->s, &hosts, &n, &err), 0);
	assert_int_equal(host_named(hosts, n, "build2")->state, STORE_HOST_DOWN);
	assert_int_equal(host_named(hosts, n, "build1")->heartbeat_ms, T0 + 60000);
	store_hosts_free(hosts, n);
	assert_null(claim(f->s, "build2"));
	assert_int_equal(store_host_heartbeat(f->s, "build2", &err), 0);
	assert_string_equal(claim_name(f->s, "build2"), "c");
}

/* ---- artifacts -------------------------------------------------------------------------- */

#define SHA_A "0000000000000000000000000000000000000000000000000000000000000001"
#define SHA_B "00000000000000000000000000000000000000000000000000000000000000b2"

static void test_artifacts_are_indexed_by_path_for_the_current_attempt(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	run_of(f->s, "a");
	struct store_job *a = claim(f->s, "h1");
	assert_int_equal(store_artifact_add(f->s, a->id, 1, "out/app.tar.gz", 10, SHA_A, &err), 0);
	assert_int_equal(store_artifact_add(f->s, a->id, 1, "log.txt", 3, SHA_A, &err), 0);
	const char *bad[] = {"../escape", "/abs", "a/../b", "a//b", "dir/", "", "./x"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		assert_int_equal(store_artifact_add(f->s, a->id, 1, bad[i], 1, SHA_A, &err),
				 -EINVAL);
	assert_int_equal(store_artifact_add(f->s, a->id, 1, "x", 1, "ABC", &err), -EINVAL);

	/* The attempt is lost: it indexes nothing more; the next one replaces its entries. */
	assert_int_equal(store_requeue_expired(f->s, T0 + 60000, &err), 1);
	assert_int_equal(store_artifact_add(f->s, a->id, 1, "late.txt", 1, SHA_A, &err), -ESTALE);
	store_job_free(claim(f->s, "h2"));
	assert_int_equal(store_artifact_add(f->s, a->id, 2, "out/app.tar.gz", 20, SHA_B, &err), 0);

	struct store_artifact *list;
	size_t n;
	assert_int_equal(store_artifacts_list(f->s, a->id, &list, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].path, "log.txt");
	assert_int_equal(list[0].attempt, 1);
	assert_string_equal(list[1].path, "out/app.tar.gz");
	assert_int_equal(list[1].attempt, 2);
	assert_int_equal(list[1].size, 20);
	assert_string_equal(list[1].sha256, SHA_B);
	store_artifacts_free(list, n);
	assert_int_equal(store_artifacts_list(f->s, a->id + 1, &list, &n, &err), -ENOENT);
	store_artifacts_free(list, n);
	store_job_free(a);
}

/* ---- events and times ------------------------------------------------------------------- */

static void test_events_tell_what_happened_to_a_run_in_order(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	int64_t run = run_of(f->s, "a b:a");
	struct store_job *a = claim(f->s, "h1");
	assert_int_equal(store_event_add(f->s, run, a->id, "job.migrated",
					 "{\"from\":\"h1\",\"to\":\"h2\"}", &err),
			 0);
	assert_int_equal(store_job_finish(f->s, a->id, 1, STORE_FAILURE, 2, "make", &err), 0);
	assert_int_equal(store_event_add(f->s, run + 1, 0, "x", NULL, &err), -ENOENT);
	assert_int_equal(store_event_add(f->s, run, 0, "x", "[1]", &err), -EINVAL);

	struct store_event *ev;
	size_t n;
	assert_int_equal(store_events_list(f->s, run, 0, 0, &ev, &n, &err), 0);
	const char *kinds[] = {"run.created", "job.started", "job.migrated", "job.finished",
			       "run.finished"};
	assert_int_equal(n, ARRAY_LEN(kinds));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(ev[i].kind, kinds[i]);
	assert_int_equal(ev[0].job_id, 0);
	assert_int_equal(ev[1].job_id, a->id);
	assert_non_null(strstr(ev[1].data_json, "\"host\":\"h1\""));
	assert_non_null(strstr(ev[3].data_json, "\"failed_step\":\"make\""));
	assert_non_null(strstr(ev[4].data_json, "\"status\":\"failure\""));
	int64_t after = ev[2].id;
	store_events_free(ev, n);
	assert_int_equal(store_events_list(f->s, run, after, 1, &ev, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].kind, "job.finished");
	store_events_free(ev, n);
	store_job_free(a);
}

static void test_times_are_shown_in_rfc3339_utc(void **state)
{
	char text[STORE_TIME_LEN];
	store_time_format(T0 + 123, text);
	assert_string_equal(text, "2026-05-01T00:00:00.123Z");
	store_time_format(T0 + 86399999, text);
	assert_string_equal(text, "2026-05-01T23:59:59.999Z");
	store_time_format(0, text);
	assert_string_equal(text, "");
	enum store_status st;
	for (int i = STORE_QUEUED; i <= STORE_SKIPPED; i++) {
		assert_int_equal(store_status_parse(store_status_name(i), &st, NULL), 0);
		assert_int_equal(st, i);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
	    T(test_a_token_is_stored_only_as_its_hash),
	    T(test_only_a_created_token_verifies),
	    T(test_hosts_register_beat_and_drain),
	    T(test_artifacts_are_indexed_by_path_for_the_current_attempt),
	    T(test_events_tell_what_happened_to_a_run_in_order),
	    cmocka_unit_test(test_times_are_shown_in_rfc3339_utc),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
