/*
 * Which accelerator a VM gets, and the verdict that decides it.
 *
 * A /dev/kvm that answers every ioctl can still fail to run a guest: a
 * nested KVM may abort QEMU while it sets up a vCPU, or stop the guest
 * with "KVM internal error ... emulation failure" once its kernel runs.
 * Probing for each known failure would chase them one by one; instead a
 * canary guest boots under KVM and under TCG, once per host key, and the
 * verdict (did KVM boot it, and how fast was each) is kept in
 * $VMCI_HOME/accel.json. A KVM guest that fails later, at any point,
 * rewrites the verdict, so no VM after it tries KVM again.
 */
#include "vmcore/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* Bump when the canary or the key changes meaning: every host proves itself again. */
#define CANARY_VERSION 1
#define VERDICT_FILE   "accel.json"
#define VERDICT_LOCK   "accel.lock"
#define VERDICT_MAX    (64 * 1024)
/* A KVM that works boots the canary in about a second; this only bounds a hang. */
#define CANARY_KVM_TIMEOUT_MS 30000
#define CANARY_TCG_TIMEOUT_MS 120000
#define CANARY_MEMORY_MB      256

/* ---- the key ---------------------------------------------------------- */

/* The CPU model as /proc/cpuinfo names it ("model name", or arm64's implementer and part). */
static void cpu_model(char *out, size_t size)
{
	snprintf(out, size, "unknown");
	struct buf info = {0};
	if (fs_read_file("/proc/cpuinfo", 256 * 1024, &info, NULL)) {
		buf_free(&info);
		return;
	}
	const char *text = buf_cstr(&info);
	const char *names[] = {"model name", "CPU implementer", "CPU part"};
	size_t used = 0;
	for (size_t i = 0; i < ARRAY_LEN(names) && used < size; i++) {
		const char *line = strstr(text, names[i]);
		if (!line || (line != text && line[-1] != '\n'))
			continue;
		const char *colon = strchr(line, ':');
		const char *end = strchrnul(line, '\n');
		if (!colon || colon > end)
			continue;
		colon++;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		int n = snprintf(out + used, size - used, "%s%.*s", used ? " " : "",
				 (int)(end - colon), colon);
		if (n > 0)
			used += (size_t)n < size - used ? (size_t)n : size - used - 1;
		if (i == 0)
			break; /* x86: the model name says it all */
	}
	buf_free(&info);
}

void vm_accel_key(enum vm_arch arch, char *out, size_t size)
{
	struct utsname u;
	const char *release = uname(&u) == 0 ? u.release : "unknown";
	char qemu[PATH_MAX] = "";
	char qemu_id[PATH_MAX + 64] = "missing";
	struct stat st;
	if (qemu_find_binary(arch, qemu, sizeof(qemu)) == 0 && stat(qemu, &st) == 0)
		snprintf(qemu_id, sizeof(qemu_id), "%s:%lld:%lld", qemu, (long long)st.st_size,
			 (long long)st.st_mtime);
	char cpu[160];
	cpu_model(cpu, sizeof(cpu));
	snprintf(out, size, "kernel=%s qemu=%s cpu=%s canary=%d", release, qemu_id, cpu,
		 CANARY_VERSION);
}

/* ---- the verdict file ------------------------------------------------- */

int vm_accel_verdict_path(char *out, size_t size)
{
	return fs_path(out, size, "%s/" VERDICT_FILE, vmci_home());
}

static void copy_string(json_t *obj, const char *name, char *out, size_t size)
{
	const char *s = json_string_value(json_object_get(obj, name));
	snprintf(out, size, "%s", s ? s : "");
}

