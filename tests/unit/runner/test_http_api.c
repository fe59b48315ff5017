/*
 * The service's API (runner/http) over real HTTP on loopback and a real
 * store: tokens, JSON errors with their statuses, body limits, logs from
 * an offset, and a log stream resumed from an offset.
 */
#include "store_helpers.h"

#include "runner/http.h"

#include <curl/curl.h>
#include <jansson.h>

struct ctx {
	struct fx *f;
	struct http_server *srv;
	char token[STORE_TOKEN_LEN + 1];
	char base[64];
	struct service_config cfg;
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	fx_setup((void **)&c->f);
	struct vmci_err err = {0};
	assert_int_equal(store_token_create(c->f->s, "t", c->token, &err), 0);
	struct http_opts o = {.listen = "127.0.0.1:0",
			      .db_url = c->f->url,
			      .config = &c->cfg,
			      .host = "test",
			      .max_body = 1024};
	if (http_start(&o, &c->srv, &err))
		fail_msg("http_start: %s", err.msg);
	snprintf(c->base, sizeof(c->base), "http://127.0.0.1:%d", http_port(c->srv));
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	http_stop(c->srv);
	fx_teardown((void **)&c->f);
	free(c);
	return 0;
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
	buf_append(ctx, data, size * n);
	return size * n;
}

/* One request; returns the status, body into out. token: NULL none, "" the valid one. */
static long request(struct ctx *c, const char *method, const char *path, const char *token,
		    const char *body, const char *header, struct buf *out)
{
	CURL *curl = curl_easy_init();
	char url[256], auth[200];
	snprintf(url, sizeof(url), "%s%s", c->base, path);
	struct curl_slist *h = NULL;
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", *token ? token : c->token);
		h = curl_slist_append(h, auth);
	}
	if (header)
		h = curl_slist_append(h, header);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
	if (body)
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	long status = 0;
	assert_int_equal(curl_easy_perform(curl), CURLE_OK);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(curl);
	return status;
}

/* Asserts the answer's status and that its body is {"error": "..."}. */
static void expect_error(struct ctx *c, long want, const char *method, const char *path,
			 const char *token, const char *body)
{
	struct buf out = {0};
	long got = request(c, method, path, token, body, NULL, &out);
	json_t *j = json_loadb((const char *)out.data, out.len, 0, NULL);
	if (got != want || !json_is_string(json_object_get(j, "error")))
		fail_msg("%s %s: want %ld with a JSON error, got %ld: %s", method, path, want, got,
			 buf_cstr(&out));
	json_decref(j);
	buf_free(&out);
}

static void test_missing_and_wrong_tokens_are_401(void **state)
{
	struct ctx *c = *state;
	expect_error(c, 401, "GET", "/api/v1/runs", NULL, NULL);
	expect_error(c, 401, "GET", "/api/v1/runs", "vmci_wrong", NULL);
	expect_error(c, 401, "POST", "/api/v1/runs", "vmci_wrong", "{}");
	struct buf out = {0};
	assert_int_equal(request(c, "GET", "/api/v1/runs", "", NULL, NULL, &out), 200);
	buf_free(&out);
}

static void test_bad_requests_are_400_and_unknown_ids_404(void **state)
{
	struct ctx *c = *state;
	expect_error(c, 400, "POST", "/api/v1/runs", "", "{\"repo\": ");
	expect_error(c, 400, "POST", "/api/v1/runs", "", "[1]");
	expect_error(c, 404, "POST", "/api/v1/runs", "", "{\"repo\": \"unknown\"}");
	expect_error(c, 404, "GET", "/api/v1/runs/77", "", NULL);
	expect_error(c, 404, "POST", "/api/v1/runs/77/cancel", "", NULL);
	expect_error(c, 404, "GET", "/api/v1/jobs/77", "", NULL);
	expect_error(c, 404, "GET", "/api/v1/jobs/77/log", "", NULL);
	expect_error(c, 404, "GET", "/api/v1/jobs/77/log/stream", "", NULL);
	expect_error(c, 404, "GET", "/api/v1/jobs/77/artifacts", "", NULL);
	expect_error(c, 404, "POST", "/api/v1/jobs/77/retry", "", NULL);
	expect_error(c, 404, "GET", "/api/v1/nothing", "", NULL);
	expect_error(c, 400, "GET", "/api/v1/runs?status=bogus", "", NULL);
}

