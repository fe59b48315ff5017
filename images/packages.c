/*
 * Images with the guest distribution's packages installed: a job's
 * `packages:`. The result is an image like any other, built once and
 * published atomically under a name of its own, "<base>.pkgs-<hash of the
 * package list>", whose digest covers the base image's digest and the
 * sorted package list: the same list on the same base is found again, a
 * rebuilt base makes a new one. Its root disk is a qcow2 overlay of the
 * base's (so gc keeps the base while it lives); the packages are
 * installed by the distribution's own installer (apt-get) in a VM booted
 * from the unpublished build with network, through the same setup hook
 * as a recipe's setup commands. Two processes that want the same image
 * build it once: the build holds the name's lock (publish.c).
 */
#include "images/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What a derived build needs: the base it starts from and the packages, sorted. */
struct derived {
	struct img_recipe recipe; /* first: the build's recipe pointer is this */
	char name[64];
	struct img_boot base;
	const char **packages;
	size_t n;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* packages sorted, without repeats, in a new array of pointers (not copies). */
static int sorted_set(const char *const *packages, size_t n, const char ***out, size_t *count,
		      struct vmci_err *err)
{
	*out = NULL;
	*count = 0;
	if (n == 0)
		return vmci_err_set(err, EINVAL, "no packages to install");
	if (n > IMG_PACKAGES_MAX)
		return vmci_err_set(err, E2BIG, "%zu packages, more than the %d one image may add",
				    n, IMG_PACKAGES_MAX);
	const char **v = malloc(n * sizeof(*v));
	if (!v)
		return vmci_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (!deb_package_name_ok(packages[i])) {
			free(v);
			return vmci_err_set(
			    err, EINVAL,
			    "'%s' is not a Debian package name (lower case letters, "
			    "digits, '+', '-' and '.')",
			    packages[i]);
		}
		v[i] = packages[i];
	}
	qsort(v, n, sizeof(*v), cmp_str);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || strcmp(v[k - 1], v[i]))
			v[k++] = v[i];
	*out = v;
	*count = k;
	return 0;
}

static void hash_list(const char *const *v, size_t n, char hex[SHA256_HEX_LEN + 1])
{
	struct sha256_ctx *h = sha256_new();
	for (size_t i = 0; i < n; i++) {
		sha256_update(h, v[i], strlen(v[i]));
		sha256_update(h, "\n", 1);
	}
	sha256_finish(h, hex);
}

static int derived_name(const char *base, const char *const *v, size_t n, char *out, size_t size,
			struct vmci_err *err)
{
	char hex[SHA256_HEX_LEN + 1];
	hash_list(v, n, hex);
	if (snprintf(out, size, "%s.pkgs-%.12s", base, hex) >= (int)size || !vmci_name_ok(out))
		return vmci_err_set(err, ENAMETOOLONG,
				    "image name '%s' is too long to name its derived images", base);
	return 0;
}

int img_packages_name(const char *base, const char *const *packages, size_t n, char *out,
		      size_t size, struct vmci_err *err)
{
	const char **v;
	size_t k;
	int rc = sorted_set(packages, n, &v, &k, err);
	if (!rc)
		rc = derived_name(base, v, k, out, size, err);
	free(v);
	return rc;
}

static int derived_prepare(struct img_build *b, struct vmci_err *err)
{
	const struct derived *d = (const struct derived *)b->recipe;
	struct sha256_ctx *h = sha256_new();
	char line[128];
	int n = snprintf(line, sizeof(line), "%s\npackages 2\nbase %s\n", IMG_BUILDER_VERSION,
			 d->base.digest);
	sha256_update(h, line, (size_t)n);
	for (size_t i = 0; i < d->n; i++) {
		sha256_update(h, "package ", 8);
		sha256_update(h, d->packages[i], strlen(d->packages[i]));
		sha256_update(h, "\n", 1);
	}
	sha256_finish(h, b->digest);
	return 0;
}

/* A file of the base image in the build: a hard link (same store), else a copy. */
static int take_file(const struct img_boot *base, struct img_build *b, const char *file,
		     struct vmci_err *err)
{
	char from[PATH_MAX], to[PATH_MAX];
	if (fs_path(from, sizeof(from), "%s/%s", base->dir, file) ||
	    fs_path(to, sizeof(to), "%s/%s", b->dir, file))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", b->dir);
	if (link(from, to) == 0)
		return 0;
	return fs_copy_file(from, to, 0444, true, err);
}

