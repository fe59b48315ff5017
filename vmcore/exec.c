/* Commands in the guest: exec with streamed output, timeouts and cancel. */
#include "vmcore/channel.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The agent enforces a command's timeout; the host waits this much longer
 * before it declares the agent itself unresponsive.
 */
#define TIMEOUT_GRACE_MS 30000

struct exec_ctx {
	const struct vm_exec_opts *opts;
	struct vm_exec_result *res;
};

static int on_exec_frame(struct vm *vm, struct channel_op *op, const struct agent_frame *f,
			 struct vmci_err *err)
{
	struct exec_ctx *ctx = op->ctx;
	switch (f->h.type) {
	case AGENT_STDOUT:
	case AGENT_STDERR:
		if (ctx->opts->on_output && f->h.len > 0)
			ctx->opts->on_output(ctx->opts->ctx, f->h.type == AGENT_STDOUT ? 1 : 2,
					     f->payload, f->h.len);
		return 0;
	case AGENT_EXIT: {
		struct agent_exit e;
		char why[128];
		if (agent_exit_decode(f, &e, why, sizeof(why)))
			return vmci_err_set(err, EPROTO, "the agent sent a bad exit while %s: %s",
					    op->what, why);
		static const enum vm_exit_kind kinds[] = {
		    [AGENT_EXIT_EXITED] = VM_EXITED,
		    [AGENT_EXIT_SIGNALED] = VM_SIGNALED,
		    [AGENT_EXIT_TIMED_OUT] = VM_TIMED_OUT,
		    [AGENT_EXIT_CANCELLED] = VM_CANCELLED,
		    [AGENT_EXIT_START_FAILED] = VM_START_FAILED,
		};
		ctx->res->kind = kinds[e.kind];
		ctx->res->code = e.code;
		ctx->res->duration_ms = (int64_t)e.duration_ms;
		return 1;
	}
	case AGENT_RESULT: {
		/* The agent refused the exec before starting it. */
		struct agent_result refusal;
		char why[128];
		if (agent_result_decode(f, &refusal, why, sizeof(why)))
			return vmci_err_set(err, EPROTO, "the agent sent %s while %s", why,
					    op->what);
		int rc = vmci_err_set(err, refusal.status ? refusal.status : EPROTO,
				      "the agent could not start %s: %s", op->what,
				      *refusal.message ? refusal.message : "no reason given");
		agent_result_free(&refusal);
		return rc;
	}
	default:
		return vmci_err_set(err, EPROTO, "the agent sent a %s frame while %s",
				    agent_type_name(f->h.type), op->what);
	}
}

int vm_exec(struct vm *vm, const struct vm_exec_opts *opts, struct vm_exec_result *res,
	    struct vmci_err *err)
{
	if (!opts->argv || !opts->argv[0])
		return vmci_err_set(err, EINVAL, "no command to run");
	memset(res, 0, sizeof(*res));
	char what[160];
	snprintf(what, sizeof(what), "running '%s'", opts->argv[0]);

	bool pty = opts->pty_rows > 0 && opts->pty_cols > 0;
	struct agent_exec e = {
	    .flags = (opts->stdin_fd >= 0 ? AGENT_EXEC_STDIN : 0) | (pty ? AGENT_EXEC_PTY : 0),
	    .timeout_ms = opts->timeout_ms,
	    .cwd = (char *)(opts->cwd ? opts->cwd : ""),
	    .argv = (char **)opts->argv,
	    .env = (char **)opts->env,
	    .rows = opts->pty_rows,
	    .cols = opts->pty_cols,
	};
	struct exec_ctx ctx = {.opts = opts, .res = res};
	struct channel_op op = {
	    .what = what,
	    .stream = channel_new_stream(vm),
	    .on_frame = on_exec_frame,
	    .ctx = &ctx,
	    .input_fd = opts->stdin_fd,
	    .input_type = AGENT_STDIN,
	    .deadline_ms = opts->timeout_ms ? clock_ms() + opts->timeout_ms + TIMEOUT_GRACE_MS : 0,
	    .cancellable = true,
	    .pty = pty,
	};
	/* A cancel or resize that arrived while idle does not carry over to this command. */
	vm->cancel_requested = 0;
	vm->resize_request = 0;
	vm->detach_requested = 0;
	channel_begin(vm);
	agent_exec_encode(&vm->w, &e);
	int rc = channel_queue(vm, AGENT_EXEC, op.stream, err);
	if (!rc)
		rc = channel_run(vm, &op, err);
	vm->cancel_requested = 0;
	return rc;
}

