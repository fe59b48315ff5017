/*
 * The image store under $VMCI_HOME/images:
 *
 *   blobs/sha256-<digest>/   a published image, read-only (0555 dir, 0444 files):
 *       vmlinuz, initramfs.cpio.gz, manifest.json
 *   names/<name>             "sha256:<digest>\n", replaced atomically
 *   tmp/<digest>.<pid>/      a build in progress (locked while its builder lives)
 *   locks/<name>.lock        flock'd by the process building <name>
 *
 * A blob directory appears only by rename of a complete, synced build, and
 * a name is written only after its blob is in place, so a reader never
 * sees a partial image; an interrupted build leaves only a tmp directory,
 * which the next build removes.
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

const char *img_store_root(void)
{
	static char root[PATH_MAX];
	if (!root[0] && fs_path(root, sizeof(root), "%s/images", vmci_home()))
		snprintf(root, sizeof(root), "/tmp/vmci-images");
	return root;
}

/* root/sub, created when missing. */
static int store_dir(char *out, size_t size, const char *sub, struct vmci_err *err)
{
	if (fs_path(out, size, "%s/%s", img_store_root(), sub))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", img_store_root());
	return fs_mkdir_p(out, 0755, err);
}

_Static_assert(sizeof(((struct img_boot *)0)->name) > VMCI_NAME_MAX, "image names must fit");

/* Names become file names: vmci_name_ok, the rule pipelines check `image:` with. */
static int check_name(const char *name, struct vmci_err *err)
{
	if (!vmci_name_ok(name))
		return vmci_err_set(err, EINVAL, "bad image name '%s' (use " VMCI_NAME_RULE ")",
				    name);
	return 0;
}

/* ---- scratch directories ------------------------------------------------ */

/* True when fd is still the directory at path (not removed or replaced). */
static bool same_dir(int fd, const char *path)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

int img_scratch_new(const char *parent, const char *prefix, struct img_scratch *out,
		    struct vmci_err *err)
{
	int rc = fs_mkdir_p(parent, 0755, err);
	if (rc)
		return rc;
	for (int attempt = 0; attempt < 100; attempt++) {
		if ((attempt ? fs_path(out->path, sizeof(out->path), "%s/%s.%d-%d", parent, prefix,
				       (int)getpid(), attempt)
			     : fs_path(out->path, sizeof(out->path), "%s/%s.%d", parent, prefix,
				       (int)getpid())))
			return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", parent);
		if (mkdir(out->path, 0755) != 0) {
			if (errno == EEXIST)
				continue;
			return vmci_err_errno(err, errno, "cannot create %s", out->path);
		}
		out->fd = open(out->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (out->fd < 0)
			return vmci_err_errno(err, errno, "cannot open %s", out->path);
		/* A cleaner may have taken the new directory for abandoned: then try again. */
		while (flock(out->fd, LOCK_EX) != 0 && errno == EINTR)
			;
		if (same_dir(out->fd, out->path))
			return 0;
		close(out->fd);
	}
	return vmci_err_set(err, EEXIST, "cannot create a scratch directory in %s", parent);
}

void img_scratch_drop(struct img_scratch *s)
{
	if (s->fd < 0)
		return;
	if (s->path[0] && same_dir(s->fd, s->path) && fs_rm_rf(s->path, NULL))
		log_warn("cannot remove %s", s->path);
	close(s->fd);
	s->fd = -1;
}

int img_scratch_clean(const char *parent, struct vmci_err *err)
{
	DIR *d = opendir(parent);
	if (!d)
		return errno == ENOENT ? 0 : vmci_err_errno(err, errno, "cannot open %s", parent);
	int removed = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		if (de->d_name[0] == '.' ||
		    fs_path(path, sizeof(path), "%s/%s", parent, de->d_name))
			continue;
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		/* The lock is free only when the process that made it is gone. */
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && same_dir(fd, path)) {
			log_info("removing %s, left by an interrupted build", path);
			if (fs_rm_rf(path, NULL) == 0)
				removed++;
		}
		close(fd);
	}
	closedir(d);
	return removed;
}

