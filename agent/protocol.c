/* The agent wire protocol: frame headers, the stream decoder, payload codecs. */
#include "agent/protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
    [AGENT_HELLO] = "hello",
    [AGENT_ACK] = "ack",
    [AGENT_EXEC] = "exec",
    [AGENT_STDIN] = "stdin",
    [AGENT_CANCEL] = "cancel",
    [AGENT_PUT] = "put",
    [AGENT_PUT_DATA] = "put-data",
    [AGENT_GET] = "get",
    [AGENT_SET_TIME] = "set-time",
    [AGENT_ADD_ENTROPY] = "add-entropy",
    [AGENT_PING] = "ping",
    [AGENT_RESIZE] = "resize",
    [AGENT_NET_CONFIG] = "net-config",
    [AGENT_HELLO_REPLY] = "hello-reply",
    [AGENT_STDOUT] = "stdout",
    [AGENT_STDERR] = "stderr",
    [AGENT_EXIT] = "exit",
    [AGENT_DATA] = "data",
    [AGENT_RESULT] = "result",
    [AGENT_PONG] = "pong",
    [AGENT_ERROR] = "error",
};

bool agent_type_from_host(uint16_t type)
{
	return type >= AGENT_HELLO && type <= AGENT_NET_CONFIG;
}

bool agent_type_from_guest(uint16_t type)
{
	return type >= AGENT_HELLO_REPLY && type <= AGENT_ERROR;
}

const char *agent_type_name(uint16_t type)
{
	if (type < sizeof(type_names) / sizeof(type_names[0]) && type_names[type])
		return type_names[type];
	return "unknown";
}

/* ---- little-endian helpers ---------------------------------------- */

static void le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* ---- headers -------------------------------------------------------- */

void agent_header_encode(const struct agent_header *h, uint8_t out[AGENT_HEADER_SIZE])
{
	le32(out, AGENT_MAGIC);
	le32(out + 4, h->len);
	le16(out + 8, h->type);
	le16(out + 10, h->flags);
	le32(out + 12, h->stream);
	le64(out + 16, h->seq);
}

int agent_header_decode(const uint8_t in[AGENT_HEADER_SIZE], bool from_guest,
			struct agent_header *out, char *err, size_t errlen)
{
	uint32_t magic = rd32(in);
	out->len = rd32(in + 4);
	out->type = rd16(in + 8);
	out->flags = rd16(in + 10);
	out->stream = rd32(in + 12);
	out->seq = rd64(in + 16);
	if (magic != AGENT_MAGIC) {
		snprintf(err, errlen, "bad frame magic 0x%08x", magic);
		return -1;
	}
	if (out->len > AGENT_MAX_PAYLOAD) {
		snprintf(err, errlen, "frame of %u bytes exceeds the limit of %u", out->len,
			 AGENT_MAX_PAYLOAD);
		return -1;
	}
	if (out->flags != 0) {
		snprintf(err, errlen, "frame has unknown flags 0x%x", out->flags);
		return -1;
	}
	if (from_guest ? !agent_type_from_guest(out->type) : !agent_type_from_host(out->type)) {
		snprintf(err, errlen, "unexpected frame type %u from the %s", out->type,
			 from_guest ? "guest" : "host");
		return -1;
	}
	return 0;
}

/* ---- decoder -------------------------------------------------------- */

void agent_decoder_init(struct agent_decoder *d, bool from_guest)
{
	memset(d, 0, sizeof(*d));
	d->from_guest = from_guest;
}

void agent_decoder_reset(struct agent_decoder *d)
{
	d->len = d->off = 0;
	d->failed = false;
}

void agent_decoder_free(struct agent_decoder *d)
{
	free(d->buf);
	memset(d, 0, sizeof(*d));
}

int agent_decoder_feed(struct agent_decoder *d, const void *data, size_t len)
{
	if (d->off > 0) { /* drop frames already handed out */
		memmove(d->buf, d->buf + d->off, d->len - d->off);
		d->len -= d->off;
		d->off = 0;
	}
	if (d->len + len > d->cap) {
		size_t cap = d->cap ? d->cap : 4096;
		while (cap < d->len + len)
			cap *= 2;
		uint8_t *p = realloc(d->buf, cap);
		if (!p)
			return -1;
		d->buf = p;
		d->cap = cap;
	}
	memcpy(d->buf + d->len, data, len);
	d->len += len;
	return 0;
}

