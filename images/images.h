/*
 * images: golden images a VM boots from.
 *
 * An image is a published, read-only directory in the store under
 * $VMCI_HOME/images: a kernel, an initramfs (the agent as /init, busybox,
 * the kernel modules the agent needs) and, for some images, a root disk.
 * Images are content-addressed: the digest covers the recipe and every
 * input (kernel package, busybox, agent binary), so a change to any of
 * them makes a new image. Publishing is atomic: a build that is
 * interrupted leaves no image a later run would use.
 */
#ifndef VMCI_IMAGES_H
#define VMCI_IMAGES_H

#include <limits.h>
#include <stdbool.h>

#include "common/common.h"

/* What a VM needs to boot an image; all paths are absolute. */
struct img_boot {
	char name[64];
	char arch[16];		   /* "x86_64", "aarch64" */
	char digest[SHA256_HEX_LEN + 1];
	char dir[PATH_MAX];	   /* the published image directory */
	char kernel[PATH_MAX];
	char initrd[PATH_MAX];
	char disk[PATH_MAX];	   /* "" when the image has no root disk */
	char cmdline[256];	   /* kernel arguments the image needs, may be "" */
};

/* Progress of a long step, for a progress display: done of total (total 0: unknown). */
typedef void (*img_progress_fn)(void *ctx, const char *step, long long done, long long total);

/* The images vmci knows how to build, NULL-terminated. */
const char *const *img_known_names(void);

/*
 * Finds the image called name in the store, building it first when it is
 * missing or its inputs changed. progress may be NULL. Two processes that
 * ask for the same image at once build it once (a lock in the store).
 * Errors name the image and what to do.
 */
int img_ensure(const char *name, struct img_boot *out, img_progress_fn progress, void *ctx,
	       struct vmci_err *err);

/*
 * Finds a published image without building. Returns 0, -ENOENT when it is
 * not in the store (err says how to build it), or another error.
 */
int img_find(const char *name, struct img_boot *out, struct vmci_err *err);

/*
 * The guest agent binary for arch: $VMCI_AGENT_DIR/vmci-agent-ARCH, or
 * agent/vmci-agent-ARCH next to the vmci executable. Returns 0 or -ENOENT
 * with err saying how to build it.
 */
int img_agent_path(const char *arch, char *out, size_t size, struct vmci_err *err);

/* ---- clones (images/clone.c) ---------------------------------------- */

/* Virtual size of the scratch disk given to a clone of an image that has no root disk. */
#define IMG_SCRATCH_DISK_MB 1024

/*
 * Creates a copy-on-write clone of img at overlay_path: a qcow2 overlay
 * whose backing file is the image's read-only root disk, or, for an image
 * without one, an empty qcow2 scratch disk (so that every VM has a disk to
 * hold its snapshots). Constant time whatever the image's size. The clone
 * is registered in the store, so gc keeps img while the clone exists.
 */
int img_clone(const struct img_boot *img, const char *overlay_path, struct vmci_err *err);

/*
 * The same for any backing file (a qcow2 or raw disk); backing may be NULL
 * for an empty disk of size_mb. Not registered: for tests and benchmarks.
 */
int img_clone_file(const char *backing, const char *overlay_path, int size_mb,
		   struct vmci_err *err);

/* Deletes a clone made by img_clone and its registration. Missing is not an error. */
int img_clone_release(const char *overlay_path, struct vmci_err *err);

/* $VMCI_HOME/images */
const char *img_store_root(void);

#endif
