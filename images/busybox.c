/*
 * busybox in vmci images, and the busybox rootfs builder.
 *
 * Every initramfs holds a static busybox: the host's own (busybox-static
 * installs /bin/busybox) or, for another architecture, the busybox-static
 * package of that architecture, whose bin/busybox is extracted once into
 * $VMCI_HOME/cache/busybox. Its applets become symlinks; a binary the host
 * cannot run is asked for its applet list through the host's busybox of
 * the same version (Debian builds every architecture from one config).
 *
 * The busybox rootfs (busybox-x86_64, busybox-aarch64) is nothing but the
 * boot files: the job runs in the initramfs. Its digest covers
 * IMG_BUILDER_VERSION (which stands for this code: bump it when the output
 * changes for the same inputs), the recipe file's bytes, and the inputs of
 * the boot files.
 */
#include "images/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* busybox-static installs its binary here (replacing the dynamic one). */
#define HOST_BUSYBOX	 "/bin/busybox"
#define MAX_BUSYBOX_SIZE (16u << 20)

#if defined(__x86_64__)
#define HOST_MACHINE 62
#elif defined(__aarch64__)
#define HOST_MACHINE 183
#else
#define HOST_MACHINE 0
#endif

/* The Debian package of the host's static busybox, as packages.txt names it. */
static const char *host_busybox_package(char *out, size_t size)
{
	return pkg_providing("busybox", out, size) ? out : "a static busybox package";
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
}

bool img_static_elf(const char *path, unsigned machine)
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

/* ---- the binary ------------------------------------------------------------ */

struct extract_ctx {
	struct buf data;
	bool found;
};

static int busybox_entry(void *ctx, const char *path, struct archive *a, struct archive_entry *e,
			 struct vmci_err *err)
{
	struct extract_ctx *x = ctx;
	if (strcmp(path, "bin/busybox") && strcmp(path, "usr/bin/busybox"))
		return 0;
	x->found = true;
	int rc = img_archive_read_entry(a, path, MAX_BUSYBOX_SIZE, &x->data, err);
	return rc ? rc : 1;
}

/* cache/busybox/<deb sha256>: bin/busybox of the package, extracted once. */
static int extract_from_deb(const struct img_deb *deb, char *out, size_t size, struct vmci_err *err)
{
	char dir[PATH_MAX];
	if (fs_path(dir, sizeof(dir), "%s/cache/busybox", vmci_home()) ||
	    fs_path(out, size, "%s/%s", dir, deb->sha256))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", vmci_home());
	if (fs_exists(out))
		return 0;
	int rc = fs_mkdir_p(dir, 0755, err);
	if (rc)
		return rc;
	struct extract_ctx x = {0};
	rc = img_deb_read(deb->path, busybox_entry, &x, err);
	if (!rc && !x.found)
		rc = vmci_err_set(err, ENOENT, "%s has no bin/busybox (is it busybox-static?)",
				  deb->path);
	if (!rc)
		rc = fs_write_atomic(out, x.data.data, x.data.len, 0755, err);
	buf_free(&x.data);
	return rc;
}

int img_busybox_binary(const struct img_spec *spec, const char *deb_arch, unsigned machine,
		       struct img_build *b, char *out, size_t size, struct vmci_err *err)
{
	if (spec->busybox[0] == '/') {
		if (fs_path(out, size, "%s", spec->busybox))
			return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", spec->busybox);
		char pkg[64];
		if (!img_static_elf(out, machine))
			return vmci_err_set(err, ENOENT,
					    "%s is not installed: %s is missing or not a static %s "
					    "binary (run: make deps)",
					    host_busybox_package(pkg, sizeof(pkg)), out,
					    spec->arch);
		return 0;
	}
	struct img_deb deb;
	int rc = img_deb_fetch_package(spec->busybox, deb_arch, &deb, b->progress, b->ctx, err);
	if (!rc)
		rc = extract_from_deb(&deb, out, size, err);
	if (!rc && !img_static_elf(out, machine))
		rc = vmci_err_set(err, ENOEXEC,
				  "bin/busybox of %s is not a static %s binary (the recipe %s "
				  "needs a package like busybox-static)",
				  deb.path, spec->arch, spec->file);
	return rc;
}

