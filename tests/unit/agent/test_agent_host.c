/*
 * The agent binary, run on the host as an ordinary process (--no-init)
 * against a unix socket this test listens on: the protocol end to end,
 * including a reconnect in the middle of a command's output.
 *
 * Needs $VMCI_BUILD/agent/vmci-agent-<machine> (default build/); skipped
 * when it is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/protocol.h"

struct host {
	char dir[64];
	char sock[96];
	int listen_fd, fd;
	pid_t agent;
	uint64_t seq;	     /* our next seq */
	uint64_t last_guest; /* the last guest seq received */
	struct agent_decoder dec;
	struct agent_writer w;
	/* the last frame received, copied */
	struct agent_header h;
	uint8_t *payload;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *grow(void *p, size_t size)
{
	void *q = realloc(p, size);
	assert_non_null(q);
	return q;
}

static void accept_agent(struct host *h)
{
	struct pollfd p = {.fd = h->listen_fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1);
	h->fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(h->fd >= 0);
	agent_decoder_free(&h->dec);
	agent_decoder_init(&h->dec, true);
}

static void send_frame(struct host *h, uint16_t type, uint32_t stream)
{
	long n = agent_writer_finish(&h->w, type, stream, h->seq++);
	assert_true(n > 0);
	assert_int_equal(send(h->fd, h->w.buf, (size_t)n, MSG_NOSIGNAL), n);
}

static void begin(struct host *h)
{
	agent_writer_begin(&h->w);
}

/* Returns 1 with the next frame in h->h / h->payload, 0 on timeout, -1 on EOF. */
static int recv_frame(struct host *h, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		struct agent_frame f;
		char why[256];
		int rc = agent_decoder_next(&h->dec, &f, why, sizeof(why));
		if (rc < 0)
			fail_msg("the agent broke the protocol: %s", why);
		if (rc == 1) {
			h->h = f.h;
			free(h->payload);
			h->payload = malloc(f.h.len + 1);
			memcpy(h->payload, f.payload, f.h.len);
			h->payload[f.h.len] = 0;
			if (f.h.seq)
				h->last_guest = f.h.seq;
			return 1;
		}
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = {.fd = h->fd, .events = POLLIN};
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		uint8_t buf[65536];
		ssize_t n = recv(h->fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return -1;
		assert_int_equal(agent_decoder_feed(&h->dec, buf, (size_t)n), 0);
	}
}

/* Receives frames until one of type on stream (others are skipped), within timeout_ms. */
static void expect_frame(struct host *h, uint16_t type, uint32_t stream, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0 || recv_frame(h, (int)left) != 1)
			fail_msg("no %s frame on stream %u", agent_type_name(type), stream);
		if (h->h.type == type && h->h.stream == stream)
			return;
	}
}

static void ack(struct host *h)
{
	begin(h);
	agent_put_u64(&h->w, h->last_guest);
	send_frame(h, AGENT_ACK, 0);
}

