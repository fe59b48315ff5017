/*
 * The event loop and the protocol's operations.
 *
 * One poll() covers a signalfd for SIGCHLD, the channel, and every pipe
 * of every running operation; timers (command timeouts, the exit grace,
 * the channel's probes) set poll's timeout. Nothing in the loop blocks:
 * commands and tar work run in children, the channel is non-blocking and
 * queues what it cannot write.
 *
 * Flow control. Output is read from children only while the host has
 * acknowledged all but AGENT_UNACKED_MAX bytes, so an absent or slow host
 * stalls the children (in their pipes) instead of growing memory. Input
 * for children (STDIN, PUT_DATA) pauses reading the channel above
 * AGENT_INPUT_HIGH bytes, unless the host is behind on ACKs: then the
 * channel is read anyway, because ACKs come that way.
 */
#include "agent/agent.h"
#include "agent/pty.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct server {
	struct agent_channel *ch;
	struct agent_proc procs[AGENT_MAX_STREAMS];
	int sigfd;
	uint64_t now;
};

static void reject(struct server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The host broke the protocol: drop the connection, tell it why. */
static void reject(struct server *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	agent_channel_reject(s->ch, EPROTO, msg, s->now);
}

static struct agent_proc *find_proc(struct server *s, uint32_t stream)
{
	for (int i = 0; i < AGENT_MAX_STREAMS; i++)
		if (s->procs[i].used && s->procs[i].stream == stream)
			return &s->procs[i];
	return NULL;
}

/*
 * A free slot for a new operation on stream, or NULL: after a protocol
 * error (stream 0 or in use), or a RESULT(EAGAIN) when all are busy.
 */
static struct agent_proc *new_proc(struct server *s, const struct agent_frame *f)
{
	uint32_t stream = f->h.stream;
	if (stream == 0) {
		reject(s, "%s on stream 0", agent_type_name(f->h.type));
		return NULL;
	}
	if (find_proc(s, stream)) {
		reject(s, "%s on stream %u, which is in use", agent_type_name(f->h.type), stream);
		return NULL;
	}
	for (int i = 0; i < AGENT_MAX_STREAMS; i++)
		if (!s->procs[i].used)
			return &s->procs[i];
	char msg[96];
	snprintf(msg, sizeof(msg), "too many operations running (at most %d)", AGENT_MAX_STREAMS);
	agent_channel_result(s->ch, stream, EAGAIN, msg);
	return NULL;
}

/* ---- hello ----------------------------------------------------------------- */

/* PRETTY_NAME from /etc/os-release, else "busybox". */
static void os_name(char *out, size_t n)
{
	snprintf(out, n, "busybox");
	FILE *f = fopen("/etc/os-release", "re");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "PRETTY_NAME=", 12))
			continue;
		char *v = line + 12;
		v[strcspn(v, "\n")] = 0;
		size_t len = strlen(v);
		if (len >= 2 && (v[0] == '"' || v[0] == '\'') && v[len - 1] == v[0]) {
			v[len - 1] = 0;
			v++;
		}
		size_t k = strnlen(v, n - 1);
		if (k > 0) {
			memcpy(out, v, k);
			out[k] = 0;
		}
		break;
	}
	fclose(f);
}

