/*
 * images/internal.h: what the files of images/ share with each other.
 * Nothing outside images/ (and its unit tests) includes this header.
 *
 *   store.c      the store: layout, scratch directories, locks, publish, names
 *   agent_path.c files shipped beside the vmci executable (agents, recipes)
 *   deb.c        Debian packages: resolve, download, read, extract a kernel
 *   kmod.c       kernel modules: .modinfo, dependencies, load order
 *   initramfs.c  a newc cpio + gzip initramfs, written deterministically
 *   busybox.c    the busybox-ARCH recipe
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
	json_t *manifest; /* object, owned by store.c */
	void *state;	  /* the recipe's resolved inputs, freed by its finish */
};

struct img_recipe {
	const char *name;
	const char *arch;
	/* Resolves (fetching when missing) every input and sets b->digest. */
	int (*prepare)(struct img_build *b, struct vmci_err *err);
	/* Writes IMG_KERNEL_FILE and IMG_INITRD_FILE (durably) into b->dir. */
	int (*build)(struct img_build *b, struct vmci_err *err);
	/* Frees b->state; called once after prepare, whatever happened. */
	void (*finish)(struct img_build *b);
};

extern const struct img_recipe img_recipe_busybox_x86_64;

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
 * The recipe file of an image: $VMCI_RECIPES_DIR/NAME.yml, else
 * images/recipes/NAME.yml in the source tree the executable was built in
 * (searched upward from its directory), else <exe>/../share/vmci/recipes.
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
 * The Debian kernel of a flavour ("cloud") for deb_arch: resolves the
 * metapackage linux-image-FLAVOUR-ARCH to its concrete package (apt's answer
 * is kept for a day), downloads it once into the cache, and hashes it.
 */
int img_deb_fetch_kernel(const char *flavour, const char *deb_arch, struct img_deb *out,
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

#endif
