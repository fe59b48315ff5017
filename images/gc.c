/*
 * Removing images: img_remove drops a name, img_gc removes what nothing
 * references any more.
 *
 * gc decides under the exclusive store lock (see img_store_lock): it
 * collects every reference (names, live clones, and the backing chains of
 * what they keep), then moves each unreferenced blob into a locked scratch
 * directory of tmp/ before deleting it. The rename is atomic, so a blob is
 * either published and whole or gone from blobs/; a gc killed while
 * deleting leaves only an unlocked directory in tmp/, which the next gc or
 * build removes.
 *
 * Work in progress (builds, imports, pulls, package downloads) keeps its
 * scratch files and directories locked (flock) while its process runs;
 * gc removes every one whose lock is free, wherever it lies.
 */
#include "images/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int img_store_lock(bool exclusive, int *fd, struct vmci_err *err)
{
	/* ".store": image names never start with a dot, so no image shares this lock. */
	return img_lock(".store", exclusive ? LOCK_EX : LOCK_SH, fd, err);
}

int img_remove(const char *name, char digest[SHA256_HEX_LEN + 1], struct vmci_err *err)
{
	char found[SHA256_HEX_LEN + 1], names[PATH_MAX], path[PATH_MAX];
	int lock = -1;
	int rc = img_name_check(name, err);
	if (!rc && img_name_read(name, found, NULL) == -ENOENT)
		rc = -ENOENT; /* checked first, so that no lock file is made for a typo */
	if (!rc)
		rc = img_name_lock(name, false, &lock, err);
	if (rc == -EWOULDBLOCK)
		return vmci_err_set(err, EBUSY,
				    "image '%s' is being built or published by another process "
				    "(try again when it is done)",
				    name);
	if (!rc)
		rc = img_name_read(name, found, err);
	if (rc == -ENOENT)
		rc = vmci_err_set(err, ENOENT, "image '%s' not found in %s (see: vmci image ls)",
				  name, img_store_root());
	if (!rc)
		rc = img_store_dir(names, sizeof(names), "names", err);
	if (!rc && fs_path(path, sizeof(path), "%s/%s", names, name))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", names);
	if (!rc && unlink(path) != 0)
		rc = vmci_err_errno(err, errno, "cannot remove %s", path);
	if (!rc) {
		/* Durable like the write that made it: a removed name stays removed. */
		int dfd = open(names, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		if (digest)
			snprintf(digest, SHA256_HEX_LEN + 1, "%s", found);
	}
	if (lock >= 0)
		close(lock);
	return rc;
}

/* ---- gc -------------------------------------------------------------------- */

struct gc {
	const struct img_gc_opts *opts;
	struct img_gc_report *report;
	char (*keep)[SHA256_HEX_LEN + 1]; /* digests something references */
	size_t nkeep;
	struct img_scratch trash; /* where doomed blobs go; fd -1 until needed */
};

static void item(struct gc *g, enum img_gc_kind kind, const char *what, long long bytes)
{
	g->report->removed[kind]++;
	g->report->bytes += bytes;
	if (g->opts && g->opts->on_item)
		g->opts->on_item(g->opts->ctx, kind, what, bytes);
}

static bool dry(const struct gc *g)
{
	return g->opts && g->opts->dry_run;
}

static bool kept(const struct gc *g, const char *digest)
{
	for (size_t i = 0; i < g->nkeep; i++)
		if (!strcmp(g->keep[i], digest))
			return true;
	return false;
}

/* Keeps digest and, through the backing chains of its disks, its parents. */
static int keep(struct gc *g, const char *digest, struct vmci_err *err)
{
	if (kept(g, digest))
		return 0;
	char(*parents)[SHA256_HEX_LEN + 1] = NULL;
	size_t np = 0;
	int rc = img_blob_parents(digest, &parents, &np, err);
	char(*grown)[SHA256_HEX_LEN + 1] =
	    rc ? NULL : realloc(g->keep, (g->nkeep + 1 + np) * sizeof(*g->keep));
	if (!rc && !grown)
		rc = vmci_err_set(err, ENOMEM, "out of memory");
	if (!rc) {
		g->keep = grown;
		snprintf(g->keep[g->nkeep++], SHA256_HEX_LEN + 1, "%s", digest);
		for (size_t i = 0; i < np; i++)
			if (!kept(g, parents[i]))
				memcpy(g->keep[g->nkeep++], parents[i], SHA256_HEX_LEN + 1);
	}
	free(parents);
	return rc;
}

/* Live clones keep their images; stale ones and orphan registrations go. */
static int sweep_clones(struct gc *g, struct vmci_err *err)
{
	struct img_clone_reg *regs = NULL;
	size_t n = 0;
	int rc = img_clone_regs(&regs, &n, err);
	for (size_t i = 0; !rc && i < n; i++) {
		const struct img_clone_reg *r = &regs[i];
		if (r->state == IMG_CLONE_LIVE) {
			rc = keep(g, r->digest, err);
			continue;
		}
		bool stale = r->state == IMG_CLONE_STALE;
		long long bytes = stale ? img_disk_usage(r->overlay) : img_disk_usage(r->file);
		if (!dry(g) && (rc = img_clone_reg_drop(r, stale, err)) != 0)
			break;
		item(g, stale ? IMG_GC_CLONE : IMG_GC_REGISTRATION, stale ? r->overlay : r->file,
		     bytes);
	}
	free(regs);
	return rc;
}

static int keep_named(struct gc *g, struct vmci_err *err)
{
	char dir[PATH_MAX];
	int rc = img_store_dir(dir, sizeof(dir), "names", err);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (!d)
		return vmci_err_errno(err, errno, "cannot open %s", dir);
	struct dirent *de;
	while (!rc && (de = readdir(d)) != NULL) {
		char digest[SHA256_HEX_LEN + 1];
		/* A name being written (fs_write_atomic's temporary file) keeps its image too. */
		if (de->d_name[0] == '.' || img_name_check(de->d_name, NULL))
			continue;
		if (img_name_read(de->d_name, digest, NULL) == 0)
			rc = keep(g, digest, err);
		else
			log_warn("gc: %s/%s does not hold a digest; ignoring it", dir, de->d_name);
	}
	closedir(d);
	return rc;
}

/* The name the blob was published under, from its manifest ("" when unreadable). */
static void blob_name(const char *dir, char *name, size_t size)
{
	char path[PATH_MAX];
	json_t *m = fs_path(path, sizeof(path), "%s/%s", dir, IMG_MANIFEST_FILE)
			? NULL
			: json_load_file(path, 0, NULL);
	const char *s = json_string_value(json_object_get(m, "name"));
	snprintf(name, size, "%s", s && !img_name_check(s, NULL) ? s : "");
	json_decref(m);
}

/* Moves one unreferenced blob into the trash, unless a build is publishing it. */
static int doom_blob(struct gc *g, const char *digest, const char *dir, struct vmci_err *err)
{
	char name[64], what[SHA256_HEX_LEN + 96], now[SHA256_HEX_LEN + 1];
	int lock = -1;
	blob_name(dir, name, sizeof(name));
	if (name[0]) {
		/*
		 * The build that publishes a blob holds its name's lock until the name is written.
		 */
		int rc = img_name_lock(name, false, &lock, err);
		if (rc == -EWOULDBLOCK) {
			log_info("gc: keeping sha256:%.12s, which a build of %s is publishing",
				 digest, name);
			g->report->busy++;
			return 0;
		}
		if (rc)
			return rc;
		if (img_name_read(name, now, NULL) == 0 && !strcmp(now, digest)) {
			close(lock); /* published while we looked */
			return 0;
		}
	}
	snprintf(what, sizeof(what), "sha256:%s%s%s%s", digest, name[0] ? " (" : "", name,
		 name[0] ? ")" : "");
	long long bytes = img_disk_usage(dir);
	int rc = 0;
	if (!dry(g)) {
		char tmp[PATH_MAX], to[PATH_MAX];
		if (g->trash.fd < 0 && !(rc = img_store_dir(tmp, sizeof(tmp), "tmp", err)))
			rc = img_scratch_new(tmp, "gc", &g->trash, err);
		if (!rc && fs_path(to, sizeof(to), "%s/sha256-%s", g->trash.path, digest))
			rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s",
					  g->trash.path);
		/* Moving a directory to another parent needs write access to it (its ".."). */
		if (!rc && (chmod(dir, 0755) != 0 || rename(dir, to) != 0))
			rc = vmci_err_errno(err, errno, "cannot move %s out of the store", dir);
	}
	if (!rc)
		item(g, IMG_GC_IMAGE, what, bytes);
	if (lock >= 0)
		close(lock);
	return rc;
}

