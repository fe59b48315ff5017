#include "semver.h"

#include <stdio.h>

static int failures;

static void expect_order(const char *lo, const char *hi)
{
	struct semver a, b;
	if (semver_parse(lo, &a) || semver_parse(hi, &b) || semver_compare(&a, &b) >= 0 ||
	    semver_compare(&b, &a) <= 0) {
		printf("FAIL: %s < %s\n", lo, hi);
		failures++;
	}
}

static void expect_invalid(const char *text)
{
	struct semver v;
	if (semver_parse(text, &v) == 0) {
		printf("FAIL: '%s' parsed\n", text);
		failures++;
	}
}

int main(void)
{
	/* The precedence example of SemVer 2.0.0, section 11. */
	static const char *const chain[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
					    "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
					    "1.0.0-rc.1",  "1.0.0",	    "1.0.1",
					    "1.1.0",	   "2.0.0"};
	for (size_t i = 0; i + 1 < sizeof(chain) / sizeof(chain[0]); i++)
		expect_order(chain[i], chain[i + 1]);
	expect_invalid("1.2");
	expect_invalid("01.2.3");
	expect_invalid("1.2.3-");
	expect_invalid("1.2.3 ");
	struct semver a, b;
	if (semver_parse("1.2.3+build.5", &a) || semver_parse("1.2.3", &b) ||
	    semver_compare(&a, &b) != 0) {
		printf("FAIL: build metadata changes precedence\n");
		failures++;
	}
	printf("%s\n", failures ? "some tests failed" : "all tests passed");
	return failures != 0;
}
