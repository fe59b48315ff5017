/*
 * From "a job wants a VM" to the first byte of its first command's output,
 * for each way vmci gets a clean VM:
 *
 *   (a) cold boot of a fresh clone (runner_guest_boot)
 *   (b) a fresh clone from the image's ready-state template, plain (the
 *       memory in the state stream), mapped (the memory in a file mapped
 *       privately) and snapshot (a copy of a disk holding the snapshot,
 *       loaded as QEMU starts: how the pools of vmci run and serve start
 *       their VMs) (runner_guest_restore)
 *   (c) a pool VM reverted to its clean snapshot: the job asks as soon as
 *       the previous one gave the VM back, so the revert is on its path
 *   (c') a pool VM already reverted in the background (a warm pool)
 *
 * for busybox-x86_64, and debian-12 when its image is in the store (or
 * for the images named as arguments). Row (r) is the revert alone, as the
 * pool timed it: snapshot-load, then the agent's reconnect and refresh
 * (clock, entropy) in one round trip, which is what tells the pool the VM
 * is healthy.
 */
#include "bench/results.h"
#include "vmtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MEMORY_MB 256
#define MAX_RUNS  64

static char templates[PATH_MAX];
static char state_dir[PATH_MAX];

static void die(const char *what, const struct vmci_err *err)
{
	fprintf(stderr, "bench_snapshot: %s: %s\n", what, err->msg);
	exit(1);
}

struct first_byte {
	int64_t at_ns;
};

static void on_output(void *ctx, int fd, const void *data, size_t len)
{
	struct first_byte *fb = ctx;
	if (!fb->at_ns)
		fb->at_ns = clock_ns();
}

/* Runs the job's first command; returns ms from t0 to its first byte of output. */
static double first_output_ms(struct vm *vm, int64_t t0)
{
	const char *argv[] = {"echo", "ready", NULL};
	struct first_byte fb = {0};
	struct vm_exec_opts o = {.argv = argv, .stdin_fd = -1, .on_output = on_output, .ctx = &fb};
	struct vm_exec_result r;
	struct vmci_err err = {0};
	if (vm_exec(vm, &o, &r, &err))
		die("exec", &err);
	if (!fb.at_ns)
		fprintf(stderr, "bench_snapshot: the command printed nothing\n"), exit(1);
	return (double)(fb.at_ns - t0) / 1e6;
}

static struct stats bench_boot(const char *image, int runs)
{
	double ms[MAX_RUNS];
	for (int i = 0; i < runs; i++) {
		struct runner_guest *g;
		struct vmci_err err = {0};
		int64_t t0 = clock_ns();
		if (runner_guest_boot(image, NULL, &g, &err))
			die("boot", &err);
		ms[i] = first_output_ms(g->vm, t0);
		runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	}
	return stats_of(ms, (size_t)runs);
}

static struct stats bench_template(const char *image, enum runner_template_kind kind, int runs)
{
	char dir[PATH_MAX];
	struct vmci_err err = {0};
	/* Made once, outside the measurement, as a template is in use. */
	if (runner_template_ensure(image, NULL, templates, kind, dir, sizeof(dir), &err))
		die("template", &err);
	double ms[MAX_RUNS];
	for (int i = 0; i < runs; i++) {
		struct runner_guest *g;
		int64_t t0 = clock_ns();
		if (runner_guest_restore(image, NULL, templates, kind, &g, &err))
			die("restore", &err);
		ms[i] = first_output_ms(g->vm, t0);
		runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	}
	return stats_of(ms, (size_t)runs);
}

/* Jobs back to back through a pool of size VMs, pausing idle_ms between jobs. */
static struct stats bench_pool(const char *image, int size, int idle_ms, int runs,
			       struct stats *revert)
{
	struct runner_pool *p;
	struct vmci_err err = {0};
	struct runner_pool_opts opts = {.image = image, .size = size};
	if (runner_pool_new(state_dir, &p, &err) || runner_pool_add(p, &opts, &err))
		die("pool", &err);
	double ms[MAX_RUNS], revert_ms[MAX_RUNS];
	/* The first job waits for the pool to boot its VMs: not measured. */
	for (int i = -size; i < runs; i++) {
		struct runner_guest *g;
		int64_t t0 = clock_ns();
		if (runner_pool_acquire(p, image, NULL, -1, &g, &err))
			die("acquire", &err);
		double t = first_output_ms(g->vm, t0);
		struct runner_pool_stats st;
		runner_pool_stats(p, image, &st);
		if (i >= 0) {
			ms[i] = t;
			revert_ms[i] = (double)st.last_revert_ms;
		}
		runner_pool_release(p, g, false);
		if (idle_ms)
			usleep((useconds_t)idle_ms * 1000);
	}
	*revert = stats_of(revert_ms, (size_t)runs);
	runner_pool_free(p);
	return stats_of(ms, (size_t)runs);
}

