/*
 * The Debian packages vmci needs. The table is packages.txt at the top of
 * the tree, which the Makefile's `deps` target reads too; the build
 * compiles it in as vmci_packages_txt, so an installed vmci needs no data
 * file and cannot disagree with the tree it was built from.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* packages.txt as a string (made by the Makefile: $(BUILD)/gen/packages_txt.c). */
extern const char vmci_packages_txt[];

static const char *const needs[] = {
    [PKG_BUILD] = "build",
    [PKG_TEST] = "test",
    [PKG_RUN] = "run",
    [PKG_OPTIONAL] = "optional",
};

/* Copies the next blank-separated field of the line [*p, end) into out; false when none fits. */
static bool field(const char **p, const char *end, char *out, size_t size)
{
	const char *s = *p;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	const char *e = s;
	while (e < end && *e != ' ' && *e != '\t')
		e++;
	*p = e;
	if (e == s || (size_t)(e - s) >= size)
		return false;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = 0;
	return true;
}

/* Reads one line of the table; false for a comment, a blank line or a malformed one. */
static bool parse_line(const char *line, const char *end, struct pkg_info *out)
{
	char need[16];
	const char *p = line;
	if (!field(&p, end, out->name, sizeof(out->name)) || out->name[0] == '#' ||
	    !field(&p, end, need, sizeof(need)) ||
	    !field(&p, end, out->programs, sizeof(out->programs)))
		return false;
	size_t n = 0;
	while (n < ARRAY_LEN(needs) && strcmp(need, needs[n]))
		n++;
	if (n == ARRAY_LEN(needs))
		return false;
	out->need = (enum pkg_need)n;
	if (!strcmp(out->programs, "-"))
		out->programs[0] = 0;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	snprintf(out->purpose, sizeof(out->purpose), "%.*s", (int)(end - p), p);
	return true;
}

bool pkg_next(size_t *pos, struct pkg_info *out)
{
	const char *text = vmci_packages_txt;
	size_t len = strlen(text);
	while (*pos < len) {
		const char *line = text + *pos;
		const char *nl = memchr(line, '\n', len - *pos);
		const char *end = nl ? nl : text + len;
		*pos = (size_t)(end - text) + (nl != NULL);
		if (parse_line(line, end, out))
			return true;
	}
	return false;
}

/* True when prog is one of the comma-separated programs. */
static bool installs(const char *programs, const char *prog)
{
	size_t len = strlen(prog);
	for (const char *p = programs; *p;) {
		size_t n = strcspn(p, ",");
		if (n == len && !strncmp(p, prog, len))
			return true;
		p += n + (p[n] == ',');
	}
	return false;
}

const char *pkg_providing(const char *prog, char *out, size_t size)
{
	const char *base = strrchr(prog, '/');
	base = base ? base + 1 : prog;
	struct pkg_info pkg;
	for (size_t pos = 0; pkg_next(&pos, &pkg);) {
		if (installs(pkg.programs, base)) {
			snprintf(out, size, "%s", pkg.name);
			return out;
		}
	}
	return NULL;
}

int pkg_err_missing(struct vmci_err *err, const char *prog)
{
	char pkg[64];
	if (pkg_providing(prog, pkg, sizeof(pkg)))
		return vmci_err_set(
		    err, ENOENT, "%s not found (install the Debian package %s, or run: make deps)",
		    prog, pkg);
	return vmci_err_set(err, ENOENT, "%s not found in $PATH", prog);
}
