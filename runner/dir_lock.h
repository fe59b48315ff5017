/*
 * Private to the runner: directories that belong to a live process. The
 * owner holds flock on the directory for as long as it lives; the kernel
 * drops the lock when the owner dies, however it dies, so the lock (not a
 * pid, which may be reused) tells a directory in use from one left
 * behind. Used by VMs' run directories (run_dir.c) and local runs'
 * output directories (local_run.c).
 */
#ifndef VMCI_RUNNER_DIR_LOCK_H
#define VMCI_RUNNER_DIR_LOCK_H

#include <stdbool.h>

/*
 * Locks the directory at path, waiting for the lock. Returns an fd
 * (close-on-exec, so no child holds it) that holds the lock until
 * closed, or a negative errno. The caller checks dir_lock_same after:
 * a cleaner may have removed a directory made a moment ago.
 */
int dir_lock_hold(const char *path);

/*
 * Locks the directory at path when nobody holds it (its owner died), and
 * checks that the lock is on what path names now. Returns the fd to close
 * after removing the directory, or -1 when it is in use or gone.
 */
int dir_lock_take_abandoned(const char *path);

/* Whether fd is still the directory at path. */
bool dir_lock_same(int fd, const char *path);

#endif
