/*
 * Commands in a real VM (busybox-x86_64 under QEMU): exit statuses,
 * signals, separate streams, large output, stdin, timeouts, cancel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct runner_guest *guest;

static int boot_vm(void **state)
{
	guest = vmtest_boot("busybox-x86_64");
	return guest ? 0 : -1;
}

static int stop_vm(void **state)
{
	runner_guest_destroy(guest, VMCI_STOP_TIMEOUT_MS);
	return 0;
}

static void test_guest_reports_its_architecture(void **state)
{
	assert_string_equal(vm_guest_info(guest->vm, "arch"), "x86_64");
	struct capture c = {0};
	struct vm_exec_result r = vmtest_sh(guest->vm, "uname -m", &c);
	assert_int_equal(r.kind, VM_EXITED);
	assert_int_equal(r.code, 0);
	assert_string_equal(buf_cstr(&c.out), "x86_64\n");
	capture_free(&c);
}

static void test_exit_status_propagates(void **state)
{
	struct vm_exec_result r = vmtest_sh(guest->vm, "exit 3", NULL);
	assert_int_equal(r.kind, VM_EXITED);
	assert_int_equal(r.code, 3);
	r = vmtest_sh(guest->vm, "true", NULL);
	assert_int_equal(r.kind, VM_EXITED);
	assert_int_equal(r.code, 0);
}

static void test_signal_propagates(void **state)
{
	struct vm_exec_result r = vmtest_sh(guest->vm, "kill -TERM $$", NULL);
	assert_int_equal(r.kind, VM_SIGNALED);
	assert_int_equal(r.code, SIGTERM);
	r = vmtest_sh(guest->vm, "kill -KILL $$", NULL);
	assert_int_equal(r.kind, VM_SIGNALED);
	assert_int_equal(r.code, SIGKILL);
}

static void test_stdout_and_stderr_stay_separate(void **state)
{
	struct capture c = {0};
	struct vm_exec_result r =
	    vmtest_sh(guest->vm, "echo out1; echo err1 >&2; echo out2; echo err2 >&2", &c);
	assert_int_equal(r.code, 0);
	assert_string_equal(buf_cstr(&c.out), "out1\nout2\n");
	assert_string_equal(buf_cstr(&c.err), "err1\nerr2\n");
	capture_free(&c);
}

static void test_20mb_of_output_arrives_byte_exact(void **state)
{
	struct capture sum = {0}, data = {0};
	struct vm_exec_result r = vmtest_sh(
	    guest->vm,
	    "head -c 20971520 /dev/urandom > /tmp/blob && sha256sum /tmp/blob | cut -d' ' -f1",
	    &sum);
	assert_int_equal(r.code, 0);
	const char *argv[] = {"cat", "/tmp/blob", NULL};
	r = vmtest_run(guest->vm, argv, &data);
	assert_int_equal(r.kind, VM_EXITED);
	assert_int_equal(r.code, 0);
	assert_int_equal(data.out.len, 20971520);
	struct sha256_ctx *ctx = sha256_new();
	sha256_update(ctx, data.out.data, data.out.len);
	char hex[SHA256_HEX_LEN + 1];
	sha256_finish(ctx, hex);
	char expected[SHA256_HEX_LEN + 2];
	snprintf(expected, sizeof(expected), "%s\n", hex);
	assert_string_equal(buf_cstr(&sum.out), expected);
	vmtest_sh(guest->vm, "rm -f /tmp/blob", NULL);
	capture_free(&sum);
	capture_free(&data);
}

static void test_stdin_reaches_the_command(void **state)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	const char input[] = "line one\nline two\n";
	assert_int_equal(write(fds[1], input, sizeof(input) - 1), (ssize_t)sizeof(input) - 1);
	close(fds[1]);
	const char *argv[] = {"wc", "-l", NULL};
	struct capture c = {0};
	struct vm_exec_opts opts = {
	    .argv = argv, .stdin_fd = fds[0], .on_output = capture_output, .ctx = &c};
	struct vm_exec_result r;
	struct vmci_err err = {0};
	assert_int_equal(vm_exec(guest->vm, &opts, &r, &err), 0);
	close(fds[0]);
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(buf_cstr(&c.out), "2"));
	capture_free(&c);
}

static void test_missing_command_fails_to_start(void **state)
{
	const char *argv[] = {"no-such-command-here", NULL};
	struct vm_exec_result r = vmtest_run(guest->vm, argv, NULL);
	assert_int_equal(r.kind, VM_START_FAILED);
	assert_int_equal(r.code, 2 /* ENOENT */);
}

