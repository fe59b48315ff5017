/*
 * Copy-on-write clones: qcow2 overlays over read-only golden disks, and
 * the registrations that let gc tell which images clones still use.
 *
 *   clones/<sha256 of the overlay's absolute path>.json
 *       {"overlay", "backing", "image", "digest", "pid", "pid_start", "dev", "ino",
 *        "created"}
 *
 * A registration cannot hold a lock for its clone (nobody keeps it open),
 * so liveness is judged from facts that survive a crash: the overlay file
 * (same device and inode, still a qcow2 over the same backing file), the
 * maker's pid with its start time (pids are reused), and the locks QEMU
 * takes on every image it opens.
 */
#include "images/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int img_clone_file(const char *backing, const char *overlay_path, int size_mb, struct vmci_err *err)
{
	struct img_disk disk = {.virtual_size =
				    (long long)(size_mb > 0 ? size_mb : IMG_SCRATCH_DISK_MB) << 20};
	/* The backing format is named so qemu never probes a guest-written raw disk. */
	int rc = backing ? img_disk_probe(backing, &disk, err) : 0;
	if (!rc)
		rc = img_qcow2_create(overlay_path, disk.virtual_size, backing,
				      backing ? disk.format : NULL, err);
	if (rc)
		vmci_err_wrap(err, "cannot create the clone %s", overlay_path);
	return rc;
}

/* ---- registrations ------------------------------------------------------ */

/*
 * The absolute form of path, whose directory must exist (the file need
 * not): one overlay always maps to one registration.
 */
static int absolute(const char *path, char *out, size_t size, struct vmci_err *err)
{
	char copy[PATH_MAX], dir_real[PATH_MAX];
	if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
		return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", path);
	const char *dir = dirname(copy);
	if (!realpath(dir, dir_real))
		return vmci_err_errno(err, errno, "cannot resolve the directory of %s", path);
	snprintf(copy, sizeof(copy), "%s", path);
	const char *base = basename(copy);
	if (fs_path(out, size, "%s/%s", strcmp(dir_real, "/") ? dir_real : "", base))
		return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", path);
	return 0;
}

static int reg_path(const char *overlay_abs, char *out, size_t size, struct vmci_err *err)
{
	char dir[PATH_MAX], key[SHA256_HEX_LEN + 1];
	int rc = img_store_dir(dir, sizeof(dir), "clones", err);
	if (rc)
		return rc;
	struct sha256_ctx *h = sha256_new();
	if (!h)
		return vmci_err_set(err, ENOMEM, "out of memory");
	sha256_update(h, overlay_abs, strlen(overlay_abs));
	sha256_finish(h, key);
	if (fs_path(out, size, "%s/%s.json", dir, key))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", dir);
	return 0;
}

/* Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
static long long process_start(int pid)
{
	char path[64];
	struct buf b = {0};
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	long long start = -1;
	if (fs_read_file(path, 4096, &b, NULL) == 0) {
		/* The command name (field 2) may hold spaces and parentheses: skip past its end. */
		const char *p = strrchr(buf_cstr(&b), ')');
		for (int field = 2; p && field < 22; field++)
			p = strchr(p + 1, ' ');
		if (p)
			start = strtoll(p + 1, NULL, 10);
	}
	buf_free(&b);
	return start;
}

static bool process_alive(int pid, long long start)
{
	if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
		return false;
	return start < 0 || process_start(pid) == start;
}

bool img_file_locked(const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	/* QEMU holds shared OFD locks on bytes of its images: any lock conflicts with this. */
	struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
	bool locked = fcntl(fd, F_OFD_GETLK, &l) != 0 || l.l_type != F_UNLCK;
	close(fd);
	return locked;
}

