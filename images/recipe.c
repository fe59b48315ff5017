/*
 * Recipe files: images/recipes/NAME.yml, read with libyaml into a
 * struct img_spec. Every mistake is reported at its place in the file, the
 * way a compiler does ("debian-12.yml:4:3: error: unknown key 'kernal'
 * (did you mean 'kernel'?)"), so an editor can jump to it.
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
 *
 * Relative paths are taken from the recipe file's directory. The whole
 * file's bytes are hashed (spec->sha256) into the image digest.
 */
#include "images/internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Recipes are small; anything bigger is not one. */
#define RECIPE_MAX_BYTES (256u << 10)
#define DISK_SIZE_MIN	 (16LL << 20)
#define DISK_SIZE_MAX	 (2LL << 40)

struct parse {
	const char *file;
	yaml_document_t *doc;
	struct img_spec *spec;
	struct vmci_err *err;
};

/* "file:L:C: error: message" at node n (libyaml counts from 0, editors from 1). */
__attribute__((format(printf, 4, 5))) static int at(struct parse *p, const yaml_node_t *n, int code,
						    const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vmci_err_set(p->err, code, "%s:%zu:%zu: error: %s", p->file, n->start_mark.line + 1,
			    n->start_mark.column + 1, msg);
}

/* ---- did you mean ------------------------------------------------------ */

/* " (did you mean 'kernel'?)" when one of keys is close to word, else "". */
static void did_you_mean(const char *word, const char *const *keys, char *out, size_t size)
{
	size_t n = 0;
	while (keys[n])
		n++;
	const char *best = suggest_nearest(word, keys, n);
	out[0] = 0;
	if (best)
		snprintf(out, size, " (did you mean '%s'?)", best);
}

/* ---- node helpers -------------------------------------------------------- */

static yaml_node_t *node(struct parse *p, int index)
{
	return yaml_document_get_node(p->doc, index);
}

static const char *kind_name(const yaml_node_t *n)
{
	return n->type == YAML_MAPPING_NODE    ? "a mapping"
	       : n->type == YAML_SEQUENCE_NODE ? "a list"
					       : "a scalar";
}

static bool is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return !v[0] || !strcmp(v, "~") || !strcmp(v, "null");
}

/* A non-empty scalar copied into out, or an error naming what was expected. */
static int scalar(struct parse *p, const yaml_node_t *n, const char *what, char *out, size_t size)
{
	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return at(p, n, EINVAL, "%s must be a non-empty string, not %s", what,
			  is_null(n) ? "empty" : kind_name(n));
	const char *v = (const char *)n->data.scalar.value;
	if (n->data.scalar.length >= size || strlen(v) != n->data.scalar.length)
		return at(p, n, EINVAL, "%s is too long (at most %zu bytes) or holds a NUL", what,
			  size - 1);
	memcpy(out, v, n->data.scalar.length + 1);
	return 0;
}

/* A list of non-empty strings (null: empty), each at most max bytes. */
static int string_list(struct parse *p, const yaml_node_t *n, const char *what, size_t max,
		       struct img_strings *out)
{
	if (is_null(n))
		return 0;
	if (n->type != YAML_SEQUENCE_NODE)
		return at(p, n, EINVAL, "%s must be a list, not %s", what, kind_name(n));
	for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
	     i++) {
		yaml_node_t *item = node(p, *i);
		if (item->type != YAML_SCALAR_NODE || is_null(item))
			return at(p, item, EINVAL, "each entry of %s must be a non-empty string",
				  what);
		const char *v = (const char *)item->data.scalar.value;
		if (item->data.scalar.length > max || strlen(v) != item->data.scalar.length)
			return at(p, item, EINVAL,
				  "an entry of %s is too long (at most %zu bytes) or holds a NUL",
				  what, max);
		char **nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
		if (!nv || !(nv[out->n] = strdup(v))) {
			if (nv)
				out->v = nv;
			return vmci_err_set(p->err, ENOMEM, "out of memory");
		}
		out->v = nv;
		out->n++;
	}
	return 0;
}

/*
 * Checks that n is a mapping whose keys are all in keys (NULL-terminated)
 * and none repeats; values[i] receives the value node of keys[i], or NULL.
 */
