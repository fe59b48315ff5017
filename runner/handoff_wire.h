/*
 * Private to runner/handoff.c and runner/receive.c: the messages a
 * sender and a receiver of a job's VM exchange over one unix stream
 * socket.
 *
 * The two processes talk over one unix stream socket in messages of a
 * type byte, a u32 length (little-endian) and a payload, JSON unless
 * said otherwise:
 *
 *   sender -> receiver                 receiver -> sender
 *   OFFER  {image, cpus, memory_mb,    ADDR  {nbd, stream}: a destination
 *          accel, network,                   waits (or ERROR text)
 *          memory_backend,
 *          [template, template_sha256],
 *          [workspace_disk {image, target,
 *           dir, mounted, dev, ino, size}]}
 *   (the VM moves: vm_migrate_to)
 *   MOVED  {guest_seq, stream}         ACCEPTED: the guest runs there (or
 *   or GIVEUP text                           ERROR text: resume at home)
 *   RESUME {} / EXEC {argv, env, cwd,  OUT1 / OUT2 bytes..., then
 *          timeout_ms}                       EXIT {kind, code, duration_ms}
 *                                            or FAILED text (the VM failed)
 *   PUT {dir}, DATA tar                DONE {code, msg}
 *   GET {path}                         DATA bytes..., then DONE {code, msg}
 *   PING {timeout_ms}                  DONE {code, msg}
 *   CANCEL (at any time after MOVED)   the command running and any asked
 *                                            for after end as cancelled
 *   END                                (the receiver stops the VM)
 *
 * A template's disk is named by its place under the templates directory
 * (TEMPLATES/<image digest>/<shape>) and its sha256: the receiver's copy
 * must be the very same file, as the source's overlay holds only what the
 * guest wrote over it. A workspace disk (runner/workspace.h) is named
 * by its image's path and identity (device, inode, size): the receiver
 * makes its own overlay over that very file, so only a receiver on the
 * sender's host can take such a VM. Files travel inside the messages (a tar up to
 * MSG_MAX for a PUT; a GET's stream in DATA chunks), never through a path
 * both sides would have to see.
 */
#ifndef VMCI_RUNNER_HANDOFF_WIRE_H
#define VMCI_RUNNER_HANDOFF_WIRE_H

#include "common/common.h"

#include <jansson.h>
#include <sys/un.h>

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
	MSG_CANCEL = 'C',
};

#define DATA_CHUNK (256u << 10) /* a GET's stream, per DATA message */
/* An exec request is at most the agent's frame; a put, a script of the largest size as a tar. */
#define MSG_MAX (2u << 20)

struct msg {
	int type;
	struct buf body; /* NUL-terminated (buf_cstr) */
};

/* Sends one message; 0 or a negative code (-EPIPE: the peer went away). */
int msg_send(int fd, int type, const void *data, size_t len);
int msg_send_text(int fd, int type, const char *text);
/* Sends json (stolen; NULL: -ENOMEM). */
int msg_send_json(int fd, int type, json_t *json);

/* Reads one message into m (its body replaced). -EPIPE: the peer went away. */
int msg_recv(int fd, struct msg *m);

/* m's body as JSON (NULL when it is not). */
json_t *msg_json(const struct msg *m);

/* A NULL-terminated copy of a JSON array of strings (NULL when not one); strv_free frees it. */
char **strv_of(json_t *array);
void strv_free(char **v);
/* A JSON array of the NULL-terminated v. */
json_t *json_strv(const char *const *v);

/* A stream socket and path's address in sa: the fd, or an error (a path too long for it). */
int unix_socket(const char *path, struct sockaddr_un *sa, struct vmci_err *err);

#endif
