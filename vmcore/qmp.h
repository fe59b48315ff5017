/*
 * Private to vmcore: a QMP client (JSON over a unix socket).
 *
 * QMP sends one JSON object per line: a greeting {"QMP": ...}, replies
 * {"return": ...} or {"error": {"class", "desc"}}, and asynchronous events
 * {"event", "data", "timestamp"}. Commands carry an "id" so a reply is
 * matched to its command; events that arrive meanwhile are queued.
 */
#ifndef VMCI_VMCORE_QMP_H
#define VMCI_VMCORE_QMP_H

#include <jansson.h>

#include "common/common.h"

enum qmp_msg_kind { QMP_GREETING, QMP_RETURN, QMP_ERROR, QMP_EVENT };

/* One parsed message. Owns root; other fields point into it. */
struct qmp_msg {
	enum qmp_msg_kind kind;
	json_t *root;
	json_t *id;		 /* "id" of a reply, or NULL */
	json_t *value;		 /* return value, event data (NULL if none), or greeting "QMP" */
	const char *event;	 /* event name */
	const char *error_class; /* error class */
	const char *error_desc;	 /* error description */
};

/*
 * Parses one line. Returns 0, or a negative code with err when the line is
 * not JSON, not an object, or not one of the four kinds.
 */
int qmp_parse(const char *line, size_t len, struct qmp_msg *out, struct vmci_err *err);
void qmp_msg_free(struct qmp_msg *msg);

struct qmp;

/*
 * Takes ownership of a connected socket fd (closed on failure too, and set
 * non-blocking): reads the greeting and negotiates capabilities
 * (qmp_capabilities) within timeout_ms.
 *
 * In every function here a negative timeout_ms means no limit. A line
 * that is not a valid QMP message, or longer than 16 MiB, is -EPROTO.
 */
int qmp_open(int fd, int timeout_ms, struct qmp **out, struct vmci_err *err);
void qmp_close(struct qmp *q);
int qmp_fd(const struct qmp *q);

/*
 * Sends {"execute": command, "arguments": args, "id": N} (args may be NULL;
 * the reference is stolen) and waits up to timeout_ms for the reply. On
 * success *ret (may be NULL) receives a new reference to the return value.
 * A QMP error becomes -EIO with "QMP command failed: CLASS: DESC".
 * EOF (QEMU exited) is -EPIPE; a timeout is -ETIMEDOUT. Events that arrive
 * meanwhile are queued; replies with another id (from a command that timed
 * out earlier) are dropped.
 */
int qmp_execute(struct qmp *q, const char *command, json_t *args, json_t **ret, int timeout_ms,
		struct vmci_err *err);

/*
 * Reads what is available without blocking and queues events. Returns 0,
 * or -EPIPE once QEMU closed the socket (events queued before that stay
 * available to qmp_next_event), or another negative code.
 */
int qmp_poll(struct qmp *q, struct vmci_err *err);

/*
 * Returns the next queued event (waiting up to timeout_ms; 0: do not wait)
 * named name, or any event when name is NULL; earlier events of other
 * names stay queued. Returns 1 with *event (the caller frees it with
 * qmp_msg_free), 0 on timeout, negative on error.
 */
int qmp_next_event(struct qmp *q, const char *name, int timeout_ms, struct qmp_msg *event,
		   struct vmci_err *err);

#endif
