/*
 * Debian packages: finding the kernel package apt would install, fetching
 * it once into $VMCI_HOME/cache/debs, and reading it with libarchive.
 *
 * A .deb is an ar archive whose data.tar.{xz,zst,gz} member holds the
 * files. The member is read in place: a second libarchive reader takes its
 * bytes from archive_read_data on the outer one, so nothing is unpacked
 * to disk except what a caller writes itself.
 */
#include "images/internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* apt's answer to "which kernel is current" is kept this long. */
#define RESOLVE_MAX_AGE_S (24 * 3600)
/* No single member of a kernel package is near this big. */
#define MAX_MODULE_BYTES (64u << 20)

int img_deb_arch(const char *arch, const char **deb_arch, struct vmci_err *err)
{
	static const struct {
		const char *arch, *deb;
	} map[] = {{"x86_64", "amd64"}, {"aarch64", "arm64"}};
	for (size_t i = 0; i < ARRAY_LEN(map); i++) {
		if (!strcmp(map[i].arch, arch)) {
			*deb_arch = map[i].deb;
			return 0;
		}
	}
	return vmci_err_set(err, EINVAL, "no Debian architecture for '%s' (known: x86_64, aarch64)",
			    arch);
}

static int cache_dir(char *out, size_t size, const char *sub, struct vmci_err *err)
{
	if (fs_path(out, size, "%s/cache/debs%s%s", vmci_home(), sub ? "/" : "", sub ? sub : ""))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", vmci_home());
	return fs_mkdir_p(out, 0755, err);
}

/* What to run when apt cannot find a package of deb_arch: foreign ones need dpkg told. */
static const char *apt_fix(const char *deb_arch, char *out, size_t size)
{
#if defined(__x86_64__)
	const char *native = "amd64";
#elif defined(__aarch64__)
	const char *native = "arm64";
#else
	const char *native = "";
#endif
	if (!strcmp(deb_arch, native))
		snprintf(out, size, "apt-get update");
	else
		snprintf(out, size, "dpkg --add-architecture %s && apt-get update", deb_arch);
	return out;
}

/*
 * An apt command line: the host's apt, or apt with a private state for one
 * suite and architecture (img_apt_source), whose options come first.
 */
#define APT_MAX_ARGS 32
struct apt_cmd {
	char *argv[APT_MAX_ARGS];
	size_t n;
	char opts[9][PATH_MAX + 48];
};

static void apt_add(struct apt_cmd *c, const char *arg)
{
	if (c->n + 1 < APT_MAX_ARGS)
		c->argv[c->n++] = (char *)arg;
	c->argv[c->n] = NULL;
}

/* cache/apt/SUITE-ARCH: the private apt state of a suite (created when missing). */
static int apt_root(const struct img_apt_source *src, const char *deb_arch, char *out, size_t size,
		    struct vmci_err *err)
{
	if (fs_path(out, size, "%s/cache/apt/%s-%s", vmci_home(), src->suite, deb_arch))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", vmci_home());
	static const char *const subs[] = {"state/lists/partial", "cache/archives/partial",
					   "sources.list.d"};
	char dir[PATH_MAX], list[PATH_MAX + 16], status[PATH_MAX + 16];
	int rc = 0;
	for (size_t i = 0; !rc && i < ARRAY_LEN(subs); i++)
		rc = fs_path(dir, sizeof(dir), "%s/%s", out, subs[i])
			 ? vmci_err_set(err, ENAMETOOLONG, "path too long under %s", out)
			 : fs_mkdir_p(dir, 0755, err);
	if (rc)
		return rc;
	char line[512];
	int n = snprintf(line, sizeof(line),
			 "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s "
			 "main\n",
			 src->mirror, src->suite);
	snprintf(list, sizeof(list), "%s/sources.list", out);
	snprintf(status, sizeof(status), "%s/status", out);
	struct buf old = {0};
	bool same = fs_read_file(list, 4096, &old, NULL) == 0 && !strcmp(buf_cstr(&old), line);
	buf_free(&old);
	if (!same)
		rc = fs_write_atomic(list, line, (size_t)n, 0644, err);
	if (!rc && !fs_exists(status))
		rc = fs_write_atomic(status, "", 0, 0644, err);
	return rc;
}

