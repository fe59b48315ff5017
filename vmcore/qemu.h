/*
 * Private to vmcore: the QEMU child process.
 */
#ifndef VMCI_VMCORE_QEMU_H
#define VMCI_VMCORE_QEMU_H

#include <limits.h>
#include <sys/types.h>

#include "vmcore/vmcore.h"

struct qemu_proc {
	pid_t pid;	/* 0 when not running */
	int pidfd;	/* pidfd_open(pid), readable when QEMU exits; -1 if unsupported */
	int status;	/* wait status once reaped */
	bool reaped;
};

/* Where one VM's files live, all inside spec->run_dir. */
struct qemu_paths {
	char qmp[PATH_MAX];	/* QMP unix socket */
	char agent[PATH_MAX];	/* agent virtio-serial unix socket */
	char console[PATH_MAX]; /* serial console log */
};

void qemu_paths_init(struct qemu_paths *p, const char *run_dir);

/*
 * Builds the QEMU command line for spec (accel already chosen: KVM or TCG)
 * and starts it with the sockets and console at paths. The child gets
 * PR_SET_PDEATHSIG(SIGKILL) and its own process group; stdin is /dev/null
 * and stdout/stderr go to paths->console so errors are kept.
 * Returns 0 or a negative code; a missing binary names its package.
 */
int qemu_launch(const struct vm_spec *spec, enum vm_accel accel, const struct qemu_paths *paths,
		struct qemu_proc *proc, struct vmci_err *err);

/* Non-blocking check: true (and status filled) once QEMU has exited. */
bool qemu_exited(struct qemu_proc *proc);

/* Waits up to timeout_ms for exit; then SIGKILL and waits. Idempotent. */
void qemu_reap(struct qemu_proc *proc, int timeout_ms);

/* "exited with status 1" / "was killed by signal 9"; "is running" while it runs. */
void qemu_describe_exit(const struct qemu_proc *proc, char *out, size_t size);

/* The last lines (at most max_bytes) of the console log, for error messages. */
void qemu_console_tail(const struct qemu_paths *paths, char *out, size_t max_bytes);

/*
 * Connects to a unix socket that QEMU creates, retrying until it accepts
 * or timeout_ms passes or QEMU exits. Returns a connected, non-blocking,
 * close-on-exec fd or a negative code.
 */
int qemu_connect_socket(const char *path, struct qemu_proc *proc, int timeout_ms,
			struct vmci_err *err);

#endif
