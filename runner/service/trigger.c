/*
 * A trigger: a commit of a repo becomes a run, with every job of its
 * pipeline stored (queued) before anyone is told the run exists.
 */
#include "runner/service/internal.h"
#include "runner/git_source.h"
#include "runner/store.h"
#include "pipelines/pipelines.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int service_pipeline_read(const char *git_dir, const struct service_repo *repo, const char *sha,
			  struct buf *text, struct vmci_err *err)
{
	int rc =
	    git_source_read_file(git_dir, sha, PIPE_DEFAULT_FILE, PIPE_MAX_FILE_SIZE, text, err);
	if (rc == -ENOENT)
		return vmci_err_set(err, ENOENT,
				    "repository %s has no %s at commit %.12s: nothing to run",
				    repo->name, PIPE_DEFAULT_FILE, sha);
	return rc;
}

int service_pipeline_parse(const struct buf *text, const struct service_repo *repo, const char *sha,
			   const char *ref, const char *run_id, struct pipe_run **out,
			   struct vmci_err *err)
{
	*out = NULL;
	const char *base = strrchr(repo->name, '/');
	struct pipe_vars vars = {.sha = sha, .ref = ref, .run_id = run_id};
	struct pipe_load_opts lo = {
	    .file = PIPE_DEFAULT_FILE,
	    .default_name = base ? base + 1 : repo->name,
	    .vars = &vars,
	};
	struct pipe_errors errors = {0};
	int rc = pipe_load((const char *)text->data, text->len, &lo, out, &errors);
	if (rc == -EINVAL) {
		struct buf msg = {0};
		buf_appendf(&msg, "the pipeline of %s at %.12s is invalid:\n", repo->name, sha);
		for (size_t i = 0; i < errors.len; i++)
			pipe_error_format(&errors, i, &msg);
		if (msg.len && msg.data[msg.len - 1] == '\n')
			msg.len--;
		vmci_err_set(err, EINVAL, "%s", buf_cstr(&msg));
		buf_free(&msg);
	} else if (rc) {
		vmci_err_set(err, -rc, "cannot load the pipeline of %s: out of memory", repo->name);
	}
	pipe_errors_free(&errors);
	return rc;
}

int service_pipeline_load(const char *git_dir, const struct service_repo *repo, const char *sha,
			  const char *ref, const char *run_id, struct pipe_run **out,
			  struct vmci_err *err)
{
	*out = NULL;
	struct buf text = {0};
	int rc = service_pipeline_read(git_dir, repo, sha, &text, err);
	if (rc == 0)
		rc = service_pipeline_parse(&text, repo, sha, ref, run_id, out, err);
	buf_free(&text);
	return rc;
}

static char *matrix_json(const struct pipe_job *j)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < j->n_matrix; i++)
		json_object_set_new(o, j->matrix[i].key, json_string(j->matrix[i].value));
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	return s;
}

/* The store's job specs of run: arrays owned by *specs, freed with free_specs. */
static int job_specs(const struct pipe_run *run, struct store_job_spec **specs,
		     struct vmci_err *err)
{
	struct store_job_spec *js = calloc(run->n_jobs ? run->n_jobs : 1, sizeof(*js));
	if (!js)
		return vmci_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < run->n_jobs; i++) {
		const struct pipe_job *j = &run->jobs[i];
		size_t n = 0;
		for (size_t k = 0; k < j->n_needs; k++)
			n += j->needs[k].count;
		size_t *needs = calloc(n ? n : 1, sizeof(*needs));
		char *matrix = matrix_json(j);
		js[i] = (struct store_job_spec){
		    .name = j->name,
		    .image = j->image,
		    .matrix_json = matrix,
		    .needs = needs,
		    .n_needs = n,
		    .timeout_s = (j->timeout_ms + 999) / 1000,
		    .retries = j->retries,
		    .group = (int)j->group,
		    .fail_fast = j->fail_fast,
		    .max_parallel = j->max_parallel,
		};
		if (!needs || !matrix) {
			*specs = js;
			return vmci_err_set(err, ENOMEM, "out of memory");
		}
		n = 0;
		for (size_t k = 0; k < j->n_needs; k++)
			for (size_t m = 0; m < j->needs[k].count; m++)
				needs[n++] = j->needs[k].first + m;
	}
	*specs = js;
	return 0;
}

static void free_specs(struct store_job_spec *js, size_t n)
{
	for (size_t i = 0; js && i < n; i++) {
		free((void *)js[i].needs);
		free((void *)js[i].matrix_json);
	}
	free(js);
}

/* What the store's transaction needs to make the jobs once the run has its id. */
struct expansion {
	const struct service_repo *repo;
	const char *ref, *sha, *trigger;
	struct buf text; /* the pipeline file */
	struct pipe_run *run;
	struct store_job_spec *specs;
	char *reason;
	size_t reason_size;
};

#define NOT_SELECTED 1

static int make_jobs(void *ctx, int64_t run_id, const struct store_job_spec **jobs, size_t *n,
		     struct vmci_err *err)
{
	struct expansion *x = ctx;
	char id[32];
	snprintf(id, sizeof(id), "%lld", (long long)run_id);
	/* Exactly as the workers will load it (service_pipeline_load), so names and images match.
	 */
	int rc = service_pipeline_parse(&x->text, x->repo, x->sha, x->ref, id, &x->run, err);
	if (rc)
		return rc;
	if (!strcmp(x->trigger, "push") &&
	    !pipe_push_selects(x->run, x->ref, x->reason, x->reason_size))
		return NOT_SELECTED;
	if (x->run->n_jobs == 0)
		return vmci_err_set(err, EINVAL, "the pipeline of %s at %.12s has no jobs",
				    x->repo->name, x->sha);
	rc = job_specs(x->run, &x->specs, err);
	*jobs = x->specs;
	*n = x->run->n_jobs;
	return rc;
}

int service_trigger(struct store *s, const struct service_dirs *dirs,
		    const struct service_repo *repo, const char *ref, const char *sha_or_null,
		    const char *trigger, struct service_triggered *out, struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	char sha[GIT_SHA_HEX_LEN + 1], git_dir[PATH_MAX];
	int rc = git_source_fetch(dirs ? dirs->git : NULL, repo->name, repo->url, ref, sha_or_null,
				  sha, err);
	if (rc == 0)
		rc = git_source_dir(dirs ? dirs->git : NULL, repo->name, git_dir, sizeof(git_dir),
				    err);
	if (rc)
		return rc;
	struct expansion x = {.repo = repo,
			      .ref = ref,
			      .sha = sha,
			      .trigger = trigger,
			      .reason = out->reason,
			      .reason_size = sizeof(out->reason)};
	rc = service_pipeline_read(git_dir, repo, sha, &x.text, err);
	if (rc == 0) {
		struct store_run_spec rs = {
		    .repo = repo->name, .ref = ref, .sha = sha, .trigger = trigger};
		rc = store_run_create_with(s, &rs, make_jobs, &x, &out->run_id, err);
	}
	if (rc == NOT_SELECTED)
		rc = 0;
	else
		out->reason[0] = 0;
	free_specs(x.specs, x.run ? x.run->n_jobs : 0);
	pipe_run_free(x.run);
	buf_free(&x.text);
	return rc;
}
