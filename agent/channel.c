/*
 * The channel to the host: the transport, frames in, retained frames out.
 *
 * Transport. In a VM it is the virtio-serial port named AGENT_PORT_NAME.
 * While no host is connected to the port's chardev, the port reads EOF
 * and polls POLLHUP (always, whatever is asked), and writes would block;
 * so on a hang-up the channel stops writing, takes the port out of the
 * poll set and probes it every PROBE_MS instead. For testing on a host,
 * --channel names a unix socket (connected to, and reconnected after a
 * hang-up) or a device.
 *
 * Input. Bytes are framed here and handed to the protocol decoder one
 * frame at a time, so that the raw bytes stay available for a resync:
 * until a HELLO starts a connection the input is scanned for HELLO's
 * fixed header, which cannot be mistaken for anything in a well-framed
 * stream (see agent_channel in agent.h for the error policy).
 *
 * Output. Sequenced frames stay on a list until ACKed; a cursor marks the
 * next one to write. A HELLO moves the cursor back to the oldest frame.
 * Bytes that must precede the cursor (the rest of a frame cut by a
 * HELLO, then HELLO_REPLY) go through the `first` buffer.
 */
#include "agent/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PROBE_MS       80   /* how often an absent host is looked for */
#define ERROR_DELAY_MS 1500 /* a HELLO within this cancels an ERROR (hosts retry each second) */
#define STALL_MS       2000 /* an incomplete frame with a HELLO behind it this long: resync */
#define OPEN_WAIT_MS   10000
#define READ_CHUNK     (64 * 1024)
#define HELLO_SIZE     (AGENT_HEADER_SIZE + 12)
#define SIG_SIZE       12 /* magic, len 12, type HELLO, flags 0 */
#define FRAME_OVERHEAD 64 /* counted per retained frame: its node and malloc's share */

static const uint8_t hello_sig[SIG_SIZE] = {0x56, 0x4d, 0x43,	     0x49, 12, 0,
					    0,	  0,	AGENT_HELLO, 0,	   0,  0};

/* ---- opening -------------------------------------------------------------- */

/* Returns the /dev path of the virtio port named AGENT_PORT_NAME, or NULL. */
static char *find_port(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return NULL;
	char *found = NULL;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[512], name[128] = "";
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f))
			name[strcspn(name, "\n")] = 0;
		fclose(f);
		if (!strcmp(name, AGENT_PORT_NAME) && asprintf(&found, "/dev/%s", de->d_name) < 0)
			found = NULL;
	}
	closedir(d);
	return found;
}

/* Connects a socket channel; returns 0 or -errno. */
static int connect_socket(struct agent_channel *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(c->path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, c->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;
		close(fd);
		return -e;
	}
	c->fd = fd;
	return 0;
}

int agent_channel_open(struct agent_channel *c, const char *path)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->next_seq = 1;
	agent_decoder_init(&c->dec, false);
	uint64_t deadline = agent_now_ms() + OPEN_WAIT_MS;
	struct stat st;
	for (;;) {
		if (path && stat(path, &st) == 0) {
			c->path = strdup(path);
			break;
		}
		if (!path && (c->path = find_port()) && stat(c->path, &st) == 0)
			break;
		free(c->path);
		c->path = NULL;
		if (agent_now_ms() >= deadline) {
			agent_log("no %s appeared within %d s%s",
				  path ? path : "virtio port " AGENT_PORT_NAME, OPEN_WAIT_MS / 1000,
				  path ? ""
				       : " (is virtio_console loaded and the port configured?)");
			return -ENOENT;
		}
		usleep(50 * 1000);
	}
	if (!c->path)
		return -ENOMEM;
	c->socket = S_ISSOCK(st.st_mode);
	if (c->socket) {
		/* The host may not listen yet: an absent host is probed for. */
		c->present = connect_socket(c) == 0;
		return 0;
	}
	c->fd = open(c->path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (c->fd < 0) {
		int e = errno;
		agent_log("cannot open %s: %s", c->path, strerror(e));
		return -e;
	}
	c->present = true; /* the first read or poll tells otherwise */
	return 0;
}

