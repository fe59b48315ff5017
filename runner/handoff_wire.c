/* The messages of a job's VM's hand-off (see runner/handoff_wire.h). */
#include "runner/handoff_wire.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int msg_send(int fd, int type, const void *data, size_t len)
{
	uint8_t h[5] = {(uint8_t)type, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
			(uint8_t)(len >> 24)};
	int rc = io_write_all(fd, h, sizeof(h));
	return rc ? rc : len ? io_write_all(fd, data, len) : 0;
}

int msg_send_text(int fd, int type, const char *text)
{
	return msg_send(fd, type, text, strlen(text));
}

/* Sends json (stolen). */
int msg_send_json(int fd, int type, json_t *json)
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
int msg_recv(int fd, struct msg *m)
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

json_t *msg_json(const struct msg *m)
{
	return json_loadb((const char *)m->body.data, m->body.len, 0, NULL);
}

/* A NULL-terminated copy of a JSON array of strings (NULL when not one). */
char **strv_of(json_t *array)
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

void strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

json_t *json_strv(const char *const *v)
{
	json_t *a = json_array();
	for (const char *const *p = v; a && p && *p; p++)
		json_array_append_new(a, json_string(*p));
	return a;
}

/* A stream socket and path's address in sa: the fd, or an error (a path too long for it). */
int unix_socket(const char *path, struct sockaddr_un *sa, struct vmci_err *err)
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
