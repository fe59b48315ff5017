/*
 * Time to /work/src ready, by the tar stream through the agent and by the
 * workspace disk (runner/workspace_disk.c), for trees of 1 MB, 10 MB,
 * 200 MB and 1 GB (files of 1 MiB, random bytes) in one busybox-x86_64
 * VM with room for 1 GB in its RAM, and the MB/s each reaches. The disk
 * path is measured for a run's first job (which makes the ext4 image)
 * and for each further job (an overlay, the hot-plug and the guest's
 * mount), and its removal at a job's end. These figures place
 * RUNNER_WS_DISK_MIN_BYTES.
 */
#include "bench/results.h"
#include "vmtest.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMAGE	   "busybox-x86_64"
#define MEMORY_MB  3072 /* a guest tmpfs holds half of it: the 1 GB tree by tar */
#define SMALL_RUNS 3

static const int sizes_mb[] = {1, 10, 200, 1024};

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench_workspace: %s: %s\n", what, why);
	exit(1);
}

/* dir/fNNNN, mb files of 1 MiB of random bytes (each its own). */
static void make_tree(const char *dir, int mb)
{
	static char block[1 << 20];
	int rnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (rnd < 0 || read(rnd, block, sizeof(block)) != (ssize_t)sizeof(block))
		die("/dev/urandom", "cannot read");
	close(rnd);
	struct vmci_err err = {0};
	if (fs_mkdir_p(dir, 0755, &err))
		die(dir, err.msg);
	for (int i = 0; i < mb; i++) {
		char path[PATH_MAX];
		if (fs_path(path, sizeof(path), "%s/f%04d", dir, i))
			die(dir, "path too long");
		memcpy(block, &i, sizeof(i)); /* no two files alike */
		if (fs_write_atomic(path, block, sizeof(block), 0644, &err))
			die(path, err.msg);
	}
}

static double since_ms(int64_t t0)
{
	return (double)(clock_ns() - t0) / 1e6;
}

static void row_with_rate(const char *name, const char *cmd, const char *inputs, int mb, double *ms,
			  size_t runs)
{
	struct stats s = stats_of(ms, runs);
	bench_row(name, cmd, inputs, runs, s, "ms");
	char rate[96];
	snprintf(rate, sizeof(rate), "%s, MB/s", name);
	bench_row(rate, "", inputs, runs,
		  (struct stats){mb * 1000.0 / s.max, mb * 1000.0 / s.median, mb * 1000.0 / s.min},
		  "MB/s");
}

static void bench_size(struct runner_guest *g, const char *scratch, int mb)
{
	struct vm *vm = g->vm;
	struct vmci_err err = {0};
	char tree[PATH_MAX], inputs[64];
	if (fs_path(tree, sizeof(tree), "%s/tree-%d", scratch, mb))
		die(scratch, "path too long");
	snprintf(inputs, sizeof(inputs), "%d MB in %d files", mb, mb);
	make_tree(tree, mb);
	struct runner_workspace *ws;
	if (runner_workspace_open(tree, &ws, &err))
		die(tree, err.msg);
	size_t runs = mb <= 10 ? SMALL_RUNS : 1;
	double tar_ms[SMALL_RUNS], first_ms[SMALL_RUNS], next_ms[SMALL_RUNS], gone_ms[SMALL_RUNS];

	for (size_t r = 0; r < runs; r++) {
		bool host_side;
		int64_t t0 = clock_ns();
		if (runner_workspace_upload(ws, vm, RUNNER_GUEST_WORKSPACE, &host_side, &err))
			die("tar upload", err.msg);
		tar_ms[r] = since_ms(t0);
		struct vm_exec_result res = vmtest_sh(vm, "rm -rf " RUNNER_GUEST_WORKSPACE, NULL);
		if (res.kind != VM_EXITED || res.code)
			die("rm", "cannot empty the guest's workspace");
	}
	row_with_rate("tar stream", "runner_workspace_upload", inputs, mb, tar_ms, runs);

	for (size_t r = 0; r < runs; r++) {
		/* The first job of a run makes the image: a fresh workspace each time. */
		struct runner_workspace *fresh;
		if (runner_workspace_open(tree, &fresh, &err))
			die(tree, err.msg);
		struct runner_ws_mount m;
		int64_t t0 = clock_ns();
		if (runner_workspace_mount(fresh, vm, g->run_dir, RUNNER_GUEST_WORKSPACE, &m, &err))
			die("disk, first job", err.msg);
		first_ms[r] = since_ms(t0);
		if (runner_workspace_unmount(vm, &m, &err))
			die("unmount", err.msg);
		runner_workspace_free(fresh);
	}
	row_with_rate("disk, first job (makes image)", "runner_workspace_mount", inputs, mb,
		      first_ms, runs);

	char image[PATH_MAX];
	if (runner_workspace_disk_image(ws, image, sizeof(image), &err))
		die("image", err.msg);
	for (size_t r = 0; r < runs; r++) {
		struct runner_ws_mount m;
		int64_t t0 = clock_ns();
		if (runner_workspace_mount(ws, vm, g->run_dir, RUNNER_GUEST_WORKSPACE, &m, &err))
			die("disk, next job", err.msg);
		next_ms[r] = since_ms(t0);
		t0 = clock_ns();
		if (runner_workspace_unmount(vm, &m, &err))
			die("unmount", err.msg);
		gone_ms[r] = since_ms(t0);
	}
	row_with_rate("disk, each further job", "runner_workspace_mount", inputs, mb, next_ms,
		      runs);
	bench_row("disk, removal at job end", "runner_workspace_unmount", inputs, runs,
		  stats_of(gone_ms, runs), "ms");
	runner_workspace_free(ws);
	fs_rm_rf(tree, NULL);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	char scratch[PATH_MAX];
	snprintf(scratch, sizeof(scratch), "%s/vmci-bench-ws.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(scratch))
		die("mkdtemp", "failed");
	struct runner_guest_opts opts = {.memory_mb = MEMORY_MB};
	struct runner_guest *g;
	struct vmci_err err = {0};
	if (runner_guest_boot(IMAGE, &opts, &g, &err))
		die(IMAGE, err.msg);
	bench_header("workspace: time to " RUNNER_GUEST_WORKSPACE " ready, tar stream vs disk "
		     "(" IMAGE ", 3 GiB)");
	for (size_t i = 0; i < ARRAY_LEN(sizes_mb); i++)
		bench_size(g, scratch, sizes_mb[i]);
	runner_guest_destroy(g, 5000);
	fs_rm_rf(scratch, NULL);
	return 0;
}
