/* vmci runs: the server's runs, newest first. */
#include "cli/cli.h"
#include "cli/client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

static const char usage[] =
    "Usage: vmci runs [--repo NAME] [--status STATUS] [--limit N] [--json]\n"
    "\n"
    "Lists the runs of the vmci server, newest first.";

int cmd_runs(int argc, char **argv)
{
	const char *server = NULL, *repo = NULL, *status = NULL;
	int limit = 20;
	bool as_json = false;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the server (default $VMCI_SERVER)"},
	    {0, "repo", OPT_STRING, &repo, "NAME", "only this repo's runs"},
	    {0, "status", OPT_STRING, &status, "STATUS", "only runs with this status"},
	    {'n', "limit", OPT_INT, &limit, "N", "at most N runs (default 20)"},
	    {0, "json", OPT_FLAG, &as_json, NULL, "print the runs as JSON"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0 || first < argc) {
		if (first >= 0)
			cli_error("runs: unexpected argument '%s'", argv[first]);
		return EXIT_USAGE;
	}
	struct client c;
	int rc = client_init(&c, server, NULL);
	char path[512];
	char *r = repo ? curl_easy_escape(NULL, repo, 0) : NULL;
	snprintf(path, sizeof(path), "/api/v1/runs?limit=%d%s%s%s%s", limit, r ? "&repo=" : "",
		 r ? r : "", status ? "&status=" : "", status ? status : "");
	curl_free(r);
	json_t *body = NULL;
	if (!rc)
		rc = client_json(&c, "runs", "GET", path, NULL, &body);
	if (rc)
		return rc;
	json_t *runs = json_object_get(body, "runs");
	if (as_json) {
		json_dumpf(runs, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		printf("%-6s %-10s %-20s %-24s %-12s %s\n", "RUN", "STATUS", "REPO", "REF", "SHA",
		       "CREATED");
		size_t i;
		json_t *run;
		json_array_foreach(runs, i, run)
		{
			const char *sha = json_string_value(json_object_get(run, "sha"));
			printf("%-6lld %-10s %-20s %-24s %-12.12s %s\n",
			       (long long)json_integer_value(json_object_get(run, "id")),
			       json_string_value(json_object_get(run, "status")),
			       json_string_value(json_object_get(run, "repo")),
			       json_string_value(json_object_get(run, "ref")), sha ? sha : "",
			       json_string_value(json_object_get(run, "created_at")));
		}
	}
	json_decref(body);
	return EXIT_OK;
}
