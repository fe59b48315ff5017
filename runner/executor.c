/*
 * The executor: one attempt of one job in one VM.
 *
 * A job gets a VM from a runner_vm_source, its workspace at
 * RUNNER_GUEST_WORKSPACE, and each step as `sh -e -c RUN` (a long script
 * as a file: runner/script.c), with the environment built from the run
 * (VMCI_*), the job's env (the pipeline's overlaid by the job's) and the
 * step's. Expressions were expanded when the pipeline was loaded.
 * Timeouts: each step gets the smaller of its own timeout and what is
 * left of the job's. Artifacts are copied out after the steps, whatever
 * they did, unless the job was cancelled or its VM failed
 * (runner/artifacts.c); a job whose artifacts could not all be copied
 * fails.
 *
 * What vm_exec returns separates the two kinds of failure: a negative
 * code is the VM's (RUNNER_ERROR, retried by the scheduler), a result is
 * the step's (RUNNER_FAILED, never retried).
 */
#include "runner/build.h"
#include "runner/run_dir.h"
#include "runner/executor.h"
#include "pipelines/pipelines.h"
#include "runner/artifacts.h"
#include "runner/handoff.h"
#include "runner/script.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* snprintf for messages that may be cut to fit (no truncation warnings). */
static void textf(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void textf(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, size, fmt, ap);
	va_end(ap);
}

void runner_job_dirname(const char *name, char *out, size_t size)
{
	size_t n = 0;
	bool dash = false;
	for (const char *p = name; *p && n + 2 < size; p++) {
		char c = *p;
		bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (keep && !(n == 0 && c == '.')) {
			out[n++] = c;
			dash = false;
		} else if (n > 0 && !dash) {
			out[n++] = '-';
			dash = true;
		}
	}
	while (n > 0 && out[n - 1] == '-')
		n--;
	out[n] = 0;
	if (n == 0)
		snprintf(out, size, "job"); /* a name of nothing but punctuation */
}

/* ---- the environment -------------------------------------------------------------- */

struct envv {
	char **items;
	size_t len, cap;
};

