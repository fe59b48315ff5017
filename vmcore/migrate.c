/*
 * Live migration: a running VM, disk and all, moves to a new QEMU.
 *
 * The disks are not shared: the destination has its own overlay over
 * the same backing file for each, exported writable over NBD
 * (nbd-server-start, block-export-add; exporting also activates the node
 * of a QEMU that waits for an incoming migration). That is the root disk
 * and every disk added at run time (vm_disk_attach), which the
 * destination gets before the migration at the same SCSI target, with
 * the same node and device names, so that the device state matches. The
 * source mirrors each overlay into its export (blockdev-mirror, sync
 * "top": what lies below the overlay is the same on both sides) with
 * copy-mode "write-blocking", so that once a mirror is in sync every
 * guest write reaches both disks before it completes. Then RAM and
 * devices go by `migrate` with the capability pause-before-switchover:
 * the source stops the guest, waits in "pre-switchover" while the
 * mirrors are completed (block-job-cancel of a job in sync is a clean
 * completion, BLOCK_JOB_COMPLETED), and only then sends the device state
 * (migrate-continue). The destination's disks are thus exact when its
 * guest first runs. QEMU's own account is qapi/block-core.json,
 * qapi/block-export.json and qapi/migration.json.
 *
 * Failure at any step before the switchover leaves the source as it
 * was: the migration is cancelled (QEMU restarts a guest it paused), the
 * mirrors are cancelled and their NBD connections removed, the guest is
 * resumed if it is still paused.
 */
#include "vmcore/channel.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define QMP_TIMEOUT_MS	     10000
#define DEFAULT_TIMEOUT_MS   300000
#define DEFAULT_DOWNTIME_MS  50
#define UNLIMITED_BANDWIDTH  ((int64_t)1 << 40) /* bytes/s: QEMU's default is 32 MiB/s */
#define CLEANUP_TIMEOUT_MS   10000
#define RECONNECT_TIMEOUT_MS 10000
#define POLL_MS		     10
#define MIRROR_JOB	     "vmci-mirror"
#define MIRROR_TARGET	     "vmci-mirror-target"
#define EXPORT_ID	     "vmci-export"
#define NAME_MAX_LEN	     48

void vm_agent_state_get(const struct vm *vm, struct vm_agent_state *out)
{
	out->guest_seq = vm->guest_seq;
	out->stream = vm->detached_stream;
}

/* Runs a QMP command whose failure is told as what failed. */
static int command(struct vm *vm, const char *name, json_t *args, json_t **ret, const char *what,
		   struct vmci_err *err)
{
	int rc = qmp_execute(vm->qmp, name, args, ret, QMP_TIMEOUT_MS, err);
	if (rc == -EPIPE)
		return channel_vm_died(vm, what, err);
	if (rc)
		vmci_err_wrap(err, "%s", what);
	return rc;
}

/* query-status's "status": "running", "paused", "postmigrate"...; "" when QEMU did not say. */
static void run_state(struct vm *vm, char *out, size_t size)
{
	json_t *st = NULL;
	out[0] = 0;
	if (qmp_execute(vm->qmp, "query-status", NULL, &st, QMP_TIMEOUT_MS, NULL) == 0) {
		const char *s = json_string_value(json_object_get(st, "status"));
		snprintf(out, size, "%s", s ? s : "");
	}
	json_decref(st);
}

/* query-migrate's "status" ("" when none) and "error-desc". */
static int migration_status(struct vm *vm, char *status, size_t ssize, char *desc, size_t dsize,
			    json_t **info_out, const char *what, struct vmci_err *err)
{
	json_t *info = NULL;
	int rc = command(vm, "query-migrate", NULL, &info, what, err);
	if (rc)
		return rc;
	const char *s = json_string_value(json_object_get(info, "status"));
	const char *d = json_string_value(json_object_get(info, "error-desc"));
	snprintf(status, ssize, "%s", s ? s : "");
	if (desc)
		snprintf(desc, dsize, "%s", d ? d : "QEMU gave no reason");
	if (info_out)
		*info_out = info;
	else
		json_decref(info);
	return 0;
}

/* The wall clock (ms) in an event's "timestamp", or 0. */
static int64_t event_time_ms(const struct qmp_msg *ev)
{
	json_t *ts = json_object_get(ev->root, "timestamp");
	return json_integer_value(json_object_get(ts, "seconds")) * 1000 +
	       json_integer_value(json_object_get(ts, "microseconds")) / 1000;
}

