/*
 * vmcore/accel.c: the accelerator verdict (its file, its key, and how
 * AUTO follows it) and the console line that names a failure. Each test
 * runs in a $VMCI_HOME of its own making; no guest boots here (the
 * canary itself: tests/e2e/test_accel.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmcore/qemu.h" /* qemu_console_failure_line: vmcore's own tests may look inside */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static char home[PATH_MAX];

static enum vm_arch host_arch(void)
{
	struct utsname u;
	enum vm_arch arch = VM_ARCH_X86_64;
	assert_int_equal(uname(&u), 0);
	assert_int_equal(vm_arch_parse(u.machine, &arch), 0);
	return arch;
}

static void verdict_path(char *out, size_t size)
{
	assert_int_equal(vm_accel_verdict_path(out, size), 0);
}

static int remove_verdict(void **state)
{
	char path[PATH_MAX];
	verdict_path(path, sizeof(path));
	unlink(path);
	unsetenv("VMCI_ACCEL");
	return 0;
}

static struct vm_accel_verdict current(bool kvm_booted, int64_t kvm_ms, int64_t tcg_ms)
{
	struct vm_accel_verdict v = {.kvm_booted = kvm_booted, .kvm_ms = kvm_ms, .tcg_ms = tcg_ms};
	vm_accel_key(host_arch(), v.key, sizeof(v.key));
	snprintf(v.source, sizeof(v.source), "canary");
	if (!kvm_booted)
		snprintf(v.failure, sizeof(v.failure), "KVM internal error. Suberror: 1");
	return v;
}

static void write_verdict(const struct vm_accel_verdict *v)
{
	struct vmci_err err = {0};
	if (vm_accel_verdict_write(v, &err))
		fail_msg("%s", err.msg);
}

static void test_verdict_path_is_in_vmci_home(void **state)
{
	char path[PATH_MAX], want[PATH_MAX];
	verdict_path(path, sizeof(path));
	snprintf(want, sizeof(want), "%s/accel.json", home);
	assert_string_equal(path, want);
}

static void test_key_names_kernel_qemu_cpu_and_canary_version(void **state)
{
	char key[VM_ACCEL_KEY_MAX];
	struct utsname u;
	assert_int_equal(uname(&u), 0);
	vm_accel_key(host_arch(), key, sizeof(key));
	assert_non_null(strstr(key, u.release));
	assert_non_null(strstr(key, "qemu="));
	assert_non_null(strstr(key, "cpu="));
	assert_non_null(strstr(key, "canary="));
}

static void test_key_changes_with_the_qemu_binary(void **state)
{
	/* A QEMU found elsewhere on $PATH is another QEMU: its verdict is not ours. */
	char before[VM_ACCEL_KEY_MAX], after[VM_ACCEL_KEY_MAX], dir[PATH_MAX], bin[PATH_MAX];
	vm_accel_key(host_arch(), before, sizeof(before));
	snprintf(dir, sizeof(dir), "%s/bin", home);
	assert_int_equal(fs_mkdir_p(dir, 0755, NULL), 0);
	snprintf(bin, sizeof(bin), "%s/%s", dir, vm_qemu_binary(host_arch()));
	assert_int_equal(fs_write_atomic(bin, "#!/bin/sh\n", 10, 0755, NULL), 0);
	char *path = strdup(getenv("PATH"));
	char newpath[PATH_MAX * 2];
	snprintf(newpath, sizeof(newpath), "%s:%s", dir, path);
	setenv("PATH", newpath, 1);
	vm_accel_key(host_arch(), after, sizeof(after));
	setenv("PATH", path, 1);
	free(path);
	unlink(bin);
	assert_string_not_equal(before, after);
	assert_non_null(strstr(after, bin));
}

static void test_verdict_round_trips(void **state)
{
	struct vm_accel_verdict v = current(false, -1, 2345), got;
	write_verdict(&v);
	assert_int_equal(vm_accel_verdict_read(host_arch(), &got), 1);
	assert_string_equal(got.key, v.key);
	assert_false(got.kvm_booted);
	assert_int_equal(got.kvm_ms, -1);
	assert_int_equal(got.tcg_ms, 2345);
	assert_string_equal(got.failure, "KVM internal error. Suberror: 1");
	assert_string_equal(got.source, "canary");
	assert_true(got.written_at > 0);
}

