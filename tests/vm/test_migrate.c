/*
 * Live migration between two VMs of this process (busybox-x86_64): a
 * running guest moves with its memory, processes and disk; its clock and
 * randomness are fresh after the move; a destination that dies mid-move
 * leaves the source running and says why; a guest busy writing memory
 * survives moves in a row with nothing it wrote lost; a disk added at
 * run time moves with what the guest wrote to it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#define IMAGE "busybox-x86_64"

/*
 * A guest loop: every 50 ms it writes its count to the disk (8 digits at
 * byte 8 of /dev/vda, synced) and then appends it to /tmp/ticks.
 */
static const char ticker[] =
    "setsid sh -c 'i=0; while :; do i=$((i+1));"
    " printf %08d $i | dd of=/dev/vda bs=8 seek=1 conv=notrunc,fsync 2>/dev/null;"
    " echo $i >> /tmp/ticks; sleep 0.05; done' </dev/null >/dev/null 2>&1 &\n"
    "echo $! > /tmp/ticker.pid\n";

static long long sh_number(struct vm *vm, const char *script)
{
	struct capture c = {0};
	struct vm_exec_result r = vmtest_sh(vm, script, &c);
	if (r.kind != VM_EXITED || r.code != 0)
		fail_msg("'%s' failed: %s%s", script, buf_cstr(&c.out), buf_cstr(&c.err));
	long long v = atoll(buf_cstr(&c.out));
	capture_free(&c);
	return v;
}

static long long ticks(struct vm *vm)
{
	return sh_number(vm, "cat /tmp/ticks 2>/dev/null | tail -n 1");
}

/* Waits until the guest's ticker passed n. */
static void wait_ticks_past(struct vm *vm, long long n)
{
	for (int i = 0; i < 100 && ticks(vm) <= n; i++)
		usleep(100 * 1000);
	assert_true(ticks(vm) > n);
}

static struct runner_guest *listen_for(struct runner_guest *src, struct vm_migrate_addr *addr)
{
	struct runner_guest_opts opts = {.accel = vm_accel_used(src->vm)};
	struct runner_guest *dst = NULL;
	struct vmci_err err = {0};
	if (runner_guest_listen(IMAGE, &opts, &dst, addr, &err))
		fail_msg("%s", err.msg);
	return dst;
}

/* Moves src into a new destination and returns it, src paused (not stopped). */
static struct runner_guest *move(struct runner_guest *src, const struct vm_migrate_opts *opts)
{
	struct vm_migrate_addr addr;
	struct runner_guest *dst = listen_for(src, &addr);
	struct vmci_err err = {0};
	struct vm_migrate_stats st;
	if (vm_migrate_to(src->vm, &addr, opts, &st, &err))
		fail_msg("%s", err.msg);
	struct vm_agent_state as;
	vm_agent_state_get(src->vm, &as);
	if (vm_migrate_accept(dst->vm, &as, 0, &err))
		fail_msg("%s", err.msg);
	print_message("moved in %lld ms (disk in sync after %lld ms, downtime %lld ms, %llu RAM "
		      "bytes)\n",
		      (long long)st.total_ms, (long long)st.mirror_ms, (long long)st.downtime_ms,
		      (unsigned long long)st.ram_bytes);
	return dst;
}

static void test_a_running_guest_moves_with_its_files_processes_and_disk(void **state)
{
	struct runner_guest *src = vmtest_boot(IMAGE);
	assert_int_equal(vmtest_sh(src->vm, "echo before-the-move > /root/note", NULL).code, 0);
	assert_int_equal(vmtest_sh(src->vm, ticker, NULL).code, 0);
	wait_ticks_past(src->vm, 5);
	long long pid = sh_number(src->vm, "cat /tmp/ticker.pid");

	struct runner_guest *dst = move(src, NULL);
	pid_t src_pid = vm_pid(src->vm);
	runner_guest_destroy(src, VMCI_STOP_TIMEOUT_MS);
	assert_int_not_equal(kill(src_pid, 0), 0); /* the source's QEMU is gone */

	struct capture c = {0};
	vmtest_sh(dst->vm, "cat /root/note", &c);
	assert_string_equal(buf_cstr(&c.out), "before-the-move\n");
	capture_free(&c);
	/* The same process goes on counting. */
	char alive[64];
	snprintf(alive, sizeof(alive), "kill -0 %lld && echo 1", pid);
	assert_int_equal(sh_number(dst->vm, alive), 1);
	long long n = ticks(dst->vm);
	wait_ticks_past(dst->vm, n + 3);

	/* Stopped between two ticks, the disk holds the last count, or the one after. */
	assert_int_equal(vmtest_sh(dst->vm, "kill $(cat /tmp/ticker.pid); sleep 0.2", NULL).code,
			 0);
	long long last = ticks(dst->vm);
	long long disk = sh_number(dst->vm, "dd if=/dev/vda bs=8 skip=1 count=1 2>/dev/null; echo");
	assert_true(disk == last || disk == last + 1);
	/* Every count is there once, in order: the guest never stepped back. */
	assert_int_equal(sh_number(dst->vm, "awk 'NR != $1 { bad++ } END { print bad + 0 }' "
					    "/tmp/ticks"),
			 0);
	runner_guest_destroy(dst, VMCI_STOP_TIMEOUT_MS);
}

