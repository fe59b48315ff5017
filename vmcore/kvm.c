/*
 * Acceleration: is /dev/kvm usable, and which accelerator a VM gets.
 *
 * The probe asks the kernel directly (the KVM API, Documentation/virt/kvm/
 * api.rst) instead of trusting that the device node exists: a node can be
 * present yet unusable (no permission, no hardware support behind it,
 * virtualization taken by another hypervisor, or a nested KVM that refuses
 * QEMU's vCPU set-up), and QEMU's own message for those cases comes too
 * late and too cryptic.
 */
#include "vmcore/vmcore.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>

#define KVM_DEVICE "/dev/kvm"

static void kvm_open_failure(struct vm_kvm_info *out, int e)
{
	const char *why;
	switch (e) {
	case ENOENT:
		why = KVM_DEVICE " does not exist (no hardware virtualization, or the kvm "
				 "module is not loaded)";
		break;
	case EACCES:
	case EPERM:
		why = "permission denied on " KVM_DEVICE " (add yourself to the kvm group)";
		break;
	case ENXIO:
	case ENODEV:
		why = KVM_DEVICE " has no driver behind it (load kvm_intel or kvm_amd, and "
				 "enable virtualization in the firmware)";
		break;
	default:
		snprintf(out->reason, sizeof(out->reason), "cannot open " KVM_DEVICE ": %s",
			 strerror(e));
		return;
	}
	snprintf(out->reason, sizeof(out->reason), "%s", why);
}

/* KVM_CHECK_EXTENSION; 0 means "not supported". */
static int kvm_check(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);
	return r > 0 ? r : 0;
}

#if defined(__x86_64__)
#define MSR_IA32_ARCH_CAPABILITIES 0x10a
#define CPUID_7_0_EDX_ARCH_CAPS	   (1u << 29)

/*
 * Repeats the one vCPU set-up step QEMU cannot survive: with -cpu host it
 * copies IA32_ARCH_CAPABILITIES from KVM's feature MSRs into each vCPU,
 * and aborts when KVM refuses. Some nested set-ups (a KVM host that is
 * itself a VM) refuse, so such a /dev/kvm is not usable for us. Returns
 * false and fills reason when the step fails.
 */
static bool kvm_vcpu_accepts_host_cpu(int sys_fd, int vm_fd, char *reason, size_t size)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entry;
	} msr = {.hdr.nmsrs = 1, .entry.index = MSR_IA32_ARCH_CAPABILITIES};
	if (ioctl(sys_fd, KVM_GET_MSRS, &msr) != 1)
		return true; /* not a feature MSR here: QEMU will not set it */

	/* On any failure here there is nothing to compare with: let QEMU decide. */
	struct kvm_cpuid2 *cpuid = NULL;
	for (unsigned n = 64;; n *= 2) {
		free(cpuid);
		cpuid =
		    n <= 4096 ? calloc(1, sizeof(*cpuid) + n * sizeof(cpuid->entries[0])) : NULL;
		if (!cpuid)
			return true;
		cpuid->nent = n;
		if (ioctl(sys_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			break;
		if (errno != E2BIG) {
			free(cpuid);
			return true;
		}
	}
	bool ok = true;
	bool advertised = false;
	for (unsigned i = 0; i < cpuid->nent; i++)
		if (cpuid->entries[i].function == 7 && cpuid->entries[i].index == 0)
			advertised = cpuid->entries[i].edx & CPUID_7_0_EDX_ARCH_CAPS;
	int vcpu = advertised ? ioctl(vm_fd, KVM_CREATE_VCPU, 0) : -1;
	if (vcpu >= 0) {
		if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) == 0 &&
		    ioctl(vcpu, KVM_SET_MSRS, &msr) != 1) {
			snprintf(reason, size,
				 "KVM refuses IA32_ARCH_CAPABILITIES on a vCPU (seen when the host "
				 "is itself a VM), and QEMU aborts on that");
			ok = false;
		}
		close(vcpu);
	}
	free(cpuid);
	return ok;
}
#endif

