/*
 * The debootstrap rootfs builder (debian-12): a Debian system made by
 * debootstrap, on an ext4 root disk, booted with the recipe's kernel and
 * the vmci initramfs, whose agent switches into it.
 *
 * debootstrap runs in two steps. `--make-tarball` downloads every package
 * the system needs into one tarball, kept in $VMCI_HOME/cache/debootstrap
 * under a key of suite, variant, architecture and packages; then
 * `--unpack-tarball` installs from it into a scratch tree. The tarball's
 * sha256 is an input of the digest: the image changes when it does, and a
 * rebuild from a warm cache needs no network. Delete the tarball to take
 * newer packages.
 *
 * The mirror is the recipe's, else the one apt uses on this host (read
 * from /etc/apt/sources.list and sources.list.d), which is known to be
 * reachable from here.
 */
#include "images/internal.h"

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

#define DEFAULT_MIRROR "http://deb.debian.org/debian"

extern char **environ;

struct deb_inputs {
	struct img_bootfiles *boot;
	char mirror[256];
	char tarball[PATH_MAX];
	char tarball_sha[SHA256_HEX_LEN + 1];
};

/* ---- the host's mirror ------------------------------------------------------- */

static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; *p;) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t\n");
		if (len == n && !strncmp(p, word, n))
			return true;
		p += len;
		if (*p == '\n')
			break;
	}
	return false;
}

static bool usable_uri(const char *uri)
{
	return !strncmp(uri, "http://", 7) || !strncmp(uri, "https://", 8) ||
	       !strncmp(uri, "file:/", 6);
}

/* One-line format: "deb [opts] URI SUITE COMPONENTS...". */
static bool mirror_from_list(const char *text, const char *suite, char *out, size_t size)
{
	for (const char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		next = next ? next + 1 : NULL;
		char copy[1024];
		snprintf(copy, sizeof(copy), "%.*s", (int)strcspn(line, "\n"), line);
		char *save = NULL, *w = strtok_r(copy, " \t", &save);
		if (!w || strcmp(w, "deb"))
			continue;
		w = strtok_r(NULL, " \t", &save);
		if (w && w[0] == '[')
			while (w && !strchr(w, ']'))
				w = strtok_r(NULL, " \t", &save);
		if (w && w[0] == '[' && strchr(w, ']'))
			w = strtok_r(NULL, " \t", &save);
		else if (w && strchr(w, ']'))
			w = strtok_r(NULL, " \t", &save);
		char *s = w ? strtok_r(NULL, " \t", &save) : NULL;
		if (w && s && !strcmp(s, suite) && usable_uri(w)) {
			snprintf(out, size, "%s", w);
			return true;
		}
	}
	return false;
}