/* ---- output ----------------------------------------------------------------- */

static int first_append(struct agent_channel *c, const uint8_t *data, size_t len)
{
	if (c->first_off > 0) {
		memmove(c->first, c->first + c->first_off, c->first_len - c->first_off);
		c->first_len -= c->first_off;
		c->first_off = 0;
	}
	if (c->first_len + len > c->first_cap) {
		size_t cap = c->first_cap ? c->first_cap : 4096;
		while (cap < c->first_len + len)
			cap *= 2;
		uint8_t *p = realloc(c->first, cap);
		if (!p)
			return -ENOMEM;
		c->first = p;
		c->first_cap = cap;
	}
	memcpy(c->first + c->first_len, data, len);
	c->first_len += len;
	return 0;
}

/* A frame half written must be completed before anything else is: moves its rest to first. */
static void cursor_detach(struct agent_channel *c)
{
	if (c->cursor && c->cursor_off > 0) {
		if (first_append(c, c->cursor->data + c->cursor_off,
				 c->cursor->len - c->cursor_off))
			agent_fatal("out of memory keeping a frame in order");
		c->max_written = c->cursor->seq > c->max_written ? c->cursor->seq : c->max_written;
		c->cursor = c->cursor->next;
		c->cursor_off = 0;
	}
}

/* Frees the retained frames with seq <= upto. */
static void release(struct agent_channel *c, uint64_t upto)
{
	while (c->head && c->head->seq <= upto) {
		struct agent_outframe *f = c->head;
		if (f == c->cursor) {
			cursor_detach(c);
			if (c->cursor == f)
				c->cursor = f->next;
		}
		c->head = f->next;
		if (!c->head)
			c->tail = NULL;
		c->retained -= f->len + FRAME_OVERHEAD;
		free(f->data);
		free(f);
	}
}

struct agent_writer *agent_channel_begin(struct agent_channel *c)
{
	agent_writer_begin(&c->w);
	return &c->w;
}

int agent_channel_queue(struct agent_channel *c, uint16_t type, uint32_t stream)
{
	long n = agent_writer_finish(&c->w, type, stream, c->next_seq);
	struct agent_outframe *f = n < 0 ? NULL : malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	uint8_t *fit = realloc(c->w.buf, (size_t)n); /* the writer's buffer has room to spare */
	if (fit)
		c->w.buf = fit;
	*f = (struct agent_outframe){.seq = c->next_seq++, .len = (size_t)n, .data = c->w.buf};
	c->w.buf = NULL; /* the frame owns the buffer now */
	c->w.cap = c->w.len = 0;
	if (c->tail)
		c->tail->next = f;
	else
		c->head = f;
	c->tail = f;
	if (!c->cursor) {
		c->cursor = f;
		c->cursor_off = 0;
	}
	c->retained += f->len + FRAME_OVERHEAD;
	return 0;
}

int agent_channel_output(struct agent_channel *c, uint16_t type, uint32_t stream, const void *data,
			 size_t len)
{
	struct agent_outframe *t = c->tail;
	/*
	 * The newest frame takes more of the same output while no host has
	 * seen any of it: fewer, fuller frames when the host is slow.
	 */
	if (t && t->seq > c->max_written && !(t == c->cursor && c->cursor_off > 0) &&
	    t->len - AGENT_HEADER_SIZE + len <= AGENT_DATA_CHUNK) {
		struct agent_header h;
		char why[8];
		agent_header_decode(t->data, true, &h, why, sizeof(why));
		uint8_t *p =
		    h.type == type && h.stream == stream ? realloc(t->data, t->len + len) : NULL;
		if (p) {
			memcpy(p + t->len, data, len);
			t->data = p;
			t->len += len;
			h.len += (uint32_t)len;
			agent_header_encode(&h, p);
			c->retained += len;
			return 0;
		}
	}
	agent_put_bytes(agent_channel_begin(c), data, len);
	return agent_channel_queue(c, type, stream);
}

