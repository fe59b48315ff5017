/*
 * The capped log (runner/log_cap.c): a log within its limit is written
 * whole; a flood keeps its head and its tail around one notice that
 * counts the dropped bytes exactly, and never passes the limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pipelines/pipelines.h"
#include "runner/runner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the log writes, collected. */
struct sink {
	struct buf out;
	int calls;
	int fail_after; /* > 0: the call after that many fails with -ENOSPC */
};

static int collect(void *ctx, const void *data, size_t len)
{
	struct sink *s = ctx;
	if (s->fail_after && s->calls >= s->fail_after)
		return -ENOSPC;
	s->calls++;
	return buf_append(&s->out, data, len);
}

/* n bytes of numbered lines ("000001 ...\n"), so that any cut shows. */
static uint8_t *lines(size_t n)
{
	uint8_t *p = malloc(n);
	assert_non_null(p);
	char line[32];
	for (size_t at = 0, k = 0; at < n; k++) {
		int len = snprintf(line, sizeof(line), "%06zu yyyyyyyy\n", k);
		size_t take = n - at < (size_t)len ? n - at : (size_t)len;
		memcpy(p + at, line, take);
		at += take;
	}
	return p;
}

/* Feeds data in pieces of 1, 2, 3 ... 97 bytes, cycling. */
static void feed(struct runner_log_cap *c, const uint8_t *data, size_t n)
{
	for (size_t at = 0, piece = 1; at < n; piece = piece % 97 + 1) {
		size_t take = n - at < piece ? n - at : piece;
		assert_true(runner_log_cap_write(c, data + at, take) >= 0);
		at += take;
	}
}

static void test_a_log_within_its_limit_is_written_whole(void **state)
{
	struct sink s = {0};
	struct runner_log_cap *c;
	assert_int_equal(runner_log_cap_new(1000, collect, &s, &c, NULL), 0);
	uint8_t *data = lines(1000);
	feed(c, data, 1000);
	assert_int_equal(runner_log_cap_finish(c), 0);
	assert_int_equal(s.out.len, 1000);
	assert_memory_equal(s.out.data, data, 1000);
	assert_int_equal(runner_log_cap_dropped(c), 0);
	runner_log_cap_free(c);
	free(data);
	buf_free(&s.out);
}

static void test_the_head_goes_through_at_once_and_the_rest_at_the_end(void **state)
{
	/* limit 1000: a tail of 500, a head of 1000 - 500 - RUNNER_LOG_NOTICE_MAX. */
	size_t head = 1000 - 500 - RUNNER_LOG_NOTICE_MAX;
	struct sink s = {0};
	struct runner_log_cap *c;
	assert_int_equal(runner_log_cap_new(1000, collect, &s, &c, NULL), 0);
	uint8_t *data = lines(head + 100);
	assert_int_equal(runner_log_cap_write(c, data, head - 50), (ssize_t)(head - 50));
	assert_int_equal(runner_log_cap_write(c, data + head - 50, 150), 50);
	assert_int_equal(runner_log_cap_write(c, data + head + 100, 0), 0);
	assert_int_equal(s.out.len, head);
	assert_int_equal(runner_log_cap_finish(c), 0);
	assert_int_equal(s.out.len, head + 100);
	assert_memory_equal(s.out.data, data, head + 100);
	assert_true(runner_log_cap_write(c, "late", 4) < 0);
	runner_log_cap_free(c);
	free(data);
	buf_free(&s.out);
}

/* Checks a cut log: head, one notice, tail, and exact accounting. */
static void check_cut(const struct buf *out, const uint8_t *data, size_t n, int64_t limit,
		      size_t head, size_t tail)
{
	assert_true((int64_t)out->len <= limit);
	assert_memory_equal(out->data, data, head);
	assert_memory_equal(out->data + out->len - tail, data + n - tail, tail);
	const char *notice = (const char *)out->data + head;
	size_t notice_len = out->len - head - tail;
	assert_true(notice_len <= RUNNER_LOG_NOTICE_MAX);
	char text[RUNNER_LOG_NOTICE_MAX + 1];
	memcpy(text, notice, notice_len);
	text[notice_len] = 0;
	char want[RUNNER_LOG_NOTICE_MAX + 1];
	snprintf(want, sizeof(want),
		 "%s==> log cut: %zu bytes dropped here (log-limit %s keeps the first %zu and the "
		 "last %zu bytes)\n",
		 data[head - 1] == '\n' ? "" : "\n", n - head - tail,
		 limit == 64LL << 20 ? "64M" : "1000 bytes", head, tail);
	assert_string_equal(text, want);
}

