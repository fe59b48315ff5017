/*
 * The sender of a job's VM (see runner/handoff.h): moves the VM to a
 * receiver and runs the job's commands and file transfers there, in the
 * messages of runner/handoff_wire.h; and a job's VM, here or moved.
 */
#include "runner/handoff.h"
#include "runner/handoff_wire.h"
#include "runner/sched.h"
#include "runner/workspace.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct runner_remote {
	int fd;
	struct msg m;
	/* Held by every send: a cancel comes from another thread, between two messages. */
	pthread_mutex_t send_lock;
	bool cancel_sent;
};

/* Sends one message to the receiver, or two (b: NULL for one) that must stay together. */
static int remote_send(struct runner_remote *r, int type, json_t *json, int type_b, const void *b,
		       size_t b_len)
{
	pthread_mutex_lock(&r->send_lock);
	int rc = msg_send_json(r->fd, type, json);
	if (!rc && b)
		rc = msg_send(r->fd, type_b, b, b_len);
	pthread_mutex_unlock(&r->send_lock);
	return rc;
}

static int connect_to(const char *path, struct vmci_err *err)
{
	struct sockaddr_un sa;
	int fd = unix_socket(path, &sa, err);
	if (fd < 0)
		return fd;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int rc = vmci_err_errno(
		    err, errno, "no receiver at %s (start one: vmci vm receive --listen %s)", path,
		    path);
		close(fd);
		return rc;
	}
	return fd;
}

/* The receiver's answer of type want, or an error with its text. */
static int expect(struct runner_remote *r, int want, const char *what, struct vmci_err *err)
{
	int rc = msg_recv(r->fd, &r->m);
	if (rc)
		return vmci_err_errno(err, -rc, "the receiver went away while %s", what);
	if (r->m.type == MSG_ERROR)
		return vmci_err_set(err, EIO, "the receiver failed while %s: %s", what,
				    buf_cstr(&r->m.body));
	if (r->m.type != want)
		return vmci_err_set(err, EPROTO, "the receiver answered oddly while %s", what);
	return 0;
}

static void remote_free(struct runner_remote *r)
{
	if (r->fd >= 0)
		close(r->fd);
	buf_free(&r->m.body);
	pthread_mutex_destroy(&r->send_lock);
	free(r);
}

/* Names the template disk the VM's disk is over (see the top of this file) in offer. */
static int offer_template(json_t *offer, const char *disk, struct vmci_err *err)
{
	char key[PATH_MAX], sha[SHA256_HEX_LEN + 1];
	snprintf(key, sizeof(key), "%s", disk);
	/* ".../<digest>/<shape>/disk.qcow2" -> "<digest>/<shape>" */
	char *name = strrchr(key, '/'), *shape = NULL, *digest = NULL;
	if (name) {
		*name = 0;
		shape = strrchr(key, '/');
	}
	if (shape) {
		*shape = 0;
		digest = strrchr(key, '/');
	}
	if (!digest)
		return vmci_err_set(err, EINVAL, "%s is not a template's disk", disk);
	int rc = sha256_file(disk, sha, err);
	if (rc)
		return rc;
	char name_out[PATH_MAX];
	snprintf(name_out, sizeof(name_out), "%s/%s", digest + 1, shape + 1);
	json_object_set_new(offer, "template", json_string(name_out));
	json_object_set_new(offer, "template_sha256", json_string(sha));
	return 0;
}

/*
 * Names the workspace disk in offer: the image its overlay is over, which
 * the receiver must see as the very same file (it stays on this host),
 * where it sits on the SCSI bus, and where the guest mounted it.
 */
