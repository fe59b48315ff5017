/*
 * The guest catalog in one table: for every recipe, its build time from a
 * cold download cache (a scratch cache with nothing in it: every package
 * is downloaded, debootstrap runs, a foreign-architecture system runs its
 * second stage in a VM) and from a warm one (the user's cache: packages,
 * debootstrap tarballs and finished root disks are there, as when an
 * image is rebuilt after an agent or kernel change), the image's size on
 * disk, boot to a ready agent, and a revert to a snapshot.
 *
 * Builds go to a store of their own. Cold builds take many minutes
 * (debian-12-arm64 about an hour under TCG), so `make bench` leaves them
 * out: VMCI_BENCH_COLD=1 adds them.
 * VMCI_BENCH_IMAGES="a b" measures only those images.
 */
#include "bench/results.h"
#include "vmtest.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BOOT_RUNS   3
#define REVERT_RUNS 3

static char home[PATH_MAX];

/* Points $VMCI_HOME/cache at target (vmci_home() keeps its first answer: the link moves). */
static int use_cache(const char *target)
{
	char link[PATH_MAX + 8], tmp[PATH_MAX + 16];
	snprintf(link, sizeof(link), "%s/cache", home);
	snprintf(tmp, sizeof(tmp), "%s/cache.new", home);
	unlink(tmp);
	return symlink(target, tmp) || rename(tmp, link) ? -1 : 0;
}

/* Builds image into the scratch store; the time in ms, or a negative value. */
static double build(const char *image, struct img_boot *img)
{
	struct img_ensure_opts opts = {.setup = runner_image_setup};
	struct vmci_err err = {0};
	int64_t t0 = clock_ns();
	if (img_ensure_with(image, &opts, img, &err)) {
		printf("| %-28s | build: %s\n", image, err.msg);
		return -1;
	}
	return (double)(clock_ns() - t0) / 1e6;
}

/* Empties the scratch store of image, so that the next build makes it again. */
static void forget(const char *image)
{
	struct vmci_err err = {0};
	img_remove(image, NULL, &err);
	img_gc(NULL, NULL, &err);
}

static long long size_of(const char *image)
{
	struct img_info *rows = NULL;
	size_t n = 0;
	long long size = 0;
	struct vmci_err err = {0};
	if (img_list(&rows, &n, &err) == 0)
		for (size_t i = 0; i < n; i++)
			if (!strcmp(rows[i].name, image))
				size = rows[i].size;
	free(rows);
	return size;
}

static void boot_and_revert(const char *image)
{
	double boot_ms[BOOT_RUNS], revert_ms[REVERT_RUNS];
	struct vmci_err err = {0};
	struct runner_guest *g = NULL;
	for (int r = 0; r < BOOT_RUNS; r++) {
		if (g)
			runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
		int64_t t0 = clock_ns();
		if (runner_guest_boot(image, NULL, &g, &err)) {
			printf("| %-28s | boot: %s\n", image, err.msg);
			return;
		}
		boot_ms[r] = (double)(clock_ns() - t0) / 1e6;
	}
	bench_row("boot to ready agent", "runner_guest_boot (clone + QEMU + agent)", image,
		  BOOT_RUNS, stats_of(boot_ms, BOOT_RUNS), "ms");
	int rc = vm_snapshot_save(g->vm, "clean", &err);
	for (int r = 0; !rc && r < REVERT_RUNS; r++) {
		struct vm_exec_result res;
		const char *argv[] = {"sh", "-c", "echo dirty > /tmp/dirty", NULL};
		struct vm_exec_opts o = {.argv = argv, .stdin_fd = -1};
		rc = vm_exec(g->vm, &o, &res, &err);
		int64_t t0 = clock_ns();
		if (!rc)
			rc = vm_snapshot_load(g->vm, "clean", &err);
		revert_ms[r] = (double)(clock_ns() - t0) / 1e6;
	}
	if (rc)
		printf("| %-28s | revert: %s\n", image, err.msg);
	else
		bench_row("revert", "vm_snapshot_load clean (after a job)", image, REVERT_RUNS,
			  stats_of(revert_ms, REVERT_RUNS), "ms");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

int main(void)
{
	/* The user's download cache, found before VMCI_HOME points at the scratch store. */
	const char *h = getenv("VMCI_HOME"), *user = getenv("HOME");
	char warm[PATH_MAX], cold[PATH_MAX + 16];
	if (h && *h ? fs_path(warm, sizeof(warm), "%s/cache", h)
		    : fs_path(warm, sizeof(warm), "%s/.cache/vmci/cache", user ? user : "/root"))
		return 1;
	const char *tmp = getenv("TMPDIR");
	snprintf(home, sizeof(home), "%s/vmci-bench-guests-XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(home))
		return 1;
	snprintf(cold, sizeof(cold), "%s/cold-cache", home);
	const char *env_cold = getenv("VMCI_BENCH_COLD");
	bool do_cold = env_cold && !strcmp(env_cold, "1");
	if (mkdir(cold, 0755) || use_cache(warm))
		return 1;
	setenv("VMCI_HOME", home, 1);
	char **names = NULL;
	struct vmci_err err = {0};
	if (img_recipe_names(&names, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	char why[256];
	vm_accel_choose(VM_ACCEL_AUTO, VM_ARCH_X86_64, why, sizeof(why));
	printf("accelerator: %s\nstore: %s; warm cache: %s; cold builds: %s\n\n", why, home, warm,
	       do_cold ? "yes" : "no (VMCI_BENCH_COLD=1 adds them)");
	bench_header("guest catalog: build, size, boot, revert");
	const char *only = getenv("VMCI_BENCH_IMAGES");
	for (size_t i = 0; names[i]; i++) {
		struct img_boot img;
		double ms;
		if (only && *only && !word_listed(only, names[i]))
			continue;
		if (do_cold) {
			char dir[PATH_MAX + 64];
			snprintf(dir, sizeof(dir), "%s/%s", cold, names[i]);
			if (mkdir(dir, 0755) || use_cache(dir))
				return 1;
			ms = build(names[i], &img);
			if (ms >= 0)
				bench_row("build, cold cache", "img_ensure (nothing cached)",
					  names[i], 1, (struct stats){ms, ms, ms}, "ms");
			forget(names[i]);
			fs_rm_rf(dir, NULL);
			if (use_cache(warm))
				return 1;
		}
		ms = build(names[i], &img);
		if (ms < 0)
			continue;
		bench_row("build, warm cache", "img_ensure (packages, root disk cached)", names[i],
			  1, (struct stats){ms, ms, ms}, "ms");
		double mib = (double)size_of(names[i]) / (1 << 20);
		bench_row("image size on disk", "img_list", names[i], 1,
			  (struct stats){mib, mib, mib}, "MiB");
		boot_and_revert(names[i]);
	}
	img_names_free(names);
	fs_rm_rf(home, NULL);
	return 0;
}
