/*
 * Guest networking: the passt process behind a NAT VM's NIC, and the
 * configuration the agent applies in the guest.
 *
 * passt and QEMU share one connected unix socket pair: passt gets one
 * end as an inherited fd (-F), QEMU the other (-netdev socket,fd=). No
 * socket file, no listening port: the pair is the only way in. passt
 * quits when its end reads EOF, which happens when the last holder of the
 * other end is gone: QEMU (which dies with vmci, PR_SET_PDEATHSIG) and
 * vmci itself until QEMU runs. So the helper never outlives its VM, also
 * when vmci is killed with SIGKILL, and vm_stop reaps it.
 */
#include "vmcore/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define NET_HELPER_FD	    3	 /* passt's end, as passt sees it */
#define NET_STOP_TIMEOUT_MS 1000 /* for passt to see EOF and quit before SIGKILL */
#define NET_CONFIG_TIMEOUT  10000

static const char *const net_names[] = {[VM_NET_NONE] = "none", [VM_NET_NAT] = "nat"};

const char *vm_network_name(enum vm_network net)
{
	return (size_t)net < ARRAY_LEN(net_names) ? net_names[net] : "?";
}

int vm_network_parse(const char *name, enum vm_network *out)
{
	for (size_t i = 0; name && i < ARRAY_LEN(net_names); i++) {
		if (!strcmp(name, net_names[i])) {
			*out = (enum vm_network)i;
			return 0;
		}
	}
	return -1;
}

int net_helper_start(const char *run_dir, struct net_helper *h, int *qemu_fd, struct vmci_err *err)
{
	h->pid = 0;
	*qemu_fd = -1;
	char path[PATH_MAX], log[PATH_MAX];
	if (path_search("passt", path, sizeof(path)) < 0)
		return pkg_err_missing(err, "passt");
	if (fs_path(log, sizeof(log), "%s/net.log", run_dir))
		return vmci_err_set(err, ENAMETOOLONG, "run directory path too long: %s", run_dir);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return vmci_err_errno(err, errno, "cannot create the network socket pair");

	/*
	 * -4: the guest gets IPv4 only (one address, one route, no router
	 * advertisements to go stale). --no-map-gw: the gateway is not the
	 * host's loopback. Static addressing (no DHCP): the agent applies it.
	 */
	char fd_arg[16], prefix[8];
	snprintf(fd_arg, sizeof(fd_arg), "%d", NET_HELPER_FD);
	snprintf(prefix, sizeof(prefix), "%d", VM_NET_PREFIX);
	char *const argv[] = {
	    path,	   "--foreground", "--quiet",	    "--ipv4-only",  "--fd",	 fd_arg,
	    "--no-map-gw", "--no-dhcp",	   "--address",	    VM_NET_ADDRESS, "--netmask", prefix,
	    "--gateway",   VM_NET_GATEWAY, "--dns-forward", VM_NET_DNS,	    NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND,
					 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_adddup2(&fa, sv[0], NET_HELPER_FD);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	/* Its own process group, as QEMU's: a terminal's ^C goes to vmci alone. */
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
	pid_t pid;
	int rc = posix_spawn(&pid, path, &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[0]);
	if (rc) {
		close(sv[1]);
		return vmci_err_errno(err, rc, "cannot start %s", path);
	}
	h->pid = pid;
	*qemu_fd = sv[1];
	log_debug("network helper %s started as pid %d", path, (int)pid);
	return 0;
}

/* Whether the helper has exited (and is reaped), waiting up to ms. */
static bool helper_gone(struct net_helper *h, int ms)
{
	int64_t deadline = clock_ms() + ms;
	for (;;) {
		pid_t r = waitpid(h->pid, NULL, WNOHANG);
		if (r == h->pid || (r < 0 && errno == ECHILD))
			return true;
		if (clock_ms() >= deadline)
			return false;
		struct timespec ts = {.tv_nsec = 5 * 1000000};
		nanosleep(&ts, NULL);
	}
}

void net_helper_stop(struct net_helper *h)
{
	if (h->pid <= 0)
		return;
	/* QEMU is gone, so passt has read EOF and is quitting by itself. */
	if (!helper_gone(h, NET_STOP_TIMEOUT_MS)) {
		kill(h->pid, SIGKILL);
		while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	h->pid = 0;
}

static int on_net_result(struct vm *vm, struct channel_op *op, const struct agent_frame *f,
			 struct vmci_err *err)
{
	struct agent_result *res = op->ctx;
	char why[128];
	if (f->h.type != AGENT_RESULT)
		return vmci_err_set(err, EPROTO, "the agent answered %s with a %s frame", op->what,
				    agent_type_name(f->h.type));
	if (agent_result_decode(f, res, why, sizeof(why)))
		return vmci_err_set(err, EPROTO, "the agent sent %s while %s", why, op->what);
	return 1;
}

int net_helper_check(struct vm *vm, struct vmci_err *err)
{
	if (vm->net.pid > 0 && helper_gone(&vm->net, 0)) {
		vm->net.pid = 0;
		return vmci_err_set(err, EPIPE, "the network helper (passt) exited; see %s/net.log",
				    vm->run_dir);
	}
	return 0;
}

int net_configure_guest(struct vm *vm, struct vmci_err *err)
{
	if (vm->network == VM_NET_NONE)
		return 0;
	if (!(vm->agent_caps & AGENT_CAP_NET))
		return vmci_err_set(err, ENOTSUP,
				    "the guest agent cannot configure a network (the image "
				    "predates it: rebuild it with vmci image build)");
	int rc = net_helper_check(vm, err);
	if (rc)
		return rc;
	struct agent_result res = {0};
	struct channel_op op = {
	    .what = "configuring the guest network",
	    .stream = channel_new_stream(vm),
	    .on_frame = on_net_result,
	    .ctx = &res,
	    .input_fd = -1,
	    .deadline_ms = clock_ms() + NET_CONFIG_TIMEOUT,
	};
	channel_begin(vm);
	agent_put_str(&vm->w, VM_NET_ADDRESS);
	agent_put_u8(&vm->w, VM_NET_PREFIX);
	agent_put_str(&vm->w, VM_NET_GATEWAY);
	agent_put_str(&vm->w, VM_NET_DNS);
	rc = channel_queue(vm, AGENT_NET_CONFIG, op.stream, err);
	if (!rc)
		rc = channel_run(vm, &op, err);
	if (!rc && res.status)
		rc = vmci_err_set(err, res.status, "configuring the guest network failed: %s",
				  *res.message ? res.message : strerror(res.status));
	agent_result_free(&res);
	return rc;
}
