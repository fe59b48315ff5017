/*
 * The QEMU child process: its command line, its start, and its end.
 *
 * QEMU is started with fork + exec rather than posix_spawn because the
 * child must set up things spawn cannot: its own process group, a parent
 * death signal, and a clean signal state. Everything the child needs is
 * prepared before fork, so between fork and exec it only makes
 * async-signal-safe system calls (the caller may have other threads).
 */
#include "vmcore/qemu.h"

#include "agent/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QEMU_DEFAULT_CPUS      1
#define QEMU_DEFAULT_MEMORY_MB 256
#define QEMU_CONNECT_RETRY_MS  10
#define QEMU_ERR_TAIL	       640 /* console bytes quoted in an error (err.msg is 1 KiB) */
/* Guest memory a TCG guest has beyond its whole MiBs: see vm_memory_kb. */
#define QEMU_TCG_RAM_PAD_KB 8

/* vmci's own kernel arguments; spec->cmdline is appended. */
/*
 * no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
 * check can miss its window and panic ("IO-APIC + timer doesn't work!").
 */
#define QEMU_KERNEL_ARGS "panic=-1 quiet loglevel=3 no_timer_check"

static bool io_uring_usable;

static void probe_io_uring(void)
{
	struct io_uring_params params;
	memset(&params, 0, sizeof(params));
	long fd = syscall(__NR_io_uring_setup, 1, &params);
	io_uring_usable = fd >= 0;
	if (fd >= 0)
		close((int)fd);
}

/*
 * Whether this host lets processes use io_uring (a kernel may lack it or
 * forbid it: kernel.io_uring_disabled, a container's seccomp filter).
 * QEMU reads a snapshot's memory from the disk in ~32 KiB requests; with
 * its default thread pool each request is a hand-off between threads, with
 * io_uring it is not: a revert loads about a third faster.
 */
static bool host_has_io_uring(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, probe_io_uring);
	return io_uring_usable;
}

void qemu_paths_init(struct qemu_paths *p, const char *run_dir)
{
	/* A path truncated here is caught by qemu_launch's length checks. */
	fs_path(p->qmp, sizeof(p->qmp), "%s/qmp.sock", run_dir);
	fs_path(p->agent, sizeof(p->agent), "%s/agent.sock", run_dir);
	fs_path(p->console, sizeof(p->console), "%s/console.log", run_dir);
}

/* ---- the command line ------------------------------------------------ */

struct argv {
	char **v; /* NULL-terminated once anything was added */
	size_t n, cap;
	bool oom;
};

