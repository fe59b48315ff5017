/*
 * Private to the runner: copying a job's artifacts out of its VM
 * (runner/artifacts.c), for the executor.
 *
 * Each artifact path of the job is asked of the guest agent as a tar
 * stream, which a thread of ours unpacks under the job's artifact
 * directory. The guest is not trusted: the unpacking enforces the job's
 * limits itself and refuses anything that would land outside the
 * directory, write through a symlink, or make a device node; it never
 * follows a symlink. What was copied is counted exactly, entry by entry.
 *
 * Sparseness is kept end to end: the agent sends files with holes as GNU
 * sparse members (their holes never cross the channel), and blocks of
 * zeros that do arrive are written as holes (libarchive's
 * ARCHIVE_EXTRACT_SPARSE), so a 500 MB file of zeros takes a few
 * kilobytes on the host whichever way it was made in the guest.
 */
#ifndef VMCI_RUNNER_ARTIFACTS_H
#define VMCI_RUNNER_ARTIFACTS_H

#include "pipelines/pipelines.h"
#include "runner/handoff.h"
#include "runner/runner.h"

/* A job's artifacts being copied: its limits, what was copied so far. */
struct artifact_copy {
	long long max_bytes;   /* data bytes the job may copy (holes are free) */
	long long max_entries; /* files, directories and symlinks */
	struct runner_artifact_stats st;
	char refused[512]; /* the first entry refused and why, "" when none */
	bool full;	   /* a limit was reached: nothing more is copied */
};

/*
 * Unpacks the tar stream read from fd into dir (an existing directory:
 * an absolute path without symlinks), counting into c->st. Refused
 * entries (unsafe paths or links, devices, FIFOs, sockets) are skipped,
 * counted in c->st.refused and the first is named in c->refused. Set-id
 * and sticky bits are dropped; what is copied is always readable and
 * removable by the host user.
 *
 * Returns 0 when the stream was read to its end; -EFBIG when a limit
 * stopped it (c->full, c->refused says which; nothing of the entry that
 * did not fit is left): the rest of the stream is not read, the sender
 * must be stopped; another negative code with err when the stream is not
 * a tar stream or the host cannot write.
 */
int artifact_unpack(int fd, const char *dir, struct artifact_copy *c, struct vmci_err *err);

/* Receives a line about the artifacts, without a newline. */
typedef void (*artifact_note_fn)(void *ctx, const char *text);

/*
 * Copies each of job's artifact paths out of vm (here or moved): the
 * matches of
 * "dist/ *.tar.gz" go to host_dir/dist/, "out/" to host_dir/out/, within
 * job->artifact_max_bytes and job->artifact_max_files for all paths
 * together. Fills *st; on st->incomplete, problem says what was not
 * copied and why. Notes what was copied, refused or missing as it goes.
 * Returns 0 however complete the copy was, or a negative code with err
 * when the VM failed meanwhile (an infrastructure error).
 */
int artifact_collect(const struct runner_job_vm *vm, const struct pipe_job *job,
		     const char *host_dir, artifact_note_fn note, void *ctx,
		     struct runner_artifact_stats *st, char *problem, size_t size,
		     struct vmci_err *err);

#endif
