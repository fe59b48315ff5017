/*
 * Import: a root filesystem archive or a disk made into an image (the
 * tarball and disk rootfs of recipes use the same builder).
 *
 * What the source is comes from its first bytes, never from its name:
 *   - qcow2 ("QFI\xfb"), or a raw disk (an ext2/3/4 superblock, an MBR or
 *     GPT partition table): stored as a qcow2 disk, as it is;
 *   - anything else is read with libarchive (tar, tar.gz, tar.xz, tar.zst,
 *     zip, ...), extracted as root into a scratch tree with owners, modes,
 *     setuid bits, links and extended attributes (extract.c), and made an
 *     ext4 disk; its device nodes are made in the disk, never on the host.
 * The image boots the busybox-ARCH kernel and initramfs of its recipe, and
 * the agent switches into the disk: /dev/vda, or the Linux partition of a
 * partitioned disk.
 */
#include "images/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Enough of a disk's start to hold its partition table (GPT entries included). */
#define HEAD_BYTES (64 * 1024)

enum source_kind { SRC_ARCHIVE, SRC_QCOW2, SRC_RAW };

struct import_inputs {
	struct img_bootfiles *boot;
	enum source_kind kind;
	char source_sha[SHA256_HEX_LEN + 1];
	char cmdline[128]; /* for disks: where the root is */
	char format[16];   /* "qcow2", "raw", "archive" */
};

/* ---- what the source is ------------------------------------------------------ */

static bool at_offset(const uint8_t *head, size_t len, size_t off, const void *magic, size_t n)
{
	return len >= off + n && !memcmp(head + off, magic, n);
}

static uint64_t le_u(const uint8_t *p, int n)
{
	uint64_t v = 0;
	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
}

/* A GUID as the GPT stores it: the first three fields little-endian. */
static void guid_bytes(const char *s, uint8_t out[16])
{
	static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
	uint8_t raw[16] = {0};
	size_t i = 0;
	for (const char *p = s; p[0] && p[1] && i < sizeof(raw); p++) {
		if (*p == '-')
			continue;
		char hex[3] = {p[0], p[1], 0};
		raw[i++] = (uint8_t)strtoul(hex, NULL, 16);
		p++;
	}
	for (i = 0; i < 16; i++)
		out[i] = raw[order[i]];
}

/* The partition holding the root: 1-based, 0 when the disk is not partitioned. */
static int root_partition(const uint8_t *h, size_t len)
{
	static const uint8_t mbr_sig[2] = {0x55, 0xaa};
	if (at_offset(h, len, 512, "EFI PART", 8)) {
		/* Root partitions of either architecture first, then any Linux filesystem. */
		static const char *const types[] = {"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
						    "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
						    "0FC63DAF-8483-4772-8E79-3D69D8477DE4"};
		uint64_t lba = le_u(h + 512 + 72, 8), count = le_u(h + 512 + 80, 4),
			 size = le_u(h + 512 + 84, 4);
		for (size_t t = 0; t < ARRAY_LEN(types); t++) {
			uint8_t want[16];
			guid_bytes(types[t], want);
			for (uint64_t i = 0; size >= 16 && i < count && i < 256; i++) {
				uint64_t off = lba * 512 + i * size;
				if (off + 16 <= len && !memcmp(h + off, want, 16))
					return (int)i + 1;
			}
		}
		return 1;
	}
	if (at_offset(h, len, 510, mbr_sig, 2) && !at_offset(h, len, 1080, "\x53\xef", 2)) {
		for (int i = 0; i < 4; i++)
			if (h[446 + 16 * i + 4] == 0x83)
				return i + 1;
		return 1;
	}
	return 0;
}

