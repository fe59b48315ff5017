/*
 * Job start with `packages:` of five Debian packages on debian-12: the
 * first start (the derived image is built: apt-get in a VM with network,
 * then published), later starts (the derived image is found), and a job
 * on the base image, side by side. A start is what a job waits for before
 * its first step: its image found or built, and a NAT VM booted on a clone
 * of it. The derived image of these five packages belongs to this
 * benchmark: it removes it first, so that the first start builds it.
 */
#include "bench/results.h"

#include "images/images.h"
#include "runner/build.h"
#include "runner/guest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE	      "debian-12"
#define LATER	      3
#define PACKAGES_TEXT "bc ed m4 patch rsync"

static const char *const packages[] = {"bc", "ed", "m4", "patch", "rsync"};

static void die(const char *what, const struct vmci_err *err)
{
	fprintf(stderr, "bench_packages: %s: %s\n", what, err->msg);
	exit(1);
}

/* One job start: the image (derived when with_packages), then a NAT VM ready for commands. */
static double start_ms(bool with_packages, char *image_out, size_t size)
{
	struct vmci_err err = {0};
	struct img_boot img;
	int64_t t0 = clock_ms();
	struct img_ensure_opts build = {.setup = runner_image_setup};
	int rc = with_packages
		     ? img_ensure_packages(BASE, packages, ARRAY_LEN(packages), &build, &img, &err)
		     : runner_image_ensure(BASE, NULL, NULL, &img, &err);
	if (rc)
		die("image", &err);
	struct runner_guest_opts opts = {.network = VM_NET_NAT, .memory_mb = 1024};
	struct runner_guest *g = NULL;
	if (runner_guest_boot(img.name, &opts, &g, &err))
		die("boot", &err);
	double ms = (double)(clock_ms() - t0);
	if (image_out)
		snprintf(image_out, size, "%s", img.name);
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	return ms;
}

int main(void)
{
	struct vmci_err err = {0};
	struct img_boot base;
	if (runner_image_ensure(BASE, NULL, NULL, &base, &err))
		die("base image", &err);
	char name[64];
	if (img_packages_name(BASE, packages, ARRAY_LEN(packages), name, sizeof(name), &err))
		die("name", &err);
	/* Ours alone: drop it, name and files, so that the first start builds it. */
	struct img_details *d = NULL;
	if (img_inspect(name, &d, NULL) == 0) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", d->dir);
		img_details_free(d);
		if (img_remove(name, NULL, NULL) == 0)
			fs_rm_rf(dir, NULL);
	}

	char why[256];
	vm_accel_choose(VM_ACCEL_AUTO, VM_ARCH_X86_64, why, sizeof(why));
	printf("accelerator: %s\n\n", why);
	bench_header("job start with packages: (" PACKAGES_TEXT ") on " BASE);
	double first = start_ms(true, NULL, 0);
	double later[LATER], plain[LATER];
	for (int i = 0; i < LATER; i++)
		later[i] = start_ms(true, NULL, 0);
	for (int i = 0; i < LATER; i++)
		plain[i] = start_ms(false, NULL, 0);
	struct stats sf = stats_of(&first, 1), sl = stats_of(later, LATER),
		     sp = stats_of(plain, LATER);
	bench_row("first start (builds the image)", "img_ensure_packages + boot", "5 packages", 1,
		  sf, "ms");
	bench_row("later starts (image reused)", "img_ensure_packages + boot", "5 packages", LATER,
		  sl, "ms");
	bench_row("start on the base image", "runner_image_ensure + boot", "no packages", LATER, sp,
		  "ms");
	printf("\nfirst / later: %.1fx; later / base: %.2fx (medians)\n", sf.median / sl.median,
	       sl.median / sp.median);
	return 0;
}
