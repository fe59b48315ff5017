/*
 * vmci status RUN: a run and its jobs. On a terminal, the board of `vmci
 * run`, live until the run ends, then its summary; elsewhere one snapshot,
 * or with --wait the board's plain lines and the summary.
 */
#include "cli/board.h"
#include "cli/cli.h"
#include "cli/client.h"

#include "pipelines/pipelines.h"
#include "runner/remote.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define POLL_MS 500

static const char usage[] =
    "Usage: vmci status RUN [--wait] [--json]\n"
    "\n"
    "Shows a run of the vmci server and its jobs. On a terminal it shows the board of\n"
    "'vmci run', redrawn until the run ends, then the summary; elsewhere (or with\n"
    "NO_COLOR) the run's jobs once, or with --wait a line per change and the summary.\n"
    "--json prints the run as the API shows it (with --wait: once it has ended).\n"
    "Exit status: 0 success, 1 failure, error or cancelled, 4 still queued or running\n"
    "(without --wait, not on a terminal), 2 no such run, 3 server unreachable.";

static void print_run(json_t *run)
{
	const char *sha = json_string_value(json_object_get(run, "sha"));
	printf("run %lld  %s  %s %s @ %.12s\n",
	       (long long)json_integer_value(json_object_get(run, "id")),
	       json_string_value(json_object_get(run, "status")),
	       json_string_value(json_object_get(run, "repo")),
	       json_string_value(json_object_get(run, "ref")), sha ? sha : "");
	size_t i;
	json_t *job;
	json_array_foreach(json_object_get(run, "jobs"), i, job)
	{
		const char *failed = json_string_value(json_object_get(job, "failed_step"));
		printf("  %-6lld %-10s %-32s attempt %lld%s%s%s\n",
		       (long long)json_integer_value(json_object_get(job, "id")),
		       json_string_value(json_object_get(job, "status")),
		       json_string_value(json_object_get(job, "name")),
		       (long long)json_integer_value(json_object_get(job, "attempt")),
		       failed ? "  (step '" : "", failed ? failed : "", failed ? "' failed)" : "");
	}
}

static int exit_code_of(const json_t *run)
{
	const char *st = json_string_value(json_object_get(run, "status"));
	return !remote_run_finished(run)      ? EXIT_PENDING
	       : st && !strcmp(st, "success") ? EXIT_OK
					      : EXIT_FAILED;
}

/* ---- the API for runner/remote ---------------------------------------------------- */

static int get_json(void *ctx, const char *path, json_t **out)
{
	return client_json(ctx, "status", "GET", path, NULL, out);
}

static int get_bytes(void *ctx, const char *path, struct buf *out)
{
	long status = 0;
	int rc = client_request(ctx, "GET", path, NULL, &status, out);
	if (!rc && (status < 200 || status > 299)) {
		cli_error("status: the server answered %ld to GET %s", status, path);
		rc = status >= 400 && status < 500 ? EXIT_USAGE : EXIT_INFRA;
	}
	return rc;
}

/* Follows run on the board (live: redrawn) until it ends, then the summary. */
static int follow(struct client *c, const json_t *run, bool live)
{
	struct vmci_err err = {0};
	struct remote_run *r = NULL;
	struct board *board = NULL;
	bool color = vmci_use_color(STDOUT_FILENO);
	if (remote_run_new(run, &r, &err) == 0) {
		struct board_opts bo = {
		    .run = remote_run_pipeline(r), .live = live, .color = color, .out = stdout};
		board_new(&bo, &board, &err);
	}
	if (!board) {
		cli_error("status: %s", err.msg);
		remote_run_free(r);
		return EXIT_INFRA;
	}
	if (!live) {
		const char *sha = json_string_value(json_object_get(run, "sha"));
		printf("vmci: following %s %s @ %.12s: %zu jobs\n", remote_run_pipeline(r)->name,
		       json_string_value(json_object_get(run, "ref")), sha ? sha : "",
		       remote_run_pipeline(r)->n_jobs);
		fflush(stdout);
	}
	struct runner_sink sink;
	board_sink(board, &sink);
	struct remote_api api = {.ctx = c, .get_json = get_json, .get_bytes = get_bytes};
	json_t *last = NULL;
	board_start(board);
	int rc = remote_run_follow(r, &api, &sink, POLL_MS, &last);
	board_stop(board);
	if (!rc) {
		struct run_summary s = {
		    .run = remote_run_pipeline(r), .board = board, .cwd = "", .color = color};
		summary_print(stdout, &s, remote_run_elapsed_ms(last));
		rc = exit_code_of(last);
	}
	json_decref(last);
	board_free(board);
	remote_run_free(r);
	return rc;
}

int cmd_status(int argc, char **argv)
{
	const char *server = NULL, *id = NULL;
	bool wait = false, as_json = false;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the server (default $VMCI_SERVER)"},
	    {'w', "wait", OPT_FLAG, &wait, NULL, "follow the run until it ends"},
	    {0, "json", OPT_FLAG, &as_json, NULL, "print the run as JSON"},
	    {0},
	};
	int rc;
	if (!cli_parse_operand(argc, argv, opts, usage, "RUN id", &id, &rc))
		return rc;
	struct client c;
	rc = client_init(&c, server, NULL);
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/runs/%s", id);
	/* Colour allowed is a terminal that may be redrawn: NO_COLOR asks for plain lines. */
	bool live = !as_json && vmci_use_color(STDOUT_FILENO);
	json_t *run = NULL;
	for (;;) {
		if (!rc)
			rc = client_json(&c, "status", "GET", path, NULL, &run);
		if (rc)
			return rc;
		bool done = remote_run_finished(run);
		if (!as_json && (live || wait)) {
			rc = follow(&c, run, live);
			json_decref(run);
			return rc;
		}
		if (done || !wait) {
			if (as_json) {
				json_dumpf(run, stdout, JSON_INDENT(2));
				putchar('\n');
			} else {
				print_run(run);
			}
			rc = exit_code_of(run);
			json_decref(run);
			return rc;
		}
		json_decref(run);
		run = NULL;
		usleep(POLL_MS * 1000);
	}
}
