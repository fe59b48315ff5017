/*
 * Private run directories of VMs (contract in runner/runner.h), and the
 * sweep of those whose owner died.
 *
 * Liveness is a lock (runner/dir_lock.h), held from before the directory
 * is marked until it is removed: a sweeper never sees a marked directory
 * whose lock is free while its owner lives. Directories without the mark
 * (another program's, or an older vmci's) are left alone.
 */
#include "runner/run_dir.h"
#include "runner/dir_lock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The run directories this process holds, for runner_remove_own_run_dirs:
 * a process that ends without its teardown (a second Ctrl-C) removes them
 * on its way out instead of leaving them to the next sweep.
 */
struct held_dir {
	struct held_dir *next;
	char path[];
};
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct held_dir *held;

static void hold(const char *dir)
{
	size_t n = strlen(dir) + 1;
	struct held_dir *h = malloc(sizeof(*h) + n);
	if (!h)
		return; /* the sweep still finds it once the process is gone */
	memcpy(h->path, dir, n);
	pthread_mutex_lock(&held_lock);
	h->next = held;
	held = h;
	pthread_mutex_unlock(&held_lock);
}

static void unhold(const char *dir)
{
	pthread_mutex_lock(&held_lock);
	for (struct held_dir **p = &held; *p; p = &(*p)->next) {
		if (!strcmp((*p)->path, dir)) {
			struct held_dir *h = *p;
			*p = h->next;
			free(h);
			break;
		}
	}
	pthread_mutex_unlock(&held_lock);
}

void runner_remove_own_run_dirs(void)
{
	pthread_mutex_lock(&held_lock);
	for (struct held_dir *h = held; h; h = h->next)
		fs_rm_rf(h->path, NULL);
	pthread_mutex_unlock(&held_lock);
}

static const char *tmp_dir(void)
{
	const char *tmp = getenv("TMPDIR");
	return tmp && *tmp ? tmp : "/tmp";
}

/* Marks dir as vmci's: RUNNER_RUN_DIR_MARK, holding the owner's pid for people to read. */
static int mark_dir(const char *dir, struct vmci_err *err)
{
	char path[PATH_MAX], text[32];
	if (fs_path(path, sizeof(path), "%s/%s", dir, RUNNER_RUN_DIR_MARK))
		return vmci_err_set(err, ENAMETOOLONG, "run directory path too long: %s", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot create %s", path);
	int n = snprintf(text, sizeof(text), "%d\n", (int)getpid());
	int rc = write(fd, text, (size_t)n) == n
		     ? 0
		     : vmci_err_errno(err, errno, "cannot write %s", path);
	close(fd);
	return rc;
}

int runner_make_run_dir(const char *prefix, char *out, size_t size, int *lock, struct vmci_err *err)
{
	*lock = -1;
	const char *tmp = tmp_dir();
	runner_sweep_run_dirs(tmp);
	if (fs_path(out, size, "%s/%s-XXXXXX", tmp, prefix))
		return vmci_err_set(err, ENAMETOOLONG,
				    "$TMPDIR is too long for a run directory: %s", tmp);
	if (!mkdtemp(out))
		return vmci_err_errno(err, errno, "cannot create a run directory in %s", tmp);
	/* Unmarked, so no sweeper takes it before the lock is held. */
	int fd = dir_lock_hold(out);
	int rc = fd < 0 ? vmci_err_errno(err, -fd, "cannot lock %s", out) : 0;
	if (!rc)
		rc = mark_dir(out, err);
	if (rc) {
		fs_rm_rf(out, NULL);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	hold(out);
	*lock = fd;
	return 0;
}

void runner_remove_run_dir(const char *dir, int lock)
{
	unhold(dir);
	/* Removed before the lock goes: no sweeper races us for it. */
	if (lock < 0 || dir_lock_same(lock, dir))
		fs_rm_rf(dir, NULL);
	if (lock >= 0)
		close(lock);
}

int runner_sweep_run_dirs(const char *tmp)
{
	DIR *d = opendir(tmp);
	if (!d)
		return 0;
	int removed = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX], mark[PATH_MAX];
		struct stat st;
		if (de->d_name[0] == '.' || fs_path(path, sizeof(path), "%s/%s", tmp, de->d_name) ||
		    fs_path(mark, sizeof(mark), "%s/%s", path, RUNNER_RUN_DIR_MARK) ||
		    lstat(mark, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != getuid())
			continue;
		int fd = dir_lock_take_abandoned(path);
		if (fd < 0)
			continue;
		log_info("removing %s, left by a vmci that died", path);
		if (fs_rm_rf(path, NULL) == 0)
			removed++;
		close(fd);
	}
	closedir(d);
	return removed;
}