/* Reads the first HEAD_BYTES of the disk's contents (through qemu-img for qcow2). */
static int disk_head(const char *path, bool qcow2, struct buf *out, struct vmci_err *err)
{
	if (!qcow2) {
		int rc = fs_read_file(path, HEAD_BYTES, out, NULL);
		return rc == 0 || rc == -EFBIG ? 0
					       : vmci_err_errno(err, -rc, "cannot read %s", path);
	}
	char tmp[PATH_MAX];
	const char *dir = getenv("TMPDIR");
	if (fs_path(tmp, sizeof(tmp), "%s/vmci-head-XXXXXX", dir && *dir ? dir : "/tmp"))
		return vmci_err_set(err, ENAMETOOLONG, "$TMPDIR is too long");
	int fd = mkstemp(tmp);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot create a temporary file");
	close(fd);
	unlink(tmp);
	char in[PATH_MAX + 8], of[PATH_MAX + 8], bs[32];
	snprintf(in, sizeof(in), "if=%s", path);
	snprintf(of, sizeof(of), "of=%s", tmp);
	snprintf(bs, sizeof(bs), "bs=%d", HEAD_BYTES);
	char *argv[] = {"qemu-img", "dd", "-f", "qcow2", "-O", "raw", bs, "count=1", in, of, NULL};
	int rc = run_command(argv, NULL, err);
	if (!rc) {
		rc = fs_read_file(tmp, HEAD_BYTES, out, NULL);
		rc = rc == -EFBIG ? 0 : rc;
	}
	unlink(tmp);
	return rc;
}

static int detect(const char *path, struct import_inputs *in, struct vmci_err *err)
{
	struct buf head = {0};
	int rc = fs_read_file(path, HEAD_BYTES, &head, NULL);
	if (rc && rc != -EFBIG) {
		buf_free(&head);
		return vmci_err_errno(err, -rc, "cannot read %s", path);
	}
	const uint8_t *h = head.data;
	size_t n = head.len;
	static const uint8_t gz[] = {0x1f, 0x8b}, xz[] = {0xfd, '7', 'z', 'X', 'Z', 0},
			     zst[] = {0x28, 0xb5, 0x2f, 0xfd}, mbr[] = {0x55, 0xaa};
	bool archive = at_offset(h, n, 0, gz, 2) || at_offset(h, n, 0, xz, 6) ||
		       at_offset(h, n, 0, zst, 4) || at_offset(h, n, 0, "BZh", 3) ||
		       at_offset(h, n, 0, "PK\3\4", 4) || at_offset(h, n, 257, "ustar", 5);
	rc = 0;
	if (at_offset(h, n, 0, "QFI\xfb", 4)) {
		in->kind = SRC_QCOW2;
	} else if (!archive &&
		   (at_offset(h, n, 1080, "\x53\xef", 2) || at_offset(h, n, 510, mbr, 2) ||
		    at_offset(h, n, 512, "EFI PART", 8))) {
		in->kind = SRC_RAW;
	} else {
		in->kind = SRC_ARCHIVE;
	}
	snprintf(in->format, sizeof(in->format), "%s",
		 in->kind == SRC_QCOW2 ? "qcow2"
		 : in->kind == SRC_RAW ? "raw"
				       : "archive");
	if (in->kind != SRC_ARCHIVE) {
		struct buf contents = {0};
		rc = disk_head(path, in->kind == SRC_QCOW2, &contents, err);
		int part = rc ? 0 : root_partition(contents.data, contents.len);
		bool ext = !rc && at_offset(contents.data, contents.len, 1080, "\x53\xef", 2);
		if (part)
			snprintf(in->cmdline, sizeof(in->cmdline), "vmci.root=/dev/vda%d", part);
		else if (ext)
			snprintf(in->cmdline, sizeof(in->cmdline), "%s", IMG_ROOT_CMDLINE);
		else
			snprintf(in->cmdline, sizeof(in->cmdline), "vmci.root=/dev/vda");
		buf_free(&contents);
	}
	buf_free(&head);
	return rc;
}

