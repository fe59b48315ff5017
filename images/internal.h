/*
 * images/internal.h: what the files of images/ share with each other.
 * Nothing outside images/ (and its unit tests) includes this header.
 *
 *   store.c      the store's layout: names, blobs, scratch directories, finding
 *   publish.c    building and publishing: the build lock, seal, rename, name
 *   agent_path.c files shipped beside the vmci executable (agents, recipes)
 *   deb.c        Debian packages: resolve, download, read, extract a kernel
 *   kmod.c       kernel modules: .modinfo, dependencies, load order
 *   initramfs.c  a newc cpio + gzip initramfs, written deterministically
 *   busybox.c    the busybox-ARCH recipe
 *   clone.c      copy-on-write clones and their registrations
 *   disk.c       disk headers (qcow2), usage on disk, backing chains of blobs
 *   qcow2.c      qcow2 overlays written in-process (what clones are)
 *   list.c       listing the store
 *   inspect.c    one image in detail
 *   gc.c         removing names, and everything nothing references
 *   pull.c       downloading an image by URL (libcurl)
 *   extract.c    a root filesystem archive extracted into a tree (import)
 *   debian.c     the debootstrap builder, its tarball and root disk caches
 *   mirror.c     the Debian mirror a build uses when its recipe names none
 *   os_release.c what an image's /etc/os-release says, for its manifest
 *   packages.c   images with packages installed
 *   based.c      recipes with a base: packages and setup commands on another image
 *   pkgindex.c   whether packages exist, from the package lists kept locally
 */
#ifndef VMCI_IMAGES_INTERNAL_H
#define VMCI_IMAGES_INTERNAL_H

#include <jansson.h>

#include "images/images.h"

struct archive;
struct archive_entry;

/* Part of every digest: bump it when the builder's output changes for the same inputs. */
#define IMG_BUILDER_VERSION "vmci-image-builder 1"

/* The files of a published image directory. */
#define IMG_KERNEL_FILE	  "vmlinuz"
#define IMG_INITRD_FILE	  "initramfs.cpio.gz"
#define IMG_MANIFEST_FILE "manifest.json"
/* The read-only root disk of images that have one (manifest "disk_file"). */
#define IMG_DISK_FILE "disk.qcow2"

/* ---- recipes and builds (store.c drives them) ---------------------- */

/*
 * One build of one recipe. store.c creates it, the recipe's prepare
 * resolves its inputs and sets digest, and build writes the image files
 * into dir (an empty scratch directory) and recipe-specific facts into
 * manifest. store.c then adds the common manifest fields and publishes.
 */
struct img_build {
	const struct img_recipe *recipe;
	img_progress_fn progress;
	void *ctx;
	char digest[SHA256_HEX_LEN + 1];
	char dir[PATH_MAX];
	json_t *manifest;   /* object, owned by store.c */
	void *state;	    /* the recipe's resolved inputs, freed by its finish */
	img_setup_fn setup; /* runs the recipe's setup commands; NULL: refuse them */
	void *setup_ctx;
};

struct img_recipe {
	const char *name;
	const char *arch;
	const struct img_spec *spec; /* the recipe file behind it; NULL for recipes in code */
	/* Resolves (fetching when missing) every input and sets b->digest. */
	int (*prepare)(struct img_build *b, struct vmci_err *err);
	/*
	 * Writes IMG_KERNEL_FILE and IMG_INITRD_FILE (durably) into b->dir, and
	 * for an image with a root disk IMG_DISK_FILE, named in the manifest's
	 * "disk_file" with the "cmdline" that boots it.
	 */
	int (*build)(struct img_build *b, struct vmci_err *err);
	/* Frees b->state; called once after prepare, whatever happened. */
	void (*finish)(struct img_build *b);
};

/* Reports progress when the caller asked for it. */
static inline void img_progress(const struct img_build *b, const char *step, long long done,
				long long total)
{
	if (b->progress)
		b->progress(b->ctx, step, done, total);
}

