/*
 * The vmci agent wire protocol, shared by the guest agent and vmcore.
 *
 * The host and the agent exchange frames over a virtio-serial port named
 * AGENT_PORT_NAME. A frame is a fixed header followed by `len` payload
 * bytes; every integer is little-endian:
 *
 *   u32 magic    AGENT_MAGIC
 *   u32 len      payload length, at most AGENT_MAX_PAYLOAD
 *   u16 type     enum agent_type
 *   u16 flags    0 (reserved)
 *   u32 stream   the operation this frame belongs to, chosen by the host
 *                (0 for connection-level frames)
 *   u64 seq      sequence number, see below
 *
 * Sequencing and reconnects. Each direction numbers its frames 1, 2, 3...
 * and a receiver rejects any frame whose seq is not the one it expects.
 * A HELLO from the host starts a connection: it carries the host's first
 * seq and the last guest seq the host already holds (0 for none). The
 * agent answers with an unsequenced (seq 0) HELLO_REPLY naming the seq of
 * the first frame it will send next, then re-sends every frame the host
 * has not acknowledged, in order. The agent keeps its frames until the host
 * ACKs them, so a host that reconnects (after a migration or a restart of
 * the runner) loses no output; the agent stops reading its children's
 * output while AGENT_UNACKED_MAX bytes are unacknowledged.
 *
 * Payloads are built from u8/u32/i32/u64/i64 values, byte strings
 * (u32 length + bytes) and string lists (u32 count + strings). The
 * decoders below check every length against the frame, so a malformed
 * payload is an error value, never an out-of-bounds read.
 *
 * This file has no dependency beyond libc: it is linked into the static
 * agent and into libvmci alike.
 */
#ifndef VMCI_AGENT_PROTOCOL_H
#define VMCI_AGENT_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTOCOL_VERSION 1
#define AGENT_PORT_NAME	       "org.vmci.agent.0"
#define AGENT_MAGIC	       0x49434d56u /* "VMCI" */
#define AGENT_HEADER_SIZE      24
#define AGENT_MAX_PAYLOAD      (256u * 1024u)
#define AGENT_DATA_CHUNK       (64u * 1024u) /* output is sent in chunks of at most this */
#define AGENT_UNACKED_MAX      (8u * 1024u * 1024u)
#define AGENT_MAX_ARGS	       4096 /* argv and env entries */
#define AGENT_MAX_STRING       (64u * 1024u)

enum agent_type {
	/* host -> guest */
	AGENT_HELLO = 1,   /* u32 version, u64 resume_after */
	AGENT_ACK,	   /* u64 last guest seq received */
	AGENT_EXEC,	   /* struct agent_exec */
	AGENT_STDIN,	   /* bytes; an empty payload closes stdin */
	AGENT_CANCEL,	   /* stop the operation on this stream */
	AGENT_PUT,	   /* str dir: a tar stream follows as PUT_DATA */
	AGENT_PUT_DATA,	   /* bytes; an empty payload ends the stream */
	AGENT_GET,	   /* str path or glob: the agent answers with DATA + RESULT */
	AGENT_SET_TIME,	   /* i64 nanoseconds since the epoch (CLOCK_REALTIME) */
	AGENT_ADD_ENTROPY, /* bytes, at most AGENT_MAX_ENTROPY */
	AGENT_PING,	   /* bytes, echoed in PONG */
	AGENT_RESIZE,	   /* u16 rows, u16 cols: the terminal of a PTY exec on this stream */
	AGENT_NET_CONFIG,  /* str address, u8 prefix, str gateway, str dns: see below */

	/* guest -> host */
	AGENT_HELLO_REPLY = 64, /* u32 version, u32 caps, u64 next_seq, string list "key=value" */
	AGENT_STDOUT,		/* bytes */
	AGENT_STDERR,		/* bytes */
	AGENT_EXIT,		/* struct agent_exit */
	AGENT_DATA,		/* bytes of a GET tar stream */
	AGENT_RESULT, /* i32 status (0 or errno), str message: ends PUT, GET, SET_TIME... */
	AGENT_PONG,   /* the PING's bytes */
	AGENT_ERROR,  /* i32 code, str message: the host broke the protocol */
};