/* Room for the files, the filesystem's own needs and what jobs write. */
static long long disk_size_for(long long bytes)
{
	long long size = 2 * bytes + (256LL << 20);
	if (size < (1LL << 30))
		size = 1LL << 30;
	return (size + (256LL << 20) - 1) / (256LL << 20) * (256LL << 20);
}

/* ---- the builder --------------------------------------------------------------- */

int img_import_prepare(struct img_build *b, struct vmci_err *err)
{
	const struct img_spec *spec = b->recipe->spec;
	struct import_inputs *in = calloc(1, sizeof(*in));
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
	int rc = img_bootfiles_prepare(spec, NULL, b, digest, &in->boot, err);
	if (!rc)
		rc = detect(spec->source, in, err);
	if (!rc && spec->rootfs == IMG_ROOTFS_DISK && in->kind == SRC_ARCHIVE)
		rc = vmci_err_set(err, EINVAL,
				  "%s is not a qcow2 or raw disk (for a root filesystem archive, "
				  "use rootfs: {tarball: ...} in %s)",
				  spec->source, spec->file);
	if (!rc && spec->rootfs == IMG_ROOTFS_TARBALL && in->kind != SRC_ARCHIVE)
		rc = vmci_err_set(err, EINVAL,
				  "%s is a %s disk, not an archive (use rootfs: {disk: ...} in %s)",
				  spec->source, in->format, spec->file);
	if (!rc) {
		img_progress(b, "hashing the source", 0, 0);
		rc = sha256_file(spec->source, in->source_sha, err);
	}
	if (!rc) {
		char size[32];
		snprintf(size, sizeof(size), "%lld", spec->disk_size);
		img_digest_line(digest, "source", in->source_sha);
		img_digest_line(digest, "format", in->format);
		img_digest_line(digest, "disk-size", size);
		/*
		 * Extraction that fails on a full disk and keeps device nodes out of
		 * the host: archives imported before it may have made broken images,
		 * which a new import must not reuse.
		 */
		if (in->kind == SRC_ARCHIVE)
			img_digest_line(digest, "extract", "2");
	}
	sha256_finish(digest, b->digest);
	return rc;
}

