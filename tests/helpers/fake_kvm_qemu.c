/*
 * A QEMU whose KVM fails the way a broken nested KVM does: put first on
 * $PATH as qemu-system-x86_64, it behaves as QEMU does after
 * KVM_EXIT_INTERNAL_ERROR. It writes "KVM internal error. Suberror: 1" and
 * "emulation failure" to the console log, serves QMP, reports the guest
 * stopped (a STOP event, then query-status "internal-error") and stays
 * alive, paused, with the agent socket open and silent, until it is told
 * to quit or killed.
 *
 * Any run without "-accel kvm" execs the real QEMU ($FAKE_QEMU_REAL,
 * default /usr/bin/qemu-system-x86_64). Every run appends "kvm" or "tcg"
 * to $FAKE_QEMU_LOG, so a test can count which accelerators were tried.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void log_accel(const char *accel)
{
	const char *log = getenv("FAKE_QEMU_LOG");
	if (!log || !*log)
		return;
	FILE *f = fopen(log, "a");
	if (f) {
		fprintf(f, "%s\n", accel);
		fclose(f);
	}
}

/* The value of key= in a QEMU option list (",," is a literal comma), or "". */
static void option_value(const char *opts, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key), w = 0;
	out[0] = 0;
	for (const char *p = opts; *p;) {
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			for (p += klen + 1; *p && w + 1 < size; p++) {
				if (*p == ',' && p[1] == ',')
					p++;
				else if (*p == ',')
					break;
				out[w++] = *p;
			}
			out[w] = 0;
			return;
		}
		const char *comma = strchr(p, ',');
		while (comma && comma[1] == ',')
			comma = strchr(comma + 2, ',');
		if (!comma)
			break;
		p = comma + 1;
	}
}

static int listen_unix(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(fd, 4)) {
		perror(path);
		exit(1);
	}
	return fd;
}

static void send_line(int fd, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!text)
		exit(1);
	size_t len = strlen(text);
	text[len] = '\n';
	if (write(fd, text, len + 1) != (ssize_t)(len + 1))
		exit(0); /* the client went away */
	free(text);
}

static json_t *reply(json_t *id, json_t *value)
{
	json_t *msg = json_pack("{s:o}", "return", value);
	if (id)
		json_object_set(msg, "id", id);
	return msg;
}

int main(int argc, char **argv)
{
	bool kvm = false;
	char qmp[256] = "", agent[256] = "", console[256] = "";
	for (int i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "-accel") && !strncmp(argv[i + 1], "kvm", 3))
			kvm = true;
		if (strcmp(argv[i], "-chardev") != 0)
			continue;
		char id[32];
		option_value(argv[i + 1], "id", id, sizeof(id));
		char *target = !strcmp(id, "qmp")	? qmp
			       : !strcmp(id, "agent")	? agent
			       : !strcmp(id, "console") ? console
							: NULL;
		if (target)
			option_value(argv[i + 1], "path", target, 256);
	}
	if (!kvm) {
		log_accel("tcg");
		const char *real = getenv("FAKE_QEMU_REAL");
		real = real && *real ? real : "/usr/bin/qemu-system-x86_64";
		argv[0] = (char *)real;
		execv(real, argv);
		perror(real);
		return 127;
	}
	log_accel("kvm");
	if (!*qmp || !*agent || !*console) {
		fprintf(stderr, "fake QEMU: no qmp, agent or console chardev\n");
		return 1;
	}
	int qmp_listen = listen_unix(qmp);
	int agent_listen = listen_unix(agent); /* connected, never answered */
	(void)agent_listen;

	/* What QEMU prints after KVM_EXIT_INTERNAL_ERROR, before the register dump. */
	FILE *log = fopen(console, "a");
	if (log) {
		fputs("KVM internal error. Suberror: 1\n"
		      "extra data[0]: 0x0000000000000000\n"
		      "emulation failure\n"
		      "RAX=0000000000000000 RBX=0000000000000000\n",
		      log);
		fclose(log);
	}

	int fd = accept(qmp_listen, NULL, NULL);
	if (fd < 0)
		return 1;
	send_line(fd,
		  json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[]}}", "QMP", "version", "qemu", "major",
			    7, "minor", 2, "micro", 0, "package", "fake", "capabilities"));
	char line[65536];
	size_t have = 0;
	for (;;) {
		ssize_t n = read(fd, line + have, sizeof(line) - 1 - have);
		if (n <= 0)
			return 0;
		have += (size_t)n;
		line[have] = 0;
		char *nl;
		while ((nl = strchr(line, '\n'))) {
			size_t len = (size_t)(nl - line) + 1;
			json_t *cmd = json_loadb(line, len, JSON_DISABLE_EOF_CHECK, NULL);
			memmove(line, line + len, have - len + 1);
			have -= len;
			if (!cmd)
				continue;
			const char *what = json_string_value(json_object_get(cmd, "execute"));
			json_t *id = json_object_get(cmd, "id");
			if (what && !strcmp(what, "qmp_capabilities")) {
				send_line(fd, reply(id, json_object()));
				usleep(200 * 1000); /* the guest kernel starts, then KVM fails */
				send_line(fd, json_pack("{s:s, s:{}, s:{s:i,s:i}}", "event", "STOP",
							"data", "timestamp", "seconds", 0,
							"microseconds", 0));
			} else if (what && !strcmp(what, "query-status")) {
				send_line(fd, reply(id, json_pack("{s:s, s:b, s:b}", "status",
								  "internal-error", "running", 0,
								  "singlestep", 0)));
			} else if (what && !strcmp(what, "quit")) {
				send_line(fd, reply(id, json_object()));
				return 0;
			} else {
				send_line(fd, reply(id, json_object()));
			}
			json_decref(cmd);
		}
	}
}