static int write_reg(const char *file, const char *overlay, const struct img_boot *img,
		     struct vmci_err *err)
{
	struct stat st;
	struct img_disk disk; /* the backing file as judge() will read it back */
	if (stat(overlay, &st) != 0)
		return vmci_err_errno(err, errno, "cannot stat the new clone %s", overlay);
	int rc = img_disk_probe(overlay, &disk, err);
	if (rc)
		return rc;
	int pid = (int)getpid();
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:I}", "overlay", overlay,
			      "backing", disk.backing, "image", img->name, "digest", img->digest,
			      "pid", pid, "pid_start", (json_int_t)process_start(pid), "dev",
			      (json_int_t)st.st_dev, "ino", (json_int_t)st.st_ino, "created",
			      (json_int_t)time(NULL));
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text)
		return vmci_err_set(err, ENOMEM, "out of memory");
	/* Not synced: after a crash its maker is dead and the clone stale, registered or not. */
	rc = fs_write_replace(file, text, strlen(text), 0644, err);
	free(text);
	return rc;
}

/*
 * Makes the disk of a clone: a new overlay over backing (NULL: a scratch
 * disk), or a copy of copy_from when it is set. Disks of clones are
 * deleted with their VM: the copy need not reach stable storage.
 */
static int clone_disk(const char *backing, const char *copy_from, const char *overlay_path,
		      struct vmci_err *err)
{
	if (copy_from)
		return fs_copy_file(copy_from, overlay_path, 0644, false, err);
	return img_clone_file(backing, overlay_path, IMG_SCRATCH_DISK_MB, err);
}

/* A registered clone of img at overlay_path: see clone_disk. */
static int clone_registered(const struct img_boot *img, const char *backing, const char *copy_from,
			    const char *overlay_path, struct vmci_err *err)
{
	if (!img->digest[0]) /* not from the store: nothing for gc to protect */
		return clone_disk(backing, copy_from, overlay_path, err);
	char overlay[PATH_MAX], file[PATH_MAX];
	int lock = -1;
	int rc = absolute(overlay_path, overlay, sizeof(overlay), err);
	if (!rc)
		rc = reg_path(overlay, file, sizeof(file), err);
	/* Shared with other clones, exclusive of gc: the image cannot go while we register. */
	if (!rc)
		rc = img_store_lock(false, &lock, err);
	if (rc)
		goto out;
	if (!img_blob_complete(img->dir)) {
		rc = vmci_err_set(err, ENOENT,
				  "image '%s' (sha256:%.12s) is no longer in %s, removed by "
				  "`vmci image gc` (look it up again, or run: vmci image build %s)",
				  img->name, img->digest, img_store_root(), img->name);
		goto out;
	}
	rc = clone_disk(backing, copy_from, overlay, err);
	if (!rc && (rc = write_reg(file, overlay, img, err)) != 0)
		unlink(overlay);
out:
	if (lock >= 0)
		close(lock);
	if (rc)
		vmci_err_wrap(err, "cannot clone image '%s'", img->name);
	return rc;
}

int img_clone(const struct img_boot *img, const char *overlay_path, struct vmci_err *err)
{
	return clone_registered(img, img->disk[0] ? img->disk : NULL, NULL, overlay_path, err);
}

int img_clone_over(const struct img_boot *img, const char *backing, const char *overlay_path,
		   struct vmci_err *err)
{
	return clone_registered(img, backing, NULL, overlay_path, err);
}

int img_clone_copy(const struct img_boot *img, const char *from, const char *overlay_path,
		   struct vmci_err *err)
{
	return clone_registered(img, NULL, from, overlay_path, err);
}

int img_clone_release(const char *overlay_path, struct vmci_err *err)
{
	/* The overlay first: a registration without its overlay is what gc cleans up. */
	if (unlink(overlay_path) != 0 && errno != ENOENT)
		return vmci_err_errno(err, errno, "cannot remove the clone %s", overlay_path);
	char overlay[PATH_MAX], file[PATH_MAX];
	if (absolute(overlay_path, overlay, sizeof(overlay), NULL) ||
	    reg_path(overlay, file, sizeof(file), NULL))
		return 0; /* its directory is gone too: gc drops the registration */
	if (unlink(file) != 0 && errno != ENOENT)
		return vmci_err_errno(err, errno, "cannot remove the registration %s of %s", file,
				      overlay_path);
	return 0;
}

