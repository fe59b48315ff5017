/*
 * Disks added to a running VM and removed again: SCSI disks on the
 * virtio-scsi controller every VM has from boot (qemu.c).
 *
 * Why SCSI and not a hot-plugged virtio-blk: a virtio-blk disk is a PCI
 * device, and PCI hot-plug needs the guest's cooperation both ways (ACPI
 * on x86 q35, PCIe native hot-plug on the Arm virt machine, whose removal
 * waits out a 5 s "attention button" delay in Linux). A disk on a SCSI
 * bus is added and removed by QEMU alone: the guest's virtio-scsi driver
 * is told and rescans, and a guest that ignores it cannot keep the disk,
 * so the VM's device set is back to what its snapshot holds before every
 * revert.
 */
#include "vmcore/channel.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define QMP_TIMEOUT_MS	  10000
#define UNPLUG_TIMEOUT_MS 10000

void disk_names(unsigned target, char *node, char *dev, size_t size)
{
	snprintf(node, size, "vmci-hot%u", target);
	snprintf(dev, size, "vmci-hotdisk%u", target);
}

int vm_disk_attach(struct vm *vm, unsigned target, const char *path, const char *format,
		   bool read_only, struct vmci_err *err)
{
	if (target >= VM_DISK_TARGETS)
		return vmci_err_set(err, EINVAL, "%s: SCSI target %u is out of range (0 to %d)",
				    __func__, target, VM_DISK_TARGETS - 1);
	if (strcmp(format, "qcow2") && strcmp(format, "raw"))
		return vmci_err_set(err, EINVAL, "%s: a disk is qcow2 or raw, not '%s'", __func__,
				    format);
	char node[32], dev[32];
	disk_names(target, node, dev, sizeof(node));
	json_t *args = json_pack("{s:s, s:s, s:b, s:{s:s, s:s, s:b}}", "driver", format,
				 "node-name", node, "read-only", read_only, "file", "driver",
				 "file", "filename", path, "read-only", read_only);
	if (!args)
		return vmci_err_set(err, ENOMEM, "out of memory");
	int rc = qmp_execute(vm->qmp, "blockdev-add", args, NULL, QMP_TIMEOUT_MS, err);
	if (rc == -EPIPE)
		return channel_vm_died(vm, "adding a disk", err);
	if (rc) {
		vmci_err_wrap(err, "cannot open the disk %s for VM %d", path, (int)vm->proc.pid);
		return rc;
	}
	args = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i}", "driver", "scsi-hd", "id", dev,
			 "bus", QEMU_SCSI_ID ".0", "drive", node, "channel", 0, "scsi-id",
			 (int)target, "lun", 0);
	rc = args ? qmp_execute(vm->qmp, "device_add", args, NULL, QMP_TIMEOUT_MS, err)
		  : vmci_err_set(err, ENOMEM, "out of memory");
	if (rc == -EPIPE)
		return channel_vm_died(vm, "adding a disk", err);
	if (rc) {
		vmci_err_wrap(err, "cannot add the disk %s to VM %d", path, (int)vm->proc.pid);
		qmp_execute(vm->qmp, "blockdev-del", json_pack("{s:s}", "node-name", node), NULL,
			    QMP_TIMEOUT_MS, NULL);
	} else {
		vm->hot_disks |= 1u << target;
	}
	return rc;
}

/* Waits for QEMU to report dev gone (at once for a SCSI disk). */
static int wait_deleted(struct vm *vm, const char *dev, struct vmci_err *err)
{
	int64_t deadline = clock_ms() + UNPLUG_TIMEOUT_MS;
	for (;;) {
		int64_t left = deadline - clock_ms();
		if (left <= 0)
			return vmci_err_set(err, ETIMEDOUT, "VM %d did not remove the disk %s",
					    (int)vm->proc.pid, dev);
		struct qmp_msg ev;
		int rc = qmp_next_event(vm->qmp, "DEVICE_DELETED", (int)left, &ev, err);
		if (rc == -EPIPE)
			return channel_vm_died(vm, "removing a disk", err);
		if (rc <= 0)
			continue;
		const char *name = json_string_value(json_object_get(ev.value, "device"));
		bool done = name && !strcmp(name, dev);
		qmp_msg_free(&ev);
		if (done)
			return 0;
	}
}

int vm_disk_detach(struct vm *vm, unsigned target, struct vmci_err *err)
{
	if (target >= VM_DISK_TARGETS)
		return vmci_err_set(err, EINVAL, "%s: SCSI target %u is out of range (0 to %d)",
				    __func__, target, VM_DISK_TARGETS - 1);
	char node[32], dev[32];
	disk_names(target, node, dev, sizeof(node));
	struct vmci_err why = {0};
	int rc = qmp_execute(vm->qmp, "device_del", json_pack("{s:s}", "id", dev), NULL,
			     QMP_TIMEOUT_MS, &why);
	if (rc == -EPIPE)
		return channel_vm_died(vm, "removing a disk", err);
	bool absent = rc == -EIO && strstr(why.msg, "DeviceNotFound");
	if (rc && !absent) {
		if (err)
			*err = why;
		vmci_err_wrap(err, "cannot remove the disk %s from VM %d", dev, (int)vm->proc.pid);
		return rc;
	}
	if (!absent && (rc = wait_deleted(vm, dev, err)))
		return rc;
	rc = qmp_execute(vm->qmp, "blockdev-del", json_pack("{s:s}", "node-name", node), NULL,
			 QMP_TIMEOUT_MS, &why);
	if (rc == -EPIPE)
		return channel_vm_died(vm, "removing a disk", err);
	if (rc && !absent) {
		if (err)
			*err = why;
		vmci_err_wrap(err, "cannot close the disk %s of VM %d", node, (int)vm->proc.pid);
		return rc;
	}
	vm->hot_disks &= ~(1u << target);
	return 0;
}
