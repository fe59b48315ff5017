/*
 * runner/git_source: the commits the service builds, fetched with libgit2.
 *
 * Each repository the service knows is cached as a bare repository,
 * GIT_DIR = $VMCI_HOME/git/<name>.git (a name "acme/widget" makes the
 * folder acme/widget.git). A fetch brings in its branches and tags (and
 * the ref asked for, whatever its namespace) from any URL libgit2
 * fetches, or a local path. A job's workspace is the tree of exactly one
 * commit of that cache: no working tree is ever checked out, so what a
 * job sees cannot differ from what was pushed.
 */
#ifndef VMCI_RUNNER_GIT_SOURCE_H
#define VMCI_RUNNER_GIT_SOURCE_H

#include "common/common.h"

#include <limits.h>

struct runner_workspace;

#define GIT_SHA_HEX_LEN 40

/*
 * Keeps libgit2 initialized from git_source_hold to the matching
 * git_source_release. Every function here initializes libgit2 and shuts
 * it down around its work, but libgit2's last shutdown frees only the
 * calling thread's state: the state of another thread still using it
 * is leaked. A program whose threads use this module at once (the
 * service's workers and API) holds it for as long as they run.
 */
void git_source_hold(void);
void git_source_release(void);

/*
 * The cache of repository name under git_root ($VMCI_HOME/git when NULL)
 * into out. -EINVAL for a name that is empty, absolute, or climbs out
 * with "..".
 */
int git_source_dir(const char *git_root, const char *name, char *out, size_t size,
		   struct vmci_err *err);

/*
 * Brings the cache of name (created bare when missing) up to date from
 * url, and resolves the commit to build into sha: want_sha when given
 * (not fetched again when the cache has it already; -ENOENT when the
 * remote does not have it either), else what ref points at after the
 * fetch ("refs/heads/main", or a short "main"; -ENOENT when the remote has
 * no such ref). Errors name the repository, the url and libgit2's reason.
 */
int git_source_fetch(const char *git_root, const char *name, const char *url, const char *ref,
		     const char *want_sha, char sha[GIT_SHA_HEX_LEN + 1], struct vmci_err *err);

/*
 * Appends the file path of commit sha in the bare repository git_dir to
 * out. -ENOENT when the commit has no such file (or no such commit).
 * Files over max bytes are refused (-EFBIG).
 */
int git_source_read_file(const char *git_dir, const char *sha, const char *path, size_t max,
			 struct buf *out, struct vmci_err *err);

/*
 * The workspace of commit sha in the bare repository git_dir: every
 * regular file and symlink of its tree (submodules left out), with the
 * modes git records and the commit's time as their mtime. ws->root is
 * git_dir, ws->git_dir is set, ws->sha is the commit and ws->ref is ref
 * (may be NULL). Free with runner_workspace_free; upload as any other.
 */
int runner_workspace_from_commit(const char *git_dir, const char *sha, const char *ref,
				 struct runner_workspace **out, struct vmci_err *err);

#endif