/* HELLO; checks HELLO_REPLY and returns its next_seq. */
static uint64_t hello(struct host *h, uint64_t resume_after)
{
	begin(h);
	agent_put_u32(&h->w, AGENT_PROTOCOL_VERSION);
	agent_put_u64(&h->w, resume_after);
	send_frame(h, AGENT_HELLO, 0);
	expect_frame(h, AGENT_HELLO_REPLY, 0, 5000);
	struct agent_frame f = {.h = h->h, .payload = h->payload};
	struct agent_reader r;
	agent_reader_init(&r, &f);
	assert_int_equal(agent_get_u32(&r), AGENT_PROTOCOL_VERSION);
	assert_true(agent_get_u32(&r) & AGENT_CAP_EXEC);
	uint64_t next = agent_get_u64(&r);
	char **info = agent_get_strv(&r);
	assert_true(agent_reader_done(&r));
	struct utsname u;
	uname(&u);
	char arch[128];
	snprintf(arch, sizeof(arch), "arch=%s", u.machine);
	assert_string_equal(info[0], arch);
	agent_strv_free(info);
	h->dec.expect_seq = next;
	h->last_guest = next - 1;
	return next;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct utsname u;
	uname(&u);
	char bin[256];
	const char *build = getenv("VMCI_BUILD");
	snprintf(bin, sizeof(bin), "%s/agent/vmci-agent-%s", build ? build : "build", u.machine);
	if (access(bin, X_OK)) {
		fprintf(stderr, "skipping: %s is not built\n", bin);
		*state = NULL;
		return 0;
	}
	struct host *h = calloc(1, sizeof(*h));
	snprintf(h->dir, sizeof(h->dir), "/tmp/vmci-test-agent-XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	snprintf(h->sock, sizeof(h->sock), "%s/agent.sock", h->dir);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->sock);
	h->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(h->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(h->listen_fd, 4), 0);
	h->agent = fork();
	if (h->agent == 0) {
		execl(bin, bin, "--no-init", "--channel", h->sock, (char *)NULL);
		_exit(127);
	}
	h->seq = 1;
	agent_decoder_init(&h->dec, true);
	accept_agent(h);
	assert_int_equal(hello(h, 0), 1);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	struct host *h = *state;
	if (!h)
		return 0;
	kill(h->agent, SIGKILL);
	waitpid(h->agent, NULL, 0);
	close(h->fd);
	close(h->listen_fd);
	nftw(h->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	agent_decoder_free(&h->dec);
	agent_writer_free(&h->w);
	free(h->payload);
	free(h);
	return 0;
}

#define NEED_AGENT(h)                                                                              \
	do {                                                                                       \
		if (!(h))                                                                          \
			skip();                                                                    \
	} while (0)

static void exec(struct host *h, uint32_t stream, uint32_t flags, uint32_t timeout_ms,
		 const char *const *argv)
{
	const char *env[] = {"VMCI_TEST=1", NULL};
	struct agent_exec e = {
	    .flags = flags, .timeout_ms = timeout_ms, .argv = (char **)argv, .env = (char **)env};
	begin(h);
	agent_exec_encode(&h->w, &e);
	send_frame(h, AGENT_EXEC, stream);
}

struct output {
	char *out, *err;
	size_t out_len, err_len;
	struct agent_exit exit;
};

/* Collects a command's output up to its EXIT, acknowledging as it goes. */
static void collect(struct host *h, uint32_t stream, struct output *o, int timeout_ms)
{
	memset(o, 0, sizeof(*o));
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0 || recv_frame(h, (int)left) != 1)
			fail_msg("no exit on stream %u", stream);
		if (h->h.stream != stream)
			continue;
		if (h->h.type == AGENT_STDOUT || h->h.type == AGENT_STDERR) {
			char **buf = h->h.type == AGENT_STDOUT ? &o->out : &o->err;
			size_t *len = h->h.type == AGENT_STDOUT ? &o->out_len : &o->err_len;
			assert_true(h->h.len <= AGENT_DATA_CHUNK);
			*buf = grow(*buf, *len + h->h.len + 1);
			memcpy(*buf + *len, h->payload, h->h.len);
			*len += h->h.len;
			(*buf)[*len] = 0;
		} else if (h->h.type == AGENT_EXIT) {
			struct agent_frame f = {.h = h->h, .payload = h->payload};
			char why[128];
			assert_int_equal(agent_exit_decode(&f, &o->exit, why, sizeof(why)), 0);
			ack(h);
			return;
		}
		ack(h);
	}
}

static void output_free(struct output *o)
{
	free(o->out);
	free(o->err);
}

static void test_exec_streams_stdout_stderr_and_exit(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	const char *argv[] = {"sh", "-c", "echo out; echo err >&2; echo $VMCI_TEST; exit 3", NULL};
	exec(h, 1, 0, 0, argv);
	struct output o;
	collect(h, 1, &o, 5000);
	assert_string_equal(o.out, "out\n1\n");
	assert_string_equal(o.err, "err\n");
	assert_int_equal(o.exit.kind, AGENT_EXIT_EXITED);
	assert_int_equal(o.exit.code, 3);
	output_free(&o);
}

static void test_exec_of_missing_program_fails_to_start(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	const char *argv[] = {"/nonexistent/program", NULL};
	exec(h, 2, 0, 0, argv);
	struct output o;
	collect(h, 2, &o, 5000);
	assert_int_equal(o.exit.kind, AGENT_EXIT_START_FAILED);
	assert_int_equal(o.exit.code, ENOENT);
	output_free(&o);
}

static void test_stdin_frames_feed_the_command(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	const char *argv[] = {"cat", NULL};
	exec(h, 3, AGENT_EXEC_STDIN, 0, argv);
	begin(h);
	agent_put_bytes(&h->w, "abc", 3);
	send_frame(h, AGENT_STDIN, 3);
	begin(h);
	send_frame(h, AGENT_STDIN, 3); /* empty: end of input */
	struct output o;
	collect(h, 3, &o, 5000);
	assert_string_equal(o.out, "abc");
	assert_int_equal(o.exit.kind, AGENT_EXIT_EXITED);
	assert_int_equal(o.exit.code, 0);
	output_free(&o);
}

