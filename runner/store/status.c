/* Status names as the API shows them and the store keeps them, and RFC 3339 times. */
#include "runner/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const names[] = {
    [STORE_QUEUED] = "queued",	 [STORE_RUNNING] = "running", [STORE_SUCCESS] = "success",
    [STORE_FAILURE] = "failure", [STORE_ERROR] = "error",     [STORE_CANCELLED] = "cancelled",
    [STORE_SKIPPED] = "skipped",
};

const char *store_status_name(enum store_status status)
{
	return (unsigned)status < ARRAY_LEN(names) ? names[status] : "unknown";
}

int store_status_parse(const char *name, enum store_status *out, struct vmci_err *err)
{
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (name && !strcmp(name, names[i])) {
			*out = (enum store_status)i;
			return 0;
		}
	return vmci_err_set(err, EINVAL,
			    "unknown status '%s' (one of: queued, running, success, failure, "
			    "error, cancelled, skipped)",
			    name ? name : "");
}

bool store_status_finished(enum store_status status)
{
	return status != STORE_QUEUED && status != STORE_RUNNING;
}

void store_time_format(int64_t ms, char out[STORE_TIME_LEN])
{
	out[0] = 0;
	if (ms <= 0)
		return;
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&secs, &tm))
		return;
	char date[24];
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, STORE_TIME_LEN, "%s.%03dZ", date, (int)(ms % 1000));
}
