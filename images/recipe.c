/*
 * Recipe files: images/recipes/NAME.yml, read into a struct img_spec with
 * common's typed YAML reader (ydoc). Every mistake is reported at its
 * place in the file, the way a compiler does ("debian-12.yml:4:1: error:
 * unknown key 'kernal' in a recipe (did you mean 'kernel'?) ..."), so an
 * editor can jump to it.
 *
 *   name: debian-12                  the image name, equal to the file's name
 *   arch: x86_64                     x86_64 | aarch64
 *   kernel:
 *     debian: cloud                  linux-image-FLAVOUR-ARCH, resolved by apt
 *     modules: [virtio_pci, ...]     loaded by the agent; dependencies added
 *   kernel:
 *     file: /boot/vmlinuz-x          or a kernel file with its drivers built in
 *   busybox: /bin/busybox            the initramfs's busybox: a static host
 *                                    binary, or a Debian package of the arch
 *                                    (default busybox-static)
 *   rootfs: busybox                  no root disk: jobs run in the initramfs
 *   rootfs:
 *     debootstrap: {suite: bookworm, variant: minbase, packages: [git], mirror: URL}
 *   rootfs: {tarball: PATH}          a root filesystem archive
 *   rootfs: {disk: PATH}             a qcow2 or raw disk, used as is
 *   disk_size: 4G                    the ext4 root disk (debootstrap, tarball)
 *   setup: [cmd, ...]                run in the built image, in a VM, as root
 *   network: none                    the setup commands' VM: none (default) or nat
 *
 * Or an image made of another (images/based.c):
 *
 *   name: debian-12-autotools
 *   base: debian-12                  any image name: a recipe's, an import
 *   packages: [autoconf, libtool]    installed by apt-get, as a job's packages:
 *   setup: [cmd, ...]                then run on it, as above (with network:)
 *
 * Relative paths are taken from the recipe file's directory. The whole
 * file's bytes are hashed (spec->sha256) into the image digest.
 */
#include "images/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Recipes are small; anything bigger is not one. */
#define RECIPE_MAX_BYTES (256u << 10)
#define DISK_SIZE_MIN	 (16LL << 20)
#define DISK_SIZE_MAX	 (2LL << 40)

/* A recipe's fields, read from its YAML (common's ydoc reader: types, keys, positions). */
struct parse {
	const char *file;
	struct ydoc *doc;
	struct img_spec *spec;
};

/* A path from the recipe, made absolute against the recipe file's directory. */
static int recipe_relative(struct parse *p, const struct ydoc_node *n, const char *what, char *out,
			   size_t size)
{
	char raw[PATH_MAX];
	int rc = ydoc_string(p->doc, n, what, raw, sizeof(raw));
	if (rc)
		return rc;
	const char *slash = strrchr(p->file, '/');
	if (raw[0] == '/')
		rc = fs_path(out, size, "%s", raw);
	else if (slash)
		rc = fs_path(out, size, "%.*s/%s", (int)(slash - p->file), p->file, raw);
	else
		rc = fs_path(out, size, "%s", raw);
	return rc ? ydoc_error(p->doc, n, ENAMETOOLONG, "%s is too long", what) : 0;
}

