/*
 * Job logs: append-only chunks at byte offsets. The log of a job is the
 * log of its first attempt, then its second, ...: an attempt that lost
 * its lease keeps what it wrote, and the next one writes after it.
 */
#include "runner/store/internal.h"

#include <errno.h>
#include <string.h>

static int64_t append_tx(struct store *s, int64_t job_id, int attempt, const void *data, size_t len,
			 struct vmci_err *err)
{
	int64_t log_len = 0;
	int rc = job_current_tx(s, job_id, attempt, NULL, &log_len, err);
	if (rc < 0)
		return rc;
	if (len == 0)
		return log_len;
	int64_t changed = db_exec(s, err,
				  "INSERT INTO log_chunks (job_id, pos, len, attempt, data)"
				  " VALUES (?, ?, ?, ?, ?)",
				  "IIIib", job_id, log_len, (int64_t)len, attempt, data, len);
	if (changed >= 0)
		changed = db_exec(s, err, "UPDATE jobs SET log_len = ? WHERE id = ?", "II",
				  log_len + (int64_t)len, job_id);
	return changed < 0 ? changed : log_len + (int64_t)len;
}

int64_t store_log_append(struct store *s, int64_t job_id, int attempt, const void *data, size_t len,
			 struct vmci_err *err)
{
	if (len > INT32_MAX)
		return vmci_err_set(err, EFBIG, "job %lld: a log chunk of %zu bytes is too big",
				    (long long)job_id, len);
	store_lock(s);
	int64_t rc = db_begin(s, true, err);
	if (rc == 0)
		rc = append_tx(s, job_id, attempt, data, len, err);
	if (rc < 0) {
		db_end(s, (int)rc, err);
	} else {
		int crc = db_end(s, 0, err);
		if (crc < 0)
			rc = crc;
	}
	store_unlock(s);
	return rc;
}

static int64_t read_tx(struct store *s, int64_t job_id, int64_t offset, size_t max, struct buf *out,
		       int64_t *next_offset, bool *finished, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc =
	    db_query(s, &st, err, "SELECT status, log_len FROM jobs WHERE id = ?", "I", job_id);
	if (rc < 0)
		return rc;
	rc = db_step(s, st, err);
	enum store_status status = rc == 1 ? col_status(s, st, 0) : STORE_QUEUED;
	int64_t log_len = rc == 1 ? col_int(s, st, 1, 0) : 0;
	db_done(s, st);
	if (rc == 0)
		return vmci_err_set(err, ENOENT, "job %lld not found", (long long)job_id);
	if (rc < 0)
		return rc;
	if (offset < 0 || offset > log_len)
		return vmci_err_set(err, EINVAL,
				    "job %lld: offset %lld is past the end of its log (%lld bytes)",
				    (long long)job_id, (long long)offset, (long long)log_len);
	int64_t end = log_len - offset < (int64_t)max ? log_len : offset + (int64_t)max;
	int64_t got = 0;
	if (end > offset) {
		/*
		 * From the chunk holding offset (the last one starting at or before it) up to end.
		 */
		rc = db_query(s, &st, err,
			      "SELECT pos, data FROM log_chunks WHERE job_id = ? AND pos < ?"
			      " AND pos >= (SELECT COALESCE(MAX(pos), 0) FROM log_chunks"
			      " WHERE job_id = ? AND pos <= ?) ORDER BY pos",
			      "IIII", job_id, end, job_id, offset);
		if (rc < 0)
			return rc;
		if (buf_reserve(out, (size_t)(end - offset)) < 0)
			rc = store_oom(err, "reading a log");
		while (rc >= 0 && (rc = db_step(s, st, err)) == 1) {
			int64_t pos = col_int(s, st, 0, 0);
			size_t len;
			const char *data = s->engine->col_blob(st, 1, &len);
			int64_t from = offset + got,
				to = pos + (int64_t)len < end ? pos + (int64_t)len : end;
			if (from < pos || to <= from)
				continue;
			buf_append(out, data + (from - pos), (size_t)(to - from));
			got += to - from;
		}
		db_done(s, st);
		if (rc < 0)
			return rc;
	}
	*next_offset = offset + got;
	*finished = store_status_finished(status) && *next_offset == log_len;
	return got;
}

int64_t store_log_read(struct store *s, int64_t job_id, int64_t offset, size_t max, struct buf *out,
		       int64_t *next_offset, bool *finished, struct vmci_err *err)
{
	*next_offset = offset;
	*finished = false;
	store_lock(s);
	int64_t rc = db_begin(s, false, err);
	if (rc == 0)
		rc = read_tx(s, job_id, offset, max, out, next_offset, finished, err);
	if (rc < 0) {
		db_end(s, (int)rc, err);
	} else {
		int crc = db_end(s, 0, err);
		if (crc < 0)
			rc = crc;
	}
	store_unlock(s);
	return rc;
}
