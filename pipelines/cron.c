/*
 * Cron expressions of `on.schedule`: the five POSIX fields (minute hour
 * day-of-month month day-of-week), with `*`, ranges `a-b`, steps `/n`,
 * lists `a,b` and the names JAN-DEC and SUN-SAT, as GitHub Actions
 * accepts them. Checked here so a bad schedule fails validation, not the
 * first night it should run.
 */
#include "pipelines/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct field {
	const char *name;
	int min, max;
	const char *const *names; /* names[i] means min + i */
};

static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
				     "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const struct field fields[] = {
    {"minute", 0, 59, NULL},  {"hour", 0, 23, NULL},	   {"day-of-month", 1, 31, NULL},
    {"month", 1, 12, months}, {"day-of-week", 0, 7, days},
};

/* A number or (for month and day-of-week) a three-letter name. -1: neither. */
static int read_value(const struct field *f, const char **p)
{
	const char *s = *p;
	if (isdigit((unsigned char)*s)) {
		int v = 0, n = 0;
		while (isdigit((unsigned char)*s) && n < 3) {
			v = v * 10 + (*s++ - '0');
			n++;
		}
		if (isdigit((unsigned char)*s))
			return -1;
		*p = s;
		return v;
	}
	if (f->names) {
		size_t count = f == &fields[3] ? ARRAY_LEN(months) : ARRAY_LEN(days);
		for (size_t i = 0; i < count; i++) {
			if (!strncasecmp(s, f->names[i], 3) && !isalpha((unsigned char)s[3])) {
				*p = s + 3;
				return f->min + (int)i;
			}
		}
	}
	return -1;
}

static int check_field(const struct field *f, const char *text, char *why, size_t size)
{
	const char *p = text;
	for (;;) {
		int lo = f->min, hi = f->max;
		if (*p == '*') {
			p++;
		} else {
			lo = read_value(f, &p);
			hi = lo;
			if (lo >= 0 && *p == '-') {
				p++;
				hi = read_value(f, &p);
			}
			if (lo < 0 || hi < 0)
				goto syntax;
			int bad = lo < f->min || lo > f->max ? lo : hi;
			if (bad < f->min || bad > f->max) {
				snprintf(why, size, "%s %d is not in %d-%d", f->name, bad, f->min,
					 f->max);
				return -EINVAL;
			}
			if (lo > hi) {
				snprintf(why, size, "%s range %d-%d goes backwards", f->name, lo,
					 hi);
				return -EINVAL;
			}
		}
		if (*p == '/') {
			p++;
			const char *start = p;
			int step = 0;
			while (isdigit((unsigned char)*p) && p - start < 3)
				step = step * 10 + (*p++ - '0');
			if (p == start || isdigit((unsigned char)*p))
				goto syntax;
			if (step < 1 || step > f->max) {
				snprintf(why, size, "%s step %d is not in 1-%d", f->name, step,
					 f->max);
				return -EINVAL;
			}
		}
		if (*p == 0)
			return 0;
		if (*p++ != ',' || *p == 0)
			goto syntax;
	}
syntax:
	snprintf(why, size, "%s field '%s' is not a value, range (a-b), step (*/n) or list (a,b)",
		 f->name, text);
	return -EINVAL;
}

int pipe_cron_check(const char *expr, char *why, size_t why_size)
{
	char copy[256];
	if (strlen(expr) >= sizeof(copy)) {
		snprintf(why, why_size, "it is too long");
		return -EINVAL;
	}
	strcpy(copy, expr);
	char *parts[6];
	int n = 0;
	for (char *save = NULL, *tok = strtok_r(copy, " \t", &save); tok;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (n < 6)
			parts[n] = tok;
		n++;
	}
	if (n != 5) {
		snprintf(why, why_size,
			 "expected 5 fields (minute hour day-of-month month day-of-week), found %d",
			 n);
		return -EINVAL;
	}
	for (int i = 0; i < 5; i++)
		if (check_field(&fields[i], parts[i], why, why_size))
			return -EINVAL;
	return 0;
}
