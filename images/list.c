/*
 * What the store holds: img_list, one row per name and per blob no name
 * points at, from the disk facts of disk.c.
 */
#include "images/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* What one blob is and who uses it. */
struct blob {
	char digest[SHA256_HEX_LEN + 1];
	char arch[16];
	char parent[SHA256_HEX_LEN + 1]; /* manifest "parent": the image it derives from */
	char parent_name[64];
	char os[96], os_id[32], os_version[32], kernel[64];
	long long created;
	long long size;	      /* all its files */
	long long disk_bytes; /* its disk files */
	int names;
	int children; /* blobs backed by one of its disks */
	int clones;   /* live */
	long long clones_size;
};

static long long parse_created(const char *text)
{
	struct tm tm = {0};
	if (!text || !strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return 0;
	return (long long)timegm(&tm);
}

static void read_blob(const char *dir, struct blob *b)
{
	json_t *m = NULL;
	char path[PATH_MAX];
	if (!fs_path(path, sizeof(path), "%s/%s", dir, IMG_MANIFEST_FILE))
		m = json_load_file(path, 0, NULL);
	const char *arch = json_string_value(json_object_get(m, "arch"));
	snprintf(b->arch, sizeof(b->arch), "%s", arch ? arch : "");
	const char *parent = json_string_value(json_object_get(m, "parent"));
	const char *parent_name = json_string_value(json_object_get(m, "parent_name"));
	if (parent && !strncmp(parent, "sha256:", 7))
		snprintf(b->parent, sizeof(b->parent), "%s", parent + 7);
	snprintf(b->parent_name, sizeof(b->parent_name), "%s", parent_name ? parent_name : "");
	json_t *os = json_object_get(m, "os");
	const char *pretty = json_string_value(json_object_get(os, "pretty_name"));
	const char *id = json_string_value(json_object_get(os, "id"));
	const char *version = json_string_value(json_object_get(os, "version_id"));
	const char *release =
	    json_string_value(json_object_get(json_object_get(m, "kernel"), "release"));
	snprintf(b->os, sizeof(b->os), "%s", pretty ? pretty : "");
	snprintf(b->os_id, sizeof(b->os_id), "%s", id ? id : "");
	snprintf(b->os_version, sizeof(b->os_version), "%s", version ? version : "");
	snprintf(b->kernel, sizeof(b->kernel), "%s", release ? release : "");
	b->created = parse_created(json_string_value(json_object_get(m, "created")));
	json_decref(m);
	struct stat st;
	if (!b->created && stat(dir, &st) == 0)
		b->created = (long long)st.st_mtime;
	b->size = img_disk_usage(dir);
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		if (img_is_disk_file(de->d_name) &&
		    !fs_path(path, sizeof(path), "%s/%s", dir, de->d_name))
			b->disk_bytes += img_disk_usage(path);
	if (d)
		closedir(d);
}

static struct blob *find_blob(struct blob *blobs, size_t n, const char *digest)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(blobs[i].digest, digest))
			return &blobs[i];
	return NULL;
}

/* Every blob in the store with its users counted. */
static int scan_blobs(struct blob **out, size_t *count, struct vmci_err *err)
{
	char dir[PATH_MAX];
	int rc = img_store_dir(dir, sizeof(dir), "blobs", err);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (!d)
		return vmci_err_errno(err, errno, "cannot open %s", dir);
	struct dirent *de;
	while (!rc && (de = readdir(d)) != NULL) {
		const char *hex = de->d_name + 7;
		if (strncmp(de->d_name, "sha256-", 7) || strlen(hex) != SHA256_HEX_LEN ||
		    strspn(hex, "0123456789abcdef") != SHA256_HEX_LEN)
			continue;
		struct blob *grown = realloc(*out, (*count + 1) * sizeof(**out));
		if (!grown) {
			rc = vmci_err_set(err, ENOMEM, "out of memory");
			break;
		}
		*out = grown;
		struct blob *b = &(*out)[(*count)++];
		memset(b, 0, sizeof(*b));
		snprintf(b->digest, sizeof(b->digest), "%s", hex);
		char path[PATH_MAX];
		if (!fs_path(path, sizeof(path), "%s/%s", dir, de->d_name))
			read_blob(path, b);
	}
	closedir(d);
	for (size_t i = 0; !rc && i < *count; i++) {
		char(*parents)[SHA256_HEX_LEN + 1] = NULL;
		size_t np = 0;
		img_blob_parents((*out)[i].digest, &parents, &np, NULL);
		struct blob *p = np ? find_blob(*out, *count, parents[0]) : NULL;
		if (p)
			p->children++;
		free(parents);
	}
	struct img_clone_reg *regs = NULL;
	size_t nregs = 0;
	if (!rc && img_clone_regs(&regs, &nregs, NULL) == 0) {
		for (size_t i = 0; i < nregs; i++) {
			struct blob *b = find_blob(*out, *count, regs[i].digest);
			if (b && regs[i].state == IMG_CLONE_LIVE) {
				b->clones++;
				b->clones_size += img_disk_usage(regs[i].overlay);
			}
		}
		free(regs);
	}
	return rc;
}