/* ---- store.c -------------------------------------------------------- */

/*
 * img_ensure for a given recipe: the whole lock / prepare / reuse or
 * build / publish sequence. img_ensure looks the recipe up by name; tests
 * call this with recipes of their own.
 */
int img_ensure_recipe(const struct img_recipe *r, struct img_boot *out, img_progress_fn progress,
		      void *ctx, struct vmci_err *err);
/* The same with every option of img_ensure_with (opts may be NULL). */
int img_ensure_recipe_with(const struct img_recipe *r, const struct img_ensure_opts *opts,
			   struct img_boot *out, struct vmci_err *err);

/*
 * A scratch directory: parent/<prefix>.<pid>, created empty and locked
 * (flock on the directory) for as long as fd is open. A process that dies
 * drops the lock, so img_scratch_clean can tell abandoned directories from
 * ones in use without trusting pids.
 */
struct img_scratch {
	char path[PATH_MAX];
	int fd;
};
int img_scratch_new(const char *parent, const char *prefix, struct img_scratch *out,
		    struct vmci_err *err);
/* Removes the directory (if still there) and drops the lock. */
void img_scratch_drop(struct img_scratch *s);
/* Removes every directory under parent whose lock nobody holds. Returns how many. */
int img_scratch_clean(const char *parent, struct vmci_err *err);

/* ---- agent_path.c ---------------------------------------------------- */

/*
 * The recipe file of an image: NAME.yml in img_recipes_dir(). -ENOENT
 * (err says where it looked) when there is none.
 */
int img_recipe_path(const char *name, char *out, size_t size, struct vmci_err *err);

/* ---- deb.c ------------------------------------------------------------ */

/* A Debian package in the local cache ($VMCI_HOME/cache/debs). */
struct img_deb {
	char package[128]; /* linux-image-6.1.0-56-cloud-amd64 */
	char version[64];  /* 6.1.192-2 */
	char arch[16];	   /* Debian's name: amd64, arm64 */
	char path[PATH_MAX];
	char sha256[SHA256_HEX_LEN + 1];
};

/* Debian's name for an architecture: x86_64 -> amd64, aarch64 -> arm64. */
int img_deb_arch(const char *arch, const char **deb_arch, struct vmci_err *err);

/*
 * A Debian suite's own archive, for packages the host's apt does not know
 * (another release, another architecture): apt runs with a private state
 * in $VMCI_HOME/cache/apt/SUITE-ARCH (sources, lists; the host's apt
 * configuration is not touched), and packages are kept in
 * $VMCI_HOME/cache/debs/SUITE-ARCH.
 */
struct img_apt_source {
	char suite[32];	  /* bookworm */
	char mirror[256]; /* http://deb.debian.org/debian */
};

/* cache/debs/SUITE-ARCH (created when missing): the packages of one suite and architecture. */
int img_deb_suite_cache(const struct img_apt_source *src, const char *deb_arch, char *out,
			size_t size, struct vmci_err *err);

/*
 * The Debian kernel of a flavour ("cloud") for deb_arch: resolves the
 * metapackage linux-image-FLAVOUR-ARCH to its concrete package (apt's answer
 * is kept for a day), downloads it once into the cache, and hashes it.
 * src NULL: the host's apt; else that suite's archive.
 */
int img_deb_fetch_kernel(const char *flavour, const char *deb_arch,
			 const struct img_apt_source *src, struct img_deb *out,
			 img_progress_fn progress, void *ctx, struct vmci_err *err);

/*
 * Called for every entry of a package's data.tar; path has no leading
 * "./". Read the entry's bytes with archive_read_data(a). Return 0 to go
 * on, 1 to stop early, or a negative code (with err set) to fail.
 */
typedef int (*img_deb_entry_fn)(void *ctx, const char *path, struct archive *a,
				struct archive_entry *e, struct vmci_err *err);
