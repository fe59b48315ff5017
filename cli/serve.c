/*
 * vmci serve: the farm service of this host (runner/service, runner/http).
 * Parses options, starts the API and the workers, and stops them on the
 * first SIGTERM or SIGINT (runner_interrupt): running jobs get the grace
 * period while the API still answers, what is left is requeued. A second
 * signal ends at once.
 */
#include "cli/cli.h"

#include "runner/http.h"
#include "runner/runner.h"
#include "runner/service.h"
#include "runner/store.h"
#include "pipelines/pipelines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmci serve [--config FILE] [--listen ADDR:PORT] [--db URL] [--host NAME]\n"
    "                  [--capacity N] [--grace DURATION] [--cold]\n"
    "\n"
    "Runs the farm service of this host: the HTTP API (loopback by default), and\n"
    "workers that run queued jobs in VMs of this host's warm pools. Options override\n"
    "the config file (YAML: listen, db, host {name, capacity}, repos [{name, url}]).\n"
    "SIGTERM or Ctrl-C: stop taking jobs, let running ones finish for the grace\n"
    "period, then requeue the rest; a second signal stops at once.";

static void on_signal(void *ctx, int signo)
{
	/* The main loop sees runner_interrupted() and stops in order. */
}

static int apply_options(struct service_config *cfg, const char *listen, const char *db,
			 const char *host, int capacity)
{
	char **fields[] = {&cfg->listen, &cfg->db, &cfg->host};
	const char *values[] = {listen, db, host};
	for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
		if (!values[i])
			continue;
		free(*fields[i]);
		if (!(*fields[i] = strdup(values[i])))
			return -1;
	}
	if (capacity > 0)
		cfg->capacity = capacity;
	if (!cfg->listen && !(cfg->listen = strdup(SERVICE_DEFAULT_LISTEN)))
		return -1;
	if (!cfg->db) {
		char url[PATH_MAX + 8];
		if (store_default_url(url, sizeof(url)) || !(cfg->db = strdup(url)))
			return -1;
	}
	if (!cfg->host) {
		char name[256] = "localhost";
		gethostname(name, sizeof(name) - 1);
		if (!(cfg->host = strdup(name)))
			return -1;
	}
	if (cfg->capacity < 1)
		cfg->capacity = runner_default_max_vms(PIPE_DEFAULT_MEMORY_MB);
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	const char *config = NULL, *listen = NULL, *db = NULL, *host = NULL;
	int capacity = 0, grace_ms = 60000;
	bool cold = false;
	const struct cli_option opts[] = {
	    {'c', "config", OPT_STRING, &config, "FILE", "the service's config (YAML)"},
	    {'l', "listen", OPT_STRING, &listen, "ADDR:PORT",
	     "where the API listens (default 127.0.0.1:8080; port 0: any free one)"},
	    {0, "db", OPT_STRING, &db, "URL", "the store (default sqlite:$VMCI_HOME/vmci.db)"},
	    {0, "host", OPT_STRING, &host, "NAME", "this host's name (default: the hostname)"},
	    {0, "capacity", OPT_INT, &capacity, "N", "jobs at once (default: what fits)"},
	    {0, "grace", OPT_DURATION, &grace_ms, "DURATION",
	     "how long running jobs may finish on SIGTERM (default 60s)"},
	    {0, "cold", OPT_FLAG, &cold, NULL, "boot every job's VM afresh (no warm pools)"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	if (first < argc) {
		cli_error("serve: unexpected argument '%s'", argv[first]);
		return EXIT_USAGE;
	}
	/* Before any thread starts: the signal thread owns SIGTERM and SIGINT. */
	runner_interrupt_start(NULL, 0);
	struct service_config cfg = {0};
	struct vmci_err err = {0};
	if (config && service_config_load(config, &cfg, &err)) {
		cli_error("%s", err.msg);
		return EXIT_USAGE;
	}
	if (apply_options(&cfg, listen, db, host, capacity)) {
		cli_error("serve: out of memory");
		service_config_free(&cfg);
		return EXIT_FAILED;
	}
	struct store *s = NULL;
	if (store_open(cfg.db, &s, &err)) { /* migrations, once, before the threads */
		cli_error("serve: %s", err.msg);
		service_config_free(&cfg);
		return EXIT_INFRA;
	}
	store_close(s);
	struct http_opts ho = {
	    .listen = cfg.listen, .db_url = cfg.db, .config = &cfg, .host = cfg.host};
	struct http_server *http = NULL;
	struct service *svc = NULL;
	struct service_opts so = {.db_url = cfg.db,
				  .host = cfg.host,
				  .capacity = cfg.capacity,
				  .config = &cfg,
				  .cold = cold};
	struct runner_interrupt handler = {.cancel = on_signal};
	runner_interrupt_set(&handler);
	int rc = EXIT_OK;
	if (http_start(&ho, &http, &err) || service_start(&so, &svc, &err)) {
		cli_error("serve: %s", err.msg);
		rc = EXIT_INFRA;
	} else {
		char addr[128];
		snprintf(addr, sizeof(addr), "%s", cfg.listen);
		*strrchr(addr, ':') = 0;
		fprintf(stderr,
			"vmci serve: listening on http://%s:%d (host %s, %d job(s) at once, %s)\n",
			addr, http_port(http), cfg.host, cfg.capacity, cfg.db);
		while (!runner_interrupted())
			usleep(100 * 1000);
		fprintf(stderr, "vmci serve: stopping (running jobs get %d s)\n", grace_ms / 1000);
	}
	/* The API answers during the grace period: followers see their jobs end. */
	service_stop(svc, grace_ms);
	http_stop(http);
	service_config_free(&cfg);
	return rc;
}
