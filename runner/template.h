/*
 * runner: ready-state templates: a booted guest saved once, restored by
 * every new VM.
 */
#ifndef VMCI_RUNNER_TEMPLATE_H
#define VMCI_RUNNER_TEMPLATE_H

#include "runner/guest.h"

/* ---- ready-state templates (runner/template.c) ----------------------- */

/*
 * A template is the state of a freshly booted guest of one image, saved
 * once, so that a new VM starts by loading it instead of booting. It
 * lives in TEMPLATES/<image digest>/<arch>-<accel>-<MiB>m-<cpus>c-<kind>/:
 *
 *   state       the device state (a plain template: and the memory), as
 *               a QEMU migration stream (none in a snapshot template)
 *   ram         the guest memory (a mapped template), which every VM maps
 *               privately and reads page by page as its guest touches it
 *   disk.qcow2  the disk as the guest left it when the state was saved;
 *               each VM runs on its own copy-on-write overlay of it, so
 *               memory and disk always pair (a guest that wrote to its
 *               disk while booting finds those writes there)
 *
 * A template is made whole in a temporary directory beside it and renamed
 * into place; it is never modified afterwards. Deleting the directory is
 * always safe: the next VM makes it again.
 */
enum runner_template_kind {
	RUNNER_TEMPLATE_MAPPED,	  /* memory in a privately mapped file (the default) */
	RUNNER_TEMPLATE_PLAIN,	  /* memory inside the state stream, read whole by each VM */
	RUNNER_TEMPLATE_SNAPSHOT, /* memory and devices in a snapshot inside the disk */
};

/*
 * A snapshot template has no state file: its disk.qcow2 holds an internal
 * snapshot of this name (memory, devices and disk, as vm_snapshot_save
 * makes it), and each VM starts on its own copy of that disk by loading
 * the snapshot. The VM's disk then already holds a snapshot of the state
 * it started in, which a warm pool reverts to between jobs instead of
 * saving one of its own.
 */
#define RUNNER_TEMPLATE_SNAPSHOT_NAME "clean"

/* "mapped" / "plain" / "snapshot" */
const char *runner_template_kind_name(enum runner_template_kind kind);

/* $VMCI_HOME/templates: where the CLI keeps templates. */
int runner_templates_default(char *out, size_t size);

/*
 * Finds or makes (by booting a VM, about as long as runner_guest_boot) the
 * template of image for VMs shaped by opts, under templates; its directory
 * goes to dir. Builds the image first if needed.
 */
int runner_template_ensure(const char *image, const struct runner_guest_opts *opts,
			   const char *templates, enum runner_template_kind kind, char *dir,
			   size_t size, struct vmci_err *err);

/*
 * Like runner_guest_boot, but the VM starts from the image's template under
 * templates (made on first use): on its own overlay of the template's disk
 * (a snapshot template: its own copy of it), with the host's time, fresh
 * entropy and, but from a snapshot template, an instance id of its own
 * (vm_instance_id, /run/vmci/instance-id in the guest). A template that
 * does not load (left by another QEMU version, or damaged) is made again,
 * once. Destroy the VM with runner_guest_destroy.
 */
int runner_guest_restore(const char *image, const struct runner_guest_opts *opts,
			 const char *templates, enum runner_template_kind kind,
			 struct runner_guest **out, struct vmci_err *err);

#endif