/*
 * The names of a disk's export: its id, and its name, which is the node
 * it exports (the disk at SCSI target t, or the root disk for t ==
 * VM_DISK_TARGETS).
 */
static void export_names(unsigned t, char *id, char *node)
{
	if (t == VM_DISK_TARGETS) {
		snprintf(id, NAME_MAX_LEN, "%s", EXPORT_ID);
		snprintf(node, NAME_MAX_LEN, "%s", QEMU_DISK_NODE);
		return;
	}
	char dev[NAME_MAX_LEN];
	disk_names(t, node, dev, NAME_MAX_LEN);
	snprintf(id, NAME_MAX_LEN, "%s-%s", EXPORT_ID, node);
}

/* ---- the destination ------------------------------------------------------- */

int vm_migrate_listen(const struct vm_spec *spec, struct vm **out, struct vm_migrate_addr *addr,
		      struct vmci_err *err)
{
	*out = NULL;
	memset(addr, 0, sizeof(*addr));
	if (!spec->disk || !*spec->disk)
		return vmci_err_set(err, EINVAL,
				    "the destination of a migration needs a disk (a new overlay "
				    "over the source disk's backing file)");
	if (spec->incoming)
		return vmci_err_set(
		    err, EINVAL, "the destination of a migration cannot also load a saved state");
	if (!spec->run_dir)
		return vmci_err_set(err, EINVAL, "the VM spec has no run directory");
	if (snprintf(addr->nbd, sizeof(addr->nbd), "%s/nbd.sock", spec->run_dir) >=
		(int)sizeof(addr->nbd) ||
	    snprintf(addr->stream, sizeof(addr->stream), "%s/migrate.sock", spec->run_dir) >=
		(int)sizeof(addr->stream))
		return vmci_err_set(err, ENAMETOOLONG,
				    "run directory %s is too long for unix sockets; use a shorter "
				    "one",
				    spec->run_dir);
	unlink(addr->nbd);
	unlink(addr->stream);

	/* The guest's state belongs to one accelerator: no falling back after the move. */
	char why[512];
	enum vm_accel accel =
	    vm_accel_resolve(spec->accel, spec->arch, spec->kernel, spec->initrd, why, sizeof(why));
	struct vm *vm = NULL;
	int rc = vm_launch(spec, accel, true, &vm, err);
	if (rc)
		return rc;
	const char *what = "preparing the destination of a migration";
	/* The source's disks added at run time, before the device state arrives. */
	for (unsigned t = 0; t < VM_DISK_TARGETS && !rc; t++)
		if (spec->migrate_disks[t])
			rc = vm_disk_attach(vm, t, spec->migrate_disks[t], "qcow2", false, err);
	json_t *nbd =
	    json_pack("{s:{s:s, s:{s:s}}}", "addr", "type", "unix", "data", "path", addr->nbd);
	char uri[VM_SOCKET_PATH_MAX + 8];
	snprintf(uri, sizeof(uri), "unix:%s", addr->stream);
	json_t *incoming = json_pack("{s:s}", "uri", uri);
	if (!rc)
		rc = command(vm, "nbd-server-start", nbd, NULL, what, err);
	else
		json_decref(nbd);
	for (unsigned t = 0; t <= VM_DISK_TARGETS && !rc; t++) {
		bool root = t == VM_DISK_TARGETS;
		if (!root && !(vm->hot_disks & (1u << t)))
			continue;
		char id[NAME_MAX_LEN], node[NAME_MAX_LEN];
		export_names(t, id, node);
		rc = command(vm, "block-export-add",
			     json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id", id,
				       "node-name", node, "name", node, "writable", 1),
			     NULL, what, err);
	}
	/* MIGRATION events tell the moment the state is in. */
	if (!rc)
		rc = command(vm, "migrate-set-capabilities",
			     json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "events",
				       "state", 1),
			     NULL, what, err);
	if (!rc)
		rc = command(vm, "migrate-incoming", incoming, NULL, what, err);
	else
		json_decref(incoming);
	if (rc) {
		vm_launch_failed(vm, rc, err);
		unlink(addr->nbd);
		unlink(addr->stream);
		return rc;
	}
	vm->migrate_in = *addr;
	log_debug("VM %d waits for a migration at %s (disk export %s)", (int)vm->proc.pid,
		  addr->stream, addr->nbd);
	*out = vm;
	return 0;
}

