/*
 * The warm pool with real VMs (busybox-x86_64): 50 jobs through 2 VMs,
 * each isolated from the others; a job gets a VM of the shape it asks
 * for, never a smaller one of the same image; a VM whose revert fails, or that a job
 * reports broken, is replaced; a pool whose process was killed is cleaned
 * up by the next one; a shape grows by demand, and only by demand, and
 * reverts the VMs it grew to in parallel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define IMAGE		   "busybox-x86_64"
#define ACQUIRE_TIMEOUT_MS 120000

static char state_dir[PATH_MAX]; /* pool records */

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(state_dir, sizeof(state_dir), "%s/vmci-pool-XXXXXX", tmp ? tmp : "/tmp");
	return mkdtemp(state_dir) ? 0 : -1;
}

static int teardown(void **state)
{
	fs_rm_rf(state_dir, NULL);
	return 0;
}

/* A pool of size VMs of IMAGE that grows by demand up to max_size (0: size). */
static struct runner_pool *new_pool(int size, int max_size)
{
	struct runner_pool *p = NULL;
	struct vmci_err err = {0};
	struct runner_pool_opts opts = {.image = IMAGE, .size = size, .max_size = max_size};
	if (runner_pool_new(state_dir, &p, &err) || runner_pool_add(p, &opts, &err))
		fail_msg("%s", err.msg);
	return p;
}

static struct runner_guest *acquire(struct runner_pool *p)
{
	struct runner_guest *g = NULL;
	struct vmci_err err = {0};
	if (runner_pool_acquire(p, IMAGE, NULL, ACQUIRE_TIMEOUT_MS, &g, &err))
		fail_msg("%s", err.msg);
	return g;
}

/*
 * A job that fails unless its VM is clean, then dirties it: a marker in
 * /tmp, a process left running, an environment variable in a file.
 */
static const char job[] = "set -e\n"
			  "test ! -e /tmp/marker\n"
			  "test ! -e /etc/job-env\n"
			  "grep -lsx sleep /proc/[0-9]*/cmdline && exit 10\n"
			  "echo \"$JOB\" > /tmp/marker\n"
			  "echo \"JOB=$JOB\" > /etc/job-env\n"
			  "setsid sleep 999 </dev/null >/dev/null 2>&1 &\n"
			  "cat /tmp/marker\n";

/* Waits until the pool has n VMs ready and none busy or starting; returns its stats. */
static struct runner_pool_stats settled(struct runner_pool *p, int n)
{
	struct runner_pool_stats st;
	int64_t deadline = clock_ms() + ACQUIRE_TIMEOUT_MS;
	do {
		runner_pool_stats(p, IMAGE, &st);
		if (st.ready == n && st.busy == 0 && st.starting == 0)
			return st;
		usleep(20 * 1000);
	} while (clock_ms() < deadline);
	fail_msg("the pool did not settle: %d ready, %d busy, %d starting", st.ready, st.busy,
		 st.starting);
	return st;
}

static void test_50_jobs_through_a_pool_of_2_are_isolated_and_none_is_lost(void **state)
{
	struct runner_pool *p = new_pool(2, 0);
	pid_t vms[2] = {0, 0};
	for (int i = 0; i < 50; i++) {
		struct runner_guest *g = acquire(p);
		/* Every job runs in one of the pool's two VMs: no third one is started. */
		pid_t pid = vm_pid(g->vm);
		if (!vms[0] || vms[0] == pid)
			vms[0] = pid;
		else if (!vms[1] || vms[1] == pid)
			vms[1] = pid;
		else
			fail_msg("job %d got a third VM (%d; the pool has %d and %d)", i, (int)pid,
				 (int)vms[0], (int)vms[1]);
		char env_job[32], expected[32];
		snprintf(env_job, sizeof(env_job), "JOB=%d", i);
		snprintf(expected, sizeof(expected), "%d\n", i);
		const char *argv[] = {"sh", "-c", job, NULL};
		const char *env[] = {env_job, NULL};
		struct capture c = {0};
		struct vm_exec_opts o = {.argv = argv,
					 .env = env,
					 .stdin_fd = -1,
					 .on_output = capture_output,
					 .ctx = &c};
		struct vm_exec_result r;
		struct vmci_err err = {0};
		int rc = vm_exec(g->vm, &o, &r, &err);
		runner_pool_release(p, g, rc < 0);
		if (rc)
			fail_msg("job %d: %s", i, err.msg);
		if (r.kind != VM_EXITED || r.code != 0 || strcmp(buf_cstr(&c.out), expected))
			fail_msg("job %d found a dirty VM (exit %d): %s%s", i, r.code,
				 buf_cstr(&c.out), buf_cstr(&c.err));
		capture_free(&c);
	}
	/* Both VMs took turns, and both come back: every release was reverted. */
	assert_true(vms[0] && vms[1]);
	struct runner_pool_stats st = settled(p, 2);
	assert_int_equal(st.reverts, 50);
	assert_int_equal(st.started, 2);
	assert_int_equal(st.revert_failures, 0);
	assert_int_equal(st.destroyed, 0);
	runner_pool_free(p);
}