int agent_decoder_next(struct agent_decoder *d, struct agent_frame *out, char *err, size_t errlen)
{
	if (d->failed) {
		snprintf(err, errlen, "the stream is broken by an earlier error");
		return -1;
	}
	size_t avail = d->len - d->off;
	if (avail < AGENT_HEADER_SIZE)
		return 0;
	struct agent_header h;
	if (agent_header_decode(d->buf + d->off, d->from_guest, &h, err, errlen)) {
		d->failed = true;
		return -1;
	}
	if (avail < AGENT_HEADER_SIZE + (size_t)h.len)
		return 0;

	bool unsequenced = h.type == AGENT_HELLO_REPLY;
	if (h.type == AGENT_HELLO) {
		if (h.seq == 0) {
			snprintf(err, errlen, "hello with sequence number 0");
			d->failed = true;
			return -1;
		}
		d->expect_seq = h.seq;
	}
	if (unsequenced) {
		if (h.seq != 0) {
			snprintf(err, errlen, "%s must carry sequence number 0",
				 agent_type_name(h.type));
			d->failed = true;
			return -1;
		}
	} else if (d->expect_seq != 0 && h.seq != d->expect_seq) {
		snprintf(err, errlen, "%s frame has sequence number %llu, expected %llu",
			 agent_type_name(h.type), (unsigned long long)h.seq,
			 (unsigned long long)d->expect_seq);
		d->failed = true;
		return -1;
	} else if (h.seq == 0) {
		snprintf(err, errlen, "%s frame has sequence number 0", agent_type_name(h.type));
		d->failed = true;
		return -1;
	}
	if (!unsequenced)
		d->expect_seq = h.seq + 1;

	out->h = h;
	out->payload = d->buf + d->off + AGENT_HEADER_SIZE;
	d->off += AGENT_HEADER_SIZE + h.len;
	return 1;
}

/* ---- writer --------------------------------------------------------- */

static void w_reserve(struct agent_writer *w, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n <= w->cap)
		return;
	size_t cap = w->cap ? w->cap : 256;
	while (cap < w->len + n)
		cap *= 2;
	uint8_t *p = realloc(w->buf, cap);
	if (!p) {
		w->oom = true;
		return;
	}
	w->buf = p;
	w->cap = cap;
}

void agent_writer_begin(struct agent_writer *w)
{
	w->len = 0;
	w->oom = false;
	w_reserve(w, AGENT_HEADER_SIZE);
	if (!w->oom)
		w->len = AGENT_HEADER_SIZE;
}

void agent_put_bytes(struct agent_writer *w, const void *data, size_t len)
{
	w_reserve(w, len);
	if (w->oom || len == 0)
		return;
	memcpy(w->buf + w->len, data, len);
	w->len += len;
}

void agent_put_u8(struct agent_writer *w, uint8_t v)
{
	agent_put_bytes(w, &v, 1);
}

void agent_put_u16(struct agent_writer *w, uint16_t v)
{
	uint8_t b[2];
	le16(b, v);
	agent_put_bytes(w, b, 2);
}

void agent_put_u32(struct agent_writer *w, uint32_t v)
{
	uint8_t b[4];
	le32(b, v);
	agent_put_bytes(w, b, 4);
}

void agent_put_i32(struct agent_writer *w, int32_t v)
{
	agent_put_u32(w, (uint32_t)v);
}

void agent_put_u64(struct agent_writer *w, uint64_t v)
{
	uint8_t b[8];
	le64(b, v);
	agent_put_bytes(w, b, 8);
}

void agent_put_i64(struct agent_writer *w, int64_t v)
{
	agent_put_u64(w, (uint64_t)v);
}

void agent_put_str(struct agent_writer *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	agent_put_u32(w, (uint32_t)n);
	agent_put_bytes(w, s, n);
}

void agent_put_strv(struct agent_writer *w, const char *const *v)
{
	uint32_t n = 0;
	while (v && v[n])
		n++;
	agent_put_u32(w, n);
	for (uint32_t i = 0; i < n; i++)
		agent_put_str(w, v[i]);
}

long agent_writer_finish(struct agent_writer *w, uint16_t type, uint32_t stream, uint64_t seq)
{
	if (w->oom || w->len < AGENT_HEADER_SIZE)
		return -1;
	size_t payload = w->len - AGENT_HEADER_SIZE;
	if (payload > AGENT_MAX_PAYLOAD)
		return -1;
	struct agent_header h = {
	    .len = (uint32_t)payload, .type = type, .flags = 0, .stream = stream, .seq = seq};
	agent_header_encode(&h, w->buf);
	return (long)w->len;
}

