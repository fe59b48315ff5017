/* A step's script into the guest: inline, or as a file when long (see script.h). */
#include "runner/script.h"
#include "agent/protocol.h" /* the exec request's limits, checked below */
#include "pipelines/pipelines.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * What validation lets through must fit one exec request: an inline
 * script, the step's environment (with the ~20 variables and 2 KiB the
 * runner adds) and its working directory.
 */
_Static_assert(SCRIPT_INLINE_MAX < AGENT_MAX_STRING, "an inline script is one string");
_Static_assert(PIPE_MAX_ENV_SIZE + 2048 < AGENT_MAX_STRING, "an env entry is one string");
_Static_assert(PIPE_MAX_ENV_VARS + 32 <= AGENT_MAX_ARGS, "env entries");
_Static_assert(SCRIPT_INLINE_MAX + PIPE_MAX_ENV_SIZE + 2048 + 4 * PATH_MAX < AGENT_MAX_PAYLOAD,
	       "one exec request");

/* Writes a tar stream holding the script as name (mode 0700) to a fresh memory file. */
static int script_tar(const char *name, const char *script, int *out, struct vmci_err *err)
{
	int fd = memfd_create("vmci-step-script", MFD_CLOEXEC);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot create a memory file for %s", name);
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	int rc = 0;
	if (!a || !e) {
		rc = vmci_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	size_t len = strlen(script);
	archive_write_set_format_pax_restricted(a);
	archive_write_set_bytes_per_block(a, 0);
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0700);
	archive_entry_set_size(e, (la_int64_t)len);
	if (archive_write_open_fd(a, fd) != ARCHIVE_OK ||
	    archive_write_header(a, e) != ARCHIVE_OK ||
	    archive_write_data(a, script, len) != (la_ssize_t)len ||
	    archive_write_close(a) != ARCHIVE_OK) {
		rc = vmci_err_set(err, EIO, "cannot write %s as a tar stream: %s", name,
				  archive_error_string(a));
		goto out;
	}
	if (lseek(fd, 0, SEEK_SET) < 0)
		rc = vmci_err_errno(err, errno, "cannot rewind the memory file of %s", name);
out:
	archive_entry_free(e);
	archive_write_free(a);
	if (rc)
		close(fd);
	else
		*out = fd;
	return rc;
}

int step_command_prepare(const struct runner_job_vm *vm, size_t step, const char *script,
			 struct step_command *cmd, struct vmci_err *err)
{
	memset(cmd, 0, sizeof(*cmd));
	if (strlen(script) <= SCRIPT_INLINE_MAX) {
		memcpy(cmd->argv, (const char *[]){"sh", "-e", "-c", script, NULL},
		       sizeof(cmd->argv));
		return 0;
	}
	char name[32];
	snprintf(name, sizeof(name), "step-%zu.sh", step);
	snprintf(cmd->file, sizeof(cmd->file), "%s/%s", SCRIPT_GUEST_DIR, name);
	int fd = -1;
	int rc = script_tar(name, script, &fd, err);
	if (!rc) {
		rc = runner_job_vm_put_tar(vm, fd, SCRIPT_GUEST_DIR, err);
		close(fd);
	}
	if (rc)
		return rc;
	memcpy(cmd->argv, (const char *[]){"sh", "-e", cmd->file, NULL, NULL}, sizeof(cmd->argv));
	return 0;
}
