/* The agent wire protocol: round trips and every kind of malformed frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/protocol.h"

#include <stdlib.h>
#include <string.h>

/* Encodes a frame with the given payload bytes into w. */
static long frame(struct agent_writer *w, uint16_t type, uint32_t stream, uint64_t seq,
		  const void *payload, size_t len)
{
	agent_writer_begin(w);
	agent_put_bytes(w, payload, len);
	return agent_writer_finish(w, type, stream, seq);
}

/* Feeds bytes to a fresh decoder and returns agent_decoder_next's result. */
static int decode_one(bool from_guest, const uint8_t *bytes, size_t len, struct agent_decoder *d,
		      struct agent_frame *f, char *err)
{
	agent_decoder_init(d, from_guest);
	assert_int_equal(agent_decoder_feed(d, bytes, len), 0);
	return agent_decoder_next(d, f, err, 256);
}

static void test_exec_round_trips(void **state)
{
	const char *argv[] = {"sh", "-c", "echo hi", NULL};
	const char *env[] = {"A=1", "PATH=/bin", NULL};
	struct agent_exec in = {.flags = AGENT_EXEC_STDIN,
				.timeout_ms = 1500,
				.cwd = "/work/src",
				.argv = (char **)argv,
				.env = (char **)env};
	struct agent_writer w = {0};
	agent_writer_begin(&w);
	agent_exec_encode(&w, &in);
	long n = agent_writer_finish(&w, AGENT_EXEC, 7, 3);
	assert_true(n > AGENT_HEADER_SIZE);

	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	agent_decoder_init(&d, false);
	d.expect_seq = 3;
	assert_int_equal(agent_decoder_feed(&d, w.buf, (size_t)n), 0);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), 1);
	assert_int_equal(f.h.type, AGENT_EXEC);
	assert_int_equal(f.h.stream, 7);
	assert_int_equal(f.h.seq, 3);

	struct agent_exec out;
	assert_int_equal(agent_exec_decode(&f, &out, err, sizeof(err)), 0);
	assert_int_equal(out.flags, AGENT_EXEC_STDIN);
	assert_int_equal(out.timeout_ms, 1500);
	assert_string_equal(out.cwd, "/work/src");
	assert_string_equal(out.argv[2], "echo hi");
	assert_null(out.argv[3]);
	assert_string_equal(out.env[1], "PATH=/bin");
	assert_null(out.env[2]);
	agent_exec_free(&out);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_exit_round_trips(void **state)
{
	struct agent_exit in = {.kind = AGENT_EXIT_SIGNALED, .code = 9, .duration_ms = 1234};
	struct agent_writer w = {0};
	agent_writer_begin(&w);
	agent_exit_encode(&w, &in);
	long n = agent_writer_finish(&w, AGENT_EXIT, 1, 1);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(true, w.buf, (size_t)n, &d, &f, err), 1);
	struct agent_exit out;
	assert_int_equal(agent_exit_decode(&f, &out, err, sizeof(err)), 0);
	assert_int_equal(out.kind, AGENT_EXIT_SIGNALED);
	assert_int_equal(out.code, 9);
	assert_int_equal(out.duration_ms, 1234);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_frames_split_across_reads_reassemble(void **state)
{
	struct agent_writer w = {0};
	long n = frame(&w, AGENT_STDOUT, 2, 1, "hello world", 11);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	agent_decoder_init(&d, true);
	for (long i = 0; i < n - 1; i++) {
		assert_int_equal(agent_decoder_feed(&d, w.buf + i, 1), 0);
		assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), 0);
	}
	assert_int_equal(agent_decoder_feed(&d, w.buf + n - 1, 1), 0);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), 1);
	assert_int_equal(f.h.len, 11);
	assert_memory_equal(f.payload, "hello world", 11);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_truncated_frame_waits_for_more(void **state)
{
	struct agent_writer w = {0};
	long n = frame(&w, AGENT_STDOUT, 2, 1, "abc", 3);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	/* A truncated frame is never handed out; the stream just needs more bytes. */
	assert_int_equal(decode_one(true, w.buf, (size_t)n - 1, &d, &f, err), 0);
	agent_decoder_free(&d);
	assert_int_equal(decode_one(true, w.buf, AGENT_HEADER_SIZE - 1, &d, &f, err), 0);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_truncated_payload_field_is_rejected(void **state)
{
	/* An exec whose string claims more bytes than the frame holds. */
	struct agent_writer w = {0};
	agent_writer_begin(&w);
	agent_put_u32(&w, 0);
	agent_put_u32(&w, 0);
	agent_put_u32(&w, 1000); /* cwd length */
	agent_put_bytes(&w, "/x", 2);
	long n = agent_writer_finish(&w, AGENT_EXEC, 1, 1);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(false, w.buf, (size_t)n, &d, &f, err), 1);
	struct agent_exec e;
	assert_int_equal(agent_exec_decode(&f, &e, err, sizeof(err)), -1);
	assert_string_equal(err, "malformed exec payload");
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_oversized_length_is_rejected(void **state)
{
	uint8_t hdr[AGENT_HEADER_SIZE];
	struct agent_header h = {.len = AGENT_MAX_PAYLOAD + 1, .type = AGENT_STDOUT, .seq = 1};
	agent_header_encode(&h, hdr);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(true, hdr, sizeof(hdr), &d, &f, err), -1);
	assert_non_null(strstr(err, "exceeds the limit"));
	/* The decoder stays failed: nothing after a broken frame is trusted. */
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), -1);
	agent_decoder_free(&d);
}

