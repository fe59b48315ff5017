/* common/units.c: the one grammar for durations and sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"

#include <errno.h>

static int64_t duration(const char *text, unsigned flags)
{
	int64_t ms = -1;
	if (parse_duration(text, flags, &ms))
		fail_msg("'%s' should be a duration", text);
	return ms;
}

static int64_t size(const char *text, unsigned flags)
{
	int64_t bytes = -1;
	if (parse_size(text, flags, &bytes))
		fail_msg("'%s' should be a size", text);
	return bytes;
}

static void test_durations_add_their_units(void **state)
{
	assert_int_equal(duration("90s", 0), 90000);
	assert_int_equal(duration("20m", 0), 20 * 60000);
	assert_int_equal(duration("1h30m", 0), 90 * 60000);
	assert_int_equal(duration("1h1m1s1ms", 0), 3661001);
	assert_int_equal(duration("250ms", 0), 250);
	assert_int_equal(duration("0s", 0), 0);
	assert_int_equal(duration("999999999h", 0), INT64_C(999999999) * 3600000);
}

static void test_duration_units_go_largest_first_each_once(void **state)
{
	int64_t ms = 7;
	assert_int_equal(parse_duration("30m1h", 0, &ms), -EINVAL);
	assert_int_equal(parse_duration("1h1h", 0, &ms), -EINVAL);
	assert_int_equal(parse_duration("5ms1s", 0, &ms), -EINVAL);
	assert_int_equal(parse_duration("1s1s", 0, &ms), -EINVAL);
	assert_int_equal(ms, 7); /* untouched on error */
}

static void test_a_bare_number_is_seconds_only_when_asked(void **state)
{
	int64_t ms;
	assert_int_equal(duration("30", DURATION_BARE_SECONDS), 30000);
	assert_int_equal(duration("0", DURATION_BARE_SECONDS), 0);
	assert_int_equal(duration("2m", DURATION_BARE_SECONDS), 120000);
	assert_int_equal(parse_duration("30", 0, &ms), -EINVAL);
	/* A trailing number after units is never seconds: "1h30" is ambiguous. */
	assert_int_equal(parse_duration("1h30", DURATION_BARE_SECONDS, &ms), -EINVAL);
}

static void test_malformed_durations_are_refused(void **state)
{
	static const char *const bad[] = {
	    "",	  "s",	  "-5s",  "+5s", "5 s", " 5s", "5s ",
	    "5x", "5sec", "1.5h", "5S",	 "h1",	"1d",  "1234567890s" /* more than 9 digits */};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int64_t ms;
		if (parse_duration(bad[i], DURATION_BARE_SECONDS, &ms) != -EINVAL)
			fail_msg("'%s' should be refused", bad[i]);
	}
}

static void test_sizes_are_binary_multiples_in_any_spelling(void **state)
{
	assert_int_equal(size("512M", 0), INT64_C(512) << 20);
	assert_int_equal(size("4G", 0), INT64_C(4) << 30);
	assert_int_equal(size("2T", 0), INT64_C(2) << 40);
	assert_int_equal(size("64K", 0), INT64_C(64) << 10);
	static const char *const two_gib[] = {"2G", "2g", "2Gi", "2GB", "2GiB", "2giB"};
	for (size_t i = 0; i < ARRAY_LEN(two_gib); i++)
		assert_int_equal(size(two_gib[i], 0), INT64_C(2) << 30);
	int64_t bytes;
	assert_int_equal(parse_size("2gib", 0, &bytes), -EINVAL); /* "b" is not bytes */
}

static void test_a_bare_size_is_bytes_unless_a_unit_is_needed(void **state)
{
	int64_t bytes;
	assert_int_equal(size("1048576", 0), 1048576);
	assert_int_equal(size("10737418240", 0), INT64_C(10) << 30);
	assert_int_equal(parse_size("1024", SIZE_NEED_UNIT, &bytes), -EINVAL);
	assert_int_equal(size("1024M", SIZE_NEED_UNIT), INT64_C(1) << 30);
}

static void test_malformed_and_huge_sizes_are_refused(void **state)
{
	static const char *const bad[] = {"",	   "G",	  "-1G",	  "+1G",
					  " 1G",   "1G ", "4X",		  "1.5G",
					  "1GiBB", "1iB", "99999999999T", "9223372036854775808"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int64_t bytes;
		if (parse_size(bad[i], 0, &bytes) != -EINVAL)
			fail_msg("'%s' should be refused", bad[i]);
	}
	assert_int_equal(size("9223372036854775807", 0), INT64_MAX);
	assert_int_equal(size("8388607T", 0), INT64_C(8388607) << 40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_durations_add_their_units),
	    cmocka_unit_test(test_duration_units_go_largest_first_each_once),
	    cmocka_unit_test(test_a_bare_number_is_seconds_only_when_asked),
	    cmocka_unit_test(test_malformed_durations_are_refused),
	    cmocka_unit_test(test_sizes_are_binary_multiples_in_any_spelling),
	    cmocka_unit_test(test_a_bare_size_is_bytes_unless_a_unit_is_needed),
	    cmocka_unit_test(test_malformed_and_huge_sizes_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
