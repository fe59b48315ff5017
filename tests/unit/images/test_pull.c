/*
 * images/pull.c against a small HTTP server in this process (127.0.0.1):
 * a good download, one cut off half way and resumed with a Range request,
 * a wrong checksum, a 404, a server that ignores ranges, a refused
 * connection, a server that streams without end or announces too much or
 * sends more than it announced, a redirect loop. Publishing is a fake (img_pull_with) that makes
 * the file the root disk of a fake image, so no kernel is needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include "fake_image.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_LEN (3 << 20)

static const char *home;
static uint8_t *content; /* what the server serves */
static char content_sha[SHA256_HEX_LEN + 1];

/* ---- the server ------------------------------------------------------------ */

static struct {
	int fd;
	int port;
	pthread_mutex_t lock;
	int requests;	     /* requests served */
	char last_range[64]; /* the Range header of the last request, "" when none */
	char ranges[512];    /* every request's Range header or "none", each followed by ';' */
	bool cut_next;	     /* /cut.qcow2: send half of the body, then close */
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Returns -1 when the client went away. */
static int send_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Answers one request; every connection carries one (Connection: close). */
static void serve(int c)
{
	char req[4096] = "";
	size_t len = 0;
	while (len < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
		ssize_t n = recv(c, req + len, sizeof(req) - 1 - len, 0);
		if (n <= 0)
			return;
		len += (size_t)n;
		req[len] = 0;
	}
	char path[256] = "";
	sscanf(req, "GET %255s", path);
	const char *range = strcasestr(req, "\r\nRange: bytes=");
	long long from = range ? atoll(range + 15) : 0;
	pthread_mutex_lock(&srv.lock);
	srv.requests++;
	snprintf(srv.last_range, sizeof(srv.last_range), "%.*s",
		 range ? (int)strcspn(range + 2, "\r") : 0, range ? range + 2 : "");
	size_t used = strlen(srv.ranges);
	snprintf(srv.ranges + used, sizeof(srv.ranges) - used, "%s;",
		 range ? srv.last_range : "none");
	bool cut = !strcmp(path, "/cut.qcow2") && srv.cut_next;
	if (cut)
		srv.cut_next = false;
	pthread_mutex_unlock(&srv.lock);

	char head[512];
	if (!strcmp(path, "/loop.qcow2")) {
		int n = snprintf(head, sizeof(head),
				 "HTTP/1.1 302 Found\r\nLocation: /loop.qcow2\r\n"
				 "Content-Length: 0\r\nConnection: close\r\n\r\n");
		send_all(c, head, (size_t)n);
		return;
	}
	if (!strcmp(path, "/endless.qcow2") || !strcmp(path, "/liar.qcow2") ||
	    !strcmp(path, "/huge.qcow2")) {
		/*
		 * No end but the client's: no size, a size smaller than what comes, or a huge one.
		 */
		int n =
		    !strcmp(path, "/endless.qcow2")
			? snprintf(head, sizeof(head),
				   "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
		    : !strcmp(path, "/liar.qcow2")
			? snprintf(head, sizeof(head),
				   "HTTP/1.1 206 Partial Content\r\n"
				   "Content-Range: bytes 0-999/1000\r\nConnection: close\r\n\r\n")
			: snprintf(head, sizeof(head),
				   "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\n"
				   "Connection: close\r\n\r\n",
				   IMG_PULL_MAX_BYTES + 1);
		send_all(c, head, (size_t)n);
		while (send_all(c, content, FILE_LEN) == 0)
			;
		return;
	}
	bool known = !strcmp(path, "/good.qcow2") || !strcmp(path, "/cut.qcow2") ||
		     !strcmp(path, "/norange.qcow2");
	if (!known) {
		static const char body[] = "no such file\n";
		int n = snprintf(head, sizeof(head),
				 "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\n"
				 "Connection: close\r\n\r\n%s",
				 strlen(body), body);
		send_all(c, head, (size_t)n);
		return;
	}
	if (!strcmp(path, "/norange.qcow2"))
		range = NULL, from = 0; /* a server without range support */
	if (range && from >= FILE_LEN) {
		int n =
		    snprintf(head, sizeof(head),
			     "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%d\r\n"
			     "Content-Length: 0\r\nConnection: close\r\n\r\n",
			     FILE_LEN);
		send_all(c, head, (size_t)n);
		return;
	}
	int n = range ? snprintf(head, sizeof(head),
				 "HTTP/1.1 206 Partial Content\r\nContent-Length: %lld\r\n"
				 "Content-Range: bytes %lld-%d/%d\r\nConnection: close\r\n\r\n",
				 FILE_LEN - from, from, FILE_LEN - 1, FILE_LEN)
		      : snprintf(head, sizeof(head),
				 "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
				 "Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
				 FILE_LEN);
	send_all(c, head, (size_t)n);
	long long end = cut ? FILE_LEN / 2 : FILE_LEN;
	send_all(c, content + from, (size_t)(end - from));
}

static void *server_main(void *arg)
{
	for (;;) {
		int c = accept(srv.fd, NULL, NULL);
		if (c < 0)
			return NULL; /* the listening socket was shut down */
		serve(c);
		close(c);
	}
}

static void url(char *out, size_t size, const char *path)
{
	snprintf(out, size, "http://127.0.0.1:%d%s", srv.port, path);
}

/* ---- publishing: the file becomes a fake image's disk --------------------- */

static int published;

static int fake_import(void *ctx, const char *name, const char *file, img_progress_fn progress,
		       void *pctx, struct vmci_err *err)
{
	struct img_recipe r = {.name = name,
			       .arch = "x86_64",
			       .prepare = fake_prepare,
			       .build = fake_build,
			       .finish = fake_finish};
	struct img_boot boot;
	published++;
	fake.copy = file;
	int rc = img_ensure_recipe(&r, &boot, NULL, NULL, err);
	fake.copy = NULL;
	return rc;
}

static void part_path(char *out, const char *sha)
{
	snprintf(out, PATH_MAX, "%s/tmp/pull-%s.part", img_store_root(), sha);
}

/* Checks that name is published with the served bytes as its disk. */
static void assert_published(const char *name)
{
	struct img_boot img;
	struct vmci_err err = {0};
	if (img_find(name, &img, &err))
		fail_msg("%s is not published: %s", name, err.msg);
	char got[SHA256_HEX_LEN + 1];
	assert_int_equal(sha256_file(img.disk, got, NULL), 0);
	assert_string_equal(got, content_sha);
	char part[PATH_MAX];
	part_path(part, content_sha);
	assert_false(fs_exists(part));
}

struct progress_seen {
	long long done, total;
	int calls;
};

static void note_progress(void *ctx, const char *step, long long done, long long total)
{
	struct progress_seen *p = ctx;
	if (strcmp(step, "downloading"))
		return;
	p->done = done;
	p->total = total;
	p->calls++;
}

static int pull(const char *path, const char *sha, const char *name, struct vmci_err *err)
{
	char u[256];
	url(u, sizeof(u), path);
	return img_pull_with(u, sha, name, 0, fake_import, NULL, NULL, NULL, err);
}

static int reset(void **state)
{
	pthread_mutex_lock(&srv.lock);
	srv.requests = 0;
	srv.last_range[0] = 0;
	srv.ranges[0] = 0;
	pthread_mutex_unlock(&srv.lock);
	published = 0;
	return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_good_download_is_verified_and_published(void **state)
{
	char u[256];
	url(u, sizeof(u), "/good.qcow2");
	struct progress_seen p = {0};
	struct vmci_err err = {0};
	if (img_pull_with(u, content_sha, "good", 0, fake_import, NULL, note_progress, &p, &err))
		fail_msg("pull: %s", err.msg);
	assert_published("good");
	assert_int_equal(srv.requests, 1);
	assert_string_equal(srv.last_range, "");
	assert_true(p.calls > 0);
	assert_int_equal(p.done, FILE_LEN);
	assert_int_equal(p.total, FILE_LEN);
}

static void test_cut_download_is_resumed_with_a_range_request(void **state)
{
	srv.cut_next = true;
	struct vmci_err err = {0};
	assert_int_equal(pull("/cut.qcow2", content_sha, "resumed", &err), -ECONNRESET);
	assert_non_null(strstr(err.msg, "cut off"));
	assert_non_null(strstr(err.msg, "run the same pull again to resume"));
	assert_int_equal(published, 0);
	char part[PATH_MAX];
	part_path(part, content_sha);
	struct stat st;
	assert_int_equal(stat(part, &st), 0);
	assert_int_equal(st.st_size, FILE_LEN / 2);

	if (pull("/cut.qcow2", content_sha, "resumed", &err))
		fail_msg("resumed pull: %s", err.msg);
	assert_int_equal(srv.requests, 2);
	char want[64];
	snprintf(want, sizeof(want), "Range: bytes=%d-", FILE_LEN / 2);
	assert_string_equal(srv.last_range, want);
	assert_published("resumed");
}

static void test_wrong_checksum_is_refused_and_nothing_published(void **state)
{
	char wrong[SHA256_HEX_LEN + 1];
	memset(wrong, 'a', SHA256_HEX_LEN);
	wrong[SHA256_HEX_LEN] = 0;
	struct vmci_err err = {0};
	assert_int_equal(pull("/good.qcow2", wrong, "wrong", &err), -EBADMSG);
	assert_non_null(strstr(err.msg, wrong));
	assert_non_null(strstr(err.msg, content_sha));
	assert_non_null(strstr(err.msg, "nothing was published"));
	assert_int_equal(published, 0);
	struct img_boot img;
	assert_int_equal(img_find("wrong", &img, NULL), -ENOENT);
	char part[PATH_MAX];
	part_path(part, wrong);
	assert_false(fs_exists(part));
}

static void test_not_found_says_404(void **state)
{
	struct vmci_err err = {0};
	assert_int_equal(pull("/missing.qcow2", content_sha, "missing", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "returned HTTP 404 Not Found"));
	assert_non_null(strstr(err.msg, "/missing.qcow2"));
	assert_int_equal(published, 0);
	char part[PATH_MAX];
	part_path(part, content_sha);
	assert_false(fs_exists(part));
}

static void test_server_ignoring_the_range_starts_over(void **state)
{
	char part[PATH_MAX];
	part_path(part, content_sha);
	assert_int_equal(fs_mkdir_p(img_store_root(), 0755, NULL), 0);
	assert_int_equal(fs_write_atomic(part, "garbage that is not the file", 28, 0644, NULL), 0);
	struct vmci_err err = {0};
	if (pull("/norange.qcow2", content_sha, "norange", &err))
		fail_msg("pull: %s", err.msg);
	/* Asked to resume, got the whole file, started over. */
	assert_string_equal(srv.ranges, "Range: bytes=28-;none;");
	assert_published("norange");
}

static void test_complete_partial_is_published_without_download(void **state)
{
	char part[PATH_MAX];
	part_path(part, content_sha);
	assert_int_equal(fs_write_atomic(part, content, FILE_LEN, 0644, NULL), 0);
	struct vmci_err err = {0};
	if (pull("/good.qcow2", content_sha, "complete", &err))
		fail_msg("pull: %s", err.msg);
	assert_int_equal(srv.requests, 1); /* answered 416: nothing past the end */
	assert_published("complete");
}

static void test_concurrent_pull_of_the_same_file_is_refused(void **state)
{
	char part[PATH_MAX];
	part_path(part, content_sha);
	int fd = open(part, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	struct vmci_err err = {0};
	assert_int_equal(pull("/good.qcow2", content_sha, "twice", &err), -EBUSY);
	assert_non_null(strstr(err.msg, "another"));
	close(fd);
	unlink(part);
}

static void test_refused_connection_and_bad_input_say_what_failed(void **state)
{
	/* A port nothing listens on: bind one, note it, close it. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	close(s);
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/x.qcow2", ntohs(a.sin_port));
	struct vmci_err err = {0};
	assert_int_equal(
	    img_pull_with(u, content_sha, "refused", 0, fake_import, NULL, NULL, NULL, &err),
	    -ECONNREFUSED);
	assert_non_null(strstr(err.msg, "cannot connect to 127.0.0.1"));

	assert_int_equal(pull("/good.qcow2", "1234", "short", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "64 hex digits"));
	assert_int_equal(img_pull_with("ftp://127.0.0.1/x", content_sha, "ftp", 0, fake_import,
				       NULL, NULL, NULL, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "http"));
	assert_int_equal(published, 0);
}

/* A pull of path with a size limit of max bytes. */
static int pull_max(const char *path, long long max, const char *name, struct vmci_err *err)
{
	char u[256];
	url(u, sizeof(u), path);
	return img_pull_with(u, content_sha, name, max, fake_import, NULL, NULL, NULL, err);
}

static void assert_no_partial(void)
{
	char part[PATH_MAX];
	part_path(part, content_sha);
	assert_false(fs_exists(part));
}

static void test_endless_stream_stops_at_the_limit_and_keeps_nothing(void **state)
{
	struct vmci_err err = {0};
	assert_int_equal(pull_max("/endless.qcow2", 1 << 20, "endless", &err), -EFBIG);
	assert_non_null(strstr(err.msg, "/endless.qcow2"));
	assert_non_null(strstr(err.msg, "went past the limit of 1.0 MiB"));
	assert_non_null(strstr(err.msg, "--max-size"));
	assert_int_equal(published, 0);
	assert_no_partial();
}

static void test_announced_size_over_the_limit_is_refused_before_downloading(void **state)
{
	struct vmci_err err = {0};
	assert_int_equal(pull_max("/good.qcow2", 1 << 20, "toobig", &err), -EFBIG);
	assert_non_null(strstr(err.msg, "is 3.0 MiB, more than the limit of 1.0 MiB"));
	assert_non_null(strstr(err.msg, "nothing was downloaded"));
	assert_int_equal(published, 0);
	assert_no_partial();
	/* The default limit holds too. */
	assert_int_equal(pull_max("/huge.qcow2", 0, "huge", &err), -EFBIG);
	assert_non_null(strstr(err.msg, "more than the limit of 16.0 GiB"));
	assert_no_partial();
}

static void test_more_than_the_announced_size_is_refused(void **state)
{
	struct vmci_err err = {0};
	assert_int_equal(pull_max("/liar.qcow2", 0, "liar", &err), -EPROTO);
	assert_non_null(strstr(err.msg, "sent more than the 1000 bytes it announced"));
	assert_int_equal(published, 0);
	assert_no_partial();
}

static void test_redirect_loop_is_not_called_a_cut_off_download(void **state)
{
	struct vmci_err err = {0};
	assert_int_equal(pull_max("/loop.qcow2", 0, "loop", &err), -ELOOP);
	assert_non_null(strstr(err.msg, "redirect"));
	assert_null(strstr(err.msg, "run the same pull again"));
	assert_null(strstr(err.msg, "cut off"));
	assert_int_equal(published, 0);
	assert_no_partial();
}

int main(void)
{
	home = fake_home("vmci-pull");
	if (!home)
		return 1;
	content = malloc(FILE_LEN);
	for (size_t i = 0; i < FILE_LEN; i++)
		content[i] = (uint8_t)((i * 2654435761u) >> 13);
	struct sha256_ctx *h = sha256_new();
	sha256_update(h, content, FILE_LEN);
	sha256_finish(h, content_sha);

	srv.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	if (bind(srv.fd, (struct sockaddr *)&a, sizeof(a)) || listen(srv.fd, 16) ||
	    getsockname(srv.fd, (struct sockaddr *)&a, &alen))
		return 1;
	srv.port = ntohs(a.sin_port);
	pthread_t t;
	pthread_create(&t, NULL, server_main, NULL);

#define T(f) cmocka_unit_test_setup(f, reset)
	const struct CMUnitTest tests[] = {
	    T(test_good_download_is_verified_and_published),
	    T(test_cut_download_is_resumed_with_a_range_request),
	    T(test_wrong_checksum_is_refused_and_nothing_published),
	    T(test_not_found_says_404),
	    T(test_server_ignoring_the_range_starts_over),
	    T(test_complete_partial_is_published_without_download),
	    T(test_concurrent_pull_of_the_same_file_is_refused),
	    T(test_refused_connection_and_bad_input_say_what_failed),
	    T(test_endless_stream_stops_at_the_limit_and_keeps_nothing),
	    T(test_announced_size_over_the_limit_is_refused_before_downloading),
	    T(test_more_than_the_announced_size_is_refused),
	    T(test_redirect_loop_is_not_called_a_cut_off_download),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	shutdown(srv.fd, SHUT_RDWR);
	pthread_join(t, NULL);
	close(srv.fd);
	free(content);
	fs_rm_rf(home, NULL);
	return failed;
}
