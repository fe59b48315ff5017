/* vmci logs [-f] JOB: a job's log from the server; -f follows it until the job ends. */
#include "cli/cli.h"
#include "cli/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmci logs [-f] JOB\n"
    "\n"
    "Prints the log of a job of the vmci server (every attempt, in order).\n"
    "-f follows it until the job ends. Exit status: 0 printed (with -f: the job\n"
    "succeeded), 1 (-f) the job did not succeed, 2 no such job, 3 server unreachable.";

#define FOLLOW_POLL_MS 200

int cmd_logs(int argc, char **argv)
{
	const char *server = NULL;
	bool follow = false;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the server (default $VMCI_SERVER)"},
	    {'f', "follow", OPT_FLAG, &follow, NULL, "follow the log until the job ends"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0 || argc - first != 1) {
		if (first >= 0)
			cli_error("logs: want one JOB id");
		return EXIT_USAGE;
	}
	struct client c;
	int rc = client_init(&c, server, NULL);
	const char *job = argv[first];
	json_t *info = NULL;
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/jobs/%s", job);
	if (!rc)
		rc = client_json(&c, "logs", "GET", path, NULL, &info);
	if (rc)
		return rc;
	json_decref(info);
	long long offset = 0;
	for (;;) {
		snprintf(path, sizeof(path), "/api/v1/jobs/%s/log?offset=%lld", job, offset);
		struct buf b = {0};
		long status = 0;
		rc = client_request(&c, "GET", path, NULL, &status, &b);
		if (!rc && status != 200) {
			cli_error("logs: the server answered %ld: %s", status, buf_cstr(&b));
			rc = status < 500 ? EXIT_USAGE : EXIT_INFRA;
		}
		if (rc) {
			buf_free(&b);
			return rc;
		}
		fwrite(b.data, 1, b.len, stdout);
		fflush(stdout);
		offset += (long long)b.len;
		buf_free(&b);
		if (!follow)
			return EXIT_OK;
		snprintf(path, sizeof(path), "/api/v1/jobs/%s", job);
		rc = client_json(&c, "logs", "GET", path, NULL, &info);
		if (rc)
			return rc;
		const char *st = json_string_value(json_object_get(info, "status"));
		bool done = st && strcmp(st, "queued") && strcmp(st, "running");
		long long len = json_integer_value(json_object_get(info, "log_len"));
		rc = st && !strcmp(st, "success") ? EXIT_OK : EXIT_FAILED;
		json_decref(info);
		if (done && offset >= len)
			return rc;
		if (offset >= len)
			usleep(FOLLOW_POLL_MS * 1000);
	}
}