static void test_a_moved_guest_has_the_hosts_clock_and_fresh_randomness(void **state)
{
	struct runner_guest *src = vmtest_boot(IMAGE);
	/* A clock years off: the move must not carry it over. */
	assert_int_equal(vmtest_sh(src->vm, "date -s '2001-01-01 00:00:00' >/dev/null", NULL).code,
			 0);
	struct runner_guest *dst = move(src, NULL);
	/* Give the source back its guest too: two copies of one state now run. */
	struct vmci_err err = {0};
	if (vm_migrate_abort(src->vm, &err))
		fail_msg("%s", err.msg);

	long long guest_now = sh_number(dst->vm, "date +%s");
	assert_true(llabs(guest_now - (long long)time(NULL)) <= 2);
	const char *random = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'";
	struct capture a = {0}, b = {0};
	vmtest_sh(dst->vm, random, &a);
	vmtest_sh(src->vm, random, &b);
	assert_int_equal(strlen(buf_cstr(&a.out)), 32);
	assert_string_not_equal(buf_cstr(&a.out), buf_cstr(&b.out));
	capture_free(&a);
	capture_free(&b);
	runner_guest_destroy(dst, VMCI_STOP_TIMEOUT_MS);
	runner_guest_destroy(src, VMCI_STOP_TIMEOUT_MS);
}

struct killer {
	pid_t pid;
	int after_ms;
};

static void *kill_later(void *arg)
{
	struct killer *k = arg;
	usleep((useconds_t)k->after_ms * 1000);
	kill(k->pid, SIGKILL);
	return NULL;
}

static void test_a_destination_killed_mid_move_leaves_the_source_running(void **state)
{
	struct runner_guest *src = vmtest_boot(IMAGE);
	/* Memory worth moving (random: not sent as zero pages), at a pace slow enough to cut. */
	assert_int_equal(vmtest_sh(src->vm,
				   "dd if=/dev/urandom of=/dev/shm/fill bs=1M count=48 2>/dev/null",
				   NULL)
			     .code,
			 0);
	assert_int_equal(vmtest_sh(src->vm, ticker, NULL).code, 0);
	wait_ticks_past(src->vm, 3);

	struct vm_migrate_addr addr;
	struct runner_guest *dst = listen_for(src, &addr);
	struct killer k = {.pid = vm_pid(dst->vm), .after_ms = 1500};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, kill_later, &k), 0);
	struct vm_migrate_opts slow = {.max_bandwidth = 16 << 20};
	struct vmci_err err = {0};
	int rc = vm_migrate_to(src->vm, &addr, &slow, NULL, &err);
	pthread_join(t, NULL);
	assert_true(rc < 0);
	print_message("the move failed as it should: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "cannot migrate"));
	assert_non_null(strstr(err.msg, "runs on where it was"));
	runner_guest_destroy(dst, VMCI_STOP_TIMEOUT_MS);

	/* The guest runs on at the source: its loop counts, its disk takes writes. */
	long long n = ticks(src->vm);
	wait_ticks_past(src->vm, n + 3);
	/* Nothing of the failed attempt is left in the source's QEMU: a second move works. */
	struct runner_guest *again = move(src, NULL);
	runner_guest_destroy(src, VMCI_STOP_TIMEOUT_MS);
	n = ticks(again->vm);
	wait_ticks_past(again->vm, n + 2);
	runner_guest_destroy(again, VMCI_STOP_TIMEOUT_MS);
}

/* ---- a busy guest, moved again and again ------------------------------------ */

/*
 * A guest process that writes memory without pause and checks what it
 * wrote: it stamps each element of an array (about 8 MB) with the round
 * number, checks them all, notes the round in /tmp/round, and at the
 * first element that holds another round's number says which in
 * /tmp/lost and exits. Alone in the guest it never switches address
 * space, so its stores go through the same TLB entries for the whole
 * move: the ones whose writes a move could miss.
 */
static const char checker[] =
    "setsid awk 'BEGIN { n = 100000; for (r = 1; ; r++) {"
    " for (i = 0; i < n; i++) a[i] = r;"
    " for (i = 0; i < n; i++) if (a[i] != r) {"
    " printf \"round %d: element %d holds %d\\n\", r, i, a[i] > \"/tmp/lost\"; exit 1 }"
    " print r > \"/tmp/round\"; close(\"/tmp/round\") } }' </dev/null >/dev/null 2>&1 &\n"
    "echo $! > /tmp/checker.pid\n";

