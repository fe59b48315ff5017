/*
 * Saved state: a VM's device state and memory in a file, written by a
 * QMP migration and loaded by a new QEMU started with -incoming defer,
 * so that a clone starts where a booted guest was instead of booting.
 *
 * The state goes through a file descriptor passed over the QMP socket
 * (SCM_RIGHTS + getfd, then the "fd:" migration URI): no shell, and
 * "completed" means QEMU has written everything.
 *
 * With file-backed guest memory (spec mem_path), the memory is not in the
 * stream at all: the capability x-ignore-shared leaves out RAM that is a
 * shared file, so the template is the RAM file plus a small device-state
 * stream. A clone maps the RAM file privately (share=off); its RAM block
 * is then not "shared" and nothing in the stream touches it, so it keeps
 * the file's contents, copy-on-write, read page by page as the guest
 * touches them: the way Firecracker restores snapshots.
 */
#include "vmcore/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define QMP_TIMEOUT_MS	     10000
#define MIGRATE_TIMEOUT_MS   300000
#define STATE_FD_NAME	     "vmci-state"
#define RECONNECT_TIMEOUT_MS 10000

/*
 * Hands fd to QEMU as STATE_FD_NAME: the descriptor travels with a blank
 * (ignored between QMP commands), and getfd claims it.
 */
