/*
 * Ready-state templates of golden images (the layout is in runner.h), and
 * VMs started from them.
 *
 * Making a template: boot a VM on a fresh overlay of the image, with its
 * memory in a shared file for a mapped template, wait for the agent, and
 * save the state (vm_state_save). The overlay is kept as the template's
 * disk, so a guest that wrote to its disk while booting (a journal, a
 * mount count) finds the same disk after a restore. Every VM started from
 * the template gets its own overlay of that disk.
 */
#include "runner/run_dir.h"
#include "runner/build.h"
#include "runner/template.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *runner_template_kind_name(enum runner_template_kind kind)
{
	return kind == RUNNER_TEMPLATE_PLAIN	  ? "plain"
	       : kind == RUNNER_TEMPLATE_SNAPSHOT ? "snapshot"
						  : "mapped";
}

int runner_templates_default(char *out, size_t size)
{
	return fs_path(out, size, "%s/templates", vmci_home());
}

/* What a template and the VMs restored from it share. */
struct shape {
	enum vm_arch arch;
	enum vm_accel accel;
	int cpus, memory_mb;
	enum vm_network network; /* the NIC is part of the saved device state */
};

static int shape_of(const struct img_boot *img, const struct runner_guest_opts *opts,
		    struct shape *s, struct vmci_err *err)
{
	if (vm_arch_parse(img->arch, &s->arch))
		return vmci_err_set(err, EINVAL, "image '%s' has an unknown architecture '%s'",
				    img->name, img->arch);
	/* A template saved under TCG does not load under KVM: the accelerator is part of it. */
	s->accel = vm_accel_resolve(opts ? opts->accel : VM_ACCEL_AUTO, s->arch, img->kernel,
				    img->initrd, NULL, 0);
	s->cpus = opts && opts->cpus > 0 ? opts->cpus : 1;
	s->memory_mb = opts && opts->memory_mb > 0 ? opts->memory_mb : 256;
	s->network = opts ? opts->network : VM_NET_NONE;
	return 0;
}

static int template_dir(const struct img_boot *img, const struct shape *s,
			enum runner_template_kind kind, const char *templates, char *out,
			size_t size, struct vmci_err *err)
{
	/* The RAM as QEMU gets it (vm_memory_kb): a state is tied to that size. */
	if (fs_path(out, size, "%s/%s/%s-%s-%ldk-%dc-net-%s-%s", templates, img->digest,
		    vm_arch_name(s->arch), s->accel == VM_ACCEL_KVM ? "kvm" : "tcg",
		    vm_memory_kb(s->accel, s->memory_mb), s->cpus, vm_network_name(s->network),
		    runner_template_kind_name(kind)))
		return vmci_err_set(err, ENAMETOOLONG, "template path too long under %s",
				    templates);
	return 0;
}

static bool template_complete(const char *dir, enum runner_template_kind kind)
{
	char path[PATH_MAX];
	if (fs_path(path, sizeof(path), "%s/disk.qcow2", dir) || !fs_exists(path))
		return false;
	if (kind == RUNNER_TEMPLATE_SNAPSHOT)
		return true; /* the directory is renamed into place whole */
	if (fs_path(path, sizeof(path), "%s/state", dir) || !fs_exists(path))
		return false;
	return kind == RUNNER_TEMPLATE_PLAIN ||
	       (!fs_path(path, sizeof(path), "%s/ram", dir) && fs_exists(path));
}

/* Removes building directories (".tmp-<pid>-...") whose builder died. */
static void remove_stale_builds(const char *parent)
{
	DIR *d = opendir(parent);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		int pid;
		if (sscanf(de->d_name, ".tmp-%d-", &pid) != 1)
			continue;
		if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM))
			continue;
		char path[PATH_MAX];
		if (!fs_path(path, sizeof(path), "%s/%s", parent, de->d_name))
			fs_rm_rf(path, NULL);
	}
	closedir(d);
}

