/*
 * The workspace of a local run: the working tree as the user sees it,
 * listed with libgit2 and streamed into the guest as a tar made with
 * libarchive.
 *
 * What is listed: every path of the index (what HEAD has plus what is
 * staged) that still exists in the working directory, and every
 * untracked path git status shows (ignored ones are not shown). The
 * bytes come from the working directory, so unstaged edits travel too.
 */
#include "runner/workspace.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The directory a run writes into (artifacts, logs): never part of the workspace. */
#define RUN_OUTPUT_DIR ".vmci"

/* ---- the file list --------------------------------------------------------- */

struct list {
	char **items;
	size_t len, cap;
};

static int list_add(struct list *l, const char *path)
{
	if (l->len == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		char **items = realloc(l->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		l->items = items;
		l->cap = cap;
	}
	if (!(l->items[l->len] = strdup(path)))
		return -ENOMEM;
	l->len++;
	return 0;
}

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->len; i++)
		free(l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts and removes duplicates (an index in conflict lists a path per stage). */
static void list_sort_unique(struct list *l)
{
	if (l->len == 0)
		return;
	qsort(l->items, l->len, sizeof(*l->items), cmp_str);
	size_t out = 1;
	for (size_t i = 1; i < l->len; i++) {
		if (!strcmp(l->items[i], l->items[out - 1]))
			free(l->items[i]);
		else
			l->items[out++] = l->items[i];
	}
	l->len = out;
}

static bool is_run_output(const char *rel)
{
	size_t n = strlen(RUN_OUTPUT_DIR);
	return !strncmp(rel, RUN_OUTPUT_DIR, n) && (rel[n] == '/' || rel[n] == 0);
}

/* Whether root/rel is a regular file or a symlink now. */
static bool shippable(const char *root, const char *rel)
{
	char path[PATH_MAX];
	struct stat st;
	if (fs_path(path, sizeof(path), "%s/%s", root, rel) || lstat(path, &st))
		return false;
	return S_ISREG(st.st_mode) || S_ISLNK(st.st_mode);
}

/* ---- git --------------------------------------------------------------------- */

static int git_fail(struct vmci_err *err, int code, const char *what, const char *where)
{
	const git_error *e = git_error_last();
	return vmci_err_set(err, code, "cannot %s in %s: %s", what, where,
			    e && e->message ? e->message : "libgit2 failed");
}

static void read_head(git_repository *repo, struct runner_workspace *ws)
{
	git_reference *head = NULL;
	int rc = git_repository_head(&head, repo);
	if (rc == 0) {
		const git_oid *oid = git_reference_target(head);
		if (oid)
			git_oid_tostr(ws->sha, sizeof(ws->sha), oid);
		snprintf(ws->ref, sizeof(ws->ref), "%s",
			 git_repository_head_detached(repo) ? "HEAD" : git_reference_name(head));
		git_reference_free(head);
		return;
	}
	/* No commit yet: the branch HEAD names is still the ref. */
	if (git_reference_lookup(&head, repo, "HEAD") == 0) {
		const char *target = git_reference_symbolic_target(head);
		snprintf(ws->ref, sizeof(ws->ref), "%s", target ? target : "HEAD");
		git_reference_free(head);
	}
}

/* Tracked paths (index) that exist in the working directory, then untracked ones. */
static int list_git(git_repository *repo, const char *root, struct list *l, struct vmci_err *err)
{
	git_index *index = NULL;
	if (git_repository_index(&index, repo))
		return git_fail(err, EIO, "read the git index", root);
	int rc = 0;
	size_t n = git_index_entrycount(index);
	for (size_t i = 0; i < n && !rc; i++) {
		const git_index_entry *e = git_index_get_byindex(index, i);
		/* Submodules (gitlinks) are other repositories: not shipped. */
		if (!e || (e->mode & 0170000) == GIT_FILEMODE_COMMIT || is_run_output(e->path))
			continue;
		if (shippable(root, e->path))
			rc = list_add(l, e->path);
	}
	git_index_free(index);
	if (rc)
		return vmci_err_set(err, -rc, "out of memory listing %s", root);

	git_status_options opts;
	git_status_options_init(&opts, GIT_STATUS_OPTIONS_VERSION);
	opts.show = GIT_STATUS_SHOW_WORKDIR_ONLY;
	opts.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
		     GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	git_status_list *status = NULL;
	if (git_status_list_new(&status, repo, &opts))
		return git_fail(err, EIO, "read the git status", root);
	n = git_status_list_entrycount(status);
	for (size_t i = 0; i < n && !rc; i++) {
		const git_status_entry *s = git_status_byindex(status, i);
		if (!s || !(s->status & GIT_STATUS_WT_NEW) || !s->index_to_workdir)
			continue;
		const char *path = s->index_to_workdir->new_file.path;
		if (path && !is_run_output(path) && shippable(root, path))
			rc = list_add(l, path);
	}
	git_status_list_free(status);
	if (rc)
		return vmci_err_set(err, -rc, "out of memory listing %s", root);
	return 0;
}

/* ---- a plain directory ----------------------------------------------------- */

/* Every regular file and symlink under root/rel, except .git and .vmci at the top. */
static int list_dir(const char *root, const char *rel, struct list *l, struct vmci_err *err)
{
	char path[PATH_MAX];
	if (fs_path(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", root);
	DIR *d = opendir(path);
	if (!d)
		return vmci_err_errno(err, errno, "cannot read the directory %s", path);
	int rc = 0;
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (!*rel && (!strcmp(name, ".git") || !strcmp(name, RUN_OUTPUT_DIR)))
			continue;
		char child[PATH_MAX], full[PATH_MAX];
		struct stat st;
		if (fs_path(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", name) ||
		    fs_path(full, sizeof(full), "%s/%s", root, child)) {
			rc = vmci_err_set(err, ENAMETOOLONG, "path too long: %s/%s", path, name);
			break;
		}
		if (lstat(full, &st))
			continue; /* gone meanwhile */
		if (S_ISDIR(st.st_mode))
			rc = list_dir(root, child, l, err);
		else if ((S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) && list_add(l, child))
			rc = vmci_err_set(err, ENOMEM, "out of memory listing %s", root);
	}
	closedir(d);
	return rc;
}

/* ---- opening ----------------------------------------------------------------- */

int runner_workspace_open(const char *dir, struct runner_workspace **out, struct vmci_err *err)
{
	*out = NULL;
	struct runner_workspace *ws = calloc(1, sizeof(*ws));
	if (ws && !(ws->disk = runner_ws_disk_new())) {
		free(ws);
		ws = NULL;
	}
	if (!ws)
		return vmci_err_set(err, ENOMEM, "out of memory");
	struct list l = {0};
	int rc = 0;
	git_libgit2_init();
	git_repository *repo = NULL;
	int grc = git_repository_open_ext(&repo, dir, 0, NULL);
	if (grc == 0 && git_repository_is_bare(repo)) {
		rc = vmci_err_set(err, EINVAL,
				  "%s is a bare git repository: run vmci in a working tree", dir);
	} else if (grc == 0) {
		const char *wd = git_repository_workdir(repo);
		snprintf(ws->root, sizeof(ws->root), "%s", wd);
		size_t n = strlen(ws->root);
		while (n > 1 && ws->root[n - 1] == '/')
			ws->root[--n] = 0;
		ws->git = true;
		read_head(repo, ws);
		rc = list_git(repo, ws->root, &l, err);
	} else if (grc == GIT_ENOTFOUND) {
		if (!realpath(dir, ws->root))
			rc = vmci_err_errno(err, errno, "cannot resolve %s", dir);
		else
			rc = list_dir(ws->root, "", &l, err);
	} else {
		rc = git_fail(err, EIO, "open the git repository", dir);
	}
	git_repository_free(repo);
	git_libgit2_shutdown();
	if (rc) {
		list_free(&l);
		runner_ws_disk_free(ws->disk);
		free(ws);
		return rc;
	}
	list_sort_unique(&l);
	ws->files = l.items;
	ws->n_files = l.len;
	*out = ws;
	return 0;
}

void runner_workspace_free(struct runner_workspace *ws)
{
	if (!ws)
		return;
	for (size_t i = 0; i < ws->n_files; i++)
		free(ws->files[i]);
	free(ws->files);
	runner_ws_disk_free(ws->disk);
	free(ws);
}

/* ---- the tar stream ------------------------------------------------------------ */

struct tar_sink {
	int fd;
	int error; /* errno of a failed write */
};

static la_ssize_t tar_write(struct archive *a, void *client, const void *data, size_t len)
{
	struct tar_sink *s = client;
	int rc = io_write_all(s->fd, data, len);
	if (rc) {
		s->error = -rc;
		archive_set_error(a, s->error, "%s", strerror(s->error));
		return -1;
	}
	return (la_ssize_t)len;
}

/* For add_file: 1 (skip it) when the file vanished, else -1 with msg. */
static int gone_or_fail(char *msg, size_t msglen, const char *what, const char *path)
{
	if (errno == ENOENT)
		return 1;
	snprintf(msg, msglen, "cannot %s %s: %s", what, path, strerror(errno));
	return -1;
}

/* Adds root/rel. Returns 0, 1 when it vanished (skipped), or -1 with msg. */
static int add_file(struct archive *a, struct archive_entry *e, const char *root, const char *rel,
		    char *msg, size_t msglen)
{
	char path[PATH_MAX];
	if (fs_path(path, sizeof(path), "%s/%s", root, rel)) {
		snprintf(msg, msglen, "path too long: %s", rel);
		return -1;
	}
	struct stat st;
	if (lstat(path, &st))
		return gone_or_fail(msg, msglen, "stat", path);
	archive_entry_clear(e);
	archive_entry_set_pathname(e, rel);
	archive_entry_set_mtime(e, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_perm(e, st.st_mode & 07777);
	int fd = -1;
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			return gone_or_fail(msg, msglen, "read the link", path);
		target[n] = 0;
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_symlink(e, target);
		archive_entry_set_size(e, 0);
	} else if (S_ISREG(st.st_mode)) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return gone_or_fail(msg, msglen, "open", path);
		if (fstat(fd, &st)) {
			close(fd);
			snprintf(msg, msglen, "cannot stat %s: %s", path, strerror(errno));
			return -1;
		}
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_size(e, st.st_size);
	} else {
		return 1; /* replaced by a directory or a device meanwhile */
	}
	if (archive_write_header(a, e) != ARCHIVE_OK) {
		snprintf(msg, msglen, "%s", archive_error_string(a));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/*
	 * Exactly the size in the header: a file that grows or shrinks meanwhile is cut or padded.
	 */
	static char zeros[65536];
	char buf[65536];
	off_t left = fd >= 0 ? st.st_size : 0;
	while (left > 0) {
		size_t want = left < (off_t)sizeof(buf) ? (size_t)left : sizeof(buf);
		ssize_t n = read(fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(msg, msglen, "cannot read %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		const char *data = n > 0 ? buf : zeros;
		size_t len = n > 0 ? (size_t)n : want;
		if (archive_write_data(a, data, len) < 0) {
			snprintf(msg, msglen, "%s", archive_error_string(a));
			close(fd);
			return -1;
		}
		left -= (off_t)len;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

/* ---- directories ----------------------------------------------------------------- */

/*
 * Adds the directories above rel that the previous file (prev, "" at
 * first) did not have: the file list is sorted, so a directory's files
 * are contiguous and each directory is added once, before its contents.
 * A working tree's directories keep their modes and times; a commit's
 * (git keeps no directory modes) are 0755 at the commit's time. Returns
 * 0 or -1 with msg.
 */
static int add_dirs(struct archive *a, struct archive_entry *e, const struct runner_workspace *ws,
		    const char *prev, const char *rel, char *msg, size_t msglen)
{
	/* The length of the directory part the two paths share. */
	size_t common = 0;
	for (size_t i = 0; prev[i] && prev[i] == rel[i]; i++)
		if (rel[i] == '/')
			common = i + 1;
	for (const char *slash = strchr(rel + common, '/'); slash; slash = strchr(slash + 1, '/')) {
		char dir[PATH_MAX], path[PATH_MAX];
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - rel), rel);
		archive_entry_clear(e);
		archive_entry_set_pathname(e, dir);
		archive_entry_set_filetype(e, AE_IFDIR);
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		struct stat st;
		if (!ws->from_commit && !fs_path(path, sizeof(path), "%s/%s", ws->root, dir) &&
		    !lstat(path, &st) && S_ISDIR(st.st_mode)) {
			archive_entry_set_perm(e, st.st_mode & 07777);
			archive_entry_set_mtime(e, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
		} else {
			archive_entry_set_perm(e, 0755);
			archive_entry_set_mtime(e, ws->from_commit ? ws->commit_time : 0, 0);
		}
		if (archive_write_header(a, e) != ARCHIVE_OK) {
			snprintf(msg, msglen, "%s", archive_error_string(a));
			return -1;
		}
	}
	return 0;
}

/* ---- a commit's tree ------------------------------------------------------------ */

/* Adds rel of the commit's tree. Returns 0 or -1 with msg. */
static int add_blob(struct archive *a, struct archive_entry *e, git_repository *repo,
		    git_tree *tree, int64_t mtime, const char *rel, char *msg, size_t msglen)
{
	git_tree_entry *te = NULL;
	git_blob *blob = NULL;
	if (git_tree_entry_bypath(&te, tree, rel) ||
	    git_blob_lookup(&blob, repo, git_tree_entry_id(te))) {
		git_tree_entry_free(te);
		snprintf(msg, msglen, "cannot read %s from the commit", rel);
		return -1;
	}
	git_filemode_t mode = git_tree_entry_filemode(te);
	const char *data = git_blob_rawcontent(blob);
	size_t len = (size_t)git_blob_rawsize(blob);
	archive_entry_clear(e);
	archive_entry_set_pathname(e, rel);
	archive_entry_set_mtime(e, mtime, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	int rc = 0;
	if (mode == GIT_FILEMODE_LINK) {
		char target[PATH_MAX];
		snprintf(target, sizeof(target), "%.*s", (int)(len < PATH_MAX ? len : PATH_MAX - 1),
			 data);
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_perm(e, 0777);
		archive_entry_set_symlink(e, target);
		archive_entry_set_size(e, 0);
		len = 0;
	} else {
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644);
		archive_entry_set_size(e, (la_int64_t)len);
	}
	if (archive_write_header(a, e) != ARCHIVE_OK ||
	    (len && archive_write_data(a, data, len) < 0)) {
		snprintf(msg, msglen, "%s", archive_error_string(a));
		rc = -1;
	}
	git_blob_free(blob);
	git_tree_entry_free(te);
	return rc;
}

/* Adds every file of the commit's tree; returns 0 or -1 with msg. */
static int add_commit_files(struct archive *a, struct archive_entry *e,
			    const struct runner_workspace *ws, char *msg, size_t msglen)
{
	git_libgit2_init();
	git_repository *repo = NULL;
	git_commit *commit = NULL;
	git_tree *tree = NULL;
	git_oid oid;
	int rc = 0;
	if (git_repository_open_bare(&repo, ws->root) || git_oid_fromstr(&oid, ws->sha) ||
	    git_commit_lookup(&commit, repo, &oid) || git_commit_tree(&tree, commit)) {
		snprintf(msg, msglen, "cannot read commit %s", ws->sha);
		rc = -1;
	}
	for (size_t i = 0; i < ws->n_files && rc >= 0; i++) {
		rc = add_dirs(a, e, ws, i ? ws->files[i - 1] : "", ws->files[i], msg, msglen);
		if (rc >= 0)
			rc = add_blob(a, e, repo, tree, ws->commit_time, ws->files[i], msg, msglen);
	}
	git_tree_free(tree);
	git_commit_free(commit);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

int runner_workspace_write_tar(const struct runner_workspace *ws, int fd, struct vmci_err *err)
{
	struct tar_sink sink = {.fd = fd};
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	if (!a || !e) {
		archive_write_free(a);
		archive_entry_free(e);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	archive_write_set_format_pax_restricted(a);
	archive_write_set_bytes_per_block(a, 0);
	char msg[PATH_MAX + 128] = "";
	int rc = 0;
	if (archive_write_open(a, &sink, NULL, tar_write, NULL) != ARCHIVE_OK) {
		snprintf(msg, sizeof(msg), "%s", archive_error_string(a));
		rc = -1;
	}
	if (rc >= 0 && ws->from_commit)
		rc = add_commit_files(a, e, ws, msg, sizeof(msg));
	for (size_t i = 0; i < ws->n_files && rc >= 0 && !ws->from_commit; i++) {
		rc = add_dirs(a, e, ws, i ? ws->files[i - 1] : "", ws->files[i], msg, sizeof(msg));
		if (rc >= 0)
			rc = add_file(a, e, ws->root, ws->files[i], msg, sizeof(msg));
	}
	if (rc >= 0 && archive_write_close(a) != ARCHIVE_OK) {
		snprintf(msg, sizeof(msg), "%s", archive_error_string(a));
		rc = -1;
	}
	archive_entry_free(e);
	archive_write_free(a);
	if (rc >= 0)
		return 0;
	if (sink.error)
		return vmci_err_set(err, sink.error, "the workspace upload stopped: %s",
				    strerror(sink.error));
	return vmci_err_set(err, EIO, "cannot pack the workspace %s: %s", ws->root, msg);
}

/* ---- streaming --------------------------------------------------------------------- */

struct stream_writer {
	const struct runner_workspace *ws;
	int fd;
	int rc;
	struct vmci_err err;
};

static void *stream_writer(void *arg)
{
	struct stream_writer *w = arg;
	w->rc = runner_workspace_write_tar(w->ws, w->fd, &w->err);
	shutdown(w->fd, SHUT_WR); /* the end of the stream for the reader */
	return NULL;
}

int runner_workspace_stream(const struct runner_workspace *ws,
			    int (*consume)(int fd, void *ctx, struct vmci_err *err), void *ctx,
			    bool *host_side, struct vmci_err *err)
{
	*host_side = false;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		*host_side = true;
		return vmci_err_errno(err, errno, "cannot create a socket pair");
	}
	struct stream_writer w = {.ws = ws, .fd = sv[1]};
	pthread_t thread;
	if (pthread_create(&thread, NULL, stream_writer, &w)) {
		close(sv[0]);
		close(sv[1]);
		*host_side = true;
		return vmci_err_set(err, EAGAIN, "cannot start a thread to pack %s", ws->root);
	}
	int rc = consume(sv[0], ctx, err);
	close(sv[0]); /* unblocks the writer when the reader failed */
	pthread_join(thread, NULL);
	close(sv[1]);
	/*
	 * A writer that failed on its own (not because the reader went away)
	 * is a problem of the workspace, whatever the reader made of the cut
	 * stream.
	 */
	if (w.rc && w.err.code != EPIPE && w.err.code != ECONNRESET) {
		*host_side = true;
		if (err)
			*err = w.err;
		return w.rc;
	}
	return rc;
}

/* ---- upload ---------------------------------------------------------------------- */

struct upload_to {
	struct vm *vm;
	const char *guest_dir;
};

static int put_tar(int fd, void *ctx, struct vmci_err *err)
{
	struct upload_to *to = ctx;
	return vm_put_tar(to->vm, fd, to->guest_dir, err);
}

int runner_workspace_upload(const struct runner_workspace *ws, struct vm *vm, const char *guest_dir,
			    bool *host_side, struct vmci_err *err)
{
	struct upload_to to = {.vm = vm, .guest_dir = guest_dir};
	return runner_workspace_stream(ws, put_tar, &to, host_side, err);
}