static int pass_fd(struct vm *vm, int fd, struct vmci_err *err)
{
	char blank = ' ';
	struct iovec iov = {.iov_base = &blank, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = {
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = u.buf,
	    .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	ssize_t n;
	do
		n = sendmsg(qmp_fd(vm->qmp), &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		return vmci_err_errno(err, n < 0 ? errno : EIO, "cannot pass a file to QEMU %d",
				      (int)vm->proc.pid);
	return qmp_execute(vm->qmp, "getfd", json_pack("{s:s}", "fdname", STATE_FD_NAME), NULL,
			   QMP_TIMEOUT_MS, err);
}

static int set_ignore_shared(struct vm *vm, bool on, struct vmci_err *err)
{
	json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
				 "x-ignore-shared", "state", on);
	return qmp_execute(vm->qmp, "migrate-set-capabilities", caps, NULL, QMP_TIMEOUT_MS, err);
}

/*
 * Polls query-migrate every poll_ms until the migration completed (0) or
 * failed (its error-desc in err).
 */
static int migration_wait(struct vm *vm, int poll_ms, const char *what, struct vmci_err *err)
{
	int64_t deadline = clock_ms() + MIGRATE_TIMEOUT_MS;
	for (;;) {
		json_t *info = NULL;
		int rc = qmp_execute(vm->qmp, "query-migrate", NULL, &info, QMP_TIMEOUT_MS, err);
		if (rc == -EPIPE)
			return channel_vm_died(vm, what, err);
		if (rc)
			return rc;
		const char *status = json_string_value(json_object_get(info, "status"));
		char desc[512] = "";
		const char *d = json_string_value(json_object_get(info, "error-desc"));
		snprintf(desc, sizeof(desc), "%s", d ? d : "no reason given");
		bool done = status && !strcmp(status, "completed");
		bool failed = status && (!strcmp(status, "failed") || !strcmp(status, "cancelled"));
		json_decref(info);
		if (done)
			return 0;
		if (failed)
			return vmci_err_set(err, EIO, "%s failed: %s", what, desc);
		if (clock_ms() > deadline)
			return vmci_err_set(err, ETIMEDOUT, "%s did not finish within %d s", what,
					    MIGRATE_TIMEOUT_MS / 1000);
		usleep((useconds_t)poll_ms * 1000);
	}
}

int vm_state_save(struct vm *vm, const char *path, struct vmci_err *err)
{
	char what[PATH_MAX + 64];
	snprintf(what, sizeof(what), "saving the state of VM %d to %s", (int)vm->proc.pid, path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot create %s", path);
	/* Paused, the state is written once, with no pages dirtied meanwhile. */
	int rc = qmp_execute(vm->qmp, "stop", NULL, NULL, QMP_TIMEOUT_MS, err);
	if (!rc)
		rc = set_ignore_shared(vm, vm->ram_in_file, err);
	if (!rc)
		rc = qmp_execute(vm->qmp, "migrate-set-parameters",
				 json_pack("{s:I}", "max-bandwidth", (json_int_t)1 << 40), NULL,
				 QMP_TIMEOUT_MS, err);
	if (!rc)
		rc = pass_fd(vm, fd, err);
	if (!rc)
		rc = qmp_execute(vm->qmp, "migrate", json_pack("{s:s}", "uri", "fd:" STATE_FD_NAME),
				 NULL, QMP_TIMEOUT_MS, err);
	if (!rc)
		rc = migration_wait(vm, 20, what, err);
	if (!rc && fsync(fd) < 0)
		rc = vmci_err_errno(err, errno, "cannot write %s", path);
	close(fd);
	if (rc) {
		if (!strstr(err->msg, what))
			vmci_err_wrap(err, "%s", what);
		unlink(path);
	}
	return rc;
}

/* A fresh random id for this clone, in vm->instance_id and the guest's /run/vmci/instance-id. */
static int new_identity(struct vm *vm, struct vmci_err *err)
{
	uint8_t raw[16];
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return vmci_err_errno(err, errno, "cannot read host entropy");
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(vm->instance_id + 2 * i, 3, "%02x", raw[i]);
	const char *argv[] = {"/bin/sh",
			      "-c",
			      "mkdir -p /run/vmci && echo \"$1\" > /run/vmci/instance-id",
			      "sh",
			      vm->instance_id,
			      NULL};
	struct vm_exec_opts opts = {.argv = argv, .stdin_fd = -1, .timeout_ms = 10000};
	struct vm_exec_result res;
	int rc = vm_exec(vm, &opts, &res, err);
	if (!rc && (res.kind != VM_EXITED || res.code != 0)) {
		char how[128];
		vm_exec_result_describe(&res, how, sizeof(how));
		rc = vmci_err_set(err, EIO, "writing /run/vmci/instance-id in the guest %s", how);
	}
	if (rc)
		vm->instance_id[0] = 0;
	return rc;
}

/* After the guest's state came from elsewhere: reconnect, refresh, maybe a new identity. */
static int restored_finish(struct vm *vm, const char *what, bool identity, int timeout_ms,
			   struct vmci_err *err)
{
	/* The agent runs already: no boot to wait for, so a short deadline. */
	int rc = vm_restart_refreshed(
	    vm, timeout_ms < RECONNECT_TIMEOUT_MS ? timeout_ms : RECONNECT_TIMEOUT_MS, err);
	if (!rc && identity)
		rc = new_identity(vm, err);
	if (rc)
		vmci_err_wrap(err, "after %s", what);
	return rc;
}

int template_start(struct vm *vm, const struct vm_spec *spec, int timeout_ms, struct vmci_err *err)
{
	char what[PATH_MAX + 64];
	/*
	 * QEMU loaded the snapshot as it started (-loadvm) and runs the guest.
	 * No instance id: every revert to that snapshot would take it away
	 * again (vm_instance_id is "", as for a booted VM).
	 */
	if (spec->loadvm) {
		snprintf(what, sizeof(what), "loading snapshot '%s' of %s", spec->loadvm,
			 spec->disk);
		return restored_finish(vm, what, false, timeout_ms, err);
	}
	snprintf(what, sizeof(what), "loading the saved state %s", spec->incoming);
	int fd = open(spec->incoming, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot open the saved state %s", spec->incoming);
	/* A file-backed memory was left out of the stream: keep the file's pages. */
	bool ram_in_file = spec->mem_path != NULL;
	int rc = ram_in_file ? set_ignore_shared(vm, true, err) : 0;
	if (!rc)
		rc = pass_fd(vm, fd, err);
	close(fd);
	if (!rc)
		rc = qmp_execute(vm->qmp, "migrate-incoming",
				 json_pack("{s:s}", "uri", "fd:" STATE_FD_NAME), NULL,
				 QMP_TIMEOUT_MS, err);
	if (!rc)
		rc = migration_wait(vm, 2, what, err);
	/* The state was saved from a paused VM, so it arrives paused. */
	if (!rc)
		rc = qmp_execute(vm->qmp, "cont", NULL, NULL, QMP_TIMEOUT_MS, err);
	/* Snapshots of this VM must hold its memory, whatever backs it. */
	if (!rc && ram_in_file)
		rc = set_ignore_shared(vm, false, err);
	if (rc == -EPIPE)
		return channel_vm_died(vm, what, err);
	if (rc) {
		if (!strstr(err->msg, spec->incoming))
			vmci_err_wrap(err, "%s", what);
		return rc;
	}
	return restored_finish(vm, what, true, timeout_ms, err);
}