/* ---- reading registrations back (for gc and list) ----------------------- */

static enum img_clone_state judge(json_t *j)
{
	const char *overlay = json_string_value(json_object_get(j, "overlay"));
	const char *backing = json_string_value(json_object_get(j, "backing"));
	struct stat st;
	struct img_disk disk;
	/* Inode numbers are reused: the file must also still be our overlay of our image. */
	if (!overlay || lstat(overlay, &st) != 0 ||
	    (json_int_t)st.st_dev != json_integer_value(json_object_get(j, "dev")) ||
	    (json_int_t)st.st_ino != json_integer_value(json_object_get(j, "ino")) ||
	    img_disk_probe(overlay, &disk, NULL) != 0 || strcmp(disk.format, "qcow2") ||
	    (backing && strcmp(disk.backing, backing)))
		return IMG_CLONE_GONE;
	json_t *start = json_object_get(j, "pid_start");
	if (process_alive((int)json_integer_value(json_object_get(j, "pid")),
			  start ? json_integer_value(start) : -1))
		return IMG_CLONE_LIVE;
	return img_file_locked(overlay) ? IMG_CLONE_LIVE : IMG_CLONE_STALE;
}

static void read_reg(const char *file, struct img_clone_reg *r)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->file, sizeof(r->file), "%s", file);
	r->state = IMG_CLONE_GONE;
	json_t *j = json_load_file(file, 0, NULL);
	const char *overlay = json_string_value(json_object_get(j, "overlay"));
	const char *digest = json_string_value(json_object_get(j, "digest"));
	const char *image = json_string_value(json_object_get(j, "image"));
	if (overlay && digest && strlen(digest) == SHA256_HEX_LEN) {
		snprintf(r->overlay, sizeof(r->overlay), "%s", overlay);
		snprintf(r->digest, sizeof(r->digest), "%s", digest);
		snprintf(r->image, sizeof(r->image), "%s", image ? image : "");
		r->pid = (int)json_integer_value(json_object_get(j, "pid"));
		r->created = json_integer_value(json_object_get(j, "created"));
		r->state = judge(j);
	} else {
		log_warn("ignoring the unreadable clone registration %s", file);
	}
	json_decref(j);
}

int img_clone_regs(struct img_clone_reg **out, size_t *count, struct vmci_err *err)
{
	*out = NULL;
	*count = 0;
	char dir[PATH_MAX];
	int rc = img_store_dir(dir, sizeof(dir), "clones", err);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (!d)
		return vmci_err_errno(err, errno, "cannot open %s", dir);
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (de->d_name[0] == '.' || n < 5 || strcmp(de->d_name + n - 5, ".json"))
			continue; /* also fs_write_atomic's temporary files */
		if (*count == cap) {
			cap = cap ? 2 * cap : 16;
			struct img_clone_reg *grown = realloc(*out, cap * sizeof(**out));
			if (!grown) {
				rc = vmci_err_set(err, ENOMEM, "out of memory");
				break;
			}
			*out = grown;
		}
		char file[PATH_MAX];
		if (fs_path(file, sizeof(file), "%s/%s", dir, de->d_name))
			continue;
		read_reg(file, &(*out)[(*count)++]);
	}
	closedir(d);
	if (rc) {
		free(*out);
		*out = NULL;
		*count = 0;
	}
	return rc;
}

int img_clone_reg_drop(const struct img_clone_reg *reg, bool overlay, struct vmci_err *err)
{
	if (overlay && reg->overlay[0] && unlink(reg->overlay) != 0 && errno != ENOENT)
		return vmci_err_errno(err, errno, "cannot remove the stale clone %s", reg->overlay);
	if (unlink(reg->file) != 0 && errno != ENOENT)
		return vmci_err_errno(err, errno, "cannot remove the clone registration %s",
				      reg->file);
	return 0;
}