static void test_timeout_and_cancel_kill_the_command(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	const char *argv[] = {"sh", "-c", "sleep 30; echo never", NULL};
	int64_t start = now_ms();
	exec(h, 4, 0, 200, argv);
	exec(h, 5, 0, 0, argv);
	begin(h);
	send_frame(h, AGENT_CANCEL, 5);
	struct output o;
	collect(h, 5, &o, 5000);
	assert_int_equal(o.exit.kind, AGENT_EXIT_CANCELLED);
	output_free(&o);
	collect(h, 4, &o, 5000);
	assert_int_equal(o.exit.kind, AGENT_EXIT_TIMED_OUT);
	assert_int_equal(o.exit.code, SIGKILL);
	assert_null(o.out);
	output_free(&o);
	assert_true(now_ms() - start < 3000);
}

static void test_exit_is_not_held_by_a_grandchild(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	const char *argv[] = {"sh", "-c", "sleep 20 & echo started", NULL};
	int64_t start = now_ms();
	exec(h, 6, 0, 0, argv);
	struct output o;
	collect(h, 6, &o, 5000);
	assert_string_equal(o.out, "started\n");
	assert_int_equal(o.exit.kind, AGENT_EXIT_EXITED);
	assert_true(now_ms() - start < 2000);
	output_free(&o);
	begin(h);
	send_frame(h, AGENT_CANCEL, 6); /* ended already: ignored */
}

static void test_ping_echoes_its_bytes(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	begin(h);
	agent_put_u64(&h->w, 0x1122334455667788ull);
	send_frame(h, AGENT_PING, 7);
	expect_frame(h, AGENT_PONG, 7, 5000);
	assert_int_equal(h->h.len, 8);
	assert_int_equal(h->payload[0], 0x88);
}

/* Reads frames to the RESULT on stream (DATA into *data); returns its status. */
static int32_t wait_result(struct host *h, uint32_t stream, uint8_t **data, size_t *len, char **msg)
{
	if (data) {
		*data = NULL;
		*len = 0;
	}
	int64_t deadline = now_ms() + 5000;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0 || recv_frame(h, (int)left) != 1)
			fail_msg("no result on stream %u", stream);
		ack(h);
		if (h->h.stream != stream)
			continue;
		if (h->h.type == AGENT_DATA && data) {
			*data = grow(*data, *len + h->h.len);
			memcpy(*data + *len, h->payload, h->h.len);
			*len += h->h.len;
			continue;
		}
		assert_int_equal(h->h.type, AGENT_RESULT);
		struct agent_frame f = {.h = h->h, .payload = h->payload};
		struct agent_reader r;
		agent_reader_init(&r, &f);
		int32_t status = agent_get_i32(&r);
		char *m = agent_get_str(&r);
		assert_true(agent_reader_done(&r));
		if (msg)
			*msg = m;
		else
			free(m);
		return status;
	}
}

static void put_tar(struct host *h, uint32_t stream, const char *dir, const uint8_t *data,
		    size_t len)
{
	begin(h);
	agent_put_str(&h->w, dir);
	send_frame(h, AGENT_PUT, stream);
	for (size_t off = 0; off < len; off += 10000) {
		begin(h);
		agent_put_bytes(&h->w, data + off, len - off < 10000 ? len - off : 10000);
		send_frame(h, AGENT_PUT_DATA, stream);
	}
	begin(h);
	send_frame(h, AGENT_PUT_DATA, stream);
}

static void test_get_then_put_copies_a_directory(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	char path[512], dst[128];
	snprintf(path, sizeof(path), "%s/out", h->dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/out/result.txt", h->dir);
	FILE *f = fopen(path, "w");
	for (int i = 0; i < 20000; i++)
		fprintf(f, "line %d\n", i);
	fclose(f);

	snprintf(path, sizeof(path), "%s/out", h->dir);
	begin(h);
	agent_put_str(&h->w, path);
	send_frame(h, AGENT_GET, 8);
	uint8_t *tar;
	size_t len;
	assert_int_equal(wait_result(h, 8, &tar, &len, NULL), 0);
	assert_true(len > 100000);

	snprintf(dst, sizeof(dst), "%s/copy/here", h->dir);
	put_tar(h, 9, dst, tar, len);
	assert_int_equal(wait_result(h, 9, NULL, NULL, NULL), 0);
	free(tar);
	snprintf(path, sizeof(path), "cmp -s %s/out/result.txt %s/out/result.txt", h->dir, dst);
	assert_int_equal(system(path), 0);

	/* A glob matching nothing: the two zero blocks. */
	snprintf(path, sizeof(path), "%s/*.none", h->dir);
	begin(h);
	agent_put_str(&h->w, path);
	send_frame(h, AGENT_GET, 10);
	assert_int_equal(wait_result(h, 10, &tar, &len, NULL), 0);
	assert_int_equal(len, 1024);
	free(tar);
}

static void test_put_of_garbage_fails_with_a_message(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	uint8_t junk[2048];
	memset(junk, 'j', sizeof(junk));
	char dst[256];
	snprintf(dst, sizeof(dst), "%s/junk", h->dir);
	put_tar(h, 11, dst, junk, sizeof(junk));
	char *msg;
	assert_int_not_equal(wait_result(h, 11, NULL, NULL, &msg), 0);
	assert_non_null(strstr(msg, "checksum"));
	free(msg);
}

static void test_output_waits_for_acks(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	const size_t total = 20u << 20;
	char script[64];
	snprintf(script, sizeof(script), "head -c %zu /dev/zero", total);
	const char *argv[] = {"sh", "-c", script, NULL};
	exec(h, 12, 0, 0, argv);
	size_t got = 0;
	/*
	 * Read until the agent goes quiet for a second (a slow machine gets 30 s).
	 * It must stop near AGENT_UNACKED_MAX: what it retains counts frame
	 * headers and bookkeeping too, so the payload can fall a little short.
	 */
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		if (recv_frame(h, 1000) != 1)
			break;
		got += h->h.type == AGENT_STDOUT ? h->h.len : 0;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < 30);
	assert_true(got >= AGENT_UNACKED_MAX / 2);
	assert_true(got <= AGENT_UNACKED_MAX + 2 * AGENT_DATA_CHUNK);
	assert_true(got < total);
	ack(h);
	struct output o;
	collect(h, 12, &o, 10000);
	assert_int_equal(got + o.out_len, total);
	assert_int_equal(o.exit.kind, AGENT_EXIT_EXITED);
	output_free(&o);
}