static void test_a_body_over_the_limit_is_413(void **state)
{
	struct ctx *c = *state;
	char big[4096];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	expect_error(c, 413, "POST", "/api/v1/runs", "", big);
}

/* A run whose one job succeeded with log as its first attempt's log (store_job_free). */
static struct store_job *finished_job_with_log(struct store *s, const char *log)
{
	run_of(s, "a");
	struct store_job *job = NULL;
	struct vmci_err err = {0};
	assert_int_equal(store_claim(s, "h", 60, &job, &err), 1);
	assert_true(store_log_append(s, job->id, 1, log, strlen(log), &err) > 0);
	assert_int_equal(store_job_finish(s, job->id, 1, STORE_SUCCESS, 0, NULL, &err), 0);
	return job;
}

static void test_log_reads_from_an_offset_and_the_stream_resumes(void **state)
{
	struct ctx *c = *state;
	const char *text = "line one\nline two\nthree";
	struct store_job *job = finished_job_with_log(c->f->s, text);
	char path[128];
	struct buf out = {0};
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld/log?offset=5", (long long)job->id);
	assert_int_equal(request(c, "GET", path, "", NULL, NULL, &out), 200);
	assert_string_equal(buf_cstr(&out), text + 5);
	buf_free(&out);
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld/log/stream", (long long)job->id);
	assert_int_equal(request(c, "GET", path, "", NULL, "Last-Event-ID: 9", &out), 200);
	const char *want = "id: 23\ndata: line two\ndata: three\n\nevent: end\nid: 23\ndata: "
			   "success\n\n";
	assert_string_equal(buf_cstr(&out), want);
	buf_free(&out);
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld/log?offset=99", (long long)job->id);
	expect_error(c, 400, "GET", path, "", NULL);
	store_job_free(job);
}

static int reassemble(void *ctx, const struct sse_event *ev)
{
	int64_t *offset = ((void **)ctx)[0];
	struct buf *bytes = ((void **)ctx)[1];
	if (!strcmp(ev->type, "message"))
		assert_int_equal(sse_event_bytes(ev, offset, bytes), 0);
	return 0;
}

static void test_the_stream_gives_back_carriage_returns_exactly(void **state)
{
	struct ctx *c = *state;
	const char *text = "10%\r50%\r100%\r\ndone\nCRLF line\r\n\r";
	struct store_job *job = finished_job_with_log(c->f->s, text);
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld/log/stream", (long long)job->id);
	struct buf out = {0};
	assert_int_equal(request(c, "GET", path, "", NULL, "Last-Event-ID: 2", &out), 200);
	/* Every "\r" of the log would end an SSE line: none may be on the wire. */
	assert_null(memchr(out.data, '\r', out.len));
	int64_t offset = 2;
	struct buf bytes = {0};
	void *ctx[2] = {&offset, &bytes};
	struct sse_parser p = {0};
	assert_int_equal(sse_parse(&p, out.data, out.len, reassemble, ctx), 0);
	sse_parser_free(&p);
	assert_string_equal(buf_cstr(&bytes), text + 2);
	assert_int_equal(offset, strlen(text));
	buf_free(&bytes);
	buf_free(&out);
	store_job_free(job);
}

/* Restarts the server of c with public_read as given. */
static void restart(struct ctx *c, bool public_read)
{
	http_stop(c->srv);
	c->cfg.public_read = public_read;
	struct vmci_err err = {0};
	struct http_opts o = {
	    .listen = "127.0.0.1:0", .db_url = c->f->url, .config = &c->cfg, .host = "test"};
	if (http_start(&o, &c->srv, &err))
		fail_msg("http_start: %s", err.msg);
	snprintf(c->base, sizeof(c->base), "http://127.0.0.1:%d", http_port(c->srv));
}