static void test_unknown_type_is_rejected(void **state)
{
	struct agent_writer w = {0};
	long n = frame(&w, 200, 1, 1, NULL, 0);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(true, w.buf, (size_t)n, &d, &f, err), -1);
	assert_non_null(strstr(err, "unexpected frame type 200"));
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_type_from_the_wrong_side_is_rejected(void **state)
{
	/* A guest may not send EXEC; a host may not send STDOUT. */
	struct agent_writer w = {0};
	long n = frame(&w, AGENT_EXEC, 1, 1, NULL, 0);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(true, w.buf, (size_t)n, &d, &f, err), -1);
	agent_decoder_free(&d);
	n = frame(&w, AGENT_STDOUT, 1, 1, NULL, 0);
	assert_int_equal(decode_one(false, w.buf, (size_t)n, &d, &f, err), -1);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_bad_magic_is_rejected(void **state)
{
	struct agent_writer w = {0};
	long n = frame(&w, AGENT_STDOUT, 1, 1, "x", 1);
	w.buf[0] ^= 0xff;
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(true, w.buf, (size_t)n, &d, &f, err), -1);
	assert_non_null(strstr(err, "magic"));
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_bad_sequence_is_rejected(void **state)
{
	struct agent_writer w = {0};
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	agent_decoder_init(&d, true);
	long n = frame(&w, AGENT_STDOUT, 1, 5, "a", 1);
	assert_int_equal(agent_decoder_feed(&d, w.buf, (size_t)n), 0);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), 1);
	/* 6 is next; 8 skips two frames. */
	n = frame(&w, AGENT_STDOUT, 1, 8, "b", 1);
	assert_int_equal(agent_decoder_feed(&d, w.buf, (size_t)n), 0);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), -1);
	assert_string_equal(err, "stdout frame has sequence number 8, expected 6");
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_replayed_frame_is_rejected(void **state)
{
	struct agent_writer w = {0};
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	agent_decoder_init(&d, true);
	long n = frame(&w, AGENT_STDOUT, 1, 1, "a", 1);
	assert_int_equal(agent_decoder_feed(&d, w.buf, (size_t)n), 0);
	assert_int_equal(agent_decoder_feed(&d, w.buf, (size_t)n), 0);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), 1);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), -1);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_hello_resets_the_expected_sequence(void **state)
{
	struct agent_writer w = {0};
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	agent_decoder_init(&d, false);
	long n = frame(&w, AGENT_PING, 0, 1, "p", 1);
	agent_decoder_feed(&d, w.buf, (size_t)n);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), 1);
	/* A reconnecting host starts over at any seq with a hello. */
	agent_writer_begin(&w);
	agent_put_u32(&w, AGENT_PROTOCOL_VERSION);
	agent_put_u64(&w, 0);
	n = agent_writer_finish(&w, AGENT_HELLO, 0, 100);
	agent_decoder_feed(&d, w.buf, (size_t)n);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), 1);
	n = frame(&w, AGENT_PING, 0, 101, "p", 1);
	agent_decoder_feed(&d, w.buf, (size_t)n);
	assert_int_equal(agent_decoder_next(&d, &f, err, sizeof(err)), 1);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_hello_reply_must_be_unsequenced(void **state)
{
	struct agent_writer w = {0};
	long n = frame(&w, AGENT_HELLO_REPLY, 0, 4, NULL, 0);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(true, w.buf, (size_t)n, &d, &f, err), -1);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_exec_without_argv_is_rejected(void **state)
{
	const char *argv[] = {NULL};
	struct agent_exec in = {.argv = (char **)argv};
	struct agent_writer w = {0};
	agent_writer_begin(&w);
	agent_exec_encode(&w, &in);
	long n = agent_writer_finish(&w, AGENT_EXEC, 1, 1);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(false, w.buf, (size_t)n, &d, &f, err), 1);
	struct agent_exec e;
	assert_int_equal(agent_exec_decode(&f, &e, err, sizeof(err)), -1);
	assert_string_equal(err, "exec has an empty argv");
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_string_list_count_beyond_payload_is_rejected(void **state)
{
	/* A count of a billion strings in a 12-byte payload must not allocate or read past it. */
	struct agent_writer w = {0};
	agent_writer_begin(&w);
	agent_put_u32(&w, 0);
	agent_put_u32(&w, 0);
	agent_put_str(&w, "");
	agent_put_u32(&w, 1000000000u);
	long n = agent_writer_finish(&w, AGENT_EXEC, 1, 1);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(false, w.buf, (size_t)n, &d, &f, err), 1);
	struct agent_exec e;
	assert_int_equal(agent_exec_decode(&f, &e, err, sizeof(err)), -1);
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_embedded_nul_in_string_is_rejected(void **state)
{
	struct agent_writer w = {0};
	agent_writer_begin(&w);
	agent_put_u32(&w, 3);
	agent_put_bytes(&w, "a\0b", 3);
	long n = agent_writer_finish(&w, AGENT_GET, 1, 1);
	struct agent_decoder d;
	struct agent_frame f;
	char err[256];
	assert_int_equal(decode_one(false, w.buf, (size_t)n, &d, &f, err), 1);
	struct agent_reader r;
	agent_reader_init(&r, &f);
	assert_null(agent_get_str(&r));
	assert_false(agent_reader_done(&r));
	agent_decoder_free(&d);
	agent_writer_free(&w);
}