static void test_timeout_kills_the_command(void **state)
{
	const char *argv[] = {"sh", "-c", "sleep 30", NULL};
	struct vm_exec_opts opts = {.argv = argv, .stdin_fd = -1, .timeout_ms = 1000};
	struct vm_exec_result r;
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	assert_int_equal(vm_exec(guest->vm, &opts, &r, &err), 0);
	int64_t took = clock_ms() - t0;
	assert_int_equal(r.kind, VM_TIMED_OUT);
	assert_true(took >= 900);
	assert_true(took < 10000);
	/* The VM is still usable afterwards. */
	assert_int_equal(vmtest_sh(guest->vm, "true", NULL).code, 0);
}

static void *cancel_later(void *arg)
{
	usleep(500 * 1000);
	vm_cancel(arg);
	return NULL;
}

static void test_cancel_stops_the_command(void **state)
{
	pthread_t t;
	pthread_create(&t, NULL, cancel_later, guest->vm);
	int64_t t0 = clock_ms();
	struct vm_exec_result r = vmtest_sh(guest->vm, "sleep 30", NULL);
	pthread_join(t, NULL);
	assert_int_equal(r.kind, VM_CANCELLED);
	assert_true(clock_ms() - t0 < 10000);
	assert_int_equal(vmtest_sh(guest->vm, "true", NULL).code, 0);
}

static void test_ping_and_refresh(void **state)
{
	struct vmci_err err = {0};
	assert_int_equal(vm_ping(guest->vm, VMCI_PING_TIMEOUT_MS, &err), 0);
	vmtest_sh(guest->vm, "date -s '2001-01-01 00:00:00' >/dev/null", NULL);
	assert_int_equal(vm_refresh_guest(guest->vm, &err), 0);
	struct capture c = {0};
	vmtest_sh(guest->vm, "date +%s", &c);
	long long guest_now = atoll(buf_cstr(&c.out));
	assert_true(llabs(guest_now - (long long)time(NULL)) <= 2);
	capture_free(&c);
}

static void *kill_qemu_later(void *arg)
{
	usleep(500 * 1000);
	kill(*(pid_t *)arg, SIGKILL);
	return NULL;
}

static void test_qemu_killed_mid_command_is_an_infrastructure_failure(void **state)
{
	struct runner_guest *victim = vmtest_boot("busybox-x86_64");
	pid_t pid = vm_pid(victim->vm);
	pthread_t t;
	pthread_create(&t, NULL, kill_qemu_later, &pid);
	const char *argv[] = {"sleep", "60", NULL};
	struct vm_exec_opts opts = {.argv = argv, .stdin_fd = -1};
	struct vm_exec_result r;
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	int rc = vm_exec(victim->vm, &opts, &r, &err);
	int64_t took = clock_ms() - t0;
	pthread_join(t, NULL);
	assert_true(rc < 0);
	assert_true(took < 500 + 5000);
	assert_non_null(strstr(err.msg, "QEMU"));
	runner_guest_destroy(victim, VMCI_STOP_TIMEOUT_MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_guest_reports_its_architecture),
	    cmocka_unit_test(test_exit_status_propagates),
	    cmocka_unit_test(test_signal_propagates),
	    cmocka_unit_test(test_stdout_and_stderr_stay_separate),
	    cmocka_unit_test(test_20mb_of_output_arrives_byte_exact),
	    cmocka_unit_test(test_stdin_reaches_the_command),
	    cmocka_unit_test(test_missing_command_fails_to_start),
	    cmocka_unit_test(test_timeout_kills_the_command),
	    cmocka_unit_test(test_cancel_stops_the_command),
	    cmocka_unit_test(test_ping_and_refresh),
	    cmocka_unit_test(test_qemu_killed_mid_command_is_an_infrastructure_failure),
	};
	return cmocka_run_group_tests_name("vm exec", tests, boot_vm, stop_vm);
}