int agent_channel_queue_unsequenced(struct agent_channel *c, uint16_t type, uint32_t stream)
{
	long n = agent_writer_finish(&c->w, type, stream, 0);
	if (n < 0)
		return -ENOMEM;
	return first_append(c, c->w.buf, (size_t)n);
}

void agent_channel_result(struct agent_channel *c, uint32_t stream, int status, const char *msg)
{
	agent_result_encode(agent_channel_begin(c), status, msg);
	if (agent_channel_queue(c, AGENT_RESULT, stream))
		agent_log("out of memory: lost the result of stream %u", stream);
}

bool agent_channel_want_write(const struct agent_channel *c)
{
	if (!c->present || c->fd < 0)
		return false;
	return c->first_off < c->first_len || (c->cursor && c->cursor->seq <= c->write_limit);
}

/* The host went away: keep every frame, forget the connection. */
static void host_lost(struct agent_channel *c, uint64_t now)
{
	c->present = false;
	c->probe_at = now + PROBE_MS;
	if (c->socket && c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->in_off = c->in_len = c->frame_len = 0;
	agent_decoder_reset(&c->dec);
	c->synced = false;
	c->partial_since = 0;
	c->err_pending = c->err_sent = false;
	c->first_off = c->first_len = 0;
	c->cursor_off = 0; /* a HELLO restarts from the oldest frame anyway */
	c->write_limit = 0;
}

void agent_channel_flush(struct agent_channel *c, uint64_t now)
{
	while (c->present && c->fd >= 0) {
		const uint8_t *p;
		size_t len;
		if (c->first_off < c->first_len) {
			p = c->first + c->first_off;
			len = c->first_len - c->first_off;
		} else if (c->cursor && c->cursor->seq <= c->write_limit) {
			p = c->cursor->data + c->cursor_off;
			len = c->cursor->len - c->cursor_off;
		} else {
			break;
		}
		ssize_t n = c->socket ? send(c->fd, p, len, MSG_NOSIGNAL) : write(c->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) { /* EPIPE, EIO...: the host is gone; retransmission covers it */
			host_lost(c, now);
			break;
		}
		if (c->first_off < c->first_len) {
			c->first_off += (size_t)n;
			if (c->first_off == c->first_len)
				c->first_off = c->first_len = 0;
		} else if ((c->cursor_off += (size_t)n) == c->cursor->len) {
			if (c->cursor->seq > c->max_written)
				c->max_written = c->cursor->seq;
			c->cursor = c->cursor->next;
			c->cursor_off = 0;
		}
	}
}

uint64_t agent_channel_resume(struct agent_channel *c, uint64_t resume_after)
{
	/* A host claiming more than was ever sent talks to an older agent: take what exists. */
	release(c, resume_after < c->max_written ? resume_after : c->max_written);
	cursor_detach(c);
	c->cursor = c->head;
	c->cursor_off = 0;
	c->write_limit = UINT64_MAX;
	c->synced = true;
	c->err_pending = c->err_sent = false;
	return c->head ? c->head->seq : c->next_seq;
}

int agent_channel_ack(struct agent_channel *c, uint64_t seq)
{
	if (seq > c->max_written)
		return -1;
	release(c, seq);
	return 0;
}

/* ---- input ------------------------------------------------------------------ */

/* Stops writing at a frame boundary; what is queued waits for a new HELLO. */
static void stop_writing(struct agent_channel *c)
{
	if (c->cursor && c->cursor_off > 0)
		c->write_limit = c->cursor->seq;
	else
		c->write_limit = c->cursor ? c->cursor->seq - 1 : c->next_seq - 1;
}

static void schedule_error(struct agent_channel *c, int code, const char *msg, uint64_t now)
{
	if (c->err_pending || c->err_sent || !c->present)
		return;
	c->err_pending = true;
	c->err_at = now + ERROR_DELAY_MS;
	c->err_code = code;
	snprintf(c->err_msg, sizeof(c->err_msg), "%s", msg);
}

/* Drops the connection state and rescans from skip bytes past the current frame's start. */
static void desync(struct agent_channel *c, int code, const char *msg, size_t skip, uint64_t now)
{
	if (c->synced)
		stop_writing(c);
	c->synced = false;
	schedule_error(c, code, msg, now);
	c->in_off += skip;
	c->frame_len = 0;
	c->partial_since = 0;
}

void agent_channel_reject(struct agent_channel *c, int code, const char *msg, uint64_t now)
{
	desync(c, code, msg, 1, now);
}

static const uint8_t *find_hello(const uint8_t *p, size_t len)
{
	return memmem(p, len, hello_sig, SIG_SIZE);
}

/* Before a HELLO: skips to the next HELLO header. Returns 1 with the HELLO, else 0. */
static int next_unsynced(struct agent_channel *c, struct agent_frame *f, uint64_t now)
{
	for (;;) {
		size_t avail = c->in_len - c->in_off;
		if (avail == 0)
			return 0;
		const uint8_t *p = c->in + c->in_off;
		const uint8_t *h = find_hello(p, avail);
		size_t skip = h			     ? (size_t)(h - p)
			      : avail > SIG_SIZE - 1 ? avail - (SIG_SIZE - 1)
						     : 0;
		struct agent_header hdr;
		char why[160];
		if (skip > 0 && avail >= AGENT_HEADER_SIZE &&
		    agent_header_decode(p, false, &hdr, why, sizeof(why)) == 0) {
			snprintf(why, sizeof(why), "%s frame before hello",
				 agent_type_name(hdr.type));
			schedule_error(c, EPROTO, why, now);
		}
		c->in_off += skip;
		if (!h || c->in_len - c->in_off < HELLO_SIZE)
			return 0;
		/* A fresh decoder: HELLO sets the sequence the host continues with. */
		agent_decoder_reset(&c->dec);
		c->dec.expect_seq = 0;
		if (agent_decoder_feed(&c->dec, c->in + c->in_off, HELLO_SIZE))
			agent_fatal("out of memory reading the channel");
		if (agent_decoder_next(&c->dec, f, why, sizeof(why)) == 1) {
			c->frame_len = HELLO_SIZE;
			return 1;
		}
		c->in_off++; /* a HELLO with seq 0: not one */
	}
}

int agent_channel_next(struct agent_channel *c, struct agent_frame *f, uint64_t now)
{
	c->in_off += c->frame_len; /* the frame returned last time is done */
	c->frame_len = 0;
	for (;;) {
		if (!c->synced)
			return next_unsynced(c, f, now);
		size_t avail = c->in_len - c->in_off;
		if (avail == 0) {
			c->partial_since = 0;
			return 0;
		}
		struct agent_header h;
		char why[160];
		if (avail >= AGENT_HEADER_SIZE &&
		    agent_header_decode(c->in + c->in_off, false, &h, why, sizeof(why))) {
			desync(c, EPROTO, why, 1, now);
			continue;
		}
		if (avail < AGENT_HEADER_SIZE || avail < AGENT_HEADER_SIZE + (size_t)h.len) {
			if (!c->partial_since)
				c->partial_since = now;
			return 0;
		}
		size_t len = AGENT_HEADER_SIZE + h.len;
		agent_decoder_reset(&c->dec);
		if (agent_decoder_feed(&c->dec, c->in + c->in_off, len))
			agent_fatal("out of memory reading the channel");
		if (agent_decoder_next(&c->dec, f, why, sizeof(why)) != 1) {
			desync(c, EPROTO, why, 1, now);
			continue;
		}
		c->frame_len = len;
		c->partial_since = 0;
		return 1;
	}
}

/* Reads what the transport has. */
static void read_input(struct agent_channel *c, uint64_t now)
{
	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_len + READ_CHUNK > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap * 2 : 2 * READ_CHUNK;
		while (cap < c->in_len + READ_CHUNK)
			cap *= 2;
		uint8_t *p = realloc(c->in, cap);
		if (!p)
			agent_fatal("out of memory reading the channel");
		c->in = p;
		c->in_cap = cap;
	}
	ssize_t n = read(c->fd, c->in + c->in_len, READ_CHUNK);
	if (n > 0 && c->present) {
		c->in_len += (size_t)n;
	} else if (n > 0) {
		/* Left over from a host that is gone: never answered. */
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		if (c->present)
			host_lost(c, now);
	}
}

