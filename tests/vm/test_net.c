/*
 * Guest networking in real VMs (busybox-x86_64): a VM without network
 * reaches nothing; a NAT VM fetches from the Debian archive, but reaches
 * neither a server on the host's loopback nor another guest; networking
 * works after a snapshot revert (which keeps the guest's network as it
 * was) and after a template start without a new boot; the network helper never outlives its VM,
 * also when the process that ran the VM is killed with SIGKILL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmtest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IMAGE "busybox-x86_64"
/* What a NAT guest fetches: small, always there, and reached by these machines. */
#define RELEASE_URL "http://deb.debian.org/debian/dists/bookworm/Release"
/*
 * A fetch of it, and a name lookup, each printing OK only when they worked
 * (the guest's busybox wget crashes with -q or -T: its progress goes to
 * /dev/null, and timeout(1) bounds it).
 */
#define FETCH                                                                                      \
	"timeout 60 wget -O - " RELEASE_URL " 2>/dev/null | grep -q '^Origin: Debian' && "         \
	"echo FETCH-OK; "
#define RESOLVE "nslookup deb.debian.org >/dev/null 2>&1 && echo RESOLVE-OK; "

static char work[PATH_MAX]; /* templates */

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(work, sizeof(work), "%s/vmci-net-XXXXXX", tmp ? tmp : "/tmp");
	return mkdtemp(work) ? 0 : -1;
}

static int teardown(void **state)
{
	fs_rm_rf(work, NULL);
	return 0;
}

static struct runner_guest *boot(enum vm_network net)
{
	struct runner_guest *g = NULL;
	struct vmci_err err = {0};
	struct runner_guest_opts opts = {.network = net};
	if (runner_guest_boot(IMAGE, &opts, &g, &err) != 0)
		fail_msg("cannot boot %s: %s", IMAGE, err.msg);
	return g;
}

/* Runs script in the guest and returns its stdout (static buffer). */
static const char *sh_out(struct vm *vm, const char *script)
{
	static char out[8192];
	struct capture c = {0};
	vmtest_sh(vm, script, &c);
	snprintf(out, sizeof(out), "%s", buf_cstr(&c.out) ? buf_cstr(&c.out) : "");
	capture_free(&c);
	return out;
}

static void assert_online(struct vm *vm, const char *when)
{
	const char *out = sh_out(vm, RESOLVE FETCH);
	if (!strstr(out, "RESOLVE-OK") || !strstr(out, "FETCH-OK"))
		fail_msg("%s: the guest cannot resolve and fetch %s (it printed '%s')", when,
			 RELEASE_URL, out);
}

