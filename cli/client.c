/* The client commands' HTTP requests to `vmci serve`, with libcurl. */
#include "cli/client.h"
#include "cli/cli.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int client_init(struct client *c, const char *server, const char *token_file)
{
	memset(c, 0, sizeof(*c));
	if (!server || !*server)
		server = getenv("VMCI_SERVER");
	snprintf(c->server, sizeof(c->server), "%s",
		 server && *server ? server : CLIENT_DEFAULT_SERVER);
	size_t n = strlen(c->server);
	while (n && c->server[n - 1] == '/')
		c->server[--n] = 0;
	const char *token = getenv("VMCI_TOKEN");
	if (token_file) {
		struct buf b = {0};
		struct vmci_err err = {0};
		if (fs_read_file(token_file, 4096, &b, &err)) {
			cli_error("%s", err.msg);
			return EXIT_USAGE;
		}
		snprintf(c->token, sizeof(c->token), "%s", buf_cstr(&b));
		buf_free(&b);
		c->token[strcspn(c->token, "\r\n \t")] = 0;
	} else if (token) {
		snprintf(c->token, sizeof(c->token), "%s", token);
	}
	return 0;
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
	return buf_append(ctx, data, size * n) ? 0 : size * n;
}

int client_request(const struct client *c, const char *method, const char *path, const char *body,
		   long *status, struct buf *out)
{
	CURL *curl = curl_easy_init();
	if (!curl) {
		cli_error("cannot start libcurl");
		return EXIT_INFRA;
	}
	char url[1024], auth[300];
	snprintf(url, sizeof(url), "%s%s", c->server, path);
	struct curl_slist *headers = NULL;
	if (c->token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
		headers = curl_slist_append(headers, auth);
	}
	if (body)
		headers = curl_slist_append(headers, "Content-Type: application/json");
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	if (body)
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	else if (!strcmp(method, "POST"))
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
	CURLcode rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	if (rc != CURLE_OK) {
		cli_error("cannot reach the vmci server at %s: %s (is 'vmci serve' running? set "
			  "--server or VMCI_SERVER)",
			  c->server, curl_easy_strerror(rc));
		return EXIT_INFRA;
	}
	return 0;
}

int client_json(const struct client *c, const char *cmd, const char *method, const char *path,
		json_t *body, json_t **out)
{
	*out = NULL;
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	struct buf b = {0};
	long status = 0;
	int rc = client_request(c, method, path, text, &status, &b);
	free(text);
	if (rc) {
		buf_free(&b);
		return rc;
	}
	json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
	buf_free(&b);
	if (status >= 200 && status < 300 && j) {
		*out = j;
		return 0;
	}
	const char *msg = json_string_value(json_object_get(j, "error"));
	cli_error("%s: the server answered %ld: %s", cmd, status, msg ? msg : "(no message)");
	json_decref(j);
	return status >= 400 && status < 500 ? EXIT_USAGE : EXIT_INFRA;
}

/* ---- event streams --------------------------------------------------------------------- */

struct stream {
	CURL *curl;
	struct sse_parser parser;
	sse_event_fn fn;
	void *ctx;
	int stopped; /* what fn returned, when not 0 */
	struct buf *err_body;
};

static size_t on_stream(char *data, size_t size, size_t n, void *arg)
{
	struct stream *st = arg;
	long status = 0;
	curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return buf_append(st->err_body, data, size * n) ? 0 : size * n;
	int rc = sse_parse(&st->parser, data, size * n, st->fn, st->ctx);
	if (rc) {
		st->stopped = rc;
		return 0; /* ends the transfer */
	}
	return size * n;
}

int client_stream(const struct client *c, const char *path, const char *last_event_id,
		  sse_event_fn fn, void *ctx, long *status, struct buf *err_body)
{
	*status = 0;
	struct stream st = {.curl = curl_easy_init(), .fn = fn, .ctx = ctx, .err_body = err_body};
	if (!st.curl)
		return EXIT_INFRA;
	char url[1024], auth[300], resume[128];
	snprintf(url, sizeof(url), "%s%s", c->server, path);
	struct curl_slist *headers = curl_slist_append(NULL, "Accept: text/event-stream");
	if (c->token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
		headers = curl_slist_append(headers, auth);
	}
	if (last_event_id) {
		snprintf(resume, sizeof(resume), "Last-Event-ID: %s", last_event_id);
		headers = curl_slist_append(headers, resume);
	}
	curl_easy_setopt(st.curl, CURLOPT_URL, url);
	curl_easy_setopt(st.curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(st.curl, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(st.curl, CURLOPT_WRITEDATA, &st);
	curl_easy_setopt(st.curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(st.curl, CURLOPT_CONNECTTIMEOUT, 10L);
	/* Silence past four keep-alives: the connection is gone, whatever TCP thinks. */
	curl_easy_setopt(st.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(st.curl, CURLOPT_LOW_SPEED_TIME, 60L);
	CURLcode rc = curl_easy_perform(st.curl);
	curl_easy_getinfo(st.curl, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(st.curl);
	sse_parser_free(&st.parser);
	if (st.stopped)
		return st.stopped;
	return rc == CURLE_OK ? 0 : EXIT_INFRA;
}

int client_post_by_id(int argc, char **argv, const char *cmd, const char *usage,
		      const char *operand, const char *path_fmt, const char *noun)
{
	const char *server = NULL;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the server (default $VMCI_SERVER)"},
	    {0},
	};
	char what[64];
	snprintf(what, sizeof(what), "%s id", operand);
	const char *id = NULL;
	int rc;
	if (!cli_parse_operand(argc, argv, opts, usage, what, &id, &rc))
		return rc;
	struct client c;
	rc = client_init(&c, server, NULL);
	char path[128];
	snprintf(path, sizeof(path), path_fmt, id);
	json_t *answer = NULL;
	if (!rc)
		rc = client_json(&c, cmd, "POST", path, NULL, &answer);
	if (!rc)
		fprintf(stderr, "%s %s: %s\n", noun, id,
			json_string_value(json_object_get(answer, "status")));
	json_decref(answer);
	return rc;
}
