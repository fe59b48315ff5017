/* Logging to stderr, filtered by $VMCI_LOG. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int current_level = -1;

static int level_from_env(void)
{
	const char *v = getenv("VMCI_LOG");
	if (!v || !*v)
		return VMCI_LOG_WARN;
	if (!strcmp(v, "error"))
		return VMCI_LOG_ERROR;
	if (!strcmp(v, "info"))
		return VMCI_LOG_INFO;
	if (!strcmp(v, "debug"))
		return VMCI_LOG_DEBUG;
	return VMCI_LOG_WARN;
}

void vmci_log_set_level(enum vmci_log_level level)
{
	current_level = level;
}

bool vmci_log_enabled(enum vmci_log_level level)
{
	if (current_level < 0)
		current_level = level_from_env();
	return (int)level <= current_level;
}

bool vmci_use_color(int fd)
{
	const char *no = getenv("NO_COLOR");
	const char *term = getenv("TERM");
	if (no && *no)
		return false;
	if (term && !strcmp(term, "dumb"))
		return false;
	return isatty(fd);
}

void vmci_log(enum vmci_log_level level, const char *fmt, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	static const char *colors[] = {"\033[1;31m", "\033[1;33m", "\033[1;36m", "\033[2m"};
	if (!vmci_log_enabled(level))
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (vmci_use_color(STDERR_FILENO))
		fprintf(stderr, "vmci: %s%s\033[0m: %s\n", colors[level], names[level], line);
	else
		fprintf(stderr, "vmci: %s: %s\n", names[level], line);
}
