/* vmci vm run IMAGE -- COMMAND...: one command in a fresh VM (or several, through a pool). */
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
    "--repeat N runs the command N times, each time in a VM no earlier run touched,\n"
    "and reports the time from asking for a VM to the first byte of output. With\n"
    "--pool the VMs come from a warm pool and are reverted to their clean snapshot\n"
    "between runs; --start template starts new VMs from the image's ready-state\n"
    "template ($VMCI_HOME/templates, made on first use) instead of booting them:\n"
    "\n"
    "  vmci vm run --pool --repeat 5 busybox-x86_64 -- uname -a\n"
    "\n"
    "The VM has no network device unless --network nat gives it outbound access\n"
    "through the host (DNS, HTTP, HTTPS; not the host's own loopback services), as\n"
    "pipeline jobs have by default.\n"
    "\n"
    "Images: any imported or pulled image (see: vmci image ls), or one with a\n"
    "recipe, built on first use:";

/* What a Ctrl-C or SIGTERM should stop: the running command, a wait for a pool VM, the runs. */
static struct vm *volatile running_vm;
static struct runner_pool *volatile running_pool;

static void on_interrupt(void *ctx, int signo)
{
	struct vm *vm = running_vm;
	if (vm)
		vm_cancel(vm);
	struct runner_pool *pool = running_pool;
	if (pool)
		runner_pool_interrupt(pool);
}

/* Output goes to our stdout/stderr; the first byte's time is kept for --repeat. */
struct output {
	int64_t first_ms;
};

static void write_output(void *ctx, int fd, const void *data, size_t len)
{
	struct output *o = ctx;
	if (!o->first_ms)
		o->first_ms = clock_ms();
	cli_write_output(NULL, fd, data, len);
}

struct run_config {
	const char *image;
	char **argv;
	struct vm_exec_opts exec;
	struct runner_guest_opts guest;
	bool from_template;
	enum runner_template_kind kind;
	char templates[PATH_MAX];
	struct runner_pool *pool;
	bool timing; /* report each run's times on stderr */
};

/* One run: get a VM, run the command, give the VM back. Returns the exit code. */
static int run_once(struct run_config *c, int n)
{
	struct vmci_err err = {0};
	struct runner_guest *g = NULL;
	int64_t t0 = clock_ms();
	int rc;
	if (c->pool)
		rc = runner_pool_acquire(c->pool, c->image, &c->guest, -1, &g, &err);
	else if (c->from_template)
		rc = runner_guest_restore(c->image, &c->guest, c->templates, c->kind, &g, &err);
	else
		rc = runner_guest_boot(c->image, &c->guest, &g, &err);
	if (rc) {
		cli_error("%s", err.msg);
		return EXIT_VM_ERROR;
	}
	int64_t t_vm = clock_ms();
	struct output out = {0};
	struct vm_exec_opts xo = c->exec;
	xo.ctx = &out;
	struct vm_exec_result res;
	running_vm = g->vm;
	rc = runner_interrupted() ? vmci_err_set(&err, EINTR, "interrupted")
				  : vm_exec(g->vm, &xo, &res, &err);
	running_vm = NULL;
	int64_t t_end = clock_ms();
	if (c->pool)
		runner_pool_release(c->pool, g, rc < 0);
	else
		runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	if (rc) {
		cli_error("%s", err.msg);
		return EXIT_VM_ERROR;
	}
	if (c->timing) {
		char first[32], vm[32], all[32];
		format_duration(out.first_ms - t0, first, sizeof(first));
		format_duration(t_vm - t0, vm, sizeof(vm));
		format_duration(t_end - t0, all, sizeof(all));
		if (out.first_ms)
			fprintf(stderr,
				"vmci: run %d: first output after %s (VM ready after %s), "
				"done after %s\n",
				n, first, vm, all);
		else
			fprintf(stderr,
				"vmci: run %d: no output; VM ready after %s, done after %s\n", n,
				vm, all);
	}
	/* Cancelled by our own SIGINT or SIGTERM: exit as if killed by it. */
	if (res.kind == VM_CANCELLED && runner_interrupted())
		return 128 + runner_interrupted();
	if (res.kind != VM_EXITED) {
		char how[128];
		vm_exec_result_describe(&res, how, sizeof(how));
		cli_error("'%s' %s in %s", c->argv[0], how, c->image);
	}
	return cli_exec_status(&res);
}

