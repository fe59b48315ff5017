/*
 * Is /dev/kvm usable: the KVM probe.
 *
 * The probe asks the kernel directly (the KVM API, Documentation/virt/kvm/
 * api.rst) instead of trusting that the device node exists: a node can be
 * present yet unusable (no permission, no hardware support behind it,
 * virtualization taken by another hypervisor), and QEMU's own message for
 * those cases comes too late and too cryptic. A probe that passes proves
 * only that KVM may be tried: whether it runs a guest is the canary's
 * verdict (vmcore/accel.c), which AUTO follows.
 */
#include "vmcore/vmcore.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

void vm_kvm_probe(struct vm_kvm_info *out)
{
	memset(out, 0, sizeof(*out));
	out->api_version = -1;

	/* $VMCI_KVM_DEVICE: another node to probe, so that tests can present a host without KVM. */
	const char *device = getenv("VMCI_KVM_DEVICE");
	int fd = open(device && *device ? device : KVM_DEVICE, O_RDWR | O_CLOEXEC);
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
	close(vm_fd);
	out->usable = true;
out:
	close(fd);
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
