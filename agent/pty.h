/*
 * Private to the guest agent: pseudo-terminals for EXEC with
 * AGENT_EXEC_PTY (a shell a person types into: job control, line
 * editing, window size). exec.c starts the command on the terminal,
 * serve.c forwards AGENT_RESIZE to it.
 */
#ifndef VMCI_AGENT_PTY_H
#define VMCI_AGENT_PTY_H

#include <stdint.h>

#include "agent/agent.h"

/*
 * Opens a new pseudo-terminal of rows x cols: *master (close-on-exec,
 * non-blocking) and *slave (close-on-exec; the child makes it its
 * controlling terminal with agent_pty_child). Returns 0 or -errno.
 */
int agent_pty_open(uint16_t rows, uint16_t cols, int *master, int *slave);

/*
 * In the child, after setsid(): makes slave the controlling terminal and
 * fds 0, 1 and 2. Returns 0 or -errno.
 */
int agent_pty_child(int slave);

/* Sets the terminal size of an exec on a pty (TIOCSWINSZ: its foreground gets SIGWINCH). */
void agent_pty_resize(struct agent_proc *p, uint16_t rows, uint16_t cols);

#endif
