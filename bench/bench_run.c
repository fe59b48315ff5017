/*
 * `vmci run` end to end: the wall time and jobs per hour of matrices of
 * trivial steps (busybox-x86_64), 2 VMs at once, with the warm pool (VMs
 * restored from the ready-state template in parallel and reverted in the
 * background between jobs) against the same jobs each cold-booting a VM
 * (--cold), and their ratio, in one run. Runs the vmci binary beside this
 * one ($VMCI_BIN overrides) in a scratch git repository; a first warm
 * run, not measured, makes the template.
 *
 *   bench_run [JOBS...]    job counts, multiples of 5 (default: 40;
 *                          `bench_run 40 200` adds the 200-job case,
 *                          about ten minutes under TCG)
 */
#include "bench/results.h"
#include "vmtest.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define IMAGE	     "busybox-x86_64"
#define DEFAULT_JOBS 40
#define VMS	     2
#define RUNS	     1

/* A matrix of jobs trivial jobs: 5 values of a times jobs / 5 of b. */
static void pipeline(int jobs, struct buf *out)
{
	buf_appendf(out, "jobs:\n"
			 "  trivial:\n"
			 "    image: " IMAGE "\n"
			 "    strategy:\n"
			 "      matrix:\n"
			 "        a: [\"1\", \"2\", \"3\", \"4\", \"5\"]\n"
			 "        b: [");
	for (int b = 1; b <= jobs / 5; b++)
		buf_appendf(out, "%s\"%d\"", b > 1 ? ", " : "", b);
	buf_appendf(out, "]\n"
			 "    steps:\n"
			 "      - run: echo job ${{ matrix.a }}.${{ matrix.b }}\n");
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench_run: %s: %s\n", what, why);
	exit(1);
}

/* Runs `vmci run --logs -j J [--cold]` in dir, output discarded; returns its wall time in ms. */
static double run_once(const char *vmci, const char *dir, int jobs, bool cold)
{
	char j[16];
	snprintf(j, sizeof(j), "%d", jobs);
	fflush(stdout); /* the child must not print what is buffered here */
	int64_t t0 = clock_ns();
	pid_t pid = fork();
	if (pid < 0)
		die("fork", "failed");
	if (pid == 0) {
		if (chdir(dir))
			_exit(126);
		int null = open("/dev/null", O_WRONLY);
		if (null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
			_exit(126);
		execl(vmci, vmci, "run", "--logs", "-j", j, cold ? "--cold" : NULL, (char *)NULL);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char why[64];
		snprintf(why, sizeof(why), "vmci run exited %d",
			 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		die(dir, why);
	}
	return (double)(clock_ns() - t0) / 1e6;
}

/* Measures jobs trivial jobs warm and cold in a scratch repository; prints their rows. */
static void bench_jobs(const char *vmci, int jobs)
{
	struct vmci_err err = {0};
	char dir[] = "/tmp/vmci-bench-run.XXXXXX";
	if (!mkdtemp(dir))
		die("mkdtemp", "failed");
	char path[PATH_MAX];
	struct buf text = {0};
	pipeline(jobs, &text);
	snprintf(path, sizeof(path), "%s/.vmci.yml", dir);
	if (fs_write_atomic(path, text.data, text.len, 0644, &err))
		die("pipeline", err.msg);
	buf_free(&text);
	char *git[] = {"git", "-C", dir, "init", "-q", NULL};
	if (run_command(git, NULL, &err))
		die("git init", err.msg);

	char title[96], inputs[64];
	snprintf(title, sizeof(title), "vmci run: %d trivial jobs of " IMAGE ", %d VMs at once",
		 jobs, VMS);
	snprintf(inputs, sizeof(inputs), "%d-job matrix, -j %d", jobs, VMS);
	run_once(vmci, dir, VMS, false); /* the template, made once: not measured */
	bench_header(title);
	struct stats by[2];
	for (int cold = 1; cold >= 0; cold--) {
		double ms[RUNS];
		for (int i = 0; i < RUNS; i++)
			ms[i] = run_once(vmci, dir, VMS, cold);
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "vmci run -j %d%s", VMS, cold ? " --cold" : "");
		by[cold] = stats_of(ms, RUNS);
		bench_row(cold ? "cold boot per job" : "warm pool", cmd, inputs, RUNS, by[cold],
			  "ms");
	}
	for (int cold = 1; cold >= 0; cold--) {
		struct stats s = by[cold];
		struct stats jph = {jobs * 3600e3 / s.max, jobs * 3600e3 / s.median,
				    jobs * 3600e3 / s.min};
		bench_row(cold ? "jobs per hour, cold" : "jobs per hour, warm", "", inputs, RUNS,
			  jph, "jobs/h");
	}
	double r = by[1].median / by[0].median;
	bench_row("ratio cold / warm", "median wall time", inputs, 1, (struct stats){r, r, r}, "x");
	fs_rm_rf(dir, NULL);
}

int main(int argc, char **argv)
{
	struct img_boot img;
	struct vmci_err err = {0};
	if (img_ensure(IMAGE, &img, NULL, NULL, &err))
		die("image", err.msg);
	char vmci[PATH_MAX], self[PATH_MAX];
	const char *env = getenv("VMCI_BIN");
	if (env && *env)
		snprintf(vmci, sizeof(vmci), "%s", env);
	else if (fs_self_dir(self, sizeof(self)) || fs_path(vmci, sizeof(vmci), "%s/../vmci", self))
		die("vmci", "cannot find the vmci binary (set VMCI_BIN)");
	for (int i = 1; i < argc; i++) {
		int jobs = atoi(argv[i]);
		if (jobs < 5 || jobs % 5)
			die(argv[i], "a job count is a multiple of 5 (usage: bench_run [JOBS...])");
	}
	if (argc < 2)
		bench_jobs(vmci, DEFAULT_JOBS);
	for (int i = 1; i < argc; i++) {
		if (i > 1)
			printf("\n");
		bench_jobs(vmci, atoi(argv[i]));
	}
	return 0;
}