static void on_hello(struct server *s, const struct agent_frame *f)
{
	struct agent_reader r;
	agent_reader_init(&r, f);
	uint32_t version = agent_get_u32(&r);
	uint64_t resume_after = agent_get_u64(&r);
	if (!agent_reader_done(&r)) {
		reject(s, "malformed hello");
		return;
	}
	(void)version; /* the host compares the version we answer with its own */
	/* Host frames are not retransmitted: an upload cut by the reconnect cannot go on. */
	for (int i = 0; i < AGENT_MAX_STREAMS; i++)
		if (s->procs[i].used)
			agent_proc_abort_input(&s->procs[i]);
	uint64_t next = agent_channel_resume(s->ch, resume_after);

	struct utsname u;
	if (uname(&u))
		memset(&u, 0, sizeof(u));
	char host[256] = "", os[256], info[5][320];
	gethostname(host, sizeof(host) - 1);
	os_name(os, sizeof(os));
	snprintf(info[0], sizeof(info[0]), "arch=%s", u.machine);
	snprintf(info[1], sizeof(info[1]), "kernel=%s", u.release);
	snprintf(info[2], sizeof(info[2]), "os=%s", os);
	snprintf(info[3], sizeof(info[3]), "hostname=%s", host);
	snprintf(info[4], sizeof(info[4]), "agent=%s", AGENT_VERSION);
	const char *const strs[] = {info[0], info[1], info[2], info[3], info[4], NULL};

	struct agent_writer *w = agent_channel_begin(s->ch);
	agent_put_u32(w, AGENT_PROTOCOL_VERSION);
	agent_put_u32(w, AGENT_CAP_EXEC | AGENT_CAP_PUT_GET | AGENT_CAP_TIME | AGENT_CAP_ENTROPY |
			     AGENT_CAP_STDIN | AGENT_CAP_PTY | AGENT_CAP_NET);
	agent_put_u64(w, next);
	agent_put_strv(w, strs);
	if (agent_channel_queue_unsequenced(s->ch, AGENT_HELLO_REPLY, 0))
		agent_fatal("out of memory answering hello");
}

/* ---- operations ------------------------------------------------------------ */

static void on_exec(struct server *s, const struct agent_frame *f)
{
	struct agent_proc *p = new_proc(s, f);
	if (!p)
		return;
	struct agent_exec e;
	char why[160];
	if (agent_exec_decode(f, &e, why, sizeof(why))) {
		reject(s, "%s", why);
		return;
	}
	agent_proc_exec(p, f->h.stream, &e, s->now);
	agent_exec_free(&e);
}

static int put_child(void *arg, char *err, size_t errlen)
{
	return agent_tar_extract(0, arg, err, errlen);
}

static int get_child(void *arg, char *err, size_t errlen)
{
	return agent_tar_create(1, arg, err, errlen);
}

/* PUT and GET: a path, then a tar child. */
static void on_transfer(struct server *s, const struct agent_frame *f)
{
	struct agent_reader r;
	agent_reader_init(&r, f);
	char *path = agent_get_str(&r);
	if (!agent_reader_done(&r) || !path[0]) {
		reject(s, "malformed %s", agent_type_name(f->h.type));
		free(path);
		return;
	}
	struct agent_proc *p = new_proc(s, f);
	if (p) {
		bool put = f->h.type == AGENT_PUT;
		agent_proc_spawn(p, put ? AGENT_PROC_PUT : AGENT_PROC_GET, f->h.stream,
				 put ? put_child : get_child, path, s->now);
	}
	free(path);
}

/* STDIN and PUT_DATA. Frames for an operation that just ended are dropped. */
static void on_input(struct server *s, const struct agent_frame *f)
{
	struct agent_proc *p = find_proc(s, f->h.stream);
	if (!p)
		return;
	enum agent_proc_kind want = f->h.type == AGENT_STDIN ? AGENT_PROC_EXEC : AGENT_PROC_PUT;
	if (p->kind != want) {
		reject(s, "%s on stream %u, which is not %s", agent_type_name(f->h.type),
		       f->h.stream, want == AGENT_PROC_EXEC ? "an exec" : "a put");
		return;
	}
	int rc = agent_proc_input(p, f->payload, f->h.len);
	if (rc == -ENOBUFS)
		reject(s, "more than %u MiB of input wait for stream %u", AGENT_INPUT_MAX >> 20,
		       f->h.stream);
	else if (rc)
		agent_fatal("out of memory buffering input for stream %u", f->h.stream);
}

static void on_cancel(struct server *s, const struct agent_frame *f)
{
	struct agent_proc *p = find_proc(s, f->h.stream);
	if (p)
		agent_proc_stop(p, AGENT_EXIT_CANCELLED);
}

