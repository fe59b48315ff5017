/*
 * The HTTP client of the service's API for the client commands (submit,
 * runs, status, logs, cancel, retry, hook): where the server is, the
 * token, one request, and the exit codes they share.
 *
 * Exit codes of client commands: 0 done (a run or job that succeeded),
 * 1 a run or job that did not succeed, 2 usage or a request the server
 * refused (unknown id, bad token), 3 the server is unreachable or
 * failed, 4 (status) still queued or running.
 */
#ifndef VMCI_CLI_CLIENT_H
#define VMCI_CLI_CLIENT_H

#include "common/common.h"

#include <jansson.h>

#define CLIENT_DEFAULT_SERVER "http://127.0.0.1:8080"
#define EXIT_PENDING	      4

struct client {
	char server[512]; /* without a trailing slash */
	char token[256];  /* "" without one */
};

/*
 * server: --server, else $VMCI_SERVER, else the default; the token from
 * token_file when given, else $VMCI_TOKEN.
 */
int client_init(struct client *c, const char *server, const char *token_file);

/*
 * One request: method, path ("/api/v1/runs"), body (JSON text or NULL).
 * Fills *status and out (the response body). Returns 0, or EXIT_INFRA
 * after printing why the server could not be reached.
 */
int client_request(const struct client *c, const char *method, const char *path, const char *body,
		   long *status, struct buf *out);

/*
 * A JSON request with body (NULL: none; the reference is taken, so
 * json_pack(...) may be passed as it is): returns 0 with *out (to
 * json_decref) on a 2xx answer; otherwise prints the server's error and
 * returns EXIT_USAGE (4xx) or EXIT_INFRA.
 */
int client_json(const struct client *c, const char *cmd, const char *method, const char *path,
		json_t *body, json_t **out);

/*
 * `vmci CMD [--server URL] ID`, a POST to path_fmt (one %s: the ID) that
 * answers with an object whose status is printed as "NOUN ID: STATUS".
 * Returns the command's exit status (usage and server errors included).
 */
int client_post_by_id(int argc, char **argv, const char *cmd, const char *usage,
		      const char *operand, const char *path_fmt, const char *noun);

/*
 * A GET of a server-sent event stream at path: each event goes to fn
 * (common/sse.c) as it arrives, until the server ends the stream, fn
 * returns non-zero (returned as it is), or the connection breaks or
 * stays silent for a minute (the server sends a comment every 15 s).
 * last_event_id (NULL: none) is sent as Last-Event-ID. *status is the
 * HTTP status (0 when there was no answer); on one other than 200, err_body
 * holds the answer. Returns 0 when the stream ended or the status was not
 * 200, or EXIT_INFRA (nothing printed: the caller may reconnect).
 */
int client_stream(const struct client *c, const char *path, const char *last_event_id,
		  sse_event_fn fn, void *ctx, long *status, struct buf *err_body);

#endif
