/* Pseudo-terminals for commands a person types into (AGENT_EXEC_PTY). */
#include "agent/pty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

int agent_pty_open(uint16_t rows, uint16_t cols, int *master, int *slave)
{
	*master = *slave = -1;
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return -errno;
	char name[64];
	if (grantpt(m) || unlockpt(m) || ptsname_r(m, name, sizeof(name))) {
		int e = errno ? errno : EIO;
		close(m);
		return -e;
	}
	/*
	 * The slave is opened here, before the fork, and held until the child
	 * has it: a master whose slave was never opened reads EIO at once.
	 */
	int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		int e = errno;
		close(m);
		return -e;
	}
	struct winsize ws = {.ws_row = rows, .ws_col = cols};
	ioctl(m, TIOCSWINSZ, &ws);
	fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
	*master = m;
	*slave = s;
	return 0;
}

int agent_pty_child(int slave)
{
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		return -errno;
	for (int fd = 0; fd < 3; fd++)
		if (dup2(slave, fd) < 0)
			return -errno;
	if (slave > 2)
		close(slave);
	return 0;
}

void agent_pty_resize(struct agent_proc *p, uint16_t rows, uint16_t cols)
{
	/* The master is the output fd of a pty exec; a closed one means the command is gone. */
	if (p->kind != AGENT_PROC_EXEC || p->out_fd < 0 || !isatty(p->out_fd) || !rows || !cols)
		return;
	struct winsize ws = {.ws_row = rows, .ws_col = cols};
	ioctl(p->out_fd, TIOCSWINSZ, &ws);
}
