/*
 * Private to the guest agent: what main.c, init.c, channel.c, serve.c,
 * exec.c and the tar files share. The agent depends on libc and
 * agent/protocol.h only; nothing here is visible to the host side.
 *
 * The agent is single-threaded. One poll() loop (serve.c) moves bytes
 * between the channel (channel.c) and the processes it runs (exec.c);
 * tar work for PUT and GET runs in forked children (tar*.c), so the loop
 * never blocks on one operation.
 */
#ifndef VMCI_AGENT_AGENT_H
#define VMCI_AGENT_AGENT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/protocol.h"

#define AGENT_VERSION	    "0.1.0"
#define AGENT_MAX_STREAMS   64		/* operations running at once */
#define AGENT_EXIT_GRACE_MS 200		/* pipes kept open by a grandchild after exit */
#define AGENT_INPUT_HIGH    (1u << 20)	/* buffered STDIN/PUT_DATA that pauses reading */
#define AGENT_INPUT_MAX	    (64u << 20) /* buffered STDIN of one stream: a protocol error */
#define AGENT_POLL_FDS	    (2 + 4 * AGENT_MAX_STREAMS)

/* ---- main.c ------------------------------------------------------------ */

/* Logs a problem to stderr (the console), prefixed "vmci-agent: ". */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs and stops: powers the VM off when PID 1, else exits 1. */
_Noreturn void agent_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* CLOCK_MONOTONIC in milliseconds: immune to SET_TIME. */
uint64_t agent_now_ms(void);

/* ---- init.c: PID-1 duties --------------------------------------------- */

/*
 * Prepares the system when the agent is PID 1: mounts, environment, kernel
 * modules, an optional root switch (vmci.root=), the hostname. Problems
 * are logged and skipped; a root switch that was asked for and failed is
 * fatal.
 */
void agent_init_system(void);
/* Makes sure fds 0, 1 and 2 are open (on the console, else /dev/null). */
void agent_ensure_stdio(void);
/* ---- net.c: the network interface -------------------------------------- */

/*
 * Configures the first Ethernet interface afresh (see AGENT_NET_CONFIG in
 * protocol.h). Returns 0, or an errno value with a message in err.
 */
int agent_net_configure(const char *address, int prefix, const char *gateway, const char *dns,
			char *err, size_t errlen);

/* Syncs and powers off; never returns. For PID 1 after a fatal error. */
_Noreturn void agent_poweroff(void);

/* ---- channel.c: the link to the host ------------------------------------ */

/* A sequenced frame kept until the host acknowledges it. */
struct agent_outframe {
	struct agent_outframe *next;
	uint64_t seq;
	size_t len;
	uint8_t *data; /* header and payload */
};

/*
 * The channel owns the transport (a virtio-serial port, or for testing a
 * unix socket or device given with --channel), turns its bytes into
 * frames, and keeps every sequenced frame it sent until the host ACKs it,
 * so that a host that reconnects with HELLO loses nothing.
 *
 * Until a HELLO starts a connection the input is scanned for one; other
 * frames are dropped and, when no HELLO follows within a moment, answered
 * with one ERROR. A malformed frame drops the connection the same way:
 * a reconnect that the transport did not show (a stale partial frame
 * followed by a new HELLO) then recovers silently, and a host that really
 * broke the protocol gets its ERROR.
 */
struct agent_channel {
	/* transport */
	char *path;	   /* the port's /dev node, or --channel */
	bool socket;	   /* path is a unix socket to connect to */
	int fd;		   /* -1 while a socket is disconnected */
	bool present;	   /* a host is there (no hang-up seen) */
	uint64_t probe_at; /* while absent: when to look again */

	/* input */
	struct agent_decoder dec;
	uint8_t *in; /* raw bytes read, from in_off to in_len */
	size_t in_off, in_len, in_cap;
	size_t frame_len;	/* bytes at in_off of the frame last returned */
	bool synced;		/* a HELLO started the current connection */
	uint64_t partial_since; /* an incomplete frame has waited since */
	bool err_pending;	/* an ERROR is due at err_at unless a HELLO comes */
	bool err_sent;		/* one ERROR per unsynced period */
	uint64_t err_at;
	int err_code;
	char err_msg[256];