/* tool: the command up to apt's options, NULL-terminated ({"apt-cache", NULL}). */
static int apt_cmd_init(struct apt_cmd *c, const char *const *tool,
			const struct img_apt_source *src, const char *deb_arch,
			struct vmci_err *err)
{
	c->n = 0;
	for (size_t i = 0; tool[i]; i++)
		apt_add(c, tool[i]);
	if (!src)
		return 0;
	char root[PATH_MAX];
	int rc = apt_root(src, deb_arch, root, sizeof(root), err);
	if (rc)
		return rc;
	snprintf(c->opts[0], sizeof(c->opts[0]), "Dir::Etc::SourceList=%s/sources.list", root);
	snprintf(c->opts[1], sizeof(c->opts[1]), "Dir::Etc::SourceParts=%s/sources.list.d", root);
	snprintf(c->opts[2], sizeof(c->opts[2]), "Dir::State=%s/state", root);
	snprintf(c->opts[3], sizeof(c->opts[3]), "Dir::State::status=%s/status", root);
	snprintf(c->opts[4], sizeof(c->opts[4]), "Dir::Cache=%s/cache", root);
	snprintf(c->opts[5], sizeof(c->opts[5]), "APT::Architecture=%s", deb_arch);
	snprintf(c->opts[6], sizeof(c->opts[6]), "APT::Architectures=%s", deb_arch);
	snprintf(c->opts[7], sizeof(c->opts[7]), "Acquire::Languages=none");
	snprintf(c->opts[8], sizeof(c->opts[8]), "Dir::Etc::Preferences=%s/preferences", root);
	for (size_t i = 0; i < ARRAY_LEN(c->opts); i++) {
		apt_add(c, "-o");
		apt_add(c, c->opts[i]);
	}
	return 0;
}

/* Refreshes a private apt state's package lists from its mirror. */
static int apt_update(const struct img_apt_source *src, const char *deb_arch, struct vmci_err *err)
{
	struct apt_cmd c;
	static const char *const tool[] = {"apt-get", NULL};
	int rc = apt_cmd_init(&c, tool, src, deb_arch, err);
	if (rc)
		return rc;
	apt_add(&c, "-q");
	apt_add(&c, "update");
	rc = run_command(c.argv, NULL, err);
	if (rc)
		vmci_err_wrap(err, "cannot read the package lists of Debian %s (%s) from %s",
			      src->suite, deb_arch, src->mirror);
	return rc;
}

/* `apt-cache show --no-all-versions PKG:ARCH`: the candidate's record. */
static int apt_show(const char *pkg, const char *deb_arch, const struct img_apt_source *src,
		    struct buf *out, struct vmci_err *err)
{
	char spec[192];
	snprintf(spec, sizeof(spec), "%s:%s", pkg, deb_arch);
	struct apt_cmd c;
	static const char *const tool[] = {"apt-cache", NULL};
	int rc = apt_cmd_init(&c, tool, src, deb_arch, err);
	if (rc)
		return rc;
	apt_add(&c, "show");
	apt_add(&c, "--no-all-versions");
	apt_add(&c, spec);
	rc = run_command(c.argv, out, err);
	char fix[96];
	if ((rc || out->len == 0) && src)
		return vmci_err_set(err, ENOENT, "Debian %s (%s) at %s has no package %s",
				    src->suite, deb_arch, src->mirror, pkg);
	if (rc || out->len == 0)
		return vmci_err_set(
		    err, ENOENT,
		    "cannot find the Debian package %s in apt's package lists (run: %s)", spec,
		    apt_fix(deb_arch, fix, sizeof(fix)));
	return 0;
}