static void argv_add_owned(struct argv *a, char *s)
{
	if (!s || a->oom) {
		a->oom = true;
		free(s);
		return;
	}
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		char **v = realloc(a->v, cap * sizeof(*v));
		if (!v) {
			a->oom = true;
			free(s);
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void argv_add(struct argv *a, const char *s)
{
	argv_add_owned(a, strdup(s));
}

/* Adds the contents of b as one argument and empties b. */
static void argv_add_buf(struct argv *a, struct buf *b)
{
	argv_add(a, buf_cstr(b));
	b->len = 0;
}

static void argv_free(struct argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	memset(a, 0, sizeof(*a));
}

/*
 * Appends a value inside a QEMU option list ("file,id=x,path=VALUE"): a
 * comma in a path would start the next option, so it is doubled.
 */
static void opt_value(struct buf *b, const char *value)
{
	for (const char *p = value; *p; p++) {
		buf_append(b, p, 1);
		if (*p == ',')
			buf_append(b, ",", 1);
	}
}

/* The fd QEMU's child holds the network socket on (see qemu_child). */
#define QEMU_NET_FD 4
/* Fixed, so that a saved state and every clone of it agree; each VM has its own network. */
#define QEMU_NET_MAC "52:54:00:12:34:56"

long vm_memory_kb(enum vm_accel accel, int memory_mb)
{
	long kb = (long)(memory_mb > 0 ? memory_mb : QEMU_DEFAULT_MEMORY_MB) * 1024;
	return accel == VM_ACCEL_KVM ? kb : kb + QEMU_TCG_RAM_PAD_KB;
}

static void argv_build(struct argv *a, const char *binary, const struct vm_spec *spec,
		       enum vm_accel accel, bool live_incoming, const struct qemu_paths *paths,
		       bool net)
{
	bool x86 = spec->arch == VM_ARCH_X86_64;
	bool kvm = accel == VM_ACCEL_KVM;
	struct buf b = {0};

	argv_add(a, binary);
	argv_add(a, "-machine");
	/* gic-version=max: GICv2 would cap an arm64 guest at 8 vCPUs. */
	buf_appendf(&b, "%s", x86 ? "q35" : "virt,gic-version=max");
	if (spec->mem_path || spec->mem_backend)
		buf_appendf(&b, ",memory-backend=" QEMU_RAM_ID);
	argv_add_buf(a, &b);
	argv_add(a, "-accel");
	argv_add(a, kvm ? "kvm" : "tcg,thread=multi");
	argv_add(a, "-cpu");
	argv_add(a, kvm ? "host" : "max");
	/* No default devices, no config files, no display: only what follows. */
	argv_add(a, "-nodefaults");
	argv_add(a, "-no-user-config");
	argv_add(a, "-display");
	argv_add(a, "none");
	argv_add(a, "-vga");
	argv_add(a, "none");
	/* A guest reboot or panic (panic=-1) ends QEMU instead of looping. */
	argv_add(a, "-no-reboot");

	/* Every size in KiB: see vm_memory_kb for the TCG padding. */
	long memory_kb = vm_memory_kb(accel, spec->memory_mb);
	buf_appendf(&b, "%ldk", memory_kb);
	argv_add(a, "-m");
	argv_add_buf(a, &b);
	if (spec->mem_path) {
		/* share=off maps the file privately: a restore reads only the pages the guest
		 * touches. */
		buf_appendf(&b,
			    "memory-backend-file,id=" QEMU_RAM_ID ",size=%ldk,share=%s,mem-path=",
			    memory_kb, spec->mem_shared ? "on" : "off");
		opt_value(&b, spec->mem_path);
		argv_add(a, "-object");
		argv_add_buf(a, &b);
	} else if (spec->mem_backend) {
		buf_appendf(&b, "memory-backend-ram,id=" QEMU_RAM_ID ",size=%ldk", memory_kb);
		argv_add(a, "-object");
		argv_add_buf(a, &b);
	}
	buf_appendf(&b, "%d", spec->cpus > 0 ? spec->cpus : QEMU_DEFAULT_CPUS);
	argv_add(a, "-smp");
	argv_add_buf(a, &b);

	/* -kernel, -initrd and -append take their value verbatim. */
	argv_add(a, "-kernel");
	argv_add(a, spec->kernel);
	argv_add(a, "-initrd");
	argv_add(a, spec->initrd);
	buf_appendf(&b, "console=%s " QEMU_KERNEL_ARGS, x86 ? "ttyS0" : "ttyAMA0");
	if (spec->cmdline && *spec->cmdline)
		buf_appendf(&b, " %s", spec->cmdline);
	argv_add(a, "-append");
	argv_add_buf(a, &b);

	/*
	 * The serial console appends to the log that also holds QEMU's own
	 * stderr; a plain "-serial file:" would truncate it and then write
	 * over QEMU's messages from its own offset.
	 */
	buf_appendf(&b, "file,id=console,append=on,path=");
	opt_value(&b, paths->console);
	argv_add(a, "-chardev");
	argv_add_buf(a, &b);
	argv_add(a, "-serial");
	argv_add(a, "chardev:console");

	buf_appendf(&b, "socket,id=qmp,server=on,wait=off,path=");
	opt_value(&b, paths->qmp);
	argv_add(a, "-chardev");
	argv_add_buf(a, &b);
	argv_add(a, "-mon");
	argv_add(a, "chardev=qmp,mode=control");

	/* The agent channel: a virtio-serial port backed by a unix socket. */
	argv_add(a, "-device");
	argv_add(a, "virtio-serial-pci,id=vser0");
	buf_appendf(&b, "socket,id=agent,server=on,wait=off,path=");
	opt_value(&b, paths->agent);
	argv_add(a, "-chardev");
	argv_add_buf(a, &b);
	argv_add(a, "-device");
	argv_add(a, "virtserialport,bus=vser0.0,chardev=agent,name=" AGENT_PORT_NAME);

	/* Guests would otherwise wait for entropy during boot. */
	argv_add(a, "-device");
	argv_add(a, "virtio-rng-pci");

	/*
	 * Disks added while the guest runs (vm_disk_attach) go on this
	 * controller as SCSI disks: no PCI hot-plug, so the same on q35 and
	 * on the Arm virt machine, and removed without the guest's consent.
	 */
	argv_add(a, "-device");
	argv_add(a, "virtio-scsi-pci,id=" QEMU_SCSI_ID);

	if (spec->disk) {
		buf_appendf(&b, "file=");
		opt_value(&b, spec->disk);
		buf_appendf(&b,
			    ",if=none,id=disk0,node-name=" QEMU_DISK_NODE
			    ",format=qcow2,cache=%s,discard=unmap%s",
			    spec->disk_disposable ? "unsafe" : "writeback",
			    host_has_io_uring() ? ",aio=io_uring" : "");
		argv_add(a, "-drive");
		argv_add_buf(a, &b);
		argv_add(a, "-device");
		argv_add(a, "virtio-blk-pci,drive=disk0");
	}
	/*
	 * The NIC: its backend is the socket pair to the VM's network helper.
	 * No option ROM: the kernel is booted directly, never from the network.
	 */
	if (net) {
		argv_add(a, "-netdev");
		buf_appendf(&b, "socket,id=net0,fd=%d", QEMU_NET_FD);
		argv_add_buf(a, &b);
		argv_add(a, "-device");
		argv_add(a, "virtio-net-pci,netdev=net0,romfile=,mac=" QEMU_NET_MAC);
	}
	/* The state is loaded over QMP (migrate-incoming) once vmcore is connected. */
	if (spec->incoming || live_incoming) {
		argv_add(a, "-incoming");
		argv_add(a, "defer");
	}
	/*
	 * A live migration's destination stays paused when the state is in:
	 * its disk is still exported to the source, and the guest may only
	 * run once the export is gone (the guest's device wants the disk
	 * unshared).
	 */
	if (live_incoming)
		argv_add(a, "-S");
	if (spec->loadvm) {
		argv_add(a, "-loadvm");
		argv_add(a, spec->loadvm);
	}
	buf_free(&b);
}

/* The command line as a shell would accept it, for the debug log. */
static void argv_log(const struct argv *a)
{
	if (!vmci_log_enabled(VMCI_LOG_DEBUG))
		return;
	struct buf b = {0};
	for (size_t i = 0; i < a->n; i++) {
		const char *s = a->v[i];
		if (i)
			buf_append(&b, " ", 1);
		if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "0123456789-_./,:=+@%") == strlen(s)) {
			buf_appendf(&b, "%s", s);
			continue;
		}
		buf_append(&b, "'", 1);
		for (; *s; s++) {
			if (*s == '\'')
				buf_appendf(&b, "'\\''");
			else
				buf_append(&b, s, 1);
		}
		buf_append(&b, "'", 1);
	}
	log_debug("starting %s", buf_cstr(&b));
	buf_free(&b);
}