static int mapping(struct parse *p, const yaml_node_t *n, const char *what, const char *const *keys,
		   yaml_node_t **values)
{
	size_t nkeys = 0;
	while (keys[nkeys])
		values[nkeys++] = NULL;
	if (n->type != YAML_MAPPING_NODE)
		return at(p, n, EINVAL, "%s must be a mapping, not %s", what, kind_name(n));
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = node(p, pr->key);
		if (k->type != YAML_SCALAR_NODE)
			return at(p, k, EINVAL, "keys of %s must be plain words", what);
		const char *key = (const char *)k->data.scalar.value;
		size_t i = 0;
		while (i < nkeys && strcmp(keys[i], key))
			i++;
		if (i == nkeys) {
			char hint[96], known[256] = "";
			did_you_mean(key, keys, hint, sizeof(hint));
			for (size_t j = 0; j < nkeys; j++)
				snprintf(known + strlen(known), sizeof(known) - strlen(known),
					 "%s%s", j ? ", " : "", keys[j]);
			return at(p, k, EINVAL, "unknown key '%.64s' in %s%s (known: %s)", key,
				  what, hint, known);
		}
		if (values[i])
			return at(p, k, EINVAL, "'%s' appears twice in %s", key, what);
		values[i] = node(p, pr->value);
	}
	return 0;
}

/* ---- fields ---------------------------------------------------------------- */

/* A path from the recipe, made absolute against the recipe file's directory. */
static int recipe_relative(struct parse *p, const yaml_node_t *n, const char *what, char *out,
			   size_t size)
{
	char raw[PATH_MAX];
	int rc = scalar(p, n, what, raw, sizeof(raw));
	if (rc)
		return rc;
	const char *slash = strrchr(p->file, '/');
	if (raw[0] == '/')
		rc = fs_path(out, size, "%s", raw);
	else if (slash)
		rc = fs_path(out, size, "%.*s/%s", (int)(slash - p->file), p->file, raw);
	else
		rc = fs_path(out, size, "%s", raw);
	return rc ? at(p, n, ENAMETOOLONG, "%s is too long", what) : 0;
}