/* RESIZE: a new size for the terminal of an exec; one that just ended is ignored. */
static void on_resize(struct server *s, const struct agent_frame *f)
{
	struct agent_reader r;
	agent_reader_init(&r, f);
	uint16_t rows = agent_get_u16(&r);
	uint16_t cols = agent_get_u16(&r);
	if (!agent_reader_done(&r)) {
		reject(s, "malformed resize");
		return;
	}
	struct agent_proc *p = find_proc(s, f->h.stream);
	if (p)
		agent_pty_resize(p, rows, cols);
}

static void on_set_time(struct server *s, const struct agent_frame *f)
{
	struct agent_reader r;
	agent_reader_init(&r, f);
	int64_t ns = agent_get_i64(&r);
	if (!agent_reader_done(&r)) {
		reject(s, "malformed set-time");
		return;
	}
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000;
	}
	char msg[128] = "";
	int status = 0;
	if (clock_settime(CLOCK_REALTIME, &ts)) {
		status = errno;
		snprintf(msg, sizeof(msg), "cannot set the clock: %s", strerror(status));
	}
	agent_channel_result(s->ch, f->h.stream, status, msg);
}

/* Credits the entropy when allowed (root), else at least mixes it in. */
static void on_add_entropy(struct server *s, const struct agent_frame *f)
{
	if (f->h.len > AGENT_MAX_ENTROPY) {
		reject(s, "add-entropy of %u bytes exceeds %u", f->h.len, AGENT_MAX_ENTROPY);
		return;
	}
	char msg[128] = "";
	int status = 0;
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		status = errno;
	} else if (f->h.len > 0) {
		struct rand_pool_info *info = malloc(sizeof(*info) + f->h.len);
		if (info) {
			info->entropy_count = (int)f->h.len * 8;
			info->buf_size = (int)f->h.len;
			memcpy(info->buf, f->payload, f->h.len);
		}
		if ((!info || ioctl(fd, RNDADDENTROPY, info)) &&
		    write(fd, f->payload, f->h.len) < 0)
			status = errno;
		free(info);
		/*
		 * Added entropy only enters the input pool: /dev/urandom keeps its
		 * key until the next scheduled reseed, so clones restored from one
		 * snapshot would read the same bytes. Reseed now (Linux 4.17+,
		 * root); without it the entropy still counts at the next reseed.
		 */
		if (status == 0)
			(void)ioctl(fd, RNDRESEEDCRNG);
	}
	if (fd >= 0)
		close(fd);
	if (status)
		snprintf(msg, sizeof(msg), "cannot add entropy: %s", strerror(status));
	agent_channel_result(s->ch, f->h.stream, status, msg);
}

static void on_net_config(struct server *s, const struct agent_frame *f)
{
	struct agent_reader r;
	agent_reader_init(&r, f);
	char *address = agent_get_str(&r);
	int prefix = agent_get_u8(&r);
	char *gateway = agent_get_str(&r);
	char *dns = agent_get_str(&r);
	if (!agent_reader_done(&r)) {
		reject(s, "malformed net-config");
	} else {
		char msg[256] = "";
		int status = agent_net_configure(address, prefix, gateway, dns, msg, sizeof(msg));
		agent_channel_result(s->ch, f->h.stream, status, msg);
	}
	free(address);
	free(gateway);
	free(dns);
}

static void on_ping(struct server *s, const struct agent_frame *f)
{
	if (f->h.len > AGENT_MAX_PING) {
		reject(s, "ping of %u bytes exceeds %u", f->h.len, AGENT_MAX_PING);
		return;
	}
	struct agent_writer *w = agent_channel_begin(s->ch);
	agent_put_bytes(w, f->payload, f->h.len);
	if (agent_channel_queue(s->ch, AGENT_PONG, f->h.stream))
		agent_log("out of memory: no pong for stream %u", f->h.stream);
}

