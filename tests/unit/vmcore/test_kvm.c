/*
 * vmcore/kvm.c, vmcore/accel.c and vmcore/arch.c: the KVM probe, the
 * choice of accelerator where no verdict is involved, and architecture
 * names. A host without KVM is presented by pointing $VMCI_KVM_DEVICE at a
 * node that does not exist. (The verdict: test_accel.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmcore/vmcore.h"

#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

static enum vm_arch host_arch(void)
{
	struct utsname u;
	enum vm_arch arch = VM_ARCH_X86_64;
	assert_int_equal(uname(&u), 0);
	if (vm_arch_parse(u.machine, &arch) < 0)
		skip(); /* a host vmci has no guests for */
	return arch;
}

static enum vm_arch other_arch(enum vm_arch arch)
{
	return arch == VM_ARCH_X86_64 ? VM_ARCH_AARCH64 : VM_ARCH_X86_64;
}

static int clear_env(void **state)
{
	unsetenv("VMCI_ACCEL");
	return 0;
}

static void test_arch_names_round_trip(void **state)
{
	enum vm_arch arch;
	assert_int_equal(vm_arch_parse("x86_64", &arch), 0);
	assert_int_equal(arch, VM_ARCH_X86_64);
	assert_string_equal(vm_arch_name(arch), "x86_64");
	assert_int_equal(vm_arch_parse("aarch64", &arch), 0);
	assert_int_equal(arch, VM_ARCH_AARCH64);
	assert_string_equal(vm_arch_name(arch), "aarch64");
}

static void test_arch_parse_rejects_unknown_names(void **state)
{
	enum vm_arch arch = VM_ARCH_AARCH64;
	assert_int_equal(vm_arch_parse("riscv64", &arch), -1);
	assert_int_equal(vm_arch_parse("", &arch), -1);
	assert_int_equal(vm_arch_parse("X86_64", &arch), -1);
	assert_int_equal(vm_arch_parse(NULL, &arch), -1);
	assert_int_equal(arch, VM_ARCH_AARCH64); /* untouched */
}

static void test_qemu_binary_and_package_per_arch(void **state)
{
	assert_string_equal(vm_qemu_binary(VM_ARCH_X86_64), "qemu-system-x86_64");
	assert_string_equal(vm_qemu_package(VM_ARCH_X86_64), "qemu-system-x86");
	assert_string_equal(vm_qemu_binary(VM_ARCH_AARCH64), "qemu-system-aarch64");
	assert_string_equal(vm_qemu_package(VM_ARCH_AARCH64), "qemu-system-arm");
}

static void test_probe_explains_itself(void **state)
{
	struct vm_kvm_info kvm;
	vm_kvm_probe(&kvm);
	if (kvm.usable) {
		assert_int_equal(kvm.api_version, 12);
		assert_true(kvm.max_vcpus >= 1);
		assert_string_equal(kvm.reason, "");
	} else {
		assert_true(strlen(kvm.reason) > 10);
	}
}

static void test_env_tcg_overrides_requested_kvm(void **state)
{
	char why[256];
	setenv("VMCI_ACCEL", "tcg", 1);
	assert_int_equal(vm_accel_choose(VM_ACCEL_KVM, host_arch(), why, sizeof(why)),
			 VM_ACCEL_TCG);
	assert_non_null(strstr(why, "$VMCI_ACCEL"));
}

static void test_env_kvm_overrides_requested_tcg(void **state)
{
	struct vm_kvm_info kvm;
	vm_kvm_probe(&kvm);
	char why[256];
	setenv("VMCI_ACCEL", "kvm", 1);
	enum vm_accel got = vm_accel_choose(VM_ACCEL_TCG, host_arch(), why, sizeof(why));
	assert_int_equal(got, kvm.usable ? VM_ACCEL_KVM : VM_ACCEL_TCG);
	assert_non_null(strstr(why, "$VMCI_ACCEL"));
}

static void test_unknown_env_value_is_ignored(void **state)
{
	/* "fast" is no accelerator: the requested one stands, and $VMCI_ACCEL is not named. */
	char why[256];
	setenv("VMCI_ACCEL", "fast", 1);
	assert_int_equal(vm_accel_choose(VM_ACCEL_TCG, host_arch(), why, sizeof(why)),
			 VM_ACCEL_TCG);
	assert_null(strstr(why, "$VMCI_ACCEL"));
	assert_non_null(strstr(why, "the VM spec"));
}

static int no_kvm_device(void **state)
{
	setenv("VMCI_KVM_DEVICE", "/nonexistent/kvm", 1);
	return 0;
}

static int restore_kvm_device(void **state)
{
	unsetenv("VMCI_KVM_DEVICE");
	unsetenv("VMCI_ACCEL");
	return 0;
}

static void test_probe_of_a_missing_device_says_so(void **state)
{
	struct vm_kvm_info kvm;
	vm_kvm_probe(&kvm);
	assert_false(kvm.usable);
	assert_int_equal(kvm.api_version, -1);
	assert_non_null(strstr(kvm.reason, "does not exist"));
}

static void test_requested_kvm_falls_back_to_tcg_when_unusable(void **state)
{
	char why[512];
	assert_int_equal(vm_accel_choose(VM_ACCEL_KVM, host_arch(), why, sizeof(why)),
			 VM_ACCEL_TCG);
	assert_non_null(strstr(why, "falling back to TCG"));
	assert_non_null(strstr(why, "does not exist"));
}

static void test_auto_without_usable_kvm_is_tcg_without_a_canary(void **state)
{
	/* Nothing to prove: AUTO decides at once, never "undecided". */
	char why[512];
	assert_int_equal(vm_accel_choose(VM_ACCEL_AUTO, host_arch(), why, sizeof(why)),
			 VM_ACCEL_TCG);
	assert_non_null(strstr(why, "KVM is not usable"));
}

static void test_foreign_guest_uses_tcg(void **state)
{
	enum vm_arch host = host_arch();
	char why[256];
	assert_int_equal(vm_accel_choose(VM_ACCEL_AUTO, other_arch(host), why, sizeof(why)),
			 VM_ACCEL_TCG);
	assert_non_null(strstr(why, vm_arch_name(other_arch(host))));
	assert_int_equal(vm_accel_choose(VM_ACCEL_KVM, other_arch(host), why, sizeof(why)),
			 VM_ACCEL_TCG);
	assert_non_null(strstr(why, "falling back to TCG"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_arch_names_round_trip),
	    cmocka_unit_test(test_arch_parse_rejects_unknown_names),
	    cmocka_unit_test(test_qemu_binary_and_package_per_arch),
	    cmocka_unit_test(test_probe_explains_itself),
	    cmocka_unit_test_teardown(test_env_tcg_overrides_requested_kvm, clear_env),
	    cmocka_unit_test_teardown(test_env_kvm_overrides_requested_tcg, clear_env),
	    cmocka_unit_test_teardown(test_unknown_env_value_is_ignored, clear_env),
	    cmocka_unit_test_setup_teardown(test_probe_of_a_missing_device_says_so, no_kvm_device,
					    restore_kvm_device),
	    cmocka_unit_test_setup_teardown(test_requested_kvm_falls_back_to_tcg_when_unusable,
					    no_kvm_device, restore_kvm_device),
	    cmocka_unit_test_setup_teardown(test_auto_without_usable_kvm_is_tcg_without_a_canary,
					    no_kvm_device, restore_kvm_device),
	    cmocka_unit_test(test_foreign_guest_uses_tcg),
	};
	/* The suite may run with VMCI_ACCEL set (make asan); these tests set their own. */
	unsetenv("VMCI_ACCEL");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
