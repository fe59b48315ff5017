/*
 * qcow2 overlays written in-process: the same file `qemu-img create -f
 * qcow2 [-b BACKING -F FORMAT]` makes with its defaults, without starting
 * a process (which was most of a clone's time). The format is QEMU's
 * docs/interop/qcow2.txt; the layout is qemu-img's:
 *
 *   cluster 0   header (version 3, 112 bytes), header extensions (the
 *               backing file's format, then the end marker), the backing
 *               file's name
 *   cluster 1   refcount table: one entry, pointing at cluster 2
 *   cluster 2   refcount block: 16-bit refcounts, 1 for each metadata cluster
 *   cluster 3+  L1 table, all zero: nothing allocated, every read goes to
 *               the backing file (or reads zeros)
 *
 * Only the non-zero bytes are written; the rest is a hole that reads as
 * zeros. The file is not synced: it is a fresh clone nothing depends on
 * yet, and QEMU flushes it with the guest's writes.
 */
#include "images/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLUSTER_BITS	   16
#define CLUSTER_SIZE	   (1LL << CLUSTER_BITS)
#define HEADER_LENGTH	   112 /* the v3 header with its compression type byte, padded */
#define REFCOUNT_ORDER	   4   /* 16-bit refcounts */
#define EXT_BACKING_FORMAT 0xe2792acau
#define MAX_BACKING_NAME   1023			/* QEMU refuses longer backing file names */
#define MAX_L1_BYTES	   (32LL * 1024 * 1024) /* QEMU's QCOW_MAX_L1_SIZE */
#define REFTABLE_OFFSET	   (1 * CLUSTER_SIZE)
#define REFBLOCK_OFFSET	   (2 * CLUSTER_SIZE)
#define L1_OFFSET	   (3 * CLUSTER_SIZE)

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* The file is new and only ours: a seek and common's write-all put data at off. */
static int write_at(int fd, const void *data, size_t len, off_t off)
{
	if (lseek(fd, off, SEEK_SET) != off)
		return -errno;
	return io_write_all(fd, data, len);
}

int img_qcow2_create(const char *path, long long size, const char *backing,
		     const char *backing_format, struct vmci_err *err)
{
	size_t name_len = backing ? strlen(backing) : 0;
	size_t fmt_len = backing ? strlen(backing_format) : 0;
	if (name_len > MAX_BACKING_NAME)
		return vmci_err_set(err, ENAMETOOLONG,
				    "cannot create %s: the backing file name %s is longer than "
				    "qcow2 allows (%d bytes)",
				    path, backing, MAX_BACKING_NAME);
	if (backing && (fmt_len == 0 || fmt_len > 16))
		return vmci_err_set(err, EINVAL, "cannot create %s: bad backing format '%s'", path,
				    backing_format);
	/* One L2 table maps CLUSTER_SIZE / 8 clusters. */
	long long l2_span = CLUSTER_SIZE * (CLUSTER_SIZE / 8);
	if (size <= 0 || size > MAX_L1_BYTES / 8 * l2_span)
		return vmci_err_set(err, EINVAL, "cannot create %s: bad virtual size %lld bytes",
				    path, size);
	size = (size + 511) / 512 * 512; /* QEMU counts disks in 512-byte sectors */
	long long l1_entries = (size + l2_span - 1) / l2_span;
	long long l1_clusters = (l1_entries * 8 + CLUSTER_SIZE - 1) / CLUSTER_SIZE;
	long long metadata_clusters = 3 + l1_clusters;

	/* Cluster 0: header, extensions, backing file name. */
	uint8_t head[HEADER_LENGTH + 3 * 8 + 16 + MAX_BACKING_NAME] = {0};
	size_t at = HEADER_LENGTH;
	if (backing) {
		put_be(head + at, EXT_BACKING_FORMAT, 4);
		put_be(head + at + 4, fmt_len, 4);
		memcpy(head + at + 8, backing_format, fmt_len);
		at += 8 + (fmt_len + 7) / 8 * 8;
	}
	at += 8; /* the end of the extensions: type 0, length 0 */
	memcpy(head, "QFI\xfb", 4);
	put_be(head + 4, 3, 4);			    /* version */
	put_be(head + 8, backing ? at : 0, 8);	    /* backing_file_offset */
	put_be(head + 16, name_len, 4);		    /* backing_file_size */
	put_be(head + 20, CLUSTER_BITS, 4);	    /* cluster_bits */
	put_be(head + 24, (uint64_t)size, 8);	    /* size */
	put_be(head + 36, (uint64_t)l1_entries, 4); /* l1_size */
	put_be(head + 40, L1_OFFSET, 8);	    /* l1_table_offset */
	put_be(head + 48, REFTABLE_OFFSET, 8);	    /* refcount_table_offset */
	put_be(head + 56, 1, 4);		    /* refcount_table_clusters */
	put_be(head + 96, REFCOUNT_ORDER, 4);	    /* refcount_order */
	put_be(head + 100, HEADER_LENGTH, 4);	    /* header_length */
	if (backing)
		memcpy(head + at, backing, name_len);
	at += name_len;

	uint8_t reftable[8];
	put_be(reftable, REFBLOCK_OFFSET, 8);
	uint8_t *refblock = malloc((size_t)metadata_clusters * 2);
	if (!refblock)
		return vmci_err_set(err, ENOMEM, "out of memory");
	for (long long i = 0; i < metadata_clusters; i++)
		put_be(refblock + 2 * i, 1, 2);

	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		free(refblock);
		return vmci_err_errno(err, errno, "cannot create %s", path);
	}
	int rc = write_at(fd, head, at, 0);
	if (!rc)
		rc = write_at(fd, reftable, sizeof(reftable), REFTABLE_OFFSET);
	if (!rc)
		rc = write_at(fd, refblock, (size_t)metadata_clusters * 2, REFBLOCK_OFFSET);
	/* The L1 table is zeros: a hole up to its end, as long as qemu-img writes it. */
	if (!rc && ftruncate(fd, (off_t)(L1_OFFSET + l1_entries * 8)) != 0)
		rc = -errno;
	free(refblock);
	if (close(fd) != 0 && !rc)
		rc = -errno;
	if (rc) {
		unlink(path);
		return vmci_err_errno(err, -rc, "cannot write the qcow2 overlay %s", path);
	}
	return 0;
}
