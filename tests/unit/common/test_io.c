/* common/io.c: io_write_all writes everything, or says why it could not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define DATA_SIZE (1 << 20)

/* Reads fd to its end into a buffer, after a pause that lets the writer fill the pipe. */
struct reader {
	int fd;
	int delay_ms;
	struct buf got;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are for the writer */
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)r->delay_ms * 1000000};
	nanosleep(&ts, NULL);
	uint8_t chunk[1000]; /* an odd size: the writer sees partial progress */
	ssize_t n;
	while ((n = read(r->fd, chunk, sizeof(chunk))) > 0)
		buf_append(&r->got, chunk, (size_t)n);
	return NULL;
}

static uint8_t *pattern(void)
{
	static uint8_t data[DATA_SIZE];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	return data;
}

/* Writes DATA_SIZE bytes into a small pipe (flags on its write end) read slowly by a thread. */
static void write_through_pipe(int flags)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fcntl(fds[1], F_SETPIPE_SZ, 4096);
	if (flags)
		assert_int_equal(fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | flags), 0);
	struct reader r = {.fd = fds[0], .delay_ms = 100};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, read_all, &r), 0);
	const uint8_t *data = pattern();
	assert_int_equal(io_write_all(fds[1], data, DATA_SIZE), 0);
	close(fds[1]);
	pthread_join(t, NULL);
	close(fds[0]);
	assert_int_equal(r.got.len, DATA_SIZE);
	assert_memory_equal(r.got.data, data, DATA_SIZE);
	buf_free(&r.got);
}

static void test_short_writes_are_continued(void **state)
{
	write_through_pipe(0);
}

static void on_alarm(int sig)
{
}

static void test_interrupting_signals_do_not_cut_the_data(void **state)
{
	/* No SA_RESTART: a blocked write returns EINTR or a short count. */
	struct sigaction sa = {.sa_handler = on_alarm}, old;
	sigaction(SIGALRM, &sa, &old);
	struct itimerval every_ms = {{0, 1000}, {0, 1000}}, off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &every_ms, NULL);
	write_through_pipe(0);
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
}

static void test_a_full_nonblocking_fd_is_waited_for(void **state)
{
	write_through_pipe(O_NONBLOCK);
}

static void test_a_closed_socket_is_epipe_not_sigpipe(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	/* SIGPIPE keeps its default action: were it raised, the test would die. */
	assert_int_equal(io_write_all(sv[0], "lost", 4), -EPIPE);
	close(sv[0]);
}

static void test_errors_are_negative_errno(void **state)
{
	assert_int_equal(io_write_all(-1, "x", 1), -EBADF);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(io_write_all(fds[0], "x", 1), -EBADF); /* the read end */
	assert_int_equal(io_write_all(fds[1], "", 0), 0);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_short_writes_are_continued),
	    cmocka_unit_test(test_interrupting_signals_do_not_cut_the_data),
	    cmocka_unit_test(test_a_full_nonblocking_fd_is_waited_for),
	    cmocka_unit_test(test_a_closed_socket_is_epipe_not_sigpipe),
	    cmocka_unit_test(test_errors_are_negative_errno),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
