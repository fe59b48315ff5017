/*
 * Private to the runner: how a step's script reaches the guest
 * (runner/script.c), for the executor.
 *
 * A script that fits easily in the exec request runs as `sh -e -c
 * SCRIPT`. A longer one (pipelines cap scripts at PIPE_MAX_SCRIPT_SIZE)
 * would not: the agent takes strings of at most 64 KiB. It is put into
 * the guest as SCRIPT_GUEST_DIR/step-N.sh through the same path as the
 * workspace, and runs as `sh -e FILE`.
 */
#ifndef VMCI_RUNNER_SCRIPT_H
#define VMCI_RUNNER_SCRIPT_H

#include "runner/handoff.h"
#include "runner/runner.h"

/* Scripts longer than this travel as a file. */
#define SCRIPT_INLINE_MAX (16 << 10)
#define SCRIPT_GUEST_DIR  "/run/vmci"

/* What runs a step's script: argv for vm_exec, and the guest file when there is one. */
struct step_command {
	const char *argv[5];
	char file[64]; /* "" when the script travels in argv */
};

/*
 * Fills cmd to run script, step number step (1-based), in vm (here or
 * moved), putting it
 * into the guest first when it is longer than SCRIPT_INLINE_MAX. cmd
 * points into script: keep it alive while cmd is used. Returns 0, or a
 * negative code with err when the put failed (the VM failed, or the guest
 * could not write the file: ask the VM to tell which).
 */
int step_command_prepare(const struct runner_job_vm *vm, size_t step, const char *script,
			 struct step_command *cmd, struct vmci_err *err);

#endif