static int parse_kernel(struct parse *p, const struct ydoc_node *n)
{
	static const char *const keys[] = {"debian", "file", "modules"};
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	struct img_spec *s = p->spec;
	int rc = ydoc_map(p->doc, n, "kernel", keys, ARRAY_LEN(keys), v);
	if (rc)
		return rc;
	if (!v[0] == !v[1])
		return ydoc_error(p->doc, n, EINVAL,
				  "kernel needs exactly one of 'debian' (a kernel flavour, e.g. "
				  "cloud) or 'file' (a kernel image)");
	if (v[0]) {
		rc = ydoc_string(p->doc, v[0], "kernel.debian", s->kernel_flavour,
				 sizeof(s->kernel_flavour));
		if (!rc && strspn(s->kernel_flavour, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
			       strlen(s->kernel_flavour))
			return ydoc_error(p->doc, v[0], EINVAL,
					  "kernel.debian is a kernel flavour such as 'cloud' (the "
					  "part of linux-image-cloud-amd64 between linux-image- "
					  "and the architecture), not '%s'",
					  s->kernel_flavour);
	} else {
		rc =
		    recipe_relative(p, v[1], "kernel.file", s->kernel_file, sizeof(s->kernel_file));
		if (!rc && v[2])
			return ydoc_error(p->doc, v[2], EINVAL,
					  "kernel.modules needs kernel.debian: a kernel file must "
					  "have its drivers built in");
	}
	if (!rc && v[2])
		rc = ydoc_strings(p->doc, v[2], "kernel.modules", 63, &s->modules.v, &s->modules.n);
	return rc;
}

/* A list of Debian package names, into s->packages. */
static int parse_packages(struct parse *p, const struct ydoc_node *n, const char *what)
{
	struct img_spec *s = p->spec;
	int rc = ydoc_strings(p->doc, n, what, 127, &s->packages.v, &s->packages.n);
	for (size_t i = 0; !rc && i < s->packages.n; i++)
		if (!deb_package_name_ok(s->packages.v[i]))
			return ydoc_error(p->doc, ydoc_item(p->doc, n, i), EINVAL,
					  "'%s' is not a Debian package name (lower case letters, "
					  "digits, '+', '-' and '.')",
					  s->packages.v[i]);
	if (!rc && s->packages.n > IMG_PACKAGES_MAX)
		return ydoc_error(p->doc, n, E2BIG, "%s lists %zu packages, more than %d", what,
				  s->packages.n, IMG_PACKAGES_MAX);
	return rc;
}

static int parse_debootstrap(struct parse *p, const struct ydoc_node *n)
{
	static const char *const keys[] = {"suite", "variant", "packages", "mirror"};
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	struct img_spec *s = p->spec;
	int rc = ydoc_map(p->doc, n, "rootfs.debootstrap", keys, ARRAY_LEN(keys), v);
	if (rc)
		return rc;
	if (!v[0])
		return ydoc_error(p->doc, n, EINVAL,
				  "rootfs.debootstrap needs a 'suite' (e.g. bookworm)");
	rc = ydoc_string(p->doc, v[0], "rootfs.debootstrap.suite", s->suite, sizeof(s->suite));
	snprintf(s->variant, sizeof(s->variant), "minbase");
	if (!rc && v[1])
		rc = ydoc_string(p->doc, v[1], "rootfs.debootstrap.variant", s->variant,
				 sizeof(s->variant));
	if (!rc && strcmp(s->variant, "minbase") && strcmp(s->variant, "buildd") &&
	    strcmp(s->variant, "default"))
		return ydoc_error(
		    p->doc, v[1], EINVAL,
		    "rootfs.debootstrap.variant must be minbase, buildd or default, not '%s'",
		    s->variant);
	if (!rc && v[2])
		rc = parse_packages(p, v[2], "rootfs.debootstrap.packages");
	if (!rc && v[3]) {
		rc = ydoc_string(p->doc, v[3], "rootfs.debootstrap.mirror", s->mirror,
				 sizeof(s->mirror));
		if (!rc && strncmp(s->mirror, "http://", 7) && strncmp(s->mirror, "https://", 8) &&
		    strncmp(s->mirror, "file:/", 6))
			return ydoc_error(
			    p->doc, v[3], EINVAL,
			    "rootfs.debootstrap.mirror must be an http://, https:// or file:/ "
			    "URL");
	}
	return rc;
}

static int parse_rootfs(struct parse *p, const struct ydoc_node *n)
{
	struct img_spec *s = p->spec;
	if (ydoc_kind(n) == YDOC_SCALAR || ydoc_kind(n) == YDOC_NULL) {
		if (!strcmp(ydoc_scalar(n), "busybox")) {
			s->rootfs = IMG_ROOTFS_BUSYBOX;
			return 0;
		}
		return ydoc_error(p->doc, n, EINVAL,
				  "rootfs must be 'busybox' or a mapping with one of debootstrap, "
				  "tarball, disk");
	}
	static const char *const keys[] = {"debootstrap", "tarball", "disk"};
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	int rc = ydoc_map(p->doc, n, "rootfs", keys, ARRAY_LEN(keys), v);
	if (rc)
		return rc;
	if ((v[0] != NULL) + (v[1] != NULL) + (v[2] != NULL) != 1)
		return ydoc_error(p->doc, n, EINVAL,
				  "rootfs needs exactly one of debootstrap, tarball, disk");
	if (v[0]) {
		s->rootfs = IMG_ROOTFS_DEBOOTSTRAP;
		return parse_debootstrap(p, v[0]);
	}
	s->rootfs = v[1] ? IMG_ROOTFS_TARBALL : IMG_ROOTFS_DISK;
	return recipe_relative(p, v[1] ? v[1] : v[2], v[1] ? "rootfs.tarball" : "rootfs.disk",
			       s->source, sizeof(s->source));
}

/* `network:` of the setup commands: none (the default: a hermetic build) or nat. */
static int parse_network(struct parse *p, const struct ydoc_node *n, bool has_setup)
{
	char mode[16];
	int rc = ydoc_string(p->doc, n, "network", mode, sizeof(mode));
	if (!rc && strcmp(mode, "nat") && strcmp(mode, "none"))
		return ydoc_error(p->doc, n, EINVAL,
				  "network must be 'nat' (the setup commands reach the network "
				  "through the host) or 'none' (the default), not '%s'",
				  mode);
	if (!rc && !has_setup)
		return ydoc_error(p->doc, n, EINVAL,
				  "network applies to the setup commands, and this recipe has "
				  "none");
	p->spec->setup_network = !rc && !strcmp(mode, "nat");
	return rc;
}

enum { NAME, ARCH, KERNEL, BUSYBOX, ROOTFS, DISK_SIZE, SETUP, NETWORK, BASE, PACKAGES, NKEYS };
static const char *const root_keys[NKEYS] = {"name",   "arch",	    "kernel", "busybox",
					     "rootfs", "disk_size", "setup",  "network",
					     "base",   "packages"};

/* A recipe with `base:`: name, base, packages and setup; the rest comes from the base image. */
static int parse_on_base(struct parse *p, const struct ydoc_node *root,
			 const struct ydoc_node *const *v)
{
	struct img_spec *s = p->spec;
	for (int k = ARCH; k <= DISK_SIZE; k++)
		if (v[k])
			return ydoc_error(p->doc, v[k], EINVAL,
					  "a recipe with a base takes '%s' from its base image: it "
					  "has name, base, packages and setup (and its network)",
					  root_keys[k]);
	int rc = ydoc_string(p->doc, v[BASE], "base", s->base, sizeof(s->base));
	if (!rc && !vmci_name_ok(s->base))
		return ydoc_error(p->doc, v[BASE], EINVAL,
				  "bad image name '%s' (use " VMCI_NAME_RULE ")", s->base);
	if (!rc && !strcmp(s->base, s->name))
		return ydoc_error(p->doc, v[BASE], EINVAL, "image '%s' cannot be its own base",
				  s->name);
	if (!rc && !v[PACKAGES] && !v[SETUP])
		return ydoc_error(p->doc, root, EINVAL,
				  "a recipe with a base needs 'packages' (Debian packages to "
				  "install on %s), 'setup' (commands to run on it) or both",
				  s->base);
	if (!rc && v[PACKAGES])
		rc = parse_packages(p, v[PACKAGES], "packages");
	if (!rc && v[PACKAGES] && s->packages.n == 0)
		return ydoc_error(p->doc, v[PACKAGES], EINVAL,
				  "packages is empty: name the Debian packages to install on %s",
				  s->base);
	if (!rc && v[SETUP])
		rc = ydoc_strings(p->doc, v[SETUP], "setup", 4096, &s->setup.v, &s->setup.n);
	if (!rc && v[NETWORK])
		rc = parse_network(p, v[NETWORK], s->setup.n > 0);
	return rc;
}

static int parse_root(struct parse *p, const struct ydoc_node *root, const char *expected_name)
{
	const struct ydoc_node *v[NKEYS];
	struct img_spec *s = p->spec;
	if (!root)
		return ydoc_error(p->doc, NULL, EINVAL, "the recipe is empty");
	int rc = ydoc_map(p->doc, root, "a recipe", root_keys, NKEYS, v);
	if (rc)
		return rc;
	if (!v[NAME])
		return ydoc_error(p->doc, root, EINVAL, "the recipe has no 'name'");
	rc = ydoc_string(p->doc, v[NAME], "name", s->name, sizeof(s->name));
	if (!rc && !vmci_name_ok(s->name))
		return ydoc_error(p->doc, v[NAME], EINVAL,
				  "bad image name '%s' (use " VMCI_NAME_RULE ")", s->name);
	if (!rc && expected_name && strcmp(s->name, expected_name))
		return ydoc_error(p->doc, v[NAME], EINVAL,
				  "name '%s' does not match the file name %s.yml", s->name,
				  expected_name);
	if (!rc && v[BASE])
		return parse_on_base(p, root, v);
	for (int k = ARCH; !rc && k <= ROOTFS; k++) {
		if (!v[k] && k != BUSYBOX)
			return ydoc_error(p->doc, root, EINVAL, "the recipe has no '%s'",
					  root_keys[k]);
	}
	if (!rc && v[PACKAGES])
		return ydoc_error(p->doc, v[PACKAGES], EINVAL,
				  "packages at the top of a recipe go with a base image (base: "
				  "debian-12); a debootstrap recipe lists its own under "
				  "rootfs.debootstrap.packages");
	if (!rc)
		rc = ydoc_string(p->doc, v[ARCH], "arch", s->arch, sizeof(s->arch));
	if (!rc && strcmp(s->arch, "x86_64") && strcmp(s->arch, "aarch64"))
		return ydoc_error(p->doc, v[ARCH], EINVAL,
				  "arch must be x86_64 or aarch64, not '%s'", s->arch);
	if (!rc)
		rc = parse_kernel(p, v[KERNEL]);
	snprintf(s->busybox, sizeof(s->busybox), "busybox-static");
	if (!rc && v[BUSYBOX])
		rc = ydoc_string(p->doc, v[BUSYBOX], "busybox", s->busybox, sizeof(s->busybox));
	if (!rc)
		rc = parse_rootfs(p, v[ROOTFS]);
	if (!rc && v[DISK_SIZE]) {
		char size[32];
		int64_t bytes = 0;
		rc = ydoc_string(p->doc, v[DISK_SIZE], "disk_size", size, sizeof(size));
		if (!rc &&
		    (parse_size(size, 0, &bytes) || bytes < DISK_SIZE_MIN || bytes > DISK_SIZE_MAX))
			return ydoc_error(p->doc, v[DISK_SIZE], EINVAL,
					  "disk_size must be a size between 16M and 2T such as 4G, "
					  "not '%s'",
					  size);
		s->disk_size = bytes;
		if (!rc && (s->rootfs == IMG_ROOTFS_BUSYBOX || s->rootfs == IMG_ROOTFS_DISK))
			return ydoc_error(p->doc, v[DISK_SIZE], EINVAL,
					  "disk_size applies to a root disk the build makes "
					  "(debootstrap, tarball), not to rootfs %s",
					  s->rootfs == IMG_ROOTFS_BUSYBOX ? "busybox" : "disk");
	}
	if (!rc && !v[DISK_SIZE] &&
	    (s->rootfs == IMG_ROOTFS_DEBOOTSTRAP || s->rootfs == IMG_ROOTFS_TARBALL))
		return ydoc_error(p->doc, v[ROOTFS], EINVAL,
				  "this rootfs is made into a root disk: the recipe needs a "
				  "disk_size (e.g. disk_size: 4G)");
	if (!rc && v[SETUP]) {
		rc = ydoc_strings(p->doc, v[SETUP], "setup", 4096, &s->setup.v, &s->setup.n);
		if (!rc && s->setup.n && s->rootfs == IMG_ROOTFS_BUSYBOX)
			return ydoc_error(p->doc, v[SETUP], EINVAL,
					  "setup commands need a root disk to keep their changes; "
					  "rootfs busybox has none");
	}
	if (!rc && v[NETWORK])
		rc = parse_network(p, v[NETWORK], s->setup.n > 0);
	return rc;
}

/* ---- entry points ------------------------------------------------------------ */

int img_spec_parse(const char *file, const void *text, size_t len, const char *expected_name,
		   struct img_spec **out, struct vmci_err *err)
{
	*out = NULL;
	struct img_spec *s = calloc(1, sizeof(*s));
	struct sha256_ctx *h = s ? sha256_new() : NULL;
	if (!h) {
		free(s);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	snprintf(s->file, sizeof(s->file), "%s", file);
	sha256_update(h, text, len);
	sha256_finish(h, s->sha256);

	struct parse p = {.file = file, .spec = s};
	int rc = ydoc_parse(file, text, len, err, &p.doc);
	if (!rc)
		rc = parse_root(&p, ydoc_root(p.doc), expected_name);
	ydoc_free(p.doc);
	if (rc) {
		img_spec_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int img_spec_load(const char *path, const char *expected_name, struct img_spec **out,
		  struct vmci_err *err)
{
	struct buf text = {0};
	int rc = fs_read_file(path, RECIPE_MAX_BYTES, &text, err);
	if (rc) {
		vmci_err_wrap(err, "cannot read the recipe %s", path);
	} else {
		rc = img_spec_parse(path, text.data ? (const void *)text.data : "", text.len,
				    expected_name, out, err);
	}
	buf_free(&text);
	return rc;
}

static void strings_free(struct img_strings *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void img_spec_free(struct img_spec *s)
{
	if (!s)
		return;
	strings_free(&s->modules);
	strings_free(&s->packages);
	strings_free(&s->setup);
	free(s);
}

int img_spec_find(const char *name, struct img_spec **out, struct vmci_err *err)
{
	char path[PATH_MAX];
	int rc = img_recipe_path(name, path, sizeof(path), err);
	return rc ? rc : img_spec_load(path, name, out, err);
}

/* ---- recipes from specs ------------------------------------------------------- */

struct img_recipe *img_recipe_new(struct img_spec *spec, struct vmci_err *err)
{
	struct img_recipe *r = calloc(1, sizeof(*r));
	if (!r) {
		img_spec_free(spec);
		vmci_err_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	r->name = spec->name;
	r->arch = spec->arch;
	r->spec = spec;
	switch (spec->rootfs) {
	case IMG_ROOTFS_BUSYBOX:
		r->prepare = img_busybox_prepare;
		r->build = img_busybox_build;
		r->finish = img_busybox_finish;
		break;
	case IMG_ROOTFS_DEBOOTSTRAP:
		r->prepare = img_debian_prepare;
		r->build = img_debian_build;
		r->finish = img_debian_finish;
		break;
	case IMG_ROOTFS_TARBALL:
	case IMG_ROOTFS_DISK:
		r->prepare = img_import_prepare;
		r->build = img_import_build;
		r->finish = img_import_finish;
		break;
	}
	return r;
}

void img_recipe_free(struct img_recipe *r)
{
	if (!r)
		return;
	img_spec_free((struct img_spec *)r->spec);
	free(r);
}

void img_digest_line(struct sha256_ctx *ctx, const char *label, const char *value)
{
	sha256_update(ctx, label, strlen(label));
	sha256_update(ctx, " ", 1);
	sha256_update(ctx, value, strlen(value));
	sha256_update(ctx, "\n", 1);
}
