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
	char arch[16]; /* "x86_64", "aarch64" */
	char digest[SHA256_HEX_LEN + 1];
	char dir[PATH_MAX]; /* the published image directory */
	char kernel[PATH_MAX];
	char initrd[PATH_MAX];
	char disk[PATH_MAX]; /* "" when the image has no root disk */
	char cmdline[256];   /* kernel arguments the image needs, may be "" */
};

/* Progress of a long step, for a progress display: done of total (total 0: unknown). */
typedef void (*img_progress_fn)(void *ctx, const char *step, long long done, long long total);

/*
 * The directory of the recipe files: $VMCI_RECIPES_DIR, else the
 * images/recipes of the source tree the executable was built in (searched
 * upward from its directory), else <exe>/../share/vmci/recipes. Returns 0
 * with its absolute path in out, or -ENOENT with err saying where it
 * looked.
 */
int img_recipes_dir(char *out, size_t size, struct vmci_err *err);

/*
 * The images vmci knows how to build: NAME for every NAME.yml in
 * img_recipes_dir(), sorted. Returns 0 with *out a NULL-terminated array
 * to free with img_names_free(), or a negative code with err.
 */
int img_recipe_names(char ***out, struct vmci_err *err);
void img_names_free(char **names);

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
 * is registered in the store, so gc keeps img while the clone is live: its
 * overlay exists and the calling process lives or a process (QEMU) has
 * the overlay open. A clone left by a dead process that nothing has open
 * is stale, and gc deletes it. Fails with -ENOENT when gc has removed img
 * since it was found (look it up again). An img not from the store (no
 * digest) gets an unregistered clone.
 */
int img_clone(const struct img_boot *img, const char *overlay_path, struct vmci_err *err);

/*
 * img_clone with another backing file: a disk derived from img's own (a
 * ready-state template's disk, itself an overlay of img's disk). The clone
 * is registered as one of img, with the same liveness rule, so gc keeps
 * img while it is live. backing NULL: an empty scratch disk.
 */
int img_clone_over(const struct img_boot *img, const char *backing, const char *overlay_path,
		   struct vmci_err *err);

/*
 * A clone of img that is a copy of from, a disk derived from img's own with
 * internal snapshots (a snapshot template's disk, whose snapshot the VM
 * starts from): its backing file, if any, is from's. Registered as one of
 * img, like img_clone. The copy costs what from holds (its snapshots'
 * memory), not img's size.
 */
int img_clone_copy(const struct img_boot *img, const char *from, const char *overlay_path,
		   struct vmci_err *err);

/*
 * The same for any backing file (a qcow2 or raw disk); backing may be NULL
 * for an empty disk of size_mb. Not registered: for disks that are not
 * images' (a workspace disk), tests and benchmarks.
 */
int img_clone_file(const char *backing, const char *overlay_path, int size_mb,
		   struct vmci_err *err);

/*
 * Makes raw_out (a sparse file of size bytes) an ext4 filesystem holding
 * the tree dir (`mke2fs -d`: modes, symlinks, mtimes), with room for
 * inodes files, for a scratch disk that lives as long as a run: no
 * journal and nothing written but the tree and its metadata, so it costs
 * about what copying the tree does. Files are root's (as root, the
 * tree's owners; otherwise a user namespace maps the caller to root).
 */
int img_ext4_scratch_make(const char *dir, long long size, long long inodes, const char *label,
			  const char *raw_out, struct vmci_err *err);

/*
 * Deletes a clone made by img_clone (or img_clone_file) and its
 * registration. Missing is not an error.
 */
int img_clone_release(const char *overlay_path, struct vmci_err *err);

/*
 * True when another open file description holds a lock on path: QEMU
 * locks the disks it opens, so a clone that is locked is in use by a VM
 * (what gc relies on).
 */
bool img_file_locked(const char *path);

/* ---- what the store holds (images/list.c) ---------------------------- */

/*
 * One row of img_list: a name and the image it points at, or an image no
 * name points at any more (name ""), which gc removes unless a clone uses it.
 * Sizes are bytes on disk (st_blocks * 512), so sparse disks count what
 * they really take.
 */