/* ---- starting the process -------------------------------------------- */

/* What the child reports through the exec pipe when it fails before exec. */
struct child_failure {
	int step; /* enum child_step */
	int err;  /* errno */
};

enum child_step { CHILD_SETUP, CHILD_EXEC };

int qemu_find_binary(enum vm_arch arch, char *out, size_t size)
{
	return path_search(vm_qemu_binary(arch), out, size);
}

/* Moves fd above stdin/stdout/stderr so the child's dup2s cannot clobber it. */
static int fd_above_stdio(int fd)
{
	if (fd < 0 || fd > STDERR_FILENO)
		return fd;
	int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	int e = errno;
	close(fd);
	errno = e;
	return moved;
}

struct child_setup {
	char *const *argv;
	const char *path;
	pid_t parent;
	int null_fd, console_fd, report_fd; /* all above stderr, all close-on-exec */
	int net_fd;			    /* -1, or above QEMU_NET_FD and close-on-exec */
	unsigned max_fd;		    /* for closing fds without close_range */
};

static void __attribute__((noreturn)) child_fail(int report_fd, int step, int e)
{
	struct child_failure f = {.step = step, .err = e};
	ssize_t n = write(report_fd, &f, sizeof(f));
	(void)n;
	_exit(127);
}

/* Runs in the child between fork and exec: async-signal-safe calls only. */
static void __attribute__((noreturn)) qemu_child(const struct child_setup *c)
{
	/* Own process group: a terminal's ^C goes to vmci, which stops VMs in order. */
	setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		child_fail(c->report_fd, CHILD_SETUP, errno);
	/* The parent may have died before PR_SET_PDEATHSIG took effect. */
	if (getppid() != c->parent)
		_exit(127);

	/* Blocked and ignored signals survive exec; QEMU must see SIGTERM. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL); /* fails harmlessly for KILL, STOP, glibc's own */

	if (dup2(c->null_fd, STDIN_FILENO) < 0 || dup2(c->console_fd, STDOUT_FILENO) < 0 ||
	    dup2(c->console_fd, STDERR_FILENO) < 0)
		child_fail(c->report_fd, CHILD_SETUP, errno);

	/*
	 * Keep only stdio, the report pipe (as fd 3, closed by exec) and the
	 * network socket (as QEMU_NET_FD, kept by exec). The network fd is
	 * above QEMU_NET_FD, so moving the report pipe cannot clobber it.
	 */
	int report = c->report_fd;
	if (report != 3) {
		if (dup3(report, 3, O_CLOEXEC) < 0)
			child_fail(report, CHILD_SETUP, errno);
		report = 3;
	}
	unsigned keep = 4;
	if (c->net_fd >= 0) {
		if (dup2(c->net_fd, QEMU_NET_FD) < 0)
			child_fail(report, CHILD_SETUP, errno);
		keep = QEMU_NET_FD + 1;
	}
	if (close_range(keep, ~0U, 0) < 0)
		for (unsigned fd = keep; fd < c->max_fd; fd++)
			close((int)fd);

	execv(c->path, c->argv);
	child_fail(report, CHILD_EXEC, errno);
}

