/* One VM's life: start to a ready agent, housekeeping, stop. */
#include "vmcore/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_READY_TIMEOUT_MS 120000
#define QMP_TIMEOUT_MS		 10000
#define REFRESH_TIMEOUT_MS	 10000
/* A reconnect's single round trip, before the step-by-step path takes over. */
#define RESTART_FIRST_TRY_MS 5000

static struct vm *vm_alloc(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->agent_fd = -1;
	vm->proc.pidfd = -1;
	vm->host_seq = 1;
	vm->cancel_pipe[0] = vm->cancel_pipe[1] = -1;
	/*
	 * Stream ids start at a random point: a host that reconnects to an agent
	 * (after a migration or a runner restart) must not reuse the id of an
	 * operation still running in the guest.
	 */
	if (getrandom(&vm->next_stream, sizeof(vm->next_stream), 0) != sizeof(vm->next_stream))
		vm->next_stream = (uint32_t)clock_ns();
	agent_decoder_init(&vm->dec, true);
	if (pipe2(vm->cancel_pipe, O_CLOEXEC | O_NONBLOCK)) {
		free(vm);
		return NULL;
	}
	return vm;
}

static void vm_free(struct vm *vm)
{
	/* A migration destination given up on: its sockets go with it. */
	if (vm->migrate_in.nbd[0])
		unlink(vm->migrate_in.nbd);
	if (vm->migrate_in.stream[0])
		unlink(vm->migrate_in.stream);
	if (vm->agent_fd >= 0)
		close(vm->agent_fd);
	if (vm->qmp)
		qmp_close(vm->qmp);
	if (vm->proc.pidfd >= 0)
		close(vm->proc.pidfd);
	close(vm->cancel_pipe[0]);
	close(vm->cancel_pipe[1]);
	agent_decoder_free(&vm->dec);
	agent_writer_free(&vm->w);
	buf_free(&vm->outq);
	buf_free(&vm->held);
	agent_strv_free(vm->info);
	free(vm);
}

static int check_file(const char *what, const char *path, struct vmci_err *err)
{
	if (!path || !*path)
		return vmci_err_set(err, EINVAL, "the VM spec has no %s", what);
	if (access(path, R_OK) != 0)
		return vmci_err_errno(err, errno, "cannot read the %s %s", what, path);
	return 0;
}

static int check_spec(const struct vm_spec *spec, struct vmci_err *err)
{
	int rc;
	if ((rc = check_file("kernel", spec->kernel, err)) ||
	    (rc = check_file("initramfs", spec->initrd, err)))
		return rc;
	if (spec->disk && *spec->disk && (rc = check_file("disk", spec->disk, err)))
		return rc;
	if (!spec->run_dir)
		return vmci_err_set(err, EINVAL, "the VM spec has no run directory");
	return 0;
}

int vm_start(const struct vm_spec *spec, struct vm **out, struct vmci_err *err)
{
	*out = NULL;
	int rc = check_spec(spec, err);
	if (rc)
		return rc;
	char why[512];
	enum vm_accel accel =
	    vm_accel_resolve(spec->accel, spec->arch, spec->kernel, spec->initrd, why, sizeof(why));
	log_debug("accelerator: %s", why);
	rc = vm_boot(spec, accel, out, err);
	/*
	 * A KVM that stops the guest with an internal error has just proven it
	 * cannot run guests here (the failure wrote the verdict): when vmci may
	 * choose, the same VM boots again under TCG. A VM loading saved state
	 * cannot: its state belongs to KVM.
	 */
	if (rc == -VM_EACCEL && accel == VM_ACCEL_KVM && accel_is_auto(spec->accel) &&
	    !spec->incoming && !spec->loadvm) {
		log_warn(
		    "KVM failed to run the guest; booting it again under TCG (software emulation)");
		rc = vm_boot(spec, VM_ACCEL_TCG, out, err);
	}
	return rc;
}

