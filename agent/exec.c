/*
 * Child processes: the commands of EXEC, and the tar children of PUT and
 * GET. Each runs in its own session (so its process group can be killed
 * as a whole) with pipes whose agent ends are non-blocking; the event loop
 * moves their data with agent_proc_poll_setup/poll_done and reports the
 * end with agent_proc_finish once the child is reaped and its pipes are
 * closed.
 *
 * An exec that fails (chdir, execvp) writes its errno into a close-on-exec
 * pipe before exiting; EOF on that pipe means the exec succeeded.
 */
#include "agent/agent.h"
#include "agent/pty.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Output read from a child after it exited: enough for a full pipe, bounded. */
#define DRAIN_MAX (1u << 20)

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static void proc_init(struct agent_proc *p, enum agent_proc_kind kind, uint32_t stream,
		      uint64_t now)
{
	memset(p, 0, sizeof(*p));
	p->used = true;
	p->kind = kind;
	p->stream = stream;
	p->start_ms = now;
	p->out_fd = p->err_fd = p->in_fd = p->fail_fd = -1;
	p->out_ix = p->err_ix = p->in_ix = p->fail_ix = -1;
}

/* pipes[i] is {read, write}; a want of false leaves {-1, -1}. Returns 0 or -errno. */
static int make_pipes(int pipes[4][2], const bool want[4])
{
	for (int i = 0; i < 4; i++)
		pipes[i][0] = pipes[i][1] = -1;
	for (int i = 0; i < 4; i++) {
		if (want[i] && pipe2(pipes[i], O_CLOEXEC)) {
			int e = errno;
			for (int j = 0; j < i; j++) {
				close_fd(&pipes[j][0]);
				close_fd(&pipes[j][1]);
			}
			return -e;
		}
	}
	return 0;
}

enum { P_IN, P_OUT, P_ERR, P_FAIL };

/* Keeps the agent's ends (non-blocking), closes the child's. */
static void keep_parent_ends(struct agent_proc *p, int pipes[4][2])
{
	p->in_fd = pipes[P_IN][1];
	p->out_fd = pipes[P_OUT][0];
	p->err_fd = pipes[P_ERR][0];
	p->fail_fd = pipes[P_FAIL][0];
	close_fd(&pipes[P_IN][0]);
	close_fd(&pipes[P_OUT][1]);
	close_fd(&pipes[P_ERR][1]);
	close_fd(&pipes[P_FAIL][1]);
	int *ours[] = {&p->in_fd, &p->out_fd, &p->err_fd, &p->fail_fd};
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		if (*ours[i] >= 0)
			fcntl(*ours[i], F_SETFL, fcntl(*ours[i], F_GETFL) | O_NONBLOCK);
}

static void start_failed(struct agent_proc *p, int pipes[4][2], int err)
{
	for (int i = 0; i < 4; i++) {
		close_fd(&pipes[i][0]);
		close_fd(&pipes[i][1]);
	}
	p->start_errno = err;
	p->reaped = true;
	p->reaped_ms = p->start_ms;
}

/*
 * In a new child: default signals, a session of its own, fds 0-2 from the
 * pipes (or /dev/null). Returns 0 or -errno.
 */
static int child_setup(int in, int out, int err)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	setsid();
	int null = -1;
	if (in < 0 || out < 0) {
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null < 0)
			return -errno;
	}
	if (dup2(in >= 0 ? in : null, 0) < 0 || dup2(out >= 0 ? out : null, 1) < 0 ||
	    dup2(err, 2) < 0)
		return -errno;
	return 0;
}

/* child_setup for a command on a pseudo-terminal: the slave is its terminal and fds 0-2. */
static int child_setup_pty(int slave)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	setsid();
	return agent_pty_child(slave);
}

static _Noreturn void child_report(int fail_fd, int err)
{
	ssize_t n = write(fail_fd, &err, sizeof(err));
	(void)n;
	_exit(127);
}