/* ---- the applets ------------------------------------------------------------- */

/*
 * The version banner compiled into a busybox binary, "BusyBox v1.35.0
 * (Debian 1:1.35.0-4+deb12u1", without a binary rebuild's "+bN" suffix.
 */
static bool banner(const char *path, char *out, size_t size)
{
	struct buf b = {0};
	bool ok = false;
	if (fs_read_file(path, MAX_BUSYBOX_SIZE, &b, NULL) == 0 && b.len) {
		static const char tag[] = "BusyBox v";
		const uint8_t *p = memmem(b.data, b.len, tag, sizeof(tag) - 1);
		size_t n = 0, left = p ? b.len - (size_t)(p - b.data) : 0;
		while (n < left && n + 1 < size && p[n] && p[n] != ')' && p[n] != '\n')
			n++;
		if (p) {
			memcpy(out, p, n);
			out[n] = 0;
			char *bin = strstr(out, "+b");
			if (bin && strspn(bin + 2, "0123456789") == strlen(bin + 2))
				*bin = 0;
			ok = true;
		}
	}
	buf_free(&b);
	return ok;
}

int img_busybox_applets(const char *busybox, unsigned machine, struct buf *out,
			struct vmci_err *err)
{
	const char *ask = busybox;
	if (machine != HOST_MACHINE) {
		char theirs[128], ours[128];
		if (!banner(busybox, theirs, sizeof(theirs)))
			return vmci_err_set(err, EINVAL, "%s does not look like busybox", busybox);
		char pkg[64];
		host_busybox_package(pkg, sizeof(pkg));
		if (!img_static_elf(HOST_BUSYBOX, HOST_MACHINE) ||
		    !banner(HOST_BUSYBOX, ours, sizeof(ours)) || strcmp(theirs, ours))
			return vmci_err_set(
			    err, ENOENT,
			    "cannot list the applets of %s (%s): the host cannot run it, and its "
			    "%s is not the same version (install the same version of %s on the "
			    "host: apt-get install %s)",
			    busybox, theirs, pkg, pkg, pkg);
		ask = HOST_BUSYBOX;
	}
	char *argv[] = {(char *)ask, "--list-full", NULL};
	return run_command(argv, out, err);
}

/* ---- the busybox rootfs builder ----------------------------------------------- */

int img_busybox_prepare(struct img_build *b, struct vmci_err *err)
{
	const struct img_spec *spec = b->recipe->spec;
	struct sha256_ctx *digest = sha256_new();
	if (!digest)
		return vmci_err_set(err, ENOMEM, "out of memory");
	img_digest_line(digest, "builder", IMG_BUILDER_VERSION);
	img_digest_line(digest, "recipe", spec->sha256);
	struct img_bootfiles *bf = NULL;
	int rc = img_bootfiles_prepare(spec, NULL, b, digest, &bf, err);
	b->state = bf;
	sha256_finish(digest, b->digest);
	return rc;
}

int img_busybox_build(struct img_build *b, struct vmci_err *err)
{
	int rc = img_bootfiles_write(b->state, b, err);
	/* What the initramfs's /etc/os-release says (bootfiles.c writes it). */
	char pretty[64];
	snprintf(pretty, sizeof(pretty), "vmci busybox (%s)", b->recipe->spec->arch);
	if (!rc)
		json_object_set_new(
		    b->manifest, "os",
		    json_pack("{s:s, s:s}", "id", "busybox", "pretty_name", pretty));
	return rc;
}

void img_busybox_finish(struct img_build *b)
{
	img_bootfiles_free(b->state);
	b->state = NULL;
}
