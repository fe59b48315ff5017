/*
 * A job's log as server-sent events, in the form of common/sse.c: each
 * event carries the bytes from one offset on, its `id:` the offset after
 * them, so a client that reconnects with Last-Event-ID (or ?offset=N)
 * gets exactly the bytes it lacks, "\r" included. A comment line keeps
 * idle connections open; `event: end` (its data the job's status) closes
 * the stream when the job has finished.
 */
#include "runner/http/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POLL_MS	     100
#define KEEPALIVE_MS 15000
#define READ_MAX     (64u << 10)

struct sse {
	struct http_server *srv;
	int64_t job_id;
	int64_t offset;
	struct buf out; /* formatted, not yet sent */
	size_t sent;
	bool ended;
	int64_t last_write_ms;
};

/* The end of the stream: the job's status as the data of an `end` event. */
static void append_end(struct sse *s)
{
	struct store_job *job = NULL;
	struct vmci_err err = {0};
	const char *status = "finished";
	if (store_job_get(s->srv->store, s->job_id, &job, &err) == 0)
		status = store_status_name(job->status);
	char id[32];
	snprintf(id, sizeof(id), "%lld", (long long)s->offset);
	sse_append_event(&s->out, "end", id, status);
	store_job_free(job);
	s->ended = true;
}

/* Fills s->out with what there is to send; false when the stream should end now. */
static bool refill(struct sse *s)
{
	while (!s->out.len) {
		if (s->ended || atomic_load(&s->srv->stopping))
			return false;
		struct buf bytes = {0};
		int64_t next = s->offset;
		bool finished = false;
		struct vmci_err err = {0};
		int64_t n = store_log_read(s->srv->store, s->job_id, s->offset, READ_MAX, &bytes,
					   &next, &finished, &err);
		if (n < 0) {
			buf_free(&bytes);
			sse_append_event(&s->out, "error", NULL, err.msg);
			s->ended = true;
			break;
		}
		/* Until the job ends, a UTF-8 character cut at the end waits for its rest. */
		size_t done = 0;
		while (done < bytes.len) {
			long k = sse_append_bytes(&s->out, s->offset, bytes.data + done,
						  bytes.len - done, !finished);
			if (k <= 0)
				break;
			done += (size_t)k;
			s->offset += k;
		}
		buf_free(&bytes);
		if (finished && s->offset == next)
			append_end(s);
		if (!s->out.len && clock_ms() - s->last_write_ms >= KEEPALIVE_MS)
			buf_appendf(&s->out, ": keep-alive\n\n");
		if (!s->out.len)
			usleep(POLL_MS * 1000);
	}
	return true;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *s = cls;
	if (s->sent == s->out.len) {
		buf_free(&s->out);
		s->sent = 0;
		if (!refill(s))
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	size_t n = s->out.len - s->sent;
	if (n > max)
		n = max;
	memcpy(buf, s->out.data + s->sent, n);
	s->sent += n;
	s->last_write_ms = clock_ms();
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct sse *s = cls;
	buf_free(&s->out);
	free(s);
}

enum MHD_Result http_sse_log(struct http_server *srv, struct MHD_Connection *c, int64_t job_id)
{
	struct store_job *job = NULL;
	struct vmci_err err = {0};
	int rc = store_job_get(srv->store, job_id, &job, &err);
	if (rc)
		return http_error(c, http_status_of(rc), "%s", err.msg);
	int64_t log_len = job->log_len;
	store_job_free(job);
	const char *from = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
	if (!from)
		from = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "offset");
	char *end = NULL;
	long long offset = from ? strtoll(from, &end, 10) : 0;
	if (from && (end == from || *end || offset < 0 || offset > log_len))
		return http_error(c, MHD_HTTP_BAD_REQUEST,
				  "resume offset '%s' is not within the log (0 to %lld)", from,
				  (long long)log_len);
	struct sse *s = calloc(1, sizeof(*s));
	if (!s)
		return MHD_NO;
	*s = (struct sse){
	    .srv = srv, .job_id = job_id, .offset = offset, .last_write_ms = clock_ms()};
	struct MHD_Response *r =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, s, sse_free);
	if (!r) {
		sse_free(s);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}