int img_deb_read(const char *deb, img_deb_entry_fn fn, void *ctx, struct vmci_err *err);

/* Appends the current entry's bytes (at most max) to out. */
int img_archive_read_entry(struct archive *a, const char *what, size_t max, struct buf *out,
			   struct vmci_err *err);

struct img_kmods;

/*
 * Extracts a linux-image package's kernel: boot/vmlinuz-RELEASE is written
 * (and synced) to vmlinuz_out, every module's .modinfo is read into mods,
 * and the bytes of the modules that mods needs are kept there. release
 * receives the kernel release (uname -r).
 */
int img_deb_extract_kernel(const char *deb, const char *vmlinuz_out, struct img_kmods *mods,
			   char *release, size_t release_size, struct vmci_err *err);

/*
 * Any package of deb_arch (the candidate apt would install), fetched and
 * cached like the kernel. For busybox-static of a foreign architecture.
 */
int img_deb_fetch_package(const char *package, const char *deb_arch, struct img_deb *out,
			  img_progress_fn progress, void *ctx, struct vmci_err *err);

/* ---- kmod.c ----------------------------------------------------------- */

/* What a module's .modinfo section says that matters for loading it. */
struct img_modinfo {
	char name[64];	   /* "" when the module does not say */
	char depends[512]; /* comma-separated module names */
	char softdep[512]; /* the "pre:" modules of softdep, space-separated */
};

/* Reads .modinfo from an ELF64 module (either byte order), checking every bound. */
int img_modinfo_parse(const void *elf, size_t len, struct img_modinfo *out, struct vmci_err *err);

/*
 * A module file's bytes as the kernel loads them: .ko is copied, .ko.xz,
 * .ko.zst and .ko.gz are decompressed. Appends to out (at most max bytes).
 */
int img_kmod_decompress(const char *file, const void *data, size_t len, size_t max, struct buf *out,
			struct vmci_err *err);

/* True when file names a kernel module: *.ko, *.ko.xz, *.ko.zst, *.ko.gz. */
bool img_kmod_is_module(const char *file);

/*
 * The modules of one kernel and the subset a VM must load. Modules are
 * added as the package is read (in any order); the set keeps the bytes of
 * those needed so far, and img_kmods_order fixes the final list. Names
 * compare with '-' and '_' as equal, as the kernel does.
 */
struct img_kmods *img_kmods_new(const char *const *wanted);
void img_kmods_free(struct img_kmods *s);

/*
 * Records a module (already decompressed) found at relpath. Returns 1 when
 * its bytes were kept (it is needed), 0 when not, or a negative code.
 */
int img_kmods_add(struct img_kmods *s, const char *relpath, const void *data, size_t len,
		  struct vmci_err *err);

/*
 * Orders the wanted modules and everything they depend on, dependencies
 * first. A name with no module file is taken as built into the kernel.
 * Returns the number of needed modules whose bytes were not kept (seen
 * before they were known to be needed: add them again, then order again),
 * or a negative code on a dependency cycle.
 */
int img_kmods_order(struct img_kmods *s, struct vmci_err *err);

/*
 * Records the kernel's built-in modules from its modules.builtin (one
 * "kernel/fs/ext4/ext4.ko" a line), so that a wanted name that is neither
 * a module nor built in can be told apart (img_kmods_unknown).
 */
int img_kmods_builtin(struct img_kmods *s, const char *text, size_t len, struct vmci_err *err);

/*
 * The i-th wanted name that is neither a module file seen so far nor built
 * into the kernel (a misspelt name in a recipe), or NULL past the last.
 * Always NULL when no modules.builtin was recorded: then every name
 * without a module file is taken as built in.
 */
const char *img_kmods_unknown(const struct img_kmods *s, size_t i);

