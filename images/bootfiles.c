/*
 * The kernel and initramfs every vmci image boots with.
 *
 * The kernel is a Debian linux-image package's (or a file the recipe
 * names). The initramfs holds the agent as /init, busybox with one symlink
 * per applet, and in lib/modules/vmci the kernel modules the agent loads,
 * in the order listed in lib/modules/vmci/load-order (one file name per
 * line, dependencies first). An image without a root disk runs its jobs
 * right there; one with a disk is switched into by the agent
 * (vmci.root=/dev/vda on the kernel command line).
 *
 * Inputs, each added to the digest: the kernel (package and version, and
 * the .deb's sha256, or the file's), the busybox binary and the agent.
 */
#include "images/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODULE_DIR "lib/modules/vmci"

/* What differs between architectures. */
struct bf_arch {
	const char *arch;
	unsigned elf_machine;
};

static const struct bf_arch arches[] = {
    {"x86_64", 62 /* EM_X86_64 */},
    {"aarch64", 183 /* EM_AARCH64 */},
};

/* The resolved inputs of one image's boot files. */
struct img_bootfiles {
	const struct img_spec *spec;
	const struct bf_arch *arch;
	const char *deb_arch;
	char busybox[PATH_MAX];
	char agent[PATH_MAX];
	struct img_deb kernel; /* when the kernel is a Debian package */
	char kernel_sha[SHA256_HEX_LEN + 1];
	char busybox_sha[SHA256_HEX_LEN + 1];
	char agent_sha[SHA256_HEX_LEN + 1];
};

int img_bootfiles_prepare(const struct img_spec *spec, const struct img_apt_source *src,
			  struct img_build *b, struct sha256_ctx *digest,
			  struct img_bootfiles **out, struct vmci_err *err)
{
	struct img_bootfiles *bf = calloc(1, sizeof(*bf));
	if (!bf)
		return vmci_err_set(err, ENOMEM, "out of memory");
	*out = bf;
	bf->spec = spec;
	for (size_t i = 0; i < ARRAY_LEN(arches); i++)
		if (!strcmp(arches[i].arch, spec->arch))
			bf->arch = &arches[i];
	if (!bf->arch)
		return vmci_err_set(err, EINVAL,
				    "images are not built for %s yet (known: x86_64, "
				    "aarch64)",
				    spec->arch);
	int rc = img_deb_arch(spec->arch, &bf->deb_arch, err);
	if (!rc)
		rc = img_busybox_binary(spec, bf->deb_arch, bf->arch->elf_machine, b, bf->busybox,
					sizeof(bf->busybox), err);
	if (!rc)
		rc = img_agent_path(spec->arch, bf->agent, sizeof(bf->agent), err);
	if (rc)
		return rc;
	if (!img_static_elf(bf->agent, bf->arch->elf_machine))
		return vmci_err_set(err, ENOEXEC,
				    "the guest agent %s is not a static %s executable (run: make "
				    "build/agent/vmci-agent-%s)",
				    bf->agent, spec->arch, spec->arch);
	if (spec->kernel_flavour[0]) {
		rc = img_deb_fetch_kernel(spec->kernel_flavour, bf->deb_arch, src, &bf->kernel,
					  b->progress, b->ctx, err);
		if (rc)
			return rc;
		char line[256];
		snprintf(line, sizeof(line), "%s %s", bf->kernel.package, bf->kernel.version);
		img_digest_line(digest, "kernel", line);
		snprintf(bf->kernel_sha, sizeof(bf->kernel_sha), "%s", bf->kernel.sha256);
	} else {
		rc = sha256_file(spec->kernel_file, bf->kernel_sha, err);
		if (rc) {
			vmci_err_wrap(err, "cannot read the kernel file of recipe %s", spec->file);
			return rc;
		}
	}
	img_digest_line(digest, "kernel-sha256", bf->kernel_sha);
	rc = sha256_file(bf->busybox, bf->busybox_sha, err);
	if (!rc)
		rc = sha256_file(bf->agent, bf->agent_sha, err);
	if (!rc) {
		img_digest_line(digest, "busybox", bf->busybox_sha);
		img_digest_line(digest, "agent", bf->agent_sha);
	}
	return rc;
}

void img_bootfiles_free(struct img_bootfiles *bf)
{
	free(bf);
}

