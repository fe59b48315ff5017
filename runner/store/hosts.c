/* Hosts of the farm: registered with a url and a capacity, kept alive by heartbeats, drained. */
#include "runner/store/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const states[] = {
    [STORE_HOST_UP] = "up",
    [STORE_HOST_DRAINING] = "draining",
    [STORE_HOST_DOWN] = "down",
};

const char *store_host_state_name(enum store_host_state state)
{
	return (unsigned)state < ARRAY_LEN(states) ? states[state] : "unknown";
}

static enum store_host_state state_of(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_LEN(states); i++)
		if (!strcmp(name, states[i]))
			return (enum store_host_state)i;
	return STORE_HOST_DOWN;
}

static int not_registered(const char *name, struct vmci_err *err)
{
	return vmci_err_set(err, ENOENT,
			    "host '%s' is not registered (a host registers when its vmci serve "
			    "starts)",
			    name);
}

int store_host_register(struct store *s, const char *name, const char *url, int capacity,
			struct vmci_err *err)
{
	if (!name || !*name || capacity < 1)
		return vmci_err_set(err, EINVAL,
				    "a host needs a name and a capacity of at least 1");
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0) {
		int64_t now = store_now_ms(s);
		int64_t changed = db_exec(
		    s, err,
		    "INSERT INTO hosts (name, url, capacity, state, heartbeat_ms, registered_ms)"
		    " VALUES (?, ?, ?, 'up', ?, ?) ON CONFLICT (name) DO UPDATE SET"
		    " url = excluded.url, capacity = excluded.capacity,"
		    " heartbeat_ms = excluded.heartbeat_ms,"
		    " state = CASE WHEN hosts.state = 'down' THEN 'up' ELSE hosts.state END",
		    "ssiII", name, url ? url : "", capacity, now, now);
		rc = changed < 0 ? (int)changed : 0;
	}
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

int store_host_heartbeat(struct store *s, const char *name, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0) {
		int64_t changed =
		    db_exec(s, err,
			    "UPDATE hosts SET heartbeat_ms = ?, state = CASE"
			    " WHEN state = 'down' THEN 'up' ELSE state END WHERE name = ?",
			    "Is", store_now_ms(s), name);
		rc = changed == 0 ? not_registered(name, err) : (int)(changed < 0 ? changed : 0);
	}
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

int store_host_set_state(struct store *s, const char *name, enum store_host_state state,
			 int64_t drain_deadline_ms, struct vmci_err *err)
{
	if ((unsigned)state >= ARRAY_LEN(states))
		return vmci_err_set(err, EINVAL, "host '%s': no such state %d", name, (int)state);
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0) {
		int64_t changed = db_exec(
		    s, err, "UPDATE hosts SET state = ?, drain_deadline_ms = ? WHERE name = ?",
		    "sJs", store_host_state_name(state),
		    state == STORE_HOST_DRAINING ? drain_deadline_ms : (int64_t)0, name);
		rc = changed == 0 ? not_registered(name, err) : (int)(changed < 0 ? changed : 0);
	}
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

int store_hosts_mark_down(struct store *s, int64_t older_than_ms, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0) {
		int64_t changed = db_exec(s, err,
					  "UPDATE hosts SET state = 'down'"
					  " WHERE state <> 'down' AND heartbeat_ms < ?",
					  "I", older_than_ms);
		rc = (int)changed;
	}
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

void store_hosts_free(struct store_host *hosts, size_t n)
{
	for (size_t i = 0; hosts && i < n; i++) {
		free(hosts[i].name);
		free(hosts[i].url);
	}
	free(hosts);
}

static int list_tx(struct store *s, struct store_host **out, size_t *n, struct vmci_err *err)
{
	int64_t count = 0;
	int rc = db_int(s, &count, err, "SELECT COUNT(*) FROM hosts", "");
	if (rc < 0)
		return rc;
	struct store_host *hosts = calloc(count ? (size_t)count : 1, sizeof(*hosts));
	if (!hosts)
		return store_oom(err, "listing hosts");
	struct store_stmt *st;
	size_t len = 0;
	rc = db_query(
	    s, &st, err,
	    "SELECT h.name, h.url, h.capacity, h.state, h.drain_deadline_ms,"
	    " h.heartbeat_ms, h.registered_ms, (SELECT COUNT(*) FROM jobs j"
	    " WHERE j.status = 'running' AND j.host = h.name) FROM hosts h ORDER BY h.name",
	    "");
	if (rc == 0) {
		while (len < (size_t)count && (rc = db_step(s, st, err)) == 1) {
			struct store_host *h = &hosts[len++];
			h->name = col_strdup(s, st, 0);
			h->url = col_strdup(s, st, 1);
			h->capacity = (int)col_int(s, st, 2, 0);
			h->state = state_of(col_text(s, st, 3));
			h->drain_deadline_ms = col_int(s, st, 4, 0);
			h->heartbeat_ms = col_int(s, st, 5, 0);
			h->registered_ms = col_int(s, st, 6, 0);
			h->running = (int)col_int(s, st, 7, 0);
			if (!h->name || !h->url) {
				rc = store_oom(err, "listing hosts");
				break;
			}
		}
		db_done(s, st);
	}
	if (rc < 0) {
		store_hosts_free(hosts, len);
		return rc;
	}
	*out = hosts;
	*n = len;
	return 0;
}

int store_hosts_list(struct store *s, struct store_host **out, size_t *n, struct vmci_err *err)
{
	*out = NULL;
	*n = 0;
	store_lock(s);
	int rc = db_begin(s, false, err);
	if (rc == 0)
		rc = list_tx(s, out, n, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}
