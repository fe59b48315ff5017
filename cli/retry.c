/* vmci retry JOB: a new attempt of a finished job (and of its skipped dependents). */
#include "cli/cli.h"
#include "cli/client.h"

#include <stdio.h>

static const char usage[] =
    "Usage: vmci retry JOB\n"
    "\n"
    "Queues a finished job of the vmci server again as a new attempt; the jobs it\n"
    "skipped come with it. Exit status: 0 queued, 2 refused (unknown, still running),\n"
    "3 server unreachable.";

int cmd_retry(int argc, char **argv)
{
	const char *server = NULL;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the server (default $VMCI_SERVER)"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0 || argc - first != 1) {
		if (first >= 0)
			cli_error("retry: want one JOB id");
		return EXIT_USAGE;
	}
	struct client c;
	int rc = client_init(&c, server, NULL);
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/jobs/%s/retry", argv[first]);
	json_t *job = NULL;
	if (!rc)
		rc = client_json(&c, "retry", "POST", path, NULL, &job);
	if (!rc)
		fprintf(stderr, "job %s: %s\n", argv[first],
			json_string_value(json_object_get(job, "status")));
	json_decref(job);
	return rc;
}
