/* libsemver: parse and compare semantic versions ("1.2.3-rc.1"). */
#ifndef SEMVER_H
#define SEMVER_H

struct semver {
	unsigned long major, minor, patch;
	char pre[64]; /* pre-release, "" when none */
};

/* 0 on success, -1 when text is not MAJOR.MINOR.PATCH[-PRE][+BUILD]. */
int semver_parse(const char *text, struct semver *out);

/* <0, 0, >0 as a sorts before, with, or after b (SemVer 2.0.0 section 11). */
int semver_compare(const struct semver *a, const struct semver *b);

#endif
