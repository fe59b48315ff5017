/* vmci submit REPO [--ref REF] [--sha SHA]: a run of REPO through the API; prints its id. */
#include "cli/cli.h"
#include "cli/client.h"

#include <stdio.h>

static const char usage[] =
    "Usage: vmci submit REPO [--ref REF] [--sha SHA] [--json]\n"
    "\n"
    "Asks the vmci server ($VMCI_SERVER, token $VMCI_TOKEN) for a run of REPO (a name\n"
    "from the server's config) at REF (default refs/heads/main), and prints its id.\n"
    "Exit status: 0 queued, 2 refused (unknown repo, bad token), 3 server unreachable.";

int cmd_submit(int argc, char **argv)
{
	const char *server = NULL, *ref = "refs/heads/main", *sha = NULL;
	bool as_json = false;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the server (default $VMCI_SERVER)"},
	    {0, "ref", OPT_STRING, &ref, "REF", "the branch or ref (default refs/heads/main)"},
	    {0, "sha", OPT_STRING, &sha, "SHA", "this commit of the ref"},
	    {0, "json", OPT_FLAG, &as_json, NULL, "print the run as JSON"},
	    {0},
	};
	const char *repo = NULL;
	int rc;
	if (!cli_parse_operand(argc, argv, opts, usage, "REPO", &repo, &rc))
		return rc;
	struct client c;
	rc = client_init(&c, server, NULL);
	json_t *run = NULL;
	if (!rc)
		rc = client_json(
		    &c, "submit", "POST", "/api/v1/runs",
		    json_pack("{s:s, s:s, s:s*}", "repo", repo, "ref", ref, "sha", sha), &run);
	if (rc)
		return rc;
	if (as_json)
		json_dumpf(run, stdout, JSON_INDENT(2)), putchar('\n');
	else
		printf("%lld\n", (long long)json_integer_value(json_object_get(run, "id")));
	json_decref(run);
	return EXIT_OK;
}