void agent_writer_free(struct agent_writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

/* ---- reader --------------------------------------------------------- */

void agent_reader_init(struct agent_reader *r, const struct agent_frame *f)
{
	r->p = f->payload;
	r->left = f->h.len;
	r->bad = false;
}

static const uint8_t *take(struct agent_reader *r, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

uint8_t agent_get_u8(struct agent_reader *r)
{
	const uint8_t *p = take(r, 1);
	return p ? p[0] : 0;
}

uint16_t agent_get_u16(struct agent_reader *r)
{
	const uint8_t *p = take(r, 2);
	return p ? rd16(p) : 0;
}

uint32_t agent_get_u32(struct agent_reader *r)
{
	const uint8_t *p = take(r, 4);
	return p ? rd32(p) : 0;
}

int32_t agent_get_i32(struct agent_reader *r)
{
	return (int32_t)agent_get_u32(r);
}

uint64_t agent_get_u64(struct agent_reader *r)
{
	const uint8_t *p = take(r, 8);
	return p ? rd64(p) : 0;
}

int64_t agent_get_i64(struct agent_reader *r)
{
	return (int64_t)agent_get_u64(r);
}

char *agent_get_str(struct agent_reader *r)
{
	uint32_t n = agent_get_u32(r);
	if (r->bad)
		return NULL;
	if (n > AGENT_MAX_STRING) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = take(r, n);
	if (!p)
		return NULL;
	if (memchr(p, 0, n)) {
		r->bad = true;
		return NULL;
	}
	char *s = malloc((size_t)n + 1);
	if (!s) {
		r->bad = true;
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = 0;
	return s;
}

char **agent_get_strv(struct agent_reader *r)
{
	uint32_t n = agent_get_u32(r);
	/* Each string needs at least its 4-byte length: reject counts the payload cannot hold. */
	if (r->bad || n > AGENT_MAX_ARGS || (size_t)n * 4 > r->left) {
		r->bad = true;
		return NULL;
	}
	char **v = calloc((size_t)n + 1, sizeof(char *));
	if (!v) {
		r->bad = true;
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		v[i] = agent_get_str(r);
		if (!v[i]) {
			agent_strv_free(v);
			return NULL;
		}
	}
	return v;
}

void agent_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

bool agent_reader_done(const struct agent_reader *r)
{
	return !r->bad && r->left == 0;
}

/* ---- messages ------------------------------------------------------- */

void agent_exec_encode(struct agent_writer *w, const struct agent_exec *e)
{
	agent_put_u32(w, e->flags);
	agent_put_u32(w, e->timeout_ms);
	agent_put_str(w, e->cwd ? e->cwd : "");
	agent_put_strv(w, (const char *const *)e->argv);
	agent_put_strv(w, (const char *const *)e->env);
	if (e->flags & AGENT_EXEC_PTY) {
		agent_put_u16(w, e->rows);
		agent_put_u16(w, e->cols);
	}
}

int agent_exec_decode(const struct agent_frame *f, struct agent_exec *out, char *err, size_t errlen)
{
	struct agent_reader r;
	memset(out, 0, sizeof(*out));
	agent_reader_init(&r, f);
	out->flags = agent_get_u32(&r);
	out->timeout_ms = agent_get_u32(&r);
	out->cwd = agent_get_str(&r);
	if (!r.bad)
		out->argv = agent_get_strv(&r);
	if (!r.bad)
		out->env = agent_get_strv(&r);
	if (!r.bad && (out->flags & AGENT_EXEC_PTY)) {
		out->rows = agent_get_u16(&r);
		out->cols = agent_get_u16(&r);
	}
	const char *why = NULL;
	if (!agent_reader_done(&r))
		why = "malformed exec payload";
	else if (out->flags & ~(uint32_t)(AGENT_EXEC_STDIN | AGENT_EXEC_PTY))
		why = "exec has unknown flags";
	else if ((out->flags & AGENT_EXEC_PTY) && (!out->rows || !out->cols))
		why = "exec on a terminal of no size";
	else if (!out->argv[0] || !out->argv[0][0])
		why = "exec has an empty argv";
	if (!why) {
		for (char **e = out->env; *e; e++) {
			if (!strchr(*e, '=') || (*e)[0] == '=') {
				why = "exec env entry is not KEY=VALUE";
				break;
			}
		}
	}
	if (why) {
		snprintf(err, errlen, "%s", why);
		agent_exec_free(out);
		return -1;
	}
	return 0;
}

void agent_exec_free(struct agent_exec *e)
{
	free(e->cwd);
	agent_strv_free(e->argv);
	agent_strv_free(e->env);
	memset(e, 0, sizeof(*e));
}

void agent_exit_encode(struct agent_writer *w, const struct agent_exit *e)
{
	agent_put_u32(w, e->kind);
	agent_put_i32(w, e->code);
	agent_put_u64(w, e->duration_ms);
}

int agent_exit_decode(const struct agent_frame *f, struct agent_exit *out, char *err, size_t errlen)
{
	struct agent_reader r;
	agent_reader_init(&r, f);
	out->kind = agent_get_u32(&r);
	out->code = agent_get_i32(&r);
	out->duration_ms = agent_get_u64(&r);
	if (!agent_reader_done(&r)) {
		snprintf(err, errlen, "malformed exit payload");
		return -1;
	}
	if (out->kind > AGENT_EXIT_START_FAILED) {
		snprintf(err, errlen, "exit has unknown kind %u", out->kind);
		return -1;
	}
	return 0;
}

void agent_result_encode(struct agent_writer *w, int32_t status, const char *message)
{
	agent_put_i32(w, status);
	agent_put_str(w, message ? message : "");
}

int agent_result_decode(const struct agent_frame *f, struct agent_result *out, char *err,
			size_t errlen)
{
	struct agent_reader r;
	agent_reader_init(&r, f);
	out->status = agent_get_i32(&r);
	out->message = agent_get_str(&r);
	if (!agent_reader_done(&r)) {
		snprintf(err, errlen, "malformed %s payload", agent_type_name(f->h.type));
		agent_result_free(out);
		return -1;
	}
	return 0;
}

void agent_result_free(struct agent_result *r)
{
	free(r->message);
	r->message = NULL;
}