static int64_t get_ms(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

int vm_accel_verdict_read(enum vm_arch arch, struct vm_accel_verdict *out)
{
	memset(out, 0, sizeof(*out));
	char path[PATH_MAX];
	if (vm_accel_verdict_path(path, sizeof(path)))
		return 0;
	struct buf text = {0};
	if (fs_read_file(path, VERDICT_MAX, &text, NULL)) {
		buf_free(&text);
		return 0;
	}
	json_error_t jerr;
	json_t *root = json_loadb((const char *)text.data, text.len, 0, &jerr);
	buf_free(&text);
	if (!json_is_object(root)) {
		log_warn("ignoring %s: not a verdict (%s); the canary runs again", path, jerr.text);
		json_decref(root);
		return 0;
	}
	char key[VM_ACCEL_KEY_MAX];
	vm_accel_key(arch, key, sizeof(key));
	copy_string(root, "key", out->key, sizeof(out->key));
	if (strcmp(out->key, key) != 0) {
		log_debug("the accelerator verdict in %s is for another host key: '%s', now '%s'",
			  path, out->key, key);
		json_decref(root);
		return 0;
	}
	json_t *kvm = json_object_get(root, "kvm");
	out->kvm_booted = json_is_true(json_object_get(kvm, "booted"));
	out->kvm_ms = get_ms(kvm, "boot_ms");
	copy_string(kvm, "failure", out->failure, sizeof(out->failure));
	out->tcg_ms = get_ms(json_object_get(root, "tcg"), "boot_ms");
	copy_string(root, "source", out->source, sizeof(out->source));
	out->written_at = get_ms(root, "written_at");
	json_decref(root);
	return 1;
}

static json_t *ms_or_null(int64_t ms)
{
	return ms >= 0 ? json_integer(ms) : json_null();
}

int vm_accel_verdict_write(const struct vm_accel_verdict *v, struct vmci_err *err)
{
	char path[PATH_MAX];
	if (vm_accel_verdict_path(path, sizeof(path)))
		return vmci_err_set(err, ENAMETOOLONG, "$VMCI_HOME is too long");
	int rc = fs_mkdir_p(vmci_home(), 0755, err);
	if (rc)
		return rc;
	json_t *root = json_pack(
	    "{s:i, s:s, s:s, s:s, s:I, s:{s:b, s:o, s:s}, s:{s:o}}", "version", CANARY_VERSION,
	    "key", v->key, "decision", vm_accel_verdict_prefers_kvm(v) ? "kvm" : "tcg", "source",
	    *v->source ? v->source : "canary", "written_at",
	    (json_int_t)(v->written_at ? v->written_at : (int64_t)time(NULL)), "kvm", "booted",
	    v->kvm_booted, "boot_ms", ms_or_null(v->kvm_booted ? v->kvm_ms : -1), "failure",
	    v->failure, "tcg", "boot_ms", ms_or_null(v->tcg_ms));
	char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(root);
	if (!text)
		return vmci_err_set(err, ENOMEM, "out of memory writing %s", path);
	rc = fs_write_atomic(path, text, strlen(text), 0644, err);
	free(text);
	return rc;
}

bool vm_accel_verdict_prefers_kvm(const struct vm_accel_verdict *v)
{
	if (!v->kvm_booted || v->kvm_ms < 0)
		return false;
	return v->tcg_ms < 0 || v->kvm_ms <= v->tcg_ms;
}

void accel_record_runtime_failure(enum vm_arch arch, const char *failure)
{
	struct vm_accel_verdict v;
	vm_accel_verdict_read(arch, &v);
	vm_accel_key(arch, v.key, sizeof(v.key));
	v.kvm_booted = false;
	v.kvm_ms = -1;
	if (v.tcg_ms == 0)
		v.tcg_ms = -1;
	snprintf(v.failure, sizeof(v.failure), "%s", failure);
	snprintf(v.source, sizeof(v.source), "runtime");
	v.written_at = 0;
	struct vmci_err err;
	if (vm_accel_verdict_write(&v, &err))
		log_warn("cannot record that KVM failed: %s", err.msg);
}

/* ---- the canary ------------------------------------------------------- */

/* Boots the canary once under accel; *ms is its boot time, or -1 with failure filled. */
static int canary_boot(enum vm_arch arch, enum vm_accel accel, const char *kernel,
		       const char *initrd, int timeout_ms, int64_t *ms, char *failure,
		       size_t failure_size, struct vmci_err *err)
{
	*ms = -1;
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX];
	if (fs_path(dir, sizeof(dir), "%s/vmci-canary-XXXXXX", tmp && *tmp ? tmp : "/tmp"))
		return vmci_err_set(err, ENAMETOOLONG, "$TMPDIR is too long for the canary");
	if (!mkdtemp(dir))
		return vmci_err_errno(err, errno, "cannot create a run directory for the canary");
	struct vm_spec spec = {
	    .arch = arch,
	    .accel = accel,
	    .cpus = 1,
	    .memory_mb = CANARY_MEMORY_MB,
	    .kernel = kernel,
	    .initrd = initrd,
	    .run_dir = dir,
	    .ready_timeout_ms = timeout_ms,
	};
	struct vm *vm = NULL;
	int rc = vm_boot(&spec, accel, &vm, err);
	if (rc == 0) {
		*ms = vm_boot_ms(vm);
		vm_stop(vm, 2000);
	} else if (failure) {
		struct qemu_paths paths;
		qemu_paths_init(&paths, dir);
		qemu_console_failure_line(&paths, failure, failure_size);
		if (!*failure)
			snprintf(failure, failure_size, "%.*s", (int)strcspn(err->msg, "\n"),
				 err->msg);
	}
	fs_rm_rf(dir, NULL);
	return rc;
}