/* ---- polling ------------------------------------------------------------------ */

static void lower(int *timeout_ms, uint64_t at, uint64_t now)
{
	uint64_t wait = at > now ? at - now : 0;
	if (*timeout_ms < 0 || wait < (uint64_t)*timeout_ms)
		*timeout_ms = (int)wait;
}

void agent_channel_poll_setup(struct agent_channel *c, struct pollfd *pfd, bool reading,
			      uint64_t now, int *timeout_ms)
{
	*pfd = (struct pollfd){.fd = -1};
	if (!c->present || c->fd < 0) {
		lower(timeout_ms, c->probe_at, now);
		return;
	}
	pfd->fd = c->fd;
	pfd->events = (reading ? POLLIN : 0) | (agent_channel_want_write(c) ? POLLOUT : 0);
	if (!reading)
		c->partial_since = 0; /* a frame cut by our own pause is not stalled */
	if (c->err_pending)
		lower(timeout_ms, c->err_at, now);
	if (c->partial_since)
		lower(timeout_ms, c->partial_since + STALL_MS, now);
}

void agent_channel_poll_done(struct agent_channel *c, short revents, uint64_t now)
{
	if (c->fd < 0 || !c->present)
		return;
	/* A hang-up or error is confirmed by read() returning 0 or failing. */
	if (revents & (POLLIN | POLLHUP | POLLERR))
		read_input(c, now);
	if ((revents & POLLOUT) && c->present)
		agent_channel_flush(c, now);
}

