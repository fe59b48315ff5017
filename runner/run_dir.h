/*
 * runner: the private run directory of a VM, and the sweep of those whose
 * owner died.
 */
#ifndef VMCI_RUNNER_RUN_DIR_H
#define VMCI_RUNNER_RUN_DIR_H

#include <stddef.h>
#include "common/common.h"

/* ---- private run directories of VMs (runner/run_dir.c) -------------- */

/*
 * A VM's sockets and disk live in a run directory of its own,
 * $TMPDIR/<prefix>-XXXXXX (default /tmp: unix socket paths in it must
 * stay short), about 100 MB once its guest has written to its disk. Its
 * maker holds a lock on it (flock on the directory) for as long as it
 * keeps *lock open, and marks it as vmci's (a file RUNNER_RUN_DIR_MARK
 * holding the maker's pid) once the lock is held. A process that dies,
 * SIGKILL included, drops its locks: every runner_make_run_dir first
 * sweeps $TMPDIR of marked directories whose lock is free. Directories
 * without the mark are never touched.
 */
#define RUNNER_RUN_DIR_MARK ".vmci-owner"

/*
 * Sweeps $TMPDIR (runner_sweep_run_dirs), then creates, locks and marks a
 * run directory; its path goes to out and its lock to *lock (-1 on
 * error). Release both with runner_remove_run_dir.
 */
int runner_make_run_dir(const char *prefix, char *out, size_t size, int *lock,
			struct vmci_err *err);

/* Removes a run directory and then drops its lock (lock may be -1: only removes). */
void runner_remove_run_dir(const char *dir, int lock);

/*
 * Removes every run directory this process still holds, keeping their
 * locks: for a process about to end without its teardown (a second
 * Ctrl-C, runner/interrupt.c), whose VMs die with it.
 */
void runner_remove_own_run_dirs(void);

/*
 * Removes the marked run directories right under tmp whose lock nobody
 * holds (their maker died), owned by this user. Returns how many.
 */
int runner_sweep_run_dirs(const char *tmp);

#endif