/* The ordered modules, after img_kmods_order. */
struct img_kmod {
	const char *name;    /* normalized: '_' for '-' */
	const char *relpath; /* where the package had it */
	const char *file;    /* basename, ending in .ko */
	const uint8_t *data; /* uncompressed, NULL when not kept */
	size_t len;
};
size_t img_kmods_count(const struct img_kmods *s);
const struct img_kmod *img_kmods_at(const struct img_kmods *s, size_t i);

/* ---- initramfs.c ---------------------------------------------------- */

/*
 * An initramfs being assembled: entries are added in any order and
 * written sorted, with every parent directory, owner root, and a fixed
 * mtime, so equal inputs give identical bytes. Paths are relative ("bin/sh").
 */
struct img_initramfs;
struct img_initramfs *img_initramfs_new(void);
void img_initramfs_free(struct img_initramfs *ir);
bool img_initramfs_has(const struct img_initramfs *ir, const char *path);
int img_initramfs_add_dir(struct img_initramfs *ir, const char *path, mode_t mode,
			  struct vmci_err *err);
/* Copies data. */
int img_initramfs_add_data(struct img_initramfs *ir, const char *path, mode_t mode,
			   const void *data, size_t len, struct vmci_err *err);
/* host_path is read when the archive is written. */
int img_initramfs_add_file(struct img_initramfs *ir, const char *path, mode_t mode,
			   const char *host_path, struct vmci_err *err);
int img_initramfs_add_symlink(struct img_initramfs *ir, const char *path, const char *target,
			      struct vmci_err *err);
int img_initramfs_add_chardev(struct img_initramfs *ir, const char *path, mode_t mode,
			      unsigned major, unsigned minor, struct vmci_err *err);
/* Writes the gzip-compressed newc archive to out (created 0644, synced). */
int img_initramfs_write(struct img_initramfs *ir, const char *out, struct vmci_err *err);

/* ---- the store's layout (store.c), for publish.c, clone.c, gc.c, list.c, pull.c ---- */

/* $VMCI_HOME/images/<sub>, created when missing. */
int img_store_dir(char *out, size_t size, const char *sub, struct vmci_err *err);
/* 0 when name can name an image (letters, digits, '.', '_', '-'), else -EINVAL. */
int img_name_check(const char *name, struct vmci_err *err);
/* The digest names/<name> points at: 0, -ENOENT (err untouched), or -EINVAL. */
int img_name_read(const char *name, char digest[SHA256_HEX_LEN + 1], struct vmci_err *err);
/* Points names/<name> at digest, atomically and durably. */
int img_name_write(const char *name, const char *digest, struct vmci_err *err);
/* blobs/sha256-<digest>; -ENAMETOOLONG when it does not fit. */
int img_blob_path(const char *digest, char *out, size_t size);
/* True when a blob directory holds a complete image (kernel, initramfs, manifest). */
bool img_blob_complete(const char *dir);
/* Fills out for the published image digest called name, from its manifest. */
int img_fill_boot(const char *name, const char *digest, struct img_boot *out, struct vmci_err *err);
/*
 * Opens locks/<name>.lock (created when missing) and takes flock(op) on it
 * (LOCK_EX or LOCK_SH, retried on EINTR), held until *fd is closed. With
 * LOCK_NB, returns -EWOULDBLOCK at once (err untouched) when it is held.
 * On failure *fd is -1.
 */
int img_lock(const char *name, int op, int *fd, struct vmci_err *err);
/*
 * Holds locks/<name>.lock, the lock every build or publish of name holds,
 * until *fd is closed. wait: blocks while another process holds it;
 * otherwise returns -EWOULDBLOCK at once (err untouched) when it is held.
 */
int img_name_lock(const char *name, bool wait, int *fd, struct vmci_err *err);

/*
 * Points the name at the published image digest (under the name's lock and
 * the store lock, as a publish does) and fills out. For a recipe whose
 * image is one made under another name (a recipe with a base).
 */
