/*
 * A QMP client: one JSON object per line over a unix socket
 * (docs/interop/qmp-spec.rst in the QEMU tree).
 *
 * Only one command is in flight at a time; while waiting for its reply,
 * events are queued and replies with other ids (from an earlier command
 * that timed out) are dropped.
 */
#include "vmcore/qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define QMP_MAX_LINE   (16u * 1024u * 1024u)
#define QMP_READ_CHUNK (64u * 1024u)
#define QMP_MAX_EVENTS 4096 /* beyond this the oldest event is dropped */

struct qmp {
	int fd;
	struct buf in;	 /* received bytes; lines start at in.data + start */
	size_t start;	 /* first byte not yet returned as a line */
	size_t scanned;	 /* bytes after start known to hold no '\n' */
	bool eof;	 /* the peer closed the socket */
	int64_t next_id; /* last id sent */
	struct qmp_msg *events;
	size_t nevents, cap;
};

/* ---- parsing --------------------------------------------------------- */

/*
 * A short printable excerpt of a bad line for an error message (the line
 * may carry bytes a guest chose).
 */
static void excerpt(const char *line, size_t len, char *out, size_t size)
{
	size_t w = 0;
	for (size_t i = 0; i < len && w + 4 < size; i++) {
		unsigned char ch = (unsigned char)line[i];
		out[w++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (w + 4 >= size) {
		memcpy(out + w, "...", 3);
		w += 3;
	}
	out[w] = 0;
}

int qmp_parse(const char *line, size_t len, struct qmp_msg *out, struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	char ex[96], why[96];
	json_error_t je;
	/* JSON_DECODE_ANY: a bare scalar is reported as "not an object". */
	json_t *root = json_loadb(line, len, JSON_DECODE_ANY, &je);
	if (!root) {
		excerpt(line, len, ex, sizeof(ex));
		excerpt(je.text, strlen(je.text), why, sizeof(why));
		return vmci_err_set(err, EPROTO,
				    "QMP sent a line that is not JSON (%s at column %d): %s", why,
				    je.column, ex);
	}
	if (!json_is_object(root)) {
		excerpt(line, len, ex, sizeof(ex));
		json_decref(root);
		return vmci_err_set(err, EPROTO, "QMP sent JSON that is not an object: %s", ex);
	}

	json_t *v;
	out->root = root;
	out->id = json_object_get(root, "id");
	if ((v = json_object_get(root, "QMP"))) {
		out->kind = QMP_GREETING;
		out->value = v;
	} else if ((v = json_object_get(root, "event"))) {
		if (!json_is_string(v))
			goto bad;
		out->kind = QMP_EVENT;
		out->event = json_string_value(v);
		out->value = json_object_get(root, "data");
	} else if ((v = json_object_get(root, "error"))) {
		json_t *cls = json_object_get(v, "class");
		json_t *desc = json_object_get(v, "desc");
		if (!json_is_string(cls) || !json_is_string(desc))
			goto bad;
		out->kind = QMP_ERROR;
		out->error_class = json_string_value(cls);
		out->error_desc = json_string_value(desc);
	} else if ((v = json_object_get(root, "return"))) {
		out->kind = QMP_RETURN;
		out->value = v;
	} else {
		goto bad;
	}
	return 0;
bad:
	excerpt(line, len, ex, sizeof(ex));
	qmp_msg_free(out);
	return vmci_err_set(
	    err, EPROTO, "QMP sent an object that is no greeting, reply, error or event: %s", ex);
}

void qmp_msg_free(struct qmp_msg *msg)
{
	if (!msg)
		return;
	json_decref(msg->root);
	memset(msg, 0, sizeof(*msg));
}

/* ---- reading lines --------------------------------------------------- */

/*
 * Returns the next complete line (without its "\n" or "\r\n") in *line
 * and *len: 1 when there is one, 0 when more bytes are needed, or a
 * negative code when the line under construction is too long.
 */
static int qmp_take_line(struct qmp *q, const char **line, size_t *len, struct vmci_err *err)
{
	char *base = (char *)q->in.data + q->start;
	size_t avail = q->in.len - q->start;
	char *nl = avail > q->scanned ? memchr(base + q->scanned, '\n', avail - q->scanned) : NULL;
	if (!nl) {
		q->scanned = avail;
		if (avail > QMP_MAX_LINE)
			return vmci_err_set(err, EPROTO, "QMP sent a line longer than %u MiB",
					    QMP_MAX_LINE >> 20);
		return 0;
	}
	size_t n = (size_t)(nl - base);
	if (n > QMP_MAX_LINE)
		return vmci_err_set(err, EPROTO, "QMP sent a line longer than %u MiB",
				    QMP_MAX_LINE >> 20);
	q->start += n + 1;
	q->scanned = 0;
	if (n > 0 && base[n - 1] == '\r')
		n--;
	*line = base;
	*len = n;
	return 1;
}

/* Reads once from the socket: 1 when bytes arrived, 0 on EAGAIN, -EPIPE on EOF. */
static int qmp_fill(struct qmp *q, struct vmci_err *err)
{
	if (q->start > 0) {
		buf_consume(&q->in, q->start);
		q->start = 0;
	}
	if (buf_reserve(&q->in, QMP_READ_CHUNK))
		return vmci_err_set(err, ENOMEM, "%s: out of memory", __func__);
	ssize_t n;
	do
		n = read(q->fd, q->in.data + q->in.len, QMP_READ_CHUNK);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == ECONNRESET) {
			q->eof = true;
			return vmci_err_set(err, EPIPE, "QEMU closed its QMP socket");
		}
		return vmci_err_errno(err, errno, "cannot read from the QMP socket");
	}
	if (n == 0) {
		q->eof = true;
		return vmci_err_set(err, EPIPE, "QEMU closed its QMP socket");
	}
	q->in.len += (size_t)n;
	return 1;
}

