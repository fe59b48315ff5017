/*
 * Building and publishing images in the store (its layout: store.c): one
 * builder per name at a time (a lock), the build made whole in a scratch
 * directory, sealed read-only, renamed into blobs/ and only then named.
 * img_ensure finds an image or builds it this way.
 */
#include "images/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int img_lock(const char *name, int op, int *fd, struct vmci_err *err)
{
	char dir[PATH_MAX], path[PATH_MAX];
	*fd = -1;
	int rc = img_store_dir(dir, sizeof(dir), "locks", err);
	if (rc)
		return rc;
	if (fs_path(path, sizeof(path), "%s/%s.lock", dir, name))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", dir);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (*fd < 0)
		return vmci_err_errno(err, errno, "cannot open the lock %s", path);
	while (flock(*fd, op) != 0) {
		if (errno == EINTR)
			continue;
		rc = (op & LOCK_NB) && errno == EWOULDBLOCK
			 ? -EWOULDBLOCK
			 : vmci_err_errno(err, errno, "cannot lock %s", path);
		close(*fd);
		*fd = -1;
		return rc;
	}
	return 0;
}

/* Holds locks/<name>.lock; waits (saying so) while another process builds name. */
static int lock_name(const char *name, int *fd, struct img_build *b, struct vmci_err *err)
{
	int rc = img_lock(name, LOCK_EX | LOCK_NB, fd, err);
	if (rc != -EWOULDBLOCK)
		return rc;
	log_info("image %s: waiting for another process building it", name);
	img_progress(b, "waiting for another build", 0, 0);
	return img_lock(name, LOCK_EX, fd, err);
}

static int write_manifest(struct img_build *b, struct vmci_err *err)
{
	char created[32], path[PATH_MAX], digest[SHA256_HEX_LEN + 8];
	time_t now = time(NULL);
	struct tm tm;
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	snprintf(digest, sizeof(digest), "sha256:%s", b->digest);
	json_object_set_new(b->manifest, "name", json_string(b->recipe->name));
	json_object_set_new(b->manifest, "arch", json_string(b->recipe->arch));
	json_object_set_new(b->manifest, "digest", json_string(digest));
	json_object_set_new(b->manifest, "created", json_string(created));
	json_object_set_new(b->manifest, "builder", json_string(IMG_BUILDER_VERSION));
	json_object_set_new(b->manifest, "kernel_file", json_string(IMG_KERNEL_FILE));
	json_object_set_new(b->manifest, "initrd_file", json_string(IMG_INITRD_FILE));
	if (!json_object_get(b->manifest, "cmdline"))
		json_object_set_new(b->manifest, "cmdline", json_string(""));
	char *text = json_dumps(b->manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text)
		return vmci_err_set(err, ENOMEM, "out of memory");
	fs_path(path, sizeof(path), "%s/%s", b->dir, IMG_MANIFEST_FILE);
	size_t len = strlen(text);
	text[len] = '\n'; /* json_dumps leaves no newline; its NUL is ours to reuse */
	int rc = fs_write_atomic(path, text, len + 1, 0444, err);
	free(text);
	return rc;
}

/* Makes every file of the build read-only, then the directory, durably. */
static int seal(struct img_scratch *s, struct vmci_err *err)
{
	DIR *d = opendir(s->path);
	if (!d)
		return vmci_err_errno(err, errno, "cannot open %s", s->path);
	struct dirent *de;
	int rc = 0;
	while (!rc && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, "..")))
			continue;
		if (fchmodat(dirfd(d), de->d_name, 0444, 0) != 0)
			rc = vmci_err_errno(err, errno, "cannot make %s/%s read-only", s->path,
					    de->d_name);
	}
	closedir(d);
	if (!rc && (fsync(s->fd) != 0 || fchmod(s->fd, 0555) != 0))
		rc = vmci_err_errno(err, errno, "cannot seal %s", s->path);
	return rc;
}