int img_name_point(const char *name, const char *digest, struct img_boot *out,
		   struct vmci_err *err);

/* ---- the store lock (gc.c) -------------------------------------------- */

/*
 * locks/.store.lock. gc holds it exclusive while it decides what nothing
 * references and moves that out of blobs/. Whoever adds a reference gc
 * could not otherwise see holds it shared until the reference is on disk:
 * img_clone (overlay + registration), and a publish that points a name at
 * a blob already published under another name (gc also skips any blob
 * whose manifest's name is locked by a build, see img_name_lock).
 * Released by close(*fd).
 */
int img_store_lock(bool exclusive, int *fd, struct vmci_err *err);

/* ---- clone registrations (clone.c) ---------------------------------- */

/*
 * img_clone records every clone in clones/<sha256 of the overlay's path>.json.
 * A clone is live while its overlay exists (the same file: device and
 * inode match) and either the process that made it lives (pid and start
 * time match) or some process (QEMU) holds a lock on the overlay. An
 * overlay left by a dead process that nothing has open is stale.
 */
enum img_clone_state {
	IMG_CLONE_LIVE,
	IMG_CLONE_GONE,	 /* the overlay is gone or replaced: only the registration is left */
	IMG_CLONE_STALE, /* the overlay is left over: its maker is dead and nothing has it open */
};

struct img_clone_reg {
	char file[PATH_MAX];	/* the registration */
	char overlay[PATH_MAX]; /* absolute */
	char image[64];		/* the image's name when cloned */
	char digest[SHA256_HEX_LEN + 1];
	int pid;
	long long created; /* unix seconds */
	enum img_clone_state state;
};

/* Every registration with its state, in *out (free()). Unreadable ones are GONE. */
int img_clone_regs(struct img_clone_reg **out, size_t *count, struct vmci_err *err);

/* Removes a registration, and its overlay too when overlay is true (a stale clone). */
int img_clone_reg_drop(const struct img_clone_reg *reg, bool overlay, struct vmci_err *err);

/* ---- disks and blob contents (disk.c) ------------------------------- */

/* What a disk file's header says. */
struct img_disk {
	char format[8];		/* "qcow2" or "raw" */
	long long virtual_size; /* bytes the guest sees */
	char backing[PATH_MAX]; /* absolute path of the backing file, "" when none */
};

/* Reads a disk's header (qcow2 header fields are checked; anything else is raw). */
int img_disk_probe(const char *path, struct img_disk *out, struct vmci_err *err);

/*
 * Creates (or replaces) path as an empty qcow2 v3 disk of size bytes
 * (rounded up to 512), the file `qemu-img create -f qcow2` makes with its
 * defaults: 64 KiB clusters, 16-bit refcounts, nothing allocated. With
 * backing (and backing_format, "qcow2" or "raw"), every read the overlay
 * has no data for goes to backing, stored as given. No process, no sync;
 * nothing is left behind on error.
 */
int img_qcow2_create(const char *path, long long size, const char *backing,
		     const char *backing_format, struct vmci_err *err);

/* Bytes a file or directory tree takes on disk (st_blocks * 512). */
long long img_disk_usage(const char *path);

/* Whether a file of a blob is one of its disks (not its kernel, initramfs or manifest). */
bool img_is_disk_file(const char *file);

/*
 * The digests of the blobs the disks of blob digest are backed by, directly
 * or through a chain (its parents), appended to *parents (free()), nearest
 * first. A backing file outside the store is not listed.
 */
int img_blob_parents(const char *digest, char (**parents)[SHA256_HEX_LEN + 1], size_t *count,
		     struct vmci_err *err);

/* ---- pull.c ------------------------------------------------------------ */

/* Makes the verified file into the image name (img_pull uses img_import). */
typedef int (*img_publish_fn)(void *ctx, const char *name, const char *file,
			      img_progress_fn progress, void *progress_ctx, struct vmci_err *err);

