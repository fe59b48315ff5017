/* vmci vm run IMAGE -- COMMAND...: one command in a fresh VM. */
#include "cli/cli.h"

#include "runner/runner.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char vm_usage[] =
	"Usage: vmci vm run [OPTIONS] IMAGE -- COMMAND [ARG...]\n"
	"\n"
	"Boots a fresh VM from IMAGE (built on first use), runs COMMAND in it through\n"
	"the guest agent, streams its stdout and stderr as they come, stops the VM and\n"
	"exits with the command's status: 128+N when killed by signal N, 124 when it\n"
	"timed out, 127 when not found, 125 when vmci itself failed.\n"
	"\n"
	"Images: busybox-x86_64";

/* The VM whose command a Ctrl-C should cancel. */
static struct vm *volatile running_vm;

static void on_interrupt(int sig)
{
	struct vm *vm = running_vm;
	if (vm) {
		vm_cancel(vm);
		/* A second Ctrl-C is not caught: it ends vmci, and QEMU with it. */
		signal(sig, SIG_DFL);
	}
}

static void write_output(void *ctx, int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a closed stdout loses output, not the run */
		p += n;
		len -= (size_t)n;
	}
}

static int exit_code_of(const struct vm_exec_result *res)
{
	switch (res->kind) {
	case VM_EXITED:
		return res->code;
	case VM_SIGNALED:
		return 128 + res->code;
	case VM_TIMED_OUT:
		return EXIT_VM_TIMEOUT;
	case VM_CANCELLED:
		return 128 + SIGINT;
	case VM_START_FAILED:
		return res->code == ENOENT ? 127 : 126;
	}
	return EXIT_VM_ERROR;
}

static int vm_run(int argc, char **argv)
{
	int timeout_ms = 0, memory_mb = 0, cpus = 0;
	const char *workdir = NULL, *accel = NULL;
	bool interactive = false;
	const struct cli_option opts[] = {
		{'t', "timeout", OPT_DURATION, &timeout_ms, "DURATION", "kill the command after this long"},
		{'m', "memory", OPT_INT, &memory_mb, "MB", "guest memory (default 256)"},
		{'c', "cpus", OPT_INT, &cpus, "N", "guest vCPUs (default 1)"},
		{'w', "workdir", OPT_STRING, &workdir, "DIR", "run the command in DIR in the guest"},
		{'i', "interactive", OPT_FLAG, &interactive, NULL, "send stdin to the command"},
		{0, "accel", OPT_STRING, &accel, "kvm|tcg", "choose the accelerator (default: kvm if usable)"},
		{0},
	};
	int first = cli_parse(argc, argv, opts, vm_usage, true);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	if (first >= argc) {
		cli_error("vm run: which image? (usage: vmci vm run IMAGE -- COMMAND...)");
		return EXIT_USAGE;
	}
	const char *image = argv[first++];
	if (first < argc && !strcmp(argv[first], "--"))
		first++;
	if (first >= argc) {
		cli_error("vm run: no command given (usage: vmci vm run %s -- COMMAND...)", image);
		return EXIT_USAGE;
	}
	enum vm_accel want = VM_ACCEL_AUTO;
	if (accel && !strcmp(accel, "kvm"))
		want = VM_ACCEL_KVM;
	else if (accel && !strcmp(accel, "tcg"))
		want = VM_ACCEL_TCG;
	else if (accel && strcmp(accel, "auto")) {
		cli_error("vm run: --accel takes kvm, tcg or auto, not '%s'", accel);
		return EXIT_USAGE;
	}

	char label[128];
	snprintf(label, sizeof(label), "building %s", image);
	struct cli_progress progress = {.label = label};
	struct runner_guest_opts gopts = {
		.cpus = cpus,
		.memory_mb = memory_mb,
		.accel = want,
		.progress = cli_progress,
		.progress_ctx = &progress,
	};
	struct vmci_err err = {0};
	struct runner_guest *guest;
	int rc = runner_guest_boot(image, &gopts, &guest, &err);
	cli_progress_end(&progress);
	if (rc) {
		cli_error("%s", err.msg);
		return EXIT_VM_ERROR;
	}

	struct vm_exec_opts xo = {
		.argv = (const char *const *)(argv + first),
		.cwd = workdir,
		.timeout_ms = (uint32_t)timeout_ms,
		.stdin_fd = interactive ? STDIN_FILENO : -1,
		.on_output = write_output,
	};
	struct vm_exec_result res;
	running_vm = guest->vm;
	struct sigaction sa = {.sa_handler = on_interrupt};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	rc = vm_exec(guest->vm, &xo, &res, &err);
	running_vm = NULL;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	runner_guest_destroy(guest, 3000);
	if (rc) {
		cli_error("%s", err.msg);
		return EXIT_VM_ERROR;
	}
	if (res.kind != VM_EXITED) {
		char how[128];
		vm_exec_result_describe(&res, how, sizeof(how));
		cli_error("'%s' %s in %s", argv[first], how, image);
	}
	return exit_code_of(&res);
}

int cmd_vm(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		printf("Usage: vmci vm run [OPTIONS] IMAGE -- COMMAND [ARG...]\n"
		       "Run 'vmci vm run --help' for details.\n");
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	if (!strcmp(argv[1], "run"))
		return vm_run(argc - 1, argv + 1);
	cli_error("vm: unknown subcommand '%s' (known: run)", argv[1]);
	return EXIT_USAGE;
}
