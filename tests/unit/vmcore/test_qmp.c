/*
 * vmcore/qmp.c: parsing QMP lines, and a connection to a fake QMP peer
 * (a thread on the other end of a socketpair) that answers like QEMU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmcore/qmp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GREETING                                                                                   \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "          \
	"\"package\": \"\"}, \"capabilities\": [\"oob\"]}}"

/* ---- qmp_parse ------------------------------------------------------- */

static int parse(const char *line, struct qmp_msg *msg, struct vmci_err *err)
{
	return qmp_parse(line, strlen(line), msg, err);
}

static void test_parse_greeting(void **state)
{
	struct qmp_msg m;
	assert_int_equal(parse(GREETING, &m, NULL), 0);
	assert_int_equal(m.kind, QMP_GREETING);
	assert_true(json_is_object(m.value));
	assert_non_null(json_object_get(m.value, "capabilities"));
	assert_null(m.id);
	qmp_msg_free(&m);
}

static void test_parse_return_with_id(void **state)
{
	struct qmp_msg m;
	assert_int_equal(parse("{\"return\": {\"status\": \"running\"}, \"id\": 7}", &m, NULL), 0);
	assert_int_equal(m.kind, QMP_RETURN);
	assert_int_equal(json_integer_value(m.id), 7);
	assert_string_equal(json_string_value(json_object_get(m.value, "status")), "running");
	qmp_msg_free(&m);
}

static void test_parse_error_has_class_and_desc(void **state)
{
	struct qmp_msg m;
	assert_int_equal(parse("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
			       "\"The command nope has not been found\"}, \"id\": 3}",
			       &m, NULL),
			 0);
	assert_int_equal(m.kind, QMP_ERROR);
	assert_string_equal(m.error_class, "CommandNotFound");
	assert_string_equal(m.error_desc, "The command nope has not been found");
	assert_int_equal(json_integer_value(m.id), 3);
	qmp_msg_free(&m);
}

static void test_parse_event_has_name_and_data(void **state)
{
	struct qmp_msg m;
	assert_int_equal(parse("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
			       "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}}",
			       &m, NULL),
			 0);
	assert_int_equal(m.kind, QMP_EVENT);
	assert_string_equal(m.event, "SHUTDOWN");
	assert_true(json_is_true(json_object_get(m.value, "guest")));
	qmp_msg_free(&m);
}

static void test_parse_event_without_data_has_null_value(void **state)
{
	struct qmp_msg m;
	assert_int_equal(parse("{\"event\": \"STOP\", \"timestamp\": {}}", &m, NULL), 0);
	assert_int_equal(m.kind, QMP_EVENT);
	assert_string_equal(m.event, "STOP");
	assert_null(m.value);
	qmp_msg_free(&m);
}

static void assert_rejected(const char *line, const char *why)
{
	struct qmp_msg m;
	struct vmci_err err = {0};
	assert_int_equal(parse(line, &m, &err), -EPROTO);
	assert_int_equal(err.code, EPROTO);
	assert_non_null(strstr(err.msg, why));
	assert_null(m.root);
}

static void test_parse_rejects_garbage(void **state)
{
	assert_rejected("qemu-system-x86_64: oops", "not JSON");
	assert_rejected("{\"return\": ", "not JSON");
	assert_rejected("[1, 2]", "not an object");
	assert_rejected("\"return\"", "not an object");
	assert_rejected("{\"hello\": 1}", "no greeting, reply, error or event");
	assert_rejected("{\"error\": {\"class\": \"GenericError\"}}", "no greeting");
	assert_rejected("{\"event\": 42}", "no greeting");
}

static void test_parse_error_quotes_bad_line_printably(void **state)
{
	struct qmp_msg m;
	struct vmci_err err = {0};
	assert_int_equal(parse("\033[31mred\001", &m, &err), -EPROTO);
	assert_null(strchr(err.msg, '\033'));
	assert_non_null(strstr(err.msg, "?[31mred?"));
}

