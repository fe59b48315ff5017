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

/* True when an earlier selected job has the same packages, written at the same place, on image. */
static bool checked_before(const struct pipe_run *run, const bool *selected, size_t i)
{
	const struct pipe_job *j = &run->jobs[i];
	for (size_t k = 0; k < i; k++) {
		const struct pipe_job *o = &run->jobs[k];
		if ((!selected || selected[k]) && o->package_places == j->package_places &&
		    !strcmp(o->image, j->image))
			return true;
	}
	return false;
}

int runner_check_packages(const struct pipe_run *run, const bool *selected,
			  struct pipe_errors *errors, struct vmci_err *err)
{
	bool known[PIPE_MAX_PACKAGES];
	char index[PATH_MAX + 128];
	int rc = 0;
	for (size_t i = 0; i < run->n_jobs; i++) {
		const struct pipe_job *j = &run->jobs[i];
		if ((selected && !selected[i]) || !j->n_packages ||
		    checked_before(run, selected, i))
			continue;
		int r = img_packages_known(j->image, j->packages, j->n_packages, known, index,
					   sizeof(index), err);
		if (r < 0) {
			/* The check is an early answer, not the only one: the build still tells. */
			log_warn("packages of job '%s' not checked: %s", j->id,
				 err ? err->msg : "");
			continue;
		}
		for (size_t p = 0; r == 1 && p < j->n_packages; p++) {
			if (known[p])
				continue;
			if (pipe_errors_add(errors, j->package_places[p].line,
					    j->package_places[p].col,
					    "package '%s' of job '%s' is not in %s, which image "
					    "'%s' is installed from: check its name",
					    j->packages[p], j->id, index, j->image))
				return vmci_err_set(err, ENOMEM, "out of memory");
			rc = -EINVAL;
		}
	}
	return rc;
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