/* Boots a VM in build, waits for its agent, saves its state there. */
static int template_make(const struct img_boot *img, const struct shape *s,
			 enum runner_template_kind kind, const char *build, struct vmci_err *err)
{
	char disk[PATH_MAX], ram[PATH_MAX], state[PATH_MAX], run_dir[PATH_MAX];
	if (fs_path(disk, sizeof(disk), "%s/disk.qcow2", build) ||
	    fs_path(ram, sizeof(ram), "%s/ram", build) ||
	    fs_path(state, sizeof(state), "%s/state", build))
		return vmci_err_set(err, ENAMETOOLONG, "template path too long: %s", build);
	/* Not registered with the store: the template outlives the process that made it. */
	int rc = img_clone_file(img->disk[0] ? img->disk : NULL, disk, IMG_SCRATCH_DISK_MB, err);
	if (rc)
		return rc;
	int lock;
	if ((rc = runner_make_run_dir("vmci-vm", run_dir, sizeof(run_dir), &lock, err)))
		return rc;
	struct vm_spec spec = {
	    .arch = s->arch,
	    .accel = s->accel,
	    .cpus = s->cpus,
	    .memory_mb = s->memory_mb,
	    .kernel = img->kernel,
	    .initrd = img->initrd,
	    .cmdline = img->cmdline,
	    .disk = disk,
	    .run_dir = run_dir,
	    .mem_path = kind == RUNNER_TEMPLATE_MAPPED ? ram : NULL,
	    .mem_shared = true,
	    .network = s->network,
	};
	struct vm *vm;
	rc = vm_start(&spec, &vm, err);
	if (!rc) {
		rc = kind == RUNNER_TEMPLATE_SNAPSHOT
			 ? vm_snapshot_save(vm, RUNNER_TEMPLATE_SNAPSHOT_NAME, err)
			 : vm_state_save(vm, state, err);
		vm_stop(vm, VMCI_STOP_FLUSH_TIMEOUT_MS);
	}
	runner_remove_run_dir(run_dir, lock);
	return rc;
}

int runner_template_ensure(const char *image, const struct runner_guest_opts *opts,
			   const char *templates, enum runner_template_kind kind, char *dir,
			   size_t size, struct vmci_err *err)
{
	struct img_boot img;
	struct shape s;
	int rc = runner_image_ensure(image, opts ? opts->progress : NULL,
				     opts ? opts->progress_ctx : NULL, &img, err);
	if (!rc)
		rc = shape_of(&img, opts, &s, err);
	if (!rc)
		rc = template_dir(&img, &s, kind, templates, dir, size, err);
	if (rc || template_complete(dir, kind))
		return rc;

	char parent[PATH_MAX], build[PATH_MAX];
	if (fs_path(parent, sizeof(parent), "%s/%s", templates, img.digest) ||
	    fs_path(build, sizeof(build), "%s/.tmp-%d-XXXXXX", parent, (int)getpid()))
		return vmci_err_set(err, ENAMETOOLONG, "template path too long under %s",
				    templates);
	if ((rc = fs_mkdir_p(parent, 0755, err)))
		return rc;
	remove_stale_builds(parent);
	if (!mkdtemp(build))
		return vmci_err_errno(err, errno, "cannot create a directory in %s", parent);
	int64_t t0 = clock_ms();
	rc = template_make(&img, &s, kind, build, err);
	if (rc) {
		vmci_err_wrap(err, "cannot make the %s template of '%s'",
			      runner_template_kind_name(kind), image);
		fs_rm_rf(build, NULL);
		return rc;
	}
	/*
	 * Its files were flushed as its VM quit; the rename reaches the disk
	 * too. Another process may have made it meanwhile: theirs is as good
	 * as ours.
	 */
	int moved = chmod(build, 0755) != 0 ? -errno : fs_rename_durable(build, dir, NULL);
	if (moved) {
		fs_rm_rf(build, NULL);
		if (!template_complete(dir, kind))
			return vmci_err_errno(err, -moved, "cannot move the new template to %s",
					      dir);
	}
	log_info("made the %s template of '%s' in %lld ms: %s", runner_template_kind_name(kind),
		 image, (long long)(clock_ms() - t0), dir);
	return 0;
}