static void test_payload_over_the_limit_cannot_be_encoded(void **state)
{
	struct agent_writer w = {0};
	agent_writer_begin(&w);
	uint8_t *big = calloc(1, AGENT_MAX_PAYLOAD + 1);
	agent_put_bytes(&w, big, AGENT_MAX_PAYLOAD + 1);
	assert_int_equal(agent_writer_finish(&w, AGENT_STDOUT, 1, 1), -1);
	free(big);
	agent_writer_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exec_round_trips),
	    cmocka_unit_test(test_exit_round_trips),
	    cmocka_unit_test(test_frames_split_across_reads_reassemble),
	    cmocka_unit_test(test_truncated_frame_waits_for_more),
	    cmocka_unit_test(test_truncated_payload_field_is_rejected),
	    cmocka_unit_test(test_oversized_length_is_rejected),
	    cmocka_unit_test(test_unknown_type_is_rejected),
	    cmocka_unit_test(test_type_from_the_wrong_side_is_rejected),
	    cmocka_unit_test(test_bad_magic_is_rejected),
	    cmocka_unit_test(test_bad_sequence_is_rejected),
	    cmocka_unit_test(test_replayed_frame_is_rejected),
	    cmocka_unit_test(test_hello_resets_the_expected_sequence),
	    cmocka_unit_test(test_hello_reply_must_be_unsequenced),
	    cmocka_unit_test(test_exec_without_argv_is_rejected),
	    cmocka_unit_test(test_string_list_count_beyond_payload_is_rejected),
	    cmocka_unit_test(test_embedded_nul_in_string_is_rejected),
	    cmocka_unit_test(test_payload_over_the_limit_cannot_be_encoded),
	};
	return cmocka_run_group_tests_name("agent protocol", tests, NULL, NULL);
}