void agent_proc_exec(struct agent_proc *p, uint32_t stream, const struct agent_exec *e,
		     uint64_t now)
{
	proc_init(p, AGENT_PROC_EXEC, stream, now);
	p->deadline_ms = e->timeout_ms ? now + e->timeout_ms : 0;
	bool pty = e->flags & AGENT_EXEC_PTY;
	int pipes[4][2];
	const bool want[4] = {!pty && (e->flags & AGENT_EXEC_STDIN), !pty, !pty, true};
	int rc = make_pipes(pipes, want);
	if (rc) {
		start_failed(p, pipes, -rc);
		return;
	}
	int master = -1, slave = -1;
	if (pty && (rc = agent_pty_open(e->rows, e->cols, &master, &slave))) {
		start_failed(p, pipes, -rc);
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		rc = errno;
		close_fd(&master);
		close_fd(&slave);
		start_failed(p, pipes, rc);
		return;
	}
	if (pid == 0) {
		int fail_fd = pipes[P_FAIL][1];
		rc = pty ? child_setup_pty(slave)
			 : child_setup(pipes[P_IN][0], pipes[P_OUT][1], pipes[P_ERR][1]);
		if (rc)
			child_report(fail_fd, -rc);
		/* Every fd of the agent is close-on-exec; this catches inherited ones. */
		close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
		if (chdir(e->cwd && e->cwd[0] ? e->cwd : "/"))
			child_report(fail_fd, errno);
		for (char **env = e->env; env && *env; env++)
			putenv(*env); /* in order: a later entry wins */
		execvp(e->argv[0], e->argv);
		child_report(fail_fd, errno);
	}
	p->pid = pid;
	keep_parent_ends(p, pipes);
	if (pty) {
		/* Output and input both go through the master; the child holds the slave now. */
		close_fd(&slave);
		p->out_fd = master;
		if (e->flags & AGENT_EXEC_STDIN)
			p->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
	}
}

