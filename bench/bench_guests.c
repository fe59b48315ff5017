/*
 * The three guest OSes: build time from a warm package cache (a store of
 * its own that shares only the download cache), then boot time to a ready
 * agent from that store.
 */
#include "bench/results.h"
#include "vmtest.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define BOOT_RUNS 3

static const char *const guests[] = {"busybox-x86_64", "busybox-aarch64", "debian-12"};

int main(void)
{
	/*
	 * The user's download cache. vmci_home() keeps its first answer, so it
	 * is not asked here: the scratch store below must be the one it gives.
	 */
	const char *home = getenv("VMCI_HOME"), *user = getenv("HOME");
	char cache[PATH_MAX];
	if (home && *home
		? fs_path(cache, sizeof(cache), "%s/cache", home)
		: fs_path(cache, sizeof(cache), "%s/.cache/vmci/cache", user ? user : "/root"))
		return 1;
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX], link[PATH_MAX + 8];
	snprintf(dir, sizeof(dir), "%s/vmci-bench-guests-XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(dir))
		return 1;
	snprintf(link, sizeof(link), "%s/cache", dir);
	if (symlink(cache, link))
		return 1;
	setenv("VMCI_HOME", dir, 1);
	char why[256];
	vm_accel_choose(VM_ACCEL_AUTO, VM_ARCH_X86_64, why, sizeof(why));
	printf("accelerator: %s\nstore: %s (download cache shared with %s)\n\n", why, dir, cache);
	bench_header("images: the three guests");
	for (size_t i = 0; i < ARRAY_LEN(guests); i++) {
		struct img_ensure_opts opts = {.setup = runner_image_setup};
		struct img_boot img;
		struct vmci_err err = {0};
		int64_t t0 = clock_ns();
		if (img_ensure_with(guests[i], &opts, &img, &err)) {
			printf("| %-28s | %s\n", guests[i], err.msg);
			continue;
		}
		double build_ms = (double)(clock_ns() - t0) / 1e6;
		bench_row("build, warm package cache", "img_ensure (empty store)", guests[i], 1,
			  (struct stats){build_ms, build_ms, build_ms}, "ms");
		double boot_ms[BOOT_RUNS];
		for (int r = 0; r < BOOT_RUNS; r++) {
			struct runner_guest *g;
			t0 = clock_ns();
			if (runner_guest_boot(guests[i], NULL, &g, &err)) {
				printf("| %-28s | boot: %s\n", guests[i], err.msg);
				break;
			}
			boot_ms[r] = (double)(clock_ns() - t0) / 1e6;
			runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
		}
		bench_row("boot to ready agent", "runner_guest_boot (clone + QEMU + agent)",
			  guests[i], BOOT_RUNS, stats_of(boot_ms, BOOT_RUNS), "ms");
	}
	fs_rm_rf(dir, NULL);
	return 0;
}
