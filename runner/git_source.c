/*
 * The service's commits: a bare cache per repository, fetched with
 * libgit2, and workspaces made from one commit's tree.
 */
#include "runner/git_source.h"
#include "runner/runner.h"

#include <errno.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int git_fail(struct vmci_err *err, int code, const char *what, const char *where)
{
	const git_error *e = git_error_last();
	return vmci_err_set(err, code, "cannot %s (%s): %s", what, where,
			    e && e->message ? e->message : "libgit2 failed");
}

void git_source_hold(void)
{
	git_libgit2_init();
}

void git_source_release(void)
{
	git_libgit2_shutdown();
}

int git_source_dir(const char *git_root, const char *name, char *out, size_t size,
		   struct vmci_err *err)
{
	if (!name || !*name || name[0] == '/' || strstr(name, "..") || strchr(name, '\\'))
		return vmci_err_set(err, EINVAL,
				    "repository name '%s' cannot name a cache folder (use letters, "
				    "digits, '-', '_', '.' and '/' between parts)",
				    name ? name : "");
	char root[PATH_MAX];
	if (git_root)
		snprintf(root, sizeof(root), "%s", git_root);
	else if (fs_path(root, sizeof(root), "%s/git", vmci_home()))
		return vmci_err_set(err, ENAMETOOLONG, "$VMCI_HOME is too long");
	if (fs_path(out, size, "%s/%s.git", root, name))
		return vmci_err_set(err, ENAMETOOLONG, "path too long for repository %s", name);
	return 0;
}

/* Opens the bare cache at dir, making it first when missing. */
static int open_cache(const char *dir, git_repository **repo, struct vmci_err *err)
{
	if (git_repository_open_bare(repo, dir) == 0)
		return 0;
	int rc = fs_mkdir_p(dir, 0755, err);
	if (rc)
		return rc;
	if (git_repository_init(repo, dir, 1))
		return git_fail(err, EIO, "create the git cache", dir);
	return 0;
}

static bool has_commit(git_repository *repo, const char *sha)
{
	git_oid oid;
	git_commit *c = NULL;
	if (git_oid_fromstrn(&oid, sha, strlen(sha)) || strlen(sha) != GIT_SHA_HEX_LEN ||
	    git_commit_lookup(&c, repo, &oid))
		return false;
	git_commit_free(c);
	return true;
}

/* The full name of ref in the cache ("main" -> "refs/heads/main"), resolved to a commit. */
static int resolve_ref(git_repository *repo, const char *ref, char sha[GIT_SHA_HEX_LEN + 1])
{
	git_reference *r = NULL;
	if (git_reference_dwim(&r, repo, ref))
		return -ENOENT;
	git_object *obj = NULL;
	int rc = git_reference_peel(&obj, r, GIT_OBJECT_COMMIT);
	git_reference_free(r);
	if (rc)
		return -ENOENT;
	git_oid_tostr(sha, GIT_SHA_HEX_LEN + 1, git_object_id(obj));
	git_object_free(obj);
	return 0;
}

static int fetch(git_repository *repo, const char *name, const char *url, const char *ref,
		 struct vmci_err *err)
{
	git_remote *remote = NULL;
	if (git_remote_create_anonymous(&remote, repo, url))
		return git_fail(err, EIO, "use the url", url);
	char extra[600] = "";
	char *specs[3] = {"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", extra};
	size_t n = 2;
	if (ref && !strncmp(ref, "refs/", 5) && strncmp(ref, "refs/heads/", 11) &&
	    strncmp(ref, "refs/tags/", 10) && strlen(ref) < 290) {
		snprintf(extra, sizeof(extra), "+%s:%s", ref, ref);
		n = 3;
	}
	git_strarray refspecs = {specs, n};
	git_fetch_options fo;
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	fo.prune = GIT_FETCH_PRUNE;
	int rc = 0;
	if (git_remote_fetch(remote, &refspecs, &fo, NULL)) {
		char where[PATH_MAX + 64];
		snprintf(where, sizeof(where), "repository %s from %s", name, url);
		rc = git_fail(err, EIO, "fetch", where);
	}
	git_remote_free(remote);
	return rc;
}

