/*
 * One image in detail (img_inspect): its manifest's facts and text, its
 * files with their disk headers, the images its disks are backed by, and
 * its live clones. Plain data: how it is shown is the front end's.
 */
#include "images/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Manifests are small; anything bigger is not one. */
#define MANIFEST_MAX_BYTES (1u << 20)

static void copy_string(char *out, size_t size, const json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));
	snprintf(out, size, "%s", v ? v : "");
}

/* The manifest of the image directory dir: its text, and the facts its build wrote. */
static int read_manifest(const char *dir, struct img_manifest *m, struct vmci_err *err)
{
	char path[PATH_MAX];
	if (fs_path(path, sizeof(path), "%s/%s", dir, IMG_MANIFEST_FILE))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", dir);
	struct buf text = {0};
	int rc = fs_read_file(path, MANIFEST_MAX_BYTES, &text, err);
	json_error_t jerr;
	json_t *j = rc ? NULL : json_loadb((const char *)text.data, text.len, 0, &jerr);
	if (!rc && !j)
		rc = vmci_err_set(err, EINVAL, "cannot read %s: %s", path, jerr.text);
	if (!rc && !(m->text = strdup(buf_cstr(&text))))
		rc = vmci_err_set(err, ENOMEM, "out of memory");
	buf_free(&text);
	if (rc) {
		json_decref(j);
		return rc;
	}
	copy_string(m->name, sizeof(m->name), j, "name");
	copy_string(m->arch, sizeof(m->arch), j, "arch");
	copy_string(m->created, sizeof(m->created), j, "created");
	copy_string(m->builder, sizeof(m->builder), j, "builder");
	copy_string(m->cmdline, sizeof(m->cmdline), j, "cmdline");
	copy_string(m->kernel_file, sizeof(m->kernel_file), j, "kernel_file");
	copy_string(m->initrd_file, sizeof(m->initrd_file), j, "initrd_file");
	copy_string(m->disk_file, sizeof(m->disk_file), j, "disk_file");
	m->disk_size = (long long)json_integer_value(json_object_get(j, "disk_size"));
	const json_t *k = json_object_get(j, "kernel");
	copy_string(m->kernel.package, sizeof(m->kernel.package), k, "package");
	copy_string(m->kernel.version, sizeof(m->kernel.version), k, "version");
	copy_string(m->kernel.release, sizeof(m->kernel.release), k, "release");
	copy_string(m->kernel.file, sizeof(m->kernel.file), k, "file");
	copy_string(m->kernel.sha256, sizeof(m->kernel.sha256), k, "sha256");
	json_decref(j);
	return 0;
}

/* Every file of the image's directory, with the header of each disk. */
static int read_files(struct img_details *d, struct vmci_err *err)
{
	DIR *dir = opendir(d->dir);
	struct dirent *de;
	int rc = 0;
	while (!rc && dir && (de = readdir(dir)) != NULL) {
		char path[PATH_MAX];
		struct stat st;
		if (de->d_name[0] == '.' ||
		    fs_path(path, sizeof(path), "%s/%s", d->dir, de->d_name) ||
		    lstat(path, &st) != 0)
			continue;
		struct img_file_info *files = realloc(d->files, (d->n_files + 1) * sizeof(*files));
		if (!files) {
			rc = vmci_err_set(err, ENOMEM, "out of memory");
			break;
		}
		d->files = files;
		struct img_file_info *f = memset(&files[d->n_files++], 0, sizeof(*f));
		snprintf(f->name, sizeof(f->name), "%s", de->d_name);
		snprintf(f->path, sizeof(f->path), "%s", path);
		f->size = (long long)st.st_size;
		f->disk_usage = (long long)st.st_blocks * 512;
		struct img_disk disk;
		if (img_is_disk_file(de->d_name) && img_disk_probe(path, &disk, NULL) == 0) {
			f->disk = true;
			snprintf(f->format, sizeof(f->format), "%s", disk.format);
			f->virtual_size = disk.virtual_size;
			snprintf(f->backing, sizeof(f->backing), "%s", disk.backing);
		}
	}
	if (dir)
		closedir(dir);
	return rc;
}