/* Checks the files QEMU will open, so a typo is reported before a process starts. */
static int check_inputs(const struct vm_spec *spec, const struct qemu_paths *paths,
			struct vmci_err *err)
{
	if (!spec->kernel || !*spec->kernel)
		return vmci_err_set(err, EINVAL, "VM spec has no kernel (direct boot needs one)");
	if (!spec->initrd || !*spec->initrd)
		return vmci_err_set(err, EINVAL, "VM spec has no initramfs (it holds the agent)");
	if (access(spec->kernel, R_OK) < 0)
		return vmci_err_errno(err, errno, "cannot read the kernel %s", spec->kernel);
	if (access(spec->initrd, R_OK) < 0)
		return vmci_err_errno(err, errno, "cannot read the initramfs %s", spec->initrd);
	if (spec->disk && access(spec->disk, R_OK | W_OK) < 0)
		return vmci_err_errno(err, errno, "cannot open the disk %s for writing",
				      spec->disk);
	/* A private mapping of a missing file would be a guest with zeroed memory. */
	if (spec->mem_path && !spec->mem_shared && access(spec->mem_path, R_OK) < 0)
		return vmci_err_errno(err, errno, "cannot read the memory file %s", spec->mem_path);
	if (spec->incoming && access(spec->incoming, R_OK) < 0)
		return vmci_err_errno(err, errno, "cannot read the saved state %s", spec->incoming);
	if (spec->loadvm && (!spec->disk || spec->incoming))
		return vmci_err_set(
		    err, EINVAL,
		    "VM spec: starting from snapshot '%s' needs the disk that holds "
		    "it, and no saved state",
		    spec->loadvm);

	struct sockaddr_un sa;
	const char *sockets[] = {paths->qmp, paths->agent};
	for (size_t i = 0; i < ARRAY_LEN(sockets); i++)
		if (strlen(sockets[i]) >= sizeof(sa.sun_path))
			return vmci_err_set(
			    err, ENAMETOOLONG,
			    "socket path %s is longer than a unix socket allows (%zu "
			    "bytes); use a shorter run directory",
			    sockets[i], sizeof(sa.sun_path) - 1);
	return 0;
}

