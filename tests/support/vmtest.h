/* Helpers shared by the VM tests and benchmarks. */
#ifndef VMCI_TESTS_VMTEST_H
#define VMCI_TESTS_VMTEST_H

#include "runner/runner.h"

/* Output of one command, split by stream. */
struct capture {
	struct buf out;
	struct buf err;
};

/* A vm_output_fn that appends to a struct capture. */
void capture_output(void *ctx, int fd, const void *data, size_t len);
void capture_free(struct capture *c);

/*
 * Boots a VM from image for a test; fails the test (cmocka) with the
 * error message when it cannot.
 */
struct runner_guest *vmtest_boot(const char *image);

/* Runs argv in the guest, capturing output; asserts no infrastructure error. */
struct vm_exec_result vmtest_run(struct vm *vm, const char *const *argv, struct capture *out);

/* Runs `sh -c script`; returns its result, capturing output (out may be NULL). */
struct vm_exec_result vmtest_sh(struct vm *vm, const char *script, struct capture *out);

/* The value of "key=value" on a line of c's stdout, or "" (a static buffer). */
const char *vmtest_value(struct capture *c, const char *key);

/*
 * The isolation a revert gives, checked on a running guest: a snapshot is
 * saved, job 1 leaves files in / and /tmp, a write to the disk (the
 * DISK_WRITE=... shell command, read back by DISK_READ=...), a background
 * process, a changed /etc/environment and 50 MB of memory in use; after
 * the snapshot is loaded, job 2 sees none of it. Fails the test otherwise.
 */
void vmtest_check_isolation(struct vm *vm, const char *disk_write, const char *disk_read);
/* The same against snapshot, which the VM has already (NULL: saved first, as above). */
void vmtest_check_isolation_at(struct vm *vm, const char *snapshot, const char *disk_write,
			       const char *disk_read);

#endif
