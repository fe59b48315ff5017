/*
 * A run followed from a client (runner/remote): the API's answers, as a
 * server gives them poll after poll, turned into the sink's events in the
 * executor's order, each once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pipelines/pipelines.h"
#include "runner/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The server: the answer for each path, as JSON text (or raw bytes for logs). */
struct fake {
	const char *paths[8];
	const char *answers[8];
	int gets;
};

static const char *answer(struct fake *f, const char *path)
{
	for (size_t i = 0; i < ARRAY_LEN(f->paths) && f->paths[i]; i++)
		if (!strcmp(f->paths[i], path))
			return f->answers[i];
	fail_msg("unexpected GET %s", path);
	return NULL;
}

static int get_json(void *ctx, const char *path, json_t **out)
{
	struct fake *f = ctx;
	f->gets++;
	*out = json_loads(answer(f, path), 0, NULL);
	assert_non_null(*out);
	return 0;
}

static int get_bytes(void *ctx, const char *path, struct buf *out)
{
	const char *text = answer(ctx, path);
	buf_append(out, text, strlen(text));
	return 0;
}

/* The sink writes one line per event. */
static void ev(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ev(struct buf *b, const char *fmt, ...)
{
	char line[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	buf_append(b, line, strlen(line));
	buf_append(b, "\n", 1);
}

static void job_started(void *ctx, size_t job, int attempt)
{
	ev(ctx, "%zu started %d", job, attempt);
}
static void step_started(void *ctx, size_t job, size_t step)
{
	ev(ctx, "%zu step %zu", job, step);
}
static void output(void *ctx, size_t job, size_t step, int stream, const void *data, size_t len)
{
	ev(ctx, "%zu output %zu: %.*s", job, step, (int)len, (const char *)data);
}
static void step_finished(void *ctx, size_t job, size_t step, const struct runner_step_result *r)
{
	ev(ctx, "%zu step %zu %s %s", job, step, runner_result_name(r->result), r->how);
}
static void job_retrying(void *ctx, size_t job, int attempt, const char *why)
{
	ev(ctx, "%zu retrying %d: %s", job, attempt, why);
}
static void job_finished(void *ctx, size_t job, const struct runner_job_result *r)
{
	ev(ctx, "%zu %s step %ld how '%s' attempts %d %lldms%s%s", job,
	   runner_result_name(r->result), r->failed_step, r->how, r->attempts,
	   (long long)r->duration_ms, r->error[0] ? " error: " : "", r->error);
}

static struct runner_sink sink_of(struct buf *events)
{
	return (struct runner_sink){.ctx = events,
				    .job_started = job_started,
				    .step_started = step_started,
				    .output = output,
				    .step_finished = step_finished,
				    .job_retrying = job_retrying,
				    .job_finished = job_finished};
}

#define T0 "\"2026-05-01T12:00:00.000Z\""
#define T1 "\"2026-05-01T12:00:01.250Z\""
#define T2 "\"2026-05-01T12:00:03.000Z\""

static const char run_done[] =
    "{\"id\": 7, \"repo\": \"widget\", \"ref\": \"refs/heads/main\", \"status\": \"failure\","
    " \"created_at\": " T0 ", \"finished_at\": " T2 ", \"jobs\": ["
    " {\"id\": 11, \"name\": \"build\", \"image\": \"busybox-x86_64\", \"status\": \"success\","
    "  \"attempt\": 1},"
    " {\"id\": 12, \"name\": \"lint\", \"image\": \"busybox-x86_64\", \"status\": \"failure\","
    "  \"attempt\": 1},"
    " {\"id\": 13, \"name\": \"test\", \"image\": \"busybox-x86_64\", \"status\": \"skipped\","
    "  \"attempt\": 0}]}";

static const char build_done[] =
    "{\"id\": 11, \"status\": \"success\", \"attempt\": 1, \"exit_code\": 0,"
    " \"started_at\": " T0 ", \"finished_at\": " T1 ", \"attempts\": [{\"number\": 1,"
    " \"status\": \"success\", \"reason\": \"\", \"log_start\": 0, \"log_end\": 10, \"steps\": ["
    "  {\"index\": 0, \"name\": \"fetch\", \"status\": \"success\", \"exit_code\": 0},"
    "  {\"index\": 1, \"name\": \"make\", \"status\": \"success\", \"exit_code\": 0}]}]}";

static const char lint_done[] =
    "{\"id\": 12, \"status\": \"failure\", \"attempt\": 1, \"exit_code\": 7,"
    " \"failed_step\": \"check\", \"started_at\": " T0 ", \"finished_at\": " T2 ","
    " \"attempts\": [{\"number\": 1, \"status\": \"failure\", \"reason\": \"\","
    " \"log_start\": 0, \"log_end\": 14, \"steps\": ["
    "  {\"index\": 0, \"name\": \"check\", \"status\": \"failure\", \"exit_code\": 7}]}]}";

static void test_a_finished_run_sends_every_event_in_the_executors_order(void **state)
{
	struct fake f = {
	    .paths = {"/api/v1/jobs/11", "/api/v1/jobs/12", "/api/v1/jobs/12/log?offset=0"},
	    .answers = {build_done, lint_done, "about to fail\n"}};
	struct remote_api api = {.ctx = &f, .get_json = get_json, .get_bytes = get_bytes};
	json_t *run = json_loads(run_done, 0, NULL);
	struct remote_run *r = NULL;
	struct vmci_err err = {0};
	assert_int_equal(remote_run_new(run, &r, &err), 0);
	const struct pipe_run *p = remote_run_pipeline(r);
	assert_string_equal(p->name, "widget #7");
	assert_int_equal(p->n_jobs, 3);
	assert_string_equal(p->jobs[2].name, "test");
	assert_string_equal(p->jobs[2].image, "busybox-x86_64");

	struct buf events = {0};
	struct runner_sink sink = sink_of(&events);
	assert_int_equal(remote_run_update(r, run, &api, &sink), 0);
	assert_string_equal(
	    buf_cstr(&events),
	    "0 started 1\n"
	    "0 step 0\n"
	    "0 step 0 passed exited 0\n"
	    "0 step 1\n"
	    "0 step 1 passed exited 0\n"
	    "0 passed step -1 how 'exited 0' attempts 1 1250ms\n"
	    "1 started 1\n"
	    "1 step 0\n"
	    "1 output 0: about to fail\n\n"
	    "1 step 0 failed exited 7\n"
	    "1 failed step 0 how 'exited 7' attempts 1 3000ms\n"
	    "2 skipped step -1 how 'a job it needs did not succeed' attempts 0 0ms\n");
	/* The steps were learnt by name. */
	assert_int_equal(p->jobs[0].n_steps, 2);
	assert_string_equal(p->jobs[0].steps[1].name, "make");
	assert_true(remote_run_finished(run));
	assert_int_equal(remote_run_elapsed_ms(run), 3000);

	/* Seen again: nothing new, and no more requests. */
	events.len = 0;
	f.gets = 0;
	assert_int_equal(remote_run_update(r, run, &api, &sink), 0);
	assert_int_equal(events.len, 0);
	assert_int_equal(f.gets, 0);
	buf_free(&events);
	json_decref(run);
	remote_run_free(r);
}

static const char run_one[] =
    "{\"id\": 8, \"repo\": \"widget\", \"status\": \"%s\", \"jobs\": ["
    " {\"id\": 21, \"name\": \"build\", \"image\": \"busybox-x86_64\", \"status\": \"%s\","
    "  \"attempt\": %d}]}";

/* One poll: the run with its one job at status and attempt, and the job's detail. */
static void poll(struct remote_run *r, struct buf *events, const char *status, int attempt,
		 const char *detail)
{
	char text[600];
	bool done = strcmp(status, "queued") && strcmp(status, "running");
	snprintf(text, sizeof(text), run_one, done ? status : "running", status, attempt);
	struct fake f = {.paths = {"/api/v1/jobs/21"}, .answers = {detail}};
	struct remote_api api = {.ctx = &f, .get_json = get_json, .get_bytes = get_bytes};
	struct runner_sink sink = sink_of(events);
	json_t *run = json_loads(text, 0, NULL);
	assert_non_null(run);
	assert_int_equal(remote_run_update(r, run, &api, &sink), 0);
	json_decref(run);
}

/* The model of run_one with its job at status and attempt. */
static struct remote_run *model_of_one(const char *status, int attempt)
{
	char text[600];
	snprintf(text, sizeof(text), run_one, status, status, attempt);
	json_t *run = json_loads(text, 0, NULL);
	struct remote_run *r = NULL;
	struct vmci_err err = {0};
	assert_int_equal(remote_run_new(run, &r, &err), 0);
	json_decref(run);
	return r;
}

static void test_each_change_is_sent_once_across_polls_and_a_lost_attempt_retries(void **state)
{
	struct remote_run *r = model_of_one("queued", 0);
	struct buf events = {0};

	poll(r, &events, "queued", 0, NULL);
	assert_int_equal(events.len, 0);
	poll(r, &events, "running", 1,
	     "{\"id\": 21, \"status\": \"running\", \"attempt\": 1, \"attempts\": [{\"number\": 1,"
	     " \"status\": \"running\", \"steps\": [{\"index\": 0, \"name\": \"make\","
	     " \"status\": \"running\", \"exit_code\": -1}]}]}");
	assert_string_equal(buf_cstr(&events), "0 started 1\n0 step 0\n");
	events.len = 0;
	/* The host died: the attempt ended, the job is queued again, then claimed. */
	poll(r, &events, "queued", 1, NULL);
	assert_int_equal(events.len, 0);
	poll(r, &events, "running", 2,
	     "{\"id\": 21, \"status\": \"running\", \"attempt\": 2, \"attempts\": ["
	     " {\"number\": 1, \"status\": \"error\", \"reason\": \"host restarted\", \"steps\": ["
	     "  {\"index\": 0, \"name\": \"make\", \"status\": \"running\", \"exit_code\": -1}]},"
	     " {\"number\": 2, \"status\": \"running\", \"steps\": []}]}");
	assert_string_equal(buf_cstr(&events), "0 retrying 1: host restarted\n0 started 2\n");
	events.len = 0;
	/* A failed step of a job that is still ending waits for the job. */
	const char *failing =
	    "{\"id\": 21, \"status\": \"%s\", \"attempt\": 2, \"exit_code\": %d,"
	    " \"failed_step\": %s, \"attempts\": [{\"number\": 1, \"status\": \"error\","
	    " \"steps\": []}, {\"number\": 2, \"status\": \"%s\", \"log_start\": 5, \"log_end\": 9,"
	    " \"steps\": [{\"index\": 0, \"name\": \"make\", \"status\": \"failure\","
	    " \"exit_code\": 2}]}]}";
	char detail[800];
	snprintf(detail, sizeof(detail), failing, "running", -1, "null", "running");
	poll(r, &events, "running", 2, detail);
	assert_string_equal(buf_cstr(&events), "0 step 0\n");
	events.len = 0;
	snprintf(detail, sizeof(detail), failing, "failure", 2, "\"make\"", "failure");
	char text2[600];
	snprintf(text2, sizeof(text2), run_one, "failure", "failure", 2);
	struct fake f = {.paths = {"/api/v1/jobs/21", "/api/v1/jobs/21/log?offset=5"},
			 .answers = {detail, "oops\nmore than the attempt's bytes"}};
	struct remote_api api = {.ctx = &f, .get_json = get_json, .get_bytes = get_bytes};
	struct runner_sink sink = sink_of(&events);
	json_t *run = json_loads(text2, 0, NULL);
	assert_int_equal(remote_run_update(r, run, &api, &sink), 0);
	json_decref(run);
	assert_string_equal(buf_cstr(&events), "0 output 0: oops\n"
					       "0 step 0 failed exited 2\n"
					       "0 failed step 0 how 'exited 2' attempts 2 0ms\n");
	buf_free(&events);
	remote_run_free(r);
}

static void test_an_error_names_its_reason_and_where_its_log_is(void **state)
{
	struct remote_run *r = model_of_one("error", 3);
	struct buf events = {0};
	poll(r, &events, "error", 3,
	     "{\"id\": 21, \"status\": \"error\", \"attempt\": 3, \"attempts\": [{\"number\": 3,"
	     " \"status\": \"error\", \"reason\": \"lease expired\", \"steps\": []}]}");
	assert_string_equal(buf_cstr(&events),
			    "0 started 3\n0 error step -1 how 'error' attempts 3 0ms error: lease "
			    "expired (its log: vmci logs 21)\n");
	buf_free(&events);
	remote_run_free(r);
}

static void test_api_times_are_read_to_the_millisecond(void **state)
{
	json_t *t = json_string("1970-01-02T00:00:01.5Z");
	assert_int_equal(remote_time_ms(t), 86401500);
	json_decref(t);
	t = json_string("yesterday");
	assert_int_equal(remote_time_ms(t), 0);
	json_decref(t);
	assert_int_equal(remote_time_ms(json_null()), 0);
}

static void test_an_answer_that_is_not_a_run_is_refused(void **state)
{
	json_t *j = json_loads("{\"error\": \"x\"}", 0, NULL);
	struct remote_run *r = NULL;
	struct vmci_err err = {0};
	assert_int_equal(remote_run_new(j, &r, &err), -EINVAL);
	assert_null(r);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_finished_run_sends_every_event_in_the_executors_order),
	    cmocka_unit_test(test_each_change_is_sent_once_across_polls_and_a_lost_attempt_retries),
	    cmocka_unit_test(test_an_error_names_its_reason_and_where_its_log_is),
	    cmocka_unit_test(test_api_times_are_read_to_the_millisecond),
	    cmocka_unit_test(test_an_answer_that_is_not_a_run_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
