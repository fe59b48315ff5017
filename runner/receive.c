/*
 * The receiver of a job's VM (see runner/handoff.h): takes the VM that
 * moves in and runs the job's commands and file transfers on it for the
 * sender, in the messages of runner/handoff_wire.h.
 */
#include "runner/handoff.h"
#include "runner/handoff_wire.h"
#include "runner/sched.h"
#include "runner/template.h"
#include "runner/workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct receiver {
	int fd;
	void (*say)(void *ctx, const char *line);
	void *ctx;
	struct runner_cancel *cancel; /* may be NULL */
	bool sender_cancelled;	      /* the sender sent CANCEL */
	struct runner_ws_mount ws;    /* the job's workspace disk, when it came with the VM */
};

static bool cancelled(const struct receiver *r)
{
	return r->sender_cancelled || (r->cancel && runner_cancel_requested(r->cancel));
}

static void say(struct receiver *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct receiver *r, const char *fmt, ...)
{
	if (!r->say)
		return;
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	r->say(r->ctx, line);
}

static void forward_output(void *ctx, int fd, const void *data, size_t len)
{
	struct receiver *r = ctx;
	/* A sender gone is seen by the watcher (below), which cancels the command. */
	msg_send(r->fd, fd == 2 ? MSG_OUT2 : MSG_OUT1, data, len);
}

/*
 * While a command runs, the sender sends nothing but a CANCEL; a thread
 * watches the socket for it (or for the sender going away, which ends
 * the command too), and every 200 ms for a cancel here (Ctrl-C), and
 * cancels the command, again every 200 ms until it ended (a cancel that
 * lands as vm_exec starts is not lost).
 */
struct watch {
	struct receiver *r;
	struct vm *vm;
	int stop[2];
	bool cancel;
};

static void *watch_thread(void *arg)
{
	struct watch *w = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = w->stop[0], .events = POLLIN},
				      {.fd = w->r->fd, .events = POLLIN}};
		bool timed = w->cancel || w->r->cancel;
		int n = poll(p, w->cancel ? 1 : 2, timed ? 200 : -1);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && p[0].revents)
			break;
		if (!w->cancel && n > 0 && p[1].revents) {
			struct msg m = {0};
			int rc = msg_recv(w->r->fd, &m);
			buf_free(&m.body);
			w->cancel = true;
			w->r->sender_cancelled |= rc == 0 && m.type == MSG_CANCEL;
		}
		if (w->r->cancel && runner_cancel_requested(w->r->cancel))
			w->cancel = true;
		if (w->cancel)
			vm_cancel(w->vm);
	}
	return NULL;
}

/* Runs a RESUME or EXEC request on vm and answers with EXIT or FAILED. */
static int serve_command(struct receiver *r, struct vm *vm, uint32_t stream, const struct msg *m)
{
	json_t *req = msg_json(m);
	char **argv = strv_of(json_object_get(req, "argv"));
	char **env = strv_of(json_object_get(req, "env"));
	const char *cwd = json_string_value(json_object_get(req, "cwd"));
	struct vm_exec_opts o = {
	    .argv = (const char *const *)argv,
	    .env = (const char *const *)env,
	    .cwd = cwd,
	    .timeout_ms = (uint32_t)json_integer_value(json_object_get(req, "timeout_ms")),
	    .stdin_fd = -1,
	    .on_output = forward_output,
	    .ctx = r,
	};
	struct vm_exec_result res = {0};
	struct vmci_err err = {0};
	int rc = 0;
	if (!req || !argv || !env)
		rc = vmci_err_set(&err, EPROTO, "a malformed request from the sender");
	else if (cancelled(r))
		res.kind = VM_CANCELLED; /* the job ends here: no command runs any more */
	else if (m->type == MSG_EXEC && !argv[0])
		rc = vmci_err_set(&err, EPROTO, "an exec request without a command");
	else {
		struct watch w = {.r = r, .vm = vm, .stop = {-1, -1}};
		pthread_t t;
		bool watching = pipe2(w.stop, O_CLOEXEC) == 0 &&
				pthread_create(&t, NULL, watch_thread, &w) == 0;
		if (m->type == MSG_RESUME)
			rc = vm_exec_resume(vm, stream, &o, &res, &err);
		else
			rc = vm_exec(vm, &o, &res, &err);
		if (watching) {
			ssize_t ignored = write(w.stop[1], "s", 1);
			(void)ignored;
			pthread_join(t, NULL);
		}
		if (w.stop[0] >= 0) {
			close(w.stop[0]);
			close(w.stop[1]);
		}
	}
	json_decref(req);
	strv_free(argv);
	strv_free(env);
	if (rc)
		return msg_send_text(r->fd, MSG_FAILED, err.msg) ? -EPIPE : rc;
	return msg_send_json(r->fd, MSG_EXIT,
			     json_pack("{s:i, s:i, s:I}", "kind", (int)res.kind, "code", res.code,
				       "duration_ms", (json_int_t)res.duration_ms));
}

