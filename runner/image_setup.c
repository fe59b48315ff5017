/*
 * A recipe's setup commands, run in a VM booted from the unpublished build
 * (images hands the runner an img_setup_vm through img_ensure_with: images
 * and vmcore do not know each other).
 *
 * The VM runs on the build's own disk, so whatever the commands change is
 * kept. Each command runs as root through `sh -c`, in order; the first
 * that fails fails the build, with its last output in the message. Before
 * the VM stops, the root is synced and remounted read-only, so the golden
 * disk is published clean. The VM has network (NAT) when the request asks
 * for it (installing packages), else none.
 */
#include "runner/guest.h"
#include "runner/run_dir.h"
#include "runner/build.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Setup may install and compile things: more than a job's default. */
#define SETUP_MEMORY_MB	 1024
#define SETUP_CPUS	 2
#define SETUP_TAIL_BYTES 1024

/* The last output of a command, to explain its failure. */
static void keep_tail(void *ctx, int fd, const void *data, size_t len)
{
	struct buf *tail = ctx;
	buf_append(tail, data, len);
	if (tail->len > SETUP_TAIL_BYTES)
		buf_consume(tail, tail->len - SETUP_TAIL_BYTES);
}

static int run_one(struct vm *vm, const struct img_setup_vm *req, size_t i, struct vmci_err *err)
{
	const char *argv[] = {"sh", "-c", req->commands[i], NULL};
	struct buf tail = {0};
	struct vm_exec_opts opts = {
	    .argv = argv, .stdin_fd = -1, .on_output = keep_tail, .ctx = &tail};
	struct vm_exec_result res;
	int rc = vm_exec(vm, &opts, &res, err);
	if (rc) {
		vmci_err_wrap(err, "setup command %zu (%s)", i + 1, req->commands[i]);
	} else if (res.kind != VM_EXITED || res.code != 0) {
		char how[64];
		vm_exec_result_describe(&res, how, sizeof(how));
		rc = vmci_err_set(err, EIO, "setup command %zu of image %s (%s) %s%s%s", i + 1,
				  req->image, req->commands[i], how, tail.len ? ": " : "",
				  buf_cstr(&tail));
	}
	buf_free(&tail);
	return rc;
}

int runner_image_setup(void *ctx, const struct img_setup_vm *req, struct vmci_err *err)
{
	enum vm_arch arch;
	if (vm_arch_parse(req->arch, &arch))
		return vmci_err_set(err, EINVAL, "image '%s' has an unknown architecture '%s'",
				    req->image, req->arch);
	char run_dir[PATH_MAX];
	int lock;
	int rc = runner_make_run_dir("vmci-setup", run_dir, sizeof(run_dir), &lock, err);
	if (rc)
		return rc;
	struct vm_spec spec = {
	    .arch = arch,
	    .cpus = SETUP_CPUS,
	    .memory_mb = SETUP_MEMORY_MB,
	    .kernel = req->kernel,
	    .initrd = req->initrd,
	    .cmdline = req->cmdline,
	    .disk = req->disk,
	    .run_dir = run_dir,
	    .network = req->network ? VM_NET_NAT : VM_NET_NONE,
	};
	struct vm *vm = NULL;
	rc = vm_start(&spec, &vm, err);
	if (rc)
		vmci_err_wrap(err, "cannot boot image %s to run its setup commands", req->image);
	for (size_t i = 0; !rc && i < req->ncommands; i++) {
		if (req->progress)
			req->progress(req->progress_ctx, "running setup commands", (long long)i,
				      (long long)req->ncommands);
		log_info("image %s: setup: %s", req->image, req->commands[i]);
		rc = run_one(vm, req, i, err);
	}
	if (!rc) {
		const char *argv[] = {"sh", "-c", "sync; mount -o remount,ro / 2>/dev/null; sync",
				      NULL};
		struct vm_exec_opts opts = {.argv = argv, .stdin_fd = -1};
		struct vm_exec_result res;
		rc = vm_exec(vm, &opts, &res, err);
		if (rc)
			vmci_err_wrap(err, "cannot sync the disk of image %s after setup",
				      req->image);
	}
	vm_stop(vm, VMCI_STOP_FLUSH_TIMEOUT_MS);
	runner_remove_run_dir(run_dir, lock);
	return rc;
}