static int offer_workspace(json_t *offer, const struct runner_ws_mount *ws, struct vmci_err *err)
{
	struct stat st;
	if (stat(ws->image, &st))
		return vmci_err_errno(err, errno, "cannot find the workspace disk's image %s",
				      ws->image);
	json_object_set_new(offer, "workspace_disk",
			    json_pack("{s:s, s:i, s:s, s:b, s:I, s:I, s:I}", "image", ws->image,
				      "target", RUNNER_WS_DISK_TARGET, "dir", ws->guest_dir,
				      "mounted", ws->mounted, "dev", (json_int_t)st.st_dev, "ino",
				      (json_int_t)st.st_ino, "size", (json_int_t)st.st_size));
	return 0;
}

int runner_remote_move(const char *path, const char *image, struct runner_guest *g,
		       const struct runner_guest_opts *shape, struct runner_ws_mount *ws,
		       struct runner_cancel *cancel, struct runner_remote **out,
		       struct vmci_err *err)
{
	*out = NULL;
	struct runner_remote *r = calloc(1, sizeof(*r));
	if (!r)
		return vmci_err_set(err, ENOMEM, "out of memory");
	pthread_mutex_init(&r->send_lock, NULL);
	r->fd = connect_to(path, err);
	if (r->fd < 0) {
		pthread_mutex_destroy(&r->send_lock);
		free(r);
		return -EHOSTUNREACH;
	}
	const char *accel = vm_accel_used(g->vm) == VM_ACCEL_KVM ? "kvm" : "tcg";
	json_t *offer =
	    json_pack("{s:s, s:i, s:i, s:s, s:s, s:b}", "image", image, "cpus",
		      shape->cpus > 0 ? shape->cpus : 1, "memory_mb",
		      shape->memory_mb > 0 ? shape->memory_mb : 256, "accel", accel, "network",
		      vm_network_name(shape->network), "memory_backend", vm_mem_backend(g->vm));
	int rc = g->base[0] ? offer_template(offer, g->base, err) : 0;
	if (!rc && ws && ws->attached)
		rc = offer_workspace(offer, ws, err);
	if (rc) {
		json_decref(offer);
		remote_free(r);
		return rc;
	}
	rc = msg_send_json(r->fd, MSG_OFFER, offer);
	if (rc)
		rc = vmci_err_errno(err, -rc, "cannot offer the VM to %s", path);
	if (!rc)
		rc = expect(r, MSG_ADDR, "preparing for the VM", err);
	struct vm_migrate_addr addr = {0};
	if (!rc) {
		json_t *a = msg_json(&r->m);
		const char *nbd = json_string_value(json_object_get(a, "nbd"));
		const char *stream = json_string_value(json_object_get(a, "stream"));
		if (!nbd || !stream)
			rc = vmci_err_set(err, EPROTO, "the receiver named no address");
		else {
			snprintf(addr.nbd, sizeof(addr.nbd), "%s", nbd);
			snprintf(addr.stream, sizeof(addr.stream), "%s", stream);
		}
		json_decref(a);
	}
	if (rc) {
		remote_free(r);
		return rc;
	}
	struct vm_migrate_stats st;
	rc = vm_migrate_to(g->vm, &addr, NULL, &st, err);
	if (rc) {
		msg_send_text(r->fd, MSG_GIVEUP, err->msg);
		remote_free(r);
		return rc;
	}
	struct vm_agent_state state;
	vm_agent_state_get(g->vm, &state);
	rc = msg_send_json(r->fd, MSG_MOVED,
			   json_pack("{s:I, s:I}", "guest_seq", (json_int_t)state.guest_seq,
				     "stream", (json_int_t)state.stream));
	if (rc)
		rc = vmci_err_errno(err, -rc, "the receiver went away while the VM moved");
	if (!rc)
		rc = expect(r, MSG_ACCEPTED, "taking the VM", err);
	if (rc) {
		/* The state is at the receiver, unused: the guest resumes here. */
		struct vmci_err back = {0};
		if (vm_migrate_abort(g->vm, &back))
			vmci_err_wrap(err, "%s; and the VM could not resume here either", back.msg);
		remote_free(r);
		return rc;
	}
	log_info("VM moved to %s in %lld ms (downtime %lld ms)", path, (long long)st.total_ms,
		 (long long)st.downtime_ms);
	/* A cancel from now on is the job's at the receiver: it must not reach this QEMU. */
	if (cancel)
		runner_cancel_detach(cancel);
	vm_stop(g->vm, VMCI_STOP_TIMEOUT_MS);
	g->vm = NULL;
	if (ws && ws->attached)
		runner_workspace_moved(ws);
	*out = r;
	return 0;
}