static int remaining_ms(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - clock_ms();
	return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : clock_ms() + timeout_ms;
}

/*
 * Reads the next message, waiting until deadline (absolute clock_ms, -1:
 * none). Returns 1 with *msg, 0 on timeout, or a negative code.
 */
static int qmp_read_msg(struct qmp *q, int64_t deadline, struct qmp_msg *msg, struct vmci_err *err)
{
	for (;;) {
		const char *line = NULL;
		size_t len = 0;
		int rc = qmp_take_line(q, &line, &len, err);
		if (rc < 0)
			return rc;
		if (rc > 0) {
			if (len == 0)
				continue;
			log_debug("QMP <- %.*s", len > 1000 ? 1000 : (int)len, line);
			rc = qmp_parse(line, len, msg, err);
			return rc < 0 ? rc : 1;
		}
		if (q->eof)
			return vmci_err_set(err, EPIPE, "QEMU closed its QMP socket");

		struct pollfd p = {.fd = q->fd, .events = POLLIN};
		int n = poll(&p, 1, remaining_ms(deadline));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vmci_err_errno(err, errno, "cannot wait for the QMP socket");
		if (n == 0)
			return 0;
		rc = qmp_fill(q, err);
		if (rc < 0)
			return rc;
	}
}

/* ---- the event queue ------------------------------------------------- */

/* Takes ownership of msg (an event). */
static void qmp_queue_event(struct qmp *q, struct qmp_msg *msg)
{
	if (q->nevents == QMP_MAX_EVENTS) {
		log_warn("QMP event queue is full; dropping event %s", q->events[0].event);
		qmp_msg_free(&q->events[0]);
		memmove(q->events, q->events + 1, --q->nevents * sizeof(*q->events));
	}
	if (q->nevents == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		struct qmp_msg *ev = realloc(q->events, cap * sizeof(*ev));
		if (!ev) {
			log_warn("out of memory; dropping QMP event %s", msg->event);
			qmp_msg_free(msg);
			return;
		}
		q->events = ev;
		q->cap = cap;
	}
	q->events[q->nevents++] = *msg;
	memset(msg, 0, sizeof(*msg));
}