/* Answers a PUT, GET or PING: rc 0, or a negative code with err. */
static int send_done(struct receiver *r, int rc, const struct vmci_err *err)
{
	return msg_send_json(
	    r->fd, MSG_DONE,
	    json_pack("{s:i, s:s}", "code", rc < 0 ? rc : 0, "msg", rc < 0 ? err->msg : ""));
}

/* A PUT: its DATA (read into m) is the tar stream for vm_put_tar. */
static int serve_put(struct receiver *r, struct vm *vm, struct msg *m)
{
	json_t *req = msg_json(m);
	char dir[PATH_MAX];
	const char *d = json_string_value(json_object_get(req, "dir"));
	snprintf(dir, sizeof(dir), "%s", d ? d : "");
	json_decref(req);
	if (msg_recv(r->fd, m))
		return -EPIPE;
	struct vmci_err err = {0};
	int rc = 0;
	if (m->type != MSG_DATA || !dir[0])
		rc = vmci_err_set(&err, EPROTO, "a malformed put from the sender");
	int fd = rc ? -1 : memfd_create("vmci-put", MFD_CLOEXEC);
	if (!rc && fd < 0)
		rc = vmci_err_errno(&err, errno, "cannot make a memory file");
	if (!rc && (io_write_all(fd, m->body.data, m->body.len) || lseek(fd, 0, SEEK_SET) < 0))
		rc = vmci_err_errno(&err, errno, "cannot write a memory file");
	if (!rc)
		rc = vm_put_tar(vm, fd, dir, &err);
	if (fd >= 0)
		close(fd);
	return send_done(r, rc, &err) ? -EPIPE : 0;
}

/*
 * A GET: the guest's tar stream is spooled in an unnamed file of the
 * guest's run directory, then sent in DATA chunks; what the guest sent
 * before a failure goes too (the sender's unpacker judges it).
 */