/*
 * Of a blob's bytes, those something besides the row's own name uses: the
 * whole blob when another name points at it or a clone boots from it
 * without a disk; its disks when images or clones are backed by them.
 */
static long long shared_bytes(const struct blob *b, bool named)
{
	if (b->names - (named ? 1 : 0) > 0 || (b->clones && !b->disk_bytes))
		return b->size;
	return b->children || b->clones ? b->disk_bytes : 0;
}

static void fill_info(struct img_info *info, const char *name, const struct blob *b)
{
	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", name);
	snprintf(info->arch, sizeof(info->arch), "%s", b->arch);
	snprintf(info->digest, sizeof(info->digest), "%s", b->digest);
	snprintf(info->parent, sizeof(info->parent), "%s", b->parent);
	snprintf(info->parent_name, sizeof(info->parent_name), "%s", b->parent_name);
	snprintf(info->os, sizeof(info->os), "%s", b->os);
	snprintf(info->os_id, sizeof(info->os_id), "%s", b->os_id);
	snprintf(info->os_version, sizeof(info->os_version), "%s", b->os_version);
	snprintf(info->kernel, sizeof(info->kernel), "%s", b->kernel);
	info->size = b->size;
	info->shared = shared_bytes(b, name[0] != 0);
	info->clones = b->clones;
	info->clones_size = b->clones_size;
	info->created = b->created;
}

static int by_name(const void *a, const void *b)
{
	const struct img_info *x = a, *y = b;
	if (!x->name[0] != !y->name[0])
		return x->name[0] ? -1 : 1; /* unnamed blobs last */
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->digest, y->digest);
}

int img_list(struct img_info **out, size_t *count, struct vmci_err *err)
{
	*out = NULL;
	*count = 0;
	struct blob *blobs = NULL;
	size_t nblobs = 0;
	char names[PATH_MAX];
	int rc = scan_blobs(&blobs, &nblobs, err);
	if (!rc)
		rc = img_store_dir(names, sizeof(names), "names", err);
	DIR *d = rc ? NULL : opendir(names);
	if (!rc && !d)
		rc = vmci_err_errno(err, errno, "cannot open %s", names);
	/* Names first, counted per blob, then one row per blob left without a name. */
	struct dirent *de;
	size_t cap = nblobs + 8;
	struct img_info *rows = rc ? NULL : calloc(cap, sizeof(*rows));
	if (!rc && !rows)
		rc = vmci_err_set(err, ENOMEM, "out of memory");
	size_t n = 0;
	while (!rc && (de = readdir(d)) != NULL) {
		char digest[SHA256_HEX_LEN + 1];
		if (img_name_check(de->d_name, NULL) || strstr(de->d_name, ".tmp.") ||
		    img_name_read(de->d_name, digest, NULL))
			continue;
		struct blob *b = find_blob(blobs, nblobs, digest);
		if (!b)
			continue; /* a dangling name: img_find reports it */
		b->names++;
		if (n == cap) {
			struct img_info *grown = realloc(rows, 2 * cap * sizeof(*rows));
			if (!grown) {
				rc = vmci_err_set(err, ENOMEM, "out of memory");
				break;
			}
			rows = grown;
			cap *= 2;
		}
		snprintf(rows[n++].name, sizeof(rows[0].name), "%.63s", de->d_name); /* checked */
	}
	if (d)
		closedir(d);
	/* Now that every name is counted, fill the named rows and add the unnamed blobs. */
	for (size_t i = 0; !rc && i < n; i++) {
		char name[sizeof(rows[i].name)], digest[SHA256_HEX_LEN + 1];
		snprintf(name, sizeof(name), "%s", rows[i].name);
		img_name_read(name, digest, NULL);
		struct blob *b = find_blob(blobs, nblobs, digest);
		if (b)
			fill_info(&rows[i], name, b);
	}
	for (size_t i = 0; !rc && i < nblobs; i++) {
		if (blobs[i].names)
			continue;
		if (n == cap) {
			struct img_info *grown = realloc(rows, 2 * cap * sizeof(*rows));
			if (!grown) {
				rc = vmci_err_set(err, ENOMEM, "out of memory");
				break;
			}
			rows = grown;
			cap *= 2;
		}
		fill_info(&rows[n++], "", &blobs[i]);
	}
	free(blobs);
	if (rc) {
		free(rows);
		return rc;
	}
	qsort(rows, n, sizeof(*rows), by_name);
	*out = rows;
	*count = n;
	return 0;
}
