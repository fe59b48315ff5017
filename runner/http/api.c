/* The /api/v1 endpoints of SERVICE.md over the store. */
#include "runner/http/internal.h"
#include "runner/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_READ_MAX (16u << 20)

/* "123" or "123/rest" at p: the id, and p moved past it. 0 when not a positive id. */
static int64_t take_id(const char **p)
{
	char *end = NULL;
	long long id = strtoll(*p, &end, 10);
	if (end == *p || id <= 0 || (*end && *end != '/'))
		return 0;
	*p = end;
	return id;
}

static enum MHD_Result store_failure(struct MHD_Connection *c, int rc, const struct vmci_err *err)
{
	return http_error(c, http_status_of(rc), "%s", err->msg);
}

static const char *query(struct MHD_Connection *c, const char *key)
{
	return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

/* ---- runs ------------------------------------------------------------------------------- */

static enum MHD_Result run_reply(struct http_server *srv, struct MHD_Connection *c, int64_t id,
				 unsigned status)
{
	struct store_run *run = NULL;
	struct vmci_err err = {0};
	int rc = store_run_get(srv->store, id, &run, &err);
	if (rc)
		return store_failure(c, rc, &err);
	enum MHD_Result ret = http_json(c, status, http_run_json(run));
	store_run_free(run);
	return ret;
}

static enum MHD_Result runs_create(struct http_server *srv, struct MHD_Connection *c,
				   const struct http_request *req)
{
	json_error_t jerr;
	json_t *body = json_loadb((const char *)req->body.data, req->body.len, 0, &jerr);
	if (!body)
		return http_error(c, MHD_HTTP_BAD_REQUEST, "the body is not JSON: %s (line %d)",
				  jerr.text, jerr.line);
	const char *repo = NULL, *ref = "refs/heads/main", *sha = NULL, *trigger = "api";
	bool object = json_is_object(body);
	if (object && json_is_null(json_object_get(body, "sha")))
		json_object_del(body, "sha"); /* null: the commit ref points at, as when absent */
	if (!object || json_unpack_ex(body, &jerr, 0, "{s:s, s?s, s?s, s?s}", "repo", &repo, "ref",
				      &ref, "sha", &sha, "trigger", &trigger)) {
		json_decref(body);
		return http_error(c, MHD_HTTP_BAD_REQUEST,
				  "the body must be {\"repo\": NAME, \"ref\": REF, \"sha\": "
				  "optional}: %s",
				  object ? jerr.text : "not an object");
	}
	enum MHD_Result ret;
	const struct service_repo *r = service_config_repo(srv->o.config, repo);
	if (strcmp(trigger, "api") && strcmp(trigger, "push")) {
		ret = http_error(c, MHD_HTTP_BAD_REQUEST, "trigger must be api or push, not '%s'",
				 trigger);
	} else if (!r) {
		ret = http_error(c, MHD_HTTP_NOT_FOUND,
				 "no repo named '%s' in the service's config (repos:)", repo);
	} else {
		struct service_triggered made;
		struct vmci_err err = {0};
		int rc = service_trigger(srv->store, &srv->o.dirs, r, ref, sha && *sha ? sha : NULL,
					 trigger, &made, &err);
		if (rc)
			ret = http_error(c,
					 rc == -ENOENT || rc == -EINVAL
					     ? MHD_HTTP_UNPROCESSABLE_CONTENT
					     : MHD_HTTP_BAD_GATEWAY,
					 "%s", err.msg);
		else if (!made.run_id) /* a push the pipeline does not run on: fine, and why */
			ret = http_json(c, MHD_HTTP_OK,
					json_pack("{s:n, s:s}", "run", "reason", made.reason));
		else
			ret = run_reply(srv, c, made.run_id, MHD_HTTP_CREATED);
	}
	json_decref(body);
	return ret;
}

static enum MHD_Result runs_list(struct http_server *srv, struct MHD_Connection *c)
{
	struct store_run_filter f = {.repo = query(c, "repo"), .status = query(c, "status")};
	const char *limit = query(c, "limit"), *before = query(c, "before");
	if (limit)
		f.limit = atoi(limit);
	if (before)
		f.before = atoll(before);
	if (f.status && *f.status) {
		enum store_status st;
		struct vmci_err err = {0};
		if (store_status_parse(f.status, &st, &err))
			return http_error(c, MHD_HTTP_BAD_REQUEST, "%s", err.msg);
	}
	struct store_run *runs = NULL;
	size_t n = 0;
	struct vmci_err err = {0};
	int rc = store_runs_list(srv->store, &f, &runs, &n, &err);
	if (rc < 0)
		return store_failure(c, rc, &err);
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, http_run_json(&runs[i]));
	store_runs_free(runs, n);
	return http_json(c, MHD_HTTP_OK, json_pack("{s:o}", "runs", list));
}

