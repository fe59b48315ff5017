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
 * Writes the workspace to fd as a tar stream (libarchive, pax): parent
 * directories, regular files with their modes, symlinks as symlinks.
 * Blocking writes; a file that vanished since runner_workspace_open is
 * left out. Returns 0 or a negative code with err.
 */
int runner_workspace_write_tar(const struct runner_workspace *ws, int fd, struct vmci_err *err);

/*
 * Streams the workspace into guest_dir through the agent (a writer thread
 * feeds vm_put_tar through a socket pair). On failure *host_side tells a
 * problem reading the workspace (true) from a failure of the VM (false).
 */
int runner_workspace_upload(const struct runner_workspace *ws, struct vm *vm, const char *guest_dir,
			    bool *host_side, struct vmci_err *err);

#endif