/* img_pull with another way to publish: for tests, which have no kernel to boot with. */
int img_pull_with(const char *url, const char *sha256_hex, const char *name, long long max_bytes,
		  img_publish_fn publish, void *publish_ctx, img_progress_fn progress, void *ctx,
		  struct vmci_err *err);

/* ---- packages.c, based.c --------------------------------------------- */

/*
 * Builds an image over base in b->dir: base's kernel and initramfs
 * (hard links), a root disk that is a qcow2 overlay of base's, and the
 * commands run on it in a VM (img_rootdisk_run; network: with outbound
 * access).
 * Sets the manifest's disk_file, cmdline, parent and parent_name.
 */
int img_build_over(struct img_build *b, const struct img_boot *base, const char *const *commands,
		   size_t n, bool network, struct vmci_err *err);

/*
 * The image of a recipe with a base (spec->base): its packages installed
 * by img_ensure_packages (the recipe and a job asking for the same
 * packages on the same base share that image, which the recipe's name
 * then points at), and its setup commands, if any, run on top in an
 * image of its own (img_build_over). A chain of bases that comes back to
 * spec is an error, not a deadlock.
 */
int img_ensure_on_base(const struct img_spec *spec, const struct img_ensure_opts *opts,
		       struct img_boot *out, struct vmci_err *err);

/* ---- recipe.c ---------------------------------------------------------- */

enum img_rootfs_kind {
	IMG_ROOTFS_BUSYBOX,	/* no root disk: the initramfs is the system */
	IMG_ROOTFS_DEBOOTSTRAP, /* a Debian system made by debootstrap, on ext4 */
	IMG_ROOTFS_TARBALL,	/* a root filesystem archive, on ext4 */
	IMG_ROOTFS_DISK,	/* a qcow2 or raw disk, as is */
};

struct img_strings {
	char **v;
	size_t n;
};

/* A recipe file, checked: every field is valid when parsing succeeds. */
struct img_spec {
	char file[PATH_MAX];		 /* where it was read from */
	char sha256[SHA256_HEX_LEN + 1]; /* of the file's bytes */
	char name[64];
	char arch[16];		    /* x86_64, aarch64 */
	char kernel_flavour[32];    /* kernel.debian ("cloud"), or "" */
	char kernel_file[PATH_MAX]; /* kernel.file (absolute), or "" */
	struct img_strings modules; /* kernel.modules */
	char busybox[PATH_MAX];	    /* an absolute host path, or a Debian package name */
	enum img_rootfs_kind rootfs;
	char suite[32]; /* debootstrap */
	char variant[32];
	char mirror[256]; /* "": the mirror apt uses on this host */
	/* rootfs.debootstrap.packages, or what a recipe with a base installs on it */
	struct img_strings packages;
	char source[PATH_MAX];	  /* tarball or disk (absolute) */
	long long disk_size;	  /* bytes; 0 unless the build makes a root disk */
	struct img_strings setup; /* shell commands, run in order */
	bool setup_network;	  /* `network: nat`: the setup commands' VM has outbound access */
	/*
	 * `base:`: the image this one is made from ("" for every other kind).
	 * Such a recipe has name, base, and packages or setup commands (with
	 * their network): kernel, arch and root disk come from base, and
	 * rootfs is unset (img_ensure_on_base).
	 */
	char base[64];
};

/*
 * Parses a recipe's text; file names it in messages ("file:line:col:
 * error: ..."). expected_name, when not NULL, must equal its name.
 */
int img_spec_parse(const char *file, const void *text, size_t len, const char *expected_name,
		   struct img_spec **out, struct vmci_err *err);
int img_spec_load(const char *path, const char *expected_name, struct img_spec **out,
		  struct vmci_err *err);
