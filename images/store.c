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
int img_store_dir(char *out, size_t size, const char *sub, struct vmci_err *err)
{
	if (fs_path(out, size, "%s/%s", img_store_root(), sub))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", img_store_root());
	return fs_mkdir_p(out, 0755, err);
}

_Static_assert(sizeof(((struct img_boot *)0)->name) > VMCI_NAME_MAX, "image names must fit");

/* Names become file names: vmci_name_ok, the rule pipelines check `image:` with. */
int img_name_check(const char *name, struct vmci_err *err)
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

int img_blob_path(const char *digest, char *out, size_t size)
{
	return fs_path(out, size, "%s/blobs/sha256-%s", img_store_root(), digest);
}

bool img_blob_complete(const char *dir)
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
int img_name_read(const char *name, char digest[SHA256_HEX_LEN + 1], struct vmci_err *err)
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

int img_name_write(const char *name, const char *digest, struct vmci_err *err)
{
	char dir[PATH_MAX], path[PATH_MAX], line[SHA256_HEX_LEN + 16];
	int rc = img_store_dir(dir, sizeof(dir), "names", err);
	if (rc)
		return rc;
	if (fs_path(path, sizeof(path), "%s/%s", dir, name))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", dir);
	int n = snprintf(line, sizeof(line), "sha256:%s\n", digest);
	return fs_write_atomic(path, line, (size_t)n, 0644, err);
}

/* Fills out from a published blob; arch and cmdline come from its manifest. */
int img_fill_boot(const char *name, const char *digest, struct img_boot *out, struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->digest, sizeof(out->digest), "%s", digest);
	if (img_blob_path(digest, out->dir, sizeof(out->dir)) ||
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
	int rc = img_name_check(name, err);
	if (rc)
		return rc;
	char digest[SHA256_HEX_LEN + 1], dir[PATH_MAX];
	rc = img_name_read(name, digest, err);
	if (rc == -ENOENT)
		return vmci_err_set(err, ENOENT,
				    "image '%s' not found in %s (run: vmci image build %s)", name,
				    img_store_root(), name);
	if (rc)
		return rc;
	if (img_blob_path(digest, dir, sizeof(dir)) || !img_blob_complete(dir))
		return vmci_err_set(err, ENOENT,
				    "image '%s' points at sha256:%.12s, which is missing from %s "
				    "(run: vmci image build %s)",
				    name, digest, img_store_root(), name);
	return img_fill_boot(name, digest, out, err);
}