int img_build_over(struct img_build *b, const struct img_boot *base, const char *const *commands,
		   size_t n, bool network, struct vmci_err *err)
{
	char disk[PATH_MAX];
	int rc = 0;
	if (fs_path(disk, sizeof(disk), "%s/%s", b->dir, IMG_DISK_FILE))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", b->dir);
	if ((rc = take_file(base, b, IMG_KERNEL_FILE, err)) ||
	    (rc = take_file(base, b, IMG_INITRD_FILE, err)))
		return rc;
	/* An overlay of the base's disk: what the commands write is all this image holds. */
	if ((rc = img_clone_file(base->disk, disk, 0, err)) ||
	    (rc = img_rootdisk_run(b, disk, base->cmdline, commands, n, network, err)))
		return rc;
	char parent[SHA256_HEX_LEN + 8];
	snprintf(parent, sizeof(parent), "sha256:%s", base->digest);
	json_object_set_new(b->manifest, "disk_file", json_string(IMG_DISK_FILE));
	json_object_set_new(b->manifest, "cmdline", json_string(base->cmdline));
	json_object_set_new(b->manifest, "parent", json_string(parent));
	json_object_set_new(b->manifest, "parent_name", json_string(base->name));
	return 0;
}

/* dpkg's filters: what the packages' manuals and documentation would add. */
static const char *const no_docs[] = {
    "--path-exclude=/usr/share/man/*",
    "--path-exclude=/usr/share/info/*",
    "--path-exclude=/usr/share/doc/*",
    "--path-include=/usr/share/doc/*/copyright",
};

static int derived_build(struct img_build *b, struct vmci_err *err)
{
	const struct derived *d = (const struct derived *)b->recipe;
	/*
	 * Only what installing needs, as fast as TCG allows: the package
	 * indexes without their translations; no recommends; dpkg without
	 * an fsync per file (the build's root is synced before the VM stops,
	 * and a failed build is thrown away) and without manuals and
	 * documentation (copyright notices stay), so no man-db trigger runs.
	 */
	struct buf install = {0};
	buf_appendf(&install, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
			      "--no-install-recommends -o Dpkg::Options::=--force-unsafe-io");
	for (size_t i = 0; i < ARRAY_LEN(no_docs); i++)
		buf_appendf(&install, " -o 'Dpkg::Options::=%s'", no_docs[i]);
	for (size_t i = 0; i < d->n; i++)
		buf_appendf(&install, " '%s'", d->packages[i]);
	const char *commands[] = {
	    "apt-get update -q -o Acquire::Languages=none",
	    buf_cstr(&install),
	    "apt-get clean && rm -rf /var/lib/apt/lists/*",
	};
	img_progress(b, "installing packages", 0, 0);
	int rc = img_build_over(b, &d->base, commands, ARRAY_LEN(commands), true, err);
	buf_free(&install);
	if (rc)
		return rc;
	json_t *list = json_array();
	for (size_t i = 0; i < d->n; i++)
		json_array_append_new(list, json_string(d->packages[i]));
	json_object_set_new(b->manifest, "packages", list);
	return 0;
}

static void derived_finish(struct img_build *b)
{
	(void)b;
}

int img_ensure_packages(const char *base, const char *const *packages, size_t n,
			const struct img_ensure_opts *opts, struct img_boot *out,
			struct vmci_err *err)
{
	struct derived d = {0};
	int rc = sorted_set(packages, n, &d.packages, &d.n, err);
	if (!rc)
		rc = derived_name(base, d.packages, d.n, d.name, sizeof(d.name), err);
	if (!rc)
		rc = img_ensure_with(base, opts, &d.base, err);
	if (!rc && !d.base.disk[0])
		rc = vmci_err_set(err, EINVAL,
				  "image '%s' has no root disk with a package manager: packages "
				  "need a Debian image such as debian-12",
				  base);
	if (!rc) {
		d.recipe = (struct img_recipe){
		    .name = d.name,
		    .arch = d.base.arch,
		    .prepare = derived_prepare,
		    .build = derived_build,
		    .finish = derived_finish,
		};
		rc = img_ensure_recipe_with(&d.recipe, opts, out, err);
	}
	free(d.packages);
	return rc;
}