/* The recipe of image name (img_recipe_path). -ENOENT when there is none. */
int img_spec_find(const char *name, struct img_spec **out, struct vmci_err *err);
void img_spec_free(struct img_spec *s);

/* The builder a spec's rootfs needs, as a recipe owning spec. */
struct img_recipe *img_recipe_new(struct img_spec *spec, struct vmci_err *err);
void img_recipe_free(struct img_recipe *r);

/* The builders, by rootfs kind; their recipe's spec must be set. */
int img_busybox_prepare(struct img_build *b, struct vmci_err *err);
int img_busybox_build(struct img_build *b, struct vmci_err *err);
void img_busybox_finish(struct img_build *b);
int img_debian_prepare(struct img_build *b, struct vmci_err *err);
int img_debian_build(struct img_build *b, struct vmci_err *err);
void img_debian_finish(struct img_build *b);
int img_import_prepare(struct img_build *b, struct vmci_err *err);
int img_import_build(struct img_build *b, struct vmci_err *err);
void img_import_finish(struct img_build *b);

/* Adds "label value\n" to a digest being computed. */
void img_digest_line(struct sha256_ctx *ctx, const char *label, const char *value);

/* ---- extract.c ---------------------------------------------------------- */

/*
 * A device node of a root filesystem archive. It is never made on the
 * host: extraction leaves an empty placeholder file in its place, and the
 * disk builder makes the node inside the image (img_rootdisk_add_nodes).
 */
struct img_node {
	char *path;    /* relative to the tree: "dev/console" */
	unsigned mode; /* S_IFCHR or S_IFBLK, and the permission bits */
	unsigned major, minor;
	unsigned uid, gid;
	long long mtime; /* unix seconds */
	ino_t ino;	 /* the placeholder's inode */
};
struct img_nodes {
	struct img_node *v;
	size_t n;
};
/* Frees what the nodes hold and empties the list. */
void img_nodes_free(struct img_nodes *nodes);

/*
 * Extracts the archive source into target (an existing, empty directory)
 * as root would: owners, modes, setuid bits, links, extended attributes.
 * Paths that leave target are refused. Device nodes are appended to nodes
 * (the caller frees them, also on failure) and only their placeholders are
 * written. Any write that loses data (a full disk) fails the extraction
 * with a message naming the entry and the reason. bytes receives the size
 * of the files' contents; b (may be NULL) receives progress.
 */
int img_extract_rootfs(const char *source, const char *target, const struct img_build *b,
		       long long *bytes, struct img_nodes *nodes, struct vmci_err *err);

/* ---- bootfiles.c ------------------------------------------------------- */

/*
 * The kernel and initramfs of an image: the kernel of spec (a Debian
 * package or a file), and an initramfs holding the agent as /init, busybox
 * and its applets, and the kernel modules the agent loads. Disk images
 * boot the same way, and the agent switches into their root disk.
 */
struct img_bootfiles;

/*
 * Resolves (fetching when missing) every input, and adds each to digest.
 * A Debian kernel comes from src, the suite of the image's own root
 * filesystem, or from the host's apt when src is NULL.
 */
int img_bootfiles_prepare(const struct img_spec *spec, const struct img_apt_source *src,
			  struct img_build *b, struct sha256_ctx *digest,
			  struct img_bootfiles **out, struct vmci_err *err);
/* Writes IMG_KERNEL_FILE and IMG_INITRD_FILE into b->dir; facts go into b->manifest. */
int img_bootfiles_write(struct img_bootfiles *bf, struct img_build *b, struct vmci_err *err);
void img_bootfiles_free(struct img_bootfiles *bf);

/* ---- busybox.c ---------------------------------------------------------- */

/*
 * The busybox binary spec asks for, as a static ELF for machine: a host
 * path is checked; a Debian package is fetched for deb_arch and its
 * bin/busybox extracted once into the cache. out receives its path.
 */
