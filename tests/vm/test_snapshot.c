/*
 * Snapshots and templates in real VMs (busybox-x86_64; debian-12 when its
 * image is in the store): a revert undoes everything a job did, the guest
 * clock is the host's after a revert, clones of one template differ
 * in randomness and identity, and a disk added and removed at run time
 * leaves a VM that reverts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IMAGE "busybox-x86_64"

static char work[PATH_MAX]; /* templates and scratch files */

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(work, sizeof(work), "%s/vmci-snapshot-XXXXXX", tmp ? tmp : "/tmp");
	return mkdtemp(work) ? 0 : -1;
}

static int teardown(void **state)
{
	fs_rm_rf(work, NULL);
	return 0;
}

/* The value of "key=value" on a line of out, or "" (static buffer). */
static const char *value_of(struct capture *c, const char *key)
{
	static char v[256];
	v[0] = 0;
	size_t klen = strlen(key);
	for (const char *p = buf_cstr(&c->out); p && *p;) {
		const char *nl = strchrnul(p, '\n');
		if ((size_t)(nl - p) > klen && !strncmp(p, key, klen) && p[klen] == '=')
			snprintf(v, sizeof(v), "%.*s", (int)(nl - p - klen - 1), p + klen + 1);
		p = *nl ? nl + 1 : nl;
	}
	return v;
}

static void save(struct vm *vm, const char *name)
{
	struct vmci_err err = {0};
	if (vm_snapshot_save(vm, name, &err))
		fail_msg("%s", err.msg);
}

static void load(struct vm *vm, const char *name)
{
	struct vmci_err err = {0};
	if (vm_snapshot_load(vm, name, &err))
		fail_msg("%s", err.msg);
}

/* ---- isolation ----------------------------------------------------------- */

/*
 * Counts job 1's background processes: their command line names
 * job1-sleeper, spelled so that no script that looks for them matches.
 */
#define SLEEPERS "grep -ls 'job1[-]sleeper' /proc/[0-9]*/cmdline | wc -l"

/*
 * What job 1 leaves behind: files in / and /tmp, a write to the disk
 * (disk_write, read back by disk_read), a background process, a changed
 * environment file and 50 MB of memory in use.
 */
static const char job1[] =
    "set -e\n"
    "echo job1 > /job1-root\n"
    "echo job1 > /tmp/job1-tmp\n"
    "eval \"$DISK_WRITE\"\n"
    "n=job1; setsid sh -c \"sleep 1000; : $n-sleeper\" </dev/null >/dev/null 2>&1 &\n"
    "echo 'JOB1_LEAK=yes' >> /etc/environment\n"
    "dd if=/dev/urandom of=/dev/shm/fill bs=1M count=50 2>/dev/null\n"
    "echo disk=$(eval \"$DISK_READ\")\n"
    "echo sleepers=$(" SLEEPERS ")\n"
    "echo avail=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)\n";

/* What job 2 sees. */
static const char job2[] = "echo root=$(cat /job1-root 2>/dev/null)\n"
			   "echo tmp=$(cat /tmp/job1-tmp 2>/dev/null)\n"
			   "echo fill=$(ls /dev/shm/fill 2>/dev/null)\n"
			   "echo 3 > /proc/sys/vm/drop_caches\n"
			   "echo disk=$(eval \"$DISK_READ\")\n"
			   "echo sleepers=$(" SLEEPERS ")\n"
			   "echo env=$(cat /etc/environment 2>/dev/null | grep -c JOB1_LEAK)\n"
			   "echo avail=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)\n";

