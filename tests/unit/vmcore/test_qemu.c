/*
 * vmcore/qemu.c against the real QEMU, with guests too small to need a
 * Linux kernel: a multiboot image (x86_64) and a raw image (aarch64) that
 * print a line on the serial console and halt. They check the whole
 * command line (machine, console, QMP, agent port, disk) in well under a
 * second each, under TCG. Tests skip when the QEMU binary is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmcore/qemu.h"
#include "vmcore/qmp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUEST_READY "vmci test guest ready"

/*
 * x86_64: a multiboot header (flags bit 16: load the file as is at 1 MiB),
 * then 32-bit code: cli; print the message on COM1 (port 0x3f8); hlt.
 */
static const unsigned char guest_x86_64[] = {
    0x02, 0xb0, 0xad, 0x1b, 0x00, 0x00, 0x01, 0x00, 0xfe, 0x4f, 0x51, 0xe4, 0x00, 0x00, 0x10, 0x00,
    0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x10, 0x00,
    0xfa, 0xbe, 0x35, 0x00, 0x10, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee,
    0xeb, 0xf8, 0xf4, 0xeb, 0xfd, 'v',	'm',  'c',  'i',  ' ',	't',  'e',  's',  't',	' ',  'g',
    'u',  'e',	's',  't',  ' ',  'r',	'e',  'a',  'd',  'y',	'\n', 0x00,
};

/* aarch64: print the message on the PL011 of the virt machine (0x09000000); wfi. */
static const unsigned char guest_aarch64[] = {
    0x01, 0x01, 0x00, 0x58, 0x22, 0x01, 0x00, 0x10, 0x40, 0x14, 0x40, 0x38, 0x60, 0x00, 0x00, 0x34,
    0x20, 0x00, 0x00, 0x39, 0xfd, 0xff, 0xff, 0x17, 0x7f, 0x20, 0x03, 0xd5, 0xff, 0xff, 0xff, 0x17,
    0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 'v',  'm',	'c',  'i',  ' ',  't',	'e',  's',
    't',  ' ',	'g',  'u',  'e',  's',	't',  ' ',  'r',  'e',	'a',  'd',  'y',  '\n', 0x00,
};

struct fixture {
	char dir[PATH_MAX];
	char kernel[PATH_MAX + 16];
	char initrd[PATH_MAX + 16];
	char disk[PATH_MAX + 16];
	struct vm_spec spec;
	struct qemu_paths paths;
	struct qemu_proc proc;
};

static void write_file(const char *path, const void *data, size_t len, size_t pad_to)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	if (pad_to > len)
		assert_int_equal(ftruncate(fd, (off_t)pad_to), 0);
	close(fd);
}

static bool have_binary(const char *name)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
	return system(cmd) == 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(f->dir, sizeof(f->dir), "%s/vmci-qemu-XXXXXX", tmp);
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->kernel, sizeof(f->kernel), "%s/kernel", f->dir);
	snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
	snprintf(f->disk, sizeof(f->disk), "%s/disk.qcow2", f->dir);
	/* Padded: QEMU reads the first 8 KiB looking for kernel headers. */
	write_file(f->kernel, guest_x86_64, sizeof(guest_x86_64), 8192);
	write_file(f->initrd, "initrd\n", 7, 0);
	f->spec = (struct vm_spec){
	    .arch = VM_ARCH_X86_64,
	    .kernel = f->kernel,
	    .initrd = f->initrd,
	    .run_dir = f->dir,
	};
	qemu_paths_init(&f->paths, f->dir);
	f->proc.pidfd = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	qemu_reap(&f->proc, 0);
	fs_rm_rf(f->dir, NULL);
	free(f);
	return 0;
}

/* Waits until the console log ends with the guest's line. */
static void wait_for_console(struct fixture *f, const char *text, int timeout_ms)
{
	char tail[4096] = "";
	int64_t deadline = clock_ms() + timeout_ms;
	while (clock_ms() < deadline) {
		qemu_console_tail(&f->paths, tail, sizeof(tail));
		if (strstr(tail, text))
			return;
		usleep(20000);
	}
	fail_msg("console never showed '%s'; it holds: %s", text, tail);
}

