/*
 * A clone's writes never reach its golden image: a VM booted on a clone
 * of a 256 MiB golden disk writes 100 MB to /dev/vda; the golden file's
 * sha256 is the same after, and the overlay holds the 100 MB.
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
#include <sys/stat.h>
#include <unistd.h>

static long long on_disk(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (long long)st.st_blocks * 512;
}

static void test_clone_writes_never_reach_the_golden_image(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX], base[PATH_MAX], golden[PATH_MAX], clone[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/vmci-clone-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(base, sizeof(base), "%s/base.qcow2", dir);
	snprintf(golden, sizeof(golden), "%s/golden.qcow2", dir);
	snprintf(clone, sizeof(clone), "%s/clone.qcow2", dir);

	/* A two-level golden chain, as an image built on another one has. */
	struct vmci_err err = {0};
	if (img_clone_file(NULL, base, 256, &err) || img_clone_file(base, golden, 0, &err) ||
	    img_clone_file(golden, clone, 0, &err))
		fail_msg("cannot make the disks: %s", err.msg);
	assert_int_equal(chmod(golden, 0444), 0);
	assert_int_equal(chmod(base, 0444), 0);
	char golden_before[SHA256_HEX_LEN + 1], base_before[SHA256_HEX_LEN + 1];
	assert_int_equal(sha256_file(golden, golden_before, NULL), 0);
	assert_int_equal(sha256_file(base, base_before, NULL), 0);
	long long clone_before = on_disk(clone);

	struct img_boot img;
	if (img_ensure("busybox-x86_64", &img, NULL, NULL, &err))
		fail_msg("image: %s", err.msg);
	struct vm_spec spec = {
	    .arch = VM_ARCH_X86_64,
	    .kernel = img.kernel,
	    .initrd = img.initrd,
	    .cmdline = img.cmdline,
	    .disk = clone,
	    .run_dir = dir,
	};
	struct vm *vm = NULL;
	if (vm_start(&spec, &vm, &err))
		fail_msg("vm_start: %s", err.msg);
	/* QEMU locks the images it opens: what gc relies on to tell a clone in use. */
	assert_true(img_file_locked(clone));
	struct capture c = {0};
	struct vm_exec_result r =
	    vmtest_sh(vm, "dd if=/dev/urandom of=/dev/vda bs=1M count=100 conv=fsync 2>&1", &c);
	if (r.kind != VM_EXITED || r.code != 0)
		fail_msg("dd failed (%d, %d): %s", r.kind, r.code, buf_cstr(&c.out));
	capture_free(&c);
	vm_stop(vm, VMCI_STOP_FLUSH_TIMEOUT_MS);
	assert_false(img_file_locked(clone));

	char golden_after[SHA256_HEX_LEN + 1], base_after[SHA256_HEX_LEN + 1];
	assert_int_equal(sha256_file(golden, golden_after, NULL), 0);
	assert_int_equal(sha256_file(base, base_after, NULL), 0);
	assert_string_equal(golden_after, golden_before);
	assert_string_equal(base_after, base_before);
	long long grown = on_disk(clone) - clone_before;
	print_message("golden unchanged (sha256 %.12s); the clone grew by %.1f MiB\n", golden_after,
		      (double)grown / (1 << 20));
	assert_true(grown >= 100LL << 20);
	assert_true(grown < 110LL << 20);
	fs_rm_rf(dir, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clone_writes_never_reach_the_golden_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