/* The value of "Field:" in one deb822 paragraph, or "". */
static void field(const char *para, size_t len, const char *name, char *out, size_t size)
{
	out[0] = 0;
	size_t n = strlen(name);
	for (const char *p = para; p && p < para + len;) {
		if (!strncasecmp(p, name, n) && p[n] == ':') {
			const char *v = p + n + 1;
			v += strspn(v, " \t");
			snprintf(out, size, "%.*s", (int)strcspn(v, "\n"), v);
			return;
		}
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
}

/* deb822 format (*.sources): paragraphs of Types, URIs, Suites. */
static bool mirror_from_sources(const char *text, const char *suite, char *out, size_t size)
{
	for (const char *para = text; *para;) {
		const char *end = strstr(para, "\n\n");
		size_t len = end ? (size_t)(end - para) + 1 : strlen(para);
		char types[128], uris[512], suites[256], enabled[16];
		field(para, len, "Types", types, sizeof(types));
		field(para, len, "URIs", uris, sizeof(uris));
		field(para, len, "Suites", suites, sizeof(suites));
		field(para, len, "Enabled", enabled, sizeof(enabled));
		if (has_word(types, "deb") && has_word(suites, suite) && strcmp(enabled, "no")) {
			uris[strcspn(uris, " \t")] = 0;
			if (usable_uri(uris) && strlen(uris) < size) {
				memcpy(out, uris, strlen(uris) + 1);
				return true;
			}
		}
		para += len;
		para += strspn(para, "\n");
	}
	return false;
}

static bool mirror_from_file(const char *path, const char *suite, char *out, size_t size)
{
	struct buf b = {0};
	size_t n = strlen(path);
	bool deb822 = n > 8 && !strcmp(path + n - 8, ".sources");
	bool ok = fs_read_file(path, 1 << 20, &b, NULL) == 0 &&
		  (deb822 ? mirror_from_sources(buf_cstr(&b), suite, out, size)
			  : mirror_from_list(buf_cstr(&b), suite, out, size));
	buf_free(&b);
	return ok;
}

static void host_mirror(const char *suite, char *out, size_t size)
{
	if (mirror_from_file("/etc/apt/sources.list", suite, out, size))
		return;
	DIR *d = opendir("/etc/apt/sources.list.d");
	struct dirent *de;
	bool found = false;
	while (d && !found && (de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		size_t n = strlen(de->d_name);
		bool wanted = (n > 5 && !strcmp(de->d_name + n - 5, ".list")) ||
			      (n > 8 && !strcmp(de->d_name + n - 8, ".sources"));
		if (wanted &&
		    !fs_path(path, sizeof(path), "/etc/apt/sources.list.d/%s", de->d_name))
			found = mirror_from_file(path, suite, out, size);
	}
	if (d)
		closedir(d);
	if (!found)
		snprintf(out, size, "%s", DEFAULT_MIRROR);
}

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

/* cache/debootstrap/SUITE-ARCH-KEY.tgz, KEY standing for variant and packages. */
static int tarball_path(const struct img_spec *s, const char *deb_arch, char *out, size_t size,
			struct vmci_err *err)
{
	struct sha256_ctx *ctx = sha256_new();
	if (!ctx)
		return vmci_err_set(err, ENOMEM, "out of memory");
	img_digest_line(ctx, "suite", s->suite);
	img_digest_line(ctx, "variant", s->variant);
	img_digest_line(ctx, "arch", deb_arch);
	for (size_t i = 0; i < s->packages.n; i++)
		img_digest_line(ctx, "package", s->packages.v[i]);
	char key[SHA256_HEX_LEN + 1], dir[PATH_MAX];
	sha256_finish(ctx, key);
	if (fs_path(dir, sizeof(dir), "%s/cache/debootstrap", vmci_home()) ||
	    fs_path(out, size, "%s/%s-%s-%.16s.tgz", dir, s->suite, deb_arch, key))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", vmci_home());
	return fs_mkdir_p(dir, 0755, err);
}

static int make_tarball(struct img_build *b, struct deb_inputs *in, const char *deb_arch,
			struct vmci_err *err)
{
	const struct img_spec *s = b->recipe->spec;
	struct img_scratch work;
	int rc = img_rootfs_scratch("debootstrap-download", &work, err);
	if (rc)
		return rc;
	char target[PATH_MAX], tmp[PATH_MAX], include[2048], make[PATH_MAX + 32], variant[48],
	    arch[32];
	include_arg(s, include, sizeof(include));
	snprintf(variant, sizeof(variant), "--variant=%s", s->variant);
	snprintf(arch, sizeof(arch), "--arch=%s", deb_arch);
	if (fs_path(target, sizeof(target), "%s/target", work.path) ||
	    fs_path(tmp, sizeof(tmp), "%s/packages.tgz", work.path) ||
	    fs_path(make, sizeof(make), "--make-tarball=%s", tmp)) {
		img_rootfs_scratch_drop(&work);
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", work.path);
	}
	log_info("image %s: downloading Debian %s packages from %s", s->name, s->suite, in->mirror);
	char *argv[] = {"debootstrap",	  make,	  variant,    arch, include,
			(char *)s->suite, target, in->mirror, NULL};
	drop_empty(argv);
	rc = run_debootstrap(argv, b, err);
	if (!rc)
		rc = fs_rename_durable(tmp, in->tarball, err);
	if (rc)
		vmci_err_wrap(err, "cannot download Debian %s from %s", s->suite, in->mirror);
	img_rootfs_scratch_drop(&work);
	return rc;
}

/* ---- the builder ---------------------------------------------------------------- */

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
	const char *deb_arch = NULL;
	int rc = img_bootfiles_prepare(spec, b, digest, &in->boot, err);
	if (!rc)
		rc = img_deb_arch(spec->arch, &deb_arch, err);
	if (!rc && geteuid() != 0)
		rc = vmci_err_set(
		    err, EPERM, "debootstrap needs root to build image %s (run the build as root)",
		    spec->name);
	if (!rc)
		rc = tarball_path(spec, deb_arch, in->tarball, sizeof(in->tarball), err);
	if (!rc) {
		if (spec->mirror[0])
			snprintf(in->mirror, sizeof(in->mirror), "%s", spec->mirror);
		else
			host_mirror(spec->suite, in->mirror, sizeof(in->mirror));
		if (!fs_exists(in->tarball))
			rc = make_tarball(b, in, deb_arch, err);
	}
	if (!rc)
		rc = sha256_file(in->tarball, in->tarball_sha, err);
	if (!rc)
		img_digest_line(digest, "debootstrap-tarball", in->tarball_sha);
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

/* debootstrap --unpack-tarball into target. */
static int install(struct img_build *b, struct deb_inputs *in, const char *target,
		   struct vmci_err *err)
{
	const struct img_spec *s = b->recipe->spec;
	const char *deb_arch = NULL;
	char include[2048], unpack[PATH_MAX + 32], variant[48], arch[32];
	int rc = img_deb_arch(s->arch, &deb_arch, err);
	if (rc)
		return rc;
	include_arg(s, include, sizeof(include));
	snprintf(variant, sizeof(variant), "--variant=%s", s->variant);
	snprintf(arch, sizeof(arch), "--arch=%s", deb_arch);
	if (fs_path(unpack, sizeof(unpack), "--unpack-tarball=%s", in->tarball))
		return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", in->tarball);
	char *argv[] = {"debootstrap",	  unpack,	  variant,    arch, include,
			(char *)s->suite, (char *)target, in->mirror, NULL};
	drop_empty(argv);
	rc = run_debootstrap(argv, b, err);
	img_umount_below(target);
	if (rc)
		vmci_err_wrap(err,
			      "cannot install Debian %s from %s (delete it to download the "
			      "packages again)",
			      s->suite, in->tarball);
	else
		tidy(target);
	return rc;
}

int img_debian_build(struct img_build *b, struct vmci_err *err)
{
	const struct img_spec *s = b->recipe->spec;
	struct deb_inputs *in = b->state;
	char disk[PATH_MAX], target[PATH_MAX], raw[PATH_MAX];
	if (fs_path(disk, sizeof(disk), "%s/%s", b->dir, IMG_DISK_FILE))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", b->dir);
	int rc = img_bootfiles_write(in->boot, b, err);
	if (rc)
		return rc;
	struct img_scratch work;
	char prefix[96];
	snprintf(prefix, sizeof(prefix), "%s-%.12s", s->name, b->digest);
	rc = img_rootfs_scratch(prefix, &work, err);
	if (rc)
		return rc;
	if (fs_path(target, sizeof(target), "%s/target", work.path) ||
	    fs_path(raw, sizeof(raw), "%s/disk.raw", work.path))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", work.path);
	if (!rc)
		rc = install(b, in, target, err);
	if (!rc) {
		img_progress(b, "making ext4 root disk", 0, 0);
		rc = img_rootdisk_make(target, s->disk_size, raw, err);
	}
	if (!rc)
		rc = img_rootdisk_to_qcow2(raw, "raw", disk, b, err);
	img_rootfs_scratch_drop(&work);
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
				    json_pack("{s:{s:s, s:s, s:o, s:s, s:s}}", "debootstrap",
					      "suite", s->suite, "variant", s->variant, "packages",
					      packages, "mirror", in->mirror, "tarball_sha256",
					      in->tarball_sha));
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
