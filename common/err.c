/* Error values: a code and a message for the user. */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int store(struct vmci_err *err, int code, const char *fmt, va_list ap, bool with_errno)
{
	if (code < 0)
		code = -code;
	if (code == 0)
		code = EIO;
	if (err) {
		err->code = code;
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		if (with_errno) {
			size_t n = strlen(err->msg);
			snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(code));
		}
	}
	return -code;
}

int vmci_err_set(struct vmci_err *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = store(err, code, fmt, ap, false);
	va_end(ap);
	return rc;
}

int vmci_err_errno(struct vmci_err *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = store(err, code, fmt, ap, true);
	va_end(ap);
	return rc;
}

void vmci_err_wrap(struct vmci_err *err, const char *fmt, ...)
{
	if (!err)
		return;
	char prefix[512];
	char old[sizeof(err->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Built by hand: the result is cut at the buffer's end, on purpose. */
	size_t n = strlen(prefix);
	if (n > sizeof(err->msg) - 3)
		n = sizeof(err->msg) - 3;
	memcpy(err->msg, prefix, n);
	memcpy(err->msg + n, ": ", 2);
	size_t room = sizeof(err->msg) - n - 3;
	size_t olen = strnlen(old, room);
	memcpy(err->msg + n + 2, old, olen);
	err->msg[n + 2 + olen] = 0;
}
