/*
 * PID-1 duties, for the agent as /init of the vmci initramfs: the kernel
 * gives it an empty root with no /proc, /dev or modules loaded.
 *
 * Kernel command line (all optional):
 *   vmci.root=/dev/vda     mount this disk and switch into it
 *   vmci.rootfstype=ext4   its filesystem (default: each the kernel knows)
 *   vmci.hostname=NAME     the hostname (default "vmci")
 *
 * Kernel modules are listed in /lib/modules/vmci/load-order, one path
 * (relative to that directory) per line, in dependency order; compressed
 * ones (.xz, .zst, .gz) are handed to the kernel to decompress.
 *
 * After a root switch the agent keeps running from the initramfs it was
 * loaded from (it never re-executes itself), as PID 1 of the new root.
 */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/module.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

#define MODULES_DIR  "/lib/modules/vmci"
#define ROOT_WAIT_MS 10000
#define NEWROOT	     "/newroot"

/* Mounts, making the mount point; a filesystem already there is fine. */
static void mount_fs(const char *source, const char *target, const char *type, unsigned long flags,
		     const char *data)
{
	if (mkdir(target, 0755) && errno != EEXIST)
		agent_log("cannot create %s: %s", target, strerror(errno));
	if (mount(source, target, type, flags, data) && errno != EBUSY)
		agent_log("cannot mount %s on %s: %s", type, target, strerror(errno));
}

void agent_ensure_stdio(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		/* The lowest free fd is this one: lower ones are open by now. */
		int c = open("/dev/console", O_RDWR | O_NOCTTY);
		if (c < 0)
			c = open("/dev/null", O_RDWR);
		if (c < 0)
			return;
		if (c != fd) {
			dup2(c, fd);
			close(c);
		}
	}
}

static void mount_basics(void)
{
	const unsigned long safe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	mount_fs("proc", "/proc", "proc", safe, NULL);
	mount_fs("sysfs", "/sys", "sysfs", safe, NULL);
	mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	agent_ensure_stdio(); /* the kernel had no /dev/console to give us without /dev */
	mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		 "gid=5,mode=620,ptmxmode=666");
	mount_fs("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_fs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	static const char *const links[][2] = {
	    {"/proc/self/fd", "/dev/fd"},
	    {"/proc/self/fd/0", "/dev/stdin"},
	    {"/proc/self/fd/1", "/dev/stdout"},
	    {"/proc/self/fd/2", "/dev/stderr"},
	};
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		if (symlink(links[i][0], links[i][1]) && errno != EEXIST)
			agent_log("cannot create %s: %s", links[i][1], strerror(errno));
}

static bool compressed(const char *path)
{
	const char *dot = strrchr(path, '.');
	return dot && (!strcmp(dot, ".xz") || !strcmp(dot, ".zst") || !strcmp(dot, ".gz"));
}

static void load_modules(void)
{
	FILE *f = fopen(MODULES_DIR "/load-order", "re");
	if (!f) {
		if (errno != ENOENT)
			agent_log("cannot read %s/load-order: %s", MODULES_DIR, strerror(errno));
		return;
	}
	char line[PATH_MAX];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		char *name = line + strspn(line, " \t");
		if (!name[0] || name[0] == '#')
			continue;
		char path[PATH_MAX + sizeof(MODULES_DIR)];
		snprintf(path, sizeof(path), "%s/%s", MODULES_DIR, name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			agent_log("cannot open module %s: %s", path, strerror(errno));
			continue;
		}
		int flags = compressed(name) ? MODULE_INIT_COMPRESSED_FILE : 0;
		if (syscall(SYS_finit_module, fd, "", flags) && errno != EEXIST)
			agent_log("cannot load module %s: %s", path, strerror(errno));
		close(fd);
	}
	fclose(f);
}

static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr))
			agent_log("cannot bring lo up: %s", strerror(errno));
	}
	close(s);
}

/* Copies the value of key= on the kernel command line into out; false when absent. */
static bool cmdline_get(const char *cmdline, const char *key, char *out, size_t n)
{
	size_t klen = strlen(key);
	for (const char *p = cmdline; *p;) {
		p += strspn(p, " \t\n");
		size_t len = strcspn(p, " \t\n");
		if (len > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			snprintf(out, n, "%.*s", (int)(len - klen - 1), p + klen + 1);
			return true;
		}
		p += len;
	}
	return false;
}

static int mount_root(const char *dev, const char *fstype)
{
	if (mkdir(NEWROOT, 0755) && errno != EEXIST)
		return -errno;
	if (fstype[0])
		return mount(dev, NEWROOT, fstype, 0, NULL) ? -errno : 0;
	/* No type given: each block filesystem the kernel knows, as mount(8) does. */
	FILE *f = fopen("/proc/filesystems", "re");
	if (!f)
		return -errno;
	char line[128];
	int rc = -ENODEV;
	while (rc && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "nodev", 5))
			continue;
		char *type = line + strspn(line, " \t");
		type[strcspn(type, " \t\n")] = 0;
		if (type[0] && mount(dev, NEWROOT, type, 0, NULL) == 0)
			rc = 0;
	}
	fclose(f);
	return rc;
}

/* Mounts dev and makes it the root, taking /dev, /proc, /sys and /run along. */
static void switch_root(const char *dev, const char *fstype)
{
	struct stat st;
	uint64_t deadline = agent_now_ms() + ROOT_WAIT_MS;
	while (stat(dev, &st) && agent_now_ms() < deadline)
		usleep(50 * 1000);
	if (stat(dev, &st))
		agent_fatal("the root device %s did not appear within %d s", dev,
			    ROOT_WAIT_MS / 1000);
	int rc = mount_root(dev, fstype);
	if (rc)
		agent_fatal("cannot mount the root %s%s%s: %s", dev, fstype[0] ? " as " : "",
			    fstype, strerror(-rc));
	static const char *const moves[] = {"/dev", "/proc", "/sys", "/run"};
	for (size_t i = 0; i < sizeof(moves) / sizeof(moves[0]); i++) {
		char target[64];
		snprintf(target, sizeof(target), NEWROOT "%s", moves[i]);
		if (mkdir(target, 0755) && errno != EEXIST)
			agent_log("cannot create %s: %s", target, strerror(errno));
		if (mount(moves[i], target, NULL, MS_MOVE, NULL))
			agent_log("cannot move %s to %s: %s", moves[i], target, strerror(errno));
	}
	if (chdir(NEWROOT) || mount(".", "/", NULL, MS_MOVE, NULL) || chroot(".") || chdir("/"))
		agent_fatal("cannot switch the root to %s: %s", dev, strerror(errno));
}

void agent_init_system(void)
{
	mount_basics();
	setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/root", 1);
	setenv("TERM", "linux", 1);
	umask(022);
	load_modules();
	loopback_up();

	char cmdline[4096] = "", value[256];
	FILE *f = fopen("/proc/cmdline", "re");
	if (f) {
		if (!fgets(cmdline, sizeof(cmdline), f))
			cmdline[0] = 0;
		fclose(f);
	}
	if (cmdline_get(cmdline, "vmci.root", value, sizeof(value))) {
		char fstype[64] = "";
		cmdline_get(cmdline, "vmci.rootfstype", fstype, sizeof(fstype));
		switch_root(value, fstype);
	}
	if (!cmdline_get(cmdline, "vmci.hostname", value, sizeof(value)) || !value[0])
		snprintf(value, sizeof(value), "vmci");
	if (sethostname(value, strlen(value)))
		agent_log("cannot set the hostname: %s", strerror(errno));
}

_Noreturn void agent_poweroff(void)
{
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}
