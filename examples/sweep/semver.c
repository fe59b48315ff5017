#include "semver.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int number(const char **p, unsigned long *out)
{
	char *end;
	if (!isdigit((unsigned char)**p) || ((*p)[0] == '0' && isdigit((unsigned char)(*p)[1])))
		return -1;
	*out = strtoul(*p, &end, 10);
	*p = end;
	return 0;
}

int semver_parse(const char *text, struct semver *out)
{
	const char *p = text;
	memset(out, 0, sizeof(*out));
	if (number(&p, &out->major) || *p++ != '.' || number(&p, &out->minor) || *p++ != '.' ||
	    number(&p, &out->patch))
		return -1;
	if (*p == '-') {
		size_t n = strcspn(++p, "+");
		if (n == 0 || n >= sizeof(out->pre))
			return -1;
		memcpy(out->pre, p, n);
		out->pre[n] = 0;
		p += n;
	}
	return *p == 0 || *p == '+' ? 0 : -1;
}

static int all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return n > 0;
}

/* Dot-separated identifiers: numbers compare numerically and sort before words. */
static int compare_pre(const char *a, const char *b)
{
	if (!*a || !*b)
		return !*a - !*b; /* no pre-release sorts after any */
	while (*a && *b) {
		size_t na = strcspn(a, "."), nb = strcspn(b, ".");
		int da = all_digits(a, na), db = all_digits(b, nb);
		int c;
		if (da && db)
			c = na != nb ? (na < nb ? -1 : 1) : strncmp(a, b, na);
		else if (da != db)
			c = da ? -1 : 1;
		else {
			c = strncmp(a, b, na < nb ? na : nb);
			if (!c)
				c = (na > nb) - (na < nb);
		}
		if (c)
			return c;
		a += na + (a[na] == '.');
		b += nb + (b[nb] == '.');
	}
	return (*a != 0) - (*b != 0);
}

int semver_compare(const struct semver *a, const struct semver *b)
{
	if (a->major != b->major)
		return a->major < b->major ? -1 : 1;
	if (a->minor != b->minor)
		return a->minor < b->minor ? -1 : 1;
	if (a->patch != b->patch)
		return a->patch < b->patch ? -1 : 1;
	return compare_pre(a->pre, b->pre);
}