static void test_a_failed_revert_replaces_the_vm(void **state)
{
	struct runner_pool *p = new_pool(1, 0);
	struct runner_guest *g = acquire(p);
	pid_t first = vm_pid(g->vm);
	/* The clean snapshot disappears: the revert after this job cannot work. */
	struct vmci_err err = {0};
	assert_int_equal(vm_snapshot_delete(g->vm, "clean", &err), 0);
	runner_pool_release(p, g, false);

	g = acquire(p);
	pid_t second = vm_pid(g->vm);
	assert_true(second != first);
	assert_int_equal(vmtest_sh(g->vm, "test ! -e /tmp/marker", NULL).code, 0);
	struct runner_pool_stats st;
	runner_pool_stats(p, IMAGE, &st);
	assert_int_equal(st.revert_failures, 1);
	assert_int_equal(st.destroyed, 1);
	assert_int_equal(st.started, 2);

	/* A job that met an infrastructure failure gives its VM back broken: replaced too. */
	runner_pool_release(p, g, true);
	g = acquire(p);
	assert_true(vm_pid(g->vm) != second);
	assert_int_equal(vmtest_sh(g->vm, "true", NULL).code, 0);
	runner_pool_release(p, g, false);
	runner_pool_free(p);
	/* Everything it ran is gone. */
	assert_true(kill(second, 0) != 0);
}

/* True while pid exists and is not a zombie. */
static bool running(pid_t pid)
{
	char path[64], stat[512] = "";
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[n] = 0;
	const char *end = strrchr(stat, ')');
	return end && end[1] == ' ' && end[2] != 'Z' && end[2] != 'X';
}

static void test_a_pool_cleans_up_after_a_killed_one(void **state)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	/* Forked while this process runs no other thread: the child makes its own pool. */
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(fds[0]);
		struct runner_pool *p;
		struct runner_guest *g;
		struct vmci_err err = {0};
		struct runner_pool_opts opts = {.image = IMAGE, .size = 1};
		if (runner_pool_new(state_dir, &p, &err) || runner_pool_add(p, &opts, &err) ||
		    runner_pool_acquire(p, IMAGE, NULL, ACQUIRE_TIMEOUT_MS, &g, &err))
			_exit(1);
		char line[PATH_MAX + 32];
		int n = snprintf(line, sizeof(line), "%d %s\n", (int)vm_pid(g->vm), g->run_dir);
		if (write(fds[1], line, (size_t)n) != n)
			_exit(1);
		pause();
		_exit(0);
	}
	close(fds[1]);
	char line[PATH_MAX + 32] = "";
	ssize_t n = read(fds[0], line, sizeof(line) - 1);
	close(fds[0]);
	int qemu = 0;
	char run_dir[PATH_MAX] = "";
	if (n <= 0 || sscanf(line, "%d %4095s", &qemu, run_dir) != 2) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		fail_msg("the child pool did not start a VM");
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);

	/* QEMU dies with its parent; the records and the run directory stay. */
	for (int i = 0; i < 100 && running(qemu); i++)
		usleep(50 * 1000);
	assert_false(running(qemu));
	char records[PATH_MAX];
	snprintf(records, sizeof(records), "%s/%d", state_dir, (int)child);
	assert_true(fs_exists(records));
	assert_true(fs_exists(run_dir));

	struct runner_pool *p;
	struct vmci_err err = {0};
	assert_int_equal(runner_pool_new(state_dir, &p, &err), 0);
	assert_false(fs_exists(records));
	assert_false(fs_exists(run_dir));
	runner_pool_free(p);
}

/* The guest's MemTotal in MiB. */
static long guest_memory_mb(struct runner_guest *g)
{
	struct capture c = {0};
	struct vm_exec_result r =
	    vmtest_sh(g->vm, "awk '/^MemTotal:/ { print $2 }' /proc/meminfo", &c);
	assert_int_equal(r.code, 0);
	long mb = atol(buf_cstr(&c.out)) / 1024;
	capture_free(&c);
	return mb;
}

