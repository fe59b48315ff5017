/*
 * Recipes with a base: an image made of another (`base:`) with Debian
 * packages added (`packages:`), setup commands run on it (`setup:`), or
 * both. Packages go first, through img_ensure_packages, so the recipe's
 * packages are the very image a job asking for the same list on the same
 * base gets. Without setup commands the recipe's name points at that
 * image; with them, the recipe makes an image of its own on top: kernel
 * and initramfs linked from below, its root disk an overlay of the disk
 * below (so gc keeps the base while it lives), the commands run in a VM
 * (with network only for `network: nat`), and a digest covering the
 * digest below and the recipe file.
 */
#include "images/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most images with a base one image may stand on. */
#define BASE_DEPTH_MAX 8

/* Fails when following spec's bases leads back to an image already on the way. */
static int check_bases(const struct img_spec *spec, struct vmci_err *err)
{
	char chain[BASE_DEPTH_MAX + 1][64];
	size_t n = 0;
	snprintf(chain[n++], sizeof(chain[0]), "%s", spec->name);
	char next[64];
	snprintf(next, sizeof(next), "%s", spec->base);
	while (next[0]) {
		for (size_t i = 0; i < n; i++)
			if (!strcmp(chain[i], next))
				return vmci_err_set(err, ELOOP,
						    "the recipe %s: its chain of bases comes back "
						    "to %s",
						    spec->file, next);
		if (n == ARRAY_LEN(chain))
			return vmci_err_set(err, ELOOP,
					    "the recipe %s stands on more than %d images with a "
					    "base",
					    spec->file, BASE_DEPTH_MAX);
		snprintf(chain[n++], sizeof(chain[0]), "%s", next);
		struct img_spec *up = NULL;
		if (img_spec_find(next, &up, NULL))
			break; /* no recipe (or a broken one, reported when it is built) */
		snprintf(next, sizeof(next), "%s", up->base);
		img_spec_free(up);
	}
	return 0;
}

/*
 * Fails naming the first package the base's package lists do not have,
 * when they are kept; lists that cannot be read are a warning.
 */
static int check_known(const struct img_spec *spec, struct vmci_err *err)
{
	bool known[IMG_PACKAGES_MAX];
	char index[PATH_MAX + 128];
	const char *const *v = (const char *const *)spec->packages.v;
	struct vmci_err why = {0};
	int rc =
	    img_packages_known(spec->base, v, spec->packages.n, known, index, sizeof(index), &why);
	for (size_t i = 0; rc == 1 && i < spec->packages.n; i++)
		if (!known[i])
			return vmci_err_set(err, ENOENT,
					    "the recipe %s: package '%s' is not in %s, which image "
					    "'%s' is installed from: check its name",
					    spec->file, v[i], index, spec->base);
	/* The check is an early answer, not the only one: apt in the build still tells. */
	if (rc < 0)
		log_warn("packages of the recipe %s not checked: %s", spec->file, why.msg);
	return 0;
}

/* The build of a recipe with a base and setup commands, on the image below it. */
struct on_base {
	struct img_recipe recipe; /* first: the build's recipe pointer is this */
	const struct img_spec *spec;
	struct img_boot below; /* the base, or the base with the recipe's packages */
};

static int on_base_prepare(struct img_build *b, struct vmci_err *err)
{
	const struct on_base *o = (const struct on_base *)b->recipe;
	struct sha256_ctx *h = sha256_new();
	if (!h)
		return vmci_err_set(err, ENOMEM, "out of memory");
	img_digest_line(h, IMG_BUILDER_VERSION, "setup on a base 1");
	img_digest_line(h, "below", o->below.digest);
	img_digest_line(h, "recipe", o->spec->sha256);
	sha256_finish(h, b->digest);
	return 0;
}

static int on_base_build(struct img_build *b, struct vmci_err *err)
{
	const struct on_base *o = (const struct on_base *)b->recipe;
	const struct img_spec *s = o->spec;
	img_progress(b, "running setup commands", 0, (long long)s->setup.n);
	int rc = img_build_over(b, &o->below, (const char *const *)s->setup.v, s->setup.n,
				s->setup_network, err);
	if (rc) {
		vmci_err_wrap(err, "setup of image %s", s->name);
		return rc;
	}
	json_object_set_new(b->manifest, "recipe", json_string(s->file));
	return 0;
}

static void on_base_finish(struct img_build *b)
{
	(void)b;
}

int img_ensure_on_base(const struct img_spec *spec, const struct img_ensure_opts *opts,
		       struct img_boot *out, struct vmci_err *err)
{
	struct on_base o = {.spec = spec};
	int rc = check_bases(spec, err);
	if (!rc && spec->packages.n)
		rc = check_known(spec, err);
	if (!rc && spec->packages.n)
		rc = img_ensure_packages(spec->base, (const char *const *)spec->packages.v,
					 spec->packages.n, opts, &o.below, err);
	else if (!rc)
		rc = img_ensure_with(spec->base, opts, &o.below, err);
	if (!rc && spec->setup.n && !o.below.disk[0])
		rc = vmci_err_set(err, EINVAL,
				  "setup commands need a root disk to keep their changes, and "
				  "image '%s' has none",
				  spec->base);
	if (rc) {
		vmci_err_wrap(err, "image %s", spec->name);
		return rc;
	}
	if (!spec->setup.n)
		return img_name_point(spec->name, o.below.digest, out, err);
	o.recipe = (struct img_recipe){
	    .name = spec->name,
	    .arch = o.below.arch,
	    .prepare = on_base_prepare,
	    .build = on_base_build,
	    .finish = on_base_finish,
	};
	return img_ensure_recipe_with(&o.recipe, opts, out, err);
}
