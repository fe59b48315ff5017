/* vmci cancel RUN: cancels a run's queued and running jobs. */
#include "cli/cli.h"
#include "cli/client.h"

#include <stdio.h>

static const char usage[] =
    "Usage: vmci cancel RUN\n"
    "\n"
    "Cancels a run of the vmci server: its queued jobs at once, its running ones as\n"
    "soon as their VM is stopped. Exit status: 0 done, 2 no such run, 3 unreachable.";

int cmd_cancel(int argc, char **argv)
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
			cli_error("cancel: want one RUN id");
		return EXIT_USAGE;
	}
	struct client c;
	int rc = client_init(&c, server, NULL);
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/runs/%s/cancel", argv[first]);
	json_t *run = NULL;
	if (!rc)
		rc = client_json(&c, "cancel", "POST", path, NULL, &run);
	if (!rc)
		fprintf(stderr, "run %s: %s\n", argv[first],
			json_string_value(json_object_get(run, "status")));
	json_decref(run);
	return rc;
}
