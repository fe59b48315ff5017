/* Copy-on-write clones: qcow2 overlays over read-only golden disks. */
#include "images/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int img_clone_file(const char *backing, const char *overlay_path, int size_mb,
		   struct vmci_err *err)
{
	char size[32];
	snprintf(size, sizeof(size), "%dM", size_mb > 0 ? size_mb : IMG_SCRATCH_DISK_MB);
	char fmt[64] = "";
	char *with_backing[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b",
				(char *)backing, (char *)overlay_path, NULL};
	char *empty[] = {"qemu-img", "create", "-q", "-f", "qcow2", (char *)overlay_path, size, NULL};
	if (backing) {
		/* The backing format is named so qemu never probes a guest-written raw disk. */
		struct buf head = {0};
		fs_read_file(backing, 4, &head, NULL); /* -EFBIG past 4 bytes, with them read */
		bool is_qcow2 = head.len >= 4 && !memcmp(head.data, "QFI\xfb", 4);
		buf_free(&head);
		snprintf(fmt, sizeof(fmt), "%s", is_qcow2 ? "qcow2" : "raw");
	}
	int rc = run_command(backing ? with_backing : empty, NULL, err);
	if (rc)
		vmci_err_wrap(err, "cannot create the clone %s", overlay_path);
	return rc;
}

int img_clone(const struct img_boot *img, const char *overlay_path, struct vmci_err *err)
{
	return img_clone_file(img->disk[0] ? img->disk : NULL, overlay_path, IMG_SCRATCH_DISK_MB,
			      err);
}

int img_clone_release(const char *overlay_path, struct vmci_err *err)
{
	if (unlink(overlay_path) != 0 && errno != ENOENT)
		return vmci_err_errno(err, errno, "cannot remove the clone %s", overlay_path);
	return 0;
}
