/*
 * runner: the workspace: the files a job starts with, and how they reach
 * the guest.
 */
#ifndef VMCI_RUNNER_WORKSPACE_H
#define VMCI_RUNNER_WORKSPACE_H

#include <limits.h>

#include "common/common.h"
#include "vmcore/vmcore.h"

/* ---- the workspace (runner/workspace.c) ------------------------------ */

/*
 * The working tree as the user sees it, for a local run: the files git
 * tracks (HEAD plus staged changes) as they are in the working directory
 * now, plus untracked files, minus what .gitignore ignores. Deleted files
 * are absent. The contents always come from the working directory, so
 * uncommitted edits travel. Not a clone: no .git directory is shipped.
 * The top-level .vmci/ directory (where runs put artifacts and logs:
 * runner_local_run_new) is never shipped either.
 */
struct runner_workspace {
	char root[PATH_MAX]; /* the working tree's top directory (absolute) */
	bool git;	     /* false: a plain directory, shipped whole */
	char sha[41];	     /* HEAD's commit; "" without commits or git */
	char ref[256];	     /* "refs/heads/main"; "HEAD" when detached; "" without git */
	char **files;	     /* paths relative to root, sorted; regular files and symlinks */
	size_t n_files;
	/*
	 * A commit's tree (runner_workspace_from_commit, runner/git_source.h):
	 * root is a bare repository and the files are read from commit sha,
	 * stamped with its time; never from a working directory.
	 */
	bool from_commit;
	int64_t commit_time;
	/* Its size and disk image, made on first need (runner/workspace_disk.c). */
	struct runner_ws_disk *disk;
};

/*
 * Reads the workspace containing dir: the git repository found from dir
 * upwards (libgit2), or dir itself when it is in no repository. Returns 0
 * with *out to free with runner_workspace_free, or a negative code with
 * err (a damaged repository, an unreadable directory).
 */
int runner_workspace_open(const char *dir, struct runner_workspace **out, struct vmci_err *err);
void runner_workspace_free(struct runner_workspace *ws);

/*
 * Writes the workspace to fd as a tar stream (libarchive, pax): the
 * directories above the files (with their modes in a working tree, 0755
 * from a commit), regular files with their modes, symlinks as symlinks.
 * Blocking writes; a file that vanished since runner_workspace_open is
 * left out. Returns 0 or a negative code with err.
 */
int runner_workspace_write_tar(const struct runner_workspace *ws, int fd, struct vmci_err *err);

/*
 * Runs consume on the read end of a socket pair that a writer thread
 * fills with the workspace's tar stream (runner_workspace_write_tar),
 * and returns what consume returned. When the writer failed on its own
 * (a problem reading the workspace, not a reader that stopped), that is
 * the result, with *host_side true.
 */
int runner_workspace_stream(const struct runner_workspace *ws,
			    int (*consume)(int fd, void *ctx, struct vmci_err *err), void *ctx,
			    bool *host_side, struct vmci_err *err);

/*
 * Streams the workspace into guest_dir through the agent (a writer thread
 * feeds vm_put_tar through a socket pair). On failure *host_side tells a
 * problem reading the workspace (true) from a failure of the VM (false).
 */
int runner_workspace_upload(const struct runner_workspace *ws, struct vm *vm, const char *guest_dir,
			    bool *host_side, struct vmci_err *err);

/* ---- the workspace as a disk (runner/workspace_disk.c) --------------- */

/*
 * How a workspace reaches the guest. The tar stream goes through the
 * agent's channel (about 36 MB/s under TCG, plus a cost per file); the
 * disk is an ext4 image of the same tree, made once per workspace, that
 * each job's VM gets as a hot-added SCSI disk (a copy-on-write overlay
 * of it) mounted at the workspace directory: a fixed cost per job of
 * about a quarter of a second, whatever the tree's size, and once per
 * workspace the image (about what copying the tree costs). Both give the
 * same tree: paths, modes, symlinks, mtimes, root's ownership.
 */
enum runner_ws_via {
	RUNNER_WS_AUTO, /* the disk from RUNNER_WS_DISK_MIN_BYTES of files on, else tar */
	RUNNER_WS_TAR,
	RUNNER_WS_DISK,
};

/*
 * From this many bytes of files on, AUTO takes the disk. A disk costs a
 * job about 0.25 s (hot-plug and mount, removal at the end) whatever the
 * tree's size; the tar stream moves 4 to 36 MB/s under TCG, loaded host
 * to quiet one, so it is the faster below 1 to 8 MB. bench_workspace
 * measures both.
 */
#define RUNNER_WS_DISK_MIN_BYTES (4LL << 20)

/* "auto", "tar", "disk"; returns -1 for anything else. */
int runner_ws_via_parse(const char *name, enum runner_ws_via *out);

/* For the workspace's constructors and runner_workspace_free. NULL when out of memory. */
struct runner_ws_disk *runner_ws_disk_new(void);
void runner_ws_disk_free(struct runner_ws_disk *d);

/* The bytes of the workspace's regular files (computed once); -1 when unreadable. */
long long runner_workspace_bytes(const struct runner_workspace *ws);

/* Whether a job's workspace should go as a disk. */
bool runner_workspace_wants_disk(const struct runner_workspace *ws, enum runner_ws_via via);

/*
 * The workspace's ext4 image, made on the first call (thread-safe; later
 * calls wait for it and share its result) in a private directory under
 * $TMPDIR, removed by runner_workspace_free. Returns 0 with its path in
 * out, or a negative code with err (the same for every later call).
 */
int runner_workspace_disk_image(const struct runner_workspace *ws, char *out, size_t size,
				struct vmci_err *err);

/* The SCSI target the workspace disk takes in every VM (vm_disk_attach). */
#define RUNNER_WS_DISK_TARGET 0

/* The workspace disk of one VM: what runner_workspace_unmount undoes. */
struct runner_ws_mount {
	bool attached;		/* the disk is on the VM's SCSI bus */
	bool mounted;		/* and mounted in the guest */
	char image[PATH_MAX];	/* the workspace's image the overlay is over */
	char overlay[PATH_MAX]; /* the VM's copy-on-write overlay of the image; "" when none */
	char guest_dir[256];
};

/* runner_workspace_mount's "no disk, but the VM is fine": use the tar stream. */
#define RUNNER_WS_NOT_MOUNTED 1

/*
 * Mounts the workspace's image at guest_dir in the guest, through an
 * overlay written under scratch (the VM's run directory): the guest may
 * write to its workspace, the image stays as it was. Returns 0 when
 * mounted; RUNNER_WS_NOT_MOUNTED with err saying why when the disk could
 * not be used (no image, a guest without a SCSI disk driver: nothing is
 * left attached, take the tar stream); a negative code when the VM
 * failed.
 */
int runner_workspace_mount(const struct runner_workspace *ws, struct vm *vm, const char *scratch,
			   const char *guest_dir, struct runner_ws_mount *m, struct vmci_err *err);

/*
 * Unmounts (lazily, when a process still uses it) and removes the disk,
 * then deletes the overlay: the VM has the devices of its snapshot again.
 * Returns 0 (also for an m with nothing mounted), or a negative code when
 * the VM failed: do not revert it then, destroy it.
 */
int runner_workspace_unmount(struct vm *vm, struct runner_ws_mount *m, struct vmci_err *err);

/*
 * The VM moved away with its workspace disk (vm_migrate_to copied the
 * overlay into the destination's own): deletes the overlay here and
 * forgets the disk, which the VM's new owner unmounts at the job's end.
 */
void runner_workspace_moved(struct runner_ws_mount *m);

#endif