static enum MHD_Result runs_route(struct http_server *srv, struct MHD_Connection *c,
				  const char *method, const char *p, const struct http_request *req)
{
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	if (!*p || !strcmp(p, "/")) {
		if (post)
			return runs_create(srv, c, req);
		return get ? runs_list(srv, c)
			   : http_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET or POST here");
	}
	p++;
	int64_t id = take_id(&p);
	if (!id)
		return http_error(c, MHD_HTTP_NOT_FOUND, "no such run: a run id is a number");
	if (!*p && get)
		return run_reply(srv, c, id, MHD_HTTP_OK);
	if (!strcmp(p, "/cancel") && post) {
		struct vmci_err err = {0};
		int rc = store_run_cancel(srv->store, id, &err);
		return rc < 0 ? store_failure(c, rc, &err) : run_reply(srv, c, id, MHD_HTTP_OK);
	}
	return http_error(
	    c, *p && strcmp(p, "/cancel") ? MHD_HTTP_NOT_FOUND : MHD_HTTP_METHOD_NOT_ALLOWED,
	    "%s %s is not an endpoint", method, p);
}

/* ---- jobs ------------------------------------------------------------------------------- */

static enum MHD_Result job_reply(struct http_server *srv, struct MHD_Connection *c, int64_t id)
{
	struct store_job *job = NULL;
	struct vmci_err err = {0};
	int rc = store_job_get(srv->store, id, &job, &err);
	if (rc)
		return store_failure(c, rc, &err);
	enum MHD_Result ret = http_json(c, MHD_HTTP_OK, http_job_json(job));
	store_job_free(job);
	return ret;
}

