/*
 * The output directory of a local run (contract in runner/runner.h):
 * made, locked, published as the latest, and old ones pruned.
 *
 * A run's directory is locked (runner/dir_lock.h) for its process's life.
 * Between its mkdir and its lock a pruner could take it for abandoned,
 * were it not among the newest runs (a clock set back): the lock is
 * checked to be on the directory the name holds, and a run whose
 * directory went makes another.
 */
#include "runner/local_run.h"
#include "runner/dir_lock.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ID_LEN	       18 /* "20250102-150405-01" */
#define MAX_PER_SECOND 99

/* Whether name is a run's ID: DDDDDDDD-DDDDDD-DD. */
static bool is_run_id(const char *name)
{
	static const char shape[] = "dddddddd-dddddd-dd";
	if (strlen(name) != ID_LEN)
		return false;
	for (size_t i = 0; i < ID_LEN; i++)
		if (shape[i] == 'd' ? name[i] < '0' || name[i] > '9' : name[i] != shape[i])
			return false;
	return true;
}

/* ROOT/.vmci, with the .gitignore that keeps git out of it. */
static int make_out_dir(const char *root, char *out, size_t size, struct vmci_err *err)
{
	char ignore[PATH_MAX];
	if (fs_path(out, size, "%s/.vmci", root) ||
	    fs_path(ignore, sizeof(ignore), "%s/.gitignore", out))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", root);
	int rc = fs_mkdir_p(out, 0755, err);
	if (!rc && !fs_exists(ignore))
		rc = fs_write_atomic(ignore, "*\n", 2, 0644, err);
	return rc;
}

/* Makes runs/ID for the first free ID of this second, locked. */
static int make_run_dir(const char *runs, struct runner_local_run *r, struct vmci_err *err)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	for (int n = 1; n <= MAX_PER_SECOND; n++) {
		snprintf(r->id, sizeof(r->id), "%04d%02d%02d-%02d%02d%02d-%02d",
			 (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, n);
		if (fs_path(r->dir, sizeof(r->dir), "%s/%s", runs, r->id))
			return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", runs);
		if (mkdir(r->dir, 0755) != 0) {
			if (errno == EEXIST)
				continue;
			return vmci_err_errno(err, errno, "cannot create %s", r->dir);
		}
		int fd = dir_lock_hold(r->dir);
		if (fd < 0)
			return vmci_err_errno(err, -fd, "cannot lock %s", r->dir);
		if (dir_lock_same(fd, r->dir)) {
			r->lock = fd;
			return 0;
		}
		close(fd); /* pruned before we held it: take the next name */
	}
	return vmci_err_set(err, EEXIST, "more than %d runs started this second in %s",
			    MAX_PER_SECOND, runs);
}

int runner_local_run_new(const char *root, struct runner_local_run *out, struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	out->lock = -1;
	char vmci[PATH_MAX];
	int rc = make_out_dir(root, vmci, sizeof(vmci), err);
	if (!rc && fs_path(out->runs, sizeof(out->runs), "%s/runs", vmci))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", vmci);
	if (!rc)
		rc = fs_mkdir_p(out->runs, 0755, err);
	if (!rc)
		rc = make_run_dir(out->runs, out, err);
	if (!rc && (fs_path(out->logs, sizeof(out->logs), "%s/logs", out->dir) ||
		    fs_path(out->artifacts, sizeof(out->artifacts), "%s/artifacts", out->dir)))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", out->dir);
	if (rc) {
		vmci_err_wrap(err, "cannot make a directory for the run's logs and artifacts");
		runner_local_run_close(out, true);
	}
	return rc;
}

int runner_local_run_publish(struct runner_local_run *r, struct vmci_err *err)
{
	char tmp[PATH_MAX], latest[PATH_MAX];
	if (fs_path(tmp, sizeof(tmp), "%s/.latest-%s-%d", r->runs, r->id, (int)getpid()) ||
	    fs_path(latest, sizeof(latest), "%s/latest", r->runs))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", r->runs);
	unlink(tmp);
	/* Relative, so the working tree may move. */
	if (symlink(r->id, tmp) != 0)
		return vmci_err_errno(err, errno, "cannot create %s", tmp);
	int rc = fs_rename_durable(tmp, latest, err);
	if (rc)
		unlink(tmp);
	runner_local_runs_prune(r->runs, RUNNER_KEEP_RUNS);
	return rc;
}

void runner_local_run_close(struct runner_local_run *r, bool discard)
{
	if (discard && r->lock >= 0 && dir_lock_same(r->lock, r->dir))
		fs_rm_rf(r->dir, NULL);
	if (r->lock >= 0)
		close(r->lock);
	r->lock = -1;
}

static int newest_first(const void *a, const void *b)
{
	return strcmp(*(char *const *)b, *(char *const *)a);
}

int runner_local_runs_prune(const char *runs, int keep)
{
	DIR *d = opendir(runs);
	if (!d)
		return 0;
	char **ids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!is_run_id(de->d_name))
			continue;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 64;
			char **more = realloc(ids, c * sizeof(*ids));
			if (!more)
				break;
			ids = more;
			cap = c;
		}
		if (!(ids[n] = strdup(de->d_name)))
			break;
		n++;
	}
	closedir(d);
	if (n)
		qsort(ids, n, sizeof(*ids), newest_first);
	int removed = 0;
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		int fd = -1;
		if ((int64_t)i >= keep && !fs_path(path, sizeof(path), "%s/%s", runs, ids[i]) &&
		    (fd = dir_lock_take_abandoned(path)) >= 0) {
			if (fs_rm_rf(path, NULL) == 0)
				removed++;
			close(fd);
		}
		free(ids[i]);
	}
	free(ids);
	return removed;
}