static void dispatch(struct server *s, const struct agent_frame *f)
{
	switch (f->h.type) {
	case AGENT_HELLO:
		on_hello(s, f);
		break;
	case AGENT_ACK: {
		struct agent_reader r;
		agent_reader_init(&r, f);
		uint64_t seq = agent_get_u64(&r);
		if (!agent_reader_done(&r))
			reject(s, "malformed ack");
		else if (agent_channel_ack(s->ch, seq))
			reject(s, "ack of frame %llu, which was never sent",
			       (unsigned long long)seq);
		break;
	}
	case AGENT_EXEC:
		on_exec(s, f);
		break;
	case AGENT_STDIN:
	case AGENT_PUT_DATA:
		on_input(s, f);
		break;
	case AGENT_CANCEL:
		on_cancel(s, f);
		break;
	case AGENT_PUT:
	case AGENT_GET:
		on_transfer(s, f);
		break;
	case AGENT_SET_TIME:
		on_set_time(s, f);
		break;
	case AGENT_ADD_ENTROPY:
		on_add_entropy(s, f);
		break;
	case AGENT_PING:
		on_ping(s, f);
		break;
	case AGENT_RESIZE:
		on_resize(s, f);
		break;
	case AGENT_NET_CONFIG:
		on_net_config(s, f);
		break;
	default: /* the header decoder admits host types only */
		reject(s, "unexpected %s frame", agent_type_name(f->h.type));
	}
}

/* ---- the loop ---------------------------------------------------------------- */

/* Reaps every child, ours or orphans (PID 1 inherits them). */
static void reap(struct server *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0)
			break;
		agent_proc_reaped(s->procs, AGENT_MAX_STREAMS, pid, st, s->now);
	}
}

int agent_serve(struct agent_channel *ch)
{
	struct server s = {.ch = ch};
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	s.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s.sigfd < 0) {
		agent_log("cannot create a signalfd: %s", strerror(errno));
		return -1;
	}
	s.now = agent_now_ms();
	reap(&s);

	struct pollfd fds[AGENT_POLL_FDS];
	for (;;) {
		int timeout = -1;
		agent_channel_timers(ch, s.now);
		struct agent_frame f;
		while (agent_channel_next(ch, &f, s.now) == 1)
			dispatch(&s, &f);
		size_t backlog = 0;
		for (int i = 0; i < AGENT_MAX_STREAMS; i++) {
			struct agent_proc *p = &s.procs[i];
			if (!p->used)
				continue;
			agent_proc_timers(p, ch, s.now, &timeout);
			if (!agent_proc_finish(p, ch))
				backlog += agent_proc_input_pending(p);
		}
		agent_channel_flush(ch, s.now);

		bool read_output = ch->retained <= AGENT_UNACKED_MAX;
		bool reading = backlog <= AGENT_INPUT_HIGH || ch->retained >= AGENT_UNACKED_MAX / 2;
		int n = 0;
		fds[n++] = (struct pollfd){.fd = s.sigfd, .events = POLLIN};
		int ch_ix = n++;
		agent_channel_poll_setup(ch, &fds[ch_ix], reading, s.now, &timeout);
		for (int i = 0; i < AGENT_MAX_STREAMS; i++)
			if (s.procs[i].used)
				agent_proc_poll_setup(&s.procs[i], fds, &n, read_output);

		int rc = poll(fds, (nfds_t)n, timeout);
		if (rc < 0 && errno != EINTR) {
			agent_log("poll failed: %s", strerror(errno));
			return -1;
		}
		s.now = agent_now_ms();
		if (rc <= 0)
			continue;
		if (fds[0].revents)
			reap(&s);
		for (int i = 0; i < AGENT_MAX_STREAMS; i++)
			if (s.procs[i].used)
				agent_proc_poll_done(&s.procs[i], fds, ch);
		if (fds[ch_ix].revents)
			agent_channel_poll_done(ch, fds[ch_ix].revents, s.now);
	}
}