static void test_a_flood_keeps_head_and_tail_around_a_notice(void **state)
{
	size_t n = 100000, tail = 500, head = 1000 - tail - RUNNER_LOG_NOTICE_MAX;
	struct sink s = {0};
	struct runner_log_cap *c;
	assert_int_equal(runner_log_cap_new(1000, collect, &s, &c, NULL), 0);
	uint8_t *data = lines(n);
	feed(c, data, n);
	assert_int_equal(s.out.len, head); /* the tail waits for the end */
	assert_int_equal(runner_log_cap_dropped(c), (int64_t)(n - head - tail));
	assert_int_equal(runner_log_cap_finish(c), 0);
	assert_int_equal(runner_log_cap_dropped(c), (int64_t)(n - head - tail));
	check_cut(&s.out, data, n, 1000, head, tail);
	runner_log_cap_free(c);
	free(data);
	buf_free(&s.out);
}

static void test_one_byte_past_the_limit_is_cut(void **state)
{
	size_t tail = 500, head = 1000 - tail - RUNNER_LOG_NOTICE_MAX;
	for (size_t n = 999; n <= 1001; n++) {
		struct sink s = {0};
		struct runner_log_cap *c;
		assert_int_equal(runner_log_cap_new(1000, collect, &s, &c, NULL), 0);
		uint8_t *data = lines(n);
		/* One piece bigger than the whole ring, after the head. */
		assert_int_equal(runner_log_cap_write(c, data, n), (ssize_t)head);
		assert_int_equal(runner_log_cap_finish(c), 0);
		if (n <= 1000) {
			assert_int_equal(s.out.len, n);
			assert_memory_equal(s.out.data, data, n);
		} else {
			check_cut(&s.out, data, n, 1000, head, tail);
		}
		runner_log_cap_free(c);
		free(data);
		buf_free(&s.out);
	}
}

static void test_the_default_limit_caps_a_flood_at_64_mib(void **state)
{
	/*
	 * 80 MiB in 64 KiB writes: the tail is RUNNER_LOG_TAIL_MAX, the log exactly 64 MiB at most.
	 */
	int64_t limit = PIPE_DEFAULT_LOG_LIMIT;
	size_t n = 80u << 20, tail = RUNNER_LOG_TAIL_MAX;
	size_t head = (size_t)limit - tail - RUNNER_LOG_NOTICE_MAX;
	struct sink s = {0};
	struct runner_log_cap *c;
	assert_int_equal(runner_log_cap_new(limit, collect, &s, &c, NULL), 0);
	uint8_t *data = lines(n);
	for (size_t at = 0; at < n; at += 65536)
		assert_true(runner_log_cap_write(c, data + at, 65536) >= 0);
	assert_int_equal(runner_log_cap_finish(c), 0);
	check_cut(&s.out, data, n, limit, head, tail);
	runner_log_cap_free(c);
	free(data);
	buf_free(&s.out);
}

static void test_a_failing_writer_stops_the_log(void **state)
{
	struct sink s = {.fail_after = 1};
	struct runner_log_cap *c;
	assert_int_equal(runner_log_cap_new(1000, collect, &s, &c, NULL), 0);
	assert_int_equal(runner_log_cap_write(c, "first\n", 6), 6);
	assert_int_equal(runner_log_cap_write(c, "second\n", 7), -ENOSPC);
	assert_int_equal(runner_log_cap_write(c, "third\n", 6), -ENOSPC);
	assert_int_equal(runner_log_cap_finish(c), -ENOSPC);
	assert_int_equal(s.out.len, 6);
	runner_log_cap_free(c);
	buf_free(&s.out);
}

static void test_a_limit_below_the_least_is_refused(void **state)
{
	struct sink s = {0};
	struct runner_log_cap *c = (void *)1;
	struct vmci_err err = {0};
	assert_int_equal(runner_log_cap_new(RUNNER_LOG_MIN_LIMIT - 1, collect, &s, &c, &err),
			 -EINVAL);
	assert_null(c);
	assert_non_null(strstr(err.msg, "log limit"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_log_within_its_limit_is_written_whole),
	    cmocka_unit_test(test_the_head_goes_through_at_once_and_the_rest_at_the_end),
	    cmocka_unit_test(test_a_flood_keeps_head_and_tail_around_a_notice),
	    cmocka_unit_test(test_one_byte_past_the_limit_is_cut),
	    cmocka_unit_test(test_the_default_limit_caps_a_flood_at_64_mib),
	    cmocka_unit_test(test_a_failing_writer_stops_the_log),
	    cmocka_unit_test(test_a_limit_below_the_least_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
