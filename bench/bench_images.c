/*
 * Golden images: the time to clone an image (a registered qcow2 overlay,
 * what every VM gets) against a full copy of the same image, at 64 MiB,
 * 1 GiB and 8 GiB; and the overlay alone, written in-process (what
 * img_clone does) against a `qemu-img create` process. Each golden disk holds real data in one
 * eighth of its size, spread over the disk (a sparse raw file converted to qcow2), and is published
 * in a temporary store.
 */
#include "bench/results.h"

#include "images/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLONE_RUNS 9
#define COPY_RUNS  3

static void die(const char *what, const struct vmci_err *err)
{
	fprintf(stderr, "bench_images: %s: %s\n", what, err->msg);
	exit(1);
}

static void run(char *const argv[])
{
	struct vmci_err err = {0};
	if (run_command(argv, NULL, &err))
		die(argv[0], &err);
}

/* A qcow2 golden disk of mib MiB with 1 MiB of data in every 8 MiB. */
static void make_golden(const char *dir, int mib, char *out, size_t size)
{
	char raw[PATH_MAX];
	fs_path(raw, sizeof(raw), "%s/golden-%d.raw", dir, mib);
	fs_path(out, size, "%s/golden-%d.qcow2", dir, mib);
	int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)mib << 20) != 0)
		exit(1);
	static uint8_t chunk[1 << 20];
	for (int m = 0; m < mib; m += 8) {
		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = (uint8_t)((i + (size_t)m) * 2654435761u >> 17);
		if (pwrite(fd, chunk, sizeof(chunk), (off_t)m << 20) != (ssize_t)sizeof(chunk))
			exit(1);
	}
	close(fd);
	char *convert[] = {"qemu-img", "convert", "-q", "-O", "qcow2", raw, out, NULL};
	run(convert);
	unlink(raw);
}

/* The fake recipe publishing the golden disk (a hard link: no copy in the setup). */
static const char *golden_path;

static int golden_prepare(struct img_build *b, struct vmci_err *err)
{
	struct sha256_ctx *h = sha256_new();
	sha256_update(h, golden_path, strlen(golden_path));
	sha256_finish(h, b->digest);
	return 0;
}

static int golden_build(struct img_build *b, struct vmci_err *err)
{
	char path[PATH_MAX];
	fs_path(path, sizeof(path), "%s/%s", b->dir, IMG_KERNEL_FILE);
	int rc = fs_write_atomic(path, "k", 1, 0644, err);
	fs_path(path, sizeof(path), "%s/%s", b->dir, IMG_INITRD_FILE);
	if (!rc)
		rc = fs_write_atomic(path, "i", 1, 0644, err);
	fs_path(path, sizeof(path), "%s/%s", b->dir, IMG_DISK_FILE);
	if (!rc && link(golden_path, path) != 0)
		rc = vmci_err_errno(err, errno, "cannot link %s", golden_path);
	json_object_set_new(b->manifest, "disk_file", json_string(IMG_DISK_FILE));
	return rc;
}

static void golden_finish(struct img_build *b)
{
}