static void test_public_read_answers_reads_without_a_token_and_no_write(void **state)
{
	struct ctx *c = *state;
	int64_t run_id = 0, job_id = 0;
	struct vmci_err err = {0};
	struct store_job_spec spec = {.name = "build", .image = "busybox-x86_64"};
	struct store_run_spec rs = {.repo = "widget", .ref = "refs/heads/main", .trigger = "api"};
	assert_int_equal(store_run_create(c->f->s, &rs, &spec, 1, &run_id, &err), 0);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(c->f->s, run_id, &run, &err), 0);
	job_id = run->jobs[0].id;
	store_run_free(run);
	char runs[64], one[64], job[64], log[64], arts[64], cancel[64], retry[64];
	snprintf(runs, sizeof(runs), "/api/v1/runs");
	snprintf(one, sizeof(one), "/api/v1/runs/%lld", (long long)run_id);
	snprintf(job, sizeof(job), "/api/v1/jobs/%lld", (long long)job_id);
	snprintf(log, sizeof(log), "/api/v1/jobs/%lld/log", (long long)job_id);
	snprintf(arts, sizeof(arts), "/api/v1/jobs/%lld/artifacts", (long long)job_id);
	snprintf(cancel, sizeof(cancel), "/api/v1/runs/%lld/cancel", (long long)run_id);
	snprintf(retry, sizeof(retry), "/api/v1/jobs/%lld/retry", (long long)job_id);
	const char *reads[] = {runs, one, job, log, arts};

	/* Off (the default): every read needs a token. */
	for (size_t i = 0; i < ARRAY_LEN(reads); i++)
		expect_error(c, 401, "GET", reads[i], NULL, NULL);

	restart(c, true);
	for (size_t i = 0; i < ARRAY_LEN(reads); i++) {
		struct buf out = {0};
		long got = request(c, "GET", reads[i], NULL, NULL, NULL, &out);
		if (got != 200)
			fail_msg("GET %s without a token: %ld %s", reads[i], got, buf_cstr(&out));
		buf_free(&out);
	}
	/* The stream too: its first bytes come without a token. */
	struct buf out = {0};
	char stream[80];
	snprintf(stream, sizeof(stream), "/api/v1/jobs/%lld/log/stream", (long long)job_id);
	CURL *curl = curl_easy_init();
	char url[256];
	snprintf(url, sizeof(url), "%s%s", c->base, stream);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 1500L); /* the job never ends: cut it */
	curl_easy_perform(curl);
	long status = 0;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(curl);
	assert_int_equal(status, 200);
	buf_free(&out);

	/* A wrong token is still refused, and every write still needs a good one. */
	expect_error(c, 401, "GET", runs, "vmci_wrong", NULL);
	expect_error(c, 401, "POST", "/api/v1/runs", NULL, "{\"repo\": \"widget\"}");
	expect_error(c, 401, "POST", cancel, NULL, NULL);
	expect_error(c, 401, "POST", retry, NULL, NULL);
	struct store_job *j = NULL;
	assert_int_equal(store_job_get(c->f->s, job_id, &j, &err), 0);
	assert_int_equal(j->status, STORE_QUEUED); /* the refused cancel did nothing */
	store_job_free(j);
	struct buf ok = {0};
	assert_int_equal(request(c, "POST", cancel, "", NULL, NULL, &ok), 200);
	buf_free(&ok);
}

static void test_healthz_needs_no_token(void **state)
{
	struct ctx *c = *state;
	struct buf out = {0};
	assert_int_equal(request(c, "GET", "/healthz", NULL, NULL, NULL, &out), 200);
	assert_non_null(strstr(buf_cstr(&out), "\"db\":\"ok\""));
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_missing_and_wrong_tokens_are_401, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_requests_are_400_and_unknown_ids_404, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_body_over_the_limit_is_413, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_reads_from_an_offset_and_the_stream_resumes,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_the_stream_gives_back_carriage_returns_exactly,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_healthz_needs_no_token, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_public_read_answers_reads_without_a_token_and_no_write, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