	/* output */
	struct agent_writer w;
	struct agent_outframe *head, *tail; /* retained, oldest first */
	struct agent_outframe *cursor;	    /* next frame to write; NULL: all written */
	size_t cursor_off;
	uint8_t *first; /* written before the cursor: HELLO_REPLY... */
	size_t first_off, first_len, first_cap;
	uint64_t next_seq;    /* of the next frame queued */
	uint64_t write_limit; /* frames above this seq wait */
	uint64_t max_written; /* highest seq ever written whole */
	size_t retained;      /* bytes the retained frames hold, overhead included */
};

/*
 * Finds and opens the channel: path (a unix socket, character device or
 * fifo), or when NULL the virtio-serial port named AGENT_PORT_NAME. Waits
 * up to 10 s for it to appear. Returns 0, or -errno with a message logged.
 */
int agent_channel_open(struct agent_channel *c, const char *path);

/*
 * Sets pfd for the next poll() and lowers *timeout_ms to the channel's
 * next deadline. reading: whether the loop wants input now.
 */
void agent_channel_poll_setup(struct agent_channel *c, struct pollfd *pfd, bool reading,
			      uint64_t now, int *timeout_ms);
/* Handles poll()'s answer for the channel: reads what arrived. */
void agent_channel_poll_done(struct agent_channel *c, short revents, uint64_t now);
/* Runs the channel's timers: reconnect probes, the delayed ERROR, resync. */
void agent_channel_timers(struct agent_channel *c, uint64_t now);

/*
 * Returns 1 with the next frame from the host (valid until the next call),
 * or 0 when none is complete. Before a HELLO, only HELLO frames come out.
 */
int agent_channel_next(struct agent_channel *c, struct agent_frame *f, uint64_t now);
/*
 * The frame last returned broke the protocol: drops the connection state
 * and schedules an ERROR(code, msg) for the host.
 */
void agent_channel_reject(struct agent_channel *c, int code, const char *msg, uint64_t now);
/*
 * Starts a connection after a HELLO: forgets frames up to resume_after and
 * re-sends the rest. Returns the seq of the first frame that follows.
 */
uint64_t agent_channel_resume(struct agent_channel *c, uint64_t resume_after);
/* Frees frames up to seq. Returns 0, or -1 when seq was never sent. */
int agent_channel_ack(struct agent_channel *c, uint64_t seq);

/* Starts an outgoing frame; add its payload with agent_put_*(). */
struct agent_writer *agent_channel_begin(struct agent_channel *c);
/* Sequences and retains the frame begun. Returns 0 or -ENOMEM. */
int agent_channel_queue(struct agent_channel *c, uint16_t type, uint32_t stream);
/*
 * Queues output (STDOUT, STDERR, DATA; len at most AGENT_DATA_CHUNK),
 * appended to the newest frame when it is of the same type and stream and
 * not yet written. Returns 0 or -ENOMEM.
 */
int agent_channel_output(struct agent_channel *c, uint16_t type, uint32_t stream, const void *data,
			 size_t len);
/* Queues the frame begun with seq 0, ahead of the retained ones (HELLO_REPLY). */
int agent_channel_queue_unsequenced(struct agent_channel *c, uint16_t type, uint32_t stream);
/* Queues RESULT(status, message). */
void agent_channel_result(struct agent_channel *c, uint32_t stream, int status, const char *msg);
/* Writes what the transport takes now; never blocks. */
void agent_channel_flush(struct agent_channel *c, uint64_t now);
/* Whether output waits to be written now (poll for POLLOUT). */
bool agent_channel_want_write(const struct agent_channel *c);

/* ---- exec.c: child processes -------------------------------------------- */

enum agent_proc_kind {
	AGENT_PROC_EXEC, /* a command: STDOUT/STDERR, then EXIT */
	AGENT_PROC_PUT,	 /* tar extraction fed by PUT_DATA, then RESULT */
	AGENT_PROC_GET,	 /* tar creation sent as DATA, then RESULT */
};