int vm_accel_canary(enum vm_arch arch, const char *kernel, const char *initrd, int kvm_timeout_ms,
		    struct vm_accel_verdict *out, struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	vm_accel_key(arch, out->key, sizeof(out->key));
	snprintf(out->source, sizeof(out->source), "canary");
	struct vmci_err kvm_err = {0};
	int kvm_rc = canary_boot(arch, VM_ACCEL_KVM, kernel, initrd,
				 kvm_timeout_ms > 0 ? kvm_timeout_ms : CANARY_KVM_TIMEOUT_MS,
				 &out->kvm_ms, out->failure, sizeof(out->failure), &kvm_err);
	out->kvm_booted = kvm_rc == 0;
	if (kvm_rc)
		log_info("the KVM canary failed: %s", out->failure);
	int tcg_rc = canary_boot(arch, VM_ACCEL_TCG, kernel, initrd, CANARY_TCG_TIMEOUT_MS,
				 &out->tcg_ms, NULL, 0, err);
	if (kvm_rc && tcg_rc) {
		vmci_err_wrap(err, "the canary booted under neither KVM (%s) nor TCG",
			      out->failure);
		return tcg_rc;
	}
	out->written_at = (int64_t)time(NULL);
	return 0;
}

/* ---- the choice -------------------------------------------------------- */

/* The host's architecture, when it is one vmci runs guests for. */
static int host_arch(enum vm_arch *out)
{
	struct utsname u;
	if (uname(&u) < 0)
		return -1;
	return vm_arch_parse(u.machine, out);
}

/* The request after $VMCI_ACCEL, which overrides the caller's; by names who asked. */
static enum vm_accel effective_request(enum vm_accel requested, const char **by)
{
	*by = "the VM spec";
	const char *env = getenv("VMCI_ACCEL");
	enum vm_accel want = requested;
	if (env && *env) {
		if (vm_accel_parse(env, &want) == 0)
			*by = "$VMCI_ACCEL";
		else
			log_warn("ignoring $VMCI_ACCEL=%s (expected kvm, tcg or auto)", env);
	}
	return want;
}

bool accel_is_auto(enum vm_accel requested)
{
	const char *by;
	return effective_request(requested, &by) == VM_ACCEL_AUTO;
}

/* AUTO's decision by a verdict for this key. */
static enum vm_accel decide_by_verdict(const struct vm_accel_verdict *v, char *why, size_t whylen)
{
	if (!v->kvm_booted) {
		snprintf(why, whylen, "using TCG (software emulation): KVM is present but %s: %s",
			 !strcmp(v->source, "runtime") ? "a guest failed under it"
						       : "its canary failed",
			 *v->failure ? v->failure : "the guest did not boot");
		return VM_ACCEL_TCG;
	}
	if (!vm_accel_verdict_prefers_kvm(v)) {
		snprintf(why, whylen,
			 "using TCG (software emulation): its canary booted in %lld ms, under KVM "
			 "in %lld ms",
			 (long long)v->tcg_ms, (long long)v->kvm_ms);
		return VM_ACCEL_TCG;
	}
	if (v->tcg_ms >= 0)
		snprintf(why, whylen,
			 "using KVM: its canary booted in %lld ms, under TCG in %lld ms",
			 (long long)v->kvm_ms, (long long)v->tcg_ms);
	else
		snprintf(why, whylen, "using KVM: its canary booted in %lld ms",
			 (long long)v->kvm_ms);
	return VM_ACCEL_KVM;
}