static void test_reconnect_mid_output_loses_nothing(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	const char *argv[] = {"seq", "1", "300000", NULL};
	exec(h, 13, 0, 0, argv);
	char *out = NULL;
	size_t len = 0;
	/* Part of the output, acknowledging only some of it, then the connection drops. */
	for (int i = 0; i < 6; i++) {
		assert_int_equal(recv_frame(h, 5000), 1);
		assert_int_equal(h->h.type, AGENT_STDOUT);
		out = grow(out, len + h->h.len + 1);
		memcpy(out + len, h->payload, h->h.len);
		len += h->h.len;
		if (i == 2)
			ack(h);
	}
	uint64_t have = h->last_guest;
	close(h->fd);

	accept_agent(h);
	assert_int_equal(hello(h, have), have + 1);
	struct output o;
	collect(h, 13, &o, 10000);
	out = grow(out, len + o.out_len + 1);
	memcpy(out + len, o.out, o.out_len);
	len += o.out_len;
	out[len] = 0;
	assert_int_equal(o.exit.kind, AGENT_EXIT_EXITED);
	output_free(&o);

	/* Every line once, in order. */
	char *p = out;
	for (int i = 1; i <= 300000; i++) {
		char *end;
		long v = strtol(p, &end, 10);
		if (v != i || *end != '\n')
			fail_msg("line %d reads %ld", i, v);
		p = end + 1;
	}
	assert_int_equal(*p, 0);
	free(out);
}

static void test_malformed_frame_gets_an_error_and_a_new_hello_recovers(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	uint8_t junk[AGENT_HEADER_SIZE];
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(send(h->fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
	expect_frame(h, AGENT_ERROR, 0, 5000);
	ack(h); /* before the new hello: dropped, like any frame */
	hello(h, h->last_guest);
	begin(h);
	send_frame(h, AGENT_PING, 14);
	expect_frame(h, AGENT_PONG, 14, 5000);
}

static void test_stale_partial_frame_before_hello_is_skipped(void **state)
{
	struct host *h = *state;
	NEED_AGENT(h);
	/*
	 * The first bytes of an ACK, then a HELLO: what the agent sees when a
	 * connection ended without a hang-up it could notice (a migration).
	 */
	begin(h);
	agent_put_u64(&h->w, 0);
	long n = agent_writer_finish(&h->w, AGENT_ACK, 0, h->seq);
	assert_true(n > 20);
	assert_int_equal(send(h->fd, h->w.buf, 20, MSG_NOSIGNAL), 20);
	hello(h, h->last_guest);
	/* No ERROR follows: the reconnect was recognized. */
	assert_int_equal(recv_frame(h, 1700), 0);
	begin(h);
	send_frame(h, AGENT_PING, 15);
	expect_frame(h, AGENT_PONG, 15, 5000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_exec_streams_stdout_stderr_and_exit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_exec_of_missing_program_fails_to_start, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_stdin_frames_feed_the_command, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout_and_cancel_kill_the_command, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_exit_is_not_held_by_a_grandchild, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ping_echoes_its_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_then_put_copies_a_directory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_put_of_garbage_fails_with_a_message, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_output_waits_for_acks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reconnect_mid_output_loses_nothing, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_malformed_frame_gets_an_error_and_a_new_hello_recovers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_partial_frame_before_hello_is_skipped, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