/* Builds b's recipe into a scratch directory and renames it into blobs/. */
static int build_and_publish(struct img_build *b, const char *blob, struct vmci_err *err)
{
	char tmp[PATH_MAX];
	int rc = img_store_dir(tmp, sizeof(tmp), "tmp", err);
	if (rc)
		return rc;
	struct img_scratch s;
	rc = img_scratch_new(tmp, b->digest, &s, err);
	if (rc)
		return rc;
	snprintf(b->dir, sizeof(b->dir), "%s", s.path);
	rc = b->recipe->build(b, err);
	if (!rc)
		rc = write_manifest(b, err);
	if (!rc)
		rc = seal(&s, err);
	if (!rc) {
		char blobs[PATH_MAX];
		struct vmci_err rename_err = {0};
		rc = img_store_dir(blobs, sizeof(blobs), "blobs", err);
		if (!rc)
			rc = fs_rename_durable(s.path, blob, &rename_err);
		if (rc && (rename_err.code == EEXIST || rename_err.code == ENOTEMPTY) &&
		    img_blob_complete(blob)) {
			log_info("image %s: sha256:%.12s was already published", b->recipe->name,
				 b->digest);
			rc = 0;
		} else if (rc && rename_err.code && err) {
			*err = rename_err;
		}
	}
	img_scratch_drop(&s);
	return rc;
}

int img_ensure_recipe(const struct img_recipe *r, struct img_boot *out, img_progress_fn progress,
		      void *ctx, struct vmci_err *err)
{
	struct img_ensure_opts opts = {.progress = progress, .progress_ctx = ctx};
	return img_ensure_recipe_with(r, &opts, out, err);
}

int img_ensure_recipe_with(const struct img_recipe *r, const struct img_ensure_opts *opts,
			   struct img_boot *out, struct vmci_err *err)
{
	struct img_build b = {.recipe = r};
	if (opts) {
		b.progress = opts->progress;
		b.ctx = opts->progress_ctx;
		b.setup = opts->setup;
		b.setup_ctx = opts->setup_ctx;
	}
	char tmp[PATH_MAX], blob[PATH_MAX], indexed[SHA256_HEX_LEN + 1] = "";
	int lock = -1;
	int64_t start = clock_ms();
	int rc = img_name_check(r->name, err);
	if (!rc)
		rc = img_store_dir(tmp, sizeof(tmp), "tmp", err);
	if (!rc)
		rc = lock_name(r->name, &lock, &b, err);
	if (rc)
		return rc;
	img_scratch_clean(tmp, NULL);

	b.manifest = json_object();
	rc = b.manifest ? r->prepare(&b, err) : vmci_err_set(err, ENOMEM, "out of memory");
	if (!rc && img_blob_path(b.digest, blob, sizeof(blob)))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", img_store_root());
	if (!rc && img_name_read(r->name, indexed, NULL) == 0 && !strcmp(indexed, b.digest) &&
	    img_blob_complete(blob))
		goto done; /* up to date */
	if (!rc && !img_blob_complete(blob)) {
		/*
		 * Only an interrupted removal leaves a blob incomplete; it would block the rename.
		 */
		if (fs_exists(blob)) {
			log_warn("image %s: removing the incomplete %s", r->name, blob);
			rc = fs_rm_rf(blob, err);
		}
		if (!rc)
			rc = build_and_publish(&b, blob, err);
		if (!rc) {
			char took[32];
			format_duration(clock_ms() - start, took, sizeof(took));
			log_info("image %s: built sha256:%.12s in %s", r->name, b.digest, took);
		}
	}
	if (!rc) {
		/*
		 * The blob may have been published under another name that was since
		 * removed: the store lock keeps gc off it until the name is written.
		 */
		int store_lock = -1;
		rc = img_store_lock(false, &store_lock, err);
		if (!rc && !img_blob_complete(blob))
			rc = vmci_err_set(err, EAGAIN,
					  "sha256:%.12s was removed by `vmci image gc` meanwhile "
					  "(try again)",
					  b.digest);
		if (!rc)
			rc = img_name_write(r->name, b.digest, err);
		if (store_lock >= 0)
			close(store_lock);
	}
done:
	if (!rc)
		rc = img_fill_boot(r->name, b.digest, out, err);
	if (rc)
		vmci_err_wrap(err, "image %s", r->name);
	r->finish(&b);
	json_decref(b.manifest);
	close(lock);
	return rc;
}