enum vm_accel vm_accel_choose(enum vm_accel requested, enum vm_arch arch, char *why, size_t whylen)
{
	char scratch[512];
	if (!why || whylen == 0) {
		why = scratch;
		whylen = sizeof(scratch);
	}
	const char *by;
	enum vm_accel want = effective_request(requested, &by);
	if (want == VM_ACCEL_TCG) {
		snprintf(why, whylen, "using TCG (software emulation) as requested by %s", by);
		return VM_ACCEL_TCG;
	}

	enum vm_arch host;
	if (host_arch(&host) < 0 || host != arch) {
		struct utsname u;
		const char *machine = uname(&u) == 0 ? u.machine : "unknown";
		if (want == VM_ACCEL_KVM)
			snprintf(why, whylen,
				 "KVM was requested by %s, but KVM cannot run an %s guest on an %s "
				 "host; falling back to TCG (software emulation, much slower)",
				 by, vm_arch_name(arch), machine);
		else
			snprintf(why, whylen,
				 "using TCG (software emulation): the guest is %s and the host %s",
				 vm_arch_name(arch), machine);
		return VM_ACCEL_TCG;
	}

	struct vm_kvm_info kvm;
	vm_kvm_probe(&kvm);
	if (!kvm.usable) {
		if (want == VM_ACCEL_KVM)
			snprintf(why, whylen,
				 "KVM was requested by %s but is not usable: %s; falling back to "
				 "TCG (software emulation, much slower)",
				 by, kvm.reason);
		else
			snprintf(why, whylen,
				 "using TCG (software emulation): KVM is not usable: %s",
				 kvm.reason);
		return VM_ACCEL_TCG;
	}
	if (want == VM_ACCEL_KVM) {
		snprintf(why, whylen, "using KVM as requested by %s", by);
		return VM_ACCEL_KVM;
	}

	struct vm_accel_verdict v;
	if (vm_accel_verdict_read(arch, &v))
		return decide_by_verdict(&v, why, whylen);
	snprintf(why, whylen,
		 "KVM is present but not yet proven on this host: a canary guest boots under KVM "
		 "and TCG first%s",
		 *v.key ? " (the last verdict was for another kernel, QEMU or CPU)" : "");
	return VM_ACCEL_AUTO;
}

/* Holds $VMCI_HOME/accel.lock: one canary at a time, across threads and processes. */
static int lock_verdict(void)
{
	char path[PATH_MAX];
	if (fs_mkdir_p(vmci_home(), 0755, NULL) ||
	    fs_path(path, sizeof(path), "%s/" VERDICT_LOCK, vmci_home()))
		return -1;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

enum vm_accel vm_accel_resolve(enum vm_accel requested, enum vm_arch arch, const char *kernel,
			       const char *initrd, char *why, size_t whylen)
{
	char scratch[512];
	if (!why || whylen == 0) {
		why = scratch;
		whylen = sizeof(scratch);
	}
	enum vm_accel accel = vm_accel_choose(requested, arch, why, whylen);
	if (accel != VM_ACCEL_AUTO)
		return accel;

	int lock = lock_verdict();
	/* Another thread or process may have run the canary while we waited. */
	accel = vm_accel_choose(requested, arch, why, whylen);
	if (accel == VM_ACCEL_AUTO) {
		log_info("KVM is present but not yet proven here: booting a canary guest under KVM "
			 "and TCG (once for this kernel, QEMU and CPU)");
		struct vm_accel_verdict v;
		struct vmci_err err = {0};
		int64_t t0 = clock_ms();
		if (vm_accel_canary(arch, kernel, initrd, 0, &v, &err) == 0) {
			if (vm_accel_verdict_write(&v, &err))
				log_warn("cannot record the accelerator verdict: %s", err.msg);
			accel = decide_by_verdict(&v, why, whylen);
			log_info("canary done in %lld ms: %s", (long long)(clock_ms() - t0), why);
		} else {
			snprintf(why, whylen, "using TCG (software emulation): %s", err.msg);
			accel = VM_ACCEL_TCG;
		}
	}
	if (lock >= 0)
		close(lock);
	return accel;
}