/* Receives output until the command's EXIT (or FAILED). */
static int remote_wait(struct runner_remote *r, const struct vm_exec_opts *opts,
		       struct vm_exec_result *res, struct vmci_err *err)
{
	memset(res, 0, sizeof(*res));
	for (;;) {
		int rc = msg_recv(r->fd, &r->m);
		if (rc)
			return vmci_err_errno(err, -rc, "the receiver of the VM went away");
		switch (r->m.type) {
		case MSG_OUT1:
		case MSG_OUT2:
			if (opts->on_output && r->m.body.len)
				opts->on_output(opts->ctx, r->m.type == MSG_OUT2 ? 2 : 1,
						r->m.body.data, r->m.body.len);
			break;
		case MSG_EXIT: {
			json_t *e = msg_json(&r->m);
			res->kind =
			    (enum vm_exit_kind)json_integer_value(json_object_get(e, "kind"));
			res->code = (int)json_integer_value(json_object_get(e, "code"));
			res->duration_ms = json_integer_value(json_object_get(e, "duration_ms"));
			json_decref(e);
			return e ? 0
				 : vmci_err_set(err, EPROTO,
						"a malformed result from the receiver");
		}
		case MSG_FAILED:
			return vmci_err_set(err, EIO, "the moved VM failed: %s",
					    buf_cstr(&r->m.body));
		default:
			return vmci_err_set(err, EPROTO, "the receiver answered oddly");
		}
	}
}

int runner_remote_resume(struct runner_remote *r, const struct vm_exec_opts *opts,
			 struct vm_exec_result *res, struct vmci_err *err)
{
	int rc = remote_send(r, MSG_RESUME,
			     json_pack("{s:[], s:[], s:I}", "argv", "env", "timeout_ms",
				       (json_int_t)opts->timeout_ms),
			     0, NULL, 0);
	if (rc)
		return vmci_err_errno(err, -rc, "the receiver of the VM went away");
	return remote_wait(r, opts, res, err);
}

int runner_remote_exec(struct runner_remote *r, const struct vm_exec_opts *opts,
		       struct vm_exec_result *res, struct vmci_err *err)
{
	json_t *req = json_pack("{s:o, s:o, s:s, s:I}", "argv", json_strv(opts->argv), "env",
				json_strv(opts->env), "cwd", opts->cwd ? opts->cwd : "",
				"timeout_ms", (json_int_t)opts->timeout_ms);
	int rc = remote_send(r, MSG_EXEC, req, 0, NULL, 0);
	if (rc)
		return vmci_err_errno(err, -rc, "the receiver of the VM went away");
	return remote_wait(r, opts, res, err);
}

/* The DONE the receiver answered a PUT, GET or PING with (in r->m). */
static int remote_done(struct runner_remote *r, struct vmci_err *err)
{
	json_t *d = msg_json(&r->m);
	int code = (int)json_integer_value(json_object_get(d, "code"));
	const char *msg = json_string_value(json_object_get(d, "msg"));
	int rc = !d	    ? vmci_err_set(err, EPROTO, "a malformed answer from the receiver")
		 : code < 0 ? vmci_err_set(err, -code, "%s", msg ? msg : "the receiver failed")
			    : 0;
	json_decref(d);
	return rc;
}