static struct qmp *open_qmp(struct fixture *f)
{
	struct vmci_err err = {0};
	int fd = qemu_connect_socket(f->paths.qmp, &f->proc, 10000, &err);
	if (fd < 0)
		fail_msg("%s", err.msg);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	struct qmp *q = NULL;
	if (qmp_open(fd, 10000, &q, &err) < 0)
		fail_msg("%s", err.msg);
	return q;
}

static void launch(struct fixture *f, enum vm_accel accel)
{
	struct vmci_err err = {0};
	if (qemu_launch(&f->spec, accel, &f->paths, -1, &f->proc, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(f->proc.pid > 0);
}

/* ---- without QEMU ------------------------------------------------------ */

static void test_paths_are_inside_run_dir(void **state)
{
	struct qemu_paths p;
	qemu_paths_init(&p, "/run/vmci/vm1");
	assert_string_equal(p.qmp, "/run/vmci/vm1/qmp.sock");
	assert_string_equal(p.agent, "/run/vmci/vm1/agent.sock");
	assert_string_equal(p.console, "/run/vmci/vm1/console.log");
}

static void test_console_tail_starts_at_a_line_and_defuses_bytes(void **state)
{
	struct fixture *f = *state;
	const char log[] = "first line is long\r\nsecond \033[31mred\033[0m\r\nthird\xff\r\n\r\n";
	write_file(f->paths.console, log, sizeof(log) - 1, 0);
	/* 11 bytes: "\nthird\xff\r\n\r\n"; the partial line before is dropped. */
	char tail[12];
	qemu_console_tail(&f->paths, tail, sizeof(tail));
	assert_string_equal(tail, "third?");
	char all[256];
	qemu_console_tail(&f->paths, all, sizeof(all));
	assert_string_equal(all, "first line is long\nsecond ?[31mred?[0m\nthird?");
}

static void test_console_tail_of_missing_log_is_empty(void **state)
{
	struct fixture *f = *state;
	char tail[64] = "stale";
	qemu_console_tail(&f->paths, tail, sizeof(tail));
	assert_string_equal(tail, "");
}

static void test_connect_times_out_without_a_listener(void **state)
{
	struct fixture *f = *state;
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	assert_int_equal(qemu_connect_socket(f->paths.qmp, NULL, 60, &err), -ETIMEDOUT);
	assert_true(clock_ms() - t0 >= 60);
	assert_non_null(strstr(err.msg, f->paths.qmp));
}

static void test_missing_kernel_fails_before_starting(void **state)
{
	struct fixture *f = *state;
	f->spec.kernel = "/nonexistent/vmlinuz";
	struct vmci_err err = {0};
	assert_int_equal(qemu_launch(&f->spec, VM_ACCEL_TCG, &f->paths, -1, &f->proc, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "kernel /nonexistent/vmlinuz"));
	assert_int_equal(f->proc.pid, 0);
}

static void test_long_run_dir_is_refused(void **state)
{
	struct fixture *f = *state;
	char dir[PATH_MAX + 128];
	snprintf(dir, sizeof(dir), "%s/%0120d", f->dir, 0);
	qemu_paths_init(&f->paths, dir);
	struct vmci_err err = {0};
	assert_int_equal(qemu_launch(&f->spec, VM_ACCEL_TCG, &f->paths, -1, &f->proc, &err),
			 -ENAMETOOLONG);
	assert_non_null(strstr(err.msg, "shorter run directory"));
}

static void test_missing_binary_names_the_package(void **state)
{
	struct fixture *f = *state;
	char *path = strdup(getenv("PATH") ? getenv("PATH") : "");
	setenv("PATH", f->dir, 1);
	struct vmci_err err = {0};
	int rc = qemu_launch(&f->spec, VM_ACCEL_TCG, &f->paths, -1, &f->proc, &err);
	setenv("PATH", path, 1);
	free(path);
	assert_int_equal(rc, -ENOENT);
	/* The one wording of a missing program (pkg_err_missing), with packages.txt's package. */
	assert_string_equal(err.msg, "qemu-system-x86_64 not found (install the Debian package "
				     "qemu-system-x86, or run: make deps)");
	assert_int_equal(f->proc.pid, 0);
}

/* ---- with QEMU --------------------------------------------------------- */

static void test_x86_64_guest_boots_under_tcg(void **state)
{
	struct fixture *f = *state;
	if (!have_binary("qemu-system-x86_64"))
		skip();
	bool disk = have_binary("qemu-img");
	if (disk) {
		char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", f->disk, "1M", NULL};
		struct vmci_err err = {0};
		if (run_command(argv, NULL, &err) < 0)
			fail_msg("%s", err.msg);
		f->spec.disk = f->disk;
	}
	f->spec.cpus = 2;
	f->spec.memory_mb = 128;
	launch(f, VM_ACCEL_TCG);
	struct qmp *q = open_qmp(f);
	struct vmci_err err = {0};

	json_t *ret = NULL;
	assert_int_equal(qmp_execute(q, "query-status", NULL, &ret, 5000, &err), 0);
	assert_true(json_is_true(json_object_get(ret, "running")));
	json_decref(ret);
	assert_int_equal(qmp_execute(q, "query-cpus-fast", NULL, &ret, 5000, &err), 0);
	assert_int_equal(json_array_size(ret), 2);
	json_decref(ret);
	if (disk) {
		assert_int_equal(qmp_execute(q, "query-block", NULL, &ret, 5000, &err), 0);
		json_t *dev = json_array_get(ret, 0);
		assert_non_null(strstr(
		    json_string_value(json_object_get(json_object_get(dev, "inserted"), "file")),
		    "disk.qcow2"));
		json_decref(ret);
	}

	/* The agent's virtio-serial socket is served too. */
	int agent = qemu_connect_socket(f->paths.agent, &f->proc, 5000, &err);
	assert_true(agent >= 0);
	close(agent);

	wait_for_console(f, GUEST_READY, 10000);
	assert_false(qemu_exited(&f->proc));

	assert_int_equal(qmp_execute(q, "quit", NULL, NULL, 5000, &err), 0);
	qemu_reap(&f->proc, 5000);
	char how[64];
	qemu_describe_exit(&f->proc, how, sizeof(how));
	assert_string_equal(how, "exited with status 0");
	assert_int_equal(f->proc.pidfd, -1);
	qmp_close(q);
}

/*
 * A job's or a pool's disk is deleted with its VM, so QEMU never waits for
 * it to reach stable storage (a guest's sync, a snapshot save and a revert
 * would each wait for an fsync); a disk that outlives its VM (an image or
 * a template being built) is flushed whenever the guest asks. QEMU says
 * which in query-block: cache.no-flush.
 */
static bool disk_ignores_flushes(struct fixture *f, bool disposable)
{
	char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", f->disk, "1M", NULL};
	struct vmci_err err = {0};
	if (run_command(argv, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	f->spec.disk = f->disk;
	f->spec.disk_disposable = disposable;
	launch(f, VM_ACCEL_TCG);
	struct qmp *q = open_qmp(f);
	json_t *ret = NULL;
	assert_int_equal(qmp_execute(q, "query-block", NULL, &ret, 5000, &err), 0);
	json_t *cache =
	    json_object_get(json_object_get(json_array_get(ret, 0), "inserted"), "cache");
	assert_non_null(cache);
	assert_true(json_is_true(json_object_get(cache, "writeback")));
	bool ignored = json_is_true(json_object_get(cache, "no-flush"));
	json_decref(ret);
	qmp_close(q);
	return ignored;
}

/* How many io_uring instances process pid holds open. */
static int io_urings_of(pid_t pid)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char path[PATH_MAX], target[256];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		ssize_t len = readlink(path, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = '\0';
			n += strstr(target, "io_uring") != NULL;
		}
	}
	closedir(d);
	return n;
}

/*
 * QEMU reads a snapshot's memory from the disk in small requests: through
 * io_uring where the host allows it (no hand-off to a thread per request),
 * through its thread pool where it does not.
 */
static void test_a_disk_is_read_through_io_uring_where_the_host_allows_it(void **state)
{
	struct fixture *f = *state;
	if (!have_binary("qemu-system-x86_64") || !have_binary("qemu-img"))
		skip();
	struct io_uring_params params;
	memset(&params, 0, sizeof(params));
	long ring = syscall(__NR_io_uring_setup, 1, &params);
	if (ring >= 0)
		close((int)ring);
	disk_ignores_flushes(f, true);
	int rings = io_urings_of(f->proc.pid);
	if (ring >= 0)
		assert_true(rings >= 1);
	else
		assert_int_equal(rings, 0);
}

static void test_a_disposable_disk_is_never_flushed_to_stable_storage(void **state)
{
	if (!have_binary("qemu-system-x86_64") || !have_binary("qemu-img"))
		skip();
	assert_true(disk_ignores_flushes(*state, true));
}

static void test_a_kept_disk_is_flushed_when_the_guest_asks(void **state)
{
	if (!have_binary("qemu-system-x86_64") || !have_binary("qemu-img"))
		skip();
	assert_false(disk_ignores_flushes(*state, false));
}

/*
 * QEMU 7.2 under TCG loses guest writes in a live migration of a RAM
 * block whose length is a multiple of 256 KiB (see vm_memory_kb): a TCG
 * guest's memory is 8 KiB over its MiBs, in anonymous memory, in a file
 * (a warm-pool VM's memory is its template's file, and it moves too) and
 * in the named backend the destination of such a move has. That the
 * padding keeps every write of a move is test_migrate's (tests/vm).
 */
static void assert_base_memory(struct fixture *f, long long bytes)
{
	launch(f, VM_ACCEL_TCG);
	struct qmp *q = open_qmp(f);
	json_t *ret = NULL;
	assert_int_equal(qmp_execute(q, "query-memory-size-summary", NULL, &ret, 5000, NULL), 0);
	assert_int_equal(json_integer_value(json_object_get(ret, "base-memory")), bytes);
	json_decref(ret);
	qmp_close(q);
}

static void test_a_tcg_guest_has_8_kib_over_its_mibs(void **state)
{
	struct fixture *f = *state;
	if (!have_binary("qemu-system-x86_64"))
		skip();
	f->spec.memory_mb = 128;
	assert_base_memory(f, (128LL << 20) + (8 << 10));
}

static void test_a_tcg_guest_with_a_named_anonymous_backend_has_the_same_8_kib(void **state)
{
	struct fixture *f = *state;
	if (!have_binary("qemu-system-x86_64"))
		skip();
	/* The destination of a warm-pool VM's move: same backend name and size, no file. */
	f->spec.memory_mb = 128;
	f->spec.mem_backend = true;
	assert_base_memory(f, (128LL << 20) + (8 << 10));
}

static void test_a_tcg_guest_with_its_memory_in_a_file_has_the_same_8_kib(void **state)
{
	struct fixture *f = *state;
	if (!have_binary("qemu-system-x86_64"))
		skip();
	char ram[PATH_MAX + 16];
	snprintf(ram, sizeof(ram), "%s/ram", f->dir);
	f->spec.memory_mb = 128;
	f->spec.mem_path = ram;
	f->spec.mem_shared = true;
	assert_base_memory(f, (128LL << 20) + (8 << 10));
	struct stat st;
	assert_int_equal(stat(ram, &st), 0);
	assert_int_equal(st.st_size, (128LL << 20) + (8 << 10));
}

static void test_aarch64_guest_boots_under_tcg(void **state)
{
	struct fixture *f = *state;
	if (!have_binary("qemu-system-aarch64"))
		skip();
	write_file(f->kernel, guest_aarch64, sizeof(guest_aarch64), 0);
	f->spec.arch = VM_ARCH_AARCH64;
	f->spec.cpus = 9; /* more than GICv2 allows */
	launch(f, VM_ACCEL_TCG);
	struct qmp *q = open_qmp(f);
	json_t *ret = NULL;
	assert_int_equal(qmp_execute(q, "query-cpus-fast", NULL, &ret, 5000, NULL), 0);
	assert_int_equal(json_array_size(ret), 9);
	json_decref(ret);
	wait_for_console(f, GUEST_READY, 10000);
	qmp_close(q);

	/* No grace period: killed. */
	qemu_reap(&f->proc, 0);
	char how[64];
	qemu_describe_exit(&f->proc, how, sizeof(how));
	assert_string_equal(how, "was killed by signal 9 (SIGKILL)");
}

static void test_qemu_failing_at_start_is_explained(void **state)
{
	struct fixture *f = *state;
	if (!have_binary("qemu-system-x86_64"))
		skip();
	write_file(f->kernel, "not a kernel\n", 13, 0);
	launch(f, VM_ACCEL_TCG);

	/* QEMU gives up on the kernel by itself. */
	for (int i = 0; i < 1000 && !qemu_exited(&f->proc); i++)
		usleep(10000);
	assert_true(qemu_exited(&f->proc));

	/* A caller still waiting for its socket learns how QEMU ended, and why. */
	struct vmci_err err = {0};
	assert_int_equal(qemu_connect_socket(f->paths.qmp, &f->proc, 10000, &err), -EPIPE);
	assert_non_null(strstr(err.msg, "QEMU exited with status 1 before opening"));
	assert_non_null(strstr(err.msg, "kernel"));
}

static void test_reap_is_idempotent(void **state)
{
	struct fixture *f = *state;
	qemu_reap(&f->proc, 0); /* never launched */
	if (!have_binary("qemu-system-x86_64"))
		skip();
	launch(f, VM_ACCEL_TCG);
	pid_t pid = f->proc.pid;
	qemu_reap(&f->proc, 0);
	qemu_reap(&f->proc, 1000);
	assert_true(qemu_exited(&f->proc));
	assert_int_equal(f->proc.pid, pid);
	assert_int_equal(kill(pid, 0), -1); /* reaped: gone, not a zombie */
}

static void test_qemu_dies_with_its_parent(void **state)
{
	struct fixture *f = *state;
	if (!have_binary("qemu-system-x86_64"))
		skip();
	/* Orphans are re-parented to us, so we can see how QEMU ended. */
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t parent = fork();
	assert_true(parent >= 0);
	if (parent == 0) {
		struct qemu_proc proc;
		pid_t qemu = 0;
		if (qemu_launch(&f->spec, VM_ACCEL_TCG, &f->paths, -1, &proc, NULL) == 0)
			qemu = proc.pid;
		ssize_t n = write(pipefd[1], &qemu, sizeof(qemu));
		_exit(n == sizeof(qemu) ? 0 : 1);
	}
	close(pipefd[1]);
	pid_t qemu = 0;
	assert_int_equal(read(pipefd[0], &qemu, sizeof(qemu)), sizeof(qemu));
	close(pipefd[0]);
	assert_int_equal(waitpid(parent, NULL, 0), parent);
	assert_true(qemu > 0);

	int status = 0;
	pid_t r = 0;
	for (int i = 0; i < 500 && r == 0; i++) {
		r = waitpid(qemu, &status, WNOHANG);
		if (r == 0)
			usleep(10000);
	}
	if (r == 0) {
		kill(qemu, SIGKILL);
		waitpid(qemu, NULL, 0);
		fail_msg("QEMU outlived its parent");
	}
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_paths_are_inside_run_dir),
	    T(test_console_tail_starts_at_a_line_and_defuses_bytes),
	    T(test_console_tail_of_missing_log_is_empty),
	    T(test_connect_times_out_without_a_listener),
	    T(test_missing_kernel_fails_before_starting),
	    T(test_long_run_dir_is_refused),
	    T(test_missing_binary_names_the_package),
	    T(test_x86_64_guest_boots_under_tcg),
	    T(test_a_disposable_disk_is_never_flushed_to_stable_storage),
	    T(test_a_kept_disk_is_flushed_when_the_guest_asks),
	    T(test_a_disk_is_read_through_io_uring_where_the_host_allows_it),
	    T(test_a_tcg_guest_has_8_kib_over_its_mibs),
	    T(test_a_tcg_guest_with_its_memory_in_a_file_has_the_same_8_kib),
	    T(test_a_tcg_guest_with_a_named_anonymous_backend_has_the_same_8_kib),
	    T(test_aarch64_guest_boots_under_tcg),
	    T(test_qemu_failing_at_start_is_explained),
	    T(test_reap_is_idempotent),
	    T(test_qemu_dies_with_its_parent),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