/* One operation's process. A slot is free when !used. */
struct agent_proc {
	bool used;
	enum agent_proc_kind kind;
	uint32_t stream;
	pid_t pid; /* also the process group */
	bool reaped;
	int wstatus;
	int start_errno;		    /* fork, chdir or exec failed: EXIT START_FAILED */
	int out_fd, err_fd, in_fd, fail_fd; /* our pipe ends; -1 when closed */
	int out_ix, err_ix, in_ix, fail_ix; /* their index in the poll set, or -1 */
	uint8_t *in_buf; /* input waiting for the child: in_buf[in_off..in_len) */
	size_t in_off, in_len, in_cap;
	bool in_eof;	 /* the host ended the input */
	bool in_aborted; /* the connection was reset during an upload */
	bool stopped;	 /* killed by us before it exited */
	uint32_t stop_kind;
	uint64_t start_ms, deadline_ms, reaped_ms;
	char msg[512]; /* PUT/GET: what the child said on stderr */
	size_t msg_len;
};

/* The body of an internal child (PUT, GET): returns 0 or -errno with err. */
typedef int (*agent_child_fn)(void *arg, char *err, size_t errlen);

/*
 * Starts a command for EXEC in its own session and process group. A
 * failure to start is not returned: it is reported as EXIT START_FAILED
 * when the proc finishes.
 */
void agent_proc_exec(struct agent_proc *p, uint32_t stream, const struct agent_exec *e,
		     uint64_t now);
/* Starts fn(arg) in a child for PUT (input fed) or GET (output sent as DATA). */
void agent_proc_spawn(struct agent_proc *p, enum agent_proc_kind kind, uint32_t stream,
		      agent_child_fn fn, void *arg, uint64_t now);
/*
 * Adds the proc's fds to fds[*n...]. read_output: false while the host is
 * behind on ACKs (the children's output stays in their pipes).
 */
void agent_proc_poll_setup(struct agent_proc *p, struct pollfd *fds, int *n, bool read_output);
/* Moves data for the fds poll() found ready; output becomes frames on c. */
void agent_proc_poll_done(struct agent_proc *p, const struct pollfd *fds, struct agent_channel *c);
/* Records a reaped child if it is one of procs[0..n). */
void agent_proc_reaped(struct agent_proc *procs, int n, pid_t pid, int wstatus, uint64_t now);
/* Kills the process group; kind is AGENT_EXIT_TIMED_OUT or AGENT_EXIT_CANCELLED. */
void agent_proc_stop(struct agent_proc *p, uint32_t kind);
/*
 * Appends input (STDIN or PUT_DATA); an empty one ends it. Returns 0, or
 * -ENOBUFS when more than AGENT_INPUT_MAX bytes wait.
 */
int agent_proc_input(struct agent_proc *p, const void *data, size_t len);
/* Ends an upload cut by a reconnect: its RESULT will say so. */
void agent_proc_abort_input(struct agent_proc *p);
/* Bytes of input waiting for the child. */
size_t agent_proc_input_pending(const struct agent_proc *p);
/*
 * Enforces timeouts and the exit grace, and lowers *timeout_ms to the
 * proc's next deadline.
 */
void agent_proc_timers(struct agent_proc *p, struct agent_channel *c, uint64_t now,
		       int *timeout_ms);
/*
 * When the proc is complete (reaped, pipes closed), queues its EXIT or
 * RESULT, frees it and returns true.
 */
bool agent_proc_finish(struct agent_proc *p, struct agent_channel *c);

/* ---- serve.c ------------------------------------------------------------ */

/* Serves the channel forever; returns only on a fatal error (logged). */
int agent_serve(struct agent_channel *c);

/* ---- tar_extract.c, tar_create.c: tar streams (tar.h: the format)
 * --------------------------------------------------- */

/*
 * Extracts the tar stream read from fd into dir (created with its parents
 * if missing), then reads fd to its end. Refuses absolute paths, ".."
 * and writes through symlinks. Returns 0, or -errno with a message in err.
 */
int agent_tar_extract(int fd, const char *dir, char *err, size_t errlen);
/*
 * Writes a tar stream of path to fd: a file (stored by its name), a
 * directory (stored with its contents, relative to its parent) or a glob
 * (each match relative to the glob's directory). A glob that matches
 * nothing gives an empty archive. Returns 0, or -errno with err.
 */
int agent_tar_create(int fd, const char *path, char *err, size_t errlen);

#endif