static int serve_get(struct receiver *r, struct runner_guest *g, const struct msg *m)
{
	json_t *req = msg_json(m);
	char path[PATH_MAX];
	const char *p = json_string_value(json_object_get(req, "path"));
	snprintf(path, sizeof(path), "%s", p ? p : "");
	json_decref(req);
	struct vmci_err err = {0};
	int rc = path[0] ? 0 : vmci_err_set(&err, EPROTO, "a malformed get from the sender");
	int fd = rc ? -1 : open(g->run_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (!rc && fd < 0)
		rc = vmci_err_errno(&err, errno, "cannot make a file in %s", g->run_dir);
	if (!rc)
		rc = vm_get_tar(g->vm, path, fd, &err);
	if (fd >= 0 && lseek(fd, 0, SEEK_SET) == 0) {
		static char chunk[DATA_CHUNK];
		ssize_t n;
		while ((n = read(fd, chunk, sizeof(chunk))) > 0)
			if (msg_send(r->fd, MSG_DATA, chunk, (size_t)n)) {
				close(fd);
				return -EPIPE;
			}
	}
	if (fd >= 0)
		close(fd);
	return send_done(r, rc, &err) ? -EPIPE : 0;
}

static int serve_ping(struct receiver *r, struct vm *vm, const struct msg *m)
{
	json_t *req = msg_json(m);
	int timeout_ms = (int)json_integer_value(json_object_get(req, "timeout_ms"));
	json_decref(req);
	struct vmci_err err = {0};
	int rc = vm_ping(vm, timeout_ms > 0 ? timeout_ms : 5000, &err);
	return send_done(r, rc, &err) ? -EPIPE : 0;
}

/* A template's disk named in an OFFER, found here and checked to be the sender's very file. */
static int find_template_disk(const char *key, const char *sha, char *out, size_t size,
			      struct vmci_err *err)
{
	int slashes = 0;
	bool ok = key[0] && key[0] != '.' && sha;
	for (const char *p = key; ok && *p; p++) {
		if (*p == '/') {
			slashes++;
			ok = p[1] && p[1] != '.';
		} else {
			ok =
			    strchr(
				"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
				*p) != NULL;
		}
	}
	if (!ok || slashes != 1)
		return vmci_err_set(err, EPROTO, "the sender named a template oddly: '%s'", key);
	char root[PATH_MAX], have[SHA256_HEX_LEN + 1];
	int rc = runner_templates_default(root, sizeof(root));
	if (!rc && fs_path(out, size, "%s/%s/disk.qcow2", root, key))
		rc = -ENAMETOOLONG;
	if (rc)
		return vmci_err_set(err, ENAMETOOLONG, "template path too long under %s", root);
	if (!fs_exists(out))
		return vmci_err_set(err, ENOENT,
				    "the VM was started from template %s, which is not in %s here "
				    "(the receiver needs the sender's templates)",
				    key, root);
	rc = sha256_file(out, have, err);
	if (rc)
		return rc;
	if (strcmp(have, sha))
		return vmci_err_set(err, EINVAL,
				    "template %s in %s is not the sender's (another boot made it): "
				    "the VM cannot move here",
				    key, root);
	return 0;
}

/*
 * The workspace disk named in an OFFER: its image must be the sender's
 * very file (the same device, inode and size), which only a receiver on
 * the sender's host sees; the destination gets an overlay over it.
 */
static int take_workspace(struct receiver *r, json_t *wd, const char *disks[VM_DISK_TARGETS],
			  struct vmci_err *err)
{
	const char *image = json_string_value(json_object_get(wd, "image"));
	const char *dir = json_string_value(json_object_get(wd, "dir"));
	json_int_t target = json_integer_value(json_object_get(wd, "target"));
	if (!image || !dir || target != RUNNER_WS_DISK_TARGET)
		return vmci_err_set(err, EPROTO, "the sender named a workspace disk oddly");
	struct stat st;
	if (stat(image, &st) ||
	    (json_int_t)st.st_dev != json_integer_value(json_object_get(wd, "dev")) ||
	    (json_int_t)st.st_ino != json_integer_value(json_object_get(wd, "ino")) ||
	    (json_int_t)st.st_size != json_integer_value(json_object_get(wd, "size")))
		return vmci_err_set(err, ENOENT,
				    "the job's workspace is a disk over %s, which is not here "
				    "(a job with a workspace disk moves only to a receiver on "
				    "its own host; run it with --workspace tar to move it further)",
				    image);
	snprintf(r->ws.image, sizeof(r->ws.image), "%s", image);
	snprintf(r->ws.guest_dir, sizeof(r->ws.guest_dir), "%s", dir);
	r->ws.mounted = json_is_true(json_object_get(wd, "mounted"));
	disks[RUNNER_WS_DISK_TARGET] = r->ws.image;
	return 0;
}

/* Prepares a destination for an OFFER and tells the sender where it waits. */
static int take_offer(struct receiver *r, const struct msg *m, struct runner_guest **out,
		      struct vmci_err *err)
{
	json_t *offer = msg_json(m);
	const char *image = json_string_value(json_object_get(offer, "image"));
	const char *accel = json_string_value(json_object_get(offer, "accel"));
	const char *network = json_string_value(json_object_get(offer, "network"));
	struct runner_guest_opts opts = {
	    .cpus = (int)json_integer_value(json_object_get(offer, "cpus")),
	    .memory_mb = (int)json_integer_value(json_object_get(offer, "memory_mb")),
	};
	bool mem_backend = json_is_true(json_object_get(offer, "memory_backend"));
	const char *template = json_string_value(json_object_get(offer, "template"));
	const char *sha = json_string_value(json_object_get(offer, "template_sha256"));
	char base[PATH_MAX];
	int rc = 0;
	if (m->type != MSG_OFFER || !image || vm_accel_parse(accel, &opts.accel) || !network ||
	    vm_network_parse(network, &opts.network))
		rc = vmci_err_set(err, EPROTO, "the sender did not offer a VM");
	if (!rc && template)
		rc = find_template_disk(template, sha, base, sizeof(base), err);
	const char *disks[VM_DISK_TARGETS] = {0};
	json_t *wd = json_object_get(offer, "workspace_disk");
	if (!rc && wd)
		rc = take_workspace(r, wd, disks, err);
	struct vm_migrate_addr addr;
	if (!rc) {
		say(r, "receiving a VM of image %s (%d vCPU, %d MiB, network %s%s%s%s)", image,
		    opts.cpus, opts.memory_mb, network, template ? ", from template " : "",
		    template ? template : "", wd ? ", with its workspace disk" : "");
		rc = runner_guest_listen_over(image, &opts, template ? base : NULL, mem_backend,
					      disks, out, &addr, err);
	}
	/* From now on a cancel here stops the move (vm_migrate_accept) or the job's command. */
	if (!rc && r->cancel)
		runner_cancel_attach(r->cancel, (*out)->vm);
	json_decref(offer);
	if (rc) {
		msg_send_text(r->fd, MSG_ERROR, err->msg);
		return rc;
	}
	rc = msg_send_json(r->fd, MSG_ADDR,
			   json_pack("{s:s, s:s}", "nbd", addr.nbd, "stream", addr.stream));
	if (rc)
		return vmci_err_errno(err, -rc, "cannot answer the sender");
	return 0;
}

/*
 * Waits for MOVED and accepts the VM; fills *state. A cancel meanwhile
 * gives the move up at once (the sender's migration fails when this
 * side's QEMU stops, and the job goes on there).
 */
static int take_vm(struct receiver *r, struct runner_guest *g, struct vm_agent_state *state,
		   struct vmci_err *err)
{
	for (;;) {
		if (cancelled(r)) {
			int rc = vmci_err_set(err, ECANCELED, "the receiver was cancelled");
			msg_send_text(r->fd, MSG_ERROR, err->msg);
			return rc;
		}
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		if (poll(&p, 1, 200) > 0)
			break;
	}
	struct msg m = {0};
	int rc = msg_recv(r->fd, &m);
	if (rc) {
		buf_free(&m.body);
		return vmci_err_errno(err, -rc, "the sender went away before the move");
	}
	if (m.type == MSG_GIVEUP) {
		rc = vmci_err_set(err, EIO, "the sender gave up the move: %s", buf_cstr(&m.body));
		buf_free(&m.body);
		return rc;
	}
	json_t *moved = msg_json(&m);
	buf_free(&m.body);
	state->guest_seq = (uint64_t)json_integer_value(json_object_get(moved, "guest_seq"));
	state->stream = (uint32_t)json_integer_value(json_object_get(moved, "stream"));
	json_decref(moved);
	if (!moved)
		return vmci_err_set(err, EPROTO, "the sender sent no agent state");
	rc = cancelled(r) ? vmci_err_set(err, ECANCELED, "the receiver was cancelled")
			  : vm_migrate_accept(g->vm, state, 0, err);
	if (rc) {
		msg_send_text(r->fd, MSG_ERROR, err->msg);
		return rc;
	}
	if (msg_send(r->fd, MSG_ACCEPTED, NULL, 0))
		return vmci_err_set(err, EPIPE, "the sender went away as the VM arrived");
	return 0;
}

static int listen_on(const char *path, struct vmci_err *err)
{
	struct sockaddr_un sa;
	int fd = unix_socket(path, &sa, err);
	if (fd < 0)
		return fd;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1)) {
		int rc = vmci_err_errno(err, errno, "cannot listen on %s", path);
		close(fd);
		return rc;
	}
	return fd;
}

