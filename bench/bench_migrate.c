/*
 * Live migration of a running guest between two QEMUs of this machine
 * (vm_migrate_listen, vm_migrate_to, vm_migrate_accept), for 256 MiB and
 * 1 GiB guests of busybox-x86_64, and of debian-12 when its image is in
 * the store:
 *
 *   total     from the start of vm_migrate_to to the guest running at the
 *             destination with its agent back, clock and entropy refreshed
 *   pause     from the guest's stop at the source to its resume at the
 *             destination, as QEMU stamped the two events: the downtime
 *   gap       the largest gap between two ticks of a loop in the guest
 *             that stamps the wall clock every 10 ms or so: the guest's clock
 *             stops while it is paused and is set to the host's after the
 *             move, so the gap holds the pause, and the first ticks at the
 *             destination, slow while TCG translates the guest's code
 *             afresh (the loop's own period is in the "tick period" row)
 *   QEMU's    QEMU's own count of the pause (query-migrate "downtime"; it
 *             ends when the source has sent all, before the destination runs)
 *
 * and checks that no tick was lost (the loop counts as well as stamps).
 */
#include "bench/results.h"
#include "vmtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUNS 3

static void die(const char *what, const struct vmci_err *err)
{
	fprintf(stderr, "bench_migrate: %s: %s\n", what, err->msg);
	exit(1);
}

/* Runs script in the guest and returns the first number it prints (the second in *second). */
static double sh_numbers(struct vm *vm, const char *script, double *second)
{
	struct capture c = {0};
	const char *argv[] = {"sh", "-c", script, NULL};
	struct vm_exec_opts o = {
	    .argv = argv, .stdin_fd = -1, .on_output = capture_output, .ctx = &c};
	struct vm_exec_result r;
	struct vmci_err err = {0};
	if (vm_exec(vm, &o, &r, &err))
		die(script, &err);
	if (r.kind != VM_EXITED || r.code)
		fprintf(stderr, "bench_migrate: '%s' failed: %s\n", script, buf_cstr(&c.err)),
		    exit(1);
	double v = 0, w = 0;
	sscanf(buf_cstr(&c.out), "%lf %lf", &v, &w);
	if (second)
		*second = w;
	capture_free(&c);
	return v;
}

static double sh_number(struct vm *vm, const char *script)
{
	return sh_numbers(vm, script, NULL);
}

/*
 * Count and wall clock every 10 ms, into /tmp/ticks. busybox's date has
 * whole seconds only; a file's mtime, set from the wall clock, has the
 * fraction ("HH:MM:SS.NNNNNNNNN" in stat's %y).
 */
static const char ticker[] =
    "setsid sh -c 'i=0; while :; do i=$((i+1)); touch /tmp/t;"
    " echo $i $(stat -c %y /tmp/t | cut -d\" \" -f2) >> /tmp/ticks;"
    " sleep 0.01; done' </dev/null >/dev/null 2>&1 & echo $! > /tmp/ticker.pid";

/* awk: the seconds of the day in field 2 ("HH:MM:SS.N"), as t. */
#define AWK_SECONDS "split($2, c, \":\"); t = c[1] * 3600 + c[2] * 60 + c[3];"

/*
 * The largest gap between ticks and the loop's mean period, in ms; "-1"
 * when a count is missing or repeated.
 */
static const char gaps[] =
    "kill $(cat /tmp/ticker.pid); sleep 0.1; awk '{ " AWK_SECONDS " } NR != $1 { bad = 1 }"
    " NR == 1 { t0 = t } NR > 1 { g = t - p; if (g > m) m = g } { p = t }"
    " END { if (bad) print -1; else print m * 1000, (p - t0) * 1000 / (NR - 1) }' /tmp/ticks";

struct sample {
	bool failed; /* the guest did not run on at the destination */
	double total_ms, pause_ms, guest_gap_ms, qemu_ms, period_ms;
};

static struct sample move_once(const char *image, int memory_mb)
{
	struct runner_guest_opts opts = {.memory_mb = memory_mb};
	struct runner_guest *src = NULL, *dst = NULL;
	struct vmci_err err = {0};
	if (runner_guest_boot(image, &opts, &src, &err))
		die("boot", &err);
	/* A clock set just before: what the move does to it is all the gap shows. */
	if (vm_refresh_guest(src->vm, &err))
		die("refresh", &err);
	sh_number(src->vm, ticker);
	usleep(1000 * 1000);

