/*
 * runner/interrupt.c: the first signal cancels, a second (or a first with
 * nothing to cancel) ends the process after its cleanup. Each case runs
 * in a child process, since the scheme ends processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/runner.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int report_fd = -1;

static void report(char c)
{
	if (write(report_fd, &c, 1) != 1)
		_exit(99);
}

static void cancel_reports(void *ctx, int signo)
{
	report(signo == SIGTERM ? 'T' : signo == SIGINT ? 'I' : '?');
}

static void cleanup_reports(void)
{
	report('c');
}

/* Runs body in a child with the scheme started; returns what it reported and its exit status. */
static void in_child(void (*body)(void), char *reported, size_t size, int *status)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		report_fd = p[1];
		runner_interrupt_start(cleanup_reports, 77);
		body();
		_exit(0);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < size && (r = read(p[0], reported + n, size - 1 - n)) > 0)
		n += (size_t)r;
	reported[n] = 0;
	close(p[0]);
	assert_int_equal(waitpid(pid, status, 0), pid);
}

/* Waits (up to 5 s) until the signal thread has seen n signals. */
static void wait_for_signal(void)
{
	for (int i = 0; i < 500 && !runner_interrupted(); i++)
		usleep(10000);
}

static void first_signal_cancels(void)
{
	struct runner_interrupt h = {.cancel = cancel_reports};
	runner_interrupt_set(&h);
	kill(getpid(), SIGTERM);
	wait_for_signal();
	usleep(100000); /* the cancel callback runs just after the count */
	report(runner_interrupted() == SIGTERM ? 'S' : 's');
}

static void test_first_signal_calls_the_cancellation_and_is_remembered(void **state)
{
	char got[16];
	int status;
	in_child(first_signal_cancels, got, sizeof(got), &status);
	assert_string_equal(got, "TS");
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0); /* cancelled, not killed */
}

static void second_signal_kills(void)
{
	struct runner_interrupt h = {.cancel = cancel_reports};
	runner_interrupt_set(&h);
	kill(getpid(), SIGINT);
	wait_for_signal();
	usleep(100000);
	kill(getpid(), SIGINT);
	sleep(5); /* killed before this ends */
	report('x');
}

static void test_second_signal_runs_cleanup_and_exits_with_the_code(void **state)
{
	char got[16];
	int status;
	in_child(second_signal_kills, got, sizeof(got), &status);
	assert_string_equal(got, "Ic");
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 77);
}

static void nothing_to_cancel(void)
{
	kill(getpid(), SIGHUP);
	sleep(5);
	report('x');
}

static void test_signal_with_nothing_registered_ends_the_process(void **state)
{
	char got[16];
	int status;
	in_child(nothing_to_cancel, got, sizeof(got), &status);
	assert_string_equal(got, "c");
	assert_int_equal(WEXITSTATUS(status), 77);
}

static void replaced_handler_is_returned(void)
{
	struct runner_interrupt a = {.cancel = cancel_reports, .ctx = (void *)1};
	struct runner_interrupt b = {.cancel = cancel_reports, .ctx = (void *)2};
	runner_interrupt_set(&a);
	struct runner_interrupt old = runner_interrupt_set(&b);
	report(old.ctx == (void *)1 ? 'A' : 'a');
	old = runner_interrupt_set(NULL);
	report(old.ctx == (void *)2 ? 'B' : 'b');
	report(runner_interrupted() == 0 ? 'N' : 'n');
}

static void test_set_returns_the_handler_it_replaces(void **state)
{
	char got[16];
	int status;
	in_child(replaced_handler_is_returned, got, sizeof(got), &status);
	assert_string_equal(got, "ABN");
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* A cancel callback still running when its handler is replaced: the replacement waits for it. */
struct slow_ctx {
	volatile int started, done;
};

static void slow_cancel(void *ctx, int signo)
{
	struct slow_ctx *c = ctx;
	c->started = 1;
	usleep(300000);
	c->done = 1;
}

static void set_waits_for_a_callback(void)
{
	struct slow_ctx c = {0};
	struct runner_interrupt h = {.cancel = slow_cancel, .ctx = &c};
	runner_interrupt_set(&h);
	kill(getpid(), SIGINT);
	for (int i = 0; i < 500 && !c.started; i++)
		usleep(10000);
	runner_interrupt_set(NULL);
	/* What the callback used may be freed now: it has returned. */
	report(c.started && c.done ? 'W' : 'w');
}

static void test_set_waits_for_a_callback_under_way(void **state)
{
	char got[16];
	int status;
	in_child(set_waits_for_a_callback, got, sizeof(got), &status);
	assert_string_equal(got, "W");
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_signal_calls_the_cancellation_and_is_remembered),
	    cmocka_unit_test(test_second_signal_runs_cleanup_and_exits_with_the_code),
	    cmocka_unit_test(test_signal_with_nothing_registered_ends_the_process),
	    cmocka_unit_test(test_set_returns_the_handler_it_replaces),
	    cmocka_unit_test(test_set_waits_for_a_callback_under_way),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