static int sweep_blobs(struct gc *g, struct vmci_err *err)
{
	char blobs[PATH_MAX];
	int rc = img_store_dir(blobs, sizeof(blobs), "blobs", err);
	if (rc)
		return rc;
	DIR *d = opendir(blobs);
	if (!d)
		return vmci_err_errno(err, errno, "cannot open %s", blobs);
	struct dirent *de;
	while (!rc && (de = readdir(d)) != NULL) {
		const char *hex = de->d_name + 7;
		char dir[PATH_MAX];
		if (strncmp(de->d_name, "sha256-", 7) || strlen(hex) != SHA256_HEX_LEN ||
		    kept(g, hex) || fs_path(dir, sizeof(dir), "%s/%s", blobs, de->d_name))
			continue;
		rc = doom_blob(g, hex, dir, err);
	}
	closedir(d);
	return rc;
}

/*
 * Whether the process that made path (a scratch directory or a partial
 * download) is gone: its maker holds a flock on it for as long as it runs,
 * so a lock we can take means nobody owns it. When true, *fd holds that
 * lock (close it once path is removed), so that no new owner takes path
 * over meanwhile.
 */
static bool abandoned(const char *path, bool dir, int *fd)
{
	struct stat st, fst;
	*fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
	if (*fd < 0)
		return false;
	/* The same file after the lock: not one made anew since we opened it. */
	if (flock(*fd, LOCK_EX | LOCK_NB) == 0 && fstat(*fd, &fst) == 0 && lstat(path, &st) == 0 &&
	    fst.st_dev == st.st_dev && fst.st_ino == st.st_ino)
		return true;
	close(*fd);
	*fd = -1;
	return false;
}

