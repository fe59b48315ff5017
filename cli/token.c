/* vmci token create NAME: an API token, made on the store directly; prints only the token. */
#include "cli/cli.h"

#include "runner/service.h"
#include "runner/store.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "Usage: vmci token create NAME [--config FILE | --db URL]\n"
    "       vmci token delete NAME [--config FILE | --db URL]\n"
    "\n"
    "Makes an API token for `vmci serve` and prints it (only then: the store keeps\n"
    "its hash). Clients send it as 'Authorization: Bearer TOKEN' ($VMCI_TOKEN).";

int cmd_token(int argc, char **argv)
{
	const char *config = NULL, *db = NULL;
	const struct cli_option opts[] = {
	    {'c', "config", OPT_STRING, &config, "FILE", "the service's config (for its db)"},
	    {0, "db", OPT_STRING, &db, "URL", "the store (default sqlite:$VMCI_HOME/vmci.db)"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	if (argc - first != 2 || (strcmp(argv[first], "create") && strcmp(argv[first], "delete"))) {
		cli_error("token: want 'create NAME' or 'delete NAME'");
		return EXIT_USAGE;
	}
	struct vmci_err err = {0};
	struct service_config cfg = {0};
	if (!db && config) {
		if (service_config_load(config, &cfg, &err)) {
			cli_error("%s", err.msg);
			return EXIT_USAGE;
		}
		db = cfg.db;
	}
	char url[PATH_MAX + 8];
	if (!db && !store_default_url(url, sizeof(url)))
		db = url;
	struct store *s = NULL;
	int rc = store_open(db, &s, &err);
	if (rc == 0 && !strcmp(argv[first], "create")) {
		char token[STORE_TOKEN_LEN + 1];
		rc = store_token_create(s, argv[first + 1], token, &err);
		if (rc == 0)
			printf("%s\n", token);
	} else if (rc == 0) {
		rc = store_token_delete(s, argv[first + 1], &err);
	}
	store_close(s);
	service_config_free(&cfg);
	if (rc)
		cli_error("token: %s", err.msg);
	return rc ? EXIT_FAILED : EXIT_OK;
}
