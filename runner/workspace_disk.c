/*
 * The workspace as a disk: for large trees, an ext4 image of the tree,
 * made once per workspace, and per job a copy-on-write overlay of it
 * hot-added to the job's VM as a SCSI disk (vm_disk_attach) and mounted
 * at the workspace directory by the guest.
 *
 * The tree in the image is the one the tar stream carries, by
 * construction: the tar stream (runner_workspace_write_tar) is unpacked
 * on the host into a scratch directory with libarchive, and mke2fs makes
 * the image of that directory. Paths, modes, symlinks, mtimes and owners
 * (root's) are the tar path's; the only addition of ext4, lost+found, is
 * removed by the guest after mounting.
 *
 * The image lives in a run directory of its own under $TMPDIR
 * (runner/run_dir.h) until the workspace is freed: a vmci that ends
 * without its teardown removes it on its way out, and one that dies
 * leaves it to the next one's sweep. The overlays live in each VM's run
 * directory.
 */
#include "runner/workspace.h"

#include "images/images.h"
#include "runner/run_dir.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <git2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How long the guest may take to see the hot-added disk. */
#define WS_DISK_SCAN_MS 10000
/* The guest's answer when its kernel has no SCSI disk driver. */
#define WS_NO_DRIVER 90
/* Free room in the filesystem beyond the tree: jobs build in their workspace. */
#define WS_DISK_ROOM   (4LL << 30)
#define WS_DISK_INODES 65536

struct runner_ws_disk {
	pthread_mutex_t lock;
	bool sized, made;
	long long bytes; /* the tree's file bytes; -1 when unknown */
	int rc;		 /* of the image, once made */
	struct vmci_err err;
	char dir[PATH_MAX];   /* run directory, "" until made */
	int dir_lock;	      /* its lock, -1 until made */
	char image[PATH_MAX]; /* dir/workspace.ext4 */
};

struct runner_ws_disk *runner_ws_disk_new(void)
{
	struct runner_ws_disk *d = calloc(1, sizeof(*d));
	if (d) {
		pthread_mutex_init(&d->lock, NULL);
		d->dir_lock = -1;
	}
	return d;
}

