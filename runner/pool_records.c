/* Records of pool VMs on disk, and the clean-up after pools that died. */
#include "runner/pool_records.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * When the process started, in clock ticks since boot; -1 when it does not
 * exist or is a zombie (a dead QEMU whose new parent does not reap it).
 */
static long long process_start(pid_t pid)
{
	char path[64];
	struct buf b = {0};
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	long long start = -1;
	if (fs_read_file(path, 4096, &b, NULL) == 0) {
		/* The command name (field 2) may hold spaces and parentheses: skip past its end. */
		const char *p = strrchr(buf_cstr(&b), ')');
		if (p && (p[1] != ' ' || p[2] == 'Z' || p[2] == 'X'))
			p = NULL;
		for (int field = 2; p && field < 22; field++)
			p = strchr(p + 1, ' ');
		if (p)
			start = strtoll(p + 1, NULL, 10);
	}
	buf_free(&b);
	return start;
}

static bool process_alive(pid_t pid, long long start)
{
	return pid > 0 && start >= 0 && process_start(pid) == start;
}

/* Kills a dead pool's QEMU (if it still runs) and removes its run directory and record. */
static void clean_vm(const char *record)
{
	struct buf b = {0};
	int qemu = 0;
	long long start = -1;
	char run_dir[PATH_MAX] = "";
	if (fs_read_file(record, 2 * PATH_MAX, &b, NULL) == 0 &&
	    sscanf(buf_cstr(&b), "%d %lld %4095[^\n]", &qemu, &start, run_dir) == 3) {
		if (process_alive(qemu, start)) {
			log_info("killing QEMU %d of a pool that died", qemu);
			/* QEMU leads its own process group (qemu_launch). */
			if (kill(-qemu, SIGKILL) != 0)
				kill(qemu, SIGKILL);
		}
		/* Only what a pool made: a run directory vmci-vm-XXXXXX. */
		const char *base = strrchr(run_dir, '/');
		if (run_dir[0] == '/' && base && !strncmp(base + 1, "vmci-vm-", 8))
			fs_rm_rf(run_dir, NULL);
	}
	buf_free(&b);
	unlink(record);
}

/* Cleans up the directory of pool pid unless that pool still runs. */
static void clean_pool(const char *state_dir, const char *name)
{
	char *end;
	long pid = strtol(name, &end, 10);
	if (*end || pid <= 0 || pid == (long)getpid())
		return;
	char dir[PATH_MAX], path[PATH_MAX];
	if (fs_path(dir, sizeof(dir), "%s/%s", state_dir, name) ||
	    fs_path(path, sizeof(path), "%s/owner", dir))
		return;
	struct buf b = {0};
	long long start = -1;
	if (fs_read_file(path, 64, &b, NULL) == 0)
		start = strtoll(buf_cstr(&b), NULL, 10);
	buf_free(&b);
	if (process_alive((pid_t)pid, start))
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "vm-", 3) &&
		    !fs_path(path, sizeof(path), "%s/%s", dir, de->d_name))
			clean_vm(path);
	closedir(d);
	log_info("cleaned up after pool process %ld, which died without stopping its VMs", pid);
	fs_rm_rf(dir, NULL);
}

int pool_records_open(const char *state_dir, char *dir, size_t size, struct vmci_err *err)
{
	int rc = fs_mkdir_p(state_dir, 0755, err);
	if (rc)
		return rc;
	DIR *d = opendir(state_dir);
	if (!d)
		return vmci_err_errno(err, errno, "cannot read %s", state_dir);
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			clean_pool(state_dir, de->d_name);
	closedir(d);

	char owner[PATH_MAX], line[32];
	if (fs_path(dir, size, "%s/%d", state_dir, (int)getpid()) ||
	    fs_path(owner, sizeof(owner), "%s/owner", dir))
		return vmci_err_set(err, ENAMETOOLONG, "pool state path too long under %s",
				    state_dir);
	if ((rc = fs_mkdir_p(dir, 0755, err)))
		return rc;
	int n = snprintf(line, sizeof(line), "%lld\n", process_start(getpid()));
	return fs_write_atomic(owner, line, (size_t)n, 0644, err);
}

int pool_records_add(const char *dir, pid_t qemu, const char *run_dir, char *path, size_t size,
		     struct vmci_err *err)
{
	if (fs_path(path, size, "%s/vm-%d", dir, (int)qemu))
		return vmci_err_set(err, ENAMETOOLONG, "pool state path too long under %s", dir);
	struct buf b = {0};
	buf_appendf(&b, "%d %lld %s\n", (int)qemu, process_start(qemu), run_dir);
	int rc = fs_write_atomic(path, b.data, b.len, 0644, err);
	buf_free(&b);
	return rc;
}

void pool_records_close(const char *dir)
{
	fs_rm_rf(dir, NULL);
}