/* Moves the first queued event named name (any when NULL) into *out. */
static bool qmp_dequeue_event(struct qmp *q, const char *name, struct qmp_msg *out)
{
	for (size_t i = 0; i < q->nevents; i++) {
		if (name && strcmp(q->events[i].event, name) != 0)
			continue;
		*out = q->events[i];
		memmove(q->events + i, q->events + i + 1,
			(q->nevents - i - 1) * sizeof(*q->events));
		q->nevents--;
		return true;
	}
	return false;
}

/* Queues an event, or drops a message nobody waits for. */
static void qmp_dispatch_unsolicited(struct qmp *q, struct qmp_msg *msg)
{
	if (msg->kind == QMP_EVENT) {
		qmp_queue_event(q, msg);
		return;
	}
	log_debug("ignoring an unexpected QMP %s",
		  msg->kind == QMP_GREETING ? "greeting" : "reply (its command timed out?)");
	qmp_msg_free(msg);
}

/* ---- commands -------------------------------------------------------- */

static int qmp_send(struct qmp *q, const char *text, size_t len, int64_t deadline,
		    struct vmci_err *err)
{
	while (len > 0) {
		/* MSG_NOSIGNAL: a dead QEMU is an error value, not SIGPIPE. */
		ssize_t n = send(q->fd, text, len, MSG_NOSIGNAL);
		if (n >= 0) {
			text += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET)
			return vmci_err_set(err, EPIPE, "QEMU closed its QMP socket");
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return vmci_err_errno(err, errno, "cannot write to the QMP socket");
		struct pollfd p = {.fd = q->fd, .events = POLLOUT};
		int r = poll(&p, 1, remaining_ms(deadline));
		if (r == 0)
			return vmci_err_set(err, ETIMEDOUT, "QEMU does not read its QMP socket");
		if (r < 0 && errno != EINTR)
			return vmci_err_errno(err, errno, "cannot wait for the QMP socket");
	}
	return 0;
}

/* True when msg is the reply to command id. */
static bool qmp_is_reply_to(const struct qmp_msg *msg, int64_t id)
{
	if (msg->kind != QMP_RETURN && msg->kind != QMP_ERROR)
		return false;
	if (json_is_integer(msg->id))
		return json_integer_value(msg->id) == id;
	/*
	 * QEMU leaves the id out only when it could not read the command at
	 * all; with one command in flight, such an error is ours.
	 */
	return !msg->id && msg->kind == QMP_ERROR;
}

int qmp_execute(struct qmp *q, const char *command, json_t *args, json_t **ret, int timeout_ms,
		struct vmci_err *err)
{
	if (ret)
		*ret = NULL;
	int64_t deadline = deadline_after(timeout_ms);
	int64_t id = ++q->next_id;
	json_t *cmd = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t)id);
	if (cmd && args && json_object_set_new(cmd, "arguments", args) < 0) {
		json_decref(cmd);
		cmd = NULL;
	} else if (!cmd) {
		json_decref(args);
	}
	char *text = cmd ? json_dumps(cmd, JSON_COMPACT) : NULL;
	json_decref(cmd);
	if (!text)
		return vmci_err_set(err, ENOMEM, "QMP command '%s': cannot encode it", command);
	log_debug("QMP -> %s", text);
	size_t len = strlen(text);
	text[len] = '\n'; /* replaces the NUL; len + 1 bytes are sent */
	int rc = qmp_send(q, text, len + 1, deadline, err);
	free(text);
	if (rc < 0)
		return rc;

	for (;;) {
		struct qmp_msg msg;
		rc = qmp_read_msg(q, deadline, &msg, err);
		if (rc == 0)
			return vmci_err_set(err, ETIMEDOUT,
					    "QMP command '%s' got no reply within %d ms", command,
					    timeout_ms);
		if (rc < 0) {
			vmci_err_wrap(err, "QMP command '%s'", command);
			return rc;
		}
		if (!qmp_is_reply_to(&msg, id)) {
			if (msg.kind == QMP_RETURN || msg.kind == QMP_ERROR) {
				char *other = msg.id ? json_dumps(msg.id, JSON_ENCODE_ANY) : NULL;
				log_debug(
				    "QMP: ignoring a reply with id %s while waiting for %" PRId64,
				    other ? other : "(none)", id);
				free(other);
			}
			qmp_dispatch_unsolicited(q, &msg);
			continue;
		}
		if (msg.kind == QMP_ERROR) {
			rc = vmci_err_set(err, EIO, "QMP command failed: %s: %s", msg.error_class,
					  msg.error_desc);
			qmp_msg_free(&msg);
			return rc;
		}
		if (ret)
			*ret = json_incref(msg.value);
		qmp_msg_free(&msg);
		return 0;
	}
}

