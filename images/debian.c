/*
 * The debootstrap rootfs builder (debian-11, debian-12, debian-13,
 * debian-12-arm64): a Debian system made by debootstrap, on an ext4 root
 * disk, booted with the kernel of the same suite and the vmci initramfs,
 * whose agent switches into it. The suite and the architecture are the
 * recipe's fields; nothing here is particular to one release.
 *
 * Three caches, each under a key of its own inputs, make a rebuild after
 * a kernel or agent change take seconds:
 *
 *   cache/debs/SUITE-ARCH       every .deb downloaded, by name and version
 *                               (debootstrap's --cache-dir, and the kernel):
 *                               nothing is downloaded twice;
 *   cache/debootstrap/X.tgz     `--make-tarball`: the packages one system
 *                               needs (key: suite, variant, arch, packages);
 *   cache/debootstrap/X.qcow2   the finished root disk, before the recipe's
 *                               setup commands (key: the tarball's sha256,
 *                               mirror, variant, packages, disk size), with
 *                               its /etc/os-release beside it.
 *
 * A system of the host's architecture is installed with `--unpack-tarball`
 * (debootstrap chroots into it). One of another architecture
 * (debian-12-arm64 on an x86_64 host) cannot be chrooted into without
 * binfmt_misc and qemu-user set up on the host, which vmci does not ask
 * for: its first stage (`--foreign`: unpack only) runs on the host, and the
 * second stage (`debootstrap --second-stage`: run the maintainer scripts)
 * in a VM of that architecture, booted from the build's own kernel and
 * initramfs on the new root disk, the way setup commands run. Under TCG
 * that takes many minutes, which is why the finished disk is cached.
 *
 * The tarball's sha256 is an input of the digest: the image changes when
 * it does, and a rebuild from a warm cache needs no network. Delete the
 * tarball (and the root disk beside it) to take newer packages.
 */
#include "images/internal.h"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Bump when the way a root disk is made changes: cached disks are then remade. */
#define ROOTDISK_FORMAT "debootstrap-rootdisk 1"

struct deb_inputs {
	struct img_bootfiles *boot;
	struct img_apt_source src; /* suite and mirror */
	const char *deb_arch;
	bool foreign; /* not the host's architecture: the second stage runs in a VM */
	char tarball[PATH_MAX];
	char tarball_sha[SHA256_HEX_LEN + 1];
	char rootdisk[PATH_MAX]; /* the finished root disk, cached */
};

/* ---- running debootstrap ------------------------------------------------------- */

/* debootstrap's "I: Retrieving x" lines, counted per phase, as progress. */
struct deb_progress {
	struct img_build *b;
	char phase[32];
	long long n;
	struct buf tail; /* its last output, to explain a failure */
};

static void on_line(struct deb_progress *p, const char *line)
{
	buf_append(&p->tail, line, strlen(line));
	buf_append(&p->tail, "\n", 1);
	if (p->tail.len > 2048)
		buf_consume(&p->tail, p->tail.len - 2048);
	if (strncmp(line, "I: ", 3))
		return;
	char verb[32];
	if (sscanf(line + 3, "%31s", verb) != 1)
		return;
	if (strcmp(verb, p->phase)) {
		snprintf(p->phase, sizeof(p->phase), "%s", verb);
		p->n = 0;
	}
	char step[64];
	snprintf(step, sizeof(step), "debootstrap: %s", p->phase);
	for (char *c = step + 13; *c; c++)
		*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
	img_progress(p->b, step, ++p->n, 0);
}

