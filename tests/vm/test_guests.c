/*
 * The guest catalog: each image is built (once; the store in $VMCI_HOME
 * is kept across runs), boots, and reports the expected OS and
 * architecture from inside; the Debian images (11, 12, 13 on x86_64, 12
 * on arm64) also build C with their own gcc and revert clean. Build and
 * boot times are printed for the record; a cold build is minutes
 * (debootstrap; debian-12-arm64 finishes its root file system in a VM).
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

/* Builds (or finds) image, boots it, and says how long each took. */
static struct runner_guest *boot_timed(const char *image)
{
	struct img_boot img;
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	if (img_ensure(image, &img, NULL, NULL, &err))
		fail_msg("cannot build %s: %s", image, err.msg);
	int64_t built = clock_ms() - t0;
	struct runner_guest *g = vmtest_boot(image);
	printf("# %s: image ready in %lld ms, booted to a ready agent in %lld ms (%s)\n", image,
	       (long long)built, (long long)vm_boot_ms(g->vm),
	       vm_accel_used(g->vm) == VM_ACCEL_KVM ? "kvm" : "tcg");
	return g;
}

static void expect_output(struct runner_guest *g, const char *script, const char *want)
{
	struct capture c = {0};
	struct vm_exec_result r = vmtest_sh(g->vm, script, &c);
	if (r.kind != VM_EXITED || r.code != 0 || !strstr(buf_cstr(&c.out), want))
		fail_msg("`%s` gave (status %d) stdout:\n%s\nstderr:\n%s\nexpected: %s", script,
			 r.code, buf_cstr(&c.out), buf_cstr(&c.err), want);
	capture_free(&c);
}