/*
 * Starts a VM from the template in dir. *loaded: whether QEMU was started
 * on it (a failure then says the template is bad; one before, as a disk
 * too full for the VM's clone, does not).
 */
static int restore_from(const char *dir, const struct shape *s, enum runner_template_kind kind,
			struct runner_guest *g, bool *loaded, struct vmci_err *err)
{
	*loaded = false;
	char tdisk[PATH_MAX], ram[PATH_MAX], state[PATH_MAX];
	if (fs_path(tdisk, sizeof(tdisk), "%s/disk.qcow2", dir) ||
	    fs_path(ram, sizeof(ram), "%s/ram", dir) ||
	    fs_path(state, sizeof(state), "%s/state", dir) ||
	    fs_path(g->disk, sizeof(g->disk), "%s/disk.qcow2", g->run_dir))
		return vmci_err_set(err, ENAMETOOLONG, "template path too long: %s", dir);
	/* Registered as a clone of the image, so gc keeps the image while the VM lives. */
	bool snapshot = kind == RUNNER_TEMPLATE_SNAPSHOT;
	int rc = snapshot ? img_clone_copy(&g->image, tdisk, g->disk, err)
			  : img_clone_over(&g->image, tdisk, g->disk, err);
	if (rc)
		return rc;
	/* A copy stands on the image's disk, as a booted VM's overlay does. */
	snprintf(g->base, sizeof(g->base), "%s", snapshot ? "" : tdisk);
	struct vm_spec spec = {
	    .arch = s->arch,
	    .accel = s->accel,
	    .cpus = s->cpus,
	    .memory_mb = s->memory_mb,
	    .kernel = g->image.kernel,
	    .initrd = g->image.initrd,
	    .cmdline = g->image.cmdline,
	    .disk = g->disk,
	    .disk_disposable = true, /* released with the guest */
	    .run_dir = g->run_dir,
	    .mem_path = kind == RUNNER_TEMPLATE_MAPPED ? ram : NULL,
	    .incoming = snapshot ? NULL : state,
	    .loadvm = snapshot ? RUNNER_TEMPLATE_SNAPSHOT_NAME : NULL,
	    .network = s->network,
	};
	*loaded = true;
	rc = vm_start(&spec, &g->vm, err);
	if (rc)
		img_clone_release(g->disk, NULL);
	return rc;
}

int runner_guest_restore(const char *image, const struct runner_guest_opts *opts,
			 const char *templates, enum runner_template_kind kind,
			 struct runner_guest **out, struct vmci_err *err)
{
	*out = NULL;
	char dir[PATH_MAX];
	int rc = runner_template_ensure(image, opts, templates, kind, dir, sizeof(dir), err);
	if (rc)
		return rc;
	struct runner_guest *g = calloc(1, sizeof(*g));
	if (!g)
		return vmci_err_set(err, ENOMEM, "out of memory");
	struct shape s;
	rc = img_find(image, &g->image, err);
	if (!rc)
		rc = shape_of(&g->image, opts, &s, err);
	if (!rc)
		rc = runner_make_run_dir("vmci-vm", g->run_dir, sizeof(g->run_dir),
					 &g->run_dir_lock, err);
	if (rc) {
		free(g);
		return rc;
	}
	bool loaded;
	rc = restore_from(dir, &s, kind, g, &loaded, err);
	if (rc && loaded) {
		/* Made by another QEMU, or damaged: make it again, once. */
		log_warn("cannot start '%s' from its template (%s); making the template again",
			 image, err->msg);
		fs_rm_rf(dir, NULL);
		rc = runner_template_ensure(image, opts, templates, kind, dir, sizeof(dir), err);
		if (!rc)
			rc = restore_from(dir, &s, kind, g, &loaded, err);
	}
	if (rc) {
		vmci_err_wrap(err, "cannot start image '%s' from its %s template", image,
			      runner_template_kind_name(kind));
		runner_remove_run_dir(g->run_dir, g->run_dir_lock);
		free(g);
		return rc;
	}
	*out = g;
	return 0;
}
