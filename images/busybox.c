/*
 * The busybox-ARCH recipe: the smallest image a job runs in.
 *
 * The Debian cloud kernel boots an initramfs in which the agent is /init,
 * busybox provides a shell and the usual tools (one symlink per applet),
 * and lib/modules/vmci holds the virtio drivers the agent loads, in the
 * order listed in lib/modules/vmci/load-order (one file name per line,
 * dependencies first). There is no root disk: the job runs in the
 * initramfs.
 *
 * Inputs, all hashed into the digest: the recipe file, the kernel .deb,
 * the busybox binary, the agent binary and IMG_BUILDER_VERSION (which
 * stands for this code: bump it when the output changes).
 */
#include "images/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* busybox-static installs its binary here (replacing the dynamic one). */
#define HOST_BUSYBOX "/bin/busybox"
#define MODULE_DIR   "lib/modules/vmci"

/* What differs between architectures. */
struct bb_arch {
	const char *arch;
	unsigned elf_machine;
	const char *const *modules; /* what the agent needs; deps are found */
};

/* ext4 is for a root disk: built into the cloud kernel today, resolved anyway. */
static const char *const modules_x86_64[] = {
    "virtio_pci", "virtio_console", "virtio_blk", "virtio_rng", "virtio_net", "ext4", NULL};

static const struct bb_arch arches[] = {
    {"x86_64", 62 /* EM_X86_64 */, modules_x86_64},
};

/* The resolved inputs of one build. */
struct bb_inputs {
	const struct bb_arch *arch;
	char recipe[PATH_MAX];
	char busybox[PATH_MAX];
	char agent[PATH_MAX];
	struct img_deb kernel;
	char recipe_sha[SHA256_HEX_LEN + 1];
	char busybox_sha[SHA256_HEX_LEN + 1];
	char agent_sha[SHA256_HEX_LEN + 1];
};

/*
 * True when path is a statically linked ELF64 executable for machine: an
 * ELF header with e_machine set and no PT_INTERP program header. The agent
 * runs as /init and busybox without a libc in the image: both must be static.
 */
static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
}

static bool static_elf(const char *path, unsigned machine)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	uint8_t h[64];
	bool ok = pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) && !memcmp(h, "\177ELF", 4) &&
		  h[4] == 2 && h[5] == 1 && le(h + 18, 2) == machine;
	uint64_t phoff = ok ? le(h + 32, 8) : 0, phentsize = ok ? le(h + 54, 2) : 0,
		 phnum = ok ? le(h + 56, 2) : 0;
	for (uint64_t i = 0; ok && i < phnum; i++) {
		uint8_t type[4];
		ok = phentsize >= 4 &&
		     pread(fd, type, sizeof(type), (off_t)(phoff + i * phentsize)) == 4 &&
		     le(type, 4) != 3 /* PT_INTERP */;
	}
	close(fd);
	return ok;
}

static int hash_into(struct sha256_ctx *ctx, const char *label, const char *path,
		     char sha[SHA256_HEX_LEN + 1], struct vmci_err *err)
{
	int rc = sha256_file(path, sha, err);
	if (!rc) {
		char line[SHA256_HEX_LEN + 32];
		int n = snprintf(line, sizeof(line), "%s %s\n", label, sha);
		sha256_update(ctx, line, (size_t)n);
	}
	return rc;
}

