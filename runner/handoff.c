/*
 * Handing a running job's VM to another process, and running the job's
 * commands there (see runner/handoff.h).
 *
 * The two processes talk over one unix stream socket in messages of a
 * type byte, a u32 length (little-endian) and a payload, JSON unless
 * said otherwise:
 *
 *   sender -> receiver                 receiver -> sender
 *   OFFER  {image, cpus, memory_mb,    ADDR  {nbd, stream}: a destination
 *          accel, network,                   waits (or ERROR text)
 *          memory_backend,
 *          [template, template_sha256]}
 *   (the VM moves: vm_migrate_to)
 *   MOVED  {guest_seq, stream}         ACCEPTED: the guest runs there (or
 *   or GIVEUP text                           ERROR text: resume at home)
 *   RESUME {} / EXEC {argv, env, cwd,  OUT1 / OUT2 bytes..., then
 *          timeout_ms}                       EXIT {kind, code, duration_ms}
 *                                            or FAILED text (the VM failed)
 *   PUT {dir}, DATA tar                DONE {code, msg}
 *   GET {path}                         DATA bytes..., then DONE {code, msg}
 *   PING {timeout_ms}                  DONE {code, msg}
 *   END                                (the receiver stops the VM)
 *
 * A template's disk is named by its place under the templates directory
 * (TEMPLATES/<image digest>/<shape>) and its sha256: the receiver's copy
 * must be the very same file, as the source's overlay holds only what the
 * guest wrote over it. Files travel inside the messages (a tar up to
 * MSG_MAX for a PUT; a GET's stream in DATA chunks), never through a path
 * both sides would have to see.
 */
#include "runner/handoff.h"
#include "runner/sched.h"
#include "runner/template.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum msg_type {
	MSG_OFFER = 'O',
	MSG_ADDR = 'A',
	MSG_MOVED = 'M',
	MSG_GIVEUP = 'G',
	MSG_ACCEPTED = 'K',
	MSG_ERROR = 'E',
	MSG_RESUME = 'R',
	MSG_EXEC = 'X',
	MSG_OUT1 = '1',
	MSG_OUT2 = '2',
	MSG_EXIT = 'Z',
	MSG_FAILED = 'F',
	MSG_END = 'Q',
	MSG_PUT = 'P',
	MSG_GET = 'T',
	MSG_PING = 'I',
	MSG_DATA = 'D',
	MSG_DONE = 'N',
};

#define DATA_CHUNK (256u << 10) /* a GET's stream, per DATA message */

/* An exec request is at most the agent's frame; a put, a script of the largest size as a tar. */
#define MSG_MAX (2u << 20)

struct msg {
	int type;
	struct buf body; /* NUL-terminated (buf_cstr) */
};

static int msg_send(int fd, int type, const void *data, size_t len)
{
	uint8_t h[5] = {(uint8_t)type, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
			(uint8_t)(len >> 24)};
	int rc = io_write_all(fd, h, sizeof(h));
	return rc ? rc : len ? io_write_all(fd, data, len) : 0;
}

static int msg_send_text(int fd, int type, const char *text)
{
	return msg_send(fd, type, text, strlen(text));
}

/* Sends json (stolen). */
static int msg_send_json(int fd, int type, json_t *json)
{
	char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
	json_decref(json);
	if (!text)
		return -ENOMEM;
	int rc = msg_send_text(fd, type, text);
	free(text);
	return rc;
}

static int read_full(int fd, void *p, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = read(fd, (char *)p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		got += (size_t)n;
	}
	return 0;
}

/* Reads one message into m (its body replaced). -EPIPE: the peer went away. */
static int msg_recv(int fd, struct msg *m)
{
	uint8_t h[5];
	int rc = read_full(fd, h, sizeof(h));
	if (rc)
		return rc;
	uint32_t len =
	    (uint32_t)h[1] | (uint32_t)h[2] << 8 | (uint32_t)h[3] << 16 | (uint32_t)h[4] << 24;
	if (len > MSG_MAX)
		return -EPROTO;
	m->type = h[0];
	m->body.len = 0;
	if (buf_reserve(&m->body, len + 1))
		return -ENOMEM;
	rc = read_full(fd, m->body.data, len);
	if (rc)
		return rc;
	m->body.len = len;
	m->body.data[len] = 0;
	return 0;
}

static json_t *msg_json(const struct msg *m)
{
	return json_loadb((const char *)m->body.data, m->body.len, 0, NULL);
}