#define AGENT_MAX_ENTROPY 4096
#define AGENT_MAX_PING	  256

/* Capabilities announced in HELLO_REPLY. */
enum {
	AGENT_CAP_EXEC = 1u << 0,
	AGENT_CAP_PUT_GET = 1u << 1,
	AGENT_CAP_TIME = 1u << 2,
	AGENT_CAP_ENTROPY = 1u << 3,
	AGENT_CAP_STDIN = 1u << 4,
	AGENT_CAP_PTY = 1u << 5, /* AGENT_EXEC_PTY and AGENT_RESIZE */
	AGENT_CAP_NET = 1u << 6, /* AGENT_NET_CONFIG */
};

/*
 * AGENT_NET_CONFIG configures the guest's network interface afresh: the
 * first one that is not loopback goes down (which drops its routes and
 * neighbours: nothing learnt before a snapshot survives a restore), gets
 * address/prefix, comes up with a default route via gateway, and
 * /etc/resolv.conf names dns alone. Sent after boot and after every
 * restore; answered with a RESULT.
 */

/* Whether a frame of this type may travel in this direction. */
bool agent_type_from_host(uint16_t type);
bool agent_type_from_guest(uint16_t type);
const char *agent_type_name(uint16_t type);

struct agent_header {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	uint32_t stream;
	uint64_t seq;
};

void agent_header_encode(const struct agent_header *h, uint8_t out[AGENT_HEADER_SIZE]);

/*
 * Decodes and validates a frame header: magic, flags, length bound and a
 * type valid from that direction (from_guest: the frame was sent by the
 * guest). Returns 0, or -1 with a message in err.
 */
int agent_header_decode(const uint8_t in[AGENT_HEADER_SIZE], bool from_guest,
			struct agent_header *out, char *err, size_t errlen);

/* ---- the stream decoder ------------------------------------------ */

/*
 * Reassembles frames from a byte stream and checks their sequence.
 * Feed bytes with agent_decoder_feed(), then call agent_decoder_next()
 * until it returns 0. The decoder owns its buffer; a frame's payload
 * points into it and is valid until the next call.
 */
struct agent_decoder {
	uint8_t *buf;
	size_t len, cap, off;
	bool from_guest;     /* frames come from the guest (the host's decoder) */
	uint64_t expect_seq; /* next sequenced frame's seq; 0 accepts any */
	bool failed;
};

struct agent_frame {
	struct agent_header h;
	const uint8_t *payload;
};

void agent_decoder_init(struct agent_decoder *d, bool from_guest);
void agent_decoder_reset(struct agent_decoder *d); /* drops buffered bytes */
void agent_decoder_free(struct agent_decoder *d);
/* Returns 0, or -1 when out of memory. */
int agent_decoder_feed(struct agent_decoder *d, const void *data, size_t len);
/*
 * Returns 1 with a frame, 0 when more bytes are needed, -1 on a protocol
 * violation (message in err; the decoder stays failed). The expected seq
 * advances by one per sequenced frame. A HELLO (from the host) resets the
 * expectation to its own seq; a HELLO_REPLY is unsequenced (seq 0).
 */
int agent_decoder_next(struct agent_decoder *d, struct agent_frame *out, char *err, size_t errlen);

/* ---- payload encoding ---------------------------------------------- */

/* A growable output buffer for one frame (header reserved at the front). */
struct agent_writer {
	uint8_t *buf;
	size_t len, cap;
	bool oom;
};

/* Starts a frame; the header is filled by agent_writer_finish(). */
void agent_writer_begin(struct agent_writer *w);
void agent_put_u8(struct agent_writer *w, uint8_t v);
void agent_put_u16(struct agent_writer *w, uint16_t v);
void agent_put_u32(struct agent_writer *w, uint32_t v);
void agent_put_i32(struct agent_writer *w, int32_t v);
void agent_put_u64(struct agent_writer *w, uint64_t v);
void agent_put_i64(struct agent_writer *w, int64_t v);
void agent_put_bytes(struct agent_writer *w, const void *data, size_t len); /* raw, no length */
void agent_put_str(struct agent_writer *w, const char *s);		    /* u32 length + bytes */
void agent_put_strv(struct agent_writer *w, const char *const *v);	    /* NULL-terminated */
/*
 * Writes the header; returns the frame's total size, or -1 when out of
 * memory or the payload exceeds AGENT_MAX_PAYLOAD. The frame is w->buf.
 */