int img_busybox_binary(const struct img_spec *spec, const char *deb_arch, unsigned machine,
		       struct img_build *b, char *out, size_t size, struct vmci_err *err);

/*
 * The applets of a busybox binary, one installed path per line
 * ("usr/bin/env"), as `busybox --list-full` prints them. A binary the host
 * cannot run is asked through the host's busybox of the same version.
 */
int img_busybox_applets(const char *busybox, unsigned machine, struct buf *out,
			struct vmci_err *err);

/* True when path is a static ELF64 executable for machine (no PT_INTERP). */
bool img_static_elf(const char *path, unsigned machine);

/* ---- rootdisk.c ---------------------------------------------------------- */

/*
 * A scratch directory for a root filesystem being assembled, under
 * $VMCI_HOME/cache/rootfs. Unlike img_scratch_new's, such directories may
 * hold mounts (debootstrap mounts /proc and /sys): they are unmounted
 * before anything is removed, and abandoned ones are cleaned the same way.
 */
int img_rootfs_scratch(const char *prefix, struct img_scratch *out, struct vmci_err *err);
void img_rootfs_scratch_drop(struct img_scratch *s);

/* Unmounts (lazily) every mount at or below dir, deepest first. */
void img_umount_below(const char *dir);

/*
 * Makes dir into an ext4 filesystem of size bytes at raw_out (sparse),
 * labelled vmci-root, keeping owners, modes and links (mke2fs -d).
 */
int img_rootdisk_make(const char *dir, long long size, const char *raw_out, struct vmci_err *err);

/*
 * Makes nodes (from img_extract_rootfs) device nodes in raw, an ext4
 * filesystem that img_rootdisk_make made from their tree: each placeholder
 * is replaced by a node with its mode, owner and time, through debugfs, so
 * no node ever exists on the host. Fails naming the node debugfs refused.
 */
int img_rootdisk_add_nodes(const char *raw, const struct img_nodes *nodes, struct vmci_err *err);

/* Converts a raw or qcow2 disk into a standalone qcow2 at out (synced, 0644). */
int img_rootdisk_to_qcow2(const char *in, const char *in_format, const char *out,
			  struct img_build *b, struct vmci_err *err);

/*
 * Runs b's recipe's setup commands in a VM booted from the build's own
 * kernel and initramfs (already in b->dir) on disk, the build's qcow2 root
 * disk (through b->setup), keeping their changes. Does nothing when there
 * are none.
 */
int img_rootdisk_setup(struct img_build *b, const char *disk, const char *cmdline,
		       struct vmci_err *err);

/*
 * Runs commands (sh -c, as root, in order) in a VM booted from the build's
 * kernel and initramfs on disk, keeping their changes (through b->setup;
 * without one, fails saying to build with `vmci image build`); network: the
 * VM has outbound access (img_setup_vm.network).
 */
int img_rootdisk_run(struct img_build *b, const char *disk, const char *cmdline,
		     const char *const *commands, size_t n, bool network, struct vmci_err *err);

/* ---- os_release.c ---------------------------------------------------------- */

/*
 * The os-release of the root file system tree at root (etc/os-release,
 * else usr/lib/os-release; a link leading out of root is not followed)
 * into out. Returns 0 or -ENOENT.
 */
int img_os_release_from_tree(const char *root, struct buf *out);

/*
 * Sets the manifest's "os" from an os-release text: id, version_id,
 * codename, pretty_name (each when the text has it).
 */
void img_manifest_set_os(json_t *manifest, const char *text);

/* ---- mirror.c ------------------------------------------------------------ */

/*
 * The mirror apt uses on this host for suite (sources.list, sources.list.d,
 * both formats), else http://deb.debian.org/debian.
 */
void img_host_mirror(const char *suite, char *out, size_t size);

/* The kernel arguments that make the agent switch into a root disk. */
#define IMG_ROOT_CMDLINE "vmci.root=/dev/vda vmci.rootfstype=ext4"

#endif