static enum MHD_Result job_log(struct http_server *srv, struct MHD_Connection *c, int64_t id)
{
	const char *off = query(c, "offset");
	char *end = NULL;
	long long offset = off ? strtoll(off, &end, 10) : 0;
	if (off && (end == off || *end || offset < 0))
		return http_error(c, MHD_HTTP_BAD_REQUEST, "offset must be a byte count, not '%s'",
				  off);
	struct store_job *job = NULL;
	struct vmci_err err = {0};
	int rc = store_job_get(srv->store, id, &job, &err);
	if (rc)
		return store_failure(c, rc, &err);
	store_job_free(job);
	struct buf out = {0};
	int64_t next = 0;
	bool finished = false;
	int64_t n =
	    store_log_read(srv->store, id, offset, LOG_READ_MAX, &out, &next, &finished, &err);
	if (n < 0) {
		buf_free(&out);
		return store_failure(c, (int)n, &err);
	}
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(out.len, out.data, MHD_RESPMEM_MUST_COPY);
	buf_free(&out);
	if (!r)
		return MHD_NO;
	char num[32];
	snprintf(num, sizeof(num), "%lld", (long long)next);
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	MHD_add_response_header(r, "X-Log-Next-Offset", num);
	MHD_add_response_header(r, "X-Log-Finished", finished ? "true" : "false");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result job_artifacts(struct http_server *srv, struct MHD_Connection *c, int64_t id,
				     const char *path)
{
	struct store_job *job = NULL;
	struct vmci_err err = {0};
	int rc = store_job_get(srv->store, id, &job, &err);
	if (rc)
		return store_failure(c, rc, &err);
	struct store_artifact *list = NULL;
	size_t n = 0;
	rc = store_artifacts_list(srv->store, id, &list, &n, &err);
	enum MHD_Result ret;
	if (rc < 0) {
		ret = store_failure(c, rc, &err);
	} else if (!path) {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(
			    a, json_pack("{s:s, s:I, s:s, s:i}", "path", list[i].path, "size",
					 (json_int_t)list[i].size, "sha256", list[i].sha256,
					 "attempt", list[i].attempt));
		ret = http_json(c, MHD_HTTP_OK, json_pack("{s:o}", "artifacts", a));
	} else {
		/* Only indexed paths are served: nothing outside the job's directory. */
		size_t i = 0;
		while (i < n && strcmp(list[i].path, path))
			i++;
		char root[PATH_MAX], name[256], file[PATH_MAX];
		runner_job_dirname(job->name, name, sizeof(name));
		if (srv->o.dirs.artifacts)
			snprintf(root, sizeof(root), "%s", srv->o.dirs.artifacts);
		else
			fs_path(root, sizeof(root), "%s/artifacts", vmci_home());
		int fd = -1;
		struct stat st;
		if (i < n && !fs_path(file, sizeof(file), "%s/%lld/%s/%s", root,
				      (long long)job->run_id, name, path))
			fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st)) {
			if (fd >= 0)
				close(fd);
			ret = http_error(c, MHD_HTTP_NOT_FOUND, "job %lld has no artifact '%s'",
					 (long long)id, path);
		} else {
			struct MHD_Response *r =
			    MHD_create_response_from_fd((uint64_t)st.st_size, fd);
			MHD_add_response_header(r, "Content-Type", "application/octet-stream");
			ret = MHD_queue_response(c, MHD_HTTP_OK, r);
			MHD_destroy_response(r);
		}
	}
	store_artifacts_free(list, n);
	store_job_free(job);
	return ret;
}

static enum MHD_Result jobs_route(struct http_server *srv, struct MHD_Connection *c,
				  const char *method, const char *p)
{
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	if (*p != '/')
		return http_error(c, MHD_HTTP_NOT_FOUND, "GET /api/v1/jobs/ID for a job");
	p++;
	int64_t id = take_id(&p);
	if (!id)
		return http_error(c, MHD_HTTP_NOT_FOUND, "no such job: a job id is a number");
	if (!*p && get)
		return job_reply(srv, c, id);
	if (!strcmp(p, "/log") && get)
		return job_log(srv, c, id);
	if (!strcmp(p, "/log/stream") && get)
		return http_sse_log(srv, c, id);
	if (!strcmp(p, "/artifacts") && get)
		return job_artifacts(srv, c, id, NULL);
	if (!strncmp(p, "/artifacts/", 11) && get)
		return job_artifacts(srv, c, id, p + 11);
	if (!strcmp(p, "/retry") && post) {
		struct vmci_err err = {0};
		int rc = store_job_retry(srv->store, id, &err);
		return rc < 0 ? store_failure(c, rc, &err) : job_reply(srv, c, id);
	}
	return http_error(c, MHD_HTTP_NOT_FOUND, "%s /api/v1/jobs/%lld%s is not an endpoint",
			  method, (long long)id, p);
}

enum MHD_Result http_api(struct http_server *srv, struct MHD_Connection *c, const char *method,
			 const char *path, const struct http_request *req)
{
	if (!strncmp(path, "/runs", 5) && (path[5] == 0 || path[5] == '/'))
		return runs_route(srv, c, method, path + 5, req);
	if (!strncmp(path, "/jobs", 5) && (path[5] == 0 || path[5] == '/'))
		return jobs_route(srv, c, method, path + 5);
	return http_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint: /api/v1%s", path);
}