/* The archive as an ext4 disk at qcow2 (through a raw one in a scratch tree). */
static int archive_to_disk(struct img_build *b, const char *qcow2, long long *size,
			   struct vmci_err *err)
{
	const struct img_spec *spec = b->recipe->spec;
	struct img_scratch work;
	char prefix[96], target[PATH_MAX], raw[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%s-%.12s", spec->name, b->digest);
	int rc = img_rootfs_scratch(prefix, &work, err);
	if (rc)
		return rc;
	if (fs_path(target, sizeof(target), "%s/target", work.path) ||
	    fs_path(raw, sizeof(raw), "%s/disk.raw", work.path))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", work.path);
	if (!rc && mkdir(target, 0755) != 0)
		rc = vmci_err_errno(err, errno, "cannot create %s", target);
	/* Symlinks in the path to it would trip the extractor's symlink checks. */
	char real[PATH_MAX];
	if (!rc && realpath(target, real))
		memcpy(target, real, sizeof(target));
	long long bytes = 0;
	struct img_nodes nodes = {0};
	if (!rc) {
		img_progress(b, "extracting root filesystem", 0, 0);
		rc = img_extract_rootfs(spec->source, target, b, &bytes, &nodes, err);
	}
	/* The root directory is the system's: not whatever mode the scratch had. */
	if (!rc && (chown(target, 0, 0) || chmod(target, 0755)))
		rc = vmci_err_errno(err, errno, "cannot set the owner of %s", target);
	struct buf os_release = {0};
	if (!rc && img_os_release_from_tree(target, &os_release) == 0)
		img_manifest_set_os(b->manifest, buf_cstr(&os_release));
	buf_free(&os_release);
	*size = spec->disk_size ? spec->disk_size : disk_size_for(bytes);
	if (!rc) {
		img_progress(b, "making ext4 root disk", 0, 0);
		rc = img_rootdisk_make(target, *size, raw, err);
	}
	if (!rc)
		rc = img_rootdisk_add_nodes(raw, &nodes, err);
	if (!rc)
		rc = img_rootdisk_to_qcow2(raw, "raw", qcow2, b, err);
	img_nodes_free(&nodes);
	img_rootfs_scratch_drop(&work);
	return rc;
}

int img_import_build(struct img_build *b, struct vmci_err *err)
{
	const struct img_spec *spec = b->recipe->spec;
	struct import_inputs *in = b->state;
	char disk[PATH_MAX];
	if (fs_path(disk, sizeof(disk), "%s/%s", b->dir, IMG_DISK_FILE))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", b->dir);
	int rc = img_bootfiles_write(in->boot, b, err);
	long long size = 0;
	if (!rc && in->kind == SRC_ARCHIVE) {
		rc = archive_to_disk(b, disk, &size, err);
		snprintf(in->cmdline, sizeof(in->cmdline), "%s", IMG_ROOT_CMDLINE);
	} else if (!rc) {
		rc = img_rootdisk_to_qcow2(spec->source, in->format, disk, b, err);
	}
	if (!rc)
		rc = img_rootdisk_setup(b, disk, in->cmdline, err);
	if (!rc) {
		json_object_set_new(b->manifest, "cmdline", json_string(in->cmdline));
		json_object_set_new(b->manifest, "disk_file", json_string(IMG_DISK_FILE));
		if (size)
			json_object_set_new(b->manifest, "disk_size", json_integer(size));
		json_object_set_new(b->manifest, "rootfs",
				    json_pack("{s:{s:s, s:s, s:s}}", "import", "source",
					      spec->source, "format", in->format, "sha256",
					      in->source_sha));
	}
	return rc;
}

void img_import_finish(struct img_build *b)
{
	struct import_inputs *in = b->state;
	if (in)
		img_bootfiles_free(in->boot);
	free(in);
	b->state = NULL;
}

/* ---- img_import ----------------------------------------------------------------- */

int img_import(const char *name, const char *source, img_progress_fn progress, void *ctx,
	       struct vmci_err *err)
{
	char real[PATH_MAX];
	int rc = img_recipe_path(name, real, sizeof(real), NULL);
	if (rc == 0)
		return vmci_err_set(err, EEXIST,
				    "'%s' is the name of the recipe %s: import under another name",
				    name, real);
	if (rc != -ENOENT)
		return vmci_err_set(err, EINVAL,
				    "bad image name '%s' (use letters, digits, '.', '_' and '-')",
				    name);
	struct stat st;
	if (!realpath(source, real) || stat(real, &st) != 0)
		return vmci_err_errno(err, errno, "cannot import %s", source);
	if (!S_ISREG(st.st_mode))
		return vmci_err_set(err, EINVAL,
				    "cannot import %s: not a file (give a root filesystem archive, "
				    "a qcow2 or a raw disk)",
				    source);
	/* The kernel and initramfs are busybox-x86_64's, as its recipe says. */
	struct import_inputs probe = {0};
	rc = detect(real, &probe, err);
	struct img_spec *spec = NULL;
	if (!rc)
		rc = img_spec_find("busybox-x86_64", &spec, err);
	if (rc)
		return rc;
	snprintf(spec->name, sizeof(spec->name), "%s", name);
	snprintf(spec->source, sizeof(spec->source), "%s", real);
	spec->rootfs = probe.kind == SRC_ARCHIVE ? IMG_ROOTFS_TARBALL : IMG_ROOTFS_DISK;
	struct img_recipe *r = img_recipe_new(spec, err);
	if (!r)
		return -ENOMEM;
	struct img_ensure_opts opts = {.progress = progress, .progress_ctx = ctx};
	struct img_boot boot;
	rc = img_ensure_recipe_with(r, &opts, &boot, err);
	img_recipe_free(r);
	return rc;
}