	opts.accel = vm_accel_used(src->vm);
	struct vm_migrate_addr addr;
	if (runner_guest_listen(image, &opts, &dst, &addr, &err))
		die("listen", &err);
	struct vm_migrate_stats st;
	int64_t t0 = clock_ns();
	if (vm_migrate_to(src->vm, &addr, NULL, &st, &err))
		die("migrate", &err);
	struct vm_agent_state as;
	vm_agent_state_get(src->vm, &as);
	if (vm_migrate_accept(dst->vm, &as, 0, &err)) {
		/* Counted, not fatal: the table says how often a move did not take. */
		fprintf(stderr, "bench_migrate: a move failed: %.300s\n", err.msg);
		runner_guest_destroy(dst, VMCI_STOP_TIMEOUT_MS);
		runner_guest_destroy(src, VMCI_STOP_TIMEOUT_MS);
		return (struct sample){.failed = true};
	}
	struct sample s = {.total_ms = (double)(clock_ns() - t0) / 1e6,
			   .pause_ms =
			       (double)(vm_migrate_resumed_at_ms(dst->vm) - st.stopped_at_ms),
			   .qemu_ms = (double)st.downtime_ms};
	runner_guest_destroy(src, VMCI_STOP_TIMEOUT_MS);
	usleep(1000 * 1000);
	s.guest_gap_ms = sh_numbers(dst->vm, gaps, &s.period_ms);
	if (s.guest_gap_ms < 0)
		fprintf(stderr, "bench_migrate: the guest lost or repeated a tick\n"), exit(1);
	runner_guest_destroy(dst, VMCI_STOP_TIMEOUT_MS);
	return s;
}

static void bench(const char *image, int memory_mb)
{
	double total[RUNS], pause[RUNS], gap[RUNS], qemu[RUNS], tick[RUNS];
	size_t n = 0;
	int failed = 0;
	for (int i = 0; i < RUNS; i++) {
		struct sample s = move_once(image, memory_mb);
		if (s.failed) {
			failed++;
			continue;
		}
		total[n] = s.total_ms;
		pause[n] = s.pause_ms;
		gap[n] = s.guest_gap_ms;
		qemu[n] = s.qemu_ms;
		tick[n++] = s.period_ms;
	}
	char inputs[64];
	snprintf(inputs, sizeof(inputs), "%s, %d MiB", image, memory_mb);
	bench_row("moves that did not take", "guest not running at the destination", inputs, RUNS,
		  (struct stats){failed, failed, failed}, "moves");
	if (!n)
		return;
	bench_row("total migration", "vm_migrate_to + vm_migrate_accept", inputs, n,
		  stats_of(total, n), "ms");
	bench_row("downtime: the guest's pause", "source STOP to destination RESUME", inputs, n,
		  stats_of(pause, n), "ms");
	bench_row("gap in the guest's ticks", "pause + first ticks, code retranslated", inputs, n,
		  stats_of(gap, n), "ms");
	bench_row("downtime, QEMU's count", "query-migrate downtime", inputs, n, stats_of(qemu, n),
		  "ms");
	bench_row("tick period", "mean gap between guest ticks", inputs, n, stats_of(tick, n),
		  "ms");
}

int main(void)
{
	char why[256];
	vm_accel_choose(VM_ACCEL_AUTO, VM_ARCH_X86_64, why, sizeof(why));
	printf("accelerator: %s\n", why);
	printf("guest: 1 vCPU, a loop stamping the wall clock every 10 ms; downtime limit 50 ms, "
	       "bandwidth unlimited, unix sockets\n\n");
	bench_header("live migration of a running guest");
	bench("busybox-x86_64", 256);
	bench("busybox-x86_64", 1024);
	struct img_boot img;
	if (img_find("debian-12", &img, NULL) == 0) {
		bench("debian-12", 256);
		bench("debian-12", 1024);
	} else {
		printf("\n(debian-12 is not in the image store: build it with `vmci image build "
		       "debian-12` to measure it too)\n");
	}
	return 0;
}
