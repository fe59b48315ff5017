/*
 * common/sse.c: a byte stream written as server-sent events comes back
 * exactly, "\r" and "\r\n" included, whatever pieces the client reads it
 * in; the parser takes every line end and ignores comments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bytes of every message event, reassembled; the types of the others. */
struct got {
	int64_t offset;
	struct buf bytes;
	char others[256];
	int events;
};

static int on_event(void *ctx, const struct sse_event *ev)
{
	struct got *g = ctx;
	g->events++;
	if (strcmp(ev->type, "message")) {
		size_t n = strlen(g->others);
		snprintf(g->others + n, sizeof(g->others) - n, "%s%s=%s", n ? " " : "", ev->type,
			 ev->data);
		return 0;
	}
	assert_int_equal(sse_event_bytes(ev, &g->offset, &g->bytes), 0);
	return 0;
}

/* Encodes data (in pieces of at most piece bytes, as a server reads a log) and parses it back. */
static void round_trip(const unsigned char *data, size_t len, size_t piece, size_t feed,
		       struct got *g, struct buf *wire)
{
	size_t done = 0, want = piece;
	while (done < len) {
		size_t n = len - done < want ? len - done : want;
		long k = sse_append_bytes(wire, (int64_t)done, data + done, n, done + n < len);
		assert_true(k >= 0);
		/* A character cut at the end of a read is read again whole, as the server does. */
		want = k == 0 ? want + 3 : piece;
		done += (size_t)k;
	}
	assert_int_equal(sse_append_event(wire, "end", NULL, "success"), 0);
	struct sse_parser p = {0};
	for (size_t i = 0; i < wire->len; i += feed) {
		size_t n = wire->len - i < feed ? wire->len - i : feed;
		assert_int_equal(sse_parse(&p, wire->data + i, n, on_event, g), 0);
	}
	sse_parser_free(&p);
}

static void test_every_byte_comes_back_through_the_events(void **state)
{
	unsigned char data[4096];
	srand(7);
	for (size_t i = 0; i < sizeof(data); i++) {
		int r = rand() % 8;
		data[i] = r == 0 ? '\r' : r == 1 ? '\n' : r == 2 ? 0 : (unsigned char)rand();
	}
	memcpy(data, "a\r\nb\r\rc\n\n\r", 10);
	data[sizeof(data) - 1] = '\r'; /* a stream may end in "\r" */
	size_t pieces[] = {1, 3, 64, 4096}, feeds[] = {1, 2, 7, 1000};
	for (size_t i = 0; i < 4; i++) {
		struct got g = {0};
		struct buf wire = {0};
		round_trip(data, sizeof(data), pieces[i], feeds[i], &g, &wire);
		assert_int_equal(g.bytes.len, sizeof(data));
		assert_memory_equal(g.bytes.data, data, sizeof(data));
		assert_int_equal(g.offset, sizeof(data));
		assert_string_equal(g.others, "end=success");
		buf_free(&g.bytes);
		buf_free(&wire);
	}
}

static void test_no_carriage_return_travels_inside_a_data_line(void **state)
{
	const char *log = "50%\r100%\r\ndone\n";
	struct buf wire = {0};
	size_t done = 0, len = strlen(log);
	while (done < len)
		done +=
		    (size_t)sse_append_bytes(&wire, (int64_t)done, log + done, len - done, false);
	assert_null(memchr(wire.data, '\r', wire.len));
	assert_string_equal(buf_cstr(&wire), "id: 4\ndata: 50%\n\n"
					     "id: 9\ndata: 100%\n\n"
					     "id: 15\ndata: \ndata: done\ndata: \n\n");
	buf_free(&wire);
}

static void test_a_cut_utf8_character_waits_for_its_rest(void **state)
{
	const char *text = "caf\xc3\xa9"; /* "café": é is two bytes */
	struct buf wire = {0};
	assert_int_equal(sse_append_bytes(&wire, 0, text, 4, true), 3);
	assert_string_equal(buf_cstr(&wire), "id: 3\ndata: caf\n\n");
	assert_int_equal(sse_append_bytes(&wire, 3, text + 3, 1, true), 0);
	/* Without more to come, what there is goes as it is. */
	assert_int_equal(sse_append_bytes(&wire, 3, text + 3, 1, false), 1);
	buf_free(&wire);
}

/* Each event as "TYPE|DATA|ID", one per line. */
static int record(void *ctx, const struct sse_event *ev)
{
	buf_appendf(ctx, "%s|%.*s|%s\n", ev->type, (int)ev->len, ev->data, ev->id);
	return 0;
}

static void test_the_parser_takes_every_line_end_and_skips_comments(void **state)
{
	const char *stream = "\xef\xbb\xbf: a comment\r\n"
			     "data: one\rdata:two\r\nid: 7\n\n"
			     "event: end\ndata\nid\n\n"
			     "retry: 10\nevent: nothing\n\n"
			     "data: not dispatched without a blank line";
	struct buf got = {0};
	struct sse_parser p = {0};
	/* Fed a byte at a time: a "\r\n" split between reads is one line end. */
	for (size_t i = 0; i < strlen(stream); i++)
		assert_int_equal(sse_parse(&p, stream + i, 1, record, &got), 0);
	sse_parser_free(&p);
	assert_string_equal(buf_cstr(&got), "message|one\ntwo|7\nend||\n");
	buf_free(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_byte_comes_back_through_the_events),
	    cmocka_unit_test(test_no_carriage_return_travels_inside_a_data_line),
	    cmocka_unit_test(test_a_cut_utf8_character_waits_for_its_rest),
	    cmocka_unit_test(test_the_parser_takes_every_line_end_and_skips_comments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
