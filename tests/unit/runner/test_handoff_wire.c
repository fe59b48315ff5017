/*
 * The hand-off's messages (runner/handoff_wire.c): a message far over
 * the 16 KiB an exec request carries (a long step's script, a tar)
 * arrives whole; a frame over the limit, a peer gone mid-message and a
 * body that is not JSON are told apart, never crash the reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/handoff_wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct sender {
	int fd;
	const char *data;
	size_t len;
	int rc;
};

/* Sends on its own thread: a body larger than the socket's buffer needs a reader meanwhile. */
static void *send_thread(void *arg)
{
	struct sender *s = arg;
	s->rc = msg_send(s->fd, MSG_DATA, s->data, s->len);
	return NULL;
}

static void test_a_message_of_1_5_mib_arrives_whole(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	size_t len = 3u << 19;
	char *data = malloc(len);
	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (char)('a' + i % 26);
	struct sender s = {.fd = sv[0], .data = data, .len = len};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, send_thread, &s), 0);
	struct msg m = {0};
	assert_int_equal(msg_recv(sv[1], &m), 0);
	pthread_join(t, NULL);
	assert_int_equal(s.rc, 0);
	assert_int_equal(m.type, MSG_DATA);
	assert_int_equal(m.body.len, len);
	assert_memory_equal(m.body.data, data, len);
	buf_free(&m.body);
	free(data);
	close(sv[0]);
	close(sv[1]);
}

static void test_a_frame_over_the_limit_is_refused(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	uint32_t len = MSG_MAX + 1;
	uint8_t h[5] = {MSG_DATA, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
			(uint8_t)(len >> 24)};
	assert_int_equal(write(sv[0], h, sizeof(h)), (ssize_t)sizeof(h));
	struct msg m = {0};
	assert_int_equal(msg_recv(sv[1], &m), -EPROTO);
	buf_free(&m.body);
	close(sv[0]);
	close(sv[1]);
}

static void test_a_peer_gone_mid_message_is_epipe(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	uint8_t h[8] = {MSG_EXEC, 10, 0, 0, 0, '{', '"', 'a'};
	assert_int_equal(write(sv[0], h, sizeof(h)), (ssize_t)sizeof(h));
	close(sv[0]);
	struct msg m = {0};
	assert_int_equal(msg_recv(sv[1], &m), -EPIPE);
	buf_free(&m.body);
	close(sv[1]);
}

static void test_a_body_that_is_not_json_reads_as_null(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(msg_send_text(sv[0], MSG_OFFER, "{not json"), 0);
	struct msg m = {0};
	assert_int_equal(msg_recv(sv[1], &m), 0);
	assert_int_equal(m.type, MSG_OFFER);
	assert_null(msg_json(&m));
	buf_free(&m.body);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_message_of_1_5_mib_arrives_whole),
	    cmocka_unit_test(test_a_frame_over_the_limit_is_refused),
	    cmocka_unit_test(test_a_peer_gone_mid_message_is_epipe),
	    cmocka_unit_test(test_a_body_that_is_not_json_reads_as_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