static void test_a_job_asking_for_1_gib_never_gets_a_256_mib_pool_vm(void **state)
{
	struct runner_pool *p = NULL;
	struct vmci_err err = {0};
	struct runner_pool_opts small = {.image = IMAGE, .size = 1, .guest = {.memory_mb = 256}};
	struct runner_pool_opts big = {.image = IMAGE, .size = 1, .guest = {.memory_mb = 1024}};
	if (runner_pool_new(state_dir, &p, &err) || runner_pool_add(p, &small, &err))
		fail_msg("%s", err.msg);
	/* Only the small shape so far: a 1 GiB job is refused, not handed a 256 MiB VM. */
	struct runner_guest *g = NULL;
	assert_int_equal(runner_pool_acquire(p, IMAGE, &big.guest, 0, &g, &err), -ENOENT);
	assert_null(g);
	assert_non_null(strstr(err.msg, "1024 MiB"));

	/* Both shapes of one image live side by side, each handed only to its own jobs. */
	if (runner_pool_add(p, &big, &err))
		fail_msg("%s", err.msg);
	struct runner_guest *gb = NULL, *gs = NULL;
	if (runner_pool_acquire(p, IMAGE, &big.guest, ACQUIRE_TIMEOUT_MS, &gb, &err) ||
	    runner_pool_acquire(p, IMAGE, &small.guest, ACQUIRE_TIMEOUT_MS, &gs, &err))
		fail_msg("%s", err.msg);
	long big_mb = guest_memory_mb(gb), small_mb = guest_memory_mb(gs);
	if (big_mb <= 512 || small_mb > 256)
		fail_msg("a 1 GiB job got %ld MiB, a 256 MiB job %ld MiB", big_mb, small_mb);
	runner_pool_release(p, gb, false);
	runner_pool_release(p, gs, false);
	runner_pool_free(p);
}

static void test_a_pool_grows_by_demand_only_while_a_job_waits_with_every_vm_busy(void **state)
{
	struct runner_pool *p = new_pool(1, 3);
	/* Jobs one after another: the one VM, reverted, serves them all. */
	for (int i = 0; i < 3; i++) {
		struct runner_guest *g = acquire(p);
		runner_pool_release(p, g, false);
		settled(p, 1);
	}
	struct runner_pool_stats st = settled(p, 1);
	assert_int_equal(st.started, 1);
	/* Two at once: the second waits with the only VM busy, so the shape grows by one. */
	struct runner_guest *a = acquire(p), *b = acquire(p);
	assert_ptr_not_equal(a, b);
	runner_pool_release(p, a, false);
	runner_pool_release(p, b, false);
	st = settled(p, 2);
	assert_int_equal(st.started, 2);
	runner_pool_free(p);
}

/*
 * A shape that grew by demand reverts its VMs in parallel: a VM given
 * back while another's revert hangs (its QEMU stopped) is ready again
 * long before that revert could time out (60 s to start it).
 */
static void test_a_grown_shape_reverts_its_vms_in_parallel(void **state)
{
	struct runner_pool *p = new_pool(1, 2);
	struct vmci_err err = {0};
	struct runner_guest *a = acquire(p), *b = acquire(p);
	assert_ptr_not_equal(a, b);
	pid_t stuck = vm_pid(a->vm);
	assert_int_equal(kill(stuck, SIGSTOP), 0);
	runner_pool_release(p, a, false);
	usleep(500 * 1000); /* a pool thread is in a's revert by now */
	runner_pool_release(p, b, false);
	struct runner_guest *g = NULL;
	int rc = runner_pool_acquire(p, IMAGE, NULL, 30000, &g, &err);
	kill(stuck, SIGCONT);
	if (rc)
		fail_msg("no VM while another's revert hangs: %s", err.msg);
	assert_ptr_equal(g, b);
	runner_pool_release(p, g, false);
	settled(p, 2);
	runner_pool_free(p);
}

static void test_acquire_reports_an_image_the_pool_does_not_have(void **state)
{
	struct runner_pool *p;
	struct runner_guest *g;
	struct vmci_err err = {0};
	assert_int_equal(runner_pool_new(state_dir, &p, &err), 0);
	assert_int_equal(runner_pool_acquire(p, "no-such-image", NULL, 0, &g, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no-such-image"));
	runner_pool_interrupt(p);
	runner_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_pool_cleans_up_after_a_killed_one),
	    cmocka_unit_test(test_50_jobs_through_a_pool_of_2_are_isolated_and_none_is_lost),
	    cmocka_unit_test(test_a_failed_revert_replaces_the_vm),
	    cmocka_unit_test(test_a_job_asking_for_1_gib_never_gets_a_256_mib_pool_vm),
	    cmocka_unit_test(test_acquire_reports_an_image_the_pool_does_not_have),
	    cmocka_unit_test(test_a_pool_grows_by_demand_only_while_a_job_waits_with_every_vm_busy),
	    cmocka_unit_test(test_a_grown_shape_reverts_its_vms_in_parallel),
	};
	return cmocka_run_group_tests_name("vm pool", tests, setup, teardown);
}