static void test_a_vm_without_network_cannot_resolve_or_connect_anywhere(void **state)
{
	struct runner_guest *g = boot(VM_NET_NONE);
	const char *out =
	    sh_out(g->vm, "ls /sys/class/net; " RESOLVE FETCH
			  "timeout 5 nc -w 3 10.0.2.2 80 </dev/null && echo CONNECT-OK; "
			  "timeout 5 nc -w 3 151.101.2.132 80 </dev/null && echo "
			  "CONNECT-OK; true");
	assert_string_equal(out, "lo\n");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

/* A TCP server on the host's 127.0.0.1; returns its listening fd, *port its port. */
static int listen_on_loopback(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/*
 * A guest script that tries port at every address that could lead out of
 * the guest to the host: the gateway, the DNS forwarder, the guest's own
 * address, 127.0.0.1, and each IPv4 address of the host's interfaces.
 * It prints "CONNECT-OK <addr>" for each that accepted: that proves
 * nothing where an egress proxy of the host's network answers every
 * outbound connection, so the tests look at the listening end instead.
 */
static void connect_script(char *out, size_t size, int port)
{
	int n = snprintf(out, size, "for a in 10.0.2.2 10.0.2.3 10.0.2.15 127.0.0.1");
	struct ifaddrs *ifs = NULL, *i;
	if (getifaddrs(&ifs) == 0) {
		for (i = ifs; i; i = i->ifa_next) {
			char addr[INET_ADDRSTRLEN];
			if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
				continue;
			inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, addr,
				  sizeof(addr));
			n += snprintf(out + n, size - (size_t)n, " %s", addr);
		}
		freeifaddrs(ifs);
	}
	snprintf(out + n, size - (size_t)n,
		 "; do echo hello | timeout 5 nc -w 3 $a %d && echo CONNECT-OK $a; done; true",
		 port);
}

static void test_a_nat_vm_reaches_the_debian_archive_but_not_the_host_loopback(void **state)
{
	struct runner_guest *g = boot(VM_NET_NAT);
	assert_online(g->vm, "after boot");

	int port, lfd = listen_on_loopback(&port);
	char script[2048];
	connect_script(script, sizeof(script), port);
	sh_out(g->vm, script);
	/* Nothing reached the server. */
	int c = accept(lfd, NULL, NULL);
	assert_int_equal(c, -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	close(lfd);
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

static void test_a_nat_vm_cannot_reach_another_guest(void **state)
{
	struct runner_guest *a = boot(VM_NET_NAT), *b = boot(VM_NET_NAT);
	/* b listens on every address it has; a tries every way out towards it. */
	assert_int_equal(
	    vmtest_sh(b->vm, "(nc -l -p 5555 >/tmp/got 2>&1; echo done >>/tmp/got) & sleep 1", NULL)
		.code,
	    0);
	char script[2048];
	connect_script(script, sizeof(script), 5555);
	sh_out(a->vm, script);
	/* Nothing reached b's listener: it still waits, with nothing received. */
	assert_string_equal(sh_out(b->vm, "cat /tmp/got"), "");
	runner_guest_destroy(a, VMCI_STOP_TIMEOUT_MS);
	runner_guest_destroy(b, VMCI_STOP_TIMEOUT_MS);
}

static void test_networking_works_after_a_snapshot_revert(void **state)
{
	struct runner_guest *g = boot(VM_NET_NAT);
	struct vmci_err err = {0};
	if (vm_snapshot_save(g->vm, "clean", &err))
		fail_msg("%s", err.msg);
	/* The job breaks its network; the revert must bring back a working one. */
	vmtest_sh(g->vm, "ip link set eth0 down; ip addr flush dev eth0; echo >/etc/resolv.conf",
		  NULL);
	if (vm_snapshot_load(g->vm, "clean", &err))
		fail_msg("%s", err.msg);
	assert_online(g->vm, "after a revert");
	if (vm_snapshot_load(g->vm, "clean", &err))
		fail_msg("%s", err.msg);
	assert_online(g->vm, "after a second revert");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

/*
 * A revert brings the network back as the snapshot had it, with the same
 * network helper: vmci does not take the link down and up again (which
 * costs an emulated guest ~100 ms per revert, and would drop a route the
 * snapshot has), and the guest is online.
 */
static void test_a_snapshot_revert_keeps_the_guest_network_as_it_was(void **state)
{
	struct runner_guest *g = boot(VM_NET_NAT);
	struct vmci_err err = {0};
	/* A route of the guest's own: taking the link down would delete it. */
	vmtest_sh(g->vm, "ip route add 192.0.2.0/24 dev eth0", NULL);
	if (vm_snapshot_save(g->vm, "clean", &err))
		fail_msg("%s", err.msg);
	if (vm_snapshot_load(g->vm, "clean", &err))
		fail_msg("%s", err.msg);
	assert_non_null(strstr(sh_out(g->vm, "ip route"), "192.0.2.0/24 dev eth0"));
	assert_online(g->vm, "after a revert that kept the network");
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
}

static void test_networking_works_after_a_template_start(void **state)
{
	struct runner_guest *g = NULL;
	struct vmci_err err = {0};
	struct runner_guest_opts opts = {.network = VM_NET_NAT};
	for (int i = 0; i < 2; i++) {
		if (runner_guest_restore(IMAGE, &opts, work, RUNNER_TEMPLATE_MAPPED, &g, &err))
			fail_msg("%s", err.msg);
		/* Started from saved state: the agent never booted in this VM. */
		assert_int_equal(strlen(vm_instance_id(g->vm)), 32);
		assert_online(g->vm, "after a template start");
		runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	}
}

/* The pids of processes whose parent is ppid and whose command is name. */
static int children_named(pid_t ppid, const char *name, pid_t *out, int max)
{
	int n = 0;
	FILE *ps = popen("ps -eo pid=,ppid=,comm=", "r");
	char comm[64];
	int pid, pp;
	/* Debian's passt runs passt.avx2 where the CPU has it. */
	while (ps && fscanf(ps, "%d %d %63s", &pid, &pp, comm) == 3)
		if (pp == ppid && !strncmp(comm, name, strlen(name)) && n < max)
			out[n++] = pid;
	if (ps)
		pclose(ps);
	return n;
}

/* Whether pid still runs (a zombie does not). */
static bool running(pid_t pid)
{
	char path[64], stat[256] = "";
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t n = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[n] = 0;
	const char *close_paren = strrchr(stat, ')');
	return close_paren && close_paren[1] == ' ' && close_paren[2] != 'Z';
}

static bool gone_within(pid_t pid, int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		if (!running(pid))
			return true;
		struct timespec ts = {.tv_nsec = 50 * 1000000};
		nanosleep(&ts, NULL);
	}
	return !running(pid);
}

static void test_the_network_helper_dies_with_its_vm(void **state)
{
	/* A clean stop. */
	struct runner_guest *g = boot(VM_NET_NAT);
	pid_t helper[4];
	assert_int_equal(children_named(getpid(), "passt", helper, 4), 1);
	runner_guest_destroy(g, VMCI_STOP_TIMEOUT_MS);
	assert_false(running(helper[0]));

	/* The process that runs the VM is killed with SIGKILL. */
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(ready[0]);
		struct runner_guest *cg = NULL;
		struct vmci_err err = {0};
		struct runner_guest_opts opts = {.network = VM_NET_NAT};
		int rc = runner_guest_boot(IMAGE, &opts, &cg, &err);
		pid_t qemu = rc ? 0 : vm_pid(cg->vm);
		if (write(ready[1], &qemu, sizeof(qemu)) != sizeof(qemu))
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	pid_t qemu = 0;
	assert_int_equal(read(ready[0], &qemu, sizeof(qemu)), sizeof(qemu));
	close(ready[0]);
	assert_true(qemu > 0);
	assert_int_equal(children_named(child, "passt", helper, 4), 1);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	assert_true(gone_within(qemu, 10000));
	assert_true(gone_within(helper[0], 10000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_vm_without_network_cannot_resolve_or_connect_anywhere),
	    cmocka_unit_test(test_a_nat_vm_reaches_the_debian_archive_but_not_the_host_loopback),
	    cmocka_unit_test(test_a_nat_vm_cannot_reach_another_guest),
	    cmocka_unit_test(test_networking_works_after_a_snapshot_revert),
	    cmocka_unit_test(test_a_snapshot_revert_keeps_the_guest_network_as_it_was),
	    cmocka_unit_test(test_networking_works_after_a_template_start),
	    cmocka_unit_test(test_the_network_helper_dies_with_its_vm),
	};
	return cmocka_run_group_tests_name("vm networking", tests, setup, teardown);
}