static int bb_prepare(struct img_build *b, struct vmci_err *err)
{
	struct bb_inputs *in = calloc(1, sizeof(*in));
	if (!in)
		return vmci_err_set(err, ENOMEM, "out of memory");
	b->state = in;
	for (size_t i = 0; i < ARRAY_LEN(arches); i++)
		if (!strcmp(arches[i].arch, b->recipe->arch))
			in->arch = &arches[i];
	if (!in->arch)
		return vmci_err_set(err, EINVAL, "busybox images are not built for %s yet",
				    b->recipe->arch);

	int rc = img_recipe_path(b->recipe->name, in->recipe, sizeof(in->recipe), err);
	if (rc)
		return rc;
	snprintf(in->busybox, sizeof(in->busybox), "%s", HOST_BUSYBOX);
	if (!static_elf(in->busybox, in->arch->elf_machine))
		return vmci_err_set(err, ENOENT,
				    "busybox-static is not installed: %s is missing or not a "
				    "static %s binary (run: make deps)",
				    in->busybox, in->arch->arch);
	rc = img_agent_path(in->arch->arch, in->agent, sizeof(in->agent), err);
	if (rc)
		return rc;
	if (!static_elf(in->agent, in->arch->elf_machine))
		return vmci_err_set(err, ENOEXEC,
				    "the guest agent %s is not a static %s executable (run: make "
				    "build/agent/vmci-agent-%s)",
				    in->agent, in->arch->arch, in->arch->arch);
	const char *deb_arch;
	rc = img_deb_arch(in->arch->arch, &deb_arch, err);
	if (!rc)
		rc = img_deb_fetch_kernel("cloud", deb_arch, &in->kernel, b->progress, b->ctx, err);
	if (rc)
		return rc;

	struct sha256_ctx *ctx = sha256_new();
	if (!ctx)
		return vmci_err_set(err, ENOMEM, "out of memory");
	char line[512];
	int n = snprintf(line, sizeof(line), "builder %s\nkernel %s %s %s\n", IMG_BUILDER_VERSION,
			 in->kernel.package, in->kernel.version, in->kernel.sha256);
	sha256_update(ctx, line, (size_t)n);
	rc = hash_into(ctx, "recipe", in->recipe, in->recipe_sha, err);
	if (!rc)
		rc = hash_into(ctx, "busybox", in->busybox, in->busybox_sha, err);
	if (!rc)
		rc = hash_into(ctx, "agent", in->agent, in->agent_sha, err);
	sha256_finish(ctx, b->digest);
	return rc;
}

/* The skeleton every busybox image has: directories, device, identity files. */
static int add_skeleton(struct img_initramfs *ir, const char *arch, struct vmci_err *err)
{
	static const struct {
		const char *path;
		mode_t mode;
	} dirs[] = {
	    {"bin", 0755}, {"sbin", 0755}, {"usr/bin", 0755},  {"usr/sbin", 0755}, {"proc", 0555},
	    {"sys", 0555}, {"dev", 0755},  {"tmp", 01777},     {"run", 0755},	   {"root", 0700},
	    {"etc", 0755}, {"work", 0755}, {MODULE_DIR, 0755},
	};
	int rc = 0;
	for (size_t i = 0; !rc && i < ARRAY_LEN(dirs); i++)
		rc = img_initramfs_add_dir(ir, dirs[i].path, dirs[i].mode, err);
	if (rc)
		return rc;
	/* The kernel opens /dev/console for /init's stdio before devtmpfs is mounted. */
	rc = img_initramfs_add_chardev(ir, "dev/console", 0600, 5, 1, err);

	char os_release[256];
	int n = snprintf(os_release, sizeof(os_release),
			 "PRETTY_NAME=\"vmci busybox (%s)\"\nNAME=\"vmci busybox\"\nID=busybox\n",
			 arch);
	static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\n";
	static const char group[] = "root:x:0:\n";
	if (!rc)
		rc = img_initramfs_add_data(ir, "etc/os-release", 0644, os_release, (size_t)n, err);
	if (!rc)
		rc =
		    img_initramfs_add_data(ir, "etc/passwd", 0644, passwd, sizeof(passwd) - 1, err);
	if (!rc)
		rc = img_initramfs_add_data(ir, "etc/group", 0644, group, sizeof(group) - 1, err);
	return rc;
}

