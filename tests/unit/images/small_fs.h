/*
 * A small file system for tests of a full disk: a tmpfs of a given size
 * mounted on a directory (the tests run as root). Where mounting is not
 * possible the test says why and is skipped, visibly.
 * Include after cmocka.h and common/common.h.
 */
#ifndef VMCI_TESTS_SMALL_FS_H
#define VMCI_TESTS_SMALL_FS_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

/* Mounts a tmpfs of size ("1m") on dir, made when missing; skips the test when it cannot. */
#define small_fs_mount_or_skip(dir, size)                                                          \
	do {                                                                                       \
		if (!small_fs_mount(dir, size))                                                    \
			skip();                                                                    \
	} while (0)

static inline bool small_fs_mount(const char *dir, const char *size)
{
	char opts[64];
	snprintf(opts, sizeof(opts), "size=%s,mode=0755", size);
	if (fs_mkdir_p(dir, 0755, NULL) == 0 && mount("tmpfs", dir, "tmpfs", 0, opts) == 0)
		return true;
	print_message("SKIPPED: cannot mount a %s tmpfs on %s (%s); a full disk is not tested\n",
		      size, dir, strerror(errno));
	return false;
}

static inline void small_fs_umount(const char *dir)
{
	umount2(dir, MNT_DETACH);
}

#endif
