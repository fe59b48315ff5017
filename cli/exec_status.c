/*
 * A command run in a VM as `vmci vm run` and `vmci shell` pass it through:
 * its output copied to our stdout and stderr, its end turned into the exit
 * status a shell would report.
 */
#include "cli/cli.h"

#include "vmcore/vmcore.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

void cli_write_output(void *ctx, int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a closed stdout loses output, not the run */
		p += n;
		len -= (size_t)n;
	}
}

int cli_exec_status(const struct vm_exec_result *res)
{
	switch (res->kind) {
	case VM_EXITED:
		return res->code;
	case VM_SIGNALED:
		return 128 + res->code;
	case VM_TIMED_OUT:
		return EXIT_VM_TIMEOUT;
	case VM_CANCELLED:
		return 128 + SIGINT; /* a cancel comes from Ctrl-C */
	case VM_START_FAILED:
		return res->code == ENOENT ? 127 : 126;
	}
	return EXIT_VM_ERROR;
}