static void test_verdict_of_another_key_is_stale(void **state)
{
	struct vm_accel_verdict v = current(true, 300, 2000), got;
	snprintf(v.key, sizeof(v.key), "kernel=2.6.32 qemu=old cpu=old canary=0");
	write_verdict(&v);
	assert_int_equal(vm_accel_verdict_read(host_arch(), &got), 0);
	assert_string_equal(got.key, "kernel=2.6.32 qemu=old cpu=old canary=0");
	assert_false(got.kvm_booted);
}

static void test_unreadable_verdict_is_no_verdict(void **state)
{
	char path[PATH_MAX];
	verdict_path(path, sizeof(path));
	assert_int_equal(fs_write_atomic(path, "{\"key\": tru", 11, 0644, NULL), 0);
	struct vm_accel_verdict got;
	assert_int_equal(vm_accel_verdict_read(host_arch(), &got), 0);
	assert_string_equal(got.key, "");
}

static void test_kvm_is_preferred_only_when_it_booted_no_slower(void **state)
{
	struct vm_accel_verdict v = current(true, 300, 2000);
	assert_true(vm_accel_verdict_prefers_kvm(&v));
	v = current(true, 2500, 2000);
	assert_false(vm_accel_verdict_prefers_kvm(&v));
	v = current(false, -1, 2000);
	assert_false(vm_accel_verdict_prefers_kvm(&v));
	v = current(true, 300, -1); /* TCG not timed: KVM's boot is proof enough */
	assert_true(vm_accel_verdict_prefers_kvm(&v));
}

/* AUTO's choice follows the verdict; these need a /dev/kvm that passes the probe. */
static void require_usable_kvm(void)
{
	struct vm_kvm_info kvm;
	vm_kvm_probe(&kvm);
	if (!kvm.usable)
		fail_msg("this test needs a /dev/kvm that opens (KVM need not work): %s",
			 kvm.reason);
}

static void test_auto_is_undecided_without_a_verdict(void **state)
{
	require_usable_kvm();
	char why[512];
	assert_int_equal(vm_accel_choose(VM_ACCEL_AUTO, host_arch(), why, sizeof(why)),
			 VM_ACCEL_AUTO);
	assert_non_null(strstr(why, "canary"));
}

static void test_auto_uses_tcg_when_the_canary_failed_and_says_why(void **state)
{
	require_usable_kvm();
	struct vm_accel_verdict v = current(false, -1, 2000);
	write_verdict(&v);
	char why[512];
	assert_int_equal(vm_accel_choose(VM_ACCEL_AUTO, host_arch(), why, sizeof(why)),
			 VM_ACCEL_TCG);
	assert_non_null(strstr(why, "KVM is present but its canary failed: KVM internal error"));
}

static void test_auto_uses_kvm_when_the_canary_booted_faster(void **state)
{
	require_usable_kvm();
	struct vm_accel_verdict v = current(true, 300, 2000);
	write_verdict(&v);
	char why[512];
	assert_int_equal(vm_accel_choose(VM_ACCEL_AUTO, host_arch(), why, sizeof(why)),
			 VM_ACCEL_KVM);
	assert_non_null(strstr(why, "300 ms"));
}

static void test_auto_uses_tcg_when_kvm_booted_slower(void **state)
{
	require_usable_kvm();
	struct vm_accel_verdict v = current(true, 5000, 2000);
	write_verdict(&v);
	assert_int_equal(vm_accel_choose(VM_ACCEL_AUTO, host_arch(), NULL, 0), VM_ACCEL_TCG);
}

static void test_auto_ignores_a_stale_verdict(void **state)
{
	require_usable_kvm();
	struct vm_accel_verdict v = current(false, -1, 2000);
	snprintf(v.key, sizeof(v.key), "kernel=older");
	write_verdict(&v);
	char why[512];
	assert_int_equal(vm_accel_choose(VM_ACCEL_AUTO, host_arch(), why, sizeof(why)),
			 VM_ACCEL_AUTO);
	assert_non_null(strstr(why, "another kernel, QEMU or CPU"));
}

