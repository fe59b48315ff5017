/*
 * vmci-agent: the guest side of vmci. As PID 1 of the vmci initramfs it
 * prepares the system (init.c); then, and when it runs as a service inside
 * a full OS image, it opens the channel to the host (channel.c) and serves
 * it (serve.c) for as long as the VM runs.
 *
 *   vmci-agent [--channel PATH] [--no-init]
 *
 * --channel names a unix socket to connect to, or a device, instead of the
 * virtio-serial port; --no-init skips the PID-1 duties. Both exist to run
 * the agent as an ordinary process on a host, for testing.
 */
#include "agent/agent.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void agent_log(const char *fmt, ...)
{
	char line[1024];
	int n = snprintf(line, sizeof(line), "vmci-agent: ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = strlen(line);
	line[len++] = '\n';
	ssize_t w = write(2, line, len); /* one write: lines from children do not interleave */
	(void)w;
}

_Noreturn void agent_fatal(const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	agent_log("fatal: %s", msg);
	if (getpid() == 1)
		agent_poweroff(); /* QEMU runs with -no-reboot: the VM ends instead of hanging */
	exit(1);
}

uint64_t agent_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vmci-agent [--channel PATH] [--no-init]\n"
		   "  --channel PATH  serve a unix socket (connected to) or a device, not the\n"
		   "                  virtio port " AGENT_PORT_NAME "\n"
		   "  --no-init       skip the PID-1 duties (mounts, modules, root switch)\n");
}

int main(int argc, char **argv)
{
	const char *channel = NULL;
	bool no_init = false, pid1 = getpid() == 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--channel") && i + 1 < argc) {
			channel = argv[++i];
		} else if (!strncmp(argv[i], "--channel=", 10)) {
			channel = argv[i] + 10;
		} else if (!strcmp(argv[i], "--no-init")) {
			no_init = true;
		} else if (!strcmp(argv[i], "--version")) {
			printf("vmci-agent %s (protocol %d)\n", AGENT_VERSION,
			       AGENT_PROTOCOL_VERSION);
			return 0;
		} else if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!pid1) {
			fprintf(stderr, "vmci-agent: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
		/* As PID 1, words of the kernel command line it did not know land here: ignored. */
	}

	if (pid1 && !no_init)
		agent_init_system();
	else
		agent_ensure_stdio();
	signal(SIGPIPE, SIG_IGN);

	struct agent_channel ch;
	if (agent_channel_open(&ch, channel))
		agent_fatal("cannot open the channel to the host");
	agent_serve(&ch);
	agent_fatal("the event loop stopped");
}