/* Closes every fd from 3 up: the child must not hold the agent's pipes. */
static void close_from(int lowest)
{
	if (close_range((unsigned)lowest, ~0u, 0) == 0)
		return;
	long max = sysconf(_SC_OPEN_MAX);
	for (int fd = lowest; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
		close(fd);
}

void agent_proc_spawn(struct agent_proc *p, enum agent_proc_kind kind, uint32_t stream,
		      agent_child_fn fn, void *arg, uint64_t now)
{
	proc_init(p, kind, stream, now);
	int pipes[4][2];
	const bool want[4] = {kind == AGENT_PROC_PUT, kind == AGENT_PROC_GET, true, false};
	int rc = make_pipes(pipes, want);
	if (rc) {
		start_failed(p, pipes, -rc);
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		start_failed(p, pipes, errno);
		return;
	}
	if (pid == 0) {
		char msg[sizeof(p->msg)] = "";
		rc = child_setup(pipes[P_IN][0], pipes[P_OUT][1], pipes[P_ERR][1]);
		if (!rc) {
			close_from(3);
			rc = fn(arg, msg, sizeof(msg));
		} else {
			snprintf(msg, sizeof(msg), "cannot set up the child: %s", strerror(-rc));
		}
		if (rc) {
			ssize_t n = write(2, msg, strlen(msg));
			(void)n;
		}
		_exit(rc == 0 ? 0 : -rc > 0 && -rc < 256 ? -rc : EIO);
	}
	p->pid = pid;
	keep_parent_ends(p, pipes);
}

void agent_proc_poll_setup(struct agent_proc *p, struct pollfd *fds, int *n, bool read_output)
{
	p->out_ix = p->err_ix = p->in_ix = p->fail_ix = -1;
	/* A PUT or GET child's stderr is its error message: never held back. */
	bool read_err = read_output || p->kind != AGENT_PROC_EXEC;
	if (p->out_fd >= 0 && read_output) {
		p->out_ix = *n;
		fds[(*n)++] = (struct pollfd){.fd = p->out_fd, .events = POLLIN};
	}
	if (p->err_fd >= 0 && read_err) {
		p->err_ix = *n;
		fds[(*n)++] = (struct pollfd){.fd = p->err_fd, .events = POLLIN};
	}
	if (p->in_fd >= 0 && p->in_off < p->in_len) {
		p->in_ix = *n;
		fds[(*n)++] = (struct pollfd){.fd = p->in_fd, .events = POLLOUT};
	}
	if (p->fail_fd >= 0) {
		p->fail_ix = *n;
		fds[(*n)++] = (struct pollfd){.fd = p->fail_fd, .events = POLLIN};
	}
}

/* Reads one chunk of output into a frame. Returns bytes read, 0 at EOF/closed, -1 when none. */
static ssize_t read_output(struct agent_proc *p, int *fd, uint16_t type, struct agent_channel *c)
{
	uint8_t buf[AGENT_DATA_CHUNK];
	ssize_t n = read(*fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -1;
	if (n <= 0) {
		close_fd(fd);
		return 0;
	}
	if (type == 0) { /* kept as the message of a PUT or GET */
		size_t room = sizeof(p->msg) - 1 - p->msg_len;
		size_t k = (size_t)n < room ? (size_t)n : room;
		memcpy(p->msg + p->msg_len, buf, k);
		p->msg_len += k;
		p->msg[p->msg_len] = 0;
		return n;
	}
	if (agent_channel_output(c, type, p->stream, buf, (size_t)n))
		agent_log("out of memory: lost %zd bytes of output of stream %u", n, p->stream);
	return n;
}

static uint16_t out_type(const struct agent_proc *p)
{
	return p->kind == AGENT_PROC_GET ? AGENT_DATA : AGENT_STDOUT;
}

static uint16_t err_type(const struct agent_proc *p)
{
	return p->kind == AGENT_PROC_EXEC ? AGENT_STDERR : 0;
}

static void drop_input(struct agent_proc *p)
{
	free(p->in_buf);
	p->in_buf = NULL;
	p->in_off = p->in_len = p->in_cap = 0;
	close_fd(&p->in_fd);
}

static void write_input(struct agent_proc *p)
{
	while (p->in_fd >= 0 && p->in_off < p->in_len) {
		ssize_t n = write(p->in_fd, p->in_buf + p->in_off, p->in_len - p->in_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) { /* EPIPE: the child stopped reading; its input is moot */
			drop_input(p);
			return;
		}
		p->in_off += (size_t)n;
	}
	p->in_off = p->in_len = 0;
	if (p->in_eof)
		drop_input(p);
}

void agent_proc_poll_done(struct agent_proc *p, const struct pollfd *fds, struct agent_channel *c)
{
	if (p->out_ix >= 0 && fds[p->out_ix].revents)
		read_output(p, &p->out_fd, out_type(p), c);
	if (p->err_ix >= 0 && fds[p->err_ix].revents)
		read_output(p, &p->err_fd, err_type(p), c);
	if (p->in_ix >= 0 && fds[p->in_ix].revents)
		write_input(p);
	if (p->fail_ix >= 0 && fds[p->fail_ix].revents) {
		int e;
		ssize_t n = read(p->fail_fd, &e, sizeof(e));
		if (n == (ssize_t)sizeof(e))
			p->start_errno = e ? e : EIO;
		if (n >= 0 || (errno != EAGAIN && errno != EINTR))
			close_fd(&p->fail_fd);
	}
}

void agent_proc_reaped(struct agent_proc *procs, int n, pid_t pid, int wstatus, uint64_t now)
{
	for (int i = 0; i < n; i++) {
		struct agent_proc *p = &procs[i];
		if (p->used && !p->reaped && p->pid == pid) {
			p->reaped = true;
			p->wstatus = wstatus;
			p->reaped_ms = now;
			return;
		}
	}
}

void agent_proc_stop(struct agent_proc *p, uint32_t kind)
{
	if (!p->reaped && !p->stopped) {
		p->stopped = true;
		p->stop_kind = kind;
	}
	if (p->pid > 0) {
		kill(-p->pid, SIGKILL); /* the group, grandchildren included */
		if (!p->reaped)
			kill(p->pid, SIGKILL); /* in case it has not called setsid yet */
	}
	if (p->kind == AGENT_PROC_PUT)
		drop_input(p);
}

int agent_proc_input(struct agent_proc *p, const void *data, size_t len)
{
	if (p->in_eof)
		return 0;
	if (len == 0) {
		p->in_eof = true;
		if (p->in_off == p->in_len)
			drop_input(p);
		return 0;
	}
	if (p->in_fd < 0) /* not wanted, or the child closed it */
		return 0;
	size_t pending = p->in_len - p->in_off;
	if (pending + len > AGENT_INPUT_MAX)
		return -ENOBUFS;
	if (p->in_off > 0) {
		memmove(p->in_buf, p->in_buf + p->in_off, pending);
		p->in_off = 0;
		p->in_len = pending;
	}
	if (p->in_len + len > p->in_cap) {
		size_t cap = p->in_cap ? p->in_cap : 64 * 1024;
		while (cap < p->in_len + len)
			cap *= 2;
		uint8_t *b = realloc(p->in_buf, cap);
		if (!b)
			return -ENOMEM;
		p->in_buf = b;
		p->in_cap = cap;
	}
	memcpy(p->in_buf + p->in_len, data, len);
	p->in_len += len;
	write_input(p); /* most input goes straight through */
	return 0;
}

void agent_proc_abort_input(struct agent_proc *p)
{
	if (p->kind != AGENT_PROC_PUT || p->in_eof)
		return;
	p->in_eof = true;
	p->in_aborted = true;
	drop_input(p); /* the child sees a truncated stream and stops */
}

size_t agent_proc_input_pending(const struct agent_proc *p)
{
	return p->in_len - p->in_off;
}

static void lower(int *timeout_ms, uint64_t at, uint64_t now)
{
	uint64_t wait = at > now ? at - now : 0;
	if (*timeout_ms < 0 || wait < (uint64_t)*timeout_ms)
		*timeout_ms = (int)wait;
}

void agent_proc_timers(struct agent_proc *p, struct agent_channel *c, uint64_t now, int *timeout_ms)
{
	if (!p->reaped && !p->stopped && p->deadline_ms) {
		if (now >= p->deadline_ms)
			agent_proc_stop(p, AGENT_EXIT_TIMED_OUT);
		else
			lower(timeout_ms, p->deadline_ms, now);
	}
	if (!p->reaped || (p->out_fd < 0 && p->err_fd < 0 && p->fail_fd < 0))
		return;
	uint64_t grace_at = p->reaped_ms + AGENT_EXIT_GRACE_MS;
	if (now < grace_at) {
		lower(timeout_ms, grace_at, now);
		return;
	}
	/*
	 * The child is gone but something (a daemonized grandchild) holds its
	 * pipes: take what is in them and stop waiting.
	 */
	size_t taken = 0;
	while (p->out_fd >= 0 && taken < DRAIN_MAX) {
		ssize_t n = read_output(p, &p->out_fd, out_type(p), c);
		if (n <= 0)
			break;
		taken += (size_t)n;
	}
	for (taken = 0; p->err_fd >= 0 && taken < DRAIN_MAX;) {
		ssize_t n = read_output(p, &p->err_fd, err_type(p), c);
		if (n <= 0)
			break;
		taken += (size_t)n;
	}
	close_fd(&p->out_fd);
	close_fd(&p->err_fd);
	close_fd(&p->fail_fd);
}

static void finish_exec(struct agent_proc *p, struct agent_channel *c)
{
	struct agent_exit x = {.duration_ms = p->reaped_ms - p->start_ms};
	int st = p->wstatus;
	if (p->start_errno) {
		x.kind = AGENT_EXIT_START_FAILED;
		x.code = p->start_errno;
	} else {
		x.code = WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st);
		if (p->stopped)
			x.kind = p->stop_kind;
		else if (WIFSIGNALED(st))
			x.kind = AGENT_EXIT_SIGNALED;
		else
			x.kind = AGENT_EXIT_EXITED;
	}
	struct agent_writer *w = agent_channel_begin(c);
	agent_exit_encode(w, &x);
	if (agent_channel_queue(c, AGENT_EXIT, p->stream))
		agent_log("out of memory: lost the exit of stream %u", p->stream);
}

static void finish_transfer(struct agent_proc *p, struct agent_channel *c)
{
	const char *what = p->kind == AGENT_PROC_PUT ? "extracting" : "archiving";
	char msg[sizeof(p->msg) + 64];
	int st = p->wstatus, status;
	while (p->msg_len > 0 && p->msg[p->msg_len - 1] == '\n')
		p->msg[--p->msg_len] = 0;
	if (p->start_errno) {
		status = p->start_errno;
		snprintf(msg, sizeof(msg), "cannot start %s: %s", what, strerror(status));
	} else if (p->stopped) {
		status = ECANCELED;
		snprintf(msg, sizeof(msg), "cancelled");
	} else if (p->in_aborted) {
		status = ECONNABORTED;
		snprintf(msg, sizeof(msg),
			 "the connection was reset during the upload; send it again");
	} else if (WIFEXITED(st)) {
		status = WEXITSTATUS(st);
		snprintf(msg, sizeof(msg), "%s",
			 status == 0  ? ""
			 : p->msg_len ? p->msg
				      : strerror(status));
	} else {
		status = EIO;
		snprintf(msg, sizeof(msg), "%s was killed by signal %d", what, WTERMSIG(st));
	}
	agent_channel_result(c, p->stream, status, msg);
}

bool agent_proc_finish(struct agent_proc *p, struct agent_channel *c)
{
	if (!p->used || !p->reaped || p->out_fd >= 0 || p->err_fd >= 0 || p->fail_fd >= 0)
		return false;
	drop_input(p);
	if (p->kind == AGENT_PROC_EXEC)
		finish_exec(p, c);
	else
		finish_transfer(p, c);
	p->used = false;
	return true;
}