int runner_remote_put_tar(struct runner_remote *r, int fd, const char *guest_dir,
			  struct vmci_err *err)
{
	struct buf tar = {0};
	char chunk[65536];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0 && tar.len + (size_t)n <= MSG_MAX)
		if (buf_append(&tar, chunk, (size_t)n)) {
			n = -1;
			errno = ENOMEM;
			break;
		}
	int rc = n < 0	 ? vmci_err_errno(err, errno, "cannot read the files for %s", guest_dir)
		 : n > 0 ? vmci_err_set(err, EFBIG,
					"over %u KiB for %s: too much to send to the "
					"VM that moved",
					MSG_MAX >> 10, guest_dir)
			 : 0;
	if (!rc && remote_send(r, MSG_PUT, json_pack("{s:s}", "dir", guest_dir), MSG_DATA,
			       tar.data ? (const void *)tar.data : "", tar.len))
		rc = vmci_err_set(err, EPIPE, "the receiver of the VM went away");
	buf_free(&tar);
	if (!rc)
		rc = expect(r, MSG_DONE, "putting files into the VM", err);
	return rc ? rc : remote_done(r, err);
}

int runner_remote_get_tar(struct runner_remote *r, const char *guest_path, int fd,
			  struct vmci_err *err)
{
	if (remote_send(r, MSG_GET, json_pack("{s:s}", "path", guest_path), 0, NULL, 0))
		return vmci_err_set(err, EPIPE, "the receiver of the VM went away");
	int write_rc = 0;
	for (;;) {
		int rc = msg_recv(r->fd, &r->m);
		if (rc)
			return vmci_err_errno(err, -rc, "the receiver of the VM went away");
		if (r->m.type == MSG_DONE)
			break;
		if (r->m.type != MSG_DATA)
			return vmci_err_set(err, EPROTO, "the receiver answered oddly");
		/* A reader that stopped (a limit) fails the copy; the rest is read and dropped. */
		if (!write_rc)
			write_rc = io_write_all(fd, r->m.body.data, r->m.body.len);
	}
	int rc = remote_done(r, err);
	if (!rc && write_rc)
		rc = vmci_err_errno(err, -write_rc, "cannot pass on the files of %s", guest_path);
	return rc;
}

int runner_remote_ping(struct runner_remote *r, int timeout_ms, struct vmci_err *err)
{
	if (remote_send(r, MSG_PING, json_pack("{s:i}", "timeout_ms", timeout_ms), 0, NULL, 0))
		return vmci_err_set(err, EPIPE, "the receiver of the VM went away");
	int rc = expect(r, MSG_DONE, "pinging the VM", err);
	return rc ? rc : remote_done(r, err);
}

int runner_job_vm_put_tar(const struct runner_job_vm *t, int fd, const char *guest_dir,
			  struct vmci_err *err)
{
	return t->remote ? runner_remote_put_tar(t->remote, fd, guest_dir, err)
			 : vm_put_tar(t->vm, fd, guest_dir, err);
}

int runner_job_vm_get_tar(const struct runner_job_vm *t, const char *guest_path, int fd,
			  struct vmci_err *err)
{
	return t->remote ? runner_remote_get_tar(t->remote, guest_path, fd, err)
			 : vm_get_tar(t->vm, guest_path, fd, err);
}

int runner_job_vm_ping(const struct runner_job_vm *t, int timeout_ms, struct vmci_err *err)
{
	return t->remote ? runner_remote_ping(t->remote, timeout_ms, err)
			 : vm_ping(t->vm, timeout_ms, err);
}

void runner_remote_cancel(struct runner_remote *r)
{
	pthread_mutex_lock(&r->send_lock);
	if (!r->cancel_sent)
		r->cancel_sent = msg_send(r->fd, MSG_CANCEL, NULL, 0) == 0;
	pthread_mutex_unlock(&r->send_lock);
}

void runner_remote_close(struct runner_remote *r)
{
	if (!r)
		return;
	msg_send(r->fd, MSG_END, NULL, 0);
	remote_free(r);
}
