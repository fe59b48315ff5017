/*
 * `vmci run` end to end: the wall time and jobs per hour of a 40-job
 * matrix of trivial steps (busybox-x86_64), 2 VMs at once, with the warm
 * pool (VMs restored from the ready-state template in parallel and
 * reverted in the background between jobs) against the same jobs each
 * cold-booting a VM (--cold), and their ratio, in one run. Runs the vmci
 * binary beside this one ($VMCI_BIN overrides) in a scratch git
 * repository; a first warm run, not measured, makes the template.
 */
#include "stats.h"
#include "vmtest.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define IMAGE "busybox-x86_64"
#define JOBS  40
#define VMS   2
#define RUNS  1

static const char pipeline[] =
    "jobs:\n"
    "  trivial:\n"
    "    image: " IMAGE "\n"
    "    strategy:\n"
    "      matrix:\n"
    "        a: [\"1\", \"2\", \"3\", \"4\", \"5\"]\n"
    "        b: [\"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\", \"8\"]\n"
    "    steps:\n"
    "      - run: echo job ${{ matrix.a }}.${{ matrix.b }}\n";

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

int main(void)
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
	char dir[] = "/tmp/vmci-bench-run.XXXXXX";
	if (!mkdtemp(dir))
		die("mkdtemp", "failed");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/.vmci.yml", dir);
	if (fs_write_atomic(path, pipeline, strlen(pipeline), 0644, &err))
		die("pipeline", err.msg);
	char *git[] = {"git", "-C", dir, "init", "-q", NULL};
	if (run_command(git, NULL, &err))
		die("git init", err.msg);

	char title[96], inputs[64];
	snprintf(title, sizeof(title), "vmci run: %d trivial jobs of " IMAGE ", %d VMs at once",
		 JOBS, VMS);
	snprintf(inputs, sizeof(inputs), "%d-job matrix, -j %d", JOBS, VMS);
	run_once(vmci, dir, VMS, false); /* the template, made once: not measured */
	stats_print_header(title);
	struct stats by[2];
	for (int cold = 1; cold >= 0; cold--) {
		double ms[RUNS];
		for (int i = 0; i < RUNS; i++)
			ms[i] = run_once(vmci, dir, VMS, cold);
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "vmci run -j %d%s", VMS, cold ? " --cold" : "");
		by[cold] = stats_of(ms, RUNS);
		stats_print_row(cold ? "cold boot per job" : "warm pool", cmd, inputs, RUNS,
				by[cold], "ms");
	}
	for (int cold = 1; cold >= 0; cold--) {
		struct stats s = by[cold];
		struct stats jph = {JOBS * 3600e3 / s.max, JOBS * 3600e3 / s.median,
				    JOBS * 3600e3 / s.min};
		stats_print_row(cold ? "jobs per hour, cold" : "jobs per hour, warm", "", inputs,
				RUNS, jph, "jobs/h");
	}
	double r = by[1].median / by[0].median;
	stats_print_row("ratio cold / warm", "median wall time", inputs, 1, (struct stats){r, r, r},
			"x");
	fs_rm_rf(dir, NULL);
	return 0;
}
