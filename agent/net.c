/*
 * The guest's network interface, configured on the host's word
 * (AGENT_NET_CONFIG): a static address, a default route and one name
 * server. The host's network helper answers for every address behind the
 * gateway, so there is no lease to ask for or to renew, and a restored
 * guest gets the same configuration applied afresh.
 *
 * Everything goes through ioctls on a datagram socket: no ip(8),
 * ifconfig(8) or DHCP client needs to be in the image.
 */
#include "agent/agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESOLV_CONF "/etc/resolv.conf"

/* The first interface that is neither loopback nor down for good: the virtio NIC. */
static int find_interface(int s, char *name, size_t size)
{
	struct if_nameindex *all = if_nameindex();
	if (!all)
		return -errno;
	int rc = -ENODEV;
	for (struct if_nameindex *i = all; i->if_index && rc; i++) {
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", i->if_name);
		if (ioctl(s, SIOCGIFHWADDR, &ifr) || ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
			continue;
		snprintf(name, size, "%s", i->if_name);
		rc = 0;
	}
	if_freenameindex(all);
	return rc;
}

static void set_sin(struct sockaddr *sa, struct in_addr a)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = a};
	memcpy(sa, &sin, sizeof(sin));
}

static int set_flags(int s, const char *ifname, bool up)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr))
		return -errno;
	if (up)
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	else
		ifr.ifr_flags &= ~IFF_UP;
	return ioctl(s, SIOCSIFFLAGS, &ifr) ? -errno : 0;
}

/* Replaces /etc/resolv.conf (a symlink to a resolver daemon's file included) atomically. */
static int write_resolv_conf(const char *dns)
{
	if (mkdir("/etc", 0755) && errno != EEXIST)
		return -errno;
	char text[128];
	int n = snprintf(text, sizeof(text), "# written by vmci-agent\nnameserver %s\n", dns);
	const char *tmp = RESOLV_CONF ".vmci-tmp";
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = write(fd, text, (size_t)n) == n ? 0 : -(errno ? errno : EIO);
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, RESOLV_CONF))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

int agent_net_configure(const char *address, int prefix, const char *gateway, const char *dns,
			char *err, size_t errlen)
{
	struct in_addr addr, gw, ns, mask;
	if (inet_pton(AF_INET, address, &addr) != 1 || inet_pton(AF_INET, gateway, &gw) != 1 ||
	    inet_pton(AF_INET, dns, &ns) != 1 || prefix < 1 || prefix > 30) {
		snprintf(err, errlen, "bad network configuration %s/%d via %s, dns %s", address,
			 prefix, gateway, dns);
		return EINVAL;
	}
	mask.s_addr = htonl(~0u << (32 - prefix));

	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		snprintf(err, errlen, "cannot open a socket: %s", strerror(errno));
		return errno;
	}
	char ifname[IF_NAMESIZE] = "";
	const char *step = "find the network interface (is virtio_net loaded?)";
	int rc = find_interface(s, ifname, sizeof(ifname));
	/* Down first: the kernel drops the routes and neighbours learnt before a restore. */
	if (!rc && (step = "take the interface down", rc = set_flags(s, ifname, false)) == 0) {
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
		set_sin(&ifr.ifr_addr, addr);
		step = "set the address";
		if (ioctl(s, SIOCSIFADDR, &ifr))
			rc = -errno;
		set_sin(&ifr.ifr_netmask, mask);
		if (!rc && (step = "set the netmask", ioctl(s, SIOCSIFNETMASK, &ifr)))
			rc = -errno;
	}
	if (!rc)
		step = "bring the interface up", rc = set_flags(s, ifname, true);
	if (!rc) {
		struct rtentry rt;
		memset(&rt, 0, sizeof(rt));
		set_sin(&rt.rt_dst, (struct in_addr){0});
		set_sin(&rt.rt_genmask, (struct in_addr){0});
		set_sin(&rt.rt_gateway, gw);
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		rt.rt_dev = ifname;
		step = "add the default route";
		if (ioctl(s, SIOCADDRT, &rt) && errno != EEXIST)
			rc = -errno;
	}
	close(s);
	if (!rc)
		step = "write " RESOLV_CONF, rc = write_resolv_conf(dns);
	if (rc) {
		snprintf(err, errlen, "cannot %s%s%s: %s", step, ifname[0] ? " of " : "", ifname,
			 strerror(-rc));
		return -rc;
	}
	return 0;
}
