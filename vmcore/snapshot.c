/*
 * Internal snapshots of a VM's qcow2 disk: RAM, device state and disk in
 * one, saved and loaded by QMP jobs (snapshot-save, snapshot-load,
 * snapshot-delete; qapi/migration.json in the QEMU tree).
 *
 * A job is started, then reports its progress as JOB_STATUS_CHANGE
 * events; once "concluded", query-jobs tells whether it failed, and
 * job-dismiss removes it (snapshot jobs are dismissed by hand).
 */
#include "vmcore/channel.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define QMP_TIMEOUT_MS 10000
#define JOB_TIMEOUT_MS 300000 /* writing or reading a guest's whole memory */
/*
 * The reply that starts a snapshot job: QEMU answers once the job is set up,
 * which on a host busy with other guests (or restoring a template from a
 * mapped file) can take well past an ordinary command's 10 s.
 */
#define JOB_START_TIMEOUT_MS 60000
/* The agent runs already: it answers a hello at once, unless the host is swamped. */
#define RECONNECT_TIMEOUT_MS 10000

/* The job's error from query-jobs into msg ("" when it succeeded). */
static int job_error(struct vm *vm, const char *id, char *msg, size_t size, struct vmci_err *err)
{
	json_t *jobs = NULL;
	int rc = qmp_execute(vm->qmp, "query-jobs", NULL, &jobs, QMP_TIMEOUT_MS, err);
	if (rc)
		return rc;
	msg[0] = 0;
	size_t i;
	json_t *job;
	json_array_foreach(jobs, i, job)
	{
		const char *jid = json_string_value(json_object_get(job, "id"));
		const char *e = json_string_value(json_object_get(job, "error"));
		if (jid && !strcmp(jid, id) && e)
			snprintf(msg, size, "%s", e);
	}
	json_decref(jobs);
	return 0;
}

/*
 * Waits for job id to conclude; *failed tells whether it went through
 * "aborting" on its way, which only a failed job does (qapi/job.json).
 */