/* ---- the connection -------------------------------------------------- */

int qmp_open(int fd, int timeout_ms, struct qmp **out, struct vmci_err *err)
{
	*out = NULL;
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		int rc = vmci_err_errno(err, errno, "%s: bad QMP socket", __func__);
		close(fd);
		return rc;
	}
	struct qmp *q = calloc(1, sizeof(*q));
	if (!q) {
		close(fd);
		return vmci_err_set(err, ENOMEM, "%s: out of memory", __func__);
	}
	q->fd = fd;

	int64_t deadline = deadline_after(timeout_ms);
	struct qmp_msg msg;
	int rc = qmp_read_msg(q, deadline, &msg, err);
	if (rc == 0)
		rc = vmci_err_set(err, ETIMEDOUT, "QEMU sent no QMP greeting within %d ms",
				  timeout_ms);
	if (rc < 0)
		goto fail;
	if (msg.kind != QMP_GREETING) {
		qmp_msg_free(&msg);
		rc = vmci_err_set(err, EPROTO, "QMP did not start with a greeting");
		goto fail;
	}
	json_t *version = json_object_get(json_object_get(msg.value, "version"), "qemu");
	log_debug("QMP greeting from QEMU %d.%d.%d",
		  (int)json_integer_value(json_object_get(version, "major")),
		  (int)json_integer_value(json_object_get(version, "minor")),
		  (int)json_integer_value(json_object_get(version, "micro")));
	qmp_msg_free(&msg);

	rc = qmp_execute(q, "qmp_capabilities", NULL, NULL,
			 deadline < 0 ? -1 : remaining_ms(deadline), err);
	if (rc < 0)
		goto fail;
	*out = q;
	return 0;
fail:
	qmp_close(q);
	return rc;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	close(q->fd);
	for (size_t i = 0; i < q->nevents; i++)
		qmp_msg_free(&q->events[i]);
	free(q->events);
	buf_free(&q->in);
	free(q);
}

int qmp_fd(const struct qmp *q)
{
	return q->fd;
}

int qmp_poll(struct qmp *q, struct vmci_err *err)
{
	for (;;) {
		struct qmp_msg msg;
		int rc = qmp_read_msg(q, clock_ms(), &msg, err);
		if (rc <= 0)
			return rc;
		qmp_dispatch_unsolicited(q, &msg);
	}
}

int qmp_next_event(struct qmp *q, const char *name, int timeout_ms, struct qmp_msg *event,
		   struct vmci_err *err)
{
	memset(event, 0, sizeof(*event));
	int64_t deadline = deadline_after(timeout_ms);
	for (;;) {
		if (qmp_dequeue_event(q, name, event))
			return 1;
		struct qmp_msg msg;
		int rc = qmp_read_msg(q, deadline, &msg, err);
		if (rc <= 0)
			return rc;
		qmp_dispatch_unsolicited(q, &msg);
	}
}
