/* A VM booted from a golden image, with a private run directory. */
#include "runner/run_dir.h"
#include "runner/build.h"
#include "runner/guest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Releases what guest_prepare made, and g itself. */
static void guest_discard(struct runner_guest *g)
{
	if (g->disk[0])
		img_clone_release(g->disk, NULL);
	runner_remove_run_dir(g->run_dir, g->run_dir_lock);
	free(g);
}

/*
 * Everything of a guest but its VM: the image (built if needed), a run
 * directory and a clone of the image's disk in it, and the spec to start
 * the VM with (pointing into *g).
 */
static int guest_prepare(const char *image, const struct runner_guest_opts *opts, const char *base,
			 struct runner_guest **out, struct vm_spec *spec, struct vmci_err *err)
{
	*out = NULL;
	struct runner_guest *g = calloc(1, sizeof(*g));
	if (!g)
		return vmci_err_set(err, ENOMEM, "out of memory");
	int rc = runner_image_ensure(image, opts ? opts->progress : NULL,
				     opts ? opts->progress_ctx : NULL, &g->image, err);
	if (rc) {
		free(g);
		return rc;
	}
	enum vm_arch arch;
	if (vm_arch_parse(g->image.arch, &arch)) {
		rc = vmci_err_set(err, EINVAL, "image '%s' has an unknown architecture '%s'", image,
				  g->image.arch);
		free(g);
		return rc;
	}
	rc = runner_make_run_dir("vmci-vm", g->run_dir, sizeof(g->run_dir), &g->run_dir_lock, err);
	if (rc) {
		free(g);
		return rc;
	}
	/* The VM writes only to its own clone: the golden image stays untouched. */
	char disk[PATH_MAX];
	if (fs_path(disk, sizeof(disk), "%s/disk.qcow2", g->run_dir) ||
	    (rc = base ? img_clone_over(&g->image, base, disk, err)
		       : img_clone(&g->image, disk, err)) != 0) {
		rc = rc ? rc : vmci_err_set(err, ENAMETOOLONG, "run directory path too long");
		guest_discard(g);
		return rc;
	}
	snprintf(g->disk, sizeof(g->disk), "%s", disk);
	snprintf(g->base, sizeof(g->base), "%s", base ? base : "");
	*spec = (struct vm_spec){
	    .arch = arch,
	    .accel = opts ? opts->accel : VM_ACCEL_AUTO,
	    .cpus = opts && opts->cpus ? opts->cpus : 1,
	    .memory_mb = opts && opts->memory_mb ? opts->memory_mb : 256,
	    .kernel = g->image.kernel,
	    .initrd = g->image.initrd,
	    .cmdline = g->image.cmdline,
	    .disk = g->disk,
	    .disk_disposable = true, /* released with the guest */
	    .run_dir = g->run_dir,
	    .network = opts ? opts->network : VM_NET_NONE,
	};
	*out = g;
	return 0;
}

int runner_guest_boot(const char *image, const struct runner_guest_opts *opts,
		      struct runner_guest **out, struct vmci_err *err)
{
	struct runner_guest *g;
	struct vm_spec spec;
	int rc = guest_prepare(image, opts, NULL, &g, &spec, err);
	if (rc)
		return rc;
	rc = vm_start(&spec, &g->vm, err);
	if (rc) {
		vmci_err_wrap(err, "cannot boot image '%s'", image);
		guest_discard(g);
		return rc;
	}
	*out = g;
	return 0;
}

int runner_guest_listen(const char *image, const struct runner_guest_opts *opts,
			struct runner_guest **out, struct vm_migrate_addr *addr,
			struct vmci_err *err)
{
	return runner_guest_listen_over(image, opts, NULL, false, NULL, out, addr, err);
}

int runner_guest_disk_path(const struct runner_guest *g, unsigned target, char *out, size_t size)
{
	return fs_path(out, size, "%s/disk-%u.qcow2", g->run_dir, target);
}

int runner_guest_listen_over(const char *image, const struct runner_guest_opts *opts,
			     const char *base, bool mem_backend,
			     const char *const disks[VM_DISK_TARGETS], struct runner_guest **out,
			     struct vm_migrate_addr *addr, struct vmci_err *err)
{
	struct runner_guest *g;
	struct vm_spec spec;
	int rc = guest_prepare(image, opts, base, &g, &spec, err);
	if (rc)
		return rc;
	spec.mem_backend = mem_backend;
	char overlays[VM_DISK_TARGETS][PATH_MAX];
	for (unsigned t = 0; t < VM_DISK_TARGETS && disks && !rc; t++) {
		if (!disks[t])
			continue;
		if (runner_guest_disk_path(g, t, overlays[t], sizeof(overlays[t])))
			rc = vmci_err_set(err, ENAMETOOLONG, "run directory path too long");
		else
			rc = img_clone_file(disks[t], overlays[t], 0, err);
		spec.migrate_disks[t] = overlays[t];
	}
	if (!rc)
		rc = vm_migrate_listen(&spec, &g->vm, addr, err);
	if (rc) {
		vmci_err_wrap(err, "cannot prepare to receive a VM of image '%s'", image);
		guest_discard(g);
		return rc;
	}
	*out = g;
	return 0;
}

void runner_guest_destroy(struct runner_guest *g, int timeout_ms)
{
	if (!g)
		return;
	vm_stop(g->vm, timeout_ms);
	guest_discard(g);
}
