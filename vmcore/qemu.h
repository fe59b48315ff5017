/*
 * Private to vmcore: the QEMU child process.
 */
#ifndef VMCI_VMCORE_QEMU_H
#define VMCI_VMCORE_QEMU_H

#include <limits.h>
#include <sys/types.h>

#include "vmcore/vmcore.h"

struct qemu_proc {
	pid_t pid;  /* 0 before launch; kept after reaping, for messages only */
	int pidfd;  /* pidfd_open(pid), readable when QEMU exits; -1 if unsupported;
		       closed by qemu_reap */
	int status; /* wait status once reaped; -1 if collected elsewhere (SIGCHLD ignored) */
	bool reaped;
};

/* Where one VM's files live, all inside spec->run_dir. */
struct qemu_paths {
	char qmp[PATH_MAX];	/* QMP unix socket */
	char agent[PATH_MAX];	/* agent virtio-serial unix socket */
	char console[PATH_MAX]; /* serial console log */
};

void qemu_paths_init(struct qemu_paths *p, const char *run_dir);

/* The node name of the disk's format layer: what snapshots and block jobs name. */
#define QEMU_DISK_NODE "vmci-disk0"
/* The virtio-scsi controller every VM has from boot, for hot-added disks. */
#define QEMU_SCSI_ID "vmci-scsi0"
/* The memory backend holding guest RAM when the spec gives a memory file. */
#define QEMU_RAM_ID "vmci-ram"

/*
 * Builds the QEMU command line for spec (accel already chosen: KVM or TCG)
 * and starts it with the sockets and console at paths. The child gets
 * PR_SET_PDEATHSIG(SIGKILL) and its own process group; stdin is /dev/null
 * and stdout/stderr go to paths->console so errors are kept.
 * The console log is truncated first and stale sockets are removed; the
 * kernel, initramfs and disk are checked before anything starts.
 * Returns 0 once QEMU has been exec'd (it may still fail on its own: see
 * qemu_connect_socket), or a negative code; a missing binary names its
 * package. Call qemu_reap after a successful launch. net_fd (-1: none) is
 * the VM's end of its network helper's socket pair (spec->network NAT):
 * QEMU inherits it as its NIC's backend. With spec->incoming, QEMU starts
 * with -incoming defer and waits for migrate-incoming.
 */
int qemu_launch(const struct vm_spec *spec, enum vm_accel accel, const struct qemu_paths *paths,
		int net_fd, struct qemu_proc *proc, struct vmci_err *err);

/* qemu_launch for the destination of a live migration: -incoming defer, whatever the spec says. */
int qemu_launch_incoming(const struct vm_spec *spec, enum vm_accel accel,
			 const struct qemu_paths *paths, int net_fd, struct qemu_proc *proc,
			 struct vmci_err *err);

/*
 * Non-blocking check: true (and status filled) once QEMU has exited; it
 * reaps the process, so its pid may be reused afterwards. True as well
 * when nothing was launched.
 */
bool qemu_exited(struct qemu_proc *proc);

/*
 * Waits up to timeout_ms for exit; then SIGKILL (to QEMU's process group)
 * and waits. Closes the pidfd, so call it even after qemu_exited returned
 * true. Idempotent.
 */
void qemu_reap(struct qemu_proc *proc, int timeout_ms);

/*
 * "exited with status 1" / "was killed by signal 9 (SIGKILL)"; "is running"
 * while it runs, "was not started" before a launch.
 */
void qemu_describe_exit(const struct qemu_proc *proc, char *out, size_t size);

/*
 * The last lines of the console log for error messages: out has room for
 * max_bytes including the NUL, starts at a line boundary, has CRs and
 * trailing blank space removed and other control or non-ASCII bytes
 * (the guest writes this) replaced by '?'. "" when the log is empty.
 */
void qemu_console_tail(const struct qemu_paths *paths, char *out, size_t max_bytes);

/*
 * The line of the console log that best says why QEMU or the guest
 * failed: the first that speaks of an error, a failure or an abort, else
 * the first non-empty one; "" when the log is empty. Sanitized as in
 * qemu_console_tail.
 */
void qemu_console_failure_line(const struct qemu_paths *paths, char *out, size_t size);

/* The QEMU binary for arch found in $PATH, as execvp would find it; -ENOENT if none. */
int qemu_find_binary(enum vm_arch arch, char *out, size_t size);

/*
 * Connects to a unix socket that QEMU creates, retrying until it accepts
 * or timeout_ms passes or QEMU exits. Returns a connected, non-blocking,
 * close-on-exec fd or a negative code: -EPIPE when QEMU exited first (err
 * says how, with the end of the console.log beside the socket),
 * -ETIMEDOUT. proc may be NULL (no exit check).
 */
int qemu_connect_socket(const char *path, struct qemu_proc *proc, int timeout_ms,
			struct vmci_err *err);

#endif