/* ---- names and blobs ---------------------------------------------------- */

static int blob_path(const char *digest, char *out, size_t size)
{
	return fs_path(out, size, "%s/blobs/sha256-%s", img_store_root(), digest);
}

static bool blob_complete(const char *dir)
{
	static const char *const files[] = {IMG_KERNEL_FILE, IMG_INITRD_FILE, IMG_MANIFEST_FILE};
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		char p[PATH_MAX];
		if (fs_path(p, sizeof(p), "%s/%s", dir, files[i]) || !fs_exists(p))
			return false;
	}
	return true;
}

/* The digest names/<name> points at. Returns 0, -ENOENT, or -EINVAL when unreadable. */
static int read_name(const char *name, char digest[SHA256_HEX_LEN + 1], struct vmci_err *err)
{
	char path[PATH_MAX];
	if (fs_path(path, sizeof(path), "%s/names/%s", img_store_root(), name))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", img_store_root());
	if (!fs_exists(path))
		return -ENOENT;
	struct buf b = {0};
	int rc = fs_read_file(path, 256, &b, err);
	const char *s = rc ? "" : buf_cstr(&b);
	if (!rc &&
	    (strncmp(s, "sha256:", 7) || strspn(s + 7, "0123456789abcdef") != SHA256_HEX_LEN))
		rc = vmci_err_set(err, EINVAL,
				  "%s does not hold an image digest (delete it and build again)",
				  path);
	if (!rc)
		snprintf(digest, SHA256_HEX_LEN + 1, "%s", s + 7);
	buf_free(&b);
	return rc;
}

static int write_name(const char *name, const char *digest, struct vmci_err *err)
{
	char dir[PATH_MAX], path[PATH_MAX], line[SHA256_HEX_LEN + 16];
	int rc = store_dir(dir, sizeof(dir), "names", err);
	if (rc)
		return rc;
	if (fs_path(path, sizeof(path), "%s/%s", dir, name))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", dir);
	int n = snprintf(line, sizeof(line), "sha256:%s\n", digest);
	return fs_write_atomic(path, line, (size_t)n, 0644, err);
}

/* Fills out from a published blob; arch and cmdline come from its manifest. */
static int fill_boot(const char *name, const char *digest, struct img_boot *out,
		     struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->digest, sizeof(out->digest), "%s", digest);
	if (blob_path(digest, out->dir, sizeof(out->dir)) ||
	    fs_path(out->kernel, sizeof(out->kernel), "%s/%s", out->dir, IMG_KERNEL_FILE) ||
	    fs_path(out->initrd, sizeof(out->initrd), "%s/%s", out->dir, IMG_INITRD_FILE))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", img_store_root());
	char manifest[PATH_MAX];
	fs_path(manifest, sizeof(manifest), "%s/%s", out->dir, IMG_MANIFEST_FILE);
	json_error_t jerr;
	json_t *m = json_load_file(manifest, 0, &jerr);
	if (!m)
		return vmci_err_set(err, EINVAL, "cannot read %s: %s (run: vmci image build %s)",
				    manifest, jerr.text, name);
	const char *arch = json_string_value(json_object_get(m, "arch"));
	const char *cmdline = json_string_value(json_object_get(m, "cmdline"));
	const char *disk = json_string_value(json_object_get(m, "disk_file"));
	snprintf(out->arch, sizeof(out->arch), "%s", arch ? arch : "");
	snprintf(out->cmdline, sizeof(out->cmdline), "%s", cmdline ? cmdline : "");
	/* The root disk, for images that have one: only IMG_DISK_FILE is ever published. */
	int rc = 0;
	if (disk && (strcmp(disk, IMG_DISK_FILE) ||
		     fs_path(out->disk, sizeof(out->disk), "%s/%s", out->dir, disk) ||
		     !fs_exists(out->disk)))
		rc = vmci_err_set(err, ENOENT,
				  "image '%s' (sha256:%.12s) has no root disk %s in %s (remove "
				  "it and build or import it again)",
				  name, digest, disk, out->dir);
	json_decref(m);
	return rc;
}