struct img_info {
	char name[64];
	char arch[16];
	char digest[SHA256_HEX_LEN + 1];
	long long size;	       /* the image's own files */
	long long shared;      /* of size, what other names, images backed by it, or live
				  clones also use (a clone uses its backing disk) */
	int clones;	       /* live clones of the image */
	long long clones_size; /* what those clones' overlays take */
	long long created;     /* unix seconds; 0 when unknown */
	/* Read from the image at build time (its manifest); "" when it does not say. */
	char os[96];	     /* /etc/os-release PRETTY_NAME: "Debian GNU/Linux 13 (trixie)" */
	char os_id[32];	     /* ID: "debian" */
	char os_version[32]; /* VERSION_ID: "13" */
	char kernel[64];     /* the kernel's release (uname -r) */
	char parent[SHA256_HEX_LEN + 1]; /* the image it was derived from (packages), or "" */
	char parent_name[64];		 /* that image's name when it was derived, or "" */
};

/*
 * Every image in the store, sorted by name with unnamed images last, in
 * *out (free() it). Only reads: safe while builds, clones and gc run.
 */
int img_list(struct img_info **out, size_t *count, struct vmci_err *err);

/* ---- one image in detail (images/inspect.c) ---------------------------- */

/*
 * What an image's manifest (manifest.json, written by its build beside its
 * files) records. Strings are "" and numbers 0 when the manifest does not
 * say; text is the manifest as stored, so a front end can show it whole.
 */
struct img_manifest {
	char name[64]; /* the name it was built or imported as */
	char arch[16];
	char created[32]; /* "2024-05-01T12:00:00Z" (UTC) */
	char builder[64]; /* the builder's version: "vmci-image-builder 1" */
	char cmdline[256];
	char kernel_file[64]; /* files in the image's directory */
	char initrd_file[64];
	char disk_file[64];  /* "" when the image has no root disk */
	long long disk_size; /* bytes the root disk was made with */
	struct {
		char package[128];   /* a Debian kernel: "linux-image-6.1.0-21-cloud-amd64" */
		char version[64];    /* the package's version */
		char release[64];    /* uname -r */
		char file[PATH_MAX]; /* or the kernel file the recipe named */
		char sha256[SHA256_HEX_LEN + 1];
	} kernel;
	char *text; /* the whole manifest, JSON as stored; owned */
};

/* One file of an image's directory. */
struct img_file_info {
	char name[256];
	char path[PATH_MAX];
	long long size;	      /* bytes (st_size) */
	long long disk_usage; /* bytes on disk (st_blocks * 512) */
	bool disk;	      /* a disk whose header was read: the fields below are set */
	char format[8];	      /* "qcow2" or "raw" */
	long long virtual_size;
	char backing[PATH_MAX]; /* absolute; "" when it has no backing file */
};

/* An image the disks of another are backed by. */
struct img_parent {
	char digest[SHA256_HEX_LEN + 1];
	char dir[PATH_MAX];
	char **names; /* the names pointing at it, NULL-terminated (maybe none) */
};

/* A live clone of an image (see img_clone). */
struct img_live_clone {
	char overlay[PATH_MAX];
	int pid; /* the process that made it */
	long long disk_usage;
};

/* Everything about one image: what img_inspect returns. */
struct img_details {
	char name[64];			 /* as asked */
	char digest[SHA256_HEX_LEN + 1]; /* hex, no "sha256:" */
	char dir[PATH_MAX];		 /* the published directory */
	long long size;			 /* bytes on disk of its files */
	char **names;			 /* every name of the same image, NULL-terminated */
	struct img_manifest manifest;
	char recipe_file[PATH_MAX];  /* the recipe that builds name now, "" when none (its
					digest may differ from this image's) */
	struct img_file_info *files; /* in the directory's order */
	size_t n_files;
	struct img_parent *parents; /* nearest first */
	size_t n_parents;
	struct img_live_clone *clones;
	size_t n_clones;
};

/*
 * Everything about the image called name, in *out, which the caller frees
 * with img_details_free. Only reads: safe while builds, clones and gc run.
 * Returns 0, -ENOENT as img_find when there is no such image, -EINVAL
 * when its manifest is not JSON, or another negative code, with err.
 * Presentation (JSON for `vmci image inspect`, the service's API) is the
 * front end's.
 */
