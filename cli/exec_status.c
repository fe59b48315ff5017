/*
 * A command run in a VM as `vmci vm run` and `vmci shell` pass it through:
 * its output copied to our stdout and stderr, its end turned into the exit
 * status a shell would report.
 */
#include "cli/cli.h"

#include "common/common.h"
#include "vmcore/vmcore.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

void cli_write_output(void *ctx, int fd, const void *data, size_t len)
{
	/* A closed stdout loses output, not the run. */
	(void)io_write_all(fd, data, len);
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