/* ---- a fake QMP peer --------------------------------------------------- */

struct peer {
	int fd;
	pthread_t thread;
	const char *first; /* sent instead of the greeting when set */
	bool crlf;	   /* end lines with \r\n like QEMU (else \n) */
	int commands;	   /* commands received */
};

static void peer_send(struct peer *p, const char *line)
{
	char *text;
	if (asprintf(&text, "%s%s", line, p->crlf ? "\r\n" : "\n") < 0)
		return;
	for (size_t off = 0, len = strlen(text); off < len;) {
		ssize_t n = send(p->fd, text + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(text);
}

static void peer_sendf(struct peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void peer_sendf(struct peer *p, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	peer_send(p, line);
}

/* Reads one line (blocking); false at EOF. */
static bool peer_read_line(struct peer *p, char *line, size_t size)
{
	size_t n = 0;
	for (;;) {
		char ch;
		if (read(p->fd, &ch, 1) != 1)
			return false;
		if (ch == '\n')
			break;
		if (n + 1 < size)
			line[n++] = ch;
	}
	line[n] = 0;
	return true;
}

#define EVENT_STOP "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"STOP\"}"
#define EVENT_RESET                                                                                \
	"{\"timestamp\": {\"seconds\": 2, \"microseconds\": 0}, \"event\": \"RESET\", "            \
	"\"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}"

/*
 * Answers like QEMU: qmp_capabilities and query-status succeed (the
 * latter after an event and a stray reply), "nope" is an unknown command,
 * "hang" gets no answer, "huge" gets an endless line, "quit" closes.
 */
static void *peer_main(void *arg)
{
	struct peer *p = arg;
	char line[4096];
	peer_send(p, p->first ? p->first : GREETING);
	while (peer_read_line(p, line, sizeof(line))) {
		p->commands++;
		json_t *cmd = json_loads(line, 0, NULL);
		const char *name = json_string_value(json_object_get(cmd, "execute"));
		long long id = json_integer_value(json_object_get(cmd, "id"));
		if (!name) {
			peer_send(
			    p, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse "
			       "error\"}}");
		} else if (!strcmp(name, "qmp_capabilities")) {
			peer_sendf(p, "{\"return\": {}, \"id\": %lld}", id);
		} else if (!strcmp(name, "query-status")) {
			peer_send(p, EVENT_STOP);
			peer_sendf(p, "{\"return\": {}, \"id\": %lld}", id + 1000);
			peer_send(p, EVENT_RESET);
			peer_sendf(p,
				   "{\"return\": {\"status\": \"paused\", \"running\": false}, "
				   "\"id\": %lld}",
				   id);
		} else if (!strcmp(name, "echo")) {
			json_t *args = json_object_get(cmd, "arguments");
			char *a =
			    json_dumps(args ? args : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
			peer_sendf(p, "{\"return\": %s, \"id\": %lld}", a, id);
			free(a);
		} else if (!strcmp(name, "nope")) {
			peer_sendf(p,
				   "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", "
				   "\"desc\": \"The command nope has not been found\"}}",
				   id);
		} else if (!strcmp(name, "events")) {
			peer_send(p, EVENT_STOP);
			peer_send(p, EVENT_RESET);
			peer_sendf(p, "{\"return\": {}, \"id\": %lld}", id);
		} else if (!strcmp(name, "huge")) {
			/* More than 16 MiB without a newline; stops when the client hangs up. */
			static char chunk[65536];
			memset(chunk, 'x', sizeof(chunk));
			for (int i = 0; i < 16 * 16 + 2; i++)
				if (send(p->fd, chunk, sizeof(chunk), MSG_NOSIGNAL) <= 0)
					break;
		} else if (!strcmp(name, "quit")) {
			peer_sendf(p, "{\"return\": {}, \"id\": %lld}", id);
			json_decref(cmd);
			break;
		} /* "hang": no reply */
		json_decref(cmd);
	}
	shutdown(p->fd, SHUT_RDWR);
	return NULL;
}

struct conn {
	struct peer peer;
	struct qmp *q;
	int client_fd;
};

static void peer_start(struct conn *s)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	s->client_fd = sv[0];
	s->peer.fd = sv[1];
	assert_int_equal(pthread_create(&s->peer.thread, NULL, peer_main, &s->peer), 0);
}

/* A connection with the greeting done and capabilities negotiated. */
static int conn_open(void **state)
{
	struct conn *s = calloc(1, sizeof(*s));
	s->peer.crlf = true;
	peer_start(s);
	struct vmci_err err = {0};
	if (qmp_open(s->client_fd, 2000, &s->q, &err) != 0) {
		fprintf(stderr, "qmp_open: %s\n", err.msg);
		return -1;
	}
	*state = s;
	return 0;
}

static int conn_close(void **state)
{
	struct conn *s = *state;
	qmp_close(s->q); /* the peer sees EOF and ends */
	pthread_join(s->peer.thread, NULL);
	close(s->peer.fd);
	free(s);
	return 0;
}

/* ---- connections ------------------------------------------------------- */

static void test_open_negotiates_capabilities(void **state)
{
	struct conn *s = *state;
	assert_int_equal(s->peer.commands, 1); /* qmp_capabilities */
	assert_true(qmp_fd(s->q) >= 0);
}

static void test_event_before_reply_is_queued(void **state)
{
	struct conn *s = *state;
	struct vmci_err err = {0};
	json_t *ret = NULL;
	assert_int_equal(qmp_execute(s->q, "query-status", NULL, &ret, 2000, &err), 0);
	assert_string_equal(json_string_value(json_object_get(ret, "status")), "paused");
	json_decref(ret);

	struct qmp_msg ev;
	assert_int_equal(qmp_next_event(s->q, NULL, 0, &ev, &err), 1);
	assert_string_equal(ev.event, "STOP");
	qmp_msg_free(&ev);
	assert_int_equal(qmp_next_event(s->q, NULL, 0, &ev, &err), 1);
	assert_string_equal(ev.event, "RESET");
	assert_string_equal(json_string_value(json_object_get(ev.value, "reason")), "guest-reset");
	qmp_msg_free(&ev);
	assert_int_equal(qmp_next_event(s->q, NULL, 0, &ev, &err), 0);
}

static void test_reply_with_other_id_is_ignored(void **state)
{
	/* query-status sends a reply with id + 1000 before the real one. */
	struct conn *s = *state;
	json_t *ret = NULL;
	assert_int_equal(qmp_execute(s->q, "query-status", NULL, &ret, 2000, NULL), 0);
	assert_true(json_is_false(json_object_get(ret, "running")));
	json_decref(ret);
	/* The stray reply did not linger either: the next command gets its own. */
	assert_int_equal(qmp_execute(s->q, "echo", json_pack("{s:i}", "n", 5), &ret, 2000, NULL),
			 0);
	assert_int_equal(json_integer_value(json_object_get(ret, "n")), 5);
	json_decref(ret);
}

static void test_arguments_are_sent(void **state)
{
	struct conn *s = *state;
	json_t *ret = NULL;
	json_t *args = json_pack("{s:s, s:b}", "name", "clean", "force", 1);
	assert_int_equal(qmp_execute(s->q, "echo", args, &ret, 2000, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(ret, "name")), "clean");
	assert_true(json_is_true(json_object_get(ret, "force")));
	json_decref(ret);
	/* Without arguments, none are sent. */
	assert_int_equal(qmp_execute(s->q, "echo", NULL, &ret, 2000, NULL), 0);
	assert_true(json_is_null(ret));
	json_decref(ret);
}

static void test_error_reply_is_eio_with_class_and_desc(void **state)
{
	struct conn *s = *state;
	struct vmci_err err = {0};
	json_t *ret = json_true(); /* a sentinel: must be reset to NULL */
	assert_int_equal(qmp_execute(s->q, "nope", NULL, &ret, 2000, &err), -EIO);
	assert_null(ret);
	assert_string_equal(
	    err.msg, "QMP command failed: CommandNotFound: The command nope has not been found");
	/* The connection stays usable. */
	assert_int_equal(qmp_execute(s->q, "echo", NULL, NULL, 2000, &err), 0);
}

static void test_no_reply_is_etimedout(void **state)
{
	struct conn *s = *state;
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	assert_int_equal(qmp_execute(s->q, "hang", NULL, NULL, 100, &err), -ETIMEDOUT);
	assert_true(clock_ms() - t0 >= 100);
	assert_non_null(strstr(err.msg, "'hang'"));
}

static void test_eof_is_epipe(void **state)
{
	struct conn *s = *state;
	struct vmci_err err = {0};
	assert_int_equal(qmp_execute(s->q, "quit", NULL, NULL, 2000, &err), 0);
	assert_int_equal(qmp_execute(s->q, "echo", NULL, NULL, 2000, &err), -EPIPE);
	assert_int_equal(qmp_poll(s->q, &err), -EPIPE);
	struct qmp_msg ev;
	assert_int_equal(qmp_next_event(s->q, NULL, 1000, &ev, &err), -EPIPE);
}

static void test_next_event_by_name_leaves_others_queued(void **state)
{
	struct conn *s = *state;
	assert_int_equal(qmp_execute(s->q, "events", NULL, NULL, 2000, NULL), 0);
	struct qmp_msg ev;
	assert_int_equal(qmp_next_event(s->q, "RESET", 0, &ev, NULL), 1);
	assert_string_equal(ev.event, "RESET");
	qmp_msg_free(&ev);
	assert_int_equal(qmp_next_event(s->q, "RESET", 0, &ev, NULL), 0);
	assert_int_equal(qmp_next_event(s->q, "STOP", 0, &ev, NULL), 1);
	assert_string_equal(ev.event, "STOP");
	qmp_msg_free(&ev);
}

static void test_next_event_waits_for_a_late_event(void **state)
{
	struct conn *s = *state;
	struct qmp_msg ev;
	/* Nothing yet: a short wait times out. */
	int64_t t0 = clock_ms();
	assert_int_equal(qmp_next_event(s->q, "RESET", 50, &ev, NULL), 0);
	assert_true(clock_ms() - t0 >= 50);
	peer_send(&s->peer, EVENT_RESET);
	assert_int_equal(qmp_next_event(s->q, "RESET", 2000, &ev, NULL), 1);
	qmp_msg_free(&ev);
}

static void test_poll_queues_events_without_blocking(void **state)
{
	struct conn *s = *state;
	struct qmp_msg ev;
	assert_int_equal(qmp_poll(s->q, NULL), 0);
	peer_send(&s->peer, EVENT_STOP);
	/* The peer thread has written it; give the socket a moment. */
	for (int i = 0; i < 200; i++) {
		assert_int_equal(qmp_poll(s->q, NULL), 0);
		if (qmp_next_event(s->q, "STOP", 0, &ev, NULL) == 1)
			break;
		usleep(5000);
	}
	assert_string_equal(ev.event, "STOP");
	qmp_msg_free(&ev);
}

static void test_line_over_16_mib_is_rejected(void **state)
{
	struct conn *s = *state;
	struct vmci_err err = {0};
	assert_int_equal(qmp_execute(s->q, "huge", NULL, NULL, 10000, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "longer than 16 MiB"));
}

/* ---- opening ----------------------------------------------------------- */

static void test_lf_only_lines_are_accepted(void **state)
{
	struct conn s = {.peer.crlf = false};
	peer_start(&s);
	struct vmci_err err = {0};
	assert_int_equal(qmp_open(s.client_fd, 2000, &s.q, &err), 0);
	json_t *ret = NULL;
	assert_int_equal(qmp_execute(s.q, "query-status", NULL, &ret, 2000, &err), 0);
	json_decref(ret);
	qmp_close(s.q);
	pthread_join(s.peer.thread, NULL);
	close(s.peer.fd);
}

static void test_open_rejects_a_peer_without_greeting(void **state)
{
	struct conn s = {.peer.first = "{\"return\": {}}"};
	peer_start(&s);
	struct vmci_err err = {0};
	assert_int_equal(qmp_open(s.client_fd, 2000, &s.q, &err), -EPROTO);
	assert_null(s.q);
	assert_non_null(strstr(err.msg, "greeting"));
	/* qmp_open closed the fd: the peer sees EOF. */
	pthread_join(s.peer.thread, NULL);
	close(s.peer.fd);
}

static void test_open_rejects_garbage_greeting(void **state)
{
	struct conn s = {.peer.first = "qemu-system-x86_64: -chardev: invalid option"};
	peer_start(&s);
	struct vmci_err err = {0};
	assert_int_equal(qmp_open(s.client_fd, 2000, &s.q, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "not JSON"));
	pthread_join(s.peer.thread, NULL);
	close(s.peer.fd);
}

static void test_open_times_out_on_a_silent_peer(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct vmci_err err = {0};
	struct qmp *q;
	assert_int_equal(qmp_open(sv[0], 50, &q, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "greeting"));
	close(sv[1]);
}

static void test_open_on_a_closed_peer_is_epipe(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[1]);
	struct vmci_err err = {0};
	struct qmp *q;
	assert_int_equal(qmp_open(sv[0], 1000, &q, &err), -EPIPE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_greeting),
	    cmocka_unit_test(test_parse_return_with_id),
	    cmocka_unit_test(test_parse_error_has_class_and_desc),
	    cmocka_unit_test(test_parse_event_has_name_and_data),
	    cmocka_unit_test(test_parse_event_without_data_has_null_value),
	    cmocka_unit_test(test_parse_rejects_garbage),
	    cmocka_unit_test(test_parse_error_quotes_bad_line_printably),
	    cmocka_unit_test_setup_teardown(test_open_negotiates_capabilities, conn_open,
					    conn_close),
	    cmocka_unit_test_setup_teardown(test_event_before_reply_is_queued, conn_open,
					    conn_close),
	    cmocka_unit_test_setup_teardown(test_reply_with_other_id_is_ignored, conn_open,
					    conn_close),
	    cmocka_unit_test_setup_teardown(test_arguments_are_sent, conn_open, conn_close),
	    cmocka_unit_test_setup_teardown(test_error_reply_is_eio_with_class_and_desc, conn_open,
					    conn_close),
	    cmocka_unit_test_setup_teardown(test_no_reply_is_etimedout, conn_open, conn_close),
	    cmocka_unit_test_setup_teardown(test_eof_is_epipe, conn_open, conn_close),
	    cmocka_unit_test_setup_teardown(test_next_event_by_name_leaves_others_queued, conn_open,
					    conn_close),
	    cmocka_unit_test_setup_teardown(test_next_event_waits_for_a_late_event, conn_open,
					    conn_close),
	    cmocka_unit_test_setup_teardown(test_poll_queues_events_without_blocking, conn_open,
					    conn_close),
	    cmocka_unit_test_setup_teardown(test_line_over_16_mib_is_rejected, conn_open,
					    conn_close),
	    cmocka_unit_test(test_lf_only_lines_are_accepted),
	    cmocka_unit_test(test_open_rejects_a_peer_without_greeting),
	    cmocka_unit_test(test_open_rejects_garbage_greeting),
	    cmocka_unit_test(test_open_times_out_on_a_silent_peer),
	    cmocka_unit_test(test_open_on_a_closed_peer_is_epipe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