/*
 * Removes the NBD exports (of the root disk and of each disk added at run
 * time): the guest may run once they are gone (it wants its disks
 * unshared).
 */
static void end_export(struct vm *vm)
{
	for (unsigned t = 0; t <= VM_DISK_TARGETS; t++) {
		if (t < VM_DISK_TARGETS && !(vm->hot_disks & (1u << t)))
			continue;
		char id[NAME_MAX_LEN], node[NAME_MAX_LEN];
		export_names(t, id, node);
		qmp_execute(vm->qmp, "block-export-del",
			    json_pack("{s:s, s:s}", "id", id, "mode", "hard"), NULL, QMP_TIMEOUT_MS,
			    NULL);
	}
}

/* Stops the NBD server, which has no export left, and removes the sockets listened on. */
static void end_listening(struct vm *vm)
{
	qmp_execute(vm->qmp, "nbd-server-stop", NULL, NULL, QMP_TIMEOUT_MS, NULL);
	if (vm->migrate_in.nbd[0])
		unlink(vm->migrate_in.nbd);
	if (vm->migrate_in.stream[0])
		unlink(vm->migrate_in.stream);
	memset(&vm->migrate_in, 0, sizeof(vm->migrate_in));
}

int vm_migrate_accept(struct vm *dst, const struct vm_agent_state *from, int timeout_ms,
		      struct vmci_err *err)
{
	if (!dst->migrate_in.stream[0])
		return vmci_err_set(err, EINVAL, "%s: VM %d is not waiting for a migration",
				    __func__, (int)dst->proc.pid);
	const char *what = "receiving a migrated VM";
	int timeout = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
	int64_t deadline = clock_ms() + timeout;
	for (;;) {
		int64_t left = deadline - clock_ms();
		if (left <= 0)
			return vmci_err_set(err, ETIMEDOUT,
					    "no migration arrived in full within %d s",
					    timeout / 1000);
		struct qmp_msg ev;
		int rc =
		    qmp_next_event(dst->qmp, "MIGRATION", left > 1000 ? 1000 : (int)left, &ev, err);
		if (rc == -EPIPE || (rc == 0 && qemu_exited(&dst->proc)))
			return channel_vm_died(dst, what, err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		const char *st = json_string_value(json_object_get(ev.value, "status"));
		bool completed = st && !strcmp(st, "completed");
		bool failed = st && (!strcmp(st, "failed") || !strcmp(st, "cancelled"));
		qmp_msg_free(&ev);
		if (completed)
			break;
		if (failed) {
			char status[32], desc[512];
			rc = migration_status(dst, status, sizeof(status), desc, sizeof(desc), NULL,
					      what, err);
			return rc ? rc
				  : vmci_err_set(err, EIO, "the incoming migration failed: %s",
						 desc);
		}
	}
	/*
	 * QEMU holds the guest paused (-S): the export goes first, then the
	 * guest's disk is activated for it alone and the guest runs. The
	 * rest of the clean-up waits: the guest is paused until cont.
	 */
	int64_t t0 = clock_ms();
	end_export(dst);
	int64_t t1 = clock_ms();
	int rc = command(dst, "cont", NULL, NULL, "resuming the migrated guest", err);
	log_debug("VM %d: export removed in %lld ms, guest resumed in %lld ms", (int)dst->proc.pid,
		  (long long)(t1 - t0), (long long)(clock_ms() - t1));
	end_listening(dst);
	/* QEMU sends the event before its answer to cont: it is queued by now. */
	struct qmp_msg resumed;
	if (!rc && qmp_next_event(dst->qmp, "RESUME", 0, &resumed, NULL) == 1) {
		dst->resumed_at_ms = event_time_ms(&resumed);
		qmp_msg_free(&resumed);
	}
	/* The refresh must not swallow what a detached command sent meanwhile. */
	dst->held_stream = from ? from->stream : 0;
	if (!rc)
		rc = channel_resume(dst, from ? from->guest_seq : 0, RECONNECT_TIMEOUT_MS, err);
	if (!rc)
		rc = vm_refresh_guest(dst, err);
	if (rc) {
		vmci_err_wrap(err, "after migrating the VM into QEMU %d", (int)dst->proc.pid);
		return rc;
	}
	log_debug("VM %d: migrated guest runs", (int)dst->proc.pid);
	return 0;
}

/* ---- the source ---------------------------------------------------------------- */

/* One disk an attempt mirrors: the root disk, or one added at run time. */
struct mirror {
	char node[NAME_MAX_LEN];   /* the source's node, also the export's name */
	char job[NAME_MAX_LEN];	   /* the block job's id */
	char target[NAME_MAX_LEN]; /* the node connected to the destination's export */
	char what[NAME_MAX_LEN];   /* for messages: "the disk", "the disk at SCSI target 0" */
	bool target_added, running, ready, completed;
	uint64_t bytes;
};

/* What an attempt set up in the source's QEMU, so that a failure undoes exactly that. */
struct attempt {
	struct vm *vm;
	int64_t deadline;
	bool caps_set, migrating;
	struct mirror disks[VM_DISK_TARGETS + 1];
	size_t n_disks;
	int64_t paused_at, continued_at; /* clock_ms of the guest's stop, of migrate-continue */
	int64_t stopped_at_ms;		 /* the wall clock in QEMU's STOP event */
};

/* The disks of a's VM: the root disk, then each disk added at run time. */
static void list_disks(struct attempt *a)
{
	for (unsigned i = 0; i <= VM_DISK_TARGETS; i++) {
		unsigned target = i == 0 ? VM_DISK_TARGETS : i - 1;
		if (target < VM_DISK_TARGETS && !(a->vm->hot_disks & (1u << target)))
			continue;
		struct mirror *m = &a->disks[a->n_disks++];
		char id[NAME_MAX_LEN];
		export_names(target, id, m->node);
		if (target == VM_DISK_TARGETS) {
			snprintf(m->job, sizeof(m->job), "%s", MIRROR_JOB);
			snprintf(m->target, sizeof(m->target), "%s", MIRROR_TARGET);
			snprintf(m->what, sizeof(m->what), "the disk");
		} else {
			snprintf(m->job, sizeof(m->job), "%s-%u", MIRROR_JOB, target);
			snprintf(m->target, sizeof(m->target), "%s-%u", MIRROR_TARGET, target);
			snprintf(m->what, sizeof(m->what), "the disk at SCSI target %u", target);
		}
	}
}

/*
 * The next QMP event, waiting at most a second at a time. Returns 1 with
 * *ev, 0 when none came yet, negative when QEMU died or the deadline
 * passed.
 */
static int next_event(struct attempt *a, struct qmp_msg *ev, const char *what, struct vmci_err *err)
{
	int64_t left = a->deadline - clock_ms();
	if (left <= 0)
		return vmci_err_set(err, ETIMEDOUT, "%s did not finish in time", what);
	if (a->vm->cancel_requested)
		return vmci_err_set(err, ECANCELED, "the move was cancelled");
	int rc = qmp_next_event(a->vm->qmp, NULL, left > 1000 ? 1000 : (int)left, ev, err);
	if (rc == -EPIPE)
		return channel_vm_died(a->vm, what, err);
	return rc;
}

/* The mirror a BLOCK_JOB_* event of the given name is about, or NULL. */
static struct mirror *mirror_of(struct attempt *a, const struct qmp_msg *ev, const char *name)
{
	const char *dev = json_string_value(json_object_get(ev->value, "device"));
	if (strcmp(ev->event, name) || !dev)
		return NULL;
	for (size_t i = 0; i < a->n_disks; i++)
		if (!strcmp(dev, a->disks[i].job))
			return &a->disks[i];
	return NULL;
}

/*
 * Follows the mirrors in an event: READY marks one in sync, an ending
 * one is no longer running. Returns 1 (with err) when a mirror failed or
 * was cancelled, else 0; a clean completion marks the mirror completed.
 */
static int mirror_event(struct attempt *a, const struct qmp_msg *ev, struct vmci_err *err)
{
	struct mirror *m = mirror_of(a, ev, "BLOCK_JOB_READY");
	if (m) {
		m->ready = true;
		return 0;
	}
	if ((m = mirror_of(a, ev, "BLOCK_JOB_ERROR"))) {
		const char *op = json_string_value(json_object_get(ev->value, "operation"));
		log_debug("mirror of %s: %s error on the destination", m->what, op ? op : "an I/O");
		return 0; /* BLOCK_JOB_COMPLETED follows with the message */
	}
	bool done = (m = mirror_of(a, ev, "BLOCK_JOB_COMPLETED")) != NULL;
	if (!done && !(m = mirror_of(a, ev, "BLOCK_JOB_CANCELLED")))
		return 0;
	m->running = false;
	m->bytes = (uint64_t)json_integer_value(json_object_get(ev->value, "offset"));
	const char *e = json_string_value(json_object_get(ev->value, "error"));
	if (done && !e) {
		m->completed = true;
		return 0;
	}
	vmci_err_set(err, EIO, "the mirror of %s to the destination %s%s%s", m->what,
		     done ? "failed" : "was cancelled", e ? ": " : "", e ? e : "");
	return 1;
}

static int mirror_start(struct attempt *a, const struct vm_migrate_addr *to, struct vmci_err *err)
{
	struct vm *vm = a->vm;
	char what[128];
	int rc = 0;
	for (size_t i = 0; i < a->n_disks && !rc; i++) {
		struct mirror *m = &a->disks[i];
		json_t *target = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s}", "driver", "nbd",
					   "node-name", m->target, "server", "type", "unix", "path",
					   to->nbd, "export", m->node);
		snprintf(what, sizeof(what), "connecting to the destination's export of %s",
			 m->what);
		rc = command(vm, "blockdev-add", target, NULL, what, err);
		if (rc)
			break;
		m->target_added = true;
		json_t *mirror =
		    json_pack("{s:s, s:s, s:s, s:s, s:s}", "job-id", m->job, "device", m->node,
			      "target", m->target, "sync", "top", "copy-mode", "write-blocking");
		snprintf(what, sizeof(what), "starting the mirror of %s", m->what);
		rc = command(vm, "blockdev-mirror", mirror, NULL, what, err);
		if (!rc)
			m->running = true;
	}
	if (rc)
		return rc;
	const char *waiting = "mirroring the disks to the destination";
	for (;;) {
		size_t ready = 0;
		for (size_t i = 0; i < a->n_disks; i++) {
			if (a->disks[i].completed)
				return vmci_err_set(err, EIO,
						    "the mirror of %s ended before it was in sync",
						    a->disks[i].what);
			ready += a->disks[i].ready;
		}
		if (ready == a->n_disks)
			return 0;
		struct qmp_msg ev;
		rc = next_event(a, &ev, waiting, err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		int failed = mirror_event(a, &ev, err);
		qmp_msg_free(&ev);
		if (failed)
			return -EIO;
	}
}