static void bench_size(const char *dir, int mib)
{
	char golden[PATH_MAX], name[64], inputs[64], overlay[PATH_MAX], copy[PATH_MAX];
	make_golden(dir, mib, golden, sizeof(golden));
	snprintf(name, sizeof(name), "golden-%d", mib);
	golden_path = golden;
	struct img_recipe r = {.name = name,
			       .arch = "x86_64",
			       .prepare = golden_prepare,
			       .build = golden_build,
			       .finish = golden_finish};
	struct img_boot img;
	struct vmci_err err = {0};
	if (img_ensure_recipe(&r, &img, NULL, NULL, &err))
		die("publish", &err);
	struct stat st;
	stat(img.disk, &st);
	if (mib >= 1024)
		snprintf(inputs, sizeof(inputs), "%d GiB disk, %lld MiB data", mib / 1024,
			 (long long)st.st_blocks * 512 >> 20);
	else
		snprintf(inputs, sizeof(inputs), "%d MiB disk, %lld MiB data", mib,
			 (long long)st.st_blocks * 512 >> 20);
	fs_path(overlay, sizeof(overlay), "%s/clone.qcow2", dir);
	fs_path(copy, sizeof(copy), "%s/copy.qcow2", dir);

	double ms[CLONE_RUNS];
	for (int i = 0; i < CLONE_RUNS; i++) {
		int64_t t0 = clock_ns();
		if (img_clone(&img, overlay, &err))
			die("clone", &err);
		ms[i] = (double)(clock_ns() - t0) / 1e6;
		img_clone_release(overlay, NULL);
	}
	bench_row("clone (qcow2 overlay)", "img_clone (overlay + registration)", inputs, CLONE_RUNS,
		  stats_of(ms, CLONE_RUNS), "ms");
	for (int i = 0; i < CLONE_RUNS; i++) {
		int64_t t0 = clock_ns();
		if (img_clone_file(img.disk, overlay, 0, &err))
			die("overlay", &err);
		ms[i] = (double)(clock_ns() - t0) / 1e6;
		unlink(overlay);
	}
	struct stats in_process = stats_of(ms, CLONE_RUNS);
	bench_row("overlay alone, in-process", "img_clone_file", inputs, CLONE_RUNS, in_process,
		  "ms");
	char *create[] = {"qemu-img", "create", "-q",	  "-f",	   "qcow2", "-F",
			  "qcow2",    "-b",	img.disk, overlay, NULL};
	for (int i = 0; i < CLONE_RUNS; i++) {
		int64_t t0 = clock_ns();
		run(create);
		ms[i] = (double)(clock_ns() - t0) / 1e6;
		unlink(overlay);
	}
	struct stats process = stats_of(ms, CLONE_RUNS);
	bench_row("overlay alone, qemu-img", "qemu-img create -f qcow2 -F qcow2 -b", inputs,
		  CLONE_RUNS, process, "ms");
	double ratio = process.median / in_process.median;
	bench_row("ratio qemu-img / in-process", "median / median", inputs, 1,
		  (struct stats){ratio, ratio, ratio}, "x");

	/* Copies are synced: otherwise the page cache hides most of what they cost. */
	char *cp[] = {"cp", img.disk, copy, NULL};
	char *sync_copy[] = {"sync", copy, NULL};
	for (int i = 0; i < COPY_RUNS; i++) {
		int64_t t0 = clock_ns();
		run(cp);
		run(sync_copy);
		ms[i] = (double)(clock_ns() - t0) / 1e6;
		unlink(copy);
	}
	bench_row("full copy (cp + sync)", "cp golden.qcow2 copy.qcow2; sync", inputs, COPY_RUNS,
		  stats_of(ms, COPY_RUNS), "ms");
	char *convert[] = {"qemu-img", "convert", "-q", "-O", "qcow2", img.disk, copy, NULL};
	for (int i = 0; i < COPY_RUNS; i++) {
		int64_t t0 = clock_ns();
		run(convert);
		run(sync_copy);
		ms[i] = (double)(clock_ns() - t0) / 1e6;
		unlink(copy);
	}
	bench_row("full copy (qemu-img convert)", "qemu-img convert -O qcow2; sync", inputs,
		  COPY_RUNS, stats_of(ms, COPY_RUNS), "ms");
	unlink(golden);
}

int main(void)
{
	/* A store of its own: before anything reads vmci_home(). */
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/vmci-bench-images-XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(dir))
		return 1;
	setenv("VMCI_HOME", dir, 1);
	bench_header("images: clone against full copy");
	static const int sizes[] = {64, 1024, 8192};
	for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
		bench_size(dir, sizes[i]);
	fs_rm_rf(dir, NULL);
	return 0;
}