/* Accepts the sender, looking for a cancel a few times a second. */
static int accept_sender(struct receiver *r, int lfd, const char *path, struct vmci_err *err)
{
	for (;;) {
		if (cancelled(r))
			return vmci_err_set(err, ECANCELED, "cancelled before a VM arrived");
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		r->fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (r->fd >= 0)
			return 0;
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			return vmci_err_errno(err, errno, "cannot accept on %s", path);
	}
}

int runner_receive(const char *path, void (*say_fn)(void *ctx, const char *line), void *ctx,
		   struct runner_cancel *cancel, struct vmci_err *err)
{
	int lfd = listen_on(path, err);
	if (lfd < 0)
		return lfd;
	struct receiver r = {.fd = -1, .say = say_fn, .ctx = ctx, .cancel = cancel};
	say(&r, "waiting for a VM on %s", path);
	int rc = accept_sender(&r, lfd, path, err);
	close(lfd);
	unlink(path);
	if (rc)
		return rc;

	struct runner_guest *g = NULL;
	struct vm_agent_state state = {0};
	struct msg m = {0};
	rc = msg_recv(r.fd, &m);
	if (rc)
		rc = vmci_err_errno(err, -rc, "the sender went away before offering a VM");
	if (!rc)
		rc = take_offer(&r, &m, &g, err);
	if (!rc)
		rc = take_vm(&r, g, &state, err);
	if (!rc)
		say(&r, "the VM runs here now (QEMU %d)", (int)vm_pid(g->vm));
	/* The workspace disk came with the VM: its overlay is this side's now. */
	if (!rc && r.ws.image[0]) {
		r.ws.attached = true;
		runner_guest_disk_path(g, RUNNER_WS_DISK_TARGET, r.ws.overlay,
				       sizeof(r.ws.overlay));
	}
	bool told = false, ended = false;
	while (!rc) {
		if (msg_recv(r.fd, &m))
			break;
		if ((ended = m.type == MSG_END))
			break;
		if (cancelled(&r) && !told) {
			say(&r, "cancelled: the job's commands end here");
			told = true;
		}
		int served;
		if (m.type == MSG_CANCEL) {
			r.sender_cancelled =
			    true; /* the commands asked for from now on end at once */
			continue;
		}
		if (m.type == MSG_RESUME || m.type == MSG_EXEC)
			served = serve_command(&r, g->vm, state.stream, &m);
		else if (m.type == MSG_PUT)
			served = serve_put(&r, g->vm, &m);
		else if (m.type == MSG_GET)
			served = serve_get(&r, g, &m);
		else if (m.type == MSG_PING)
			served = serve_ping(&r, g->vm, &m);
		else {
			rc = vmci_err_set(err, EPROTO, "an unexpected message from the sender");
			break;
		}
		if (served == -EPIPE)
			break; /* the sender is gone: nothing more to do for it */
	}
	buf_free(&m.body);
	if (r.fd >= 0)
		close(r.fd);
	/* At the job's end, as the executor does it: unmounted, removed, deleted. */
	if (ended && r.ws.attached) {
		struct vmci_err why = {0};
		say(&r, "removing the workspace disk");
		if (runner_workspace_unmount(g->vm, &r.ws, &why))
			say(&r, "cannot remove the workspace disk: %s", why.msg);
	}
	if (g)
		say(&r, "stopping the VM");
	if (cancel)
		runner_cancel_detach(cancel);
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	return rc;
}