/* The skeleton every initramfs has: directories, device, identity files. */
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
static int add_busybox(struct img_initramfs *ir, const struct img_bootfiles *bf,
		       struct vmci_err *err)
{
	int rc = img_initramfs_add_file(ir, "bin/busybox", 0755, bf->busybox, err);
	if (rc)
		return rc;
	struct buf list = {0};
	rc = img_busybox_applets(bf->busybox, bf->arch->elf_machine, &list, err);
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
static int add_modules(struct img_initramfs *ir, const struct img_kmods *mods, struct vmci_err *err)
{
	struct buf order = {0};
	int rc = 0;
	for (size_t i = 0; mods && !rc && i < img_kmods_count(mods); i++) {
		const struct img_kmod *m = img_kmods_at(mods, i);
		char path[PATH_MAX];
		fs_path(path, sizeof(path), "%s/%s", MODULE_DIR, m->file);
		rc = img_initramfs_add_data(ir, path, 0644, m->data, m->len, err);
		if (!rc && buf_appendf(&order, "%s\n", m->file))
			rc = vmci_err_set(err, ENOMEM, "out of memory");
	}
	if (!rc)
		rc = img_initramfs_add_data(ir, MODULE_DIR "/load-order", 0644,
					    order.data ? (const void *)order.data : "", order.len,
					    err);
	buf_free(&order);
	return rc;
}

/* The kernel into vmlinuz; the modules the recipe wants into *mods (none for a file). */
static int write_kernel(struct img_bootfiles *bf, const char *vmlinuz, struct img_kmods **mods,
			json_t *modules, json_t **kernel, struct vmci_err *err)
{
	const struct img_spec *s = bf->spec;
	if (!s->kernel_flavour[0]) {
		*kernel = json_pack("{s:s, s:s}", "file", s->kernel_file, "sha256", bf->kernel_sha);
		return fs_copy_file(s->kernel_file, vmlinuz, 0644, true, err);
	}
	const char **wanted = calloc(s->modules.n + 1, sizeof(*wanted));
	if (!wanted)
		return vmci_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < s->modules.n; i++)
		wanted[i] = s->modules.v[i];
	*mods = img_kmods_new(wanted);
	free(wanted);
	if (!*mods)
		return vmci_err_set(err, ENOMEM, "out of memory");
	char release[128];
	int rc =
	    img_deb_extract_kernel(bf->kernel.path, vmlinuz, *mods, release, sizeof(release), err);
	for (size_t i = 0; !rc && i < img_kmods_count(*mods); i++)
		json_array_append_new(modules, json_string(img_kmods_at(*mods, i)->name));
	if (!rc)
		*kernel = json_pack("{s:s, s:s, s:s, s:s, s:O}", "package", bf->kernel.package,
				    "version", bf->kernel.version, "sha256", bf->kernel.sha256,
				    "release", release, "modules", modules);
	return rc;
}

int img_bootfiles_write(struct img_bootfiles *bf, struct img_build *b, struct vmci_err *err)
{
	char vmlinuz[PATH_MAX], initrd[PATH_MAX];
	if (fs_path(vmlinuz, sizeof(vmlinuz), "%s/%s", b->dir, IMG_KERNEL_FILE) ||
	    fs_path(initrd, sizeof(initrd), "%s/%s", b->dir, IMG_INITRD_FILE))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", b->dir);

	img_progress(b, "extracting kernel", 0, 0);
	struct img_kmods *mods = NULL;
	struct img_initramfs *ir = img_initramfs_new();
	json_t *modules = json_array(), *kernel = NULL;
	int rc = ir && modules ? 0 : vmci_err_set(err, ENOMEM, "out of memory");
	if (!rc)
		rc = write_kernel(bf, vmlinuz, &mods, modules, &kernel, err);
	if (!rc) {
		img_progress(b, "writing initramfs", 0, 0);
		rc = add_skeleton(ir, bf->spec->arch, err);
	}
	if (!rc)
		rc = img_initramfs_add_file(ir, "init", 0755, bf->agent, err);
	if (!rc)
		rc = add_busybox(ir, bf, err);
	if (!rc)
		rc = add_modules(ir, mods, err);
	if (!rc)
		rc = img_initramfs_write(ir, initrd, err);
	if (!rc) {
		json_t *inputs = json_pack("{s:s, s:s, s:s}", "recipe", bf->spec->sha256, "busybox",
					   bf->busybox_sha, "agent", bf->agent_sha);
		json_object_set(b->manifest, "kernel", kernel);
		json_object_set_new(b->manifest, "inputs", inputs);
	}
	json_decref(kernel);
	json_decref(modules);
	img_initramfs_free(ir);
	img_kmods_free(mods);
	return rc;
}
