/*
 * The images work needs, found or built the one way the runner builds
 * them: with the setup hook wired (so a recipe with `setup:` builds
 * wherever a VM is first asked for) and the caller's progress.
 */
#include "runner/build.h"

#include "pipelines/pipelines.h"

#include <errno.h>
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

int runner_ensure_images(const struct pipe_run *run, const bool *selected,
			 const struct runner_image_progress *progress, size_t *failed_job,
			 struct vmci_err *err)
{
	for (size_t i = 0; i < run->n_jobs; i++) {
		if (!selected[i])
			continue;
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = selected[k] && !strcmp(run->jobs[k].image, run->jobs[i].image);
		if (seen)
			continue;
		if (progress && progress->begin)
			progress->begin(progress->ctx, run->jobs[i].image);
		struct img_boot img;
		int rc = runner_image_ensure(run->jobs[i].image, progress ? progress->step : NULL,
					     progress ? progress->ctx : NULL, &img, err);
		if (progress && progress->end)
			progress->end(progress->ctx);
		if (rc) {
			if (failed_job)
				*failed_job = i;
			return rc;
		}
	}
	return 0;
}
