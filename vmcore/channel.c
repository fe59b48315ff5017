/* The host end of the agent channel: framing, acknowledgements, the operation loop. */
#include "vmcore/channel.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Queued output above this stops reading the operation's input. */
#define OUTQ_HIGH_WATER (1u << 20)
/* Silence from the guest this long during an operation triggers a ping... */
#define KEEPALIVE_IDLE_MS 15000
/* ...and this long means the agent (or the guest kernel) stopped answering. */
#define AGENT_DEAD_MS 60000
/* query-status after a STOP event: QEMU answers it at once even with the guest stopped. */
#define QMP_STATUS_TIMEOUT_MS 2000

void channel_begin(struct vm *vm)
{
	agent_writer_begin(&vm->w);
}

int channel_queue(struct vm *vm, uint16_t type, uint32_t stream, struct vmci_err *err)
{
	long n = agent_writer_finish(&vm->w, type, stream, vm->host_seq);
	if (n < 0)
		return vmci_err_set(err, ENOMEM, "cannot encode a %s frame", agent_type_name(type));
	if (buf_append(&vm->outq, vm->w.buf, (size_t)n))
		return vmci_err_set(err, ENOMEM, "out of memory queueing a frame");
	vm->host_seq++;
	return 0;
}

uint32_t channel_new_stream(struct vm *vm)
{
	if (++vm->next_stream == 0)
		vm->next_stream = 1;
	return vm->next_stream;
}

int channel_vm_died(struct vm *vm, const char *what, struct vmci_err *err)
{
	char how[96], tail[2048];
	/* The sockets close a moment before the process can be reaped. */
	for (int i = 0; i < 100 && !qemu_exited(&vm->proc); i++)
		usleep(10000);
	qemu_describe_exit(&vm->proc, how, sizeof(how));
	qemu_console_tail(&vm->paths, tail, sizeof(tail));
	return vmci_err_set(err, EPIPE, "the VM failed while %s: QEMU %s%s%s", what, how,
			    *tail ? "; last console lines:\n" : "", tail);
}

/*
 * QEMU stops a guest on its own only when something is badly wrong: the
 * accelerator failed to run it (KVM_EXIT_INTERNAL_ERROR: "emulation
 * failure"), and QEMU then stays alive, paused, with the agent socket
 * open and silent. A STOP event is checked with query-status so that such
 * a VM is reported at once rather than when the agent's silence times
 * out. STOPs of vmci's own making (snapshots, saves) find it running or
 * paused and are let be.
 */
static int check_stopped(struct vm *vm, const char *what, struct vmci_err *err)
{
	struct qmp_msg ev;
	bool stopped = false;
	while (qmp_next_event(vm->qmp, "STOP", 0, &ev, NULL) == 1) {
		stopped = true;
		qmp_msg_free(&ev);
	}
	if (!stopped)
		return 0;
	json_t *status = NULL;
	if (qmp_execute(vm->qmp, "query-status", NULL, &status, QMP_STATUS_TIMEOUT_MS, NULL) < 0)
		return 0; /* QEMU going away is seen by its pidfd */
	const char *state = json_string_value(json_object_get(status, "status"));
	bool internal = state && !strcmp(state, "internal-error");
	json_decref(status);
	if (!internal)
		return 0;

	char line[256], tail[2048];
	qemu_console_failure_line(&vm->paths, line, sizeof(line));
	qemu_console_tail(&vm->paths, tail, sizeof(tail));
	const char *accel = vm->accel == VM_ACCEL_KVM ? "KVM" : "TCG";
	if (vm->accel == VM_ACCEL_KVM)
		accel_record_runtime_failure(vm->arch, *line ? line : "internal error");
	return vmci_err_set(err, VM_EACCEL,
			    "%s failed to run the guest while %s: QEMU stopped it with an internal "
			    "error%s%s%s",
			    accel, what,
			    vm->accel == VM_ACCEL_KVM
				? " (this host's KVM cannot run guests; vmci uses TCG from now on, "
				  "or set VMCI_ACCEL=tcg)"
				: "",
			    *tail ? "; last console lines:\n" : "", tail);
}