int img_ensure(const char *name, struct img_boot *out, img_progress_fn progress, void *ctx,
	       struct vmci_err *err)
{
	struct img_ensure_opts opts = {.progress = progress, .progress_ctx = ctx};
	return img_ensure_with(name, &opts, out, err);
}

int img_ensure_with(const char *name, const struct img_ensure_opts *opts, struct img_boot *out,
		    struct vmci_err *err)
{
	int rc = img_name_check(name, err);
	if (rc)
		return rc;
	/* A recipe file builds the image; its absence is not yet an error. */
	struct img_spec *spec = NULL;
	struct vmci_err spec_err = {0};
	rc = img_spec_find(name, &spec, &spec_err);
	if (rc == 0 && spec->base[0]) {
		rc = img_ensure_on_base(spec, opts, out, err);
		img_spec_free(spec);
		return rc;
	}
	if (rc != -ENOENT) {
		struct img_recipe *r = rc ? NULL : img_recipe_new(spec, &spec_err);
		if (!r) {
			if (err)
				*err = spec_err;
			return -(spec_err.code ? spec_err.code : EIO);
		}
		rc = img_ensure_recipe_with(r, opts, out, err);
		img_recipe_free(r);
		return rc;
	}
	/* No recipe: an imported or pulled image can still be in the store. */
	rc = img_find(name, out, err);
	if (rc == -ENOENT) {
		char known[256] = "";
		char **names = NULL;
		img_recipe_names(&names, NULL);
		for (size_t i = 0; names && names[i]; i++)
			snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
				 i ? ", " : "", names[i]);
		img_names_free(names);
		return vmci_err_set(
		    err, ENOENT,
		    "unknown image '%s': no recipe builds it and %s does not hold it (known: %s)",
		    name, img_store_root(), known);
	}
	return rc;
}

int img_name_point(const char *name, const char *digest, struct img_boot *out, struct vmci_err *err)
{
	char blob[PATH_MAX], indexed[SHA256_HEX_LEN + 1] = "";
	int lock = -1, store_lock = -1;
	struct img_build quiet = {0};
	int rc = img_name_check(name, err);
	if (!rc && img_blob_path(digest, blob, sizeof(blob)))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", img_store_root());
	if (!rc)
		rc = lock_name(name, &lock, &quiet, err);
	if (!rc && (img_name_read(name, indexed, NULL) != 0 || strcmp(indexed, digest))) {
		/* As a publish does: the store lock keeps gc off the blob until it is named. */
		rc = img_store_lock(false, &store_lock, err);
		if (!rc && !img_blob_complete(blob))
			rc = vmci_err_set(err, EAGAIN,
					  "sha256:%.12s was removed by `vmci image gc` meanwhile "
					  "(try again)",
					  digest);
		if (!rc)
			rc = img_name_write(name, digest, err);
		if (store_lock >= 0)
			close(store_lock);
	}
	if (!rc)
		rc = img_fill_boot(name, digest, out, err);
	if (lock >= 0)
		close(lock);
	if (rc)
		vmci_err_wrap(err, "image %s", name);
	return rc;
}

int img_name_lock(const char *name, bool wait, int *fd, struct vmci_err *err)
{
	if (wait) {
		struct img_build quiet = {0};
		return lock_name(name, fd, &quiet, err);
	}
	return img_lock(name, LOCK_EX | LOCK_NB, fd, err);
}
