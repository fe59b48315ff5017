/*
 * vmci logs [-f] JOB: a job's log from the server. -f follows its event
 * stream (common/sse.c) until the job ends, and when the connection
 * breaks (the server restarted) it reconnects with Last-Event-ID, so the
 * output has every byte of the log once, in order.
 */
#include "cli/cli.h"
#include "cli/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmci logs [-f] JOB\n"
    "\n"
    "Prints the log of a job of the vmci server (every attempt, in order).\n"
    "-f follows it until the job ends, through restarts of the server (it\n"
    "reconnects for up to 2 minutes). Exit status: 0 printed (with -f: the job\n"
    "succeeded), 1 (-f) the job did not succeed, 2 no such job, 3 server unreachable.";

#define RECONNECT_FIRST_MS   250
#define RECONNECT_MAX_MS     2000
#define RECONNECT_GIVE_UP_MS (120 * 1000)

/* Prints the whole log as it is now. */
static int print_log(const struct client *c, const char *job)
{
	long long offset = 0;
	for (;;) {
		char path[128];
		snprintf(path, sizeof(path), "/api/v1/jobs/%s/log?offset=%lld", job, offset);
		struct buf b = {0};
		long status = 0;
		int rc = client_request(c, "GET", path, NULL, &status, &b);
		if (!rc && status != 200) {
			cli_error("logs: the server answered %ld: %s", status, buf_cstr(&b));
			rc = status < 500 ? EXIT_USAGE : EXIT_INFRA;
		}
		size_t n = b.len;
		if (!rc && n)
			fwrite(b.data, 1, n, stdout);
		buf_free(&b);
		if (rc || n == 0)
			return rc;
		offset += (long long)n;
	}
}

struct follow {
	int64_t offset;	 /* bytes of the log printed */
	char status[32]; /* the job's status from the `end` event; "" before it */
	char error[512];
	struct buf bytes;
};

static int on_event(void *ctx, const struct sse_event *ev)
{
	struct follow *f = ctx;
	if (!strcmp(ev->type, "end")) {
		snprintf(f->status, sizeof(f->status), "%s", ev->data);
		return 0;
	}
	if (!strcmp(ev->type, "error")) {
		snprintf(f->error, sizeof(f->error), "%s", ev->data);
		return 0;
	}
	if (strcmp(ev->type, "message"))
		return 0;
	f->bytes.len = 0;
	if (sse_event_bytes(ev, &f->offset, &f->bytes)) {
		snprintf(f->error, sizeof(f->error),
			 "the stream's event id '%s' is not the offset after %lld", ev->id,
			 (long long)f->offset);
		return -EPROTO;
	}
	if (f->bytes.len)
		fwrite(f->bytes.data, 1, f->bytes.len, stdout);
	fflush(stdout);
	return 0;
}

static int follow_log(const struct client *c, const char *job)
{
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/jobs/%s/log/stream", job);
	struct follow f = {0};
	int64_t lost_since = 0, wait_ms = RECONNECT_FIRST_MS;
	int rc;
	for (;;) {
		char from[32];
		snprintf(from, sizeof(from), "%lld", (long long)f.offset);
		long status = 0;
		struct buf body = {0};
		int64_t before = f.offset;
		rc = client_stream(c, path, from, on_event, &f, &status, &body);
		if (rc < 0 || f.error[0]) {
			cli_error("logs: job %s: %s", job, f.error);
			rc = EXIT_INFRA;
		} else if (status != 0 && status != 200) {
			cli_error("logs: the server answered %ld: %s", status, buf_cstr(&body));
			rc = status < 500 ? EXIT_USAGE : EXIT_INFRA;
		} else if (f.status[0]) {
			rc = !strcmp(f.status, "success") ? EXIT_OK : EXIT_FAILED;
		} else {
			rc = -1; /* the stream broke before the job ended: reconnect */
		}
		buf_free(&body);
		if (rc >= 0)
			break;
		/* A server that restarts takes seconds; one that answers again resets the wait. */
		int64_t now = clock_ms();
		if (status == 200 || f.offset > before) {
			lost_since = 0;
			wait_ms = RECONNECT_FIRST_MS;
		}
		if (!lost_since) {
			lost_since = now;
			fprintf(stderr,
				"vmci: lost the stream of job %s at byte %lld; reconnecting\n", job,
				(long long)f.offset);
		} else if (now - lost_since > RECONNECT_GIVE_UP_MS) {
			cli_error(
			    "logs: cannot reach the vmci server at %s for %d s (is 'vmci serve' "
			    "running?)",
			    c->server, RECONNECT_GIVE_UP_MS / 1000);
			rc = EXIT_INFRA;
			break;
		}
		usleep((useconds_t)wait_ms * 1000);
		wait_ms = wait_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : wait_ms * 2;
	}
	buf_free(&f.bytes);
	return rc;
}

int cmd_logs(int argc, char **argv)
{
	const char *server = NULL;
	bool follow = false;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the server (default $VMCI_SERVER)"},
	    {'f', "follow", OPT_FLAG, &follow, NULL, "follow the log until the job ends"},
	    {0},
	};
	const char *job = NULL;
	int rc;
	if (!cli_parse_operand(argc, argv, opts, usage, "JOB id", &job, &rc))
		return rc;
	struct client c;
	rc = client_init(&c, server, NULL);
	json_t *info = NULL;
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/jobs/%s", job);
	if (!rc)
		rc = client_json(&c, "logs", "GET", path, NULL, &info); /* 2 for an unknown job */
	json_decref(info);
	if (rc)
		return rc;
	return follow ? follow_log(&c, job) : print_log(&c, job);
}
