/*
 * What the accelerator verdict costs: the canary on a host's first VM, and
 * the choice on every later VM (a read of the kept verdict), beside a cold
 * boot and the choice with $VMCI_ACCEL forcing TCG (no verdict read).
 */
#include "bench/results.h"
#include "vmtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#define IMAGE "busybox-x86_64"

static void die(const char *what, const struct vmci_err *err)
{
	fprintf(stderr, "bench_accel: %s: %s\n", what, err->msg);
	exit(1);
}

static void bench_choice(const char *name, const char *inputs, const struct img_boot *img, int runs)
{
	double *us = calloc((size_t)runs, sizeof(double));
	for (int i = 0; i < runs; i++) {
		int64_t t0 = clock_ns();
		vm_accel_resolve(VM_ACCEL_AUTO, VM_ARCH_X86_64, img->kernel, img->initrd, NULL, 0);
		us[i] = (double)(clock_ns() - t0) / 1e3;
	}
	bench_row(name, "vm_accel_resolve(AUTO)", inputs, (size_t)runs, stats_of(us, (size_t)runs),
		  "us");
	free(us);
}

int main(void)
{
	struct utsname u;
	if (uname(&u) || strcmp(u.machine, "x86_64")) {
		printf("bench_accel: the canary is measured on x86_64 hosts; this is %s\n",
		       u.machine);
		return 0;
	}
	unsetenv("VMCI_ACCEL");
	struct img_boot img;
	struct vmci_err err = {0};
	if (img_ensure(IMAGE, &img, NULL, NULL, &err))
		die("image", &err);
	bench_header("vmcore: the accelerator verdict");

	double canary_ms[3];
	struct vm_accel_verdict v;
	for (int i = 0; i < 3; i++) {
		int64_t t0 = clock_ns();
		if (vm_accel_canary(VM_ARCH_X86_64, img.kernel, img.initrd, 0, &v, &err))
			die("canary", &err);
		canary_ms[i] = (double)(clock_ns() - t0) / 1e6;
	}
	bench_row("canary (a host's first VM)", "vm_accel_canary: KVM, then TCG",
		  IMAGE " kernel + agent initramfs", 3, stats_of(canary_ms, 3), "ms");
	printf("  verdict: KVM %s%s\n",
	       v.kvm_booted ? "booted" : "failed: ", v.kvm_booted ? "" : v.failure);
	if (vm_accel_verdict_write(&v, &err))
		die("verdict", &err);

	double boot_ms[3];
	for (int i = 0; i < 3; i++) {
		struct runner_guest *g;
		int64_t t0 = clock_ns();
		if (runner_guest_boot(IMAGE, NULL, &g, &err))
			die("boot", &err);
		boot_ms[i] = (double)(clock_ns() - t0) / 1e6;
		runner_guest_destroy(g, 3000);
	}
	bench_row("cold boot under the verdict", "runner_guest_boot", IMAGE, 3,
		  stats_of(boot_ms, 3), "ms");

	bench_choice("choice, verdict kept (every later VM)", "$VMCI_HOME/accel.json", &img, 1000);
	setenv("VMCI_ACCEL", "tcg", 1);
	bench_choice("choice, TCG forced (no verdict read)", "VMCI_ACCEL=tcg", &img, 1000);
	unsetenv("VMCI_ACCEL");
	return 0;
}