/* The checker's last finished round; fails the test if it found a lost write or died. */
static long long checked_round(struct vm *vm, int move)
{
	struct capture c = {0};
	vmtest_sh(
	    vm,
	    "cat /tmp/lost 2>/dev/null; kill -0 $(cat /tmp/checker.pid) || echo the checker died;"
	    " cat /tmp/round 2>/dev/null",
	    &c);
	const char *out = buf_cstr(&c.out);
	if (strstr(out, "round") || strstr(out, "died"))
		fail_msg("after move %d the guest's memory check failed: %s", move, out);
	long long r = atoll(out);
	capture_free(&c);
	return r;
}

/* The first line of the guest console that tells of a kernel failure, or "". */
static void console_failure(const struct runner_guest *g, char *out, size_t size)
{
	char path[PATH_MAX + 16];
	struct buf log = {0};
	out[0] = 0;
	snprintf(path, sizeof(path), "%s/console.log", g->run_dir);
	if (fs_read_file(path, 1 << 20, &log, NULL))
		return;
	static const char *const marks[] = {"BUG:", "Oops", "general protection", "Kernel panic",
					    "RIP:"};
	for (size_t i = 0; i < ARRAY_LEN(marks) && !out[0]; i++) {
		const char *hit = strstr(buf_cstr(&log), marks[i]);
		if (hit)
			snprintf(out, size, "%.*s", (int)strcspn(hit, "\n"), hit);
	}
	buf_free(&log);
}