/* Hands the frames held for stream to the operation. Returns 1 when the command ended. */
static int replay_held(struct vm *vm, struct channel_op *op, struct vmci_err *err)
{
	int rc = 0;
	size_t off = 0;
	while (rc == 0 && vm->held.len - off >= AGENT_HEADER_SIZE) {
		struct agent_frame f;
		char why[128];
		if (agent_header_decode((const uint8_t *)vm->held.data + off, true, &f.h, why,
					sizeof(why)))
			break; /* we wrote them: cannot happen */
		f.payload = (const uint8_t *)vm->held.data + off + AGENT_HEADER_SIZE;
		off += AGENT_HEADER_SIZE + f.h.len;
		if (f.h.stream == op->stream)
			rc = on_exec_frame(vm, op, &f, err);
	}
	vm->held.len = 0;
	vm->held_stream = 0;
	return rc;
}

int vm_exec_resume(struct vm *vm, uint32_t stream, const struct vm_exec_opts *opts,
		   struct vm_exec_result *res, struct vmci_err *err)
{
	if (!stream)
		return vmci_err_set(err, EINVAL, "%s: no detached command to take over", __func__);
	memset(res, 0, sizeof(*res));
	char what[160];
	snprintf(what, sizeof(what), "running '%s' (taken over)",
		 opts->argv && opts->argv[0] ? opts->argv[0] : "a command");
	struct exec_ctx ctx = {.opts = opts, .res = res};
	struct channel_op op = {
	    .what = what,
	    .stream = stream,
	    .on_frame = on_exec_frame,
	    .ctx = &ctx,
	    .input_fd = -1,
	    .deadline_ms = opts->timeout_ms ? clock_ms() + opts->timeout_ms + TIMEOUT_GRACE_MS : 0,
	    .cancellable = true,
	};
	/*
	 * Unlike vm_exec, a cancel that came while the command was let go of
	 * (during a move given up) is kept: it is for this command.
	 */
	vm->detached_stream = 0;
	int rc = replay_held(vm, &op, err);
	if (rc == 0)
		rc = channel_run(vm, &op, err);
	vm->cancel_requested = 0;
	return rc < 0 ? rc : 0;
}

void vm_resize(struct vm *vm, uint16_t rows, uint16_t cols)
{
	if (!rows || !cols)
		return;
	/* One atomic store: rows (at most 0x7fff, so the value stays positive) and cols. */
	vm->resize_request = (sig_atomic_t)((uint32_t)(rows > 0x7fff ? 0x7fff : rows) << 16 | cols);
	ssize_t ignored = write(vm->cancel_pipe[1], "r", 1);
	(void)ignored;
}

void vm_exec_result_describe(const struct vm_exec_result *res, char *out, size_t size)
{
	switch (res->kind) {
	case VM_EXITED:
		snprintf(out, size, "exited %d", res->code);
		break;
	case VM_SIGNALED:
		snprintf(out, size, "killed by SIG%s",
			 sigabbrev_np(res->code) ? sigabbrev_np(res->code) : "?");
		break;
	case VM_TIMED_OUT:
		snprintf(out, size, "timed out");
		break;
	case VM_CANCELLED:
		snprintf(out, size, "cancelled");
		break;
	case VM_START_FAILED:
		snprintf(out, size, "could not start: %s", strerror(res->code));
		break;
	}
}
