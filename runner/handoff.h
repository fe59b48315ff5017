/*
 * runner: handing a running job's VM to another process.
 *
 * The owner of a job (the sender: `vmci run`, later a host being drained)
 * detaches the job's running command (vm_detach), moves the VM live to a
 * receiver (`vmci vm receive`, later a peer host) and from then on runs
 * the job's commands there: the receiver executes them on the moved VM
 * and streams their output and results back. The job's identity, its
 * steps, environment and deadlines stay with the sender, which drives
 * the job to its end as if it had not moved; only the VM and the running
 * command changed hands. The agent's acknowledgements carry the command's
 * output across with no gap and no duplicate.
 */
#ifndef VMCI_RUNNER_HANDOFF_H
#define VMCI_RUNNER_HANDOFF_H

#include "runner/guest.h"
#include "runner/workspace.h"

/* ---- the receiver (runner/handoff.c) ---------------------------------- */

struct runner_cancel;

/*
 * Listens on the unix socket path, takes one VM moving in (it prepares a
 * destination of the sender's image, shape, memory layout and, for a VM
 * started from a template, that template's disk, which must be here
 * too), and runs the commands its sender asks for until the sender ends
 * or goes away; then stops the VM. say (may be NULL) gets one line per
 * event, for the user. cancel (may be NULL; see runner_cancel_request):
 * before a VM arrived, the receiver gives up (a move under way fails and
 * the job goes on at its sender); once it runs the job, the command
 * running and any the sender asks for after end as cancelled, so the job
 * ends cancelled and the VM stops. Returns 0 when a VM came and served
 * its sender, -ECANCELED when cancelled before, or a negative code with
 * err (the move failed: the VM went on at the sender).
 */
int runner_receive(const char *path, void (*say)(void *ctx, const char *line), void *ctx,
		   struct runner_cancel *cancel, struct vmci_err *err);

/* ---- the sender (runner/handoff.c) ------------------------------------ */

struct runner_remote;

/*
 * Moves g's VM, whose command was detached, to the receiver listening on
 * path; the receiver starts its VM in the same shape (vCPUs, memory and
 * its backend, network) over the same disk (the image's, or the
 * template's g->base). ws (may be NULL) is the workspace disk g's VM
 * has: it moves too, its overlay into one the receiver makes over the
 * same image, which the receiver must see (it refuses the move on
 * another host); on success it is forgotten here (runner_workspace_moved)
 * and the receiver removes it at the job's end. cancel (may be NULL) has
 * g's VM attached: a cancel meanwhile gives the move up (ECANCELED); on
 * success it is detached before the VM here stops. On success g->vm is
 * stopped and NULL (its QEMU is gone), and *out runs the job on from
 * there: first runner_remote_resume for the detached command. On failure
 * the VM runs on here as before (take the command back with
 * vm_exec_resume) and err says why the move failed.
 */
int runner_remote_move(const char *path, const char *image, struct runner_guest *g,
		       const struct runner_guest_opts *shape, struct runner_ws_mount *ws,
		       struct runner_cancel *cancel, struct runner_remote **out,
		       struct vmci_err *err);

/* Waits for the command that moved to end, its output through opts->on_output. */
int runner_remote_resume(struct runner_remote *r, const struct vm_exec_opts *opts,
			 struct vm_exec_result *res, struct vmci_err *err);

/*
 * vm_exec on the moved VM (argv, env, cwd, timeout_ms, on_output; no
 * stdin, no pty). A negative code: the VM or the receiver failed.
 */
int runner_remote_exec(struct runner_remote *r, const struct vm_exec_opts *opts,
		       struct vm_exec_result *res, struct vmci_err *err);

/* vm_put_tar on the moved VM: the tar stream read from fd (at most MSG_MAX, 2 MiB) into guest_dir.
 */
int runner_remote_put_tar(struct runner_remote *r, int fd, const char *guest_dir,
			  struct vmci_err *err);

/*
 * vm_get_tar on the moved VM: guest_path as a tar stream written to fd,
 * with vm_get_tar's codes (-ENOENT: nothing matched). A negative code
 * other than the guest's: the receiver went away.
 */
int runner_remote_get_tar(struct runner_remote *r, const char *guest_path, int fd,
			  struct vmci_err *err);

/* vm_ping on the moved VM. */
int runner_remote_ping(struct runner_remote *r, int timeout_ms, struct vmci_err *err);

/*
 * Cancels the command running on the moved VM and any asked for after
 * (they end VM_CANCELLED). Thread-safe; for runner_cancel_request.
 */
void runner_remote_cancel(struct runner_remote *r);

/* Tells the receiver the job is over (it stops the VM) and frees r. Safe on NULL. */
void runner_remote_close(struct runner_remote *r);

/* ---- a job's VM, here or moved (runner/handoff.c) --------------------- */

/*
 * What the executor's helpers (the step's script, the artifacts) reach a
 * job's VM through: the VM here (vm), or the VM it moved to (remote, when
 * set). Each function is the vmcore one of the same name on either.
 */
struct runner_job_vm {
	struct vm *vm;
	struct runner_remote *remote;
};

int runner_job_vm_put_tar(const struct runner_job_vm *t, int fd, const char *guest_dir,
			  struct vmci_err *err);
int runner_job_vm_get_tar(const struct runner_job_vm *t, const char *guest_path, int fd,
			  struct vmci_err *err);
int runner_job_vm_ping(const struct runner_job_vm *t, int timeout_ms, struct vmci_err *err);

#endif