/* The names that point at digest, NULL-terminated in *out. */
static int names_of(const char *digest, char ***out, struct vmci_err *err)
{
	size_t n = 0;
	char **names = calloc(1, sizeof(*names));
	char dir[PATH_MAX];
	DIR *d = !names || img_store_dir(dir, sizeof(dir), "names", NULL) ? NULL : opendir(dir);
	struct dirent *de;
	bool oom = !names;
	while (!oom && d && (de = readdir(d)) != NULL) {
		char other[SHA256_HEX_LEN + 1];
		if (img_name_check(de->d_name, NULL) || strstr(de->d_name, ".tmp.") ||
		    img_name_read(de->d_name, other, NULL) || strcmp(other, digest))
			continue;
		char **grown = realloc(names, (n + 2) * sizeof(*names));
		if (grown)
			names = grown;
		if (!grown || !(names[n] = strdup(de->d_name))) {
			oom = true;
			break;
		}
		names[++n] = NULL;
	}
	if (d)
		closedir(d);
	if (oom) {
		img_names_free(names);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	*out = names;
	return 0;
}

/* The images the disks of d are backed by, nearest first. */
static int read_parents(struct img_details *d, struct vmci_err *err)
{
	char(*parents)[SHA256_HEX_LEN + 1] = NULL;
	size_t np = 0;
	int rc = 0;
	img_blob_parents(d->digest, &parents, &np, NULL);
	for (size_t i = 0; !rc && i < np; i++) {
		struct img_parent *grown = realloc(d->parents, (d->n_parents + 1) * sizeof(*grown));
		if (!grown) {
			rc = vmci_err_set(err, ENOMEM, "out of memory");
			break;
		}
		d->parents = grown;
		struct img_parent *p = memset(&grown[d->n_parents++], 0, sizeof(*p));
		snprintf(p->digest, sizeof(p->digest), "%s", parents[i]);
		img_blob_path(parents[i], p->dir, sizeof(p->dir));
		rc = names_of(parents[i], &p->names, err);
	}
	free(parents);
	return rc;
}

/* The live clones of d's image. */
static int read_clones(struct img_details *d, struct vmci_err *err)
{
	struct img_clone_reg *regs = NULL;
	size_t nregs = 0;
	int rc = 0;
	if (img_clone_regs(&regs, &nregs, NULL) != 0)
		return 0;
	for (size_t i = 0; !rc && i < nregs; i++) {
		if (strcmp(regs[i].digest, d->digest) || regs[i].state != IMG_CLONE_LIVE)
			continue;
		struct img_live_clone *grown =
		    realloc(d->clones, (d->n_clones + 1) * sizeof(*grown));
		if (!grown) {
			rc = vmci_err_set(err, ENOMEM, "out of memory");
			break;
		}
		d->clones = grown;
		struct img_live_clone *c = memset(&grown[d->n_clones++], 0, sizeof(*c));
		snprintf(c->overlay, sizeof(c->overlay), "%s", regs[i].overlay);
		c->pid = regs[i].pid;
		c->disk_usage = img_disk_usage(regs[i].overlay);
	}
	free(regs);
	return rc;
}

int img_inspect(const char *name, struct img_details **out, struct vmci_err *err)
{
	*out = NULL;
	struct img_boot img;
	int rc = img_find(name, &img, err);
	if (rc)
		return rc;
	struct img_details *d = calloc(1, sizeof(*d));
	if (!d)
		return vmci_err_set(err, ENOMEM, "out of memory");
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->digest, sizeof(d->digest), "%s", img.digest);
	snprintf(d->dir, sizeof(d->dir), "%s", img.dir);
	rc = read_manifest(d->dir, &d->manifest, err);
	if (!rc) {
		d->size = img_disk_usage(d->dir);
		rc = names_of(d->digest, &d->names, err);
	}
	if (!rc && img_recipe_path(name, d->recipe_file, sizeof(d->recipe_file), NULL) != 0)
		d->recipe_file[0] = 0;
	if (!rc)
		rc = read_files(d, err);
	if (!rc)
		rc = read_parents(d, err);
	if (!rc)
		rc = read_clones(d, err);
	if (rc) {
		img_details_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void img_details_free(struct img_details *d)
{
	if (!d)
		return;
	free(d->manifest.text);
	img_names_free(d->names);
	free(d->files);
	for (size_t i = 0; i < d->n_parents; i++)
		img_names_free(d->parents[i].names);
	free(d->parents);
	free(d->clones);
	free(d);
}