/* bin/busybox and a symlink to it for every applet it lists ("usr/bin/env"). */
static int add_busybox(struct img_initramfs *ir, const char *busybox, struct vmci_err *err)
{
	int rc = img_initramfs_add_file(ir, "bin/busybox", 0755, busybox, err);
	if (rc)
		return rc;
	struct buf list = {0};
	char *argv[] = {(char *)busybox, "--list-full", NULL};
	rc = run_command(argv, &list, err);
	char *save = NULL;
	for (char *line = rc ? NULL : strtok_r((char *)buf_cstr(&list), "\n", &save); line && !rc;
	     line = strtok_r(NULL, "\n", &save)) {
		/* Whatever else claims the path (/init is the agent) wins. */
		if (line[0] && !img_initramfs_has(ir, line))
			rc = img_initramfs_add_symlink(ir, line, "/bin/busybox", err);
	}
	buf_free(&list);
	return rc;
}

/* The modules in load order, and the list that says so. */
static int add_modules(struct img_initramfs *ir, const struct img_kmods *mods, json_t *names,
		       struct vmci_err *err)
{
	struct buf order = {0};
	int rc = 0;
	for (size_t i = 0; !rc && i < img_kmods_count(mods); i++) {
		const struct img_kmod *m = img_kmods_at(mods, i);
		char path[PATH_MAX];
		fs_path(path, sizeof(path), "%s/%s", MODULE_DIR, m->file);
		rc = img_initramfs_add_data(ir, path, 0644, m->data, m->len, err);
		if (!rc && buf_appendf(&order, "%s\n", m->file))
			rc = vmci_err_set(err, ENOMEM, "out of memory");
		json_array_append_new(names, json_string(m->name));
	}
	if (!rc)
		rc = img_initramfs_add_data(ir, MODULE_DIR "/load-order", 0644, order.data,
					    order.len, err);
	buf_free(&order);
	return rc;
}

static int bb_build(struct img_build *b, struct vmci_err *err)
{
	struct bb_inputs *in = b->state;
	char vmlinuz[PATH_MAX], initrd[PATH_MAX], release[128];
	fs_path(vmlinuz, sizeof(vmlinuz), "%s/%s", b->dir, IMG_KERNEL_FILE);
	fs_path(initrd, sizeof(initrd), "%s/%s", b->dir, IMG_INITRD_FILE);

	img_progress(b, "extracting kernel", 0, 0);
	struct img_kmods *mods = img_kmods_new(in->arch->modules);
	struct img_initramfs *ir = img_initramfs_new();
	json_t *modules = json_array();
	int rc = mods && ir && modules ? 0 : vmci_err_set(err, ENOMEM, "out of memory");
	if (!rc)
		rc = img_deb_extract_kernel(in->kernel.path, vmlinuz, mods, release,
					    sizeof(release), err);

	if (!rc) {
		img_progress(b, "writing initramfs", 0, 0);
		rc = add_skeleton(ir, in->arch->arch, err);
	}
	if (!rc)
		rc = img_initramfs_add_file(ir, "init", 0755, in->agent, err);
	if (!rc)
		rc = add_busybox(ir, in->busybox, err);
	if (!rc)
		rc = add_modules(ir, mods, modules, err);
	if (!rc)
		rc = img_initramfs_write(ir, initrd, err);

	if (!rc) {
		json_t *k = json_pack("{s:s, s:s, s:s, s:s, s:O}", "package", in->kernel.package,
				      "version", in->kernel.version, "sha256", in->kernel.sha256,
				      "release", release, "modules", modules);
		json_t *inputs = json_pack("{s:s, s:s, s:s}", "recipe", in->recipe_sha, "busybox",
					   in->busybox_sha, "agent", in->agent_sha);
		json_object_set_new(b->manifest, "kernel", k);
		json_object_set_new(b->manifest, "inputs", inputs);
	}
	json_decref(modules);
	img_initramfs_free(ir);
	img_kmods_free(mods);
	return rc;
}

static void bb_finish(struct img_build *b)
{
	free(b->state);
	b->state = NULL;
}

const struct img_recipe img_recipe_busybox_x86_64 = {
    .name = "busybox-x86_64",
    .arch = "x86_64",
    .prepare = bb_prepare,
    .build = bb_build,
    .finish = bb_finish,
};
