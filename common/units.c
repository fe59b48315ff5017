/*
 * Durations and sizes as people write them: one grammar for the command
 * line (--timeout 90s), pipeline files (timeout: 1h30m, memory: 2G) and
 * image recipes (size: 4GiB).
 */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

/* Durations: at most this many digits per number, so no sum can overflow. */
#define DURATION_MAX_DIGITS 9

int parse_duration(const char *text, unsigned flags, int64_t *out_ms)
{
	/* Largest first, each unit at most once: "1h30m", not "30m1h" or "1h1h". */
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
	const char *p = text;
	int64_t total = 0;
	size_t next = 0; /* the largest unit still allowed */
	if (!*p)
		return -EINVAL;
	while (*p) {
		int64_t n = 0;
		size_t digits = 0;
		while (p[digits] >= '0' && p[digits] <= '9') {
			if (++digits > DURATION_MAX_DIGITS)
				return -EINVAL;
			n = n * 10 + (p[digits - 1] - '0');
		}
		if (!digits)
			return -EINVAL;
		p += digits;
		if (!*p && p == text + digits && (flags & DURATION_BARE_SECONDS)) {
			*out_ms = n * 1000;
			return 0;
		}
		/* "ms" before "m": the longest unit that fits the text. */
		size_t u = ARRAY_LEN(units);
		size_t ulen = 0;
		for (size_t i = 0; i < ARRAY_LEN(units); i++) {
			size_t l = strlen(units[i].unit);
			if (l > ulen && !strncmp(p, units[i].unit, l)) {
				u = i;
				ulen = l;
			}
		}
		if (u == ARRAY_LEN(units) || u < next)
			return -EINVAL;
		next = u + 1;
		p += ulen;
		total += n * units[u].ms;
	}
	*out_ms = total;
	return 0;
}

int parse_size(const char *text, unsigned flags, int64_t *out_bytes)
{
	static const char multiples[] = "KMGT";
	const char *p = text;
	uint64_t n = 0;
	if (!(*p >= '0' && *p <= '9'))
		return -EINVAL;
	while (*p >= '0' && *p <= '9') {
		uint64_t digit = (uint64_t)(*p++ - '0');
		if (n > ((uint64_t)INT64_MAX - digit) / 10)
			return -EINVAL;
		n = n * 10 + digit;
	}
	unsigned shift = 0;
	char unit = (char)toupper((unsigned char)*p); /* either case */
	const char *m = unit ? strchr(multiples, unit) : NULL;
	if (m) {
		shift = 10u * (unsigned)(m - multiples + 1);
		p++;
		/* "2G", "2Gi", "2GB" and "2GiB" all mean 2 GiB. */
		if (*p == 'i')
			p++;
		if (*p == 'B')
			p++;
	} else if (flags & SIZE_NEED_UNIT) {
		return -EINVAL;
	}
	if (*p || n > (uint64_t)INT64_MAX >> shift)
		return -EINVAL;
	*out_bytes = (int64_t)(n << shift);
	return 0;
}