void runner_ws_disk_free(struct runner_ws_disk *d)
{
	if (!d)
		return;
	if (d->dir[0])
		runner_remove_run_dir(d->dir, d->dir_lock);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int runner_ws_via_parse(const char *name, enum runner_ws_via *out)
{
	static const char *const names[] = {"auto", "tar", "disk"};
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (name && !strcmp(name, names[i])) {
			*out = (enum runner_ws_via)i;
			return 0;
		}
	return -1;
}

/* ---- the tree's size ---------------------------------------------------------- */

static long long commit_bytes(const struct runner_workspace *ws)
{
	git_libgit2_init();
	git_repository *repo = NULL;
	git_odb *odb = NULL;
	git_commit *commit = NULL;
	git_tree *tree = NULL;
	git_oid oid;
	long long total = -1;
	if (!git_repository_open_bare(&repo, ws->root) && !git_repository_odb(&odb, repo) &&
	    !git_oid_fromstr(&oid, ws->sha) && !git_commit_lookup(&commit, repo, &oid) &&
	    !git_commit_tree(&tree, commit)) {
		total = 0;
		for (size_t i = 0; i < ws->n_files && total >= 0; i++) {
			git_tree_entry *te = NULL;
			size_t len;
			git_object_t type;
			if (git_tree_entry_bypath(&te, tree, ws->files[i]) ||
			    git_odb_read_header(&len, &type, odb, git_tree_entry_id(te)))
				total = -1;
			else
				total += (long long)len;
			git_tree_entry_free(te);
		}
	}
	git_tree_free(tree);
	git_commit_free(commit);
	git_odb_free(odb);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return total;
}

static long long tree_bytes(const struct runner_workspace *ws)
{
	if (ws->from_commit)
		return commit_bytes(ws);
	long long total = 0;
	for (size_t i = 0; i < ws->n_files; i++) {
		char path[PATH_MAX];
		struct stat st;
		if (!fs_path(path, sizeof(path), "%s/%s", ws->root, ws->files[i]) &&
		    !lstat(path, &st) && S_ISREG(st.st_mode))
			total += (long long)st.st_size;
	}
	return total;
}

long long runner_workspace_bytes(const struct runner_workspace *ws)
{
	struct runner_ws_disk *d = ws->disk;
	if (!d)
		return tree_bytes(ws);
	pthread_mutex_lock(&d->lock);
	if (!d->sized) {
		d->bytes = tree_bytes(ws);
		d->sized = true;
	}
	long long bytes = d->bytes;
	pthread_mutex_unlock(&d->lock);
	return bytes;
}

bool runner_workspace_wants_disk(const struct runner_workspace *ws, enum runner_ws_via via)
{
	if (via != RUNNER_WS_AUTO)
		return via == RUNNER_WS_DISK;
	long long bytes = runner_workspace_bytes(ws);
	return bytes >= RUNNER_WS_DISK_MIN_BYTES;
}

/* ---- the image ---------------------------------------------------------------- */

/* Unpacks the tar stream read from fd into the directory ctx, as the agent would. */
static int unpack(int fd, void *ctx, struct vmci_err *err)
{
	const char *dir = ctx;
	struct archive *in = archive_read_new();
	struct archive *out = archive_write_disk_new();
	if (!in || !out) {
		archive_read_free(in);
		archive_write_free(out);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	archive_read_support_format_tar(in);
	int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
		    ARCHIVE_EXTRACT_SECURE_SYMLINKS;
	if (geteuid() == 0)
		flags |= ARCHIVE_EXTRACT_OWNER;
	archive_write_disk_set_options(out, flags);
	int rc = 0;
	const char *failed = NULL;
	if (archive_read_open_fd(in, fd, 1 << 20) != ARCHIVE_OK) {
		failed = archive_error_string(in);
		rc = -EIO;
	}
	struct archive_entry *e;
	while (!rc) {
		int r = archive_read_next_header(in, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK) {
			failed = archive_error_string(in);
			rc = -EIO;
			break;
		}
		char path[PATH_MAX];
		if (fs_path(path, sizeof(path), "%s/%s", dir, archive_entry_pathname(e))) {
			rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", dir);
			break;
		}
		archive_entry_copy_pathname(e, path);
		if (archive_write_header(out, e) != ARCHIVE_OK) {
			failed = archive_error_string(out);
			rc = -EIO;
			break;
		}
		const void *buf;
		size_t len;
		la_int64_t off;
		while ((r = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK)
			if (archive_write_data_block(out, buf, len, off) < 0) {
				r = ARCHIVE_FATAL;
				failed = archive_error_string(out);
				break;
			}
		if (r != ARCHIVE_EOF) {
			failed = failed ? failed : archive_error_string(in);
			rc = -EIO;
		}
	}
	if (!rc && archive_write_close(out) != ARCHIVE_OK) {
		failed = archive_error_string(out);
		rc = -EIO;
	}
	if (rc == -EIO)
		vmci_err_set(err, EIO, "cannot unpack the workspace into %s: %s", dir,
			     failed ? failed : "libarchive failed");
	archive_read_free(in);
	archive_write_free(out);
	return rc;
}

/* The tree unpacked into d->dir/tree, then made d->image. With d->lock held. */
static int make_image(const struct runner_workspace *ws, struct runner_ws_disk *d,
		      struct vmci_err *err)
{
	int rc = runner_make_run_dir("vmci-ws", d->dir, sizeof(d->dir), &d->dir_lock, err);
	if (rc) {
		d->dir[0] = 0;
		vmci_err_wrap(err, "for the workspace disk");
		return rc;
	}
	char tree[PATH_MAX];
	if (fs_path(tree, sizeof(tree), "%s/tree", d->dir) ||
	    fs_path(d->image, sizeof(d->image), "%s/workspace.ext4", d->dir))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", d->dir);
	if (mkdir(tree, 0755) || chmod(tree, 0755))
		return vmci_err_errno(err, errno, "cannot create %s", tree);
	bool host_side;
	rc = runner_workspace_stream(ws, unpack, tree, &host_side, err);
	if (!d->sized) {
		d->bytes = tree_bytes(ws);
		d->sized = true;
	}
	long long bytes = d->bytes;
	/* Each file may take a block more than its bytes, plus directories and metadata. */
	long long size = (bytes > 0 ? bytes : 0) + (long long)ws->n_files * 8192 + WS_DISK_ROOM;
	long long inodes = (long long)ws->n_files * 2 + WS_DISK_INODES;
	if (!rc)
		rc = img_ext4_scratch_make(tree, size, inodes, "vmci-workspace", d->image, err);
	fs_rm_rf(tree, NULL);
	return rc;
}

int runner_workspace_disk_image(const struct runner_workspace *ws, char *out, size_t size,
				struct vmci_err *err)
{
	struct runner_ws_disk *d = ws->disk;
	if (!d)
		return vmci_err_set(err, EINVAL, "%s: the workspace has no disk state", __func__);
	pthread_mutex_lock(&d->lock);
	if (!d->made) {
		int64_t t0 = clock_ms();
		d->rc = make_image(ws, d, &d->err);
		d->made = true;
		if (!d->rc)
			log_debug("workspace disk %s made in %lld ms", d->image,
				  (long long)(clock_ms() - t0));
	}
	int rc = d->rc;
	if (rc && err)
		*err = d->err;
	else if (!rc)
		snprintf(out, size, "%s", d->image);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

/* ---- in the guest ------------------------------------------------------------- */

/*
 * Waits for the hot-added disk at the SCSI target, mounts it at $1 and
 * removes lost+found (unless the workspace has one of its own: $2 = keep).
 */
static const char mount_script[] =
    "[ -d /sys/bus/scsi/drivers/sd ] || exit 90\n"
    "d=; n=0\n"
    "while :; do\n"
    "  for p in /sys/bus/scsi/devices/*:0:%d:0/block/*; do [ -e \"$p\" ] && d=${p##*/}; done\n"
    "  [ -n \"$d\" ] && [ -b \"/dev/$d\" ] && break\n"
    "  n=$((n+1)); [ $n -le %d ] || { echo \"the workspace disk did not appear\" >&2; exit 1; }\n"
    "  sleep 0.01\n"
    "done\n"
    "mkdir -p \"$1\" && mount -t ext4 -o noatime,noinit_itable \"/dev/$d\" \"$1\" || exit 1\n"
    "[ \"$2\" = keep ] || rmdir \"$1/lost+found\"\n";

/* Output of a guest command, kept for an error message. */
struct out_text {
	char text[512];
	size_t len;
};

static void keep_output(void *ctx, int fd, const void *data, size_t len)
{
	struct out_text *o = ctx;
	size_t room = sizeof(o->text) - 1 - o->len;
	size_t n = len < room ? len : room;
	memcpy(o->text + o->len, data, n);
	o->len += n;
	o->text[o->len] = 0;
}

/* Runs argv in the guest; 0 with *code its exit status, or negative when the VM failed. */
static int guest_run(struct vm *vm, const char *const *argv, int *code, struct out_text *out,
		     struct vmci_err *err)
{
	struct vm_exec_opts xo = {
	    .argv = argv, .stdin_fd = -1, .on_output = keep_output, .ctx = out};
	struct vm_exec_result res;
	int rc = vm_exec(vm, &xo, &res, err);
	if (rc)
		return rc;
	*code = res.kind == VM_EXITED ? res.code : 128;
	while (out->len && (out->text[out->len - 1] == '\n'))
		out->text[--out->len] = 0;
	return 0;
}

static bool has_top_level(const struct runner_workspace *ws, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < ws->n_files; i++)
		if (!strncmp(ws->files[i], name, n) && (ws->files[i][n] == '/' || !ws->files[i][n]))
			return true;
	return false;
}

int runner_workspace_mount(const struct runner_workspace *ws, struct vm *vm, const char *scratch,
			   const char *guest_dir, struct runner_ws_mount *m, struct vmci_err *err)
{
	memset(m, 0, sizeof(*m));
	char image[PATH_MAX];
	int rc = runner_workspace_disk_image(ws, image, sizeof(image), err);
	if (rc)
		return RUNNER_WS_NOT_MOUNTED;
	if (fs_path(m->overlay, sizeof(m->overlay), "%s/workspace.qcow2", scratch)) {
		vmci_err_set(err, ENAMETOOLONG, "path too long under %s", scratch);
		return RUNNER_WS_NOT_MOUNTED;
	}
	snprintf(m->image, sizeof(m->image), "%s", image);
	if (img_clone_file(image, m->overlay, 0, err)) {
		m->overlay[0] = 0;
		return RUNNER_WS_NOT_MOUNTED;
	}
	rc = vm_disk_attach(vm, RUNNER_WS_DISK_TARGET, m->overlay, "qcow2", false, err);
	if (rc == -EPIPE)
		return rc;
	if (rc) {
		unlink(m->overlay);
		m->overlay[0] = 0;
		return RUNNER_WS_NOT_MOUNTED;
	}
	m->attached = true;
	char script[sizeof(mount_script) + 32];
	snprintf(script, sizeof(script), mount_script, RUNNER_WS_DISK_TARGET, WS_DISK_SCAN_MS / 10);
	const char *argv[] = {"sh", "-c",      script,
			      "sh", guest_dir, has_top_level(ws, "lost+found") ? "keep" : "-",
			      NULL};
	struct out_text out = {0};
	int code = 0;
	rc = guest_run(vm, argv, &code, &out, err);
	if (rc)
		return rc;
	if (code == 0) {
		m->mounted = true;
		snprintf(m->guest_dir, sizeof(m->guest_dir), "%s", guest_dir);
		return 0;
	}
	if (code == WS_NO_DRIVER)
		vmci_err_set(err, ENODEV,
			     "the guest has no SCSI disk driver (virtio_scsi, sd_mod)");
	else
		vmci_err_set(err, EIO, "the guest could not mount the workspace disk: %s",
			     out.len ? out.text : "no reason given");
	struct vmci_err ignored = {0};
	rc = runner_workspace_unmount(vm, m, &ignored);
	return rc < 0 && rc != RUNNER_WS_NOT_MOUNTED ? rc : RUNNER_WS_NOT_MOUNTED;
}

int runner_workspace_unmount(struct vm *vm, struct runner_ws_mount *m, struct vmci_err *err)
{
	int rc = 0;
	if (m->mounted) {
		/* A process still in the workspace keeps it busy: detach it lazily. */
		const char *argv[] = {
		    "sh", "-c",		"umount \"$1\" 2>/dev/null || umount -l \"$1\"",
		    "sh", m->guest_dir, NULL};
		struct out_text out = {0};
		int code = 0;
		rc = guest_run(vm, argv, &code, &out, err);
		if (!rc && code)
			log_debug("cannot unmount the workspace disk: %s", out.text);
		m->mounted = false;
	}
	if (!rc && m->attached) {
		rc = vm_disk_detach(vm, RUNNER_WS_DISK_TARGET, err);
		if (!rc)
			m->attached = false;
	}
	if (!m->attached && m->overlay[0]) {
		unlink(m->overlay);
		m->overlay[0] = 0;
	}
	return rc;
}

void runner_workspace_moved(struct runner_ws_mount *m)
{
	if (m->overlay[0])
		unlink(m->overlay);
	memset(m, 0, sizeof(*m));
}