/*
 * Removes what interrupted work left in parent: directories (scratch of
 * builds, imports, pulls and package downloads) and, when downloads is
 * true, partial pulls (pull-*.part, which a later pull would resume).
 * Root filesystem trees may hold mounts (debootstrap's /proc), which are
 * unmounted first: removing through a mount would reach the host.
 */
static int sweep_scratch(struct gc *g, const char *parent, bool downloads, struct vmci_err *err)
{
	DIR *d = opendir(parent);
	if (!d)
		return errno == ENOENT ? 0 : vmci_err_errno(err, errno, "cannot open %s", parent);
	int rc = 0;
	struct dirent *de;
	while (!rc && (de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		struct stat st;
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' ||
		    fs_path(path, sizeof(path), "%s/%s", parent, de->d_name) ||
		    lstat(path, &st) != 0)
			continue;
		bool dir = S_ISDIR(st.st_mode);
		bool part = downloads && S_ISREG(st.st_mode) && len > 5 &&
			    !strcmp(de->d_name + len - 5, ".part");
		int fd;
		if ((!dir && !part) || !abandoned(path, dir, &fd))
			continue;
		long long bytes = img_disk_usage(path);
		if (!dry(g)) {
			if (dir)
				img_umount_below(path);
			rc = fs_rm_rf(path, err);
		}
		if (!rc)
			item(g, dir ? IMG_GC_SCRATCH : IMG_GC_DOWNLOAD, path, bytes);
		close(fd);
	}
	closedir(d);
	return rc;
}

/* Every place where work in progress keeps files: the store's tmp/ and the caches. */
static int sweep_leftovers(struct gc *g, struct vmci_err *err)
{
	static const char *const caches[] = {"cache/rootfs", "cache/debs/partial"};
	char dir[PATH_MAX];
	int rc = img_store_dir(dir, sizeof(dir), "tmp", err);
	if (!rc)
		rc = sweep_scratch(g, dir, true, err);
	for (size_t i = 0; !rc && i < ARRAY_LEN(caches); i++) {
		if (fs_path(dir, sizeof(dir), "%s/%s", vmci_home(), caches[i]))
			return vmci_err_set(err, ENAMETOOLONG, "path too long under %s",
					    vmci_home());
		rc = sweep_scratch(g, dir, false, err);
	}
	return rc;
}

int img_gc(const struct img_gc_opts *opts, struct img_gc_report *report, struct vmci_err *err)
{
	struct img_gc_report unused = {0};
	struct gc g = {.opts = opts, .report = report ? report : &unused, .trash = {.fd = -1}};
	memset(g.report, 0, sizeof(*g.report));
	int lock = -1;
	int rc = img_store_lock(true, &lock, err);
	if (!rc)
		rc = sweep_clones(&g, err);
	if (!rc)
		rc = keep_named(&g, err);
	if (!rc)
		rc = sweep_blobs(&g, err);
	if (lock >= 0)
		close(lock);
	/* Out of blobs/ already: delete without blocking clones and builds. */
	img_scratch_drop(&g.trash);
	if (!rc)
		rc = sweep_leftovers(&g, err);
	free(g.keep);
	if (rc)
		vmci_err_wrap(err, "gc of %s", img_store_root());
	return rc;
}