int git_source_fetch(const char *git_root, const char *name, const char *url, const char *ref,
		     const char *want_sha, char sha[GIT_SHA_HEX_LEN + 1], struct vmci_err *err)
{
	char dir[PATH_MAX];
	int rc = git_source_dir(git_root, name, dir, sizeof(dir), err);
	if (rc)
		return rc;
	git_libgit2_init();
	git_repository *repo = NULL;
	rc = open_cache(dir, &repo, err);
	bool have = rc == 0 && want_sha && *want_sha && has_commit(repo, want_sha);
	if (rc == 0 && !have)
		rc = fetch(repo, name, url, ref, err);
	if (rc == 0 && want_sha && *want_sha) {
		if (!have && !has_commit(repo, want_sha))
			rc = vmci_err_set(err, ENOENT,
					  "repository %s (%s) has no commit %s (give a full "
					  "40-digit sha of a pushed commit)",
					  name, url, want_sha);
		else
			snprintf(sha, GIT_SHA_HEX_LEN + 1, "%s", want_sha);
	} else if (rc == 0 && (!ref || resolve_ref(repo, ref, sha)))
		rc = vmci_err_set(err, ENOENT, "repository %s (%s) has no ref '%s'", name, url,
				  ref ? ref : "");
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

/* The tree of commit sha in git_dir. */
static int commit_tree(const char *git_dir, const char *sha, git_repository **repo,
		       git_commit **commit, git_tree **tree, struct vmci_err *err)
{
	*repo = NULL;
	*commit = NULL;
	*tree = NULL;
	git_oid oid;
	if (git_repository_open_bare(repo, git_dir))
		return git_fail(err, ENOENT, "open the git cache", git_dir);
	if (git_oid_fromstrn(&oid, sha, strlen(sha)) || git_commit_lookup(commit, *repo, &oid))
		return vmci_err_set(err, ENOENT, "no commit %s in %s", sha, git_dir);
	if (git_commit_tree(tree, *commit))
		return git_fail(err, EIO, "read the tree of commit", sha);
	return 0;
}

static void commit_tree_free(git_repository *repo, git_commit *commit, git_tree *tree)
{
	git_tree_free(tree);
	git_commit_free(commit);
	git_repository_free(repo);
}

int git_source_read_file(const char *git_dir, const char *sha, const char *path, size_t max,
			 struct buf *out, struct vmci_err *err)
{
	git_libgit2_init();
	git_repository *repo;
	git_commit *commit;
	git_tree *tree;
	int rc = commit_tree(git_dir, sha, &repo, &commit, &tree, err);
	git_tree_entry *e = NULL;
	git_blob *blob = NULL;
	if (rc == 0 &&
	    (git_tree_entry_bypath(&e, tree, path) || git_tree_entry_type(e) != GIT_OBJECT_BLOB ||
	     git_blob_lookup(&blob, repo, git_tree_entry_id(e))))
		rc = vmci_err_set(err, ENOENT, "commit %.12s has no file %s", sha, path);
	if (rc == 0 && (size_t)git_blob_rawsize(blob) > max)
		rc = vmci_err_set(err, EFBIG, "%s at commit %.12s is over %zu bytes", path, sha,
				  max);
	if (rc == 0 && buf_append(out, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob)))
		rc = vmci_err_set(err, ENOMEM, "out of memory reading %s", path);
	git_blob_free(blob);
	git_tree_entry_free(e);
	commit_tree_free(repo, commit, tree);
	git_libgit2_shutdown();
	return rc;
}

struct walk {
	char **files;
	size_t n, cap;
	int rc;
};

static int walk_entry(const char *root, const git_tree_entry *e, void *payload)
{
	struct walk *w = payload;
	git_filemode_t mode = git_tree_entry_filemode(e);
	if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE &&
	    mode != GIT_FILEMODE_LINK)
		return 0; /* trees are walked into; submodules are other repositories */
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 256;
		char **grown = realloc(w->files, cap * sizeof(*grown));
		if (!grown)
			return w->rc = -ENOMEM;
		w->files = grown;
		w->cap = cap;
	}
	if (asprintf(&w->files[w->n], "%s%s", root, git_tree_entry_name(e)) < 0)
		return w->rc = -ENOMEM;
	w->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int runner_workspace_from_commit(const char *git_dir, const char *sha, const char *ref,
				 struct runner_workspace **out, struct vmci_err *err)
{
	*out = NULL;
	struct runner_workspace *ws = calloc(1, sizeof(*ws));
	if (ws && !(ws->disk = runner_ws_disk_new())) {
		free(ws);
		ws = NULL;
	}
	if (!ws)
		return vmci_err_set(err, ENOMEM, "out of memory");
	git_libgit2_init();
	git_repository *repo;
	git_commit *commit;
	git_tree *tree;
	struct walk w = {0};
	int rc = commit_tree(git_dir, sha, &repo, &commit, &tree, err);
	if (rc == 0 && git_tree_walk(tree, GIT_TREEWALK_PRE, walk_entry, &w))
		rc = w.rc ? vmci_err_set(err, ENOMEM, "out of memory listing commit %s", sha)
			  : git_fail(err, EIO, "list the tree of commit", sha);
	if (rc == 0) {
		git_oid_tostr(ws->sha, sizeof(ws->sha), git_commit_id(commit));
		snprintf(ws->ref, sizeof(ws->ref), "%s", ref ? ref : "");
		snprintf(ws->root, sizeof(ws->root), "%s", git_dir);
		ws->git = true;
		ws->from_commit = true;
		ws->commit_time = (int64_t)git_commit_time(commit);
		qsort(w.files, w.n, sizeof(*w.files), cmp_str);
		ws->files = w.files;
		ws->n_files = w.n;
		*out = ws;
	} else {
		for (size_t i = 0; i < w.n; i++)
			free(w.files[i]);
		free(w.files);
		runner_ws_disk_free(ws->disk);
		free(ws);
	}
	commit_tree_free(repo, commit, tree);
	git_libgit2_shutdown();
	return rc;
}
