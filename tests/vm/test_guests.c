/*
 * The three guests every later test uses: each is built (once; the store
 * in $VMCI_HOME is kept across runs), boots, and reports the expected OS
 * and architecture from inside. Build and boot times are printed for the
 * record; a cold debian-12 build is a minute or two (debootstrap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <stdio.h>
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

static void test_debian_12_boots_with_build_tools(void **state)
{
	struct runner_guest *g = boot_timed("debian-12");
	expect_output(g, "cat /etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"");
	expect_output(g, "uname -m", "x86_64\n");
	/* The agent switched into the root disk: / is ext4 on /dev/vda. */
	expect_output(g, "grep ' / ' /proc/mounts", "/dev/vda / ext4");
	expect_output(
	    g,
	    "set -e; mkdir -p /work/p && cd /work/p\n"
	    "printf '#include <stdio.h>\\nint main(void){puts(\"built here\");return 0;}\\n'"
	    " > hello.c\n"
	    "printf 'hello: hello.c\\n\\tgcc -O2 -o hello hello.c\\n' > Makefile\n"
	    "make -s && ./hello\n"
	    "git init -q && git add . && git -c user.name=t -c user.email=t@e commit -qm one\n"
	    "git log --oneline | wc -l",
	    "built here\n1\n");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_busybox_x86_64_boots_and_reports_x86_64),
	    cmocka_unit_test(test_busybox_aarch64_boots_and_reports_aarch64),
	    cmocka_unit_test(test_debian_12_boots_with_build_tools),
	};
	return cmocka_run_group_tests_name("guests", tests, NULL, NULL);
}
