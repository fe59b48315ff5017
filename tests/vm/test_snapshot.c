/*
 * Snapshots and templates in real VMs (busybox-x86_64; the Debian images of
 * the catalog get the same isolation check in test_guests): a revert
 * undoes everything a job did, the guest clock is the host's after a
 * revert, clones of one template differ in randomness and identity, a VM
 * started from a snapshot template reverts to the state it started in, and a
 * disk added and removed at run time leaves a VM that reverts.
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

static void test_revert_undoes_files_processes_environment_memory_and_disk(void **state)
{
	/* busybox-x86_64 runs from its initramfs: the disk is the scratch disk /dev/vda. */
	struct runner_guest *g = vmtest_boot(IMAGE);
	vmtest_check_isolation(
	    g->vm, "DISK_WRITE=printf job1-disk | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null",
	    "DISK_READ=dd if=/dev/vda bs=9 count=1 2>/dev/null | tr -d '\\000'");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
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

/*
 * Two clones of a template of kind differ in randomness and write to disks
 * of their own. A clone of a mapped or plain template has an instance id
 * of its own; one of a snapshot template has none, since a revert to the
 * snapshot it started from would take it away again.
 */
static void check_clones_differ(enum runner_template_kind kind)
{
	struct runner_guest *a = restore(kind), *b = restore(kind);
	const char *script =
	    "echo random=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')\n"
	    "echo id=$(cat /run/vmci/instance-id 2>/dev/null)\n"
	    "echo disk=$(dd if=/dev/vda bs=5 count=1 2>/dev/null | tr -d '\\000')\n"
	    "printf clone | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null\n";
	struct capture ca = {0}, cb = {0};
	assert_int_equal(vmtest_sh(a->vm, script, &ca).code, 0);
	assert_int_equal(vmtest_sh(b->vm, script, &cb).code, 0);
	char ra[256], ida[256]; /* vmtest_value's buffer is reused by its next call */
	snprintf(ra, sizeof(ra), "%s", vmtest_value(&ca, "random"));
	snprintf(ida, sizeof(ida), "%s", vmtest_value(&ca, "id"));
	assert_int_equal(strlen(ra), 64);
	assert_string_not_equal(ra, vmtest_value(&cb, "random"));
	if (kind == RUNNER_TEMPLATE_SNAPSHOT) {
		assert_string_equal(vm_instance_id(a->vm), "");
	} else {
		assert_int_equal(strlen(ida), 32);
		assert_string_equal(ida, vm_instance_id(a->vm));
		assert_string_not_equal(ida, vmtest_value(&cb, "id"));
	}
	/* Each clone writes to a disk of its own. */
	assert_string_equal(vmtest_value(&ca, "disk"), "");
	assert_string_equal(vmtest_value(&cb, "disk"), "");
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

static void test_clones_of_a_snapshot_template_differ_in_randomness_and_disk(void **state)
{
	check_clones_differ(RUNNER_TEMPLATE_SNAPSHOT);
}

/*
 * A VM started from a snapshot template holds that snapshot in its disk:
 * reverting to it undoes what a job did (files, processes, disk writes),
 * with no snapshot of the VM's own saved first (what a warm pool relies on).
 */
static void test_a_vm_from_a_snapshot_template_reverts_to_the_state_it_started_in(void **state)
{
	struct runner_guest *g = restore(RUNNER_TEMPLATE_SNAPSHOT);
	vmtest_check_isolation_at(
	    g->vm, RUNNER_TEMPLATE_SNAPSHOT_NAME,
	    "DISK_WRITE=printf job1-disk | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null",
	    "DISK_READ=dd if=/dev/vda bs=9 count=1 2>/dev/null | tr -d '\\000'");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
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
	    cmocka_unit_test(test_guest_clock_is_the_hosts_after_a_revert),
	    cmocka_unit_test(test_clones_of_a_mapped_template_differ_in_randomness_and_identity),
	    cmocka_unit_test(test_clones_of_a_snapshot_template_differ_in_randomness_and_disk),
	    cmocka_unit_test(test_a_vm_from_a_snapshot_template_reverts_to_the_state_it_started_in),
	    cmocka_unit_test(test_clones_of_a_plain_template_differ_in_randomness_and_identity),
	    cmocka_unit_test(test_a_template_that_does_not_load_is_made_again),
	    cmocka_unit_test(test_a_disk_added_and_removed_leaves_a_vm_that_reverts),
	};
	return cmocka_run_group_tests_name("vm snapshots and templates", tests, setup, teardown);
}