static int launch(const struct vm_spec *spec, enum vm_accel accel, bool incoming,
		  const struct qemu_paths *paths, int net_fd, struct qemu_proc *proc,
		  struct vmci_err *err)
{
	memset(proc, 0, sizeof(*proc));
	proc->pidfd = -1;
	if (accel != VM_ACCEL_KVM && accel != VM_ACCEL_TCG)
		return vmci_err_set(err, EINVAL, "%s: choose KVM or TCG first (vm_accel_choose)",
				    __func__);
	int rc = check_inputs(spec, paths, err);
	if (rc)
		return rc;

	const char *binary = vm_qemu_binary(spec->arch);
	char path[PATH_MAX];
	if (path_search(binary, path, sizeof(path)) < 0)
		return pkg_err_missing(err, binary);

	/* Sockets left by an earlier QEMU would refuse connections until replaced. */
	unlink(paths->qmp);
	unlink(paths->agent);

	/* A fresh log: an old one would put another boot's lines into our errors. */
	int console_fd = fd_above_stdio(
	    open(paths->console, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
	if (console_fd < 0)
		return vmci_err_errno(err, errno, "cannot create the console log %s",
				      paths->console);
	int null_fd = fd_above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
	int report[2] = {-1, -1};
	/* Closed below: the caller keeps its own net_fd. */
	int child_net_fd = net_fd >= 0 ? fcntl(net_fd, F_DUPFD_CLOEXEC, QEMU_NET_FD + 1) : -1;
	if (null_fd < 0 || (net_fd >= 0 && child_net_fd < 0) || pipe2(report, O_CLOEXEC) < 0) {
		rc = vmci_err_errno(err, errno, "%s: cannot prepare the QEMU process", __func__);
		goto out_fds;
	}
	report[0] = fd_above_stdio(report[0]);
	report[1] = fd_above_stdio(report[1]);
	if (report[0] < 0 || report[1] < 0) {
		rc = vmci_err_errno(err, errno, "%s: cannot prepare the QEMU process", __func__);
		goto out_fds;
	}

	struct argv a = {0};
	argv_build(&a, binary, spec, accel, incoming, paths, child_net_fd >= 0);
	if (a.oom) {
		argv_free(&a);
		rc = vmci_err_set(err, ENOMEM, "%s: out of memory", __func__);
		goto out_fds;
	}
	argv_log(&a);

	struct rlimit rl = {0};
	getrlimit(RLIMIT_NOFILE, &rl);
	struct child_setup c = {
	    .argv = a.v,
	    .path = path,
	    .parent = getpid(),
	    .null_fd = null_fd,
	    .console_fd = console_fd,
	    .report_fd = report[1],
	    .net_fd = child_net_fd,
	    .max_fd =
		rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536 ? 65536 : (unsigned)rl.rlim_cur,
	};
	pid_t pid = fork();
	if (pid == 0)
		qemu_child(&c);
	int fork_errno = errno;
	argv_free(&a);
	close(report[1]);
	report[1] = -1;
	if (pid < 0) {
		rc = vmci_err_errno(err, fork_errno, "cannot start %s", binary);
		goto out_fds;
	}

	/* EOF: exec succeeded and closed the pipe. A record: the child failed. */
	struct child_failure f;
	ssize_t n;
	do
		n = read(report[0], &f, sizeof(f));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(f)) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		const char *package = vm_qemu_package(spec->arch);
		if (f.step == CHILD_EXEC && f.err == ENOENT && package)
			rc = vmci_err_set(err, ENOENT,
					  "cannot run %s (install the Debian package %s)", path,
					  package);
		else
			rc = vmci_err_errno(err, f.err, "cannot %s %s",
					    f.step == CHILD_EXEC ? "run" : "set up the process for",
					    path);
		goto out_fds;
	}