static int job_wait(struct vm *vm, const char *id, const char *what, bool *failed,
		    struct vmci_err *err)
{
	*failed = false;
	int64_t deadline = clock_ms() + JOB_TIMEOUT_MS;
	for (;;) {
		int64_t left = deadline - clock_ms();
		if (left <= 0)
			return vmci_err_set(err, ETIMEDOUT, "%s did not finish within %d s", what,
					    JOB_TIMEOUT_MS / 1000);
		struct qmp_msg ev;
		int rc = qmp_next_event(vm->qmp, "JOB_STATUS_CHANGE", (int)left, &ev, err);
		if (rc == -EPIPE)
			return channel_vm_died(vm, what, err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		const char *jid = json_string_value(json_object_get(ev.value, "id"));
		const char *status = json_string_value(json_object_get(ev.value, "status"));
		bool ours = jid && status && !strcmp(jid, id);
		if (ours && !strcmp(status, "aborting"))
			*failed = true;
		bool done = ours && !strcmp(status, "concluded");
		qmp_msg_free(&ev);
		if (done)
			return 0;
	}
}

/* Starts one snapshot job on the VM's disk and waits for it to conclude. */
static int job_run(struct vm *vm, const char *command, const char *name, const char *what, char *id,
		   size_t id_size, bool *failed, struct vmci_err *err)
{
	if (!name || !*name)
		return vmci_err_set(err, EINVAL, "%s: a snapshot needs a name", __func__);
	snprintf(id, id_size, "vmci-%s-%u", command, ++vm->qmp_jobs);
	json_t *args =
	    json_pack("{s:s, s:s, s:[s]}", "job-id", id, "tag", name, "devices", QEMU_DISK_NODE);
	/* The memory goes into the same disk as the snapshot. */
	if (args && strcmp(command, "snapshot-delete"))
		json_object_set_new(args, "vmstate", json_string(QEMU_DISK_NODE));
	if (!args)
		return vmci_err_set(err, ENOMEM, "out of memory %s", what);
	int rc = qmp_execute(vm->qmp, command, args, NULL, JOB_START_TIMEOUT_MS, err);
	if (rc == -EPIPE)
		return channel_vm_died(vm, what, err);
	if (rc) {
		vmci_err_wrap(err, "%s", what);
		return rc;
	}
	return job_wait(vm, id, what, failed, err);
}

/* Reports a concluded job's error (asked only of a failed one) and dismisses it. */
static int job_finish(struct vm *vm, const char *id, bool failed, const char *what,
		      struct vmci_err *err)
{
	char failure[512] = "";
	int rc = failed ? job_error(vm, id, failure, sizeof(failure), err) : 0;
	if (!rc)
		qmp_execute(vm->qmp, "job-dismiss", json_pack("{s:s}", "id", id), NULL,
			    QMP_TIMEOUT_MS, NULL);
	if (!rc && failed)
		rc = vmci_err_set(err, EIO, "%s failed: %s", what,
				  *failure ? failure : "no reason given");
	return rc;
}

/* Runs one snapshot job on the VM's disk and reports its error. */
static int snapshot_job(struct vm *vm, const char *command, const char *name, const char *what,
			struct vmci_err *err)
{
	char id[64];
	bool failed;
	int rc = job_run(vm, command, name, what, id, sizeof(id), &failed, err);
	return rc ? rc : job_finish(vm, id, failed, what, err);
}

int vm_snapshot_save(struct vm *vm, const char *name, struct vmci_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "saving snapshot '%s' of VM %d", name ? name : "",
		 (int)vm->proc.pid);
	int64_t t0 = clock_ms();
	int rc = snapshot_job(vm, "snapshot-save", name, what, err);
	if (!rc)
		log_debug("VM %d: snapshot '%s' saved in %lld ms", (int)vm->proc.pid, name,
			  (long long)(clock_ms() - t0));
	return rc;
}

int vm_snapshot_load(struct vm *vm, const char *name, struct vmci_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "reverting VM %d to snapshot '%s'", (int)vm->proc.pid,
		 name ? name : "");
	int64_t t0 = clock_ms();
	char id[64];
	bool failed;
	int rc = job_run(vm, "snapshot-load", name, what, id, sizeof(id), &failed, err);
	if (rc)
		return rc;
	int64_t t1 = clock_ms();
	/*
	 * The agent is back where the snapshot left it, mid-connection with an
	 * old host: reconnect and refresh it in one round trip, and dismiss the
	 * job while the guest works on the answer. Its network is back too, as
	 * it was (every network helper gives the guest the same addresses):
	 * taking the link down and up again would only cost the emulated guest
	 * time. That the helper still runs is checked.
	 */
	struct guest_refresh r;
	if (!failed) {
		rc = channel_restart_send(vm, err);
		if (!rc)
			rc = guest_refresh_send(vm, &r, err);
		r.network_kept = true;
	}
	int done = job_finish(vm, id, failed, what, rc ? NULL : err);
	rc = rc ? rc : done;
	if (rc)
		return rc;
	rc = vm_restart_refreshed_wait(vm, &r, RECONNECT_TIMEOUT_MS, err);
	if (rc) {
		vmci_err_wrap(err, "after reverting VM %d to snapshot '%s'", (int)vm->proc.pid,
			      name);
		return rc;
	}
	log_debug("VM %d: reverted to '%s' in %lld ms (load %lld ms)", (int)vm->proc.pid, name,
		  (long long)(clock_ms() - t0), (long long)(t1 - t0));
	return 0;
}

int vm_snapshot_delete(struct vm *vm, const char *name, struct vmci_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "deleting snapshot '%s' of VM %d", name ? name : "",
		 (int)vm->proc.pid);
	return snapshot_job(vm, "snapshot-delete", name, what, err);
}
