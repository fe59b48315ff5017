/*
 * The HTTP daemon: a thread per connection (log streams block in their
 * reader), bodies read whole up to max_body, bearer tokens checked
 * against the store before any /api/ route runs.
 */
#include "runner/http/internal.h"
#include "runner/git_source.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum MHD_Result http_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		text = strdup("{\"error\": \"out of memory\"}");
	if (!text)
		return MHD_NO;
	size_t len = strlen(text);
	text[len] = 0;
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result http_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return http_json(c, status, json_pack("{s:s}", "error", msg));
}

unsigned http_status_of(int code)
{
	switch (code < 0 ? -code : code) {
	case ENOENT:
		return MHD_HTTP_NOT_FOUND;
	case EINVAL:
		return MHD_HTTP_BAD_REQUEST;
	case EBUSY:
	case EEXIST:
		return MHD_HTTP_CONFLICT;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/*
 * 0 when the request carries a valid token, or may go without one (a
 * read of a service with public_read; a token it does carry is still
 * checked, so that a wrong one is found before a write); else the 401
 * was queued into *ret.
 */
static int authenticate(struct http_server *srv, struct MHD_Connection *c, const char *method,
			enum MHD_Result *ret)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!auth && !strcmp(method, "GET") && srv->o.config && srv->o.config->public_read)
		return 0;
	if (!auth || strncasecmp(auth, "Bearer ", 7)) {
		*ret =
		    http_error(c, MHD_HTTP_UNAUTHORIZED,
			       "missing token: send 'Authorization: Bearer TOKEN' (make one with "
			       "vmci token create NAME)");
		return -1;
	}
	const char *token = auth + 7;
	while (*token == ' ')
		token++;
	struct vmci_err err = {0};
	int rc = store_token_verify(srv->store, token, NULL, &err);
	if (rc == 1)
		return 0;
	if (rc < 0)
		*ret = http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot check the token: %s",
				  err.msg);
	else
		*ret = http_error(c, MHD_HTTP_UNAUTHORIZED,
				  "invalid token (it was deleted, or mistyped)");
	return -1;
}

static enum MHD_Result healthz(struct http_server *srv, struct MHD_Connection *c)
{
	struct vmci_err err = {0};
	bool db = store_schema_version(srv->store, &err) >= 0;
	return http_json(c, db ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
			 json_pack("{s:b, s:s, s:s}", "ok", db, "host",
				   srv->o.host ? srv->o.host : "", "db", db ? "ok" : err.msg));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct http_server *srv = cls;
	struct http_request *req = *con_cls;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t max = srv->o.max_body ? srv->o.max_body : HTTP_DEFAULT_MAX_BODY;
		if (req->too_big || req->body.len + *upload_data_size > max) {
			req->too_big = true;
			buf_free(&req->body);
		} else if (buf_append(&req->body, upload_data, *upload_data_size)) {
			return MHD_NO;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!strcmp(url, "/healthz"))
		return healthz(srv, c);
	if (strncmp(url, "/api/v1/", 8))
		return http_error(c, MHD_HTTP_NOT_FOUND,
				  "no such path: %s (the API is under /api/v1/)", url);
	enum MHD_Result ret = MHD_NO;
	if (authenticate(srv, c, method, &ret))
		return ret;
	if (req->too_big)
		return http_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body over %zu bytes",
				  srv->o.max_body ? srv->o.max_body : HTTP_DEFAULT_MAX_BODY);
	return http_api(srv, c, method, url + 7, req);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_request *req = *con_cls;
	if (!req)
		return;
	buf_free(&req->body);
	free(req);
	*con_cls = NULL;
}

static int parse_listen(const char *listen, struct sockaddr_in *sa, struct vmci_err *err)
{
	char addr[64];
	const char *colon = strrchr(listen, ':');
	char *end = NULL;
	long port = colon ? strtol(colon + 1, &end, 10) : -1;
	if (!colon || (size_t)(colon - listen) >= sizeof(addr) || !end || *end || port < 0 ||
	    port > 65535)
		return vmci_err_set(err, EINVAL, "listen address '%s' is not ADDR:PORT", listen);
	snprintf(addr, sizeof(addr), "%.*s", (int)(colon - listen), listen);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (!strcmp(addr, "localhost"))
		snprintf(addr, sizeof(addr), "127.0.0.1");
	if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1)
		return vmci_err_set(err, EINVAL, "listen address '%s': '%s' is not an IPv4 address",
				    listen, addr);
	return 0;
}

int http_start(const struct http_opts *opts, struct http_server **out, struct vmci_err *err)
{
	*out = NULL;
	struct sockaddr_in sa;
	int rc = parse_listen(opts->listen, &sa, err);
	if (rc)
		return rc;
	struct http_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return vmci_err_set(err, ENOMEM, "out of memory");
	srv->o = *opts;
	rc = store_open(opts->db_url, &srv->store, err);
	if (rc) {
		free(srv);
		return rc;
	}
	git_source_hold(); /* triggers fetch on the connection threads */
	srv->daemon =
	    MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
			     NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR,
			     (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
	if (!srv->daemon) {
		int e = errno ? errno : EADDRINUSE;
		git_source_release();
		store_close(srv->store);
		free(srv);
		return vmci_err_errno(err, e, "cannot listen on %s", opts->listen);
	}
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = info ? info->port : ntohs(sa.sin_port);
	*out = srv;
	return 0;
}

int http_port(const struct http_server *srv)
{
	return srv->port;
}

void http_stop(struct http_server *srv)
{
	if (!srv)
		return;
	atomic_store(&srv->stopping, true);
	MHD_stop_daemon(srv->daemon);
	git_source_release();
	store_close(srv->store);
	free(srv);
}
