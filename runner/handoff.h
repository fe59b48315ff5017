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

/* ---- the receiver (runner/handoff.c) ---------------------------------- */

/*
 * Listens on the unix socket path, takes one VM moving in (it prepares a
 * destination of the sender's image and shape), and runs the commands
 * its sender asks for until the sender ends or goes away; then stops the
 * VM. say (may be NULL) gets one line per event, for the user. Returns 0
 * when a VM came and served its sender, or a negative code with err (the
 * move failed: the VM went on at the sender).
 */
int runner_receive(const char *path, void (*say)(void *ctx, const char *line), void *ctx,
		   struct vmci_err *err);

/* ---- the sender (runner/handoff.c) ------------------------------------ */

struct runner_remote;

/*
 * Moves g's VM, whose command was detached, to the receiver listening on
 * path; the receiver starts its VM in the same shape (vCPUs, memory,
 * network). On success g->vm is stopped and NULL (its QEMU is gone), and *out
 * runs the job on from there: first runner_remote_resume for the detached
 * command. On failure the VM runs on here as before (take the command
 * back with vm_exec_resume) and err says why the move failed.
 */
int runner_remote_move(const char *path, const char *image, struct runner_guest *g,
		       const struct runner_guest_opts *shape, struct runner_remote **out,
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

/* Tells the receiver the job is over (it stops the VM) and frees r. Safe on NULL. */
void runner_remote_close(struct runner_remote *r);

#endif
