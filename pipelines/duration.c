/*
 * Durations and sizes as the format writes them (docs/pipeline.md
 * "Values": durations 90s, 20m, 1h30m; sizes 512M, 1G).
 */
#include "pipelines/internal.h"

#include <ctype.h>
#include <string.h>

/* Reads 1 to 9 digits (no sign): enough for any sane value, never an overflow. */
static int read_number(const char **p, int64_t *out)
{
	const char *s = *p;
	int64_t v = 0;
	size_t n = 0;
	while (isdigit((unsigned char)s[n])) {
		if (++n > 9)
			return -EINVAL;
		v = v * 10 + (s[n - 1] - '0');
	}
	if (n == 0)
		return -EINVAL;
	*p = s + n;
	*out = v;
	return 0;
}

int pipe_parse_duration(const char *s, int64_t *out_ms)
{
	/* Largest first; each unit at most once: "1h30m", not "30m1h" or "1h1h". */
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"h", 3600000}, {"ms", 1}, {"m", 60000}, {"s", 1000}};
	static const int rank[] = {3, 0, 2, 1};
	int64_t total = 0;
	int last = 4;
	if (!*s)
		return -EINVAL;
	while (*s) {
		int64_t n;
		if (read_number(&s, &n))
			return -EINVAL;
		size_t u = 0;
		while (u < ARRAY_LEN(units) && strncmp(s, units[u].unit, strlen(units[u].unit)))
			u++;
		if (u == ARRAY_LEN(units) || rank[u] >= last)
			return -EINVAL;
		last = rank[u];
		s += strlen(units[u].unit);
		total += n * units[u].ms;
	}
	if (total <= 0)
		return -EINVAL;
	*out_ms = total;
	return 0;
}

int pipe_parse_size_mb(const char *s, int64_t *out_mb)
{
	int64_t n;
	if (read_number(&s, &n) || n <= 0)
		return -EINVAL;
	int64_t scale;
	switch (*s++) {
	case 'M':
		scale = 1;
		break;
	case 'G':
		scale = 1024;
		break;
	case 'T':
		scale = 1024 * 1024;
		break;
	default:
		return -EINVAL;
	}
	/* "512M", "512Mi", "512MB" and "512MiB" all mean 512 MiB. */
	if (*s == 'i')
		s++;
	if (*s == 'B')
		s++;
	if (*s)
		return -EINVAL;
	*out_mb = n * scale;
	return 0;
}