/* Waits for the migration to reach status want, watching the mirrors meanwhile. */
static int migration_reach(struct attempt *a, const char *want, struct vmci_err *err)
{
	const char *what = "migrating the VM's memory and devices";
	for (;;) {
		struct qmp_msg ev;
		int rc = next_event(a, &ev, what, err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		char status[32] = "";
		if (!strcmp(ev.event, "STOP"))
			a->stopped_at_ms = event_time_ms(&ev);
		if (!strcmp(ev.event, "MIGRATION")) {
			const char *s = json_string_value(json_object_get(ev.value, "status"));
			snprintf(status, sizeof(status), "%s", s ? s : "");
		}
		int mirror_failed = mirror_event(a, &ev, err);
		qmp_msg_free(&ev);
		if (mirror_failed)
			return -EIO;
		if (!strcmp(status, want))
			return 0;
		if (!strcmp(status, "failed") || !strcmp(status, "cancelled")) {
			char desc[512];
			a->migrating = false;
			rc = migration_status(a->vm, status, sizeof(status), desc, sizeof(desc),
					      NULL, what, err);
			return rc ? rc
				  : vmci_err_set(err, EIO,
						 "the migration to the destination failed: %s",
						 desc);
		}
	}
}

/* Completes the mirrors while the guest is paused before the switchover. */
static int mirror_complete(struct attempt *a, struct vmci_err *err)
{
	const char *what = "completing the disk mirrors";
	int rc = 0;
	for (size_t i = 0; i < a->n_disks && !rc; i++)
		rc = command(a->vm, "block-job-cancel",
			     json_pack("{s:s}", "device", a->disks[i].job), NULL, what, err);
	if (rc)
		return rc;
	for (;;) {
		size_t completed = 0;
		for (size_t i = 0; i < a->n_disks; i++)
			completed += a->disks[i].completed;
		if (completed == a->n_disks)
			break;
		struct qmp_msg ev;
		rc = next_event(a, &ev, what, err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		int failed = mirror_event(a, &ev, err);
		qmp_msg_free(&ev);
		if (failed)
			return -EIO;
	}
	rc = 0;
	for (size_t i = 0; i < a->n_disks && !rc; i++) {
		rc = command(a->vm, "blockdev-del",
			     json_pack("{s:s}", "node-name", a->disks[i].target), NULL,
			     "disconnecting from the destination's disk exports", err);
		if (!rc)
			a->disks[i].target_added = false;
	}
	return rc;
}

/* Polls until no block job of the mirrors remains, or gives up at until. */
static void wait_mirrors_gone(struct attempt *a, int64_t until)
{
	while (clock_ms() < until) {
		json_t *jobs = NULL;
		if (qmp_execute(a->vm->qmp, "query-block-jobs", NULL, &jobs, QMP_TIMEOUT_MS, NULL))
			return;
		bool found = false;
		size_t i;
		json_t *job;
		json_array_foreach(jobs, i, job)
		{
			const char *dev = json_string_value(json_object_get(job, "device"));
			for (size_t d = 0; d < a->n_disks && dev; d++)
				found |= !strcmp(dev, a->disks[d].job);
		}
		json_decref(jobs);
		if (!found)
			return;
		usleep(POLL_MS * 1000);
	}
}

/* Undoes what the attempt set up, leaving the guest running on the source. */
static void recover_source(struct attempt *a)
{
	struct vm *vm = a->vm;
	if (qemu_exited(&vm->proc))
		return;
	int64_t until = clock_ms() + CLEANUP_TIMEOUT_MS;
	if (a->migrating) {
		qmp_execute(vm->qmp, "migrate_cancel", NULL, NULL, QMP_TIMEOUT_MS, NULL);
		while (clock_ms() < until) {
			char status[32];
			if (migration_status(vm, status, sizeof(status), NULL, 0, NULL, "", NULL) ||
			    !strcmp(status, "cancelled") || !strcmp(status, "failed") ||
			    !strcmp(status, "completed") || !*status)
				break;
			usleep(POLL_MS * 1000);
		}
	}
	bool running = false;
	for (size_t i = 0; i < a->n_disks; i++)
		if (a->disks[i].running) {
			running = true;
			qmp_execute(vm->qmp, "block-job-cancel",
				    json_pack("{s:s, s:b}", "device", a->disks[i].job, "force", 1),
				    NULL, QMP_TIMEOUT_MS, NULL);
		}
	if (running)
		wait_mirrors_gone(a, until);
	for (size_t i = 0; i < a->n_disks; i++) {
		/* A job that concluded on its own may wait to be dismissed. */
		qmp_execute(vm->qmp, "job-dismiss", json_pack("{s:s}", "id", a->disks[i].job), NULL,
			    QMP_TIMEOUT_MS, NULL);
		if (a->disks[i].target_added)
			qmp_execute(vm->qmp, "blockdev-del",
				    json_pack("{s:s}", "node-name", a->disks[i].target), NULL,
				    QMP_TIMEOUT_MS, NULL);
	}
	if (a->caps_set)
		qmp_execute(vm->qmp, "migrate-set-capabilities",
			    json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
				      "pause-before-switchover", "state", 0),
			    NULL, QMP_TIMEOUT_MS, NULL);
	char state[32];
	run_state(vm, state, sizeof(state));
	if (*state && strcmp(state, "running"))
		qmp_execute(vm->qmp, "cont", NULL, NULL, QMP_TIMEOUT_MS, NULL);
}

static int migrate_ram(struct attempt *a, const struct vm_migrate_addr *to,
		       const struct vm_migrate_opts *opts, struct vmci_err *err)
{
	struct vm *vm = a->vm;
	const char *what = "setting up the migration";
	json_t *caps =
	    json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability",
		      "pause-before-switchover", "state", 1, "capability", "events", "state", 1);
	int rc = command(vm, "migrate-set-capabilities", caps, NULL, what, err);
	if (rc)
		return rc;
	a->caps_set = true;
	int downtime =
	    opts && opts->downtime_limit_ms > 0 ? opts->downtime_limit_ms : DEFAULT_DOWNTIME_MS;
	int64_t bandwidth =
	    opts && opts->max_bandwidth > 0 ? opts->max_bandwidth : UNLIMITED_BANDWIDTH;
	json_t *params = json_pack("{s:I, s:I}", "downtime-limit", (json_int_t)downtime,
				   "max-bandwidth", (json_int_t)bandwidth);
	rc = command(vm, "migrate-set-parameters", params, NULL, what, err);
	if (rc)
		return rc;
	char uri[VM_SOCKET_PATH_MAX + 8];
	snprintf(uri, sizeof(uri), "unix:%s", to->stream);
	rc = command(vm, "migrate", json_pack("{s:s}", "uri", uri), NULL, "starting the migration",
		     err);
	if (rc)
		return rc;
	a->migrating = true;
	rc = migration_reach(a, "pre-switchover", err);
	a->paused_at = clock_ms();
	if (!rc)
		rc = mirror_complete(a, err);
	a->continued_at = clock_ms();
	if (!rc)
		rc = command(vm, "migrate-continue", json_pack("{s:s}", "state", "pre-switchover"),
			     NULL, "finishing the migration", err);
	if (!rc)
		rc = migration_reach(a, "completed", err);
	if (!rc)
		a->migrating = false;
	return rc;
}