	proc->pid = pid;
	proc->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (proc->pidfd < 0)
		log_debug("pidfd_open(%d) failed (%s); polling for QEMU's exit instead", (int)pid,
			  strerror(errno));
	rc = 0;
out_fds:
	for (int i = 0; i < 2; i++)
		if (report[i] >= 0)
			close(report[i]);
	if (child_net_fd >= 0)
		close(child_net_fd);
	if (null_fd >= 0)
		close(null_fd);
	close(console_fd);
	return rc;
}

int qemu_launch(const struct vm_spec *spec, enum vm_accel accel, const struct qemu_paths *paths,
		int net_fd, struct qemu_proc *proc, struct vmci_err *err)
{
	return launch(spec, accel, false, paths, net_fd, proc, err);
}

int qemu_launch_incoming(const struct vm_spec *spec, enum vm_accel accel,
			 const struct qemu_paths *paths, int net_fd, struct qemu_proc *proc,
			 struct vmci_err *err)
{
	return launch(spec, accel, true, paths, net_fd, proc, err);
}

/* ---- waiting for the end --------------------------------------------- */

/* Marks an exit whose status another waiter (SIGCHLD set to SIG_IGN) collected. */
#define QEMU_STATUS_UNKNOWN (-1)

bool qemu_exited(struct qemu_proc *proc)
{
	if (proc->reaped || proc->pid <= 0)
		return true;
	int status;
	pid_t r;
	do
		r = waitpid(proc->pid, &status, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == proc->pid) {
		proc->status = status;
	} else if (r < 0 && errno == ECHILD) {
		proc->status = QEMU_STATUS_UNKNOWN;
	} else {
		return false;
	}
	proc->reaped = true;
	return true;
}