static int parse_start(const char *start, struct run_config *c)
{
	if (!start || !strcmp(start, "boot"))
		return 0;
	c->from_template = true;
	if (!strcmp(start, "template") || !strcmp(start, "template-mapped"))
		c->kind = RUNNER_TEMPLATE_MAPPED;
	else if (!strcmp(start, "template-plain"))
		c->kind = RUNNER_TEMPLATE_PLAIN;
	else if (!strcmp(start, "template-snapshot"))
		c->kind = RUNNER_TEMPLATE_SNAPSHOT;
	else
		return -1;
	return runner_templates_default(c->templates, sizeof(c->templates));
}

static int vm_run(int argc, char **argv)
{
	int timeout_ms = 0, memory_mb = 0, cpus = 0, repeat = 0, pool_size = 1;
	const char *workdir = NULL, *accel = NULL, *start = NULL, *network = NULL;
	bool interactive = false, use_pool = false;
	const struct cli_option opts[] = {
	    {'t', "timeout", OPT_DURATION, &timeout_ms, "DURATION",
	     "kill the command after this long"},
	    {'m', "memory", OPT_INT, &memory_mb, "MB", "guest memory (default 256)"},
	    {'c', "cpus", OPT_INT, &cpus, "N", "guest vCPUs (default 1)"},
	    {'w', "workdir", OPT_STRING, &workdir, "DIR", "run the command in DIR in the guest"},
	    {'i', "interactive", OPT_FLAG, &interactive, NULL, "send stdin to the command"},
	    {0, "accel", OPT_STRING, &accel, "kvm|tcg",
	     "choose the accelerator (default: kvm if usable)"},
	    {0, "network", OPT_STRING, &network, "nat|none",
	     "nat: outbound access through the host; none: no network device (default)"},
	    {'r', "repeat", OPT_INT, &repeat, "N",
	     "run N times, each in a clean VM, timing each run"},
	    {0, "pool", OPT_FLAG, &use_pool, NULL,
	     "take VMs from a warm pool, reverted between runs"},
	    {0, "pool-size", OPT_INT, &pool_size, "N", "VMs the pool keeps warm (default 1)"},
	    {0, "start", OPT_STRING, &start, "HOW",
	     "how new VMs start: boot (default), template, template-plain, template-snapshot"},
	    {0},
	};
	char *usage = cli_usage_with_recipes(vm_usage);
	int first = cli_parse(argc, argv, opts, usage ? usage : vm_usage, true);
	free(usage);
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
	enum vm_accel want;
	if (vm_accel_parse(accel, &want)) {
		cli_error("vm run: --accel takes kvm, tcg or auto, not '%s'", accel);
		return EXIT_USAGE;
	}
	enum vm_network net = VM_NET_NONE;
	if (network && vm_network_parse(network, &net)) {
		cli_error("vm run: --network takes nat or none, not '%s'", network);
		return EXIT_USAGE;
	}
	if (repeat < 0 || pool_size < 1) {
		cli_error("vm run: --repeat and --pool-size want a positive number");
		return EXIT_USAGE;
	}
	if (interactive && repeat > 1) {
		cli_error("vm run: --interactive reads stdin once; it does not go with --repeat");
		return EXIT_USAGE;
	}

	char label[128];
	snprintf(label, sizeof(label), "building %s", image);
	struct cli_progress progress = {.label = label};
	struct run_config c = {
	    .image = image,
	    .argv = argv + first,
	    .exec =
		{
		    .argv = (const char *const *)(argv + first),
		    .cwd = workdir,
		    .timeout_ms = (uint32_t)timeout_ms,
		    .stdin_fd = interactive ? STDIN_FILENO : -1,
		    .on_output = write_output,
		},
	    .guest =
		{
		    .cpus = cpus,
		    .memory_mb = memory_mb,
		    .accel = want,
		    .network = net,
		    .progress = cli_progress,
		    .progress_ctx = &progress,
		},
	    .timing = repeat > 0 || use_pool,
	};
	if (parse_start(start, &c)) {
		cli_error("vm run: --start takes boot, template, template-plain or "
			  "template-snapshot, not '%s'",
			  start);
		return EXIT_USAGE;
	}

	/* A first signal stops the command and the runs; a second ends vmci, and QEMU with it. */
	runner_interrupt_start(NULL, 0);
	struct runner_interrupt interrupt = {.cancel = on_interrupt};
	runner_interrupt_set(&interrupt);
	struct vmci_err err = {0};
	if (use_pool) {
		struct runner_pool *pool;
		struct runner_pool_opts po = {
		    .image = image,
		    .size = pool_size,
		    .guest = c.guest,
		    .templates = c.from_template ? c.templates : NULL,
		    .template_kind = c.kind,
		};
		int rc = runner_pool_new(NULL, &pool, &err);
		if (!rc && (rc = runner_pool_add(pool, &po, &err)) != 0)
			runner_pool_free(pool);
		cli_progress_end(&progress);
		if (rc) {
			cli_error("%s", err.msg);
			return EXIT_VM_ERROR;
		}
		c.pool = running_pool = pool;
	}
	int code = EXIT_OK;
	int runs = repeat > 0 ? repeat : 1;
	for (int i = 1; i <= runs && !runner_interrupted(); i++) {
		code = run_once(&c, i);
		cli_progress_end(&progress);
		if (code == EXIT_VM_ERROR)
			break;
	}
	if (c.pool) {
		struct runner_pool_stats st;
		runner_pool_stats(c.pool, image, &st);
		if (c.timing && st.reverts)
			fprintf(
			    stderr,
			    "vmci: pool: %lld VM(s) started, %lld revert(s), the last in %lld ms\n",
			    st.started, st.reverts, (long long)st.last_revert_ms);
		running_pool = NULL;
		runner_pool_free(c.pool);
	}
	runner_interrupt_set(NULL);
	if (runner_interrupted() && code == EXIT_OK)
		code = 128 + runner_interrupted();
	return code;
}