static void check_isolation(const char *image, const char *disk_write, const char *disk_read)
{
	struct runner_guest *g = vmtest_boot(image);
	const char *env[] = {disk_write, disk_read, NULL};
	struct capture c = {0};
	const char *avail_argv[] = {"awk", "/MemAvailable/ {print $2}", "/proc/meminfo", NULL};
	vmtest_run(g->vm, avail_argv, &c);
	long long avail0 = atoll(buf_cstr(&c.out));
	capture_free(&c);
	save(g->vm, "clean");

	const char *argv1[] = {"sh", "-c", job1, NULL};
	struct vm_exec_opts o = {
	    .argv = argv1, .env = env, .stdin_fd = -1, .on_output = capture_output, .ctx = &c};
	struct vm_exec_result r;
	struct vmci_err err = {0};
	assert_int_equal(vm_exec(g->vm, &o, &r, &err), 0);
	if (r.code != 0)
		fail_msg("job 1 failed: %s%s", buf_cstr(&c.out), buf_cstr(&c.err));
	assert_string_equal(value_of(&c, "disk"), "job1-disk");
	assert_string_equal(value_of(&c, "sleepers"), "1");
	assert_true(atoll(value_of(&c, "avail")) < avail0 - 45 * 1024);
	capture_free(&c);

	load(g->vm, "clean");
	const char *argv2[] = {"sh", "-c", job2, NULL};
	o.argv = argv2;
	assert_int_equal(vm_exec(g->vm, &o, &r, &err), 0);
	assert_int_equal(r.code, 0);
	assert_string_equal(value_of(&c, "root"), "");
	assert_string_equal(value_of(&c, "tmp"), "");
	assert_string_equal(value_of(&c, "fill"), "");
	assert_string_not_equal(value_of(&c, "disk"), "job1-disk");
	assert_string_equal(value_of(&c, "sleepers"), "0");
	assert_string_equal(value_of(&c, "env"), "0");
	/* The memory job 1 filled is free again (some slack for page cache). */
	assert_true(atoll(value_of(&c, "avail")) > avail0 - 10 * 1024);
	capture_free(&c);
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

static void test_revert_undoes_files_processes_environment_memory_and_disk(void **state)
{
	/* busybox-x86_64 runs from its initramfs: the disk is the scratch disk /dev/vda. */
	check_isolation(
	    IMAGE, "DISK_WRITE=printf job1-disk | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null",
	    "DISK_READ=dd if=/dev/vda bs=9 count=1 2>/dev/null | tr -d '\\000'");
}

static void test_revert_undoes_root_disk_writes_on_debian_12(void **state)
{
	struct img_boot img;
	if (img_find("debian-12", &img, NULL) != 0)
		skip(); /* not in the store: vmci image build debian-12 */
	/* The root file system is the disk: job 1 writes to it and syncs. */
	check_isolation("debian-12", "DISK_WRITE=echo job1-disk > /job1-disk && sync",
			"DISK_READ=cat /job1-disk 2>/dev/null");
}

/* ---- the clock --------------------------------------------------------------- */

static void test_guest_clock_is_the_hosts_after_a_revert(void **state)
{
	struct runner_guest *g = vmtest_boot(IMAGE);
	/* A snapshot whose clock is years off: the revert must not bring that back. */
	assert_int_equal(vmtest_sh(g->vm, "date -s '2001-01-01 00:00:00' >/dev/null", NULL).code,
			 0);
	save(g->vm, "stale-clock");
	load(g->vm, "stale-clock");
	struct capture c = {0};
	vmtest_sh(g->vm, "date +%s", &c);
	long long guest_now = atoll(buf_cstr(&c.out));
	capture_free(&c);
	assert_true(llabs(guest_now - (long long)time(NULL)) <= 2);
	/* And a VM whose snapshot is gone says so instead of running on. */
	struct vmci_err err = {0};
	assert_int_equal(vm_snapshot_delete(g->vm, "stale-clock", &err), 0);
	assert_true(vm_snapshot_load(g->vm, "stale-clock", &err) < 0);
	assert_non_null(strstr(err.msg, "stale-clock"));
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

/* ---- templates ----------------------------------------------------------- */

static struct runner_guest *restore(enum runner_template_kind kind)
{
	struct runner_guest *g = NULL;
	struct vmci_err err = {0};
	if (runner_guest_restore(IMAGE, NULL, work, kind, &g, &err))
		fail_msg("%s", err.msg);
	return g;
}

static void check_clones_differ(enum runner_template_kind kind)
{
	struct runner_guest *a = restore(kind), *b = restore(kind);
	const char *script =
	    "echo random=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')\n"
	    "echo id=$(cat /run/vmci/instance-id)\n"
	    "echo disk=$(dd if=/dev/vda bs=5 count=1 2>/dev/null | tr -d '\\000')\n"
	    "printf clone | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null\n";
	struct capture ca = {0}, cb = {0};
	assert_int_equal(vmtest_sh(a->vm, script, &ca).code, 0);
	assert_int_equal(vmtest_sh(b->vm, script, &cb).code, 0);
	char ra[256], ida[256];
	snprintf(ra, sizeof(ra), "%s", value_of(&ca, "random"));
	snprintf(ida, sizeof(ida), "%s", value_of(&ca, "id"));
	assert_int_equal(strlen(ra), 64);
	assert_string_not_equal(ra, value_of(&cb, "random"));
	assert_int_equal(strlen(ida), 32);
	assert_string_equal(ida, vm_instance_id(a->vm));
	assert_string_not_equal(ida, value_of(&cb, "id"));
	/* Each clone writes to a disk of its own. */
	assert_string_equal(value_of(&ca, "disk"), "");
	assert_string_equal(value_of(&cb, "disk"), "");
	capture_free(&ca);
	capture_free(&cb);
	runner_guest_destroy(a, VMCI_STOP_TIMEOUT_MS);
	runner_guest_destroy(b, VMCI_STOP_TIMEOUT_MS);
}

static void test_clones_of_a_mapped_template_differ_in_randomness_and_identity(void **state)
{
	check_clones_differ(RUNNER_TEMPLATE_MAPPED);
}

static void test_clones_of_a_plain_template_differ_in_randomness_and_identity(void **state)
{
	check_clones_differ(RUNNER_TEMPLATE_PLAIN);
}

static void test_a_template_that_does_not_load_is_made_again(void **state)
{
	char dir[PATH_MAX], stream[PATH_MAX];
	struct vmci_err err = {0};
	assert_int_equal(runner_template_ensure(IMAGE, NULL, work, RUNNER_TEMPLATE_MAPPED, dir,
						sizeof(dir), &err),
			 0);
	snprintf(stream, sizeof(stream), "%s/state", dir);
	assert_int_equal(fs_write_atomic(stream, "garbage", 7, 0644, &err), 0);
	struct runner_guest *g = restore(RUNNER_TEMPLATE_MAPPED);
	assert_int_equal(vmtest_sh(g->vm, "true", NULL).code, 0);
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

/*
 * A disk added at run time (vm_disk_attach) shows up in the guest, and
 * once removed (vm_disk_detach, whatever the guest still does with it)
 * the VM reverts to a snapshot saved without it and sees no disk.
 */
static void test_a_disk_added_and_removed_leaves_a_vm_that_reverts(void **state)
{
	struct runner_guest *g = vmtest_boot(IMAGE);
	struct vm *vm = g->vm;
	struct vmci_err err = {0};
	save(vm, "clean");
	char disk[PATH_MAX];
	snprintf(disk, sizeof(disk), "%s/hot.raw", work);
	assert_int_equal(fs_write_atomic(disk, "vmci-hot-disk\n", 14, 0644, &err), 0);
	assert_int_equal(truncate(disk, 1 << 20), 0);
	if (vm_disk_attach(vm, 2, disk, "raw", true, &err))
		fail_msg("%s", err.msg);
	struct capture c = {0};
	/* The guest scans the new target, then reads the disk (and keeps it open). */
	struct vm_exec_result r = vmtest_sh(
	    vm,
	    "for i in $(seq 1 500); do for p in /sys/bus/scsi/devices/*:0:2:0/block/*; do "
	    "[ -e \"$p\" ] && d=${p##*/}; done; [ -n \"$d\" ] && [ -b /dev/$d ] && break; "
	    "sleep 0.02; done; head -c 13 /dev/$d; echo; sleep 600 </dev/$d >/dev/null 2>&1 &",
	    &c);
	assert_int_equal(r.code, 0);
	assert_string_equal(buf_cstr(&c.out), "vmci-hot-disk\n");
	capture_free(&c);
	if (vm_disk_detach(vm, 2, &err))
		fail_msg("%s", err.msg);
	/* Gone already: removing it again is not an error. */
	if (vm_disk_detach(vm, 2, &err))
		fail_msg("%s", err.msg);
	if (vm_snapshot_load(vm, "clean", &err))
		fail_msg("%s", err.msg);
	struct capture after = {0};
	r = vmtest_sh(vm, "ls /sys/block | grep -c '^sd' || true", &after);
	assert_int_equal(r.code, 0);
	assert_string_equal(buf_cstr(&after.out), "0\n");
	capture_free(&after);
	runner_guest_destroy(g, 5000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_revert_undoes_files_processes_environment_memory_and_disk),
	    cmocka_unit_test(test_revert_undoes_root_disk_writes_on_debian_12),
	    cmocka_unit_test(test_guest_clock_is_the_hosts_after_a_revert),
	    cmocka_unit_test(test_clones_of_a_mapped_template_differ_in_randomness_and_identity),
	    cmocka_unit_test(test_clones_of_a_plain_template_differ_in_randomness_and_identity),
	    cmocka_unit_test(test_a_template_that_does_not_load_is_made_again),
	    cmocka_unit_test(test_a_disk_added_and_removed_leaves_a_vm_that_reverts),
	};
	return cmocka_run_group_tests_name("vm snapshots and templates", tests, setup, teardown);
}
