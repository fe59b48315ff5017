/* vmci: the command table and top-level help. */
#include "cli/cli.h"

#include "common/common.h"

#include <stdio.h>
#include <string.h>

#define VMCI_VERSION "0.1.0"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
    {"vm", cmd_vm, "run a command in a fresh VM: vmci vm run IMAGE -- CMD..."},
    {"image", cmd_image, "golden images: build, ls, inspect, import, pull, rm, gc"},
    {"validate", cmd_validate, "check a pipeline file (.vmci.yml) and print every error"},
    {"plan", cmd_plan, "show the jobs a pipeline file expands to (--json for all details)"},
    {"run", cmd_run, "run the pipeline here, each job in its own VM: vmci run [JOB...]"},
    {"shell", cmd_shell, "an interactive shell in a fresh VM: vmci shell IMAGE"},
    {"doctor", cmd_doctor, "check this host: accelerator, QEMU, packages, image store"},
    {"serve", cmd_serve, "the farm service of this host: HTTP API and workers"},
    {"token", cmd_token, "API tokens of the service: vmci token create NAME"},
    {"submit", cmd_submit, "ask the server for a run: vmci submit REPO [--ref REF]"},
    {"runs", cmd_runs, "the server's runs, newest first"},
    {"status", cmd_status, "a run of the server and its jobs: vmci status RUN"},
    {"logs", cmd_logs, "a job's log from the server: vmci logs [-f] JOB"},
    {"cancel", cmd_cancel, "cancel a run on the server: vmci cancel RUN"},
    {"retry", cmd_retry, "a new attempt of a finished job: vmci retry JOB"},
    {"hook", cmd_hook, "git hooks for the server: vmci hook install|post-receive"},
};

static void print_help(FILE *out)
{
	fprintf(out, "vmci %s: CI jobs, each in its own virtual machine\n\n", VMCI_VERSION);
	fprintf(out, "Usage: vmci COMMAND [OPTIONS] [ARGS]\n\nCommands:\n");
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nRun 'vmci COMMAND --help' for a command's options.\n"
		     "Environment: VMCI_HOME (image store, default ~/.cache/vmci), VMCI_ACCEL "
		     "(kvm|tcg|auto),\n  VMCI_LOG (error|warn|info|debug), NO_COLOR.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_help(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
		print_help(stdout);
		return EXIT_OK;
	}
	if (!strcmp(name, "--version") || !strcmp(name, "version")) {
		printf("vmci %s\n", VMCI_VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		if (!strcmp(name, commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	cli_error("unknown command '%s' (see: vmci --help)", name);
	return EXIT_USAGE;
}
