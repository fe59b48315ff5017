/* The artifact index: which files a job's attempts produced, by path, with size and hash. */
#include "runner/store/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A path below the job's artifact directory: relative, without "..", ".", or empty parts. */
static bool path_ok(const char *path)
{
	if (!path || !*path || *path == '/' || strlen(path) > 1024)
		return false;
	for (const char *p = path; *p;) {
		size_t len = strcspn(p, "/");
		if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && !strncmp(p, "..", 2)))
			return false;
		p += len;
		if (*p == '/' && !*++p)
			return false;
	}
	return true;
}

static bool hex64(const char *s)
{
	if (!s || strlen(s) != SHA256_HEX_LEN)
		return false;
	return strspn(s, "0123456789abcdef") == SHA256_HEX_LEN;
}

static int add_tx(struct store *s, int64_t job_id, int attempt, const char *path, int64_t size,
		  const char *sha256, struct vmci_err *err)
{
	int rc = job_current_tx(s, job_id, attempt, NULL, NULL, err);
	if (rc < 0)
		return rc;
	int64_t changed =
	    db_exec(s, err,
		    "INSERT INTO artifacts (job_id, path, attempt, size, sha256, created_ms)"
		    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, path) DO UPDATE SET"
		    " attempt = excluded.attempt, size = excluded.size,"
		    " sha256 = excluded.sha256, created_ms = excluded.created_ms",
		    "IsiIsI", job_id, path, attempt, size, sha256, store_now_ms(s));
	return changed < 0 ? (int)changed : 0;
}

int store_artifact_add(struct store *s, int64_t job_id, int attempt, const char *path, int64_t size,
		       const char *sha256, struct vmci_err *err)
{
	if (!path_ok(path))
		return vmci_err_set(
		    err, EINVAL,
		    "job %lld: artifact path '%s' is not a relative path inside the "
		    "job's directory",
		    (long long)job_id, path ? path : "");
	if (size < 0 || !hex64(sha256))
		return vmci_err_set(err, EINVAL,
				    "job %lld: artifact '%s' needs a size and a sha256 of 64 "
				    "lowercase hex digits",
				    (long long)job_id, path);
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0)
		rc = add_tx(s, job_id, attempt, path, size, sha256, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

void store_artifacts_free(struct store_artifact *list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		free(list[i].path);
	free(list);
}

static int list_tx(struct store *s, int64_t job_id, struct store_artifact **out, size_t *n,
		   struct vmci_err *err)
{
	int64_t count = 0;
	int rc = db_int(s, &count, err, "SELECT COUNT(*) FROM jobs WHERE id = ?", "I", job_id);
	if (rc >= 0 && count == 0)
		rc = vmci_err_set(err, ENOENT, "job %lld not found", (long long)job_id);
	if (rc >= 0)
		rc = db_int(s, &count, err, "SELECT COUNT(*) FROM artifacts WHERE job_id = ?", "I",
			    job_id);
	if (rc < 0)
		return rc;
	struct store_artifact *list = calloc(count ? (size_t)count : 1, sizeof(*list));
	if (!list)
		return store_oom(err, "listing artifacts");
	struct store_stmt *st;
	size_t len = 0;
	rc = db_query(s, &st, err,
		      "SELECT job_id, attempt, path, size, sha256, created_ms FROM artifacts"
		      " WHERE job_id = ? ORDER BY path",
		      "I", job_id);
	if (rc == 0) {
		while (len < (size_t)count && (rc = db_step(s, st, err)) == 1) {
			struct store_artifact *a = &list[len++];
			a->job_id = col_int(s, st, 0, 0);
			a->attempt = (int)col_int(s, st, 1, 0);
			a->path = col_strdup(s, st, 2);
			a->size = col_int(s, st, 3, 0);
			snprintf(a->sha256, sizeof(a->sha256), "%s",
				 col_text(s, st, 4) ? col_text(s, st, 4) : "");
			a->created_ms = col_int(s, st, 5, 0);
			if (!a->path) {
				rc = store_oom(err, "listing artifacts");
				break;
			}
		}
		db_done(s, st);
	}
	if (rc < 0) {
		store_artifacts_free(list, len);
		return rc;
	}
	*out = list;
	*n = len;
	return 0;
}

int store_artifacts_list(struct store *s, int64_t job_id, struct store_artifact **out, size_t *n,
			 struct vmci_err *err)
{
	*out = NULL;
	*n = 0;
	store_lock(s);
	int rc = db_begin(s, false, err);
	if (rc == 0)
		rc = list_tx(s, job_id, out, n, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}
