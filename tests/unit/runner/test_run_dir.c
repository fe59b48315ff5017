/*
 * VMs' run directories (runner/run_dir.c): what a killed vmci left is
 * removed by the next one, what a live process holds never is, and
 * directories vmci did not mark are left alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/runner.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[64];

static int setup(void **state)
{
	snprintf(tmp, sizeof(tmp), "/tmp/vmci-run-dir-test.XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	return setenv("TMPDIR", tmp, 1);
}

static int teardown(void **state)
{
	return fs_rm_rf(tmp, NULL);
}

/* A run directory made by a child that is then killed: its owner is dead. */
static void make_orphan(char *out, size_t size)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char dir[PATH_MAX];
		int lock;
		if (runner_make_run_dir("vmci-vm", dir, sizeof(dir), &lock, NULL) ||
		    write(fds[1], dir, strlen(dir) + 1) < 0)
			_exit(1);
		raise(SIGKILL);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], out, size - 1);
	close(fds[0]);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(n > 1);
	out[n] = 0;
	assert_true(fs_exists(out));
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	assert_int_equal(fs_path(path, sizeof(path), "%s/%s", dir, name), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_a_run_dir_is_marked_locked_and_removed(void **state)
{
	char dir[PATH_MAX], mark[PATH_MAX], want[32];
	int lock = -1;
	assert_int_equal(runner_make_run_dir("vmci-vm", dir, sizeof(dir), &lock, NULL), 0);
	assert_true(lock >= 0);
	assert_int_equal(strncmp(dir, tmp, strlen(tmp)), 0);
	assert_int_equal(strncmp(dir + strlen(tmp), "/vmci-vm-", 9), 0);
	snprintf(mark, sizeof(mark), "%s/%s", dir, RUNNER_RUN_DIR_MARK);
	struct buf text = {0};
	assert_int_equal(fs_read_file(mark, 64, &text, NULL), 0);
	snprintf(want, sizeof(want), "%d\n", (int)getpid());
	assert_string_equal(buf_cstr(&text), want);
	buf_free(&text);
	/* This process's own sweep leaves it: the lock is held. */
	assert_int_equal(runner_sweep_run_dirs(tmp), 0);
	assert_true(fs_exists(dir));
	runner_remove_run_dir(dir, lock);
	assert_false(fs_exists(dir));
}

static void test_the_sweep_removes_only_dirs_whose_owner_died(void **state)
{
	char live[PATH_MAX], orphan[PATH_MAX], unlocked[PATH_MAX], foreign[PATH_MAX];
	int lock;
	assert_int_equal(runner_make_run_dir("vmci-vm", live, sizeof(live), &lock, NULL), 0);
	write_file(live, "disk.qcow2", "in use");
	make_orphan(orphan, sizeof(orphan));
	write_file(orphan, "disk.qcow2", "left behind");
	/* Marked, but nobody holds its lock: as a dead owner leaves it. */
	snprintf(unlocked, sizeof(unlocked), "%s/vmci-setup-unlocked", tmp);
	assert_int_equal(mkdir(unlocked, 0700), 0);
	write_file(unlocked, RUNNER_RUN_DIR_MARK, "999999999\n");
	/* Not vmci's (or an older vmci's, without the mark): never touched. */
	snprintf(foreign, sizeof(foreign), "%s/vmci-vm-foreign", tmp);
	assert_int_equal(mkdir(foreign, 0700), 0);
	write_file(foreign, "disk.qcow2", "someone else's");

	assert_int_equal(runner_sweep_run_dirs(tmp), 2);
	assert_false(fs_exists(orphan));
	assert_false(fs_exists(unlocked));
	assert_true(fs_exists(live));
	assert_true(fs_exists(foreign));
	runner_remove_run_dir(live, lock);
	fs_rm_rf(foreign, NULL);
}

static void test_the_next_vm_start_sweeps_what_a_killed_one_left(void **state)
{
	char orphan[PATH_MAX], dir[PATH_MAX];
	make_orphan(orphan, sizeof(orphan));
	int lock;
	assert_int_equal(runner_make_run_dir("vmci-vm", dir, sizeof(dir), &lock, NULL), 0);
	assert_false(fs_exists(orphan));
	assert_true(fs_exists(dir));
	runner_remove_run_dir(dir, lock);
}

static void test_a_dir_held_by_a_live_child_survives_the_sweep(void **state)
{
	/* Another live process's directory: the lock, not the pid, says it lives. */
	int fds[2], go[2];
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(pipe(go), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char dir[PATH_MAX], c;
		int lock;
		if (runner_make_run_dir("vmci-vm", dir, sizeof(dir), &lock, NULL) ||
		    write(fds[1], dir, strlen(dir) + 1) < 0 || read(go[0], &c, 1) < 0)
			_exit(1);
		runner_remove_run_dir(dir, lock);
		_exit(0);
	}
	close(fds[1]);
	close(go[0]);
	char dir[PATH_MAX] = "";
	ssize_t n = read(fds[0], dir, sizeof(dir) - 1);
	close(fds[0]);
	assert_true(n > 1);
	assert_int_equal(runner_sweep_run_dirs(tmp), 0);
	assert_true(fs_exists(dir));
	assert_int_equal(write(go[1], "x", 1), 1);
	close(go[1]);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_false(fs_exists(dir));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_run_dir_is_marked_locked_and_removed),
	    cmocka_unit_test(test_the_sweep_removes_only_dirs_whose_owner_died),
	    cmocka_unit_test(test_the_next_vm_start_sweeps_what_a_killed_one_left),
	    cmocka_unit_test(test_a_dir_held_by_a_live_child_survives_the_sweep),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
