/*
 * runner: the images work needs, built the one way the runner builds them
 * (setup hook included).
 */
#ifndef VMCI_RUNNER_BUILD_H
#define VMCI_RUNNER_BUILD_H

#include <stdbool.h>
#include "images/images.h"

struct pipe_run;
struct pipe_job;
struct pipe_errors;

/* ---- the images work needs (runner/run_images.c) --------------------- */

/*
 * Finds image, building it if needed with the setup hook wired (so a
 * recipe with `setup:` builds here) and progress (may be NULL). Every
 * runner path that boots an image gets it through this.
 */
int runner_image_ensure(const char *image, img_progress_fn progress, void *progress_ctx,
			struct img_boot *out, struct vmci_err *err);

/*
 * The name of the image a job's VM boots: job->image, or for a job with
 * `packages:` the image derived from it (img_packages_name). No I/O.
 */
int runner_job_image(const struct pipe_job *job, char *out, size_t size, struct vmci_err *err);

/*
 * Finds or builds the image a job's VM boots (runner_job_image): for a
 * job with packages, the base and then the derived image, built once
 * (img_ensure_packages) with the setup hook and progress (may be NULL).
 */
int runner_job_image_ensure(const struct pipe_job *job, img_progress_fn progress,
			    void *progress_ctx, struct img_boot *out, struct vmci_err *err);

/*
 * Checks the packages of the selected jobs of run (selected NULL: every
 * job) against the package lists of their images where vmci keeps them
 * (img_packages_known), before any VM boots: each package no list has
 * adds an error at its place in the file to errors, naming the package,
 * the job, the image and the lists. A list that cannot be read is a
 * warning (the build tells then). Returns 0, -EINVAL when it added
 * errors, or -ENOMEM with err.
 */
int runner_check_packages(const struct pipe_run *run, const bool *selected,
			  struct pipe_errors *errors, struct vmci_err *err);

/* What runner_ensure_images reports while it works; every member may be NULL. */
struct runner_image_progress {
	void (*begin)(void *ctx, const char *image); /* before an image is found or built */
	img_progress_fn step;			     /* while it builds */
	void (*end)(void *ctx);			     /* after, whatever happened */
	void *ctx;
};

/*
 * Finds or builds, once each and before any VM starts, every image the
 * selected jobs of run use. On failure *failed_job (may be NULL) is the
 * first job whose image failed; -ENOENT means no such image (the
 * pipeline's mistake), anything else an infrastructure failure.
 */
int runner_ensure_images(const struct pipe_run *run, const bool *selected,
			 const struct runner_image_progress *progress, size_t *failed_job,
			 struct vmci_err *err);

/* ---- image setup commands (runner/image_setup.c) -------------------- */

/*
 * An img_setup_fn (ctx unused): boots req's unpublished build under
 * vmcore, runs its setup commands in order, and stops the VM with the
 * disk synced. Pass it in img_ensure_opts wherever images may be built.
 */
int runner_image_setup(void *ctx, const struct img_setup_vm *req, struct vmci_err *err);

/* ==== running a pipeline: `vmci run` and, later, the farm service ==== */

struct pipe_run;
struct pipe_job;
struct pipe_errors;

/* Where a job's workspace is in the guest; steps run there. */
#define RUNNER_GUEST_WORKSPACE "/work/src"

#endif
