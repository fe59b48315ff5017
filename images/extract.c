/*
 * Extracting a root filesystem archive into a tree, as root would: owners,
 * modes, setuid bits, links, extended attributes and ACLs are kept.
 *
 * The archive is untrusted. Paths that would leave the tree (absolute
 * paths, "..", links through symlinks) are refused by libarchive's secure
 * options. Device nodes are never made on the host: a node under the tree
 * would be a real device of this machine for as long as the import runs.
 * Each one becomes an empty placeholder file, written through libarchive
 * like any entry (so the same path checks apply), and is recorded; the
 * root disk builder makes the real node inside the image
 * (img_rootdisk_add_nodes).
 *
 * libarchive reports a failed write(2) (a full disk) as ARCHIVE_WARN, the
 * level it also uses for harmless things (a time it could not restore).
 * A write that loses data fails the whole extraction here, whatever level
 * libarchive gave it: an image with a silently truncated file is worse
 * than no image.
 */
#include "images/internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void img_nodes_free(struct img_nodes *nodes)
{
	for (size_t i = 0; i < nodes->n; i++)
		free(nodes->v[i].path);
	free(nodes->v);
	nodes->v = NULL;
	nodes->n = 0;
}

static struct img_node *node_find(const struct img_nodes *nodes, const char *path)
{
	for (size_t i = 0; i < nodes->n; i++)
		if (!strcmp(nodes->v[i].path, path))
			return &nodes->v[i];
	return NULL;
}

