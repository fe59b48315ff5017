/* Running helper programs (apt-get, qemu-img, mke2fs) and reporting their failures. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Keeps the last lines of a stream: enough to explain a failure. */
static void keep_tail(struct buf *tail, const uint8_t *data, size_t n)
{
	buf_append(tail, data, n);
	if (tail->len > 4096)
		buf_consume(tail, tail->len - 4096);
}

int run_command(char *const argv[], struct buf *out, struct vmci_err *err)
{
	int out_pipe[2], err_pipe[2];
	if (pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC))
		return vmci_err_errno(err, errno, "cannot create a pipe for %s", argv[0]);

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
	/* A caller may block signals for a signal thread; the command gets a clean mask. */
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(out_pipe[1]);
	close(err_pipe[1]);
	if (rc != 0) {
		close(out_pipe[0]);
		close(err_pipe[0]);
		if (rc == ENOENT)
			return pkg_err_missing(err, argv[0]);
		return vmci_err_errno(err, rc, "cannot run %s", argv[0]);
	}

	struct buf tail = {0};
	struct pollfd fds[2] = {{.fd = out_pipe[0], .events = POLLIN},
				{.fd = err_pipe[0], .events = POLLIN}};
	int open_fds = 2;
	uint8_t chunk[65536];
	while (open_fds > 0) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(fds[i].fd, chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_fds--;
				continue;
			}
			if (i == 0 && out)
				buf_append(out, chunk, (size_t)n);
			else if (i == 1)
				keep_tail(&tail, chunk, (size_t)n);
		}
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		buf_free(&tail);
		return 0;
	}
	const char *why = buf_cstr(&tail);
	char what[64];
	if (WIFEXITED(status))
		snprintf(what, sizeof(what), "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(what, sizeof(what), "was killed by signal %d", WTERMSIG(status));
	rc = vmci_err_set(err, EIO, "%s %s%s%s", argv[0], what, *why ? ": " : "", why);
	buf_free(&tail);
	return rc;
}
