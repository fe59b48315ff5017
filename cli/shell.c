/*
 * vmci shell IMAGE [-- COMMAND...]: an interactive shell (or COMMAND) in a
 * fresh VM, on a pseudo-terminal in the guest: the host terminal goes to
 * raw mode (restored on every way out), window-size changes follow, and
 * the exit status comes back. Also the shell of `vmci run
 * --keep-on-failure` in a failed job's VM (cli_shell_session).
 *
 * Without a terminal on stdin the command reads stdin as a plain pipe.
 */
#include "cli/cli.h"

#include "runner/runner.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

static const char shell_usage[] =
    "Usage: vmci shell [OPTIONS] IMAGE [-- COMMAND [ARG...]]\n"
    "\n"
    "Boots a fresh VM from IMAGE and opens a shell in it (bash when the image has it),\n"
    "or runs COMMAND, on a terminal: job control, line editing and window resizes work.\n"
    "The VM is stopped when the shell exits; vmci exits with the shell's status.\n"
    "It has no network device unless --network nat gives it outbound access through\n"
    "the host (to apt-get install something, say), as pipeline jobs have by default.";

/* The terminal state to restore, and the VM a SIGWINCH resizes: process-wide, as signals are. */
static struct termios saved_tio;
static volatile sig_atomic_t tio_saved;
static struct vm *volatile session_vm;

void cli_shell_restore_terminal(void)
{
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		tio_saved = 0;
	}
}

static void on_winch(int signo)
{
	struct vm *vm = session_vm;
	struct winsize ws;
	if (vm && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
		vm_resize(vm, ws.ws_row, ws.ws_col);
}

static void on_stop(void *ctx, int signo)
{
	struct vm *vm = session_vm;
	if (vm)
		vm_cancel(vm);
}

int cli_shell_session(struct vm *vm, const char *cwd, const char *const *env,
		      const char *const *argv, int *status, struct vmci_err *err)
{
	bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	static const char *const login[] = {
	    "sh", "-c", "command -v bash >/dev/null 2>&1 && exec bash -l; exec sh -l", NULL};
	static const char *const plain[] = {"sh", NULL};
	if (!argv)
		argv = tty ? login : plain;

	/* The caller's env, then TERM so that the guest's programs draw for this terminal. */
	size_t n = 0;
	while (env && env[n])
		n++;
	const char **full = calloc(n + 2, sizeof(*full));
	if (!full)
		return vmci_err_set(err, ENOMEM, "out of memory");
	if (n)
		memcpy(full, env, n * sizeof(*full));
	char term[128];
	const char *t = getenv("TERM");
	snprintf(term, sizeof(term), "TERM=%s", t && *t ? t : "xterm");
	if (tty)
		full[n++] = term;

	struct vm_exec_opts xo = {
	    .argv = argv,
	    .env = full,
	    .cwd = cwd,
	    .stdin_fd = STDIN_FILENO,
	    .on_output = cli_write_output,
	};
	struct winsize ws = {.ws_row = 24, .ws_col = 80};
	struct sigaction sa_winch = {.sa_handler = on_winch}, old_winch;
	/* Without a terminal Ctrl-C ends the command; with one, it is a byte for the guest. */
	struct runner_interrupt stop = {.cancel = on_stop}, old_stop;
	if (tty) {
		if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) || !ws.ws_row || !ws.ws_col)
			ws = (struct winsize){.ws_row = 24, .ws_col = 80};
		xo.pty_rows = ws.ws_row;
		xo.pty_cols = ws.ws_col;
		if (tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
			struct termios raw = saved_tio;
			cfmakeraw(&raw);
			tio_saved = 1;
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
		}
	}
	session_vm = vm;
	sigaction(SIGWINCH, &sa_winch, &old_winch);
	old_stop = runner_interrupt_set(&stop);
	struct vm_exec_result res;
	int rc = vm_exec(vm, &xo, &res, err);
	sigaction(SIGWINCH, &old_winch, NULL);
	runner_interrupt_set(&old_stop);
	session_vm = NULL;
	cli_shell_restore_terminal();
	free(full);
	if (rc == 0)
		*status = cli_exec_status(&res);
	return rc;
}

int cmd_shell(int argc, char **argv)
{
	runner_interrupt_start(cli_shell_restore_terminal, 0);
	int memory_mb = 0, cpus = 0;
	const char *accel = NULL, *workdir = NULL, *network = NULL;
	const struct cli_option opts[] = {
	    {'m', "memory", OPT_INT, &memory_mb, "MB", "guest memory (default 256)"},
	    {'c', "cpus", OPT_INT, &cpus, "N", "guest vCPUs (default 1)"},
	    {'w', "workdir", OPT_STRING, &workdir, "DIR", "start in DIR in the guest (default /)"},
	    {0, "accel", OPT_STRING, &accel, "kvm|tcg", "the accelerator (default: kvm if usable)"},
	    {0, "network", OPT_STRING, &network, "nat|none",
	     "nat: outbound access through the host; none: no network device (default)"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, shell_usage, true);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	if (first >= argc) {
		cli_error("shell: which image? (usage: vmci shell IMAGE)");
		return EXIT_USAGE;
	}
	const char *image = argv[first++];
	if (first < argc && !strcmp(argv[first], "--"))
		first++;
	enum vm_accel want;
	if (vm_accel_parse(accel, &want)) {
		cli_error("shell: --accel takes kvm, tcg or auto, not '%s'", accel);
		return EXIT_USAGE;
	}
	enum vm_network net = VM_NET_NONE;
	if (network && vm_network_parse(network, &net)) {
		cli_error("shell: --network takes nat or none, not '%s'", network);
		return EXIT_USAGE;
	}
	char label[128];
	snprintf(label, sizeof(label), "building %s", image);
	struct cli_progress progress = {.label = label};
	struct runner_guest_opts gopts = {
	    .cpus = cpus,
	    .memory_mb = memory_mb,
	    .accel = want,
	    .network = net,
	    .progress = cli_progress,
	    .progress_ctx = &progress,
	};
	struct vmci_err err = {0};
	struct runner_guest *guest;
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "vmci: starting %s...\r", image);
	int rc = runner_guest_boot(image, &gopts, &guest, &err);
	cli_progress_end(&progress);
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "\r\033[K");
	if (rc) {
		cli_error("%s", err.msg);
		return EXIT_VM_ERROR;
	}
	int status = 0;
	rc = cli_shell_session(guest->vm, workdir, NULL,
			       first < argc ? (const char *const *)(argv + first) : NULL, &status,
			       &err);
	runner_guest_destroy(guest, VMCI_STOP_TIMEOUT_MS);
	if (rc) {
		cli_error("%s", err.msg);
		return EXIT_VM_ERROR;
	}
	return status;
}
