/*
 * runner/http: the service's HTTP API (SERVICE.md) over the store, with
 * libmicrohttpd and jansson.
 *
 *   runner/http/server.c  the daemon: listening, requests, bodies, tokens
 *   runner/http/api.c     the endpoints: runs, jobs, logs, artifacts
 *   runner/http/json.c    runs and jobs as the API shows them
 *   runner/http/sse.c     a job's log as server-sent events
 *
 * Every /api/ request needs `Authorization: Bearer TOKEN`, a token made
 * by store_token_create (only hashes are stored), but for GETs when the
 * config says public_read (a token a GET carries is still checked). Errors are JSON,
 * {"error": "what went wrong and what to do"}: 401 for a missing or
 * wrong token, 400 for a bad request or bad JSON, 404 for an unknown id
 * or path, 405 for a wrong method, 413 for a body over max_body.
 */
#ifndef VMCI_RUNNER_HTTP_H
#define VMCI_RUNNER_HTTP_H

#include "common/common.h"
#include "runner/service.h"

struct store;

struct http_opts {
	const char *listen;		     /* "ADDR:PORT" (IPv4); port 0: any free port */
	const char *db_url;		     /* the server opens its own handle */
	const struct service_config *config; /* repos that runs may name */
	struct service_dirs dirs;
	const char *host; /* for /healthz */
	size_t max_body;  /* bytes; 0: HTTP_DEFAULT_MAX_BODY */
};

#define HTTP_DEFAULT_MAX_BODY (1u << 20)

struct http_server;

/* Listens and serves on threads of its own. Returns 0 with *out, or -EADDRINUSE etc. */
int http_start(const struct http_opts *opts, struct http_server **out, struct vmci_err *err);
/* The port it listens on (the one chosen when opts->listen asked for 0). */
int http_port(const struct http_server *srv);
/* Ends open streams, stops listening, frees. Safe on NULL. */
void http_stop(struct http_server *srv);

#endif