static int node_add(struct img_nodes *nodes, const struct img_node *node, const char *path)
{
	struct img_node *v = realloc(nodes->v, (nodes->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	nodes->v = v;
	v[nodes->n] = *node;
	if (!(v[nodes->n].path = strdup(path)))
		return -ENOMEM;
	nodes->n++;
	return 0;
}

/* True when errno-style code e means bytes that should be on disk are not. */
static bool lost_data(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EIO || e == EFBIG || e == EROFS;
}

/* The message for a failure of the writer w on entry path. */
static int write_failed(struct archive *w, const char *path, const char *source, const char *target,
			struct vmci_err *err)
{
	int e = archive_errno(w);
	if (e == ENOSPC || e == EDQUOT)
		return vmci_err_set(err, e,
				    "cannot extract %s from %s into %s: %s (free some space there "
				    "and import again)",
				    path, source, target, strerror(e));
	if (e > 0)
		return vmci_err_errno(err, e, "cannot extract %s from %s into %s", path, source,
				      target);
	return vmci_err_set(err, EIO, "cannot extract %s from %s: %s", path, source,
			    archive_error_string(w));
}

/* Strips leading "/" and "./"; NULL for the root itself. */
static const char *relative(const char *path)
{
	while (path && (path[0] == '/' || (path[0] == '.' && path[1] == '/')))
		path += path[0] == '/' ? 1 : 2;
	return path && path[0] && strcmp(path, ".") ? path : NULL;
}

/*
 * Drops the nodes whose placeholder a later entry replaced (the archive's
 * last word on a path wins), and checks that every other one sits in real
 * directories, as the disk builder expects.
 */
static int settle_nodes(const char *target, struct img_nodes *nodes, struct vmci_err *err)
{
	size_t kept = 0;
	for (size_t i = 0; i < nodes->n; i++) {
		struct img_node *n = &nodes->v[i];
		char full[PATH_MAX];
		struct stat st;
		fs_path(full, sizeof(full), "%s/%s", target, n->path);
		if (lstat(full, &st) == 0 && S_ISREG(st.st_mode) && st.st_ino == n->ino &&
		    st.st_size == 0)
			nodes->v[kept++] = *n;
		else
			free(n->path);
	}
	nodes->n = kept;
	for (size_t i = 0; i < nodes->n; i++) {
		char full[PATH_MAX];
		fs_path(full, sizeof(full), "%s/%s", target, nodes->v[i].path);
		for (char *slash = strchr(full + strlen(target) + 1, '/'); slash;
		     slash = strchr(slash + 1, '/')) {
			struct stat st;
			*slash = 0;
			bool dir = lstat(full, &st) == 0 && S_ISDIR(st.st_mode);
			*slash = '/';
			if (!dir)
				return vmci_err_set(
				    err, EINVAL,
				    "cannot keep the device node %s: a parent of it "
				    "is not a directory",
				    nodes->v[i].path);
		}
	}
	return 0;
}

/* True when debugfs, which makes the nodes, can be given path (see img_rootdisk_add_nodes). */
static bool debugfs_safe(const char *path)
{
	for (const char *p = path; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/*
 * Turns a device entry into its placeholder and records the node; or, for
 * a hard link to a recorded node, records another node like it. Returns 1
 * when a node was recorded, 0 when the entry is not one.
 */
static int divert_node(struct archive_entry *e, const char *path, const char *hard_rel,
		       struct img_nodes *nodes, struct vmci_err *err)
{
	struct img_node node;
	if (hard_rel) {
		const struct img_node *to = node_find(nodes, hard_rel);
		if (!to)
			return 0;
		node = *to;
	} else {
		node = (struct img_node){
		    .mode = (unsigned)archive_entry_mode(e) & (S_IFMT | 07777),
		    .major = (unsigned)archive_entry_rdevmajor(e),
		    .minor = (unsigned)archive_entry_rdevminor(e),
		    .uid = (unsigned)archive_entry_uid(e),
		    .gid = (unsigned)archive_entry_gid(e),
		    .mtime = archive_entry_mtime(e) > 0 ? (long long)archive_entry_mtime(e) : 0,
		};
	}
	if (!debugfs_safe(path))
		return vmci_err_set(err, EINVAL,
				    "cannot keep the device node '%s': its name holds a quote, a "
				    "backslash or a control character",
				    path);
	if (!hard_rel) {
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0600);
		archive_entry_set_size(e, 0);
		archive_entry_set_rdev(e, 0);
	}
	if (node_add(nodes, &node, path))
		return vmci_err_set(err, ENOMEM, "out of memory");
	return 1;
}

int img_extract_rootfs(const char *source, const char *target, const struct img_build *b,
		       long long *bytes, struct img_nodes *nodes, struct vmci_err *err)
{
	struct archive *a = archive_read_new(), *w = archive_write_disk_new();
	if (!a || !w) {
		archive_read_free(a);
		archive_write_free(w);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	archive_write_disk_set_options(
	    w, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
		   ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
		   ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_UNLINK);
	archive_write_disk_set_standard_lookup(w);
	int rc = 0;
	long long entries = 0;
	*bytes = 0;
	if (archive_read_open_filename(a, source, 1 << 16) != ARCHIVE_OK) {
		rc = vmci_err_set(err, EINVAL,
				  "cannot read %s as a root filesystem archive or a disk: %s",
				  source, archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int r;
	while (!rc && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		/*
		 * Every path, and every hard link's target, is put under target. The
		 * entry's own strings are replaced below: path is a copy.
		 */
		char path[PATH_MAX], full[PATH_MAX], link[PATH_MAX];
		const char *rel = relative(archive_entry_pathname(e));
		if (!rel)
			continue;
		if (fs_path(path, sizeof(path), "%s", rel) ||
		    fs_path(full, sizeof(full), "%s/%s", target, path)) {
			rc =
			    vmci_err_set(err, ENAMETOOLONG, "path too long in %s: %s", source, rel);
			break;
		}
		archive_entry_copy_pathname(e, full);
		char hard_path[PATH_MAX];
		bool is_link = archive_entry_hardlink(e) != NULL;
		if (is_link) {
			const char *hard = relative(archive_entry_hardlink(e));
			if (!hard || fs_path(hard_path, sizeof(hard_path), "%s", hard) ||
			    fs_path(link, sizeof(link), "%s/%s", target, hard_path)) {
				rc = vmci_err_set(err, EINVAL, "bad hard link %s in %s", path,
						  source);
				break;
			}
			archive_entry_copy_hardlink(e, link);
		}
		int node = 0;
		mode_t type = archive_entry_filetype(e);
		if (is_link || type == AE_IFCHR || type == AE_IFBLK)
			node = divert_node(e, path, is_link ? hard_path : NULL, nodes, err);
		if (node < 0) {
			rc = node;
			break;
		}
		r = archive_write_header(w, e);
		if (r == ARCHIVE_WARN && !lost_data(archive_errno(w))) {
			log_warn("%s: %s", path, archive_error_string(w));
		} else if (r != ARCHIVE_OK) {
			rc = write_failed(w, path, source, target, err);
			break;
		}
		const void *block;
		size_t size;
		la_int64_t off;
		bool written = true;
		while ((r = archive_read_data_block(a, &block, &size, &off)) == ARCHIVE_OK) {
			/* Any failure here is data missing from the file. */
			if (archive_write_data_block(w, block, size, off) != ARCHIVE_OK) {
				written = false;
				break;
			}
			*bytes += (long long)size;
		}
		if (!written) {
			rc = write_failed(w, path, source, target, err);
			break;
		}
		if (r != ARCHIVE_EOF) {
			rc = vmci_err_set(err, EIO, "cannot read %s from %s: %s", path, source,
					  archive_error_string(a));
			break;
		}
		r = archive_write_finish_entry(w);
		if (r == ARCHIVE_WARN && !lost_data(archive_errno(w))) {
			log_warn("%s: %s", path, archive_error_string(w));
		} else if (r != ARCHIVE_OK) {
			rc = write_failed(w, path, source, target, err);
			break;
		}
		struct stat st;
		if (node && lstat(full, &st) == 0)
			nodes->v[nodes->n - 1].ino = st.st_ino;
		if (++entries % 1000 == 0 && b)
			img_progress(b, "extracting root filesystem", entries, 0);
	}
	if (!rc && r != ARCHIVE_EOF)
		rc = vmci_err_set(err, EINVAL, "cannot read %s: %s", source,
				  archive_error_string(a));
	if (!rc && entries == 0)
		rc = vmci_err_set(err, EINVAL, "%s holds no files: not a root filesystem", source);
	if (!rc && archive_write_close(w) != ARCHIVE_OK)
		rc = write_failed(w, "the last entries", source, target, err);
	if (!rc)
		rc = settle_nodes(target, nodes, err);
out:
	archive_read_free(a);
	archive_write_free(w);
	return rc;
}