static void test_forced_tcg_needs_no_verdict(void **state)
{
	setenv("VMCI_ACCEL", "tcg", 1);
	assert_int_equal(vm_accel_resolve(VM_ACCEL_AUTO, host_arch(), "/nonexistent/kernel",
					  "/nonexistent/initrd", NULL, 0),
			 VM_ACCEL_TCG);
	char path[PATH_MAX];
	verdict_path(path, sizeof(path));
	assert_false(fs_exists(path)); /* no canary ran */
}

static void test_canary_that_boots_nowhere_writes_nothing_and_picks_tcg(void **state)
{
	require_usable_kvm();
	char why[512];
	assert_int_equal(vm_accel_resolve(VM_ACCEL_AUTO, host_arch(), "/nonexistent/kernel",
					  "/nonexistent/initrd", why, sizeof(why)),
			 VM_ACCEL_TCG);
	assert_non_null(strstr(why, "neither KVM"));
	char path[PATH_MAX];
	verdict_path(path, sizeof(path));
	assert_false(fs_exists(path));
}

static void console_says(const char *text, char *line, size_t size)
{
	struct qemu_paths paths;
	qemu_paths_init(&paths, home);
	assert_int_equal(fs_write_atomic(paths.console, text, strlen(text), 0644, NULL), 0);
	qemu_console_failure_line(&paths, line, size);
}

static void test_failure_line_is_the_first_that_speaks_of_an_error(void **state)
{
	char line[256];
	console_says("Linux version 6.1.0\r\nRun /init as init process\n"
		     "KVM internal error. Suberror: 1\nemulation failure\nRAX=0 RBX=0\n",
		     line, sizeof(line));
	assert_string_equal(line, "KVM internal error. Suberror: 1");
	console_says("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n"
		     "qemu-system-x86_64: ../target/i386/kvm/kvm.c:3262: Assertion failed.\n",
		     line, sizeof(line));
	assert_string_equal(line, "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69");
}

static void test_failure_line_falls_back_to_the_first_line(void **state)
{
	char line[256];
	console_says("\nSeaBIOS (version 1.16)\nBooting from ROM...\n", line, sizeof(line));
	assert_string_equal(line, "SeaBIOS (version 1.16)");
	console_says("", line, sizeof(line));
	assert_string_equal(line, "");
}

int main(void)
{
	/* Before anything asks for vmci_home(), which keeps its first answer. */
	snprintf(home, sizeof(home), "%s/vmci-accel-test-XXXXXX",
		 getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(home))
		return 1;
	setenv("VMCI_HOME", home, 1);
	unsetenv("VMCI_ACCEL");
	unsetenv("VMCI_KVM_DEVICE");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verdict_path_is_in_vmci_home),
	    cmocka_unit_test(test_key_names_kernel_qemu_cpu_and_canary_version),
	    cmocka_unit_test(test_key_changes_with_the_qemu_binary),
	    cmocka_unit_test_teardown(test_verdict_round_trips, remove_verdict),
	    cmocka_unit_test_teardown(test_verdict_of_another_key_is_stale, remove_verdict),
	    cmocka_unit_test_teardown(test_unreadable_verdict_is_no_verdict, remove_verdict),
	    cmocka_unit_test(test_kvm_is_preferred_only_when_it_booted_no_slower),
	    cmocka_unit_test_teardown(test_auto_is_undecided_without_a_verdict, remove_verdict),
	    cmocka_unit_test_teardown(test_auto_uses_tcg_when_the_canary_failed_and_says_why,
				      remove_verdict),
	    cmocka_unit_test_teardown(test_auto_uses_kvm_when_the_canary_booted_faster,
				      remove_verdict),
	    cmocka_unit_test_teardown(test_auto_uses_tcg_when_kvm_booted_slower, remove_verdict),
	    cmocka_unit_test_teardown(test_auto_ignores_a_stale_verdict, remove_verdict),
	    cmocka_unit_test_teardown(test_forced_tcg_needs_no_verdict, remove_verdict),
	    cmocka_unit_test_teardown(test_canary_that_boots_nowhere_writes_nothing_and_picks_tcg,
				      remove_verdict),
	    cmocka_unit_test(test_failure_line_is_the_first_that_speaks_of_an_error),
	    cmocka_unit_test(test_failure_line_falls_back_to_the_first_line),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	fs_rm_rf(home, NULL);
	return failed;
}