/* Writes as much of the queue as the socket takes now. */
static int flush_some(struct vm *vm, const char *what, struct vmci_err *err)
{
	while (vm->outq.len > 0) {
		ssize_t n =
		    send(vm->agent_fd, vm->outq.data, vm->outq.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return channel_vm_died(vm, what, err);
		buf_consume(&vm->outq, (size_t)n);
	}
	return 0;
}

static int send_ack(struct vm *vm, struct vmci_err *err)
{
	if (vm->guest_seq == vm->guest_seq_acked)
		return 0;
	channel_begin(vm);
	agent_put_u64(&vm->w, vm->guest_seq);
	vm->guest_seq_acked = vm->guest_seq;
	return channel_queue(vm, AGENT_ACK, 0, err);
}

static void store_info(struct vm *vm, char **info)
{
	agent_strv_free(vm->info);
	vm->info = info;
}

/* Connection-level frames; returns 1 when handled here. */
static int handle_connection_frame(struct vm *vm, const struct agent_frame *f, struct vmci_err *err)
{
	if (f->h.seq != 0 && f->h.seq > vm->guest_seq)
		vm->guest_seq = f->h.seq;
	if (f->h.type == AGENT_HELLO_REPLY) {
		struct agent_reader r;
		agent_reader_init(&r, f);
		uint32_t version = agent_get_u32(&r);
		uint32_t caps = agent_get_u32(&r);
		uint64_t next_seq = agent_get_u64(&r);
		char **info = agent_get_strv(&r);
		if (!agent_reader_done(&r) || next_seq == 0) {
			agent_strv_free(info);
			return vmci_err_set(err, EPROTO, "the agent sent a malformed hello reply");
		}
		if (version != AGENT_PROTOCOL_VERSION) {
			agent_strv_free(info);
			return vmci_err_set(err, EPROTO,
					    "the agent speaks protocol version %u, vmci speaks %u "
					    "(rebuild the image: vmci image build)",
					    version, AGENT_PROTOCOL_VERSION);
		}
		store_info(vm, info);
		vm->agent_caps = caps;
		vm->dec.expect_seq = next_seq;
		/*
		 * A second reply (to a hello sent again while the first one's answer
		 * was on its way) replays from next_seq once more: what was already
		 * handled is dropped by seq (read_frames), so guest_seq stays.
		 */
		if (!vm->connected)
			vm->guest_seq = vm->guest_seq_acked = next_seq - 1;
		vm->connected = true;
		return 1;
	}
	if (f->h.type == AGENT_ERROR) {
		struct agent_result e;
		char why[128];
		if (agent_result_decode(f, &e, why, sizeof(why)))
			return vmci_err_set(err, EPROTO, "the agent sent %s", why);
		int rc = vmci_err_set(err, EPROTO, "the agent rejected a frame from vmci (%d): %s",
				      (int)e.status, e.message);
		agent_result_free(&e);
		return rc;
	}
	return 0;
}

/*
 * Before a connection's HELLO_REPLY, what the agent sends can start with
 * the rest of a frame cut short (by a migration, or by our HELLO reaching
 * it mid-frame): skip to the reply's fixed header, which nothing in a
 * well-framed stream can be mistaken for.
 */
static void skip_to_hello_reply(struct vm *vm)
{
	static const uint8_t sig[AGENT_HEADER_SIZE] = {
	    0x56, 0x4d, 0x43, 0x49, [8] = AGENT_HELLO_REPLY, /* flags, stream, seq: 0 */
	};
	struct agent_decoder *d = &vm->dec;
	size_t avail = d->len - d->off;
	for (size_t i = 0; i + AGENT_HEADER_SIZE <= avail; i++) {
		const uint8_t *p = d->buf + d->off + i;
		if (!memcmp(p, sig, 4) && !memcmp(p + 8, sig + 8, AGENT_HEADER_SIZE - 8)) {
			if (i > 0)
				log_debug("skipped %zu bytes before the agent's hello reply", i);
			d->off += i;
			vm->resyncing = false;
			return;
		}
	}
	/* Keep what could be the start of the header. */
	if (avail >= AGENT_HEADER_SIZE)
		d->off += avail - (AGENT_HEADER_SIZE - 1);
}

/* Reads what the agent sent and dispatches it. Returns 1 when op completed. */
static int read_frames(struct vm *vm, struct channel_op *op, struct vmci_err *err)
{
	uint8_t chunk[65536];
	ssize_t n = recv(vm->agent_fd, chunk, sizeof(chunk), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return channel_vm_died(vm, op->what, err);
	if (agent_decoder_feed(&vm->dec, chunk, (size_t)n))
		return vmci_err_set(err, ENOMEM, "out of memory reading from the agent");
	if (vm->resyncing)
		skip_to_hello_reply(vm);
	int done = 0;
	for (;;) {
		struct agent_frame f;
		char why[256];
		int rc = agent_decoder_next(&vm->dec, &f, why, sizeof(why));
		if (rc < 0)
			return vmci_err_set(err, EPROTO,
					    "the guest broke the agent protocol while %s: %s",
					    op->what, why);
		if (rc == 0)
			break;
		/* Replayed after a second hello reply: handled the first time. */
		bool again = f.h.seq != 0 && vm->connected && f.h.seq <= vm->guest_seq;
		rc = handle_connection_frame(vm, &f, err);
		if (rc < 0)
			return rc;
		if (again)
			continue;
		if (rc > 0 && f.h.type == AGENT_HELLO_REPLY && op->stream == 0)
			done = 1; /* the handshake's own operation */
		if (rc > 0)
			continue;
		/*
		 * Frames behind the one that completed the operation (a replay
		 * right behind a hello reply) are acknowledged with it: a detached
		 * command's must be kept, not dropped.
		 */
		if (vm->held_stream && f.h.stream == vm->held_stream && op->stream != f.h.stream) {
			uint8_t hdr[AGENT_HEADER_SIZE];
			agent_header_encode(&f.h, hdr);
			if (buf_append(&vm->held, hdr, sizeof(hdr)) ||
			    buf_append(&vm->held, f.payload, f.h.len))
				return vmci_err_set(err, ENOMEM, "out of memory keeping output");
			continue;
		}
		if (f.h.stream != op->stream || !op->on_frame || done) {
			log_debug("ignoring a %s frame for stream %u", agent_type_name(f.h.type),
				  f.h.stream);
			continue;
		}
		rc = op->on_frame(vm, op, &f, err);
		if (rc < 0)
			return rc;
		if (rc > 0)
			done = 1;
	}
	int rc = send_ack(vm, err);
	return rc < 0 ? rc : done;
}

/* Reads a chunk of the operation's input and queues it; EOF queues an empty frame. */
static int pump_input(struct vm *vm, struct channel_op *op, struct vmci_err *err)
{
	uint8_t chunk[AGENT_DATA_CHUNK];
	ssize_t n = read(op->input_fd, chunk, sizeof(chunk));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n < 0)
		return vmci_err_errno(err, errno, "cannot read the input while %s", op->what);
	channel_begin(vm);
	agent_put_bytes(&vm->w, chunk, (size_t)n);
	if (n == 0)
		op->input_done = true;
	return channel_queue(vm, op->input_type, op->stream, err);
}

static int send_ping(struct vm *vm, struct vmci_err *err)
{
	channel_begin(vm);
	agent_put_u64(&vm->w, (uint64_t)clock_ms());
	return channel_queue(vm, AGENT_PING, 0, err);
}

int channel_run(struct vm *vm, struct channel_op *op, struct vmci_err *err)
{
	int64_t last_heard = clock_ms();
	bool pinged = false;
	for (;;) {
		int rc = flush_some(vm, op->what, err);
		if (rc < 0)
			return rc;
		if (vm->detach_requested && op->cancellable) {
			vm->detach_requested = 0;
			vm->detached_stream = op->stream;
			return vmci_err_set(err, VM_EDETACHED,
					    "%s: detached, it runs on in the guest", op->what);
		}
		if (vm->cancel_requested && op->cancellable && !op->cancel_sent) {
			channel_begin(vm);
			rc = channel_queue(vm, AGENT_CANCEL, op->stream, err);
			if (rc < 0)
				return rc;
			op->cancel_sent = true;
			continue;
		}
		if (op->pty && vm->resize_request) {
			uint32_t size = (uint32_t)vm->resize_request;
			vm->resize_request = 0;
			channel_begin(vm);
			agent_put_u16(&vm->w, (uint16_t)(size >> 16 & 0x7fff));
			agent_put_u16(&vm->w, (uint16_t)(size & 0xffff));
			rc = channel_queue(vm, AGENT_RESIZE, op->stream, err);
			if (rc < 0)
				return rc;
			continue;
		}

		struct pollfd fds[5];
		int nfds = 0;
		int i_agent = nfds;
		fds[nfds++] = (struct pollfd){.fd = vm->agent_fd,
					      .events = POLLIN | (vm->outq.len ? POLLOUT : 0)};
		int i_qmp = nfds;
		fds[nfds++] = (struct pollfd){.fd = qmp_fd(vm->qmp), .events = POLLIN};
		int i_pid = -1, i_cancel = -1, i_input = -1;
		if (vm->proc.pidfd >= 0) {
			i_pid = nfds;
			fds[nfds++] = (struct pollfd){.fd = vm->proc.pidfd, .events = POLLIN};
		}
		if (op->cancellable && !op->cancel_sent) {
			i_cancel = nfds;
			fds[nfds++] = (struct pollfd){.fd = vm->cancel_pipe[0], .events = POLLIN};
		}
		if (op->input_fd >= 0 && !op->input_done && vm->outq.len < OUTQ_HIGH_WATER) {
			i_input = nfds;
			fds[nfds++] = (struct pollfd){.fd = op->input_fd, .events = POLLIN};
		}

		int64_t now = clock_ms();
		int timeout = 1000;
		if (op->deadline_ms && op->deadline_ms - now < timeout)
			timeout = op->deadline_ms > now ? (int)(op->deadline_ms - now) : 0;
		rc = poll(fds, (nfds_t)nfds, timeout);
		if (rc < 0 && errno != EINTR)
			return vmci_err_errno(err, errno, "poll failed while %s", op->what);
		now = clock_ms();

		if (rc > 0 && (fds[i_agent].revents & (POLLIN | POLLHUP | POLLERR))) {
			last_heard = now;
			pinged = false;
			rc = read_frames(vm, op, err);
			if (rc != 0)
				return rc < 0 ? rc : 0;
		}
		if (i_pid >= 0 && (fds[i_pid].revents & POLLIN))
			return channel_vm_died(vm, op->what, err);
		if (fds[i_qmp].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (qmp_poll(vm->qmp, NULL) < 0)
				return channel_vm_died(vm, op->what, err);
			rc = check_stopped(vm, op->what, err);
			if (rc < 0)
				return rc;
		}
		if (i_cancel >= 0 && (fds[i_cancel].revents & POLLIN)) {
			char drain[64];
			while (read(vm->cancel_pipe[0], drain, sizeof(drain)) > 0)
				;
		}
		if (i_input >= 0 && (fds[i_input].revents & (POLLIN | POLLHUP | POLLERR))) {
			rc = pump_input(vm, op, err);
			if (rc < 0)
				return rc;
		}
		if (op->deadline_ms && now >= op->deadline_ms)
			return vmci_err_set(err, ETIMEDOUT,
					    "the agent did not answer in time while %s", op->what);
		if (now - last_heard > AGENT_DEAD_MS)
			return vmci_err_set(
			    err, ETIMEDOUT,
			    "the agent stopped answering while %s (no frame for %d s)", op->what,
			    AGENT_DEAD_MS / 1000);
		if (!pinged && now - last_heard > KEEPALIVE_IDLE_MS) {
			rc = send_ping(vm, err);
			if (rc < 0)
				return rc;
			pinged = true;
		}
	}
}

int channel_send(struct vm *vm, const char *what, struct vmci_err *err)
{
	return flush_some(vm, what, err);
}

/* Queues a HELLO asking for what follows vm->guest_seq. */
static int queue_hello(struct vm *vm, struct vmci_err *err)
{
	channel_begin(vm);
	agent_put_u32(&vm->w, AGENT_PROTOCOL_VERSION);
	agent_put_u64(&vm->w, vm->guest_seq);
	return channel_queue(vm, AGENT_HELLO, 0, err);
}

int channel_handshake(struct vm *vm, int timeout_ms, struct vmci_err *err)
{
	int64_t deadline = clock_ms() + timeout_ms;
	vm->connected = false;
	vm->resyncing = true;
	while (!vm->connected) {
		int rc = queue_hello(vm, err);
		if (rc < 0)
			return rc;
		/*
		 * Until the guest opens its port, the hello waits in the socket; it
		 * is sent again each second in case the guest's first open missed it.
		 */
		int64_t retry = clock_ms() + 1000;
		struct channel_op op = {
		    .what = "waiting for the agent to start",
		    .stream = 0,
		    .on_frame = NULL,
		    .input_fd = -1,
		    .deadline_ms = retry < deadline ? retry : deadline,
		};
		while (!vm->connected) {
			rc = channel_run(vm, &op, err);
			if (rc == -ETIMEDOUT)
				break;
			if (rc < 0)
				return rc;
		}
		if (!vm->connected && clock_ms() >= deadline) {
			char tail[2048];
			qemu_console_tail(&vm->paths, tail, sizeof(tail));
			return vmci_err_set(
			    err, ETIMEDOUT, "the guest agent did not start within %d s%s%s",
			    timeout_ms / 1000,
			    *tail ? "; last console lines:\n" : " (the console is empty)", tail);
		}
	}
	return 0;
}

/* Forgets the connection to an agent whose state was replaced under it. */
static void forget_connection(struct vm *vm)
{
	/* What was queued for, or sent by, the agent's earlier life means nothing now. */
	vm->outq.len = 0;
	uint8_t junk[4096];
	while (recv(vm->agent_fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	agent_decoder_reset(&vm->dec);
	vm->dec.expect_seq = 0;
	/*
	 * Resuming after more than the agent ever sent makes it release every
	 * frame it retained (agent_channel_resume): they answer operations of
	 * another host, and their stream ids could collide with ours.
	 */
	vm->guest_seq = vm->guest_seq_acked = UINT64_MAX;
	vm->connected = false;
	vm->resyncing = true;
}

int channel_restart(struct vm *vm, int timeout_ms, struct vmci_err *err)
{
	forget_connection(vm);
	return channel_handshake(vm, timeout_ms, err);
}

int channel_restart_send(struct vm *vm, struct vmci_err *err)
{
	forget_connection(vm);
	int rc = queue_hello(vm, err);
	return rc ? rc : channel_send(vm, "reconnecting to the agent", err);
}

int channel_resume(struct vm *vm, uint64_t resume_after, int timeout_ms, struct vmci_err *err)
{
	/* Half a frame queued for the old connection would garble the new one. */
	vm->outq.len = 0;
	agent_decoder_reset(&vm->dec);
	vm->dec.expect_seq = 0;
	vm->guest_seq = vm->guest_seq_acked = resume_after;
	return channel_handshake(vm, timeout_ms, err);
}
