/*
 * Private to runner/pool.c: what a pool leaves on disk so that a later
 * pool can clean up after it when its process died without shutting down.
 *
 *   STATE_DIR/<pid>/owner          "<start time>": the pool process
 *   STATE_DIR/<pid>/vm-<qemu pid>  "<qemu pid> <start time> <run dir>"
 *
 * Start times (field 22 of /proc/<pid>/stat) tell a live process from a
 * later one that reuses its pid.
 */
#ifndef VMCI_RUNNER_POOL_RECORDS_H
#define VMCI_RUNNER_POOL_RECORDS_H

#include <limits.h>
#include <sys/types.h>

#include "common/common.h"

/*
 * Cleans up after dead pools under state_dir (kills their QEMUs, removes
 * their VMs' run directories and their records), then creates
 * state_dir/<our pid> with its owner record; its path goes to dir.
 */
int pool_records_open(const char *state_dir, char *dir, size_t size, struct vmci_err *err);

/* Records a VM (QEMU pid, run directory) of the pool in dir; the record's path goes to path. */
int pool_records_add(const char *dir, pid_t qemu, const char *run_dir, char *path, size_t size,
		     struct vmci_err *err);

/* Removes the pool's directory and everything in it (its VMs are gone). */
void pool_records_close(const char *dir);

#endif
