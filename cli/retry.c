/* vmci retry JOB: a new attempt of a finished job (and of its skipped dependents). */
#include "cli/cli.h"
#include "cli/client.h"

static const char usage[] =
    "Usage: vmci retry JOB\n"
    "\n"
    "Queues a finished job of the vmci server again as a new attempt; the jobs it\n"
    "skipped come with it. Exit status: 0 queued, 2 refused (unknown, still running),\n"
    "3 server unreachable.";

int cmd_retry(int argc, char **argv)
{
	return client_post_by_id(argc, argv, "retry", usage, "JOB", "/api/v1/jobs/%s/retry", "job");
}