int vm_migrate_to(struct vm *src, const struct vm_migrate_addr *to,
		  const struct vm_migrate_opts *opts, struct vm_migrate_stats *stats,
		  struct vmci_err *err)
{
	struct vm_migrate_stats st = {0};
	if (!src->has_disk)
		return vmci_err_set(err, EINVAL,
				    "VM %d has no disk: a migration moves the VM's own overlay",
				    (int)src->proc.pid);
	/* Events of an earlier attempt (its cancelled mirror...) would be taken for this one's. */
	struct qmp_msg stale;
	qmp_poll(src->qmp, NULL);
	while (qmp_next_event(src->qmp, NULL, 0, &stale, NULL) == 1)
		qmp_msg_free(&stale);
	int64_t t0 = clock_ms();
	struct attempt a = {
	    .vm = src,
	    .deadline = t0 + (opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS),
	};
	list_disks(&a);
	int rc = mirror_start(&a, to, err);
	st.mirror_ms = clock_ms() - t0;
	if (!rc)
		rc = migrate_ram(&a, to, opts, err);
	if (rc) {
		recover_source(&a);
		vmci_err_wrap(err, "cannot migrate VM %d (it runs on where it was)",
			      (int)src->proc.pid);
		return rc;
	}
	/* The mirrors' last byte counts came with their completion. */
	for (size_t i = 0; i < a.n_disks; i++)
		st.disk_bytes += a.disks[i].bytes;
	st.stopped_at_ms = a.stopped_at_ms;
	st.total_ms = clock_ms() - t0;
	json_t *info = NULL;
	char status[32];
	if (migration_status(src, status, sizeof(status), NULL, 0, &info, "", NULL) == 0) {
		st.downtime_ms = (int64_t)json_integer_value(json_object_get(info, "downtime"));
		st.ram_bytes = (uint64_t)json_integer_value(
		    json_object_get(json_object_get(info, "ram"), "transferred"));
		json_decref(info);
	}
	log_debug("VM %d migrated in %lld ms (disk in sync after %lld ms, downtime %lld ms: "
		  "%lld ms to complete the mirror, %lld ms to send the rest)",
		  (int)src->proc.pid, (long long)st.total_ms, (long long)st.mirror_ms,
		  (long long)st.downtime_ms, (long long)(a.continued_at - a.paused_at),
		  (long long)(clock_ms() - a.continued_at));
	if (stats)
		*stats = st;
	return 0;
}

int64_t vm_migrate_resumed_at_ms(const struct vm *dst)
{
	return dst->resumed_at_ms;
}

int vm_migrate_abort(struct vm *src, struct vmci_err *err)
{
	const char *what = "resuming the VM where it was before the migration";
	src->held_stream = src->detached_stream;
	int rc = command(src, "cont", NULL, NULL, what, err);
	if (!rc)
		rc = channel_resume(src, src->guest_seq, RECONNECT_TIMEOUT_MS, err);
	if (!rc)
		rc = vm_refresh_guest(src, err);
	if (rc)
		vmci_err_wrap(err, "%s", what);
	return rc;
}