/* Runs argv with stdout and stderr read line by line into on_line. */
static int run_debootstrap(char *const argv[], struct img_build *b, struct vmci_err *err)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC))
		return vmci_err_errno(err, errno, "cannot create a pipe for debootstrap");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (rc) {
		close(fds[0]);
		if (rc == ENOENT)
			return pkg_err_missing(err, argv[0]);
		return vmci_err_errno(err, rc, "cannot run debootstrap");
	}
	struct deb_progress p = {.b = b};
	struct buf pending = {0};
	char chunk[4096];
	ssize_t n;
	while ((n = read(fds[0], chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		buf_append(&pending, chunk, (size_t)n);
		char *nl;
		while (pending.len && (nl = memchr(pending.data, '\n', pending.len)) != NULL) {
			*nl = 0;
			on_line(&p, (const char *)pending.data);
			buf_consume(&pending, (size_t)(nl - (char *)pending.data) + 1);
		}
	}
	close(fds[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	rc = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		rc =
		    vmci_err_set(err, EIO, "debootstrap %s failed: %s", argv[1], buf_cstr(&p.tail));
	buf_free(&pending);
	buf_free(&p.tail);
	return rc;
}

/* ---- the package tarball ------------------------------------------------------- */

/* "--include=a,b" (or "" when there are no packages). */
static void include_arg(const struct img_spec *s, char *out, size_t size)
{
	out[0] = 0;
	for (size_t i = 0; i < s->packages.n; i++)
		snprintf(out + strlen(out), size - strlen(out), "%s%s",
			 i ? "," : "--include=", s->packages.v[i]);
}

/* Removes the empty strings from a NULL-terminated argv (an option not given). */
static void drop_empty(char **argv)
{
	size_t w = 0;
	for (size_t r = 0; argv[r]; r++)
		if (argv[r][0])
			argv[w++] = argv[r];
	argv[w] = NULL;
}

/* cache/debootstrap/SUITE-ARCH-KEY.EXT, KEY standing for what ctx holds. */
static int cache_path(const struct img_spec *s, const char *deb_arch, struct sha256_ctx *ctx,
		      const char *ext, char *out, size_t size, struct vmci_err *err)
{
	char key[SHA256_HEX_LEN + 1], dir[PATH_MAX];
	sha256_finish(ctx, key);
	if (fs_path(dir, sizeof(dir), "%s/cache/debootstrap", vmci_home()) ||
	    fs_path(out, size, "%s/%s-%s-%.16s.%s", dir, s->suite, deb_arch, key, ext))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", vmci_home());
	return fs_mkdir_p(dir, 0755, err);
}

static void digest_packages(struct sha256_ctx *ctx, const struct img_spec *s, const char *deb_arch)
{
	img_digest_line(ctx, "suite", s->suite);
	img_digest_line(ctx, "variant", s->variant);
	img_digest_line(ctx, "arch", deb_arch);
	for (size_t i = 0; i < s->packages.n; i++)
		img_digest_line(ctx, "package", s->packages.v[i]);
}

/* The tarball: key of suite, variant, architecture and packages. */
static int tarball_path(const struct img_spec *s, const char *deb_arch, char *out, size_t size,
			struct vmci_err *err)
{
	struct sha256_ctx *ctx = sha256_new();
	if (!ctx)
		return vmci_err_set(err, ENOMEM, "out of memory");
	digest_packages(ctx, s, deb_arch);
	return cache_path(s, deb_arch, ctx, "tgz", out, size, err);
}

/* The finished root disk: key of the tarball's bytes and everything else that shapes it. */
static int rootdisk_path(const struct img_spec *s, const struct deb_inputs *in, char *out,
			 size_t size, struct vmci_err *err)
{
	struct sha256_ctx *ctx = sha256_new();
	if (!ctx)
		return vmci_err_set(err, ENOMEM, "out of memory");
	char disk_size[32];
	snprintf(disk_size, sizeof(disk_size), "%lld", s->disk_size);
	img_digest_line(ctx, "format", ROOTDISK_FORMAT);
	digest_packages(ctx, s, in->deb_arch);
	img_digest_line(ctx, "mirror", in->src.mirror);
	img_digest_line(ctx, "tarball", in->tarball_sha);
	img_digest_line(ctx, "disk-size", disk_size);
	img_digest_line(ctx, "foreign", in->foreign ? "yes" : "no");
	return cache_path(s, in->deb_arch, ctx, "qcow2", out, size, err);
}

static int make_tarball(struct img_build *b, struct deb_inputs *in, struct vmci_err *err)
{
	const struct img_spec *s = b->recipe->spec;
	char debs[PATH_MAX];
	int rc = img_deb_suite_cache(&in->src, in->deb_arch, debs, sizeof(debs), err);
	struct img_scratch work;
	if (!rc)
		rc = img_rootfs_scratch("debootstrap-download", &work, err);
	if (rc)
		return rc;
	char target[PATH_MAX], tmp[PATH_MAX], include[2048], make[PATH_MAX + 32], variant[48],
	    arch[32], cache[PATH_MAX + 16];
	include_arg(s, include, sizeof(include));
	snprintf(variant, sizeof(variant), "--variant=%s", s->variant);
	snprintf(arch, sizeof(arch), "--arch=%s", in->deb_arch);
	if (fs_path(target, sizeof(target), "%s/target", work.path) ||
	    fs_path(tmp, sizeof(tmp), "%s/packages.tgz", work.path) ||
	    fs_path(make, sizeof(make), "--make-tarball=%s", tmp) ||
	    fs_path(cache, sizeof(cache), "--cache-dir=%s", debs)) {
		img_rootfs_scratch_drop(&work);
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", work.path);
	}
	log_info("image %s: downloading Debian %s (%s) packages from %s into %s", s->name, s->suite,
		 in->deb_arch, in->src.mirror, debs);
	char *argv[] = {"debootstrap",	  make,	  variant,	  arch, cache, include,
			(char *)s->suite, target, in->src.mirror, NULL};
	drop_empty(argv);
	rc = run_debootstrap(argv, b, err);
	if (!rc)
		rc = fs_rename_durable(tmp, in->tarball, err);
	if (rc)
		vmci_err_wrap(err, "cannot download Debian %s from %s", s->suite, in->src.mirror);
	img_rootfs_scratch_drop(&work);
	return rc;
}

/* ---- the builder ---------------------------------------------------------------- */

static bool host_arch_is(const char *deb_arch)
{
	struct utsname u;
	const char *host = NULL;
	if (uname(&u) == 0)
		img_deb_arch(u.machine, &host, NULL);
	return host && !strcmp(host, deb_arch);
}

int img_debian_prepare(struct img_build *b, struct vmci_err *err)
{
	const struct img_spec *spec = b->recipe->spec;
	struct deb_inputs *in = calloc(1, sizeof(*in));
	struct sha256_ctx *digest = sha256_new();
	if (!in || !digest) {
		free(in);
		if (digest)
			sha256_finish(digest, b->digest);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	b->state = in;
	img_digest_line(digest, "builder", IMG_BUILDER_VERSION);
	img_digest_line(digest, "recipe", spec->sha256);
	snprintf(in->src.suite, sizeof(in->src.suite), "%s", spec->suite);
	if (spec->mirror[0])
		snprintf(in->src.mirror, sizeof(in->src.mirror), "%s", spec->mirror);
	else
		img_host_mirror(spec->suite, in->src.mirror, sizeof(in->src.mirror));
	int rc = img_deb_arch(spec->arch, &in->deb_arch, err);
	if (!rc)
		in->foreign = !host_arch_is(in->deb_arch);
	if (!rc && geteuid() != 0)
		rc = vmci_err_set(
		    err, EPERM, "debootstrap needs root to build image %s (run the build as root)",
		    spec->name);
	if (!rc)
		rc = img_bootfiles_prepare(spec, &in->src, b, digest, &in->boot, err);
	if (!rc)
		rc = tarball_path(spec, in->deb_arch, in->tarball, sizeof(in->tarball), err);
	if (!rc && !fs_exists(in->tarball))
		rc = make_tarball(b, in, err);
	if (!rc)
		rc = sha256_file(in->tarball, in->tarball_sha, err);
	if (!rc) {
		img_digest_line(digest, "debootstrap-tarball", in->tarball_sha);
		rc = rootdisk_path(spec, in, in->rootdisk, sizeof(in->rootdisk), err);
	}
	sha256_finish(digest, b->digest);
	return rc;
}

/* What debootstrap leaves that an image should not carry. */
static void tidy(const char *target)
{
	char dir[PATH_MAX];
	if (fs_path(dir, sizeof(dir), "%s/var/cache/apt/archives", target))
		return;
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n > 4 && !strcmp(de->d_name + n - 4, ".deb"))
			unlinkat(dirfd(d), de->d_name, 0);
	}
	if (d)
		closedir(d);
}

/*
 * Where the agent mounts /proc, /sys and /dev after switching into the
 * root: real directories. debootstrap run in a container (docker) leaves
 * proc as a link to the host's /proc, which its second stage replaces, but
 * a foreign system's second stage runs after the agent has switched in.
 */
static int mount_points(const char *target, struct vmci_err *err)
{
	static const char *const dirs[] = {"proc", "sys", "dev"};
	for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
		char path[PATH_MAX];
		struct stat st;
		if (fs_path(path, sizeof(path), "%s/%s", target, dirs[i]))
			return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", target);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			continue;
		unlink(path);
		if (mkdir(path, 0755) != 0)
			return vmci_err_errno(err, errno, "cannot create %s", path);
	}
	return 0;
}

/* debootstrap --unpack-tarball into target (only its first stage when foreign). */
static int install(struct img_build *b, struct deb_inputs *in, const char *target,
		   struct vmci_err *err)
{
	const struct img_spec *s = b->recipe->spec;
	char include[2048], unpack[PATH_MAX + 32], variant[48], arch[32];
	include_arg(s, include, sizeof(include));
	snprintf(variant, sizeof(variant), "--variant=%s", s->variant);
	snprintf(arch, sizeof(arch), "--arch=%s", in->deb_arch);
	if (fs_path(unpack, sizeof(unpack), "--unpack-tarball=%s", in->tarball))
		return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", in->tarball);
	char *argv[] = {"debootstrap",
			unpack,
			variant,
			arch,
			in->foreign ? "--foreign" : "",
			include,
			(char *)s->suite,
			(char *)target,
			in->src.mirror,
			NULL};
	drop_empty(argv);
	int rc = run_debootstrap(argv, b, err);
	img_umount_below(target);
	if (rc)
		vmci_err_wrap(err,
			      "cannot install Debian %s from %s (delete it to download the "
			      "packages again)",
			      s->suite, in->tarball);
	else if (!in->foreign)
		tidy(target);
	return rc ? rc : mount_points(target, err);
}

/* The second stage of a foreign system, in a VM of its architecture, on disk. */
static int second_stage(struct img_build *b, const char *disk, struct vmci_err *err)
{
	static const char *const commands[] = {
	    "/debootstrap/debootstrap --second-stage && rm -f /var/cache/apt/archives/*.deb"};
	img_progress(b, "debootstrap: second stage in a VM", 0, 0);
	log_info("image %s: finishing the root filesystem in a %s VM (debootstrap --second-stage)",
		 b->recipe->spec->name, b->recipe->spec->arch);
	int rc =
	    img_rootdisk_run(b, disk, IMG_ROOT_CMDLINE, commands, ARRAY_LEN(commands), false, err);
	if (rc)
		vmci_err_wrap(err, "cannot finish Debian %s for %s", b->recipe->spec->suite,
			      b->recipe->spec->arch);
	return rc;
}

/* The os-release of the tree at target, kept beside the cached disk. */
static int keep_os_release(const struct deb_inputs *in, const char *target, const char *out,
			   struct vmci_err *err)
{
	struct buf text = {0};
	int rc = img_os_release_from_tree(target, &text)
		     ? vmci_err_set(err, ENOENT, "Debian %s left no os-release in %s",
				    in->src.suite, target)
		     : fs_write_atomic(out, text.data, text.len, 0644, err);
	buf_free(&text);
	return rc;
}

/*
 * Makes the finished root disk into in->rootdisk: installs into a scratch
 * tree, makes it ext4 and qcow2, finishes a foreign system in a VM, then
 * renames it into the cache (with its os-release), so that a build that
 * fails half way leaves nothing a later one would take.
 */
static int make_rootdisk(struct img_build *b, struct deb_inputs *in, const char *os_release,
			 struct vmci_err *err)
{
	const struct img_spec *s = b->recipe->spec;
	struct img_scratch work;
	char prefix[96], target[PATH_MAX], raw[PATH_MAX], qcow[PATH_MAX], osr[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%s-%.12s", s->name, b->digest);
	int rc = img_rootfs_scratch(prefix, &work, err);
	if (rc)
		return rc;
	if (fs_path(target, sizeof(target), "%s/target", work.path) ||
	    fs_path(raw, sizeof(raw), "%s/disk.raw", work.path) ||
	    fs_path(qcow, sizeof(qcow), "%s/disk.qcow2", work.path) ||
	    fs_path(osr, sizeof(osr), "%s/os-release", work.path))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", work.path);
	if (!rc)
		rc = install(b, in, target, err);
	if (!rc)
		rc = keep_os_release(in, target, osr, err);
	if (!rc) {
		img_progress(b, "making ext4 root disk", 0, 0);
		rc = img_rootdisk_make(target, s->disk_size, raw, err);
	}
	if (!rc)
		rc = img_rootdisk_to_qcow2(raw, "raw", qcow, b, err);
	if (!rc) {
		unlink(raw);
		img_umount_below(target);
		fs_rm_rf(target, NULL);
	}
	if (!rc && in->foreign)
		rc = second_stage(b, qcow, err);
	if (!rc)
		rc = fs_rename_durable(osr, os_release, err);
	if (!rc)
		rc = fs_rename_durable(qcow, in->rootdisk, err);
	img_rootfs_scratch_drop(&work);
	return rc;
}

int img_debian_build(struct img_build *b, struct vmci_err *err)
{
	const struct img_spec *s = b->recipe->spec;
	struct deb_inputs *in = b->state;
	char disk[PATH_MAX], os_release[PATH_MAX];
	if (fs_path(disk, sizeof(disk), "%s/%s", b->dir, IMG_DISK_FILE) ||
	    fs_path(os_release, sizeof(os_release), "%s.os-release", in->rootdisk))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", b->dir);
	int rc = img_bootfiles_write(in->boot, b, err);
	if (rc)
		return rc;
	if (fs_exists(in->rootdisk) && fs_exists(os_release))
		log_info("image %s: using the cached root disk %s", s->name, in->rootdisk);
	else
		rc = make_rootdisk(b, in, os_release, err);
	if (!rc) {
		img_progress(b, "copying root disk", 0, 0);
		rc = fs_copy_file(in->rootdisk, disk, 0644, true, err);
	}
	struct buf text = {0};
	if (!rc)
		rc = fs_read_file(os_release, 64 << 10, &text, err);
	if (!rc)
		img_manifest_set_os(b->manifest, buf_cstr(&text));
	buf_free(&text);
	if (!rc)
		rc = img_rootdisk_setup(b, disk, IMG_ROOT_CMDLINE, err);
	if (!rc) {
		json_t *packages = json_array();
		for (size_t i = 0; i < s->packages.n; i++)
			json_array_append_new(packages, json_string(s->packages.v[i]));
		json_object_set_new(b->manifest, "cmdline", json_string(IMG_ROOT_CMDLINE));
		json_object_set_new(b->manifest, "disk_file", json_string(IMG_DISK_FILE));
		json_object_set_new(b->manifest, "disk_size", json_integer(s->disk_size));
		json_object_set_new(b->manifest, "rootfs",
				    json_pack("{s:{s:s, s:s, s:s, s:o, s:s, s:s, s:b}}",
					      "debootstrap", "suite", s->suite, "arch",
					      in->deb_arch, "variant", s->variant, "packages",
					      packages, "mirror", in->src.mirror, "tarball_sha256",
					      in->tarball_sha, "foreign", in->foreign));
	}
	return rc;
}

void img_debian_finish(struct img_build *b)
{
	struct deb_inputs *in = b->state;
	if (in)
		img_bootfiles_free(in->boot);
	free(in);
	b->state = NULL;
}