static void test_a_busy_guest_moved_five_times_in_a_row_runs_on_intact(void **state)
{
	struct runner_guest *g = vmtest_boot(IMAGE);
	/* The kernel's own report of a failure reaches the console whatever its level. */
	assert_int_equal(vmtest_sh(g->vm, "echo 8 > /proc/sys/kernel/printk", NULL).code, 0);
	assert_int_equal(vmtest_sh(g->vm, checker, NULL).code, 0);
	for (int i = 0; i < 100 && checked_round(g->vm, 0) < 1; i++)
		usleep(100 * 1000);
	for (int i = 1; i <= 5; i++) {
		struct runner_guest *next = move(g, NULL);
		runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
		g = next;
		/* It runs on: its kernel reports nothing, its checker goes on finding all it wrote.
		 */
		long long r = checked_round(g->vm, i);
		for (int k = 0; k < 300 && checked_round(g->vm, i) < r + 1; k++)
			usleep(100 * 1000);
		assert_true(checked_round(g->vm, i) > r);
		char oops[256];
		console_failure(g, oops, sizeof(oops));
		if (*oops)
			fail_msg("after move %d the guest kernel failed: %s", i, oops);
	}
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

/* ---- a command that moves while it runs ------------------------------------ */

struct streamer {
	struct vm *vm;
	struct capture out;
	struct vm_exec_result res;
	int rc;
	struct vmci_err err;
};

/* 60 numbered lines, one every 100 ms. */
static const char *const counter[] = {
    "sh", "-c", "i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo line $i; sleep 0.1; done", NULL};

static void *stream_lines(void *arg)
{
	struct streamer *s = arg;
	struct vm_exec_opts o = {
	    .argv = counter, .stdin_fd = -1, .on_output = capture_output, .ctx = &s->out};
	s->rc = vm_exec(s->vm, &o, &s->res, &s->err);
	return NULL;
}

/* Whether text is "line 1\n" to "line n\n", each once, in order. */
static bool lines_in_order(const char *text, int n)
{
	int want = 1;
	for (const char *p = text; *p; want++) {
		char line[32];
		snprintf(line, sizeof(line), "line %d\n", want);
		if (strncmp(p, line, strlen(line)))
			return false;
		p += strlen(line);
	}
	return want == n + 1;
}

static void test_a_command_moved_mid_run_loses_and_repeats_no_output(void **state)
{
	struct runner_guest *src = vmtest_boot(IMAGE);
	struct streamer s = {.vm = src->vm};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, stream_lines, &s), 0);
	usleep(2000 * 1000); /* a dozen lines or so */
	vm_detach(src->vm);
	pthread_join(t, NULL);
	assert_int_equal(s.rc, -VM_EDETACHED);
	size_t before = s.out.out.len;
	assert_true(before > 0);

	struct runner_guest *dst = move(src, NULL);
	struct vm_agent_state as;
	vm_agent_state_get(src->vm, &as);
	assert_int_not_equal(as.stream, 0);
	runner_guest_destroy(src, VMCI_STOP_TIMEOUT_MS);

	struct vm_exec_opts o = {
	    .argv = counter, .stdin_fd = -1, .on_output = capture_output, .ctx = &s.out};
	struct vmci_err err = {0};
	if (vm_exec_resume(dst->vm, as.stream, &o, &s.res, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(s.res.kind, VM_EXITED);
	assert_int_equal(s.res.code, 0);
	print_message("%zu bytes before the move, %zu after\n", before, s.out.out.len - before);
	if (!lines_in_order(buf_cstr(&s.out.out), 60))
		fail_msg("output lost or repeated across the move:\n%s", buf_cstr(&s.out.out));
	capture_free(&s.out);
	runner_guest_destroy(dst, VMCI_STOP_TIMEOUT_MS);
}

/*
 * Prints the first 16 bytes of the disk at SCSI target 1 (vm_disk_attach) once the guest sees it,
 * read from the disk: the page cache, which moves with the guest's memory, is dropped first.
 */
static const char read_target1[] =
    "for n in $(seq 500); do for p in /sys/bus/scsi/devices/*:0:1:0/block/*; do\n"
    "  [ -e \"$p\" ] && [ -b /dev/${p##*/} ] && {\n"
    "    sync && echo 3 > /proc/sys/vm/drop_caches || exit 2\n"
    "    head -c 16 /dev/${p##*/}; exit; }\n"
    "done; sleep 0.01; done; exit 1\n";

static void test_a_disk_added_at_run_time_moves_with_what_the_guest_wrote(void **state)
{
	struct runner_guest *src = vmtest_boot(IMAGE);
	char base[PATH_MAX], overlay[PATH_MAX], dst_overlay[PATH_MAX];
	snprintf(base, sizeof(base), "%s/base.qcow2", src->run_dir);
	snprintf(overlay, sizeof(overlay), "%s/hot.qcow2", src->run_dir);
	struct vmci_err err = {0};
	if (img_clone_file(NULL, base, 16, &err) || img_clone_file(base, overlay, 0, &err) ||
	    vm_disk_attach(src->vm, 1, overlay, "qcow2", false, &err))
		fail_msg("%s", err.msg);
	const char write[] =
	    "for n in $(seq 500); do for p in /sys/bus/scsi/devices/*:0:1:0/block/*; do\n"
	    "  [ -e \"$p\" ] && [ -b /dev/${p##*/} ] && {\n"
	    "    printf written-before > /dev/${p##*/} && sync; exit; }\n"
	    "done; sleep 0.01; done; exit 1\n";
	assert_int_equal(vmtest_sh(src->vm, write, NULL).code, 0);

	/* The destination: its own overlay over the same base, at the same target. */
	struct runner_guest_opts opts = {.accel = vm_accel_used(src->vm)};
	const char *disks[VM_DISK_TARGETS] = {[1] = base};
	struct vm_migrate_addr addr;
	struct runner_guest *dst = NULL;
	if (runner_guest_listen_over(IMAGE, &opts, NULL, false, disks, &dst, &addr, &err))
		fail_msg("%s", err.msg);
	struct vm_migrate_stats st;
	if (vm_migrate_to(src->vm, &addr, NULL, &st, &err))
		fail_msg("%s", err.msg);
	struct vm_agent_state as;
	vm_agent_state_get(src->vm, &as);
	if (vm_migrate_accept(dst->vm, &as, 0, &err))
		fail_msg("%s", err.msg);
	print_message("moved with a second disk in %lld ms (%llu disk bytes)\n",
		      (long long)st.total_ms, (unsigned long long)st.disk_bytes);

	struct capture c = {0};
	assert_int_equal(vmtest_sh(dst->vm, read_target1, &c).code, 0);
	assert_memory_equal(c.out.data, "written-before", 14);
	capture_free(&c);
	/* The destination's own overlay holds it, and the disk goes away as any added one. */
	assert_int_equal(runner_guest_disk_path(dst, 1, dst_overlay, sizeof(dst_overlay)), 0);
	assert_true(fs_exists(dst_overlay));
	if (vm_disk_detach(dst->vm, 1, &err))
		fail_msg("%s", err.msg);
	runner_guest_destroy(dst, VMCI_STOP_TIMEOUT_MS);
	runner_guest_destroy(src, VMCI_STOP_TIMEOUT_MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_running_guest_moves_with_its_files_processes_and_disk),
	    cmocka_unit_test(test_a_moved_guest_has_the_hosts_clock_and_fresh_randomness),
	    cmocka_unit_test(test_a_destination_killed_mid_move_leaves_the_source_running),
	    cmocka_unit_test(test_a_command_moved_mid_run_loses_and_repeats_no_output),
	    cmocka_unit_test(test_a_busy_guest_moved_five_times_in_a_row_runs_on_intact),
	    cmocka_unit_test(test_a_disk_added_at_run_time_moves_with_what_the_guest_wrote),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