static int parse_kernel(struct parse *p, const yaml_node_t *n)
{
	static const char *const keys[] = {"debian", "file", "modules", NULL};
	yaml_node_t *v[3];
	struct img_spec *s = p->spec;
	int rc = mapping(p, n, "kernel", keys, v);
	if (rc)
		return rc;
	if (!v[0] == !v[1])
		return at(p, n, EINVAL,
			  "kernel needs exactly one of 'debian' (a kernel flavour, e.g. cloud) "
			  "or 'file' (a kernel image)");
	if (v[0]) {
		rc = scalar(p, v[0], "kernel.debian", s->kernel_flavour, sizeof(s->kernel_flavour));
		if (!rc && strspn(s->kernel_flavour, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
			       strlen(s->kernel_flavour))
			return at(p, v[0], EINVAL,
				  "kernel.debian is a kernel flavour such as 'cloud' (the part of "
				  "linux-image-cloud-amd64 between linux-image- and the "
				  "architecture), not '%s'",
				  s->kernel_flavour);
	} else {
		rc =
		    recipe_relative(p, v[1], "kernel.file", s->kernel_file, sizeof(s->kernel_file));
		if (!rc && v[2])
			return at(p, v[2], EINVAL,
				  "kernel.modules needs kernel.debian: a kernel file must have its "
				  "drivers built in");
	}
	if (!rc && v[2])
		rc = string_list(p, v[2], "kernel.modules", 63, &s->modules);
	return rc;
}

static int parse_debootstrap(struct parse *p, const yaml_node_t *n)
{
	static const char *const keys[] = {"suite", "variant", "packages", "mirror", NULL};
	yaml_node_t *v[4];
	struct img_spec *s = p->spec;
	int rc = mapping(p, n, "rootfs.debootstrap", keys, v);
	if (rc)
		return rc;
	if (!v[0])
		return at(p, n, EINVAL, "rootfs.debootstrap needs a 'suite' (e.g. bookworm)");
	rc = scalar(p, v[0], "rootfs.debootstrap.suite", s->suite, sizeof(s->suite));
	snprintf(s->variant, sizeof(s->variant), "minbase");
	if (!rc && v[1])
		rc = scalar(p, v[1], "rootfs.debootstrap.variant", s->variant, sizeof(s->variant));
	if (!rc && strcmp(s->variant, "minbase") && strcmp(s->variant, "buildd") &&
	    strcmp(s->variant, "default"))
		return at(p, v[1], EINVAL,
			  "rootfs.debootstrap.variant must be minbase, buildd or default, not '%s'",
			  s->variant);
	if (!rc && v[2])
		rc = string_list(p, v[2], "rootfs.debootstrap.packages", 127, &s->packages);
	for (size_t i = 0; !rc && i < s->packages.n; i++)
		if (strspn(s->packages.v[i], "abcdefghijklmnopqrstuvwxyz0123456789+-.") !=
		    strlen(s->packages.v[i]))
			return at(p, v[2], EINVAL, "'%s' is not a Debian package name",
				  s->packages.v[i]);
	if (!rc && v[3]) {
		rc = scalar(p, v[3], "rootfs.debootstrap.mirror", s->mirror, sizeof(s->mirror));
		if (!rc && strncmp(s->mirror, "http://", 7) && strncmp(s->mirror, "https://", 8) &&
		    strncmp(s->mirror, "file:/", 6))
			return at(
			    p, v[3], EINVAL,
			    "rootfs.debootstrap.mirror must be an http://, https:// or file:/ "
			    "URL");
	}
	return rc;
}

static int parse_rootfs(struct parse *p, const yaml_node_t *n)
{
	struct img_spec *s = p->spec;
	if (n->type == YAML_SCALAR_NODE) {
		if (!strcmp((const char *)n->data.scalar.value, "busybox")) {
			s->rootfs = IMG_ROOTFS_BUSYBOX;
			return 0;
		}
		return at(p, n, EINVAL,
			  "rootfs must be 'busybox' or a mapping with one of debootstrap, "
			  "tarball, disk");
	}
	static const char *const keys[] = {"debootstrap", "tarball", "disk", NULL};
	yaml_node_t *v[3];
	int rc = mapping(p, n, "rootfs", keys, v);
	if (rc)
		return rc;
	if ((v[0] != NULL) + (v[1] != NULL) + (v[2] != NULL) != 1)
		return at(p, n, EINVAL, "rootfs needs exactly one of debootstrap, tarball, disk");
	if (v[0]) {
		s->rootfs = IMG_ROOTFS_DEBOOTSTRAP;
		return parse_debootstrap(p, v[0]);
	}
	s->rootfs = v[1] ? IMG_ROOTFS_TARBALL : IMG_ROOTFS_DISK;
	return recipe_relative(p, v[1] ? v[1] : v[2], v[1] ? "rootfs.tarball" : "rootfs.disk",
			       s->source, sizeof(s->source));
}

static int parse_root(struct parse *p, const yaml_node_t *root, const char *expected_name)
{
	enum { NAME, ARCH, KERNEL, BUSYBOX, ROOTFS, DISK_SIZE, SETUP, NKEYS };
	static const char *const keys[] = {"name",   "arch",	  "kernel", "busybox",
					   "rootfs", "disk_size", "setup",  NULL};
	yaml_node_t *v[NKEYS];
	struct img_spec *s = p->spec;
	int rc = mapping(p, root, "a recipe", keys, v);
	for (int k = 0; !rc && k < NKEYS; k++) {
		if (!v[k] && (k == NAME || k == ARCH || k == KERNEL || k == ROOTFS))
			return at(p, root, EINVAL, "the recipe has no '%s'", keys[k]);
	}
	if (rc)
		return rc;
	rc = scalar(p, v[NAME], "name", s->name, sizeof(s->name));
	if (!rc && !vmci_name_ok(s->name))
		return at(p, v[NAME], EINVAL, "bad image name '%s' (use " VMCI_NAME_RULE ")",
			  s->name);
	if (!rc && expected_name && strcmp(s->name, expected_name))
		return at(p, v[NAME], EINVAL, "name '%s' does not match the file name %s.yml",
			  s->name, expected_name);
	if (!rc)
		rc = scalar(p, v[ARCH], "arch", s->arch, sizeof(s->arch));
	if (!rc && strcmp(s->arch, "x86_64") && strcmp(s->arch, "aarch64"))
		return at(p, v[ARCH], EINVAL, "arch must be x86_64 or aarch64, not '%s'", s->arch);
	if (!rc)
		rc = parse_kernel(p, v[KERNEL]);
	snprintf(s->busybox, sizeof(s->busybox), "busybox-static");
	if (!rc && v[BUSYBOX])
		rc = scalar(p, v[BUSYBOX], "busybox", s->busybox, sizeof(s->busybox));
	if (!rc)
		rc = parse_rootfs(p, v[ROOTFS]);
	if (!rc && v[DISK_SIZE]) {
		char size[32];
		int64_t bytes = 0;
		rc = scalar(p, v[DISK_SIZE], "disk_size", size, sizeof(size));
		if (!rc &&
		    (parse_size(size, 0, &bytes) || bytes < DISK_SIZE_MIN || bytes > DISK_SIZE_MAX))
			return at(p, v[DISK_SIZE], EINVAL,
				  "disk_size must be a size between 16M and 2T such as 4G, not "
				  "'%s'",
				  size);
		s->disk_size = bytes;
		if (!rc && (s->rootfs == IMG_ROOTFS_BUSYBOX || s->rootfs == IMG_ROOTFS_DISK))
			return at(p, v[DISK_SIZE], EINVAL,
				  "disk_size applies to a root disk the build makes (debootstrap, "
				  "tarball), not to rootfs %s",
				  s->rootfs == IMG_ROOTFS_BUSYBOX ? "busybox" : "disk");
	}
	if (!rc && !v[DISK_SIZE] &&
	    (s->rootfs == IMG_ROOTFS_DEBOOTSTRAP || s->rootfs == IMG_ROOTFS_TARBALL))
		return at(p, v[ROOTFS], EINVAL,
			  "this rootfs is made into a root disk: the recipe needs a disk_size "
			  "(e.g. disk_size: 4G)");
	if (!rc && v[SETUP]) {
		rc = string_list(p, v[SETUP], "setup", 4096, &s->setup);
		if (!rc && s->setup.n && s->rootfs == IMG_ROOTFS_BUSYBOX)
			return at(p, v[SETUP], EINVAL,
				  "setup commands need a root disk to keep their changes; rootfs "
				  "busybox has none");
	}
	return rc;
}

/* ---- entry points ------------------------------------------------------------ */

/* libyaml's own complaint, at the place it found the problem. */
static int yaml_problem(const char *file, const yaml_parser_t *y, struct vmci_err *err)
{
	const yaml_mark_t *m = &y->problem_mark;
	return vmci_err_set(err, EINVAL, "%s:%zu:%zu: error: %s%s%s", file, m->line + 1,
			    m->column + 1, y->problem ? y->problem : "invalid YAML",
			    y->context ? " " : "", y->context ? y->context : "");
}

int img_spec_parse(const char *file, const void *text, size_t len, const char *expected_name,
		   struct img_spec **out, struct vmci_err *err)
{
	*out = NULL;
	struct img_spec *s = calloc(1, sizeof(*s));
	if (!s)
		return vmci_err_set(err, ENOMEM, "out of memory");
	snprintf(s->file, sizeof(s->file), "%s", file);
	struct sha256_ctx *h = sha256_new();
	if (!h) {
		free(s);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	sha256_update(h, text, len);
	sha256_finish(h, s->sha256);

	yaml_parser_t y;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&y)) {
		free(s);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	yaml_parser_set_input_string(&y, text, len);
	int rc;
	if (!yaml_parser_load(&y, &doc)) {
		rc = yaml_problem(file, &y, err);
	} else {
		yaml_node_t *root = yaml_document_get_root_node(&doc);
		struct parse p = {.file = file, .doc = &doc, .spec = s, .err = err};
		if (!root)
			rc = vmci_err_set(err, EINVAL, "%s: error: the recipe is empty", file);
		else
			rc = parse_root(&p, root, expected_name);
		yaml_document_delete(&doc);
		/* A second document would be silently ignored: refuse it. */
		yaml_document_t more;
		if (!rc && !yaml_parser_load(&y, &more)) {
			rc = yaml_problem(file, &y, err);
		} else if (!rc) {
			yaml_node_t *extra = yaml_document_get_root_node(&more);
			if (extra)
				rc = vmci_err_set(err, EINVAL,
						  "%s:%zu:1: error: a recipe is one YAML document; "
						  "remove what follows '---'",
						  file, extra->start_mark.line + 1);
			yaml_document_delete(&more);
		}
	}
	yaml_parser_delete(&y);
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