int img_find(const char *name, struct img_boot *out, struct vmci_err *err)
{
	int rc = check_name(name, err);
	if (rc)
		return rc;
	char digest[SHA256_HEX_LEN + 1], dir[PATH_MAX];
	rc = read_name(name, digest, err);
	if (rc == -ENOENT)
		return vmci_err_set(err, ENOENT,
				    "image '%s' not found in %s (run: vmci image build %s)", name,
				    img_store_root(), name);
	if (rc)
		return rc;
	if (blob_path(digest, dir, sizeof(dir)) || !blob_complete(dir))
		return vmci_err_set(err, ENOENT,
				    "image '%s' points at sha256:%.12s, which is missing from %s "
				    "(run: vmci image build %s)",
				    name, digest, img_store_root(), name);
	return fill_boot(name, digest, out, err);
}

/* ---- building and publishing --------------------------------------------- */

int img_lock(const char *name, int op, int *fd, struct vmci_err *err)
{
	char dir[PATH_MAX], path[PATH_MAX];
	*fd = -1;
	int rc = store_dir(dir, sizeof(dir), "locks", err);
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
	int rc = store_dir(tmp, sizeof(tmp), "tmp", err);
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
		rc = store_dir(blobs, sizeof(blobs), "blobs", err);
		if (!rc)
			rc = fs_rename_durable(s.path, blob, &rename_err);
		if (rc && (rename_err.code == EEXIST || rename_err.code == ENOTEMPTY) &&
		    blob_complete(blob)) {
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
	int rc = check_name(r->name, err);
	if (!rc)
		rc = store_dir(tmp, sizeof(tmp), "tmp", err);
	if (!rc)
		rc = lock_name(r->name, &lock, &b, err);
	if (rc)
		return rc;
	img_scratch_clean(tmp, NULL);

	b.manifest = json_object();
	rc = b.manifest ? r->prepare(&b, err) : vmci_err_set(err, ENOMEM, "out of memory");
	if (!rc && blob_path(b.digest, blob, sizeof(blob)))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", img_store_root());
	if (!rc && read_name(r->name, indexed, NULL) == 0 && !strcmp(indexed, b.digest) &&
	    blob_complete(blob))
		goto done; /* up to date */
	if (!rc && !blob_complete(blob)) {
		/* Only an interrupted removal leaves a blob incomplete; it would block the rename.
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
		if (!rc && !blob_complete(blob))
			rc = vmci_err_set(err, EAGAIN,
					  "sha256:%.12s was removed by `vmci image gc` meanwhile "
					  "(try again)",
					  b.digest);
		if (!rc)
			rc = write_name(r->name, b.digest, err);
		if (store_lock >= 0)
			close(store_lock);
	}
done:
	if (!rc)
		rc = fill_boot(r->name, b.digest, out, err);
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
	int rc = check_name(name, err);
	if (rc)
		return rc;
	/* A recipe file builds the image; its absence is not yet an error. */
	struct img_spec *spec = NULL;
	struct vmci_err spec_err = {0};
	rc = img_spec_find(name, &spec, &spec_err);
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

/* ---- for the other store operations (clone.c, gc.c, list.c, pull.c) ------- */

int img_store_dir(char *out, size_t size, const char *sub, struct vmci_err *err)
{
	return store_dir(out, size, sub, err);
}

int img_name_check(const char *name, struct vmci_err *err)
{
	return check_name(name, err);
}

int img_name_read(const char *name, char digest[SHA256_HEX_LEN + 1], struct vmci_err *err)
{
	return read_name(name, digest, err);
}

int img_name_write(const char *name, const char *digest, struct vmci_err *err)
{
	return write_name(name, digest, err);
}

int img_blob_path(const char *digest, char *out, size_t size)
{
	return blob_path(digest, out, size);
}

bool img_blob_complete(const char *dir)
{
	return blob_complete(dir);
}

int img_name_lock(const char *name, bool wait, int *fd, struct vmci_err *err)
{
	if (wait) {
		struct img_build quiet = {0};
		return lock_name(name, fd, &quiet, err);
	}
	return img_lock(name, LOCK_EX | LOCK_NB, fd, err);
}
