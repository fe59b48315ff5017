/* Events: what happened to a run, in order, each with a JSON object of details. */
#include "runner/store/internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int event_add_tx(struct store *s, int64_t run_id, int64_t job_id, const char *kind,
		 const char *data_json, struct vmci_err *err)
{
	int64_t rc =
	    db_exec(s, err,
		    "INSERT INTO events (run_id, job_id, kind, data, created_ms) "
		    "VALUES (?, ?, ?, ?, ?)",
		    "IJssI", run_id, job_id, kind, data_json ? data_json : "{}", store_now_ms(s));
	return rc < 0 ? (int)rc : 0;
}

int event_pack_tx(struct store *s, struct vmci_err *err, int64_t run_id, int64_t job_id,
		  const char *kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_t *data = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	if (!text)
		return store_oom(err, "recording an event");
	int rc = event_add_tx(s, run_id, job_id, kind, text, err);
	free(text);
	return rc;
}

int store_event_add(struct store *s, int64_t run_id, int64_t job_id, const char *kind,
		    const char *data_json, struct vmci_err *err)
{
	if (!kind || !*kind)
		return vmci_err_set(err, EINVAL, "event of run %lld: no kind given",
				    (long long)run_id);
	if (data_json) {
		json_t *data = json_loads(data_json, JSON_DECODE_ANY, NULL);
		bool object = json_is_object(data);
		json_decref(data);
		if (!object)
			return vmci_err_set(
			    err, EINVAL,
			    "event '%s' of run %lld: its data is not a JSON object: "
			    "%.60s",
			    kind, (long long)run_id, data_json);
	}
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0) {
		int64_t found = 0;
		rc = db_int(s, &found, err, "SELECT id FROM runs WHERE id = ?", "I", run_id);
		if (rc == 0)
			rc = vmci_err_set(err, ENOENT, "run %lld not found", (long long)run_id);
	}
	if (rc >= 0 && job_id) {
		int64_t of = 0;
		rc = db_int(s, &of, err, "SELECT run_id FROM jobs WHERE id = ?", "I", job_id);
		if (rc == 0 || (rc == 1 && of != run_id))
			rc = vmci_err_set(err, ENOENT, "job %lld not found in run %lld",
					  (long long)job_id, (long long)run_id);
	}
	if (rc >= 0)
		rc = event_add_tx(s, run_id, job_id, kind, data_json, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc < 0 ? rc : 0;
}

void store_events_free(struct store_event *events, size_t n)
{
	for (size_t i = 0; events && i < n; i++) {
		free(events[i].kind);
		free(events[i].data_json);
	}
	free(events);
}

static int list_tx(struct store *s, int64_t run_id, int64_t after_id, int limit,
		   struct store_event **out, size_t *n, struct vmci_err *err)
{
	struct store_stmt *st;
	int rc = db_query(s, &st, err,
			  "SELECT id, run_id, job_id, kind, data, created_ms FROM events "
			  "WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
			  "IIi", run_id, after_id, limit);
	if (rc < 0)
		return rc;
	struct store_event *list = calloc((size_t)limit, sizeof(*list));
	size_t len = 0;
	if (!list)
		rc = store_oom(err, "listing events");
	while (list && (rc = db_step(s, st, err)) == 1) {
		struct store_event *e = &list[len++];
		e->id = col_int(s, st, 0, 0);
		e->run_id = col_int(s, st, 1, 0);
		e->job_id = col_int(s, st, 2, 0);
		e->kind = col_strdup(s, st, 3);
		e->data_json = col_strdup(s, st, 4);
		e->created_ms = col_int(s, st, 5, 0);
		if (!e->kind || !e->data_json)
			rc = store_oom(err, "listing events");
		if (rc < 0)
			break;
	}
	db_done(s, st);
	if (rc < 0) {
		store_events_free(list, len);
		return rc;
	}
	*out = list;
	*n = len;
	return 0;
}

int store_events_list(struct store *s, int64_t run_id, int64_t after_id, int limit,
		      struct store_event **out, size_t *n, struct vmci_err *err)
{
	*out = NULL;
	*n = 0;
	if (limit <= 0 || limit > 1000)
		limit = limit <= 0 ? 100 : 1000;
	store_lock(s);
	int rc = db_begin(s, false, err);
	if (rc == 0)
		rc = list_tx(s, run_id, after_id, limit, out, n, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}
