/*
 * Server-sent events, both ways: a byte stream written as events that
 * give back exactly its bytes, and the client's parser (WHATWG HTML,
 * "Server-sent events", 9.2.6 "Interpreting an event stream").
 */
#include "common/common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ------------------------------------------------------------------------ */

/* How many bytes at the end of b[0..len) start a UTF-8 character that needs more. */
static size_t cut_character(const unsigned char *b, size_t len)
{
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned char c = b[len - back];
		if ((c & 0xC0) == 0x80)
			continue; /* a continuation byte: look further back */
		size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
		return need > back ? back : 0;
	}
	return 0;
}

/* Appends "data: " lines for text[0..len), split at each "\n". */
static int append_data(struct buf *out, const char *text, size_t len)
{
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && text[i] != '\n')
			continue;
		if (buf_append(out, "data: ", 6) || buf_append(out, text + start, i - start) ||
		    buf_append(out, "\n", 1))
			return -ENOMEM;
		start = i + 1;
	}
	return 0;
}

long sse_append_bytes(struct buf *out, int64_t offset, const void *bytes, size_t len, bool more)
{
	const unsigned char *b = bytes;
	const unsigned char *cr = memchr(b, '\r', len);
	size_t n = cr ? (size_t)(cr - b) + 1 : len;
	if (!cr && more)
		n -= cut_character(b, n);
	if (n == 0)
		return 0;
	size_t data_len = b[n - 1] == '\r' ? n - 1 : n;
	if (buf_appendf(out, "id: %" PRId64 "\n", offset + (int64_t)n) ||
	    append_data(out, (const char *)b, data_len) || buf_append(out, "\n", 1))
		return -ENOMEM;
	return (long)n;
}

int sse_append_event(struct buf *out, const char *type, const char *id, const char *text)
{
	/* Any line end in text ends a data line: "\r" and "\r\n" become "\n". */
	struct buf t = {0};
	for (const char *p = text; *p; p++) {
		char c = *p == '\r' ? '\n' : *p;
		if (*p == '\r' && p[1] == '\n')
			p++;
		if (buf_append(&t, &c, 1)) {
			buf_free(&t);
			return -ENOMEM;
		}
	}
	int rc = 0;
	if (type && buf_appendf(out, "event: %s\n", type))
		rc = -ENOMEM;
	if (!rc && id && buf_appendf(out, "id: %s\n", id))
		rc = -ENOMEM;
	if (!rc)
		rc = append_data(out, t.data ? (const char *)t.data : "", t.len);
	if (!rc && buf_append(out, "\n", 1))
		rc = -ENOMEM;
	buf_free(&t);
	return rc;
}

/* ---- reading ------------------------------------------------------------------------ */

static int dispatch(struct sse_parser *p, sse_event_fn fn, void *ctx)
{
	if (!p->data.len) { /* an event without data is not dispatched */
		p->type[0] = 0;
		return 0;
	}
	p->data.len--; /* the "\n" after the last data line */
	if (buf_append(&p->data, "", 1))
		return -ENOMEM;
	struct sse_event ev = {.type = p->type[0] ? p->type : "message",
			       .data = (const char *)p->data.data,
			       .len = p->data.len - 1,
			       .id = p->id};
	int rc = fn(ctx, &ev);
	p->data.len = 0;
	p->type[0] = 0;
	return rc;
}

/* One line of the stream (without its end): a field, a comment, or the blank line that dispatches.
 */
static int process_line(struct sse_parser *p, sse_event_fn fn, void *ctx)
{
	const char *line = p->line.data ? (const char *)p->line.data : "";
	size_t len = p->line.len;
	if (len == 0)
		return dispatch(p, fn, ctx);
	if (line[0] == ':')
		return 0;
	const char *colon = memchr(line, ':', len);
	size_t name_len = colon ? (size_t)(colon - line) : len;
	const char *value = colon ? colon + 1 : line + len;
	size_t value_len = (size_t)(line + len - value);
	if (value_len && *value == ' ') {
		value++;
		value_len--;
	}
	if (name_len == 4 && !memcmp(line, "data", 4)) {
		if (buf_append(&p->data, value, value_len) || buf_append(&p->data, "\n", 1))
			return -ENOMEM;
	} else if (name_len == 5 && !memcmp(line, "event", 5)) {
		snprintf(p->type, sizeof(p->type), "%.*s", (int)value_len, value);
	} else if (name_len == 2 && !memcmp(line, "id", 2) && !memchr(value, 0, value_len)) {
		snprintf(p->id, sizeof(p->id), "%.*s", (int)value_len, value);
	}
	return 0; /* retry and unknown fields: ignored */
}

int sse_parse(struct sse_parser *p, const void *data, size_t len, sse_event_fn fn, void *ctx)
{
	const unsigned char *b = data;
	for (size_t i = 0; i < len; i++) {
		if (!p->started) {
			/* A UTF-8 byte order mark may open the stream. */
			static const unsigned char bom[] = {0xEF, 0xBB, 0xBF};
			size_t have = p->line.len;
			if (have < 3 && b[i] == bom[have]) {
				if (buf_append(&p->line, &b[i], 1))
					return -ENOMEM;
				if (p->line.len == 3) {
					p->line.len = 0;
					p->started = true;
				}
				continue;
			}
			p->started = true;
		}
		bool after_cr = p->cr;
		p->cr = b[i] == '\r';
		if (b[i] == '\n' && after_cr)
			continue; /* the "\n" of a "\r\n": that line has ended */
		if (b[i] == '\r' || b[i] == '\n') {
			int rc = process_line(p, fn, ctx);
			p->line.len = 0;
			if (rc)
				return rc;
			continue;
		}
		if (buf_append(&p->line, &b[i], 1))
			return -ENOMEM;
	}
	return 0;
}

void sse_parser_free(struct sse_parser *p)
{
	buf_free(&p->line);
	buf_free(&p->data);
}

int sse_event_bytes(const struct sse_event *ev, int64_t *offset, struct buf *out)
{
	char *end = NULL;
	long long next = strtoll(ev->id, &end, 10);
	if (!*ev->id || *end || next < *offset + (long long)ev->len ||
	    next > *offset + (long long)ev->len + 1)
		return -EINVAL;
	if (buf_append(out, ev->data, ev->len) ||
	    (next == *offset + (long long)ev->len + 1 && buf_append(out, "\r", 1)))
		return -ENOMEM;
	*offset = next;
	return 0;
}
