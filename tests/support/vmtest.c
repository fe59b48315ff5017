/* Helpers shared by the VM tests and benchmarks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The value of "key=value" on a line of out, or "" (static buffer). */
const char *vmtest_value(struct capture *c, const char *key)
{
	static char v[256];
	v[0] = 0;
	size_t klen = strlen(key);
	for (const char *p = buf_cstr(&c->out); p && *p;) {
		const char *nl = strchrnul(p, '\n');
		if ((size_t)(nl - p) > klen && !strncmp(p, key, klen) && p[klen] == '=')
			snprintf(v, sizeof(v), "%.*s", (int)(nl - p - klen - 1), p + klen + 1);
		p = *nl ? nl + 1 : nl;
	}
	return v;
}

/* ---- isolation ----------------------------------------------------------- */

/*
 * Counts job 1's background processes: their command line names
 * job1-sleeper, spelled so that no script that looks for them matches.
 */
#define SLEEPERS "grep -ls 'job1[-]sleeper' /proc/[0-9]*/cmdline | wc -l"

/*
 * What job 1 leaves behind: files in / and /tmp, a write to the disk
 * (disk_write, read back by disk_read), a background process, a changed
 * environment file and 50 MB of memory in use.
 */
static const char job1[] =
    "set -e\n"
    "echo job1 > /job1-root\n"
    "echo job1 > /tmp/job1-tmp\n"
    "eval \"$DISK_WRITE\"\n"
    "n=job1; setsid sh -c \"sleep 1000; : $n-sleeper\" </dev/null >/dev/null 2>&1 &\n"
    "echo 'JOB1_LEAK=yes' >> /etc/environment\n"
    "dd if=/dev/urandom of=/dev/shm/fill bs=1M count=50 2>/dev/null\n"
    "echo disk=$(eval \"$DISK_READ\")\n"
    "echo sleepers=$(" SLEEPERS ")\n"
    "echo avail=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)\n";

/* What job 2 sees. */
static const char job2[] = "echo root=$(cat /job1-root 2>/dev/null)\n"
			   "echo tmp=$(cat /tmp/job1-tmp 2>/dev/null)\n"
			   "echo fill=$(ls /dev/shm/fill 2>/dev/null)\n"
			   "echo 3 > /proc/sys/vm/drop_caches\n"
			   "echo disk=$(eval \"$DISK_READ\")\n"
			   "echo sleepers=$(" SLEEPERS ")\n"
			   "echo env=$(cat /etc/environment 2>/dev/null | grep -c JOB1_LEAK)\n"
			   "echo avail=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)\n";

void vmtest_check_isolation(struct vm *vm, const char *disk_write, const char *disk_read)
{
	vmtest_check_isolation_at(vm, NULL, disk_write, disk_read);
}

void vmtest_check_isolation_at(struct vm *vm, const char *snapshot, const char *disk_write,
			       const char *disk_read)
{
	const char *env[] = {disk_write, disk_read, NULL};
	struct capture c = {0};
	const char *avail_argv[] = {"awk", "/MemAvailable/ {print $2}", "/proc/meminfo", NULL};
	vmtest_run(vm, avail_argv, &c);
	long long avail0 = atoll(buf_cstr(&c.out));
	capture_free(&c);
	struct vmci_err err = {0};
	if (!snapshot && vm_snapshot_save(vm, "isolation", &err))
		fail_msg("%s", err.msg);

	const char *argv1[] = {"sh", "-c", job1, NULL};
	struct vm_exec_opts o = {
	    .argv = argv1, .env = env, .stdin_fd = -1, .on_output = capture_output, .ctx = &c};
	struct vm_exec_result r;
	assert_int_equal(vm_exec(vm, &o, &r, &err), 0);
	if (r.code != 0)
		fail_msg("job 1 failed: %s%s", buf_cstr(&c.out), buf_cstr(&c.err));
	assert_string_equal(vmtest_value(&c, "disk"), "job1-disk");
	assert_string_equal(vmtest_value(&c, "sleepers"), "1");
	assert_true(atoll(vmtest_value(&c, "avail")) < avail0 - 45 * 1024);
	capture_free(&c);

	if (vm_snapshot_load(vm, snapshot ? snapshot : "isolation", &err))
		fail_msg("%s", err.msg);
	const char *argv2[] = {"sh", "-c", job2, NULL};
	o.argv = argv2;
	assert_int_equal(vm_exec(vm, &o, &r, &err), 0);
	assert_int_equal(r.code, 0);
	assert_string_equal(vmtest_value(&c, "root"), "");
	assert_string_equal(vmtest_value(&c, "tmp"), "");
	assert_string_equal(vmtest_value(&c, "fill"), "");
	assert_string_not_equal(vmtest_value(&c, "disk"), "job1-disk");
	assert_string_equal(vmtest_value(&c, "sleepers"), "0");
	assert_string_equal(vmtest_value(&c, "env"), "0");
	/* The memory job 1 filled is free again (some slack for page cache). */
	assert_true(atoll(vmtest_value(&c, "avail")) > avail0 - 10 * 1024);
	capture_free(&c);
}
