/*
 * One VM: cold boot to a ready agent, the round trip of `true`, and put
 * throughput, each over several runs.
 */
#include "bench/results.h"
#include "vmtest.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMAGE "busybox-x86_64"

static void die(const char *what, const struct vmci_err *err)
{
	fprintf(stderr, "bench_vm: %s: %s\n", what, err->msg);
	exit(1);
}

static struct runner_guest *boot(void)
{
	struct runner_guest *g;
	struct vmci_err err = {0};
	if (runner_guest_boot(IMAGE, NULL, &g, &err))
		die("boot", &err);
	return g;
}

static void bench_boot(int runs)
{
	double ms[16];
	for (int i = 0; i < runs; i++) {
		int64_t t0 = clock_ns();
		struct runner_guest *g = boot();
		ms[i] = (double)(clock_ns() - t0) / 1e6;
		runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	}
	bench_row("cold boot to ready agent", "vm_start (QEMU + kernel + agent hello)",
		  IMAGE ", 256 MiB, 1 vCPU", (size_t)runs, stats_of(ms, (size_t)runs), "ms");
}

static void bench_exec(struct runner_guest *g, int runs)
{
	double *ms = calloc((size_t)runs, sizeof(double));
	const char *argv[] = {"true", NULL};
	for (int i = 0; i < runs; i++) {
		struct vm_exec_opts o = {.argv = argv, .stdin_fd = -1};
		struct vm_exec_result r;
		struct vmci_err err = {0};
		int64_t t0 = clock_ns();
		if (vm_exec(g->vm, &o, &r, &err))
			die("exec", &err);
		ms[i] = (double)(clock_ns() - t0) / 1e6;
	}
	bench_row("exec round trip", "vm_exec true", IMAGE, (size_t)runs,
		  stats_of(ms, (size_t)runs), "ms");
	free(ms);
}

static void bench_put(struct runner_guest *g, int runs, int mib)
{
	char dir[] = "/tmp/vmci-bench-put-XXXXXX";
	if (!mkdtemp(dir))
		exit(1);
	char path[sizeof(dir) + 16];
	snprintf(path, sizeof(path), "%s/blob", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char *chunk = malloc(1 << 20);
	for (int i = 0; i < (1 << 20); i++)
		chunk[i] = (char)(i * 2654435761u >> 24);
	for (int i = 0; i < mib; i++)
		if (write(fd, chunk, 1 << 20) != 1 << 20)
			exit(1);
	close(fd);
	free(chunk);
	double mbs[16];
	for (int i = 0; i < runs; i++) {
		struct vmci_err err = {0};
		int64_t t0 = clock_ns();
		if (vm_put_dir(g->vm, dir, "/tmp/put", &err))
			die("put", &err);
		mbs[i] = mib / ((double)(clock_ns() - t0) / 1e9);
		vmtest_sh(g->vm, "rm -rf /tmp/put", NULL);
	}
	char inputs[64];
	snprintf(inputs, sizeof(inputs), "one %d MiB file, tmpfs", mib);
	bench_row("put throughput", "vm_put_dir", inputs, (size_t)runs, stats_of(mbs, (size_t)runs),
		  "MB/s");
	fs_rm_rf(dir, NULL);
}

int main(void)
{
	/* Build the image first so that no run measures a build. */
	struct img_boot img;
	struct vmci_err err = {0};
	if (img_ensure(IMAGE, &img, NULL, NULL, &err))
		die("image", &err);
	char why[256];
	vm_accel_choose(VM_ACCEL_AUTO, VM_ARCH_X86_64, why, sizeof(why));
	printf("accelerator: %s\n\n", why);
	bench_header("vmcore: one VM");
	bench_boot(5);
	struct runner_guest *g = boot();
	bench_exec(g, 50);
	bench_put(g, 5, 64);
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	return 0;
}