static const char receive_usage[] =
    "Usage: vmci vm receive --listen SOCKET\n"
    "\n"
    "Waits on the unix socket SOCKET for one running VM that another vmci process\n"
    "hands over (vmci run --move-to SOCKET, then SIGUSR1 to it): prepares a VM of\n"
    "the same image and shape, takes the VM's memory, disk and running command live,\n"
    "and runs the job's commands for the sender until its job ends; then stops the\n"
    "VM and exits 0. Exits 125 when no VM arrived whole (it runs on at the sender).\n"
    "\n"
    "Ctrl-C (or SIGTERM) cancels: before a VM arrived, the receiver gives up at once\n"
    "(a move under way fails and the job goes on at the sender); once it runs a job, the\n"
    "job's command is cancelled, the job ends cancelled at the sender, and the VM\n"
    "stops. It exits 128 + the signal. A second signal ends it at once.";

static void say_line(void *ctx, const char *line)
{
	fprintf(stderr, "vmci: %s\n", line);
}

static void cancel_receive(void *ctx, int signo)
{
	runner_cancel_request(ctx);
}

static int vm_receive(int argc, char **argv)
{
	const char *listen = NULL;
	const struct cli_option opts[] = {
	    {0, "listen", OPT_STRING, &listen, "SOCKET", "the unix socket to wait on"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, receive_usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	if (!listen || first < argc) {
		cli_error(
		    "vm receive: give the socket to wait on: vmci vm receive --listen SOCKET");
		return EXIT_USAGE;
	}
	/* The first signal cancels (the job it took ends cancelled); a second ends vmci at once. */
	runner_interrupt_start(NULL, 0);
	struct runner_cancel *cancel = runner_cancel_new();
	if (!cancel) {
		cli_error("vm receive: out of memory");
		return EXIT_VM_ERROR;
	}
	struct runner_interrupt on_signal = {.cancel = cancel_receive, .ctx = cancel};
	runner_interrupt_set(&on_signal);
	struct vmci_err err = {0};
	int rc = runner_receive(listen, say_line, NULL, cancel, &err);
	runner_interrupt_set(NULL);
	runner_cancel_free(cancel);
	if (runner_interrupted())
		return 128 + runner_interrupted();
	if (rc) {
		cli_error("vm receive: %s", err.msg);
		return EXIT_VM_ERROR;
	}
	return EXIT_OK;
}

int cmd_vm(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		printf("Usage: vmci vm run [OPTIONS] IMAGE -- COMMAND [ARG...]\n"
		       "       vmci vm receive --listen SOCKET\n"
		       "Run 'vmci vm run --help' or 'vmci vm receive --help' for details.\n");
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	if (!strcmp(argv[1], "run"))
		return vm_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "receive"))
		return vm_receive(argc - 1, argv + 1);
	cli_error("vm: unknown subcommand '%s' (known: run, receive)", argv[1]);
	return EXIT_USAGE;
}