long agent_writer_finish(struct agent_writer *w, uint16_t type, uint32_t stream, uint64_t seq);
void agent_writer_free(struct agent_writer *w);

/* A bounds-checked view of a payload. Any read past the end sets bad. */
struct agent_reader {
	const uint8_t *p;
	size_t left;
	bool bad;
};

void agent_reader_init(struct agent_reader *r, const struct agent_frame *f);
uint8_t agent_get_u8(struct agent_reader *r);
uint16_t agent_get_u16(struct agent_reader *r);
uint32_t agent_get_u32(struct agent_reader *r);
int32_t agent_get_i32(struct agent_reader *r);
uint64_t agent_get_u64(struct agent_reader *r);
int64_t agent_get_i64(struct agent_reader *r);
/*
 * Returns a malloc'd NUL-terminated copy of a string (NULL and bad set on
 * error, on a string longer than AGENT_MAX_STRING or holding a NUL byte).
 */
char *agent_get_str(struct agent_reader *r);
/* Returns a malloc'd NULL-terminated vector (at most AGENT_MAX_ARGS entries). */
char **agent_get_strv(struct agent_reader *r);
void agent_strv_free(char **v);
/* True when the whole payload was read without error. */
bool agent_reader_done(const struct agent_reader *r);

/* ---- messages -------------------------------------------------------- */

enum {
	AGENT_EXEC_STDIN = 1u << 0, /* stdin is fed by STDIN frames (else /dev/null) */
	/*
	 * The command runs on a new pseudo-terminal of rows x cols as its
	 * controlling terminal: stdin (with AGENT_EXEC_STDIN), stdout and
	 * stderr all go through it, and its output comes as STDOUT.
	 */
	AGENT_EXEC_PTY = 1u << 1,
};

struct agent_exec {
	uint32_t flags;
	uint32_t timeout_ms; /* 0: none */
	char *cwd;	     /* "" or NULL: / */
	char **argv;	     /* NULL-terminated, at least one entry */
	char **env;	     /* NULL-terminated "KEY=VALUE", added to the agent's base env */
	uint16_t rows, cols; /* AGENT_EXEC_PTY: the terminal's size, both at least 1 */
};

/* Encodes EXEC's payload into w (after agent_writer_begin). */
void agent_exec_encode(struct agent_writer *w, const struct agent_exec *e);
/* Decodes and validates; returns 0 or -1 with err. Free with agent_exec_free. */
int agent_exec_decode(const struct agent_frame *f, struct agent_exec *out, char *err,
		      size_t errlen);
void agent_exec_free(struct agent_exec *e);

enum agent_exit_kind {
	AGENT_EXIT_EXITED = 0,	/* code: exit status */
	AGENT_EXIT_SIGNALED,	/* code: signal number */
	AGENT_EXIT_TIMED_OUT,	/* killed after its timeout */
	AGENT_EXIT_CANCELLED,	/* killed by CANCEL */
	AGENT_EXIT_START_FAILED /* code: errno of exec (127: not found) */
};

struct agent_exit {
	uint32_t kind;
	int32_t code;
	uint64_t duration_ms;
};

void agent_exit_encode(struct agent_writer *w, const struct agent_exit *e);
int agent_exit_decode(const struct agent_frame *f, struct agent_exit *out, char *err,
		      size_t errlen);

/* RESULT and ERROR: i32 status (0, or an errno value), str message. */
struct agent_result {
	int32_t status;
	char *message; /* never NULL after a successful decode */
};

void agent_result_encode(struct agent_writer *w, int32_t status, const char *message);
/* Decodes and validates; returns 0 or -1 with err. Free with agent_result_free. */
int agent_result_decode(const struct agent_frame *f, struct agent_result *out, char *err,
			size_t errlen);
void agent_result_free(struct agent_result *r);

#endif
