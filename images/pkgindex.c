/*
 * Whether the packages a job or recipe asks for exist, told before any VM
 * boots: an image built by debootstrap comes from one Debian suite and
 * architecture, whose package lists vmci keeps in
 * $VMCI_HOME/cache/apt/SUITE-ARCH/state/lists (deb.c refreshes them when
 * it resolves a kernel). A name in none of their Package or Provides
 * fields is one `apt-get install` would refuse. Images whose origin says
 * nothing of a suite (imported, pulled) are not checked: their builds
 * fail with apt's own message instead.
 */
#include "images/internal.h"

#include <archive.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* The most recipes with a base followed to find the suite an image comes from. */
#define ORIGIN_DEPTH_MAX 8

/* The suite and Debian architecture the image name was installed from; 0 when unknown. */
static int image_origin(const char *name, char *suite, size_t suite_size, const char **deb_arch)
{
	char next[64];
	snprintf(next, sizeof(next), "%s", name);
	for (int depth = 0; depth < ORIGIN_DEPTH_MAX; depth++) {
		struct img_spec *s = NULL;
		if (img_spec_find(next, &s, NULL))
			return 0;
		int found = 0;
		if (s->base[0])
			snprintf(next, sizeof(next), "%s", s->base);
		else if (s->rootfs == IMG_ROOTFS_DEBOOTSTRAP &&
			 img_deb_arch(s->arch, deb_arch, NULL) == 0) {
			snprintf(suite, suite_size, "%s", s->suite);
			found = 1;
		}
		bool last = !s->base[0];
		img_spec_free(s);
		if (found || last)
			return found;
	}
	return 0;
}

/* What the lines of a Packages file are matched against. */
struct scan {
	const char *const *packages;
	size_t n;
	bool *known;
	size_t left; /* packages not seen yet */
};

static void mark(struct scan *sc, const char *name, size_t len)
{
	for (size_t i = 0; i < sc->n; i++)
		if (!sc->known[i] && strlen(sc->packages[i]) == len &&
		    !memcmp(sc->packages[i], name, len)) {
			sc->known[i] = true;
			sc->left--;
		}
}

/* "Package: NAME" or "Provides: a (= 1), b:any, c" (len bytes, no newline). */
static void scan_line(struct scan *sc, const char *line, size_t len)
{
	if (len > 9 && !memcmp(line, "Package: ", 9)) {
		mark(sc, line + 9, len - 9);
		return;
	}
	if (len <= 10 || memcmp(line, "Provides: ", 10))
		return;
	const char *p = line + 10, *end = line + len;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == ','))
			p++;
		const char *name = p;
		while (p < end && *p != ' ' && *p != ',' && *p != ':' && *p != '(')
			p++;
		if (p > name)
			mark(sc, name, (size_t)(p - name));
		while (p < end && *p != ',')
			p++;
	}
}

/* Scans one Packages file, compressed or not (libarchive's filters). */
static int scan_file(struct scan *sc, const char *path, struct vmci_err *err)
{
	struct archive *a = archive_read_new();
	if (!a)
		return vmci_err_set(err, ENOMEM, "out of memory");
	archive_read_support_filter_all(a);
	archive_read_support_format_raw(a);
	struct archive_entry *e;
	int rc = 0;
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK ||
	    archive_read_next_header(a, &e) != ARCHIVE_OK) {
		rc = vmci_err_set(err, EIO, "cannot read the package list %s: %s", path,
				  archive_error_string(a));
		archive_read_free(a);
		return rc;
	}
	struct buf carry = {0};
	char block[1 << 16];
	la_ssize_t got;
	while (sc->left && (got = archive_read_data(a, block, sizeof(block))) > 0) {
		const char *p = block, *end = block + got;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			if (!nl) {
				buf_append(&carry, p, (size_t)(end - p));
				break;
			}
			if (carry.len) {
				buf_append(&carry, p, (size_t)(nl - p));
				scan_line(sc, buf_cstr(&carry), carry.len);
				carry.len = 0;
			} else {
				scan_line(sc, p, (size_t)(nl - p));
			}
			p = nl + 1;
		}
		got = 0;
	}
	if (got < 0)
		rc = vmci_err_set(err, EIO, "cannot read the package list %s: %s", path,
				  archive_error_string(a));
	buf_free(&carry);
	archive_read_free(a);
	return rc;
}

/* True for apt's list of the suite's binary packages: ..._dists_SUITE_..._Packages[.EXT]. */
static bool is_packages_list(const char *file, const char *suite)
{
	char dists[64];
	snprintf(dists, sizeof(dists), "_dists_%s_", suite);
	const char *p = strstr(file, "_Packages");
	return strstr(file, dists) && p && (p[9] == '\0' || p[9] == '.');
}

int img_packages_known(const char *image, const char *const *packages, size_t n, bool *known,
		       char *index, size_t index_size, struct vmci_err *err)
{
	char suite[32], lists[PATH_MAX];
	const char *deb_arch = NULL;
	for (size_t i = 0; i < n; i++)
		known[i] = false;
	if (!image_origin(image, suite, sizeof(suite), &deb_arch))
		return 0;
	if (fs_path(lists, sizeof(lists), "%s/cache/apt/%s-%s/state/lists", vmci_home(), suite,
		    deb_arch))
		return 0;
	DIR *d = opendir(lists);
	if (!d)
		return 0;
	struct scan sc = {.packages = packages, .n = n, .known = known, .left = n};
	int rc = 0, files = 0;
	time_t newest = 0;
	struct dirent *de;
	while (!rc && sc.left && (de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		struct stat st;
		if (!is_packages_list(de->d_name, suite) ||
		    fs_path(path, sizeof(path), "%s/%s", lists, de->d_name) || stat(path, &st))
			continue;
		rc = scan_file(&sc, path, err);
		files++;
		if (st.st_mtime > newest)
			newest = st.st_mtime;
	}
	closedir(d);
	if (rc)
		return rc;
	if (!files)
		return 0;
	char day[16];
	struct tm tm;
	strftime(day, sizeof(day), "%Y-%m-%d", gmtime_r(&newest, &tm));
	snprintf(index, index_size, "Debian %s %s (package lists of %s in %s)", suite, deb_arch,
		 day, lists);
	return 1;
}
