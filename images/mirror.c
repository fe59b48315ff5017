/*
 * The Debian mirror a debootstrap build downloads from when its recipe
 * names none: the one apt uses on this host for the suite (read from
 * /etc/apt/sources.list and sources.list.d, one-line and deb822 formats),
 * which is known to be reachable from here, else deb.debian.org.
 */
#include "images/internal.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MIRROR "http://deb.debian.org/debian"

static bool usable_uri(const char *uri)
{
	return !strncmp(uri, "http://", 7) || !strncmp(uri, "https://", 8) ||
	       !strncmp(uri, "file:/", 6);
}

/* One-line format: "deb [opts] URI SUITE COMPONENTS...". */
static bool mirror_from_list(const char *text, const char *suite, char *out, size_t size)
{
	for (const char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		next = next ? next + 1 : NULL;
		char copy[1024];
		snprintf(copy, sizeof(copy), "%.*s", (int)strcspn(line, "\n"), line);
		char *save = NULL, *w = strtok_r(copy, " \t", &save);
		if (!w || strcmp(w, "deb"))
			continue;
		w = strtok_r(NULL, " \t", &save);
		if (w && w[0] == '[')
			while (w && !strchr(w, ']'))
				w = strtok_r(NULL, " \t", &save);
		if (w && w[0] == '[' && strchr(w, ']'))
			w = strtok_r(NULL, " \t", &save);
		else if (w && strchr(w, ']'))
			w = strtok_r(NULL, " \t", &save);
		char *s = w ? strtok_r(NULL, " \t", &save) : NULL;
		if (w && s && !strcmp(s, suite) && usable_uri(w)) {
			snprintf(out, size, "%s", w);
			return true;
		}
	}
	return false;
}

/* The value of "Field:" in one deb822 paragraph, or "". */
static void field(const char *para, size_t len, const char *name, char *out, size_t size)
{
	out[0] = 0;
	size_t n = strlen(name);
	for (const char *p = para; p && p < para + len;) {
		if (!strncasecmp(p, name, n) && p[n] == ':') {
			const char *v = p + n + 1;
			v += strspn(v, " \t");
			snprintf(out, size, "%.*s", (int)strcspn(v, "\n"), v);
			return;
		}
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
}

/* deb822 format (*.sources): paragraphs of Types, URIs, Suites. */
static bool mirror_from_sources(const char *text, const char *suite, char *out, size_t size)
{
	for (const char *para = text; *para;) {
		const char *end = strstr(para, "\n\n");
		size_t len = end ? (size_t)(end - para) + 1 : strlen(para);
		char types[128], uris[512], suites[256], enabled[16];
		field(para, len, "Types", types, sizeof(types));
		field(para, len, "URIs", uris, sizeof(uris));
		field(para, len, "Suites", suites, sizeof(suites));
		field(para, len, "Enabled", enabled, sizeof(enabled));
		if (word_listed(types, "deb") && word_listed(suites, suite) &&
		    strcmp(enabled, "no")) {
			uris[strcspn(uris, " \t")] = 0;
			if (usable_uri(uris) && strlen(uris) < size) {
				memcpy(out, uris, strlen(uris) + 1);
				return true;
			}
		}
		para += len;
		para += strspn(para, "\n");
	}
	return false;
}

static bool mirror_from_file(const char *path, const char *suite, char *out, size_t size)
{
	struct buf b = {0};
	size_t n = strlen(path);
	bool deb822 = n > 8 && !strcmp(path + n - 8, ".sources");
	bool ok = fs_read_file(path, 1 << 20, &b, NULL) == 0 &&
		  (deb822 ? mirror_from_sources(buf_cstr(&b), suite, out, size)
			  : mirror_from_list(buf_cstr(&b), suite, out, size));
	buf_free(&b);
	return ok;
}

void img_host_mirror(const char *suite, char *out, size_t size)
{
	if (mirror_from_file("/etc/apt/sources.list", suite, out, size))
		return;
	DIR *d = opendir("/etc/apt/sources.list.d");
	struct dirent *de;
	bool found = false;
	while (d && !found && (de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		size_t n = strlen(de->d_name);
		bool wanted = (n > 5 && !strcmp(de->d_name + n - 5, ".list")) ||
			      (n > 8 && !strcmp(de->d_name + n - 8, ".sources"));
		if (wanted &&
		    !fs_path(path, sizeof(path), "/etc/apt/sources.list.d/%s", de->d_name))
			found = mirror_from_file(path, suite, out, size);
	}
	if (d)
		closedir(d);
	if (!found)
		snprintf(out, size, "%s", DEFAULT_MIRROR);
}
