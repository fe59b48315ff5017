/*
 * vmcore/arch.c: the Debian package of each architecture's QEMU comes from
 * packages.txt, the one table of packages (common/packages.c).
 *
 * This test links a packages.txt of its own: its definition of
 * vmci_packages_txt is found before the archive's generated one (which
 * then is never pulled in), so what vmcore answers can only come from
 * the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmcore/vmcore.h"

#include <pthread.h>
#include <string.h>

const char vmci_packages_txt[] =
    "# package           need      programs             purpose\n"
    "qemu-x86-elsewhere  run       qemu-system-x86_64   x86_64 guests, from another package\n"
    "qemu-utils          run       qemu-img             disk images\n";

static void test_the_qemu_package_is_the_one_packages_txt_names(void **state)
{
	assert_string_equal(vm_qemu_package(VM_ARCH_X86_64), "qemu-x86-elsewhere");
	/* Asked again, the same string: it lives as long as the process. */
	assert_ptr_equal(vm_qemu_package(VM_ARCH_X86_64), vm_qemu_package(VM_ARCH_X86_64));
}

static void test_no_package_when_packages_txt_names_none(void **state)
{
	assert_null(vm_qemu_package(VM_ARCH_AARCH64));
	assert_null(vm_qemu_package((enum vm_arch)42));
}

static void *ask(void *arg)
{
	return (void *)vm_qemu_package(VM_ARCH_X86_64);
}

static void test_threads_asking_at_once_get_the_same_answer(void **state)
{
	pthread_t t[8];
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&t[i], NULL, ask, NULL), 0);
	for (size_t i = 0; i < 8; i++) {
		void *got = NULL;
		assert_int_equal(pthread_join(t[i], &got), 0);
		assert_string_equal(got, "qemu-x86-elsewhere");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads_asking_at_once_get_the_same_answer),
	    cmocka_unit_test(test_the_qemu_package_is_the_one_packages_txt_names),
	    cmocka_unit_test(test_no_package_when_packages_txt_names_none),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