/* The value of "Field: value" in the first record of an apt-cache show output. */
static bool apt_field(const char *text, const char *field, char *out, size_t size)
{
	size_t flen = strlen(field);
	for (const char *line = text; line && *line;) {
		if (*line == '\n')
			break; /* end of the first record */
		if (!strncmp(line, field, flen) && line[flen] == ':') {
			const char *v = line + flen + 1;
			v += strspn(v, " ");
			size_t n = strcspn(v, "\n");
			if (n >= size)
				return false;
			memcpy(out, v, n);
			out[n] = 0;
			return true;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return false;
}

/*
 * From the metapackage's "Depends: linux-image-6.1.0-56-cloud-amd64 (=
 * 6.1.192-2)", the concrete package and its version (when pinned).
 */
static bool parse_kernel_depends(const char *depends, struct img_deb *out)
{
	for (const char *p = depends; *p;) {
		p += strspn(p, " ,|");
		size_t n = strcspn(p, " ,|(");
		if (n && n < sizeof(out->package) && !strncmp(p, "linux-image-", 12)) {
			memcpy(out->package, p, n);
			out->package[n] = 0;
			const char *q = p + n;
			q += strspn(q, " ");
			out->version[0] = 0;
			if (!strncmp(q, "(=", 2)) {
				q += 2 + strspn(q + 2, " ");
				size_t vn = strcspn(q, " )");
				if (vn < sizeof(out->version)) {
					memcpy(out->version, q, vn);
					out->version[vn] = 0;
				}
			}
			return true;
		}
		p += n;
		p += strcspn(p, ",|");
	}
	return false;
}

static int resolve_with_apt(const char *meta, const struct img_apt_source *src, struct img_deb *out,
			    struct vmci_err *err)
{
	struct buf text = {0};
	char depends[1024];
	int rc = apt_show(meta, out->arch, src, &text, err);
	if (!rc && (!apt_field(buf_cstr(&text), "Depends", depends, sizeof(depends)) ||
		    !parse_kernel_depends(depends, out)))
		rc = vmci_err_set(err, EINVAL, "%s:%s does not depend on a linux-image package",
				  meta, out->arch);
	if (!rc && !out->version[0]) {
		text.len = 0;
		rc = apt_show(out->package, out->arch, src, &text, err);
		if (!rc &&
		    !apt_field(buf_cstr(&text), "Version", out->version, sizeof(out->version)))
			rc = vmci_err_set(err, EINVAL, "apt-cache shows no version of %s",
					  out->package);
	}
	buf_free(&text);
	return rc;
}

int img_deb_suite_cache(const struct img_apt_source *src, const char *deb_arch, char *out,
			size_t size, struct vmci_err *err)
{
	char sub[64 + sizeof(src->suite)];
	snprintf(sub, sizeof(sub), "%s-%s", src->suite, deb_arch);
	return cache_dir(out, size, sub, err);
}

/*
 * cache/debs/PKG_VERSION_ARCH.deb, the name apt-get download gives it; in
 * cache/debs/SUITE-ARCH for a package of a suite's own archive.
 */
static int deb_path(struct img_deb *d, const struct img_apt_source *src, struct vmci_err *err)
{
	char dir[PATH_MAX], ver[3 * sizeof(d->version)];
	int rc = src ? img_deb_suite_cache(src, d->arch, dir, sizeof(dir), err)
		     : cache_dir(dir, sizeof(dir), NULL, err);
	if (rc)
		return rc;
	size_t n = 0;
	for (const char *v = d->version; *v; v++) {
		if (*v == ':') {
			memcpy(ver + n, "%3a", 3);
			n += 3;
		} else {
			ver[n++] = *v;
		}
	}
	ver[n] = 0;
	if (fs_path(d->path, sizeof(d->path), "%s/%s_%s_%s.deb", dir, d->package, ver, d->arch))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", dir);
	return 0;
}

/* The resolution kept from an earlier call; *fresh when younger than a day. */
static bool read_resolution(const char *file, struct img_deb *out, bool *fresh)
{
	struct buf b = {0};
	struct stat st;
	bool ok = stat(file, &st) == 0 && fs_read_file(file, 1024, &b, NULL) == 0 &&
		  sscanf(buf_cstr(&b), "%127s %63s", out->package, out->version) == 2;
	buf_free(&b);
	*fresh = ok && time(NULL) - st.st_mtime < RESOLVE_MAX_AGE_S && time(NULL) >= st.st_mtime;
	return ok;
}

/*
 * Whether a failed download failed for want of space in dir: apt said so
 * ("No space left on device"), or the file system is full now (apt does
 * not always say why a write failed).
 */
static bool disk_full(const char *dir, const struct vmci_err *why)
{
	struct statvfs fs;
	if (why && strstr(why->msg, strerror(ENOSPC)))
		return true;
	return statvfs(dir, &fs) == 0 && (unsigned long long)fs.f_bavail * fs.f_frsize < (1u << 20);
}

/* Downloads d into the cache: into a scratch directory first, then renamed in place. */
static int download(struct img_deb *d, const struct img_apt_source *src, struct vmci_err *err)
{
	char partial[PATH_MAX];
	int rc = cache_dir(partial, sizeof(partial), "partial", err);
	if (rc)
		return rc;
	img_scratch_clean(partial, NULL);
	struct img_scratch s;
	rc = img_scratch_new(partial, "apt", &s, err);
	if (rc)
		return rc;
	char spec[256];
	snprintf(spec, sizeof(spec), "%s:%s=%s", d->package, d->arch, d->version);
	struct apt_cmd c;
	const char *const tool[] = {"env", "-C", s.path, "apt-get", NULL};
	rc = apt_cmd_init(&c, tool, src, d->arch, err);
	if (rc)
		goto out;
	apt_add(&c, "download");
	apt_add(&c, "-q");
	apt_add(&c, spec);
	rc = run_command(c.argv, NULL, err);
	char fix[96];
	if (rc && disk_full(s.path, err)) {
		rc = vmci_err_set(err, ENOSPC,
				  "cannot download %s into %s: %s (free some space there, e.g. "
				  "with `vmci image gc`, and try again)",
				  spec, s.path, strerror(ENOSPC));
		goto out;
	}
	if (rc) {
		vmci_err_wrap(err, "cannot download %s (check the network, or run: %s)", spec,
			      apt_fix(d->arch, fix, sizeof(fix)));
		goto out;
	}
	DIR *dir = opendir(s.path);
	struct dirent *de;
	char got[PATH_MAX] = "";
	while (dir && (de = readdir(dir)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n > 4 && !strcmp(de->d_name + n - 4, ".deb"))
			fs_path(got, sizeof(got), "%s/%s", s.path, de->d_name);
	}
	if (dir)
		closedir(dir);
	if (!got[0]) {
		rc = vmci_err_set(err, ENOENT, "apt-get download %s left no .deb in %s", spec,
				  s.path);
		goto out;
	}
	int fd = open(got, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = vmci_err_errno(err, errno, "cannot sync %s", got);
	if (fd >= 0)
		close(fd);
	if (!rc)
		rc = fs_rename_durable(got, d->path, err);
out:
	img_scratch_drop(&s);
	return rc;
}

/* The candidate version of a plain package (no metapackage to follow). */
static int resolve_package(const char *pkg, const struct img_apt_source *src, struct img_deb *out,
			   struct vmci_err *err)
{
	struct buf text = {0};
	snprintf(out->package, sizeof(out->package), "%s", pkg);
	int rc = apt_show(pkg, out->arch, src, &text, err);
	if (!rc && !apt_field(buf_cstr(&text), "Version", out->version, sizeof(out->version)))
		rc = vmci_err_set(err, EINVAL, "apt-cache shows no version of %s:%s", pkg,
				  out->arch);
	buf_free(&text);
	return rc;
}

/*
 * The package apt would install now, in the cache (downloading it if
 * missing); meta: name is a kernel metapackage to follow to its kernel.
 */
static int fetch_current(const char *name, bool meta, const struct img_apt_source *src,
			 struct img_deb *out, img_progress_fn progress, void *ctx,
			 struct vmci_err *err)
{
	int rc = 0;
	if (src) {
		if (progress)
			progress(ctx, "reading package lists", 0, 0);
		rc = apt_update(src, out->arch, err);
	}
	if (!rc)
		rc = meta ? resolve_with_apt(name, src, out, err)
			  : resolve_package(name, src, out, err);
	if (!rc)
		rc = deb_path(out, src, err);
	if (rc || fs_exists(out->path))
		return rc;
	char step[160];
	snprintf(step, sizeof(step), "downloading %s", out->package);
	if (progress)
		progress(ctx, step, 0, 0);
	rc = download(out, src, err);
	struct stat st;
	if (!rc && progress && stat(out->path, &st) == 0)
		progress(ctx, step, st.st_size, st.st_size);
	return rc;
}

/*
 * apt is asked at most once a day (its answer is kept in a .resolved file
 * beside the packages). When apt or the download fails, the package used
 * last is used again, with a warning: a stale kernel is better than no VM.
 */
static int fetch_cached(const char *meta, bool is_meta, const char *deb_arch,
			const struct img_apt_source *src, struct img_deb *out,
			img_progress_fn progress, void *ctx, struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->arch, sizeof(out->arch), "%s", deb_arch);
	char dir[PATH_MAX], file[PATH_MAX];
	int rc = src ? img_deb_suite_cache(src, deb_arch, dir, sizeof(dir), err)
		     : cache_dir(dir, sizeof(dir), NULL, err);
	if (rc)
		return rc;
	if (fs_path(file, sizeof(file), "%s/%s_%s.resolved", dir, meta, deb_arch))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", dir);

	struct img_deb kept = *out;
	bool fresh = false;
	bool have = read_resolution(file, &kept, &fresh) && deb_path(&kept, src, NULL) == 0 &&
		    fs_exists(kept.path);
	if (have && fresh) {
		*out = kept;
	} else {
		struct vmci_err why = {0};
		rc = fetch_current(meta, is_meta, src, out, progress, ctx, &why);
		if (rc && !have) {
			if (err)
				*err = why;
			return rc;
		}
		if (rc) {
			log_warn("%s; using the cached %s %s", why.msg, kept.package, kept.version);
			*out = kept;
		} else {
			char line[256];
			int n = snprintf(line, sizeof(line), "%s %s\n", out->package, out->version);
			if (fs_write_atomic(file, line, (size_t)n, 0644, NULL))
				log_warn("cannot remember the resolution of %s in %s", meta, file);
		}
	}
	return sha256_file(out->path, out->sha256, err);
}

int img_deb_fetch_kernel(const char *flavour, const char *deb_arch,
			 const struct img_apt_source *src, struct img_deb *out,
			 img_progress_fn progress, void *ctx, struct vmci_err *err)
{
	char meta[96];
	snprintf(meta, sizeof(meta), "linux-image-%s-%s", flavour, deb_arch);
	return fetch_cached(meta, true, deb_arch, src, out, progress, ctx, err);
}

int img_deb_fetch_package(const char *package, const char *deb_arch, struct img_deb *out,
			  img_progress_fn progress, void *ctx, struct vmci_err *err)
{
	return fetch_cached(package, false, deb_arch, NULL, out, progress, ctx, err);
}

/* ---- reading a package ------------------------------------------------- */

int img_archive_read_entry(struct archive *a, const char *what, size_t max, struct buf *out,
			   struct vmci_err *err)
{
	size_t start = out->len;
	for (;;) {
		if (buf_reserve(out, 65536))
			return vmci_err_set(err, ENOMEM, "out of memory reading %s", what);
		la_ssize_t n = archive_read_data(a, out->data + out->len, 65536);
		if (n < 0)
			return vmci_err_set(err, EIO, "cannot read %s: %s", what,
					    archive_error_string(a));
		if (n == 0)
			return 0;
		out->len += (size_t)n;
		if (out->len - start > max)
			return vmci_err_set(err, EFBIG, "%s is larger than %zu bytes", what, max);
	}
}

/* The inner reader's source: the current member of the outer (ar) reader. */
struct member_src {
	struct archive *outer;
	uint8_t chunk[65536];
};

static la_ssize_t member_read(struct archive *inner, void *data, const void **out)
{
	struct member_src *src = data;
	la_ssize_t n = archive_read_data(src->outer, src->chunk, sizeof(src->chunk));
	if (n < 0) {
		archive_set_error(inner, EIO, "%s", archive_error_string(src->outer));
		return -1;
	}
	*out = src->chunk;
	return n;
}

static int read_data_tar(const char *deb, struct archive *outer, img_deb_entry_fn fn, void *ctx,
			 struct vmci_err *err)
{
	struct member_src *src = malloc(sizeof(*src));
	struct archive *in = archive_read_new();
	if (!src || !in) {
		free(src);
		archive_read_free(in);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	src->outer = outer;
	archive_read_support_filter_all(in);
	archive_read_support_format_tar(in);
	int rc = 0;
	if (archive_read_open(in, src, NULL, member_read, NULL) != ARCHIVE_OK) {
		rc = vmci_err_set(err, EINVAL, "cannot read data.tar of %s: %s", deb,
				  archive_error_string(in));
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
		const char *path = archive_entry_pathname(e);
		if (!path)
			continue;
		while (path[0] == '.' && path[1] == '/')
			path += 2;
		while (path[0] == '/')
			path++;
		if (!path[0])
			continue;
		rc = fn(ctx, path, in, e, err);
		if (rc)
			break;
	}
	if (!rc && r != ARCHIVE_EOF)
		rc = vmci_err_set(err, EIO,
				  "cannot read data.tar of %s: %s (delete it to download it again)",
				  deb, archive_error_string(in));
out:
	archive_read_free(in);
	free(src);
	return rc > 0 ? 0 : rc;
}

int img_deb_read(const char *deb, img_deb_entry_fn fn, void *ctx, struct vmci_err *err)
{
	struct archive *ar = archive_read_new();
	if (!ar)
		return vmci_err_set(err, ENOMEM, "out of memory");
	archive_read_support_format_ar(ar);
	int rc = -ENOENT;
	if (archive_read_open_filename(ar, deb, 65536) != ARCHIVE_OK) {
		rc = vmci_err_set(err, EINVAL, "cannot open Debian package %s: %s", deb,
				  archive_error_string(ar));
		goto out;
	}
	struct archive_entry *e;
	while (archive_read_next_header(ar, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		if (name && !strncmp(name, "data.tar", 8)) {
			rc = read_data_tar(deb, ar, fn, ctx, err);
			goto out;
		}
	}
	rc = vmci_err_set(err, EINVAL, "%s has no data.tar member (not a Debian package?): %s", deb,
			  archive_error_string(ar) ? archive_error_string(ar) : "end of archive");
out:
	archive_read_free(ar);
	return rc;
}

/* ---- the kernel in a linux-image package ------------------------------- */

struct kernel_ctx {
	const char *deb;
	const char *vmlinuz_out;
	struct img_kmods *mods;
	char *release;
	size_t release_size;
	bool modules_only; /* a second pass, for modules found needed late */
	int missing;	   /* in that pass: how many are still to be found */
	struct buf raw, ko;
};

static int write_vmlinuz(struct kernel_ctx *k, struct archive *a, struct vmci_err *err)
{
	int fd = open(k->vmlinuz_out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot create %s", k->vmlinuz_out);
	const void *block;
	size_t size;
	la_int64_t off;
	int r, rc = 0;
	while (!rc && (r = archive_read_data_block(a, &block, &size, &off)) == ARCHIVE_OK) {
		/* A short write is retried: the next one says why (ENOSPC) if it fails. */
		for (size_t done = 0; done < size;) {
			ssize_t n =
			    pwrite(fd, (const char *)block + done, size - done, off + (off_t)done);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				rc = vmci_err_errno(err, n < 0 ? errno : EIO, "cannot write %s",
						    k->vmlinuz_out);
				break;
			}
			done += (size_t)n;
		}
	}
	if (!rc && r != ARCHIVE_EOF)
		rc = vmci_err_set(err, EIO, "cannot read the kernel from %s: %s", k->deb,
				  archive_error_string(a));
	if (!rc && fsync(fd) != 0)
		rc = vmci_err_errno(err, errno, "cannot sync %s", k->vmlinuz_out);
	close(fd);
	return rc;
}

/* "lib/modules/REL/kernel/x/y.ko" (or under usr/) -> "kernel/x/y.ko", else NULL. */
static const char *module_relpath(const char *path)
{
	if (!strncmp(path, "usr/", 4))
		path += 4;
	if (strncmp(path, "lib/modules/", 12))
		return NULL;
	const char *rel = strchr(path + 12, '/');
	return rel && !strncmp(rel + 1, "kernel/", 7) ? rel + 1 : NULL;
}

/* "lib/modules/REL/modules.builtin" (or under usr/): the modules built into the kernel. */
static bool is_modules_builtin(const char *path)
{
	if (!strncmp(path, "usr/", 4))
		path += 4;
	const char *rel = strncmp(path, "lib/modules/", 12) ? NULL : strchr(path + 12, '/');
	return rel && !strcmp(rel, "/modules.builtin");
}

static int kernel_entry(void *ctx, const char *path, struct archive *a, struct archive_entry *e,
			struct vmci_err *err)
{
	struct kernel_ctx *k = ctx;
	if (archive_entry_filetype(e) != AE_IFREG)
		return 0;
	if (!k->modules_only && !strncmp(path, "boot/vmlinuz-", 13)) {
		snprintf(k->release, k->release_size, "%s", path + 13);
		return write_vmlinuz(k, a, err);
	}
	if (!k->modules_only && is_modules_builtin(path)) {
		k->raw.len = 0;
		int rc = img_archive_read_entry(a, path, MAX_MODULE_BYTES, &k->raw, err);
		return rc ? rc
			  : img_kmods_builtin(k->mods, (const char *)k->raw.data, k->raw.len, err);
	}
	const char *rel = module_relpath(path);
	if (!rel || !img_kmod_is_module(rel))
		return 0;
	k->raw.len = 0;
	k->ko.len = 0;
	int rc = img_archive_read_entry(a, path, MAX_MODULE_BYTES, &k->raw, err);
	if (!rc)
		rc = img_kmod_decompress(rel, k->raw.data, k->raw.len, MAX_MODULE_BYTES, &k->ko,
					 err);
	if (!rc)
		rc = img_kmods_add(k->mods, rel, k->ko.data, k->ko.len, err);
	if (rc < 0) {
		vmci_err_wrap(err, "in %s", k->deb);
		return rc;
	}
	/* The second pass ends as soon as it has what it came for. */
	return k->modules_only && rc == 1 && --k->missing == 0 ? 1 : 0;
}

int img_deb_extract_kernel(const char *deb, const char *vmlinuz_out, struct img_kmods *mods,
			   char *release, size_t release_size, struct vmci_err *err)
{
	struct kernel_ctx k = {.deb = deb,
			       .vmlinuz_out = vmlinuz_out,
			       .mods = mods,
			       .release = release,
			       .release_size = release_size};
	release[0] = 0;
	int rc = img_deb_read(deb, kernel_entry, &k, err);
	if (!rc && !release[0])
		rc = vmci_err_set(err, ENOENT,
				  "%s has no boot/vmlinuz-* (is it a linux-image package?)", deb);
	if (!rc)
		rc = img_kmods_order(mods, err);
	if (rc > 0) {
		/* Some needed modules came before whatever needs them: read them again. */
		log_debug("reading %s again for %d kernel modules", deb, rc);
		k.modules_only = true;
		k.missing = rc;
		rc = img_deb_read(deb, kernel_entry, &k, err);
		if (!rc)
			rc = img_kmods_order(mods, err);
		if (rc > 0)
			rc = vmci_err_set(err, EIO, "%d kernel modules of %s could not be kept", rc,
					  deb);
	}
	/* A misspelt module would otherwise be taken for a built-in one, silently. */
	const char *unknown;
	for (size_t i = 0; !rc && (unknown = img_kmods_unknown(mods, i)) != NULL; i++)
		log_warn("kernel module '%s' (in kernel.modules of the recipe) is neither in %s "
			 "nor built into its kernel %s: it is left out (check its name)",
			 unknown, deb, release);
	buf_free(&k.raw);
	buf_free(&k.ko);
	return rc;
}
