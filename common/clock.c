/* Monotonic time and durations for people. */
#include "common.h"

#include <stdio.h>
#include <time.h>

int64_t clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t clock_ms(void)
{
	return clock_ns() / 1000000;
}

void format_duration(int64_t ms, char *out, size_t size)
{
	if (ms < 0)
		ms = 0;
	if (ms < 1000)
		snprintf(out, size, "%lldms", (long long)ms);
	else if (ms < 60000)
		snprintf(out, size, "%.1fs", (double)ms / 1000.0);
	else if (ms < 3600000)
		snprintf(out, size, "%lldm%02llds", (long long)(ms / 60000),
			 (long long)(ms / 1000 % 60));
	else
		snprintf(out, size, "%lldh%02lldm", (long long)(ms / 3600000),
			 (long long)(ms / 60000 % 60));
}