static void test_busybox_x86_64_boots_and_reports_x86_64(void **state)
{
	struct runner_guest *g = boot_timed("busybox-x86_64");
	assert_string_equal(vm_guest_info(g->vm, "arch"), "x86_64");
	expect_output(g, "uname -m", "x86_64\n");
	expect_output(g, "cat /etc/os-release", "PRETTY_NAME=\"vmci busybox (x86_64)\"");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

static void test_busybox_aarch64_boots_and_reports_aarch64(void **state)
{
	struct runner_guest *g = boot_timed("busybox-aarch64");
	assert_string_equal(vm_guest_info(g->vm, "arch"), "aarch64");
	expect_output(g, "uname -m", "aarch64\n");
	expect_output(g, "cat /etc/os-release", "PRETTY_NAME=\"vmci busybox (aarch64)\"");
	/* The applets came from the host's busybox of the same version: they all run. */
	expect_output(g, "ls /bin/ls && sha256sum /bin/busybox >/dev/null && echo ok", "ok\n");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

/* ---- the Debian catalog -------------------------------------------------- */

/* What each catalog image must report from inside. */
struct catalog_image {
	const char *name;
	const char *version_id; /* /etc/os-release */
	const char *arch;	/* uname -m */
};

/*
 * One guest per image does everything, to keep the suite's time down: it
 * starts from the image's template (made by a cold boot, so this is also
 * the boot check), reports its release, architecture and kernel, builds
 * and runs a C program with its own gcc, commits with git, and reverts
 * clean after a job that leaves traces everywhere.
 */
static void check_catalog_image(const struct catalog_image *want)
{
	struct vmci_err err = {0};
	struct img_boot img;
	int64_t t0 = clock_ms();
	if (runner_image_ensure(want->name, NULL, NULL, &img, &err))
		fail_msg("cannot build %s: %s", want->name, err.msg);
	int64_t built = clock_ms() - t0;

	char templates[PATH_MAX];
	const char *tmp = getenv("TMPDIR");
	snprintf(templates, sizeof(templates), "%s/vmci-catalog-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(templates));
	t0 = clock_ms();
	struct runner_guest *g = NULL;
	if (runner_guest_restore(want->name, NULL, templates, RUNNER_TEMPLATE_MAPPED, &g, &err))
		fail_msg("cannot start %s from its template: %s", want->name, err.msg);
	printf("# %s: image ready in %lld ms, template made and started in %lld ms\n", want->name,
	       (long long)built, (long long)(clock_ms() - t0));

	struct capture c = {0};
	struct vm_exec_result r = vmtest_sh(
	    g->vm,
	    ". /etc/os-release; echo version_id=$VERSION_ID\n"
	    "echo arch=$(uname -m)\n"
	    "echo kernel=$(uname -r)\n"
	    "set -e; mkdir -p /work/p && cd /work/p\n"
	    "printf '#include <stdio.h>\\n#include <gnu/libc-version.h>\\n"
	    "int main(void){printf(\"glibc=%%s\\\\n\", gnu_get_libc_version());return 0;}\\n'"
	    " > hello.c\n"
	    "gcc -O2 -o hello hello.c && ./hello\n"
	    "git init -q && git add . && git -c user.name=t -c user.email=t@e commit -qm one\n"
	    "echo commits=$(git log --oneline | wc -l)",
	    &c);
	if (r.kind != VM_EXITED || r.code != 0)
		fail_msg("%s: status %d\n%s%s", want->name, r.code, buf_cstr(&c.out),
			 buf_cstr(&c.err));
	printf("# %s: %s", want->name, buf_cstr(&c.out));
	assert_string_equal(vmtest_value(&c, "version_id"), want->version_id);
	assert_string_equal(vmtest_value(&c, "arch"), want->arch);
	assert_string_not_equal(vmtest_value(&c, "glibc"), "");
	assert_string_equal(vmtest_value(&c, "commits"), "1");

	/* `vmci image ls` says what the guest says: read from the image, not its name. */
	struct img_info *rows = NULL;
	size_t n = 0;
	assert_int_equal(img_list(&rows, &n, &err), 0);
	const struct img_info *row = NULL;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(rows[i].name, want->name))
			row = &rows[i];
	assert_non_null(row);
	assert_string_equal(row->os_version, want->version_id);
	assert_string_equal(row->os_id, "debian");
	assert_string_equal(row->kernel, vmtest_value(&c, "kernel"));
	free(rows);
	capture_free(&c);

	/* The root file system is the disk: job 1 writes to it and syncs. */
	vmtest_check_isolation(g->vm, "DISK_WRITE=echo job1-disk > /job1-disk && sync",
			       "DISK_READ=cat /job1-disk 2>/dev/null");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	fs_rm_rf(templates, NULL);
}

static void test_debian_11_reports_bullseye_builds_c_and_reverts_clean(void **state)
{
	check_catalog_image(&(struct catalog_image){"debian-11", "11", "x86_64"});
}

static void test_debian_12_reports_bookworm_builds_c_and_reverts_clean(void **state)
{
	check_catalog_image(&(struct catalog_image){"debian-12", "12", "x86_64"});
}

static void test_debian_13_reports_trixie_builds_c_and_reverts_clean(void **state)
{
	check_catalog_image(&(struct catalog_image){"debian-13", "13", "x86_64"});
}

static void
test_debian_12_arm64_reports_bookworm_on_aarch64_builds_c_and_reverts_clean(void **state)
{
	check_catalog_image(&(struct catalog_image){"debian-12-arm64", "12", "aarch64"});
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_busybox_x86_64_boots_and_reports_x86_64),
	    cmocka_unit_test(test_busybox_aarch64_boots_and_reports_aarch64),
	    cmocka_unit_test(test_debian_11_reports_bullseye_builds_c_and_reverts_clean),
	    cmocka_unit_test(test_debian_12_reports_bookworm_builds_c_and_reverts_clean),
	    cmocka_unit_test(test_debian_13_reports_trixie_builds_c_and_reverts_clean),
	    cmocka_unit_test(
		test_debian_12_arm64_reports_bookworm_on_aarch64_builds_c_and_reverts_clean),
	};
	return cmocka_run_group_tests_name("guests", tests, NULL, NULL);
}
