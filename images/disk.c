/*
 * The disk facts of the store: a disk file's format, virtual size and
 * backing file read from its qcow2 header (no qemu-img process), its usage
 * on disk, and the backing chains between blobs.
 */
#include "images/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

int img_disk_probe(const char *path, struct img_disk *out, struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot open the disk %s", path);
	struct stat st;
	uint8_t h[32];
	int rc = 0;
	if (fstat(fd, &st) != 0) {
		rc = vmci_err_errno(err, errno, "cannot stat the disk %s", path);
	} else if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, "QFI\xfb", 4)) {
		snprintf(out->format, sizeof(out->format), "raw");
		out->virtual_size = st.st_size;
	} else {
		/* qcow2 header (docs/interop/qcow2.txt): version, backing offset and size, size. */
		uint64_t version = be(h + 4, 4), off = be(h + 8, 8), len = be(h + 16, 4);
		snprintf(out->format, sizeof(out->format), "qcow2");
		out->virtual_size = (long long)be(h + 24, 8);
		char name[PATH_MAX];
		if (version < 2 || version > 3 || len >= sizeof(name) ||
		    (off && (off > (uint64_t)st.st_size || len == 0))) {
			rc = vmci_err_set(err, EINVAL, "%s has a malformed qcow2 header", path);
		} else if (off) {
			if (pread(fd, name, len, (off_t)off) != (ssize_t)len) {
				rc =
				    vmci_err_errno(err, errno ? errno : EIO,
						   "cannot read the backing file name of %s", path);
			} else {
				name[len] = 0;
				/*
				 * A relative backing file is relative to the overlay's directory.
				 */
				const char *slash = strrchr(path, '/');
				if (name[0] == '/' || !slash)
					snprintf(out->backing, sizeof(out->backing), "%s", name);
				else if (fs_path(out->backing, sizeof(out->backing), "%.*s/%s",
						 (int)(slash - path), path, name))
					rc = vmci_err_set(err, ENAMETOOLONG,
							  "backing path too long");
			}
		}
	}
	close(fd);
	return rc;
}

long long img_disk_usage(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	long long total = (long long)st.st_blocks * 512;
	if (!S_ISDIR(st.st_mode))
		return total;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		char child[PATH_MAX];
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    !fs_path(child, sizeof(child), "%s/%s", path, de->d_name))
			total += img_disk_usage(child);
	}
	if (d)
		closedir(d);
	return total;
}

/* The files of a blob other than its kernel, initramfs and manifest: its disks. */
bool img_is_disk_file(const char *file)
{
	return file[0] != '.' && strcmp(file, IMG_KERNEL_FILE) && strcmp(file, IMG_INITRD_FILE) &&
	       strcmp(file, IMG_MANIFEST_FILE);
}

/* The digest of the blob path lies in, or false when it is outside blobs/. */
static bool digest_of(const char *path, char digest[SHA256_HEX_LEN + 1])
{
	char blobs[PATH_MAX];
	if (fs_path(blobs, sizeof(blobs), "%s/blobs/sha256-", img_store_root()))
		return false;
	size_t n = strlen(blobs);
	if (strncmp(path, blobs, n) || strspn(path + n, "0123456789abcdef") != SHA256_HEX_LEN ||
	    path[n + SHA256_HEX_LEN] != '/')
		return false;
	snprintf(digest, SHA256_HEX_LEN + 1, "%.*s", SHA256_HEX_LEN, path + n);
	return true;
}

int img_blob_parents(const char *digest, char (**parents)[SHA256_HEX_LEN + 1], size_t *count,
		     struct vmci_err *err)
{
	char dir[PATH_MAX];
	if (img_blob_path(digest, dir, sizeof(dir)))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", img_store_root());
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : vmci_err_errno(err, errno, "cannot open %s", dir);
	int rc = 0;
	struct dirent *de;
	while (!rc && (de = readdir(d)) != NULL) {
		struct img_disk disk = {0};
		if (!img_is_disk_file(de->d_name) ||
		    fs_path(disk.backing, sizeof(disk.backing), "%s/%s", dir, de->d_name))
			continue;
		/* Follow the chain; a bound stops a loop someone made by hand. */
		for (int depth = 0; depth < 32 && disk.backing[0]; depth++) {
			char next[PATH_MAX], parent[SHA256_HEX_LEN + 1];
			snprintf(next, sizeof(next), "%s", disk.backing);
			if (img_disk_probe(next, &disk, NULL) != 0)
				break;
			if (!disk.backing[0] || !digest_of(disk.backing, parent))
				continue;
			char(*grown)[SHA256_HEX_LEN + 1] =
			    realloc(*parents, (*count + 1) * sizeof(**parents));
			if (!grown) {
				rc = vmci_err_set(err, ENOMEM, "out of memory");
				break;
			}
			*parents = grown;
			memcpy((*parents)[(*count)++], parent, sizeof(parent));
		}
	}
	closedir(d);
	return rc;
}