static int env_add(struct envv *e, const char *key, const char *value)
{
	if (e->len + 2 > e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 32;
		char **items = realloc(e->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		e->items = items;
		e->cap = cap;
	}
	if (asprintf(&e->items[e->len], "%s=%s", key, value ? value : "") < 0)
		return -ENOMEM;
	e->items[++e->len] = NULL;
	return 0;
}

static void env_truncate(struct envv *e, size_t len)
{
	while (e->len > len)
		free(e->items[--e->len]);
	if (e->items)
		e->items[e->len] = NULL;
}

static void env_free(struct envv *e)
{
	env_truncate(e, 0);
	free(e->items);
}

/* What every step of the job sees before its own env. Later entries win in the guest. */
static int job_env(const struct runner_exec_opts *o, const struct pipe_job *job, int attempt,
		   struct envv *e)
{
	const struct runner_workspace *ws = o->ws;
	char num[16];
	textf(num, sizeof(num), "%d", attempt);
	int rc = env_add(e, "CI", "true");
	rc = rc ? rc : env_add(e, "VMCI", "true");
	rc = rc ? rc : env_add(e, "VMCI_RUN_ID", o->run_id ? o->run_id : "");
	rc = rc ? rc : env_add(e, "VMCI_SHA", ws ? ws->sha : "");
	rc = rc ? rc : env_add(e, "VMCI_REF", ws ? ws->ref : "");
	rc = rc ? rc : env_add(e, "VMCI_JOB", job->name);
	rc = rc ? rc : env_add(e, "VMCI_JOB_ID", job->id);
	rc = rc ? rc : env_add(e, "VMCI_IMAGE", job->image);
	rc = rc ? rc : env_add(e, "VMCI_ATTEMPT", num);
	rc = rc ? rc : env_add(e, "VMCI_WORKSPACE", RUNNER_GUEST_WORKSPACE);
	for (size_t i = 0; i < job->n_env && !rc; i++)
		rc = env_add(e, job->env[i].key, job->env[i].value);
	return rc;
}

/* ---- one attempt ------------------------------------------------------------------------ */

struct attempt {
	const struct runner_exec_opts *o;
	const struct pipe_job *job;
	size_t index;
	size_t step;
	struct runner_cancel *cancel;
	struct runner_job_result *res;
	struct runner_lease *lease;
	struct runner_remote *remote; /* the job's VM moved: its commands run there */
};

static void note(struct attempt *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct attempt *a, const char *fmt, ...)
{
	const struct runner_sink *k = a->o->sink;
	if (!k || !k->note)
		return;
	char text[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	k->note(k->ctx, a->index, text);
}

static void on_output(void *ctx, int fd, const void *data, size_t len)
{
	struct attempt *a = ctx;
	const struct runner_sink *k = a->o->sink;
	if (k && k->output)
		k->output(k->ctx, a->index, a->step, fd, data, len);
}

static void infra_error(struct attempt *a, const char *what, const struct vmci_err *err)
{
	a->res->result = RUNNER_ERROR;
	textf(a->res->error, sizeof(a->res->error), "%s: %s", what, err->msg);
}

/* The artifacts could not all be copied: a job that passed fails; why goes to res->error. */
static void artifacts_failed(struct attempt *a, const char *why)
{
	struct runner_job_result *res = a->res;
	textf(res->error, sizeof(res->error), "artifacts incomplete: %s", why);
	if (res->result == RUNNER_PASSED) {
		res->result = RUNNER_FAILED;
		textf(res->how, sizeof(res->how), "its artifacts could not all be copied");
	}
}

/*
 * Runs a step's command: in the VM, or where it moved. When the command
 * is let go of for a move (runner_run_move), the VM moves to
 * opts->move_to and the command goes on there; a move that fails says
 * why, and the command goes on here.
 */
static int step_exec(struct attempt *a, struct vm *vm, const struct vm_exec_opts *xo,
		     struct vm_exec_result *res, struct vmci_err *err)
{
	if (a->remote)
		return runner_remote_exec(a->remote, xo, res, err);
	int rc = vm_exec(vm, xo, res, err);
	while (rc == -VM_EDETACHED) {
		struct vm_agent_state st;
		vm_agent_state_get(vm, &st);
		struct vmci_err why = {0};
		if (!a->o->move_to) {
			vmci_err_set(&why, EINVAL, "no receiver was named (vmci run --move-to)");
		} else {
			note(a, "moving its VM to %s", a->o->move_to);
			/* The image the VM runs: the job's, or the one with its packages. */
			char image[64];
			runner_job_image(a->job, image, sizeof(image), NULL);
			struct runner_guest_opts shape = {
			    .cpus = a->job->cpus,
			    .memory_mb = (int)a->job->memory_mb,
			    .network = runner_job_network(a->job),
			};
			/* A cancel gives the move up; once moved, it goes to the receiver. */
			int moved =
			    runner_remote_move(a->o->move_to, image, a->lease->guest, &shape,
					       &a->lease->ws, a->cancel, &a->remote, &why);
			if (!moved && !runner_cancel_attach_remote(a->cancel, a->remote)) {
				note(a, "moved to %s, but the job was cancelled", a->o->move_to);
				*res = (struct vm_exec_result){.kind = VM_CANCELLED};
				return 0;
			}
			if (!moved) {
				note(a, "moved to %s: the job goes on there", a->o->move_to);
				return runner_remote_resume(a->remote, xo, res, err);
			}
		}
		if (runner_cancel_requested(a->cancel)) {
			/* The cancel that gave the move up ends the step here, at once. */
			note(a, "the move was given up: the job was cancelled");
			vm_cancel(vm);
		} else {
			note(a, "the move failed, the job goes on here: %s", why.msg);
		}
		rc = vm_exec_resume(vm, st.stream, xo, res, err);
	}
	return rc;
}

/*
 * Runs step i. Returns 0 when the job goes on, 1 when it ends here
 * (result set), -1 on an infrastructure failure (result set).
 */
static int run_step(struct attempt *a, struct vm *vm, struct envv *env, int64_t job_deadline)
{
	const struct pipe_step *step = &a->job->steps[a->step];
	const struct runner_sink *k = a->o->sink;
	struct runner_job_result *res = a->res;
	char dur[32];
	if (runner_cancel_requested(a->cancel)) {
		res->result = RUNNER_CANCELLED;
		textf(res->how, sizeof(res->how), "cancelled before step '%s'", step->name);
		return 1;
	}
	int64_t left = job_deadline - clock_ms();
	if (left <= 0) {
		format_duration(a->job->timeout_ms, dur, sizeof(dur));
		res->result = RUNNER_FAILED;
		res->failed_step = (long)a->step;
		textf(res->how, sizeof(res->how), "job timed out after %s", dur);
		return 1;
	}
	bool step_limit = step->timeout_ms > 0 && step->timeout_ms < left;
	int64_t limit = step_limit ? step->timeout_ms : left;

	size_t base = env->len;
	for (size_t i = 0; i < step->n_env; i++)
		if (env_add(env, step->env[i].key, step->env[i].value)) {
			env_truncate(env, base);
			struct vmci_err oom = {.code = ENOMEM, .msg = "out of memory"};
			infra_error(a, "cannot build the step's environment", &oom);
			return -1;
		}
	char cwd[PATH_MAX];
	if (!step->workdir)
		textf(cwd, sizeof(cwd), "%s", RUNNER_GUEST_WORKSPACE);
	else if (step->workdir[0] == '/')
		textf(cwd, sizeof(cwd), "%s", step->workdir);
	else
		textf(cwd, sizeof(cwd), "%s/%s", RUNNER_GUEST_WORKSPACE, step->workdir);
	struct step_command cmd;
	struct vm_exec_opts xo = {
	    .argv = cmd.argv,
	    .env = (const char *const *)env->items,
	    .cwd = cwd,
	    .timeout_ms = (uint32_t)(limit > UINT32_MAX ? UINT32_MAX : limit),
	    .stdin_fd = -1,
	    .on_output = on_output,
	    .ctx = a,
	};
	if (k && k->step_started)
		k->step_started(k->ctx, a->index, a->step);
	struct runner_step_result sr = {.result = RUNNER_PASSED};
	struct vmci_err err = {0}, ping = {0};
	int64_t t0 = clock_ms();
	struct runner_job_vm jv = {.vm = vm, .remote = a->remote};
	int rc = step_command_prepare(&jv, a->step + 1, step->run, &cmd, &err);
	/* the guest's, not the VM's */
	bool put_failed = rc < 0 && !runner_job_vm_ping(&jv, 5000, &ping);
	if (!rc)
		rc = step_exec(a, vm, &xo, &sr.exit, &err);
	sr.duration_ms = clock_ms() - t0;
	env_truncate(env, base);
	if (put_failed) {
		sr.exit = (struct vm_exec_result){.kind = VM_START_FAILED, .code = -rc};
		textf(sr.how, sizeof(sr.how), "could not start: %s", err.msg);
		rc = 0;
	} else if (rc < 0) {
		char what[256];
		textf(what, sizeof(what), "step '%s'", step->name);
		infra_error(a, what, &err);
		sr.result = RUNNER_ERROR;
		textf(sr.how, sizeof(sr.how), "the VM failed");
		if (k && k->step_finished)
			k->step_finished(k->ctx, a->index, a->step, &sr);
		return -1;
	}
	bool job_timeout = false;
	switch (sr.exit.kind) {
	case VM_EXITED:
		if (sr.exit.code == 0) {
			textf(sr.how, sizeof(sr.how), "exited 0");
			break;
		}
		/* fall through */
	case VM_SIGNALED:
		sr.result = RUNNER_FAILED;
		vm_exec_result_describe(&sr.exit, sr.how, sizeof(sr.how));
		break;
	case VM_START_FAILED:
		sr.result = RUNNER_FAILED;
		if (put_failed)
			break; /* sr.how says why */
		if (sr.exit.code == ENOENT && step->workdir)
			textf(sr.how, sizeof(sr.how),
			      "could not start: no directory %s in the guest", cwd);
		else
			vm_exec_result_describe(&sr.exit, sr.how, sizeof(sr.how));
		break;
	case VM_TIMED_OUT:
		sr.result = RUNNER_FAILED;
		job_timeout = !step_limit;
		format_duration(job_timeout ? a->job->timeout_ms : step->timeout_ms, dur,
				sizeof(dur));
		textf(sr.how, sizeof(sr.how), "%s timed out after %s", job_timeout ? "job" : "step",
		      dur);
		break;
	case VM_CANCELLED:
		sr.result = RUNNER_CANCELLED;
		textf(sr.how, sizeof(sr.how), "cancelled");
		break;
	}
	/* continue-on-error covers the step's own failures, not the job's timeout or a cancel. */
	if (sr.result == RUNNER_FAILED && step->continue_on_error && !job_timeout)
		sr.continued = true;
	if (k && k->step_finished)
		k->step_finished(k->ctx, a->index, a->step, &sr);
	if (sr.result == RUNNER_PASSED || sr.continued)
		return 0;
	res->result = sr.result;
	textf(res->how, sizeof(res->how), "%s", sr.how);
	if (sr.result == RUNNER_FAILED)
		res->failed_step = (long)a->step;
	return 1;
}

static void note_line(void *ctx, const char *text)
{
	note(ctx, "%s", text);
}

/*
 * Copies the job's artifacts out. Artifacts a path matched that could not
 * all be copied fail the job, as GitLab Runner fails a job whose
 * artifacts it cannot upload; a path that matched nothing is only noted
 * (GitLab's "no matching files" warning). Returns -1 when the VM failed.
 */
static int get_artifacts(struct attempt *a, struct vm *vm, const char *host_dir)
{
	struct runner_job_result *res = a->res;
	char problem[512];
	struct vmci_err err = {0};
	struct runner_job_vm jv = {.vm = vm, .remote = a->remote};
	if (artifact_collect(&jv, a->job, host_dir, note_line, a, &res->artifacts, problem,
			     sizeof(problem), &err)) {
		infra_error(a, "copying the artifacts out", &err);
		return -1;
	}
	if (res->artifacts.incomplete)
		artifacts_failed(a, problem);
	return 0;
}

/* The job's artifact directory, emptied: a run shows only its own artifacts. */
static int prepare_artifacts(struct attempt *a, char *dir, size_t size)
{
	char name[256], why[PATH_MAX + 600];
	runner_job_dirname(a->job->name, name, sizeof(name));
	struct vmci_err err = {0};
	if (fs_path(dir, size, "%s/%s", a->o->artifacts_dir, name) || fs_rm_rf(dir, &err)) {
		textf(why, sizeof(why), "cannot empty %s: %s", dir, err.msg);
		a->res->artifacts.incomplete = true;
		artifacts_failed(a, why);
		return -1;
	}
	return 0;
}

/*
 * Puts the workspace at RUNNER_GUEST_WORKSPACE: a disk when it wants one
 * and the guest can take it, else the tar stream. Returns 0, 1 when the
 * job fails here (result set), -1 when the VM is broken (result set).
 */
static int place_workspace(struct attempt *a, struct runner_lease *lease)
{
	const struct runner_exec_opts *o = a->o;
	struct runner_job_result *res = a->res;
	struct vm *vm = lease->guest->vm;
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	const char *via = "a tar stream";
	if (runner_workspace_wants_disk(o->ws, o->ws_via)) {
		int rc = runner_workspace_mount(o->ws, vm, lease->guest->run_dir,
						RUNNER_GUEST_WORKSPACE, &lease->ws, &err);
		if (rc < 0) {
			infra_error(a, "mounting the workspace disk", &err);
			return -1;
		}
		if (rc == 0)
			via = "a disk";
		else
			note(a, "workspace: no disk (%s); sending a tar stream", err.msg);
	}
	bool host_side;
	if (!lease->ws.mounted &&
	    runner_workspace_upload(o->ws, vm, RUNNER_GUEST_WORKSPACE, &host_side, &err)) {
		if (!host_side) {
			infra_error(a, "uploading the workspace", &err);
			return -1;
		}
		res->result = RUNNER_FAILED;
		textf(res->how, sizeof(res->how), "the workspace upload failed");
		textf(res->error, sizeof(res->error), "%s", err.msg);
		return 1;
	}
	char dur[32];
	format_duration(clock_ms() - t0, dur, sizeof(dur));
	note(a, "workspace: %zu file%s from %s in %s, as %s", o->ws->n_files,
	     o->ws->n_files == 1 ? "" : "s", o->ws->root, dur, via);
	return 0;
}

/* Removes the workspace disk before the VM goes back; false when the VM failed doing it. */
static bool unplace_workspace(struct runner_lease *lease)
{
	struct vmci_err err = {0};
	if (!lease->guest || runner_workspace_unmount(lease->guest->vm, &lease->ws, &err) == 0)
		return true;
	log_warn("cannot remove the workspace disk: %s", err.msg);
	return false;
}

/* Runs the steps and artifacts on a ready VM. Returns whether the VM is broken. */
static bool run_in_vm(struct attempt *a, struct runner_lease *lease)
{
	const struct runner_exec_opts *o = a->o;
	struct runner_job_result *res = a->res;
	struct vm *vm = lease->guest->vm;
	int64_t deadline = clock_ms() + a->job->timeout_ms;
	if (o->ws) {
		int rc = place_workspace(a, lease);
		if (rc)
			return rc < 0;
	}
	struct envv env = {0};
	if (job_env(o, a->job, res->attempts > 0 ? res->attempts : 1, &env)) {
		env_free(&env);
		struct vmci_err oom = {.code = ENOMEM, .msg = "out of memory"};
		infra_error(a, "cannot build the job's environment", &oom);
		return false;
	}
	res->result = RUNNER_PASSED;
	bool broken = false;
	for (a->step = 0; a->step < a->job->n_steps; a->step++) {
		int rc = run_step(a, vm, &env, deadline);
		if (rc < 0)
			broken = true;
		if (rc != 0)
			break;
	}
	env_free(&env);
	/* A moved job's artifacts come from where its VM went, to where they always land. */
	if (!broken && res->result != RUNNER_CANCELLED && o->artifacts_dir && a->job->n_artifacts) {
		char dir[PATH_MAX];
		if (prepare_artifacts(a, dir, sizeof(dir)) == 0 && get_artifacts(a, vm, dir) < 0)
			broken = true;
	}
	if (a->remote) {
		runner_cancel_detach(a->cancel);
		runner_remote_close(a->remote);
		a->remote = NULL;
		return true; /* the VM here is gone: its pool replaces it */
	}
	return broken;
}

void runner_execute(const struct runner_exec_opts *o, size_t index, int attempt,
		    struct runner_cancel *cancel, struct runner_job_result *res,
		    struct runner_lease *kept)
{
	const struct pipe_job *job = &o->run->jobs[index];
	memset(res, 0, sizeof(*res));
	memset(kept, 0, sizeof(*kept));
	res->failed_step = -1;
	res->attempts = attempt;
	struct attempt a = {.o = o, .job = job, .index = index, .cancel = cancel, .res = res};
	if (runner_cancel_requested(cancel)) {
		res->result = RUNNER_CANCELLED;
		textf(res->how, sizeof(res->how), "cancelled");
		return;
	}
	struct runner_lease lease = {0};
	struct vmci_err err = {0};
	if (o->vms->acquire(o->vms->ctx, job, &lease, &err)) {
		if (runner_cancel_requested(cancel)) {
			res->result = RUNNER_CANCELLED;
			textf(res->how, sizeof(res->how), "cancelled");
		} else {
			infra_error(&a, "no VM", &err);
		}
		return;
	}
	a.lease = &lease;
	struct vm *vm = lease.guest->vm;
	const char *os = vm_guest_info(vm, "os"), *arch = vm_guest_info(vm, "arch");
	textf(res->os, sizeof(res->os), "%s", os ? os : "");
	textf(res->arch, sizeof(res->arch), "%s", arch ? arch : "");
	res->boot_ms = vm_boot_ms(vm);
	if (!runner_cancel_attach(cancel, vm)) {
		o->vms->release(o->vms->ctx, &lease, false);
		res->result = RUNNER_CANCELLED;
		textf(res->how, sizeof(res->how), "cancelled");
		return;
	}
	if (o->sink && o->sink->vm_ready)
		o->sink->vm_ready(o->sink->ctx, index, res);
	bool broken = run_in_vm(&a, &lease);
	if (res->result == RUNNER_FAILED && o->keep_on_failure && !broken &&
	    !runner_cancel_requested(cancel)) {
		res->kept = true;
		*kept = lease;
		note(&a, "keeping its VM (--keep-on-failure)");
		return;
	}
	runner_cancel_detach(cancel);
	if (!broken && !unplace_workspace(&lease))
		broken = true;
	o->vms->release(o->vms->ctx, &lease, broken);
}

void runner_execute_release(const struct runner_exec_opts *o, struct runner_lease *kept,
			    struct runner_cancel *cancel)
{
	if (!kept->guest)
		return;
	runner_cancel_detach(cancel);
	o->vms->release(o->vms->ctx, kept, !unplace_workspace(kept));
	memset(kept, 0, sizeof(*kept));
}

/* ---- the executor behind the scheduler ------------------------------------------------- */

struct runner_executor {
	const struct runner_exec_opts *o;
	struct runner_lease *kept; /* per job */
	size_t n_jobs;
};

int runner_executor_new(const struct runner_exec_opts *opts, struct runner_executor **out,
			struct vmci_err *err)
{
	*out = NULL;
	struct runner_executor *ex = calloc(1, sizeof(*ex));
	if (ex)
		ex->kept = calloc(opts->run->n_jobs ? opts->run->n_jobs : 1, sizeof(*ex->kept));
	if (!ex || !ex->kept) {
		free(ex);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	ex->o = opts;
	ex->n_jobs = opts->run->n_jobs;
	*out = ex;
	return 0;
}

static void ex_run(void *ctx, size_t job, int attempt, struct runner_cancel *cancel,
		   struct runner_job_result *res)
{
	struct runner_executor *ex = ctx;
	runner_execute(ex->o, job, attempt, cancel, res, &ex->kept[job]);
}

static void ex_release(void *ctx, size_t job, struct runner_cancel *cancel)
{
	struct runner_executor *ex = ctx;
	runner_execute_release(ex->o, &ex->kept[job], cancel);
}

void runner_executor_ops(struct runner_executor *ex, struct runner_job_ops *ops)
{
	*ops = (struct runner_job_ops){.ctx = ex, .run = ex_run, .release = ex_release};
}

struct vm *runner_executor_kept_vm(struct runner_executor *ex, size_t job)
{
	return job < ex->n_jobs && ex->kept[job].guest ? ex->kept[job].guest->vm : NULL;
}

void runner_executor_free(struct runner_executor *ex)
{
	if (!ex)
		return;
	free(ex->kept);
	free(ex);
}