/* Sleeps up to ms, waking early when QEMU exits (if a pidfd is available). */
static void qemu_wait_exit(struct qemu_proc *proc, int64_t ms)
{
	if (ms <= 0)
		return;
	if (proc && proc->pidfd >= 0 && !proc->reaped) {
		struct pollfd p = {.fd = proc->pidfd, .events = POLLIN};
		poll(&p, 1, (int)ms);
		return;
	}
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

void qemu_reap(struct qemu_proc *proc, int timeout_ms)
{
	/* pid 0 (never launched) must never reach kill(): kill(-0) is our own group. */
	if (proc->pid > 0 && !qemu_exited(proc)) {
		int64_t deadline = clock_ms() + (timeout_ms > 0 ? timeout_ms : 0);
		for (;;) {
			int64_t left = deadline - clock_ms();
			if (left <= 0 || qemu_exited(proc))
				break;
			qemu_wait_exit(proc, proc->pidfd >= 0 ? left : (left < 10 ? left : 10));
		}
		if (!qemu_exited(proc)) {
			/* The whole group: helpers QEMU started (migration "exec:") go too. */
			if (kill(-proc->pid, SIGKILL) < 0)
				kill(proc->pid, SIGKILL);
			int status;
			pid_t r;
			do
				r = waitpid(proc->pid, &status, 0);
			while (r < 0 && errno == EINTR);
			proc->status = r == proc->pid ? status : QEMU_STATUS_UNKNOWN;
			proc->reaped = true;
		}
	}
	if (proc->pidfd >= 0) {
		close(proc->pidfd);
		proc->pidfd = -1;
	}
}

void qemu_describe_exit(const struct qemu_proc *proc, char *out, size_t size)
{
	int st = proc->status;
	if (proc->pid <= 0)
		snprintf(out, size, "was not started");
	else if (!proc->reaped)
		snprintf(out, size, "is running");
	else if (st == QEMU_STATUS_UNKNOWN)
		snprintf(out, size, "exited (status unknown)");
	else if (WIFEXITED(st))
		snprintf(out, size, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(out, size, "was killed by signal %d (SIG%s)", WTERMSIG(st),
			 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
	else
		snprintf(out, size, "ended with wait status 0x%x", (unsigned)st);
}

/* ---- the console log ------------------------------------------------- */

void qemu_console_tail(const struct qemu_paths *paths, char *out, size_t max_bytes)
{
	if (max_bytes == 0)
		return;
	out[0] = 0;
	int fd = open(paths->console, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0) {
		close(fd);
		return;
	}
	size_t want = max_bytes - 1;
	off_t start = st.st_size > (off_t)want ? st.st_size - (off_t)want : 0;
	ssize_t n = pread(fd, out, want, start);
	close(fd);
	if (n <= 0)
		return;

	/* Start at a line boundary unless the whole file fits. */
	size_t from = 0, len = (size_t)n;
	if (start > 0) {
		char *nl = memchr(out, '\n', len);
		if (nl && (size_t)(nl - out) + 1 < len)
			from = (size_t)(nl - out) + 1;
	}
	/* The guest writes this: keep text, drop CRs, defuse escape sequences. */
	size_t w = 0;
	for (size_t i = from; i < len; i++) {
		unsigned char ch = (unsigned char)out[i];
		if (ch == '\r')
			continue;
		out[w++] = (ch == '\n' || ch == '\t' || (ch >= 0x20 && ch < 0x7f)) ? (char)ch : '?';
	}
	while (w > 0 && (out[w - 1] == '\n' || out[w - 1] == ' ' || out[w - 1] == '\t'))
		w--;
	out[w] = 0;
}

void qemu_console_failure_line(const struct qemu_paths *paths, char *out, size_t size)
{
	if (size == 0)
		return;
	out[0] = 0;
	char text[8192];
	qemu_console_tail(paths, text, sizeof(text));
	static const char *const telling[] = {"error", "fail", "abort", "assert", "panic"};
	const char *first = NULL;
	for (char *line = text; *line;) {
		char *end = strchrnul(line, '\n');
		bool last = !*end;
		*end = 0;
		if (*line && !first)
			first = line;
		for (size_t i = 0; i < ARRAY_LEN(telling); i++) {
			if (strcasestr(line, telling[i])) {
				snprintf(out, size, "%s", line);
				return;
			}
		}
		if (last)
			break;
		line = end + 1;
	}
	snprintf(out, size, "%s", first ? first : "");
}

/* ---- sockets QEMU serves ---------------------------------------------- */

/* One non-blocking connect attempt. Returns the fd, or -errno. */
static int connect_once(const struct sockaddr_un *sa, int timeout_ms)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return fd;
	int e = errno;
	if (e == EINPROGRESS) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		socklen_t len = sizeof(e);
		if (poll(&p, 1, timeout_ms > 0 ? timeout_ms : 0) == 1 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == 0)
			return fd;
		if (e == EINPROGRESS || e == 0)
			e = EAGAIN;
	}
	close(fd);
	return -e;
}

int qemu_connect_socket(const char *path, struct qemu_proc *proc, int timeout_ms,
			struct vmci_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return vmci_err_set(err, ENAMETOOLONG, "socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);

	int64_t deadline = clock_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - clock_ms();
		int fd = connect_once(&sa, left > 0 ? (int)left : 0);
		if (fd >= 0)
			return fd;
		/* Not there yet, or not listening yet: QEMU is still starting. */
		if (fd != -ENOENT && fd != -ECONNREFUSED && fd != -EAGAIN && fd != -EINTR)
			return vmci_err_errno(err, -fd, "cannot connect to %s", path);
		if (proc && qemu_exited(proc)) {
			char how[64], tail[QEMU_ERR_TAIL], dir[PATH_MAX];
			struct qemu_paths paths;
			qemu_describe_exit(proc, how, sizeof(how));
			/* The console log lives beside the sockets (qemu_paths_init). */
			snprintf(dir, sizeof(dir), "%s", path);
			char *slash = strrchr(dir, '/');
			if (slash)
				*slash = 0;
			qemu_paths_init(&paths, slash ? dir : ".");
			qemu_console_tail(&paths, tail, sizeof(tail));
			return vmci_err_set(err, EPIPE, "QEMU %s before opening %s%s%s", how, path,
					    *tail ? "; its output ends with:\n" : " (no output)",
					    tail);
		}
		left = deadline - clock_ms();
		if (left <= 0)
			return vmci_err_set(err, ETIMEDOUT, "QEMU did not open %s within %d ms",
					    path, timeout_ms);
		qemu_wait_exit(proc, left < QEMU_CONNECT_RETRY_MS ? left : QEMU_CONNECT_RETRY_MS);
	}
}