/* While the host is absent: is it back? */
static void probe(struct agent_channel *c, uint64_t now)
{
	c->probe_at = now + PROBE_MS;
	if (c->socket) {
		c->present = connect_socket(c) == 0;
		return;
	}
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
	if (poll(&pfd, 1, 0) < 0)
		return;
	if (!(pfd.revents & (POLLHUP | POLLERR)))
		c->present = true; /* what it reads now is the new host's */
	if (pfd.revents & POLLIN)
		read_input(c, now); /* while still absent: stale bytes, dropped */
}

void agent_channel_timers(struct agent_channel *c, uint64_t now)
{
	if (!c->present && now >= c->probe_at)
		probe(c, now);
	if (c->err_pending && now >= c->err_at) {
		c->err_pending = false;
		if (c->present && !c->synced) {
			agent_result_encode(agent_channel_begin(c), c->err_code, c->err_msg);
			if (agent_channel_queue(c, AGENT_ERROR, 0) == 0) {
				c->write_limit = c->next_seq - 1;
				c->err_sent = true;
			}
			agent_log("protocol error from the host: %s", c->err_msg);
		}
	}
	/*
	 * A frame that never completes while a HELLO waits behind it is the
	 * rest of a frame from a connection that ended unseen (a migration):
	 * start over at the HELLO.
	 */
	if (c->synced && c->partial_since && now >= c->partial_since + STALL_MS) {
		size_t avail = c->in_len - c->in_off;
		const uint8_t *h = avail > 1 ? find_hello(c->in + c->in_off + 1, avail - 1) : NULL;
		if (h) {
			agent_log("resynchronising on a new hello");
			stop_writing(c);
			c->synced = false;
			c->in_off = (size_t)(h - c->in);
		}
		c->partial_since = 0;
	}
}