int img_inspect(const char *name, struct img_details **out, struct vmci_err *err);
void img_details_free(struct img_details *d);

/* ---- removing images (images/gc.c) ------------------------------------ */

/*
 * Removes the name: the image stays in the store (other names, clones and
 * images built on it may use it) until img_gc finds nothing references it.
 * digest (may be NULL) receives what the name pointed at. Returns 0,
 * -ENOENT when there is no such name, -EBUSY when a build of name is
 * running.
 */
int img_remove(const char *name, char digest[SHA256_HEX_LEN + 1], struct vmci_err *err);

/* What img_gc removes (or would, in a dry run), one call per item. */
enum img_gc_kind {
	IMG_GC_IMAGE,	     /* an image no name, image or live clone references */
	IMG_GC_CLONE,	     /* a stale clone: its maker died, nothing has it open */
	IMG_GC_REGISTRATION, /* the registration of a clone whose overlay is gone */
	IMG_GC_SCRATCH,	     /* a scratch directory whose build, import or pull died
				(in tmp/, cache/rootfs/ or cache/debs/partial/) */
	IMG_GC_DOWNLOAD,     /* a partial pull (tmp/pull-*.part) no pull is writing */
};

struct img_gc_opts {
	bool dry_run; /* report only */
	/* Called for every item, may be NULL; what is a path or "sha256:... (name)". */
	void (*on_item)(void *ctx, enum img_gc_kind kind, const char *what, long long bytes);
	void *ctx;
};

struct img_gc_report {
	int removed[IMG_GC_DOWNLOAD + 1]; /* by kind */
	long long bytes;		  /* freed on disk */
	int busy;			  /* unreferenced images kept because a build holds them */
};

/*
 * Removes every image that no name, no live clone and no kept image (as a
 * backing file) references, every stale clone, the registrations of clones
 * that are gone, and the scratch directories and partial downloads of
 * processes that are gone (each is locked by its owner while it runs; a
 * partial download gc removes is no longer there for a later pull to
 * resume).
 * Safe while builds, pulls and clones run: it holds the store lock while it
 * decides, skips images a build is publishing, and moves an image out of
 * blobs/ before deleting it, so a half-deleted image never looks published.
 * opts may be NULL.
 */
int img_gc(const struct img_gc_opts *opts, struct img_gc_report *report, struct vmci_err *err);

/* ---- pull (images/pull.c) ---------------------------------------------- */

/*
 * Downloads the disk at url (http or https) and publishes it as the image
 * name, as `vmci image import` does with a local disk. The download goes to
 * a partial file in the store's tmp/ keyed by sha256_hex (64 hex digits,
 * "sha256:" prefix allowed), so an interrupted pull (a dropped connection,
 * Ctrl-C) resumes where it stopped the next time (HTTP Range). Nothing is
 * published unless the whole file's sha256 equals sha256_hex; a mismatch
 * removes the download. The file may have at most max_bytes (<= 0:
 * IMG_PULL_MAX_BYTES), and no more than the server announced: a larger
 * announced size is refused before anything is written, and a download
 * that grows past either is stopped and deleted. progress (may be NULL)
 * gets bytes done of total. Errors say what failed: the HTTP status, the
 * host that could not be resolved or reached, a dropped connection (and
 * that the next pull resumes), a redirect loop, the size limit, the
 * expected and actual checksum.
 */
int img_pull(const char *url, const char *sha256_hex, const char *name, long long max_bytes,
	     img_progress_fn progress, void *ctx, struct vmci_err *err);
/* The default size limit of a pull. */
#define IMG_PULL_MAX_BYTES (16LL << 30)

/* $VMCI_HOME/images */
const char *img_store_root(void);

/* ---- building with setup commands (images/recipe.c) ------------------ */

/*
 * An unpublished build booted to run its recipe's setup commands. images
 * does not start VMs itself: the caller that can (the runner) provides
 * an img_setup_fn that boots this, runs each command with `sh -c` as root
 * in order, stops at the first that fails, and shuts the VM down cleanly
 * so every change is on disk.
 */
