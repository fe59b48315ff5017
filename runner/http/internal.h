/* What the files of runner/http share; not part of its contract. */
#ifndef VMCI_RUNNER_HTTP_INTERNAL_H
#define VMCI_RUNNER_HTTP_INTERNAL_H

#include "runner/http.h"
#include "runner/store.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>

struct http_server {
	struct http_opts o;
	struct MHD_Daemon *daemon;
	struct store *store; /* shared by the connection threads (the store serializes) */
	int port;
	atomic_bool stopping;
};

/* One request being read. */
struct http_request {
	struct buf body;
	bool too_big;
};

/* Queues a JSON response (takes the reference to body). */
enum MHD_Result http_json(struct MHD_Connection *c, unsigned status, json_t *body);
/* Queues {"error": message}. */
enum MHD_Result http_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The status that fits a store error code (-ENOENT: 404, -EINVAL: 400, ...). */
unsigned http_status_of(int code);

/* Routes an authenticated /api/v1 request (path after "/api/v1"). */
enum MHD_Result http_api(struct http_server *srv, struct MHD_Connection *c, const char *method,
			 const char *path, const struct http_request *req);

/* GET /api/v1/jobs/ID/log/stream */
enum MHD_Result http_sse_log(struct http_server *srv, struct MHD_Connection *c, int64_t job_id);

json_t *http_run_json(const struct store_run *run);
json_t *http_job_json(const struct store_job *job);

#endif
