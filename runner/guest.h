/*
 * runner: a VM booted from a golden image, and the accelerator canary on
 * demand.
 */
#ifndef VMCI_RUNNER_GUEST_H
#define VMCI_RUNNER_GUEST_H

#include <limits.h>
#include "common/common.h"
#include "images/images.h"
#include "vmcore/vmcore.h"

/* ---- a VM booted from a golden image (runner/guest.c) ---------------- */

struct runner_guest_opts {
	int cpus;		  /* 0: 1 */
	int memory_mb;		  /* 0: 256 */
	enum vm_accel accel;	  /* AUTO by default */
	enum vm_network network;  /* NONE by default: a job's comes from its pipeline */
	img_progress_fn progress; /* called while the image is built, may be NULL */
	void *progress_ctx;
};

struct runner_guest {
	struct vm *vm;
	struct img_boot image;
	char run_dir[PATH_MAX]; /* private temporary directory, removed by destroy */
	int run_dir_lock;	/* held while the VM lives (runner_make_run_dir) */
	char disk[PATH_MAX];	/* the VM's copy-on-write clone of the image, in run_dir */
	char base[PATH_MAX];	/* what disk is over when not the image's: a template's disk */
};

/*
 * Finds (building if needed) the image and boots a fresh VM from it, in a
 * new temporary run directory under $TMPDIR (unix socket paths must stay
 * short), on its own copy-on-write clone of the image's disk (an empty
 * scratch disk for images without one). Returns 0 with *out ready for commands, or a negative code
 * with err naming the image and the failure; nothing is left behind on error.
 */
int runner_guest_boot(const char *image, const struct runner_guest_opts *opts,
		      struct runner_guest **out, struct vmci_err *err);

/*
 * The destination of a guest of image moving here (vm_migrate_listen): a
 * new run directory and a new clone of the image's disk, the one the
 * source's disk is a clone of. opts must give the source's shape: its
 * vCPUs, memory and accelerator (vm_accel_used). Returns 0 with *out (its
 * VM usable after vm_migrate_accept) and where the source sends it in
 * *addr; nothing is left behind on error.
 */
int runner_guest_listen(const char *image, const struct runner_guest_opts *opts,
			struct runner_guest **out, struct vm_migrate_addr *addr,
			struct vmci_err *err);

/*
 * runner_guest_listen for a source that did not boot from the image: its
 * disk is a clone of base (a template's disk, the source's g->base; NULL:
 * the image's), and mem_backend says its RAM is a memory backend
 * (vm_mem_backend). disks (NULL: none) names, by SCSI target, the file
 * under each disk the source added at run time (vm_disk_attach; NULL
 * where it has none): the destination gets a new overlay over each, at
 * runner_guest_disk_path, in the same place on its SCSI bus.
 */
int runner_guest_listen_over(const char *image, const struct runner_guest_opts *opts,
			     const char *base, bool mem_backend,
			     const char *const disks[VM_DISK_TARGETS], struct runner_guest **out,
			     struct vm_migrate_addr *addr, struct vmci_err *err);

/* The overlay of the disk at SCSI target t that runner_guest_listen_over made, in g's run dir. */
int runner_guest_disk_path(const struct runner_guest *g, unsigned target, char *out, size_t size);

/* Stops the VM (QMP quit, then kill after timeout_ms), removes its run directory, frees g. */
void runner_guest_destroy(struct runner_guest *g, int timeout_ms);

/* ---- the accelerator canary (runner/accel_probe.c) ------------------- */

/*
 * Boots the canary (vm_accel_canary) again on the smallest image of the
 * host's architecture (busybox-<arch>, built if missing, with opts'
 * progress) and writes the verdict that AUTO follows from then on.
 */
int runner_accel_probe(const struct runner_guest_opts *opts, struct vm_accel_verdict *out,
		       struct vmci_err *err);

#endif