/* A NULL-terminated copy of a JSON array of strings (NULL when not one). */
static char **strv_of(json_t *array)
{
	size_t n = json_array_size(array);
	char **v = calloc(n + 1, sizeof(*v));
	for (size_t i = 0; v && i < n; i++) {
		const char *s = json_string_value(json_array_get(array, i));
		v[i] = strdup(s ? s : "");
		if (!v[i]) {
			for (size_t j = 0; j < i; j++)
				free(v[j]);
			free(v);
			return NULL;
		}
	}
	return v;
}

static void strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

static json_t *json_strv(const char *const *v)
{
	json_t *a = json_array();
	for (const char *const *p = v; a && p && *p; p++)
		json_array_append_new(a, json_string(*p));
	return a;
}

/* ---- the receiver ------------------------------------------------------------------- */

struct receiver {
	int fd;
	void (*say)(void *ctx, const char *line);
	void *ctx;
	struct runner_cancel *cancel; /* may be NULL */
};

static bool cancelled(const struct receiver *r)
{
	return r->cancel && runner_cancel_requested(r->cancel);
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
	/* A sender gone is seen at the next read; the command ends on its own. */
	msg_send(r->fd, fd == 2 ? MSG_OUT2 : MSG_OUT1, data, len);
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
	else if (m->type == MSG_RESUME)
		rc = vm_exec_resume(vm, stream, &o, &res, &err);
	else if (!argv[0])
		rc = vmci_err_set(&err, EPROTO, "an exec request without a command");
	else
		rc = vm_exec(vm, &o, &res, &err);
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
	struct vm_migrate_addr addr;
	if (!rc) {
		say(r, "receiving a VM of image %s (%d vCPU, %d MiB, network %s%s%s)", image,
		    opts.cpus, opts.memory_mb, network, template ? ", from template " : "",
		    template ? template : "");
		rc = runner_guest_listen_over(image, &opts, template ? base : NULL, mem_backend,
					      out, &addr, err);
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

/* Waits for MOVED and accepts the VM; fills *state. */
static int take_vm(struct receiver *r, struct runner_guest *g, struct vm_agent_state *state,
		   struct vmci_err *err)
{
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

/* A stream socket and path's address in sa: the fd, or an error (a path too long for it). */
static int unix_socket(const char *path, struct sockaddr_un *sa, struct vmci_err *err)
{
	*sa = (struct sockaddr_un){.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa->sun_path))
		return vmci_err_set(err, ENAMETOOLONG, "socket path too long: %s", path);
	memcpy(sa->sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot make a socket");
	return fd;
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
	bool told = false;
	while (!rc) {
		if (msg_recv(r.fd, &m) || m.type == MSG_END)
			break;
		if (cancelled(&r) && !told) {
			say(&r, "cancelled: the job's commands end here");
			told = true;
		}
		int served;
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
	if (g)
		say(&r, "stopping the VM");
	if (cancel)
		runner_cancel_detach(cancel);
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	return rc;
}

/* ---- the sender ------------------------------------------------------------------------- */

struct runner_remote {
	int fd;
	struct msg m;
};

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

int runner_remote_move(const char *path, const char *image, struct runner_guest *g,
		       const struct runner_guest_opts *shape, struct runner_cancel *cancel,
		       struct runner_remote **out, struct vmci_err *err)
{
	*out = NULL;
	struct runner_remote *r = calloc(1, sizeof(*r));
	if (!r)
		return vmci_err_set(err, ENOMEM, "out of memory");
	r->fd = connect_to(path, err);
	if (r->fd < 0) {
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
	int rc = msg_send_json(r->fd, MSG_RESUME,
			       json_pack("{s:[], s:[], s:I}", "argv", "env", "timeout_ms",
					 (json_int_t)opts->timeout_ms));
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
	int rc = msg_send_json(r->fd, MSG_EXEC, req);
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
	if (!rc && (msg_send_json(r->fd, MSG_PUT, json_pack("{s:s}", "dir", guest_dir)) ||
		    msg_send(r->fd, MSG_DATA, tar.data, tar.len)))
		rc = vmci_err_set(err, EPIPE, "the receiver of the VM went away");
	buf_free(&tar);
	if (!rc)
		rc = expect(r, MSG_DONE, "putting files into the VM", err);
	return rc ? rc : remote_done(r, err);
}

int runner_remote_get_tar(struct runner_remote *r, const char *guest_path, int fd,
			  struct vmci_err *err)
{
	if (msg_send_json(r->fd, MSG_GET, json_pack("{s:s}", "path", guest_path)))
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
	if (msg_send_json(r->fd, MSG_PING, json_pack("{s:i}", "timeout_ms", timeout_ms)))
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

void runner_remote_close(struct runner_remote *r)
{
	if (!r)
		return;
	msg_send(r->fd, MSG_END, NULL, 0);
	remote_free(r);
}
