/* vmci status RUN: a run and its jobs; --wait follows it until it ends. */
#include "cli/cli.h"
#include "cli/client.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmci status RUN [--wait] [--json]\n"
    "\n"
    "Shows a run of the vmci server and its jobs. --wait redraws until it ends.\n"
    "Exit status: 0 success, 1 failure, error or cancelled, 4 still queued or running\n"
    "(without --wait), 2 no such run, 3 server unreachable.";

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

int cmd_status(int argc, char **argv)
{
	const char *server = NULL;
	bool wait = false, as_json = false;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the server (default $VMCI_SERVER)"},
	    {'w', "wait", OPT_FLAG, &wait, NULL, "follow the run until it ends"},
	    {0, "json", OPT_FLAG, &as_json, NULL, "print the run as JSON"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0 || argc - first != 1) {
		if (first >= 0)
			cli_error("status: want one RUN id");
		return EXIT_USAGE;
	}
	struct client c;
	int rc = client_init(&c, server, NULL);
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/runs/%s", argv[first]);
	json_t *run = NULL;
	for (;;) {
		if (!rc)
			rc = client_json(&c, "status", "GET", path, NULL, &run);
		if (rc)
			return rc;
		const char *st = json_string_value(json_object_get(run, "status"));
		bool done = st && strcmp(st, "queued") && strcmp(st, "running");
		if (done || !wait) {
			if (as_json) {
				json_dumpf(run, stdout, JSON_INDENT(2));
				putchar('\n');
			} else {
				print_run(run);
			}
			rc = !done ? EXIT_PENDING : !strcmp(st, "success") ? EXIT_OK : EXIT_FAILED;
			json_decref(run);
			return rc;
		}
		json_decref(run);
		run = NULL;
		usleep(500 * 1000);
	}
}
