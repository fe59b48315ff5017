/*
 * The images work needs, found or built the one way the runner builds
 * them: with the setup hook wired (so a recipe with `setup:` builds
 * wherever a VM is first asked for) and the caller's progress.
 */
#include "runner/build.h"

#include "pipelines/pipelines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int runner_image_ensure(const char *image, img_progress_fn progress, void *progress_ctx,
			struct img_boot *out, struct vmci_err *err)
{
	struct img_ensure_opts build = {
	    .progress = progress,
	    .progress_ctx = progress_ctx,
	    .setup = runner_image_setup,
	};
	return img_ensure_with(image, &build, out, err);
}

int runner_job_image(const struct pipe_job *job, char *out, size_t size, struct vmci_err *err)
{
	if (job->n_packages)
		return img_packages_name(job->image, job->packages, job->n_packages, out, size,
					 err);
	if (snprintf(out, size, "%s", job->image) >= (int)size)
		return vmci_err_set(err, ENAMETOOLONG, "image name '%s' is too long", job->image);
	return 0;
}

int runner_job_image_ensure(const struct pipe_job *job, img_progress_fn progress,
			    void *progress_ctx, struct img_boot *out, struct vmci_err *err)
{
	if (!job->n_packages)
		return runner_image_ensure(job->image, progress, progress_ctx, out, err);
	struct img_ensure_opts build = {
	    .progress = progress,
	    .progress_ctx = progress_ctx,
	    .setup = runner_image_setup,
	};
	return img_ensure_packages(job->image, job->packages, job->n_packages, &build, out, err);
}

int runner_ensure_images(const struct pipe_run *run, const bool *selected,
			 const struct runner_image_progress *progress, size_t *failed_job,
			 struct vmci_err *err)
{
	char(*names)[64] = calloc(run->n_jobs ? run->n_jobs : 1, sizeof(*names));
	if (!names)
		return vmci_err_set(err, ENOMEM, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < run->n_jobs && !rc; i++) {
		if (!selected[i])
			continue;
		rc = runner_job_image(&run->jobs[i], names[i], sizeof(names[i]), err);
		bool seen = false;
		for (size_t k = 0; k < i && !seen && !rc; k++)
			seen = selected[k] && !strcmp(names[k], names[i]);
		if (seen)
			continue;
		if (!rc && progress && progress->begin)
			progress->begin(progress->ctx, names[i]);
		struct img_boot img;
		if (!rc)
			rc =
			    runner_job_image_ensure(&run->jobs[i], progress ? progress->step : NULL,
						    progress ? progress->ctx : NULL, &img, err);
		if (progress && progress->end)
			progress->end(progress->ctx);
		if (rc && failed_job)
			*failed_job = i;
	}
	free(names);
	return rc;
}