int vm_launch(const struct vm_spec *spec, enum vm_accel accel, bool incoming, struct vm **out,
	      struct vmci_err *err)
{
	*out = NULL;
	int rc = check_spec(spec, err);
	if (rc)
		return rc;
	struct vm *vm = vm_alloc();
	if (!vm)
		return vmci_err_set(err, ENOMEM, "out of memory starting a VM");
	vm->arch = spec->arch;
	vm->accel = accel;
	vm->network = spec->network;
	snprintf(vm->run_dir, sizeof(vm->run_dir), "%s", spec->run_dir);
	vm->has_disk = spec->disk && *spec->disk;
	vm->ram_in_file = spec->mem_path && spec->mem_shared;
	vm->mem_file = spec->mem_path || spec->mem_backend;
	qemu_paths_init(&vm->paths, spec->run_dir);
	unlink(vm->paths.qmp);
	unlink(vm->paths.agent);
	unlink(vm->paths.console);

	int net_fd = -1;
	if (spec->network == VM_NET_NAT &&
	    (rc = net_helper_start(spec->run_dir, &vm->net, &net_fd, err)))
		goto fail;
	rc = incoming ? qemu_launch_incoming(spec, vm->accel, &vm->paths, net_fd, &vm->proc, err)
		      : qemu_launch(spec, vm->accel, &vm->paths, net_fd, &vm->proc, err);
	/* QEMU holds its own copy now: the helper's EOF must come from QEMU's end alone. */
	if (net_fd >= 0)
		close(net_fd);
	if (rc)
		goto fail;
	int fd = qemu_connect_socket(vm->paths.qmp, &vm->proc, QMP_TIMEOUT_MS, err);
	if (fd < 0) {
		rc = fd;
		goto fail;
	}
	rc = qmp_open(fd, QMP_TIMEOUT_MS, &vm->qmp, err);
	if (rc)
		goto fail;
	vm->agent_fd = qemu_connect_socket(vm->paths.agent, &vm->proc, QMP_TIMEOUT_MS, err);
	if (vm->agent_fd < 0) {
		rc = vm->agent_fd;
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	vm_launch_failed(vm, rc, err);
	return rc;
}

void vm_launch_failed(struct vm *vm, int rc, struct vmci_err *err)
{
	if (vm->proc.pid > 0) {
		/* Give QEMU a moment to exit by itself: its own status and last words are told. */
		char how[96], tail[640];
		qemu_reap(&vm->proc, rc == -VM_EACCEL ? 0 : 500); /* a stopped guest never exits */
		qemu_describe_exit(&vm->proc, how, sizeof(how));
		qemu_console_tail(&vm->paths, tail, sizeof(tail));
		if (err && *tail && !strstr(err->msg, "console") &&
		    !strstr(err->msg, "output ends")) {
			size_t n = strlen(err->msg);
			snprintf(err->msg + n, sizeof(err->msg) - n,
				 " (QEMU %s; last console lines:\n%s)", how, tail);
		}
	}
	vm_stop(vm, 0);
}

int vm_boot(const struct vm_spec *spec, enum vm_accel accel, struct vm **out, struct vmci_err *err)
{
	*out = NULL;
	int64_t t0 = clock_ms();
	struct vm *vm = NULL;
	int rc = vm_launch(spec, accel, false, &vm, err);
	if (rc)
		return rc;
	int timeout =
	    spec->ready_timeout_ms > 0 ? spec->ready_timeout_ms : DEFAULT_READY_TIMEOUT_MS;
	/* A restored guest gets its network configured with its refresh (vm_refresh_guest). */
	if (spec->incoming || spec->loadvm)
		rc = template_start(vm, spec, timeout, err);
	else if (!(rc = channel_handshake(vm, timeout, err)))
		rc = net_configure_guest(vm, err);
	if (rc) {
		vm_launch_failed(vm, rc, err);
		return rc;
	}
	vm->boot_ms = clock_ms() - t0;
	log_info("VM %d ready in %lld ms (%s)", (int)vm->proc.pid, (long long)vm->boot_ms,
		 vm->accel == VM_ACCEL_KVM ? "kvm" : "tcg");
	*out = vm;
	return 0;
}

void vm_stop(struct vm *vm, int timeout_ms)
{
	if (!vm)
		return;
	if (vm->proc.pid > 0 && !qemu_exited(&vm->proc)) {
		/*
		 * The overlay is disposable or saved by snapshot, so quit does not
		 * wait for the guest to shut down; it stops QEMU cleanly so that the
		 * qcow2 metadata is consistent.
		 */
		if (vm->qmp && timeout_ms > 0)
			qmp_execute(vm->qmp, "quit", NULL, NULL, timeout_ms, NULL);
		qemu_reap(&vm->proc, timeout_ms);
	} else if (vm->proc.pid > 0) {
		qemu_reap(&vm->proc, 0);
	}
	net_helper_stop(&vm->net);
	vm_free(vm);
}

pid_t vm_pid(const struct vm *vm)
{
	return vm->proc.pid;
}

const char *vm_guest_info(const struct vm *vm, const char *key)
{
	size_t klen = strlen(key);
	for (char **p = vm->info; p && *p; p++)
		if (!strncmp(*p, key, klen) && (*p)[klen] == '=')
			return *p + klen + 1;
	return NULL;
}

int64_t vm_boot_ms(const struct vm *vm)
{
	return vm->boot_ms;
}

const char *vm_instance_id(const struct vm *vm)
{
	return vm->instance_id;
}

enum vm_accel vm_accel_used(const struct vm *vm)
{
	return vm->accel;
}

bool vm_mem_backend(const struct vm *vm)
{
	return vm->mem_file;
}

void vm_detach(struct vm *vm)
{
	vm->detach_requested = 1;
	ssize_t ignored = write(vm->cancel_pipe[1], "d", 1);
	(void)ignored;
}

void vm_cancel(struct vm *vm)
{
	vm->cancel_requested = 1;
	ssize_t ignored = write(vm->cancel_pipe[1], "c", 1);
	(void)ignored;
}

/* ---- small request/reply operations --------------------------------- */

static int on_pong(struct vm *vm, struct channel_op *op, const struct agent_frame *f,
		   struct vmci_err *err)
{
	if (f->h.type != AGENT_PONG)
		return vmci_err_set(err, EPROTO, "the agent answered %s with a %s frame", op->what,
				    agent_type_name(f->h.type));
	return 1;
}

int vm_ping(struct vm *vm, int timeout_ms, struct vmci_err *err)
{
	struct channel_op op = {
	    .what = "pinging the agent",
	    .stream = channel_new_stream(vm),
	    .on_frame = on_pong,
	    .input_fd = -1,
	    .deadline_ms = clock_ms() + timeout_ms,
	};
	channel_begin(vm);
	agent_put_u64(&vm->w, (uint64_t)clock_ns());
	int rc = channel_queue(vm, AGENT_PING, op.stream, err);
	return rc ? rc : channel_run(vm, &op, err);
}

static int on_refresh_reply(struct vm *vm, struct channel_op *op, const struct agent_frame *f,
			    struct vmci_err *err)
{
	struct guest_refresh *r = op->ctx;
	char why[128];
	if (f->h.type != AGENT_RESULT || r->replies >= 2)
		return vmci_err_set(err, EPROTO, "the agent answered %s with a %s frame", op->what,
				    agent_type_name(f->h.type));
	if (agent_result_decode(f, &r->result[r->replies], why, sizeof(why)))
		return vmci_err_set(err, EPROTO, "the agent sent %s while %s", why, op->what);
	return ++r->replies == 2;
}

int guest_refresh_send(struct vm *vm, struct guest_refresh *r, struct vmci_err *err)
{
	memset(r, 0, sizeof(*r));
	uint8_t seed[64];
	if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		return vmci_err_errno(err, errno, "cannot read host entropy");
	/* Both requests go at once, on one stream: a revert waits for one round trip, not two. */
	r->op = (struct channel_op){
	    .what = "setting the guest clock and adding entropy",
	    .stream = channel_new_stream(vm),
	    .on_frame = on_refresh_reply,
	    .ctx = r,
	    .input_fd = -1,
	};
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	channel_begin(vm);
	agent_put_i64(&vm->w, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
	int rc = channel_queue(vm, AGENT_SET_TIME, r->op.stream, err);
	if (!rc) {
		channel_begin(vm);
		agent_put_bytes(&vm->w, seed, sizeof(seed));
		rc = channel_queue(vm, AGENT_ADD_ENTROPY, r->op.stream, err);
	}
	return rc ? rc : channel_send(vm, r->op.what, err);
}

/* Waits for both answers until deadline_ms; what came before a timeout stays in r for a retry. */
static int refresh_run(struct vm *vm, struct guest_refresh *r, int64_t deadline_ms,
		       struct vmci_err *err)
{
	r->op.deadline_ms = deadline_ms;
	r->op.ctx = r;
	return channel_run(vm, &r->op, err);
}

/* Checks the answers (if rc is 0), frees them and configures the network. */
static int refresh_finish(struct vm *vm, struct guest_refresh *r, int rc, struct vmci_err *err)
{
	static const char *const what[] = {"setting the guest clock", "adding guest entropy"};
	for (int i = 0; !rc && i < 2; i++)
		if (r->result[i].status)
			rc = vmci_err_set(err, r->result[i].status, "%s failed in the guest: %s",
					  what[i],
					  *r->result[i].message ? r->result[i].message
								: strerror(r->result[i].status));
	agent_result_free(&r->result[0]);
	agent_result_free(&r->result[1]);
	/* Whatever the guest knew of its network before a restore from elsewhere is stale now. */
	if (!rc)
		rc = r->network_kept ? net_helper_check(vm, err) : net_configure_guest(vm, err);
	return rc;
}

int guest_refresh_wait(struct vm *vm, struct guest_refresh *r, int64_t deadline_ms,
		       struct vmci_err *err)
{
	return refresh_finish(vm, r, refresh_run(vm, r, deadline_ms, err), err);
}

int vm_refresh_guest(struct vm *vm, struct vmci_err *err)
{
	struct guest_refresh r;
	int rc = guest_refresh_send(vm, &r, err);
	return rc ? rc : guest_refresh_wait(vm, &r, clock_ms() + REFRESH_TIMEOUT_MS, err);
}

int vm_restart_refreshed(struct vm *vm, int timeout_ms, struct vmci_err *err)
{
	struct guest_refresh r;
	int rc = channel_restart_send(vm, err);
	if (!rc)
		rc = guest_refresh_send(vm, &r, err);
	return rc ? rc : vm_restart_refreshed_wait(vm, &r, timeout_ms, err);
}

int vm_restart_refreshed_wait(struct vm *vm, struct guest_refresh *r, int timeout_ms,
			      struct vmci_err *err)
{
	/*
	 * The agent answers the hello and then the refresh, read in one go: one
	 * round trip. A hello that got no answer (which the agent, running
	 * already, always gives) is repeated by the slow path, one step at a time.
	 */
	int64_t t0 = clock_ms();
	int first = timeout_ms < RESTART_FIRST_TRY_MS ? timeout_ms : RESTART_FIRST_TRY_MS;
	int rc = refresh_run(vm, r, t0 + first, err);
	if (rc == -ETIMEDOUT && vm->connected && first < timeout_ms) {
		/* The agent is back, only slow (TCG, a loaded host): its answers get the rest. */
		log_debug("VM %d: reconnected, the clock and entropy take over %d ms",
			  (int)vm->proc.pid, first);
		rc = refresh_run(vm, r, t0 + timeout_ms, err);
	}
	rc = refresh_finish(vm, r, rc, err);
	if (rc != -ETIMEDOUT || vm->connected || first >= timeout_ms)
		return rc;
	log_debug("VM %d: no answer to the reconnect within %d ms, trying again", (int)vm->proc.pid,
		  first);
	int left = (int)(timeout_ms - (clock_ms() - t0));
	rc = channel_restart(vm, left > 1000 ? left : 1000, err);
	return rc ? rc : vm_refresh_guest(vm, err);
}