static void ratio_row(const char *name, struct stats a, struct stats b)
{
	double r = a.median / b.median;
	bench_row(name, "median (a) / median", "", 1, (struct stats){r, r, r}, "x");
}

static void bench_image(const char *image, int boot_runs)
{
	struct img_boot img;
	struct vmci_err err = {0};
	/* Build first so that no run measures a build. */
	if (img_ensure(image, &img, NULL, NULL, &err))
		die("image", &err);
	char inputs[64];
	snprintf(inputs, sizeof(inputs), "%s, %d MiB", image, MEMORY_MB);

	struct stats a = bench_boot(image, boot_runs);
	bench_row("(a) cold boot, fresh clone", "runner_guest_boot + echo", inputs,
		  (size_t)boot_runs, a, "ms");
	struct stats bp = bench_template(image, RUNNER_TEMPLATE_PLAIN, 10);
	bench_row("(b) template, plain", "runner_guest_restore + echo", inputs, 10, bp, "ms");
	struct stats bm = bench_template(image, RUNNER_TEMPLATE_MAPPED, 10);
	bench_row("(b) template, mapped private", "runner_guest_restore + echo", inputs, 10, bm,
		  "ms");
	struct stats bs = bench_template(image, RUNNER_TEMPLATE_SNAPSHOT, 10);
	bench_row("(b) template, snapshot", "runner_guest_restore + echo", inputs, 10, bs, "ms");
	struct stats r, rw;
	struct stats c = bench_pool(image, 1, 0, 20, &r);
	bench_row("(c) pool VM, revert on path", "acquire (revert) + echo", inputs, 20, c, "ms");
	bench_row("(r) the revert alone", "snapshot-load + reconnect", inputs, 20, r, "ms");
	struct stats cw = bench_pool(image, 2, 500, 10, &rw);
	bench_row("(c') pool VM, already clean", "acquire + echo", inputs, 10, cw, "ms");
	ratio_row("ratio a/b, plain", a, bp);
	ratio_row("ratio a/b, mapped private", a, bm);
	ratio_row("ratio a/b, snapshot", a, bs);
	ratio_row("ratio a/c", a, c);
	ratio_row("ratio a/r", a, r);
	ratio_row("ratio a/c'", a, cw);
}

int main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(templates, sizeof(templates), "%s/vmci-bench-templates-XXXXXX",
		 tmp ? tmp : "/tmp");
	snprintf(state_dir, sizeof(state_dir), "%s/vmci-bench-pool-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(templates) || !mkdtemp(state_dir)) {
		perror("bench_snapshot: mkdtemp");
		return 1;
	}
	char why[256];
	vm_accel_choose(VM_ACCEL_AUTO, VM_ARCH_X86_64, why, sizeof(why));
	printf("accelerator: %s\n", why);
	printf("guest: %d MiB of memory, 1 vCPU; times from asking for a VM to the first byte of "
	       "`echo ready`\n\n",
	       MEMORY_MB);
	bench_header("snapshots: a clean VM for a job");
	for (int i = 1; i < argc; i++)
		bench_image(argv[i], 3);
	if (argc > 1) {
		fs_rm_rf(templates, NULL);
		fs_rm_rf(state_dir, NULL);
		return 0;
	}
	bench_image("busybox-x86_64", 5);
	struct img_boot img;
	if (img_find("debian-12", &img, NULL) == 0)
		bench_image("debian-12", 3);
	else
		printf("\n(debian-12 is not in the image store: build it with `vmci image build "
		       "debian-12` to measure it too)\n");
	fs_rm_rf(templates, NULL);
	fs_rm_rf(state_dir, NULL);
	return 0;
}
