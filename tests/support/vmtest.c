/* Helpers shared by the VM tests and benchmarks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <stdio.h>
#include <stdlib.h>

void capture_output(void *ctx, int fd, const void *data, size_t len)
{
	struct capture *c = ctx;
	buf_append(fd == 1 ? &c->out : &c->err, data, len);
}

void capture_free(struct capture *c)
{
	buf_free(&c->out);
	buf_free(&c->err);
}

struct runner_guest *vmtest_boot(const char *image)
{
	struct runner_guest *g = NULL;
	struct vmci_err err = {0};
	if (runner_guest_boot(image, NULL, &g, &err) != 0)
		fail_msg("cannot boot %s: %s", image, err.msg);
	return g;
}

struct vm_exec_result vmtest_run(struct vm *vm, const char *const *argv, struct capture *out)
{
	struct vm_exec_result res = {0};
	struct vmci_err err = {0};
	struct vm_exec_opts opts = {
	    .argv = argv,
	    .stdin_fd = -1,
	    .on_output = out ? capture_output : NULL,
	    .ctx = out,
	};
	if (vm_exec(vm, &opts, &res, &err) != 0)
		fail_msg("running %s failed: %s", argv[0], err.msg);
	return res;
}

struct vm_exec_result vmtest_sh(struct vm *vm, const char *script, struct capture *out)
{
	const char *argv[] = {"sh", "-c", script, NULL};
	return vmtest_run(vm, argv, out);
}
