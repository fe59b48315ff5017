/* vmci cancel RUN: cancels a run's queued and running jobs. */
#include "cli/cli.h"
#include "cli/client.h"

static const char usage[] =
    "Usage: vmci cancel RUN\n"
    "\n"
    "Cancels a run of the vmci server: its queued jobs at once, its running ones as\n"
    "soon as their VM is stopped. Exit status: 0 done, 2 no such run, 3 unreachable.";

int cmd_cancel(int argc, char **argv)
{
	return client_post_by_id(argc, argv, "cancel", usage, "RUN", "/api/v1/runs/%s/cancel",
				 "run");
}