struct img_setup_vm {
	const char *image; /* the image's name, for messages */
	const char *arch;  /* "x86_64", "aarch64" */
	const char *kernel;
	const char *initrd;
	const char *cmdline; /* makes the agent switch into disk */
	const char *disk;    /* the build's qcow2 root disk, writable: changes are kept */
	bool network;	     /* the VM needs outbound network (installing packages) */
	const char *const *commands;
	size_t ncommands;
	img_progress_fn progress; /* may be NULL */
	void *progress_ctx;
};

/* Returns 0 when every command exited 0, else a negative code with err naming the command. */
typedef int (*img_setup_fn)(void *ctx, const struct img_setup_vm *vm, struct vmci_err *err);

struct img_ensure_opts {
	img_progress_fn progress; /* may be NULL */
	void *progress_ctx;
	img_setup_fn setup; /* NULL: a recipe with setup commands fails to build, saying so */
	void *setup_ctx;
};

/* img_ensure with options (opts may be NULL). */
int img_ensure_with(const char *name, const struct img_ensure_opts *opts, struct img_boot *out,
		    struct vmci_err *err);

/* ---- images with packages installed (images/packages.c) --------------- */

/* The most packages one derived image may add. */
#define IMG_PACKAGES_MAX 256

/*
 * The name of the image that is base with packages installed:
 * "<base>.pkgs-<first 12 hex digits of the sha256 of the sorted, distinct
 * package names>". The same set in any order gives the same name. Fails
 * on a package that is not a Debian package name, or a name too long.
 */
int img_packages_name(const char *base, const char *const *packages, size_t n, char *out,
		      size_t size, struct vmci_err *err);

/*
 * Finds or builds (once, under the name's lock) the image called
 * img_packages_name(base, packages): base (ensured first, as
 * img_ensure_with) with the packages installed by apt-get in a VM with
 * network, through opts->setup. Its digest covers base's digest and the
 * package set, so a rebuilt base makes a new one; its manifest names its
 * "parent" (base's digest), "parent_name" and "packages". A package apt
 * cannot install fails the build with apt's own last lines.
 */
int img_ensure_packages(const char *base, const char *const *packages, size_t n,
			const struct img_ensure_opts *opts, struct img_boot *out,
			struct vmci_err *err);

/* ---- whether packages exist (images/pkgindex.c) ------------------------ */

/*
 * Checks packages against the package lists of the Debian suite and
 * architecture image is installed from (its recipe's debootstrap suite,
 * through the bases of recipes with one), when vmci keeps them locally
 * ($VMCI_HOME/cache/apt/SUITE-ARCH; only read, never fetched: this is for
 * validation, before any VM boots). known[i] says whether packages[i] is
 * a package or something a package provides. Returns 1 when checked, with
 * index describing the lists ("Debian bookworm amd64 (package lists of
 * 2026-11-30 in ...)"); 0 when nothing can be said (no recipe names a
 * suite, or no lists are kept): the build will tell; or a negative code
 * with err when a list cannot be read.
 */
int img_packages_known(const char *image, const char *const *packages, size_t n, bool *known,
		       char *index, size_t index_size, struct vmci_err *err);

/* ---- import (images/import.c) ---------------------------------------- */

/*
 * Makes source into the image called name:
 *   - a root filesystem archive that libarchive reads (tar, tar.gz, tar.xz,
 *     tar.zst, zip...) becomes an ext4 root disk, keeping owners, modes,
 *     setuid bits, links and extended attributes;
 *   - a qcow2 or raw disk is kept as it is (stored as qcow2): a disk that
 *     holds a filesystem is booted with root /dev/vda, a partitioned one
 *     (MBR or GPT) with its Linux partition.
 * Either way the image boots with the busybox-x86_64 kernel and initramfs,
 * whose agent switches into the root disk. The digest covers the source's
 * bytes and the kernel's inputs, so importing the same file twice makes
 * one image. name must not be the name of a recipe.
 */
int img_import(const char *name, const char *source, img_progress_fn progress, void *ctx,
	       struct vmci_err *err);

#endif