void vm_kvm_probe(struct vm_kvm_info *out)
{
	memset(out, 0, sizeof(*out));
	out->api_version = -1;

	int fd = open(KVM_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		kvm_open_failure(out, errno);
		return;
	}
	int version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (version < 0) {
		snprintf(out->reason, sizeof(out->reason),
			 "KVM_GET_API_VERSION failed on " KVM_DEVICE ": %s", strerror(errno));
		goto out;
	}
	out->api_version = version;
	if (version != KVM_API_VERSION) {
		snprintf(out->reason, sizeof(out->reason),
			 KVM_DEVICE " speaks KVM API version %d, QEMU needs %d", version,
			 KVM_API_VERSION);
		goto out;
	}
	/* Type 0: the default machine type (and IPA size on arm64). */
	int vm_fd = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0) {
		int e = errno;
		snprintf(out->reason, sizeof(out->reason),
			 "cannot create a KVM virtual machine: %s%s", strerror(e),
			 e == EBUSY ? " (is another hypervisor using virtualization?)" : "");
		goto out;
	}

	/*
	 * Ask the VM rather than the system when the kernel allows it: the
	 * answers can depend on the VM (the vCPU limit on arm64 does).
	 */
	int cap_fd = kvm_check(fd, KVM_CAP_CHECK_EXTENSION_VM) ? vm_fd : fd;

	/* api.rst: without MAX_VCPUS the limit is NR_VCPUS, and without that 4. */
	out->max_vcpus = kvm_check(cap_fd, KVM_CAP_MAX_VCPUS);
	if (out->max_vcpus == 0)
		out->max_vcpus = kvm_check(cap_fd, KVM_CAP_NR_VCPUS);
	if (out->max_vcpus == 0)
		out->max_vcpus = 4;

	out->dirty_log = kvm_check(cap_fd, KVM_CAP_DIRTY_LOG_RING) ||
			 kvm_check(cap_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
#ifdef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
	/* arm64 offers only the acquire/release flavour of the ring. */
	out->dirty_log = out->dirty_log || kvm_check(cap_fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
#endif
#if defined(__x86_64__)
	if (!kvm_vcpu_accepts_host_cpu(fd, vm_fd, out->reason, sizeof(out->reason))) {
		close(vm_fd);
		goto out;
	}
#endif
	close(vm_fd);
	out->usable = true;
out:
	close(fd);
}

/* The host's architecture, when it is one vmci runs guests for. */
static int host_arch(enum vm_arch *out)
{
	struct utsname u;
	if (uname(&u) < 0)
		return -1;
	return vm_arch_parse(u.machine, out);
}

int vm_accel_parse(const char *name, enum vm_accel *out)
{
	if (!name || !strcmp(name, "auto"))
		*out = VM_ACCEL_AUTO;
	else if (!strcmp(name, "kvm"))
		*out = VM_ACCEL_KVM;
	else if (!strcmp(name, "tcg"))
		*out = VM_ACCEL_TCG;
	else
		return -1;
	return 0;
}

enum vm_accel vm_accel_choose(enum vm_accel requested, enum vm_arch arch, char *why, size_t whylen)
{
	char scratch[512];
	if (!why || whylen == 0) {
		why = scratch;
		whylen = sizeof(scratch);
	}

	enum vm_accel want = requested;
	const char *by = "the VM spec";
	const char *env = getenv("VMCI_ACCEL");
	if (env && *env) {
		if (vm_accel_parse(env, &want) == 0)
			by = "$VMCI_ACCEL";
		else
			log_warn("ignoring $VMCI_ACCEL=%s (expected kvm, tcg or auto)", env);
	}

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
	if (want == VM_ACCEL_KVM)
		snprintf(why, whylen, "using KVM as requested by %s", by);
	else
		snprintf(why, whylen,
			 "using KVM: " KVM_DEVICE " is usable and the guest is %s like the host",
			 vm_arch_name(arch));
	return VM_ACCEL_KVM;
}
