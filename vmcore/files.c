/*
 * Files in and out of the guest as tar streams. The host side uses
 * libarchive: a thread writes (or extracts) the archive through a socket
 * pair while the channel loop moves the bytes to (or from) the agent.
 */
#include "vmcore/channel.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a guest may send back in one get: a runaway guest fails its job, not the host's disk. */
#define GET_MAX_BYTES (16LL * 1024 * 1024 * 1024)

/* ---- put ---------------------------------------------------------------- */

/* The RESULT that ends a put or a get. Returns 1 (done) or an error. */
static int take_result(const struct channel_op *op, const struct agent_frame *f,
		       struct agent_result *out, struct vmci_err *err)
{
	char why[128];
	if (f->h.type != AGENT_RESULT)
		return vmci_err_set(err, EPROTO, "the agent sent a %s frame while %s",
				    agent_type_name(f->h.type), op->what);
	if (agent_result_decode(f, out, why, sizeof(why)))
		return vmci_err_set(err, EPROTO, "the agent sent %s while %s", why, op->what);
	return 1;
}

static int on_put_frame(struct vm *vm, struct channel_op *op, const struct agent_frame *f,
			struct vmci_err *err)
{
	return take_result(op, f, op->ctx, err);
}

int vm_put_tar(struct vm *vm, int fd, const char *guest_dir, struct vmci_err *err)
{
	char what[256];
	snprintf(what, sizeof(what), "copying files into %s", guest_dir);
	struct agent_result ctx = {0};
	struct channel_op op = {
	    .what = what,
	    .stream = channel_new_stream(vm),
	    .on_frame = on_put_frame,
	    .ctx = &ctx,
	    .input_fd = fd,
	    .input_type = AGENT_PUT_DATA,
	};
	channel_begin(vm);
	agent_put_str(&vm->w, guest_dir);
	int rc = channel_queue(vm, AGENT_PUT, op.stream, err);
	if (!rc)
		rc = channel_run(vm, &op, err);
	if (!rc && ctx.status != 0)
		rc = vmci_err_set(err, ctx.status, "copying files into %s failed in the guest: %s",
				  guest_dir, *ctx.message ? ctx.message : strerror(ctx.status));
	agent_result_free(&ctx);
	return rc;
}

struct tar_job {
	int fd; /* our end of the socket pair */
	const char *dir;
	int rc;
	char error[512];
};

static la_ssize_t sock_write(struct archive *a, void *client, const void *data, size_t len)
{
	struct tar_job *job = client;
	int rc = io_write_all(job->fd, data, len);
	if (rc) {
		archive_set_error(a, -rc, "the transfer stopped: %s", strerror(-rc));
		return -1;
	}
	return (la_ssize_t)len;
}

/* Writes the contents of job->dir (not the directory itself) as a pax tar. */
static void *tar_writer_thread(void *arg)
{
	struct tar_job *job = arg;
	struct archive *out = archive_write_new();
	struct archive *disk = archive_read_disk_new();
	archive_write_set_format_pax_restricted(out);
	archive_write_set_bytes_per_block(out, 0); /* no padding to 10 KiB blocks */
	archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
	archive_read_disk_set_symlink_physical(disk);
	archive_read_disk_set_standard_lookup(disk);
	job->rc = -1;
	if (archive_write_open(out, job, NULL, sock_write, NULL) != ARCHIVE_OK ||
	    archive_read_disk_open(disk, job->dir) != ARCHIVE_OK) {
		snprintf(job->error, sizeof(job->error), "%s",
			 archive_error_string(disk) ? archive_error_string(disk)
						    : archive_error_string(out));
		goto done;
	}
	size_t prefix = strlen(job->dir);
	struct archive_entry *entry = archive_entry_new();
	for (;;) {
		int r = archive_read_next_header2(disk, entry);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			snprintf(job->error, sizeof(job->error), "%s", archive_error_string(disk));
			archive_entry_free(entry);
			goto done;
		}
		archive_read_disk_descend(disk);
		const char *path = archive_entry_pathname(entry);
		/* Store paths relative to the directory being copied. */
		const char *rel = path + (strncmp(path, job->dir, prefix) ? 0 : prefix);
		while (*rel == '/')
			rel++;
		if (!*rel)
			continue; /* the top directory itself */
		char *name = strdup(rel);
		archive_entry_set_pathname(entry, name);
		free(name);
		if (archive_write_header(out, entry) != ARCHIVE_OK) {
			snprintf(job->error, sizeof(job->error), "%s", archive_error_string(out));
			archive_entry_free(entry);
			goto done;
		}
		if (archive_entry_filetype(entry) == AE_IFREG && archive_entry_size(entry) > 0) {
			const void *block;
			size_t size;
			la_int64_t offset;
			while ((r = archive_read_data_block(disk, &block, &size, &offset)) ==
			       ARCHIVE_OK) {
				if (archive_write_data(out, block, size) < 0)
					break;
			}
			if (r != ARCHIVE_EOF) {
				snprintf(job->error, sizeof(job->error), "reading %s: %s", path,
					 archive_error_string(disk));
				archive_entry_free(entry);
				goto done;
			}
		}
	}
	archive_entry_free(entry);
	if (archive_write_close(out) != ARCHIVE_OK) {
		snprintf(job->error, sizeof(job->error), "%s", archive_error_string(out));
		goto done;
	}
	job->rc = 0;
done:
	archive_read_free(disk);
	archive_write_free(out);
	shutdown(job->fd, SHUT_WR);
	return NULL;
}

int vm_put_dir(struct vm *vm, const char *host_dir, const char *guest_dir, struct vmci_err *err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return vmci_err_errno(err, errno, "cannot create a socket pair");
	struct tar_job job = {.fd = sv[1], .dir = host_dir};
	pthread_t thread;
	if (pthread_create(&thread, NULL, tar_writer_thread, &job)) {
		close(sv[0]);
		close(sv[1]);
		return vmci_err_set(err, EAGAIN, "cannot start a thread to read %s", host_dir);
	}
	int rc = vm_put_tar(vm, sv[0], guest_dir, err);
	close(sv[0]); /* unblocks the writer if the transfer failed */
	pthread_join(thread, NULL);
	close(sv[1]);
	if (!rc && job.rc)
		rc = vmci_err_set(err, EIO, "cannot read %s: %s", host_dir, job.error);
	return rc;
}

/* ---- get ---------------------------------------------------------------- */

struct get_ctx {
	int fd;
	long long bytes;
	int write_error;
	struct agent_result result;
};

static int on_get_frame(struct vm *vm, struct channel_op *op, const struct agent_frame *f,
			struct vmci_err *err)
{
	struct get_ctx *ctx = op->ctx;
	if (f->h.type == AGENT_DATA) {
		ctx->bytes += f->h.len;
		if (ctx->bytes > GET_MAX_BYTES)
			return vmci_err_set(err, EFBIG,
					    "the guest sent more than %lld GiB while %s",
					    GET_MAX_BYTES >> 30, op->what);
		if (!ctx->write_error)
			ctx->write_error = -io_write_all(ctx->fd, f->payload, f->h.len);
		/* Nobody takes the rest (the reader stopped, at its limit): stop the guest's
		 * archiving. */
		if (ctx->write_error && !op->cancel_sent) {
			channel_begin(vm);
			op->cancel_sent = true;
			return channel_queue(vm, AGENT_CANCEL, op->stream, err);
		}
		return 0;
	}
	return take_result(op, f, &ctx->result, err);
}

int vm_get_tar(struct vm *vm, const char *guest_path, int fd, struct vmci_err *err)
{
	char what[256];
	snprintf(what, sizeof(what), "copying %s out of the guest", guest_path);
	struct get_ctx ctx = {.fd = fd};
	struct channel_op op = {
	    .what = what,
	    .stream = channel_new_stream(vm),
	    .on_frame = on_get_frame,
	    .ctx = &ctx,
	    .input_fd = -1,
	};
	channel_begin(vm);
	agent_put_str(&vm->w, guest_path);
	int rc = channel_queue(vm, AGENT_GET, op.stream, err);
	if (!rc)
		rc = channel_run(vm, &op, err);
	if (!rc && ctx.result.status != 0)
		rc = vmci_err_set(
		    err, ctx.result.status, "copying %s out of the guest failed: %s", guest_path,
		    *ctx.result.message ? ctx.result.message : strerror(ctx.result.status));
	else if (!rc && ctx.write_error)
		rc = vmci_err_errno(err, ctx.write_error, "cannot write what the guest sent for %s",
				    guest_path);
	agent_result_free(&ctx.result);
	return rc;
}

struct untar_job {
	int fd;
	const char *dir;
	int rc;
	char error[512];
};

/*
 * Extracts a tar stream from the guest under job->dir. The guest is not
 * trusted: absolute paths, ".." and writes through symlinks are refused.
 */
static void *untar_thread(void *arg)
{
	struct untar_job *job = arg;
	struct archive *in = archive_read_new();
	struct archive *disk = archive_write_disk_new();
	archive_read_support_format_tar(in);
	/*
	 * Entries are re-rooted under job->dir (an absolute path without
	 * symlinks), so libarchive's own absolute-path check cannot be used;
	 * names are checked below instead.
	 */
	archive_write_disk_set_options(
	    disk, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
		      ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_UNLINK);
	job->rc = -1;
	if (archive_read_open_fd(in, job->fd, 65536) != ARCHIVE_OK) {
		snprintf(job->error, sizeof(job->error), "%s", archive_error_string(in));
		goto done;
	}
	struct archive_entry *entry;
	int r;
	while ((r = archive_read_next_header(in, &entry)) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(entry);
		if (!name || name[0] == '/' || !strcmp(name, "..") || !strncmp(name, "../", 3) ||
		    strstr(name, "/../")) {
			snprintf(job->error, sizeof(job->error),
				 "the guest sent an unsafe path '%s'", name ? name : "");
			goto done;
		}
		char path[PATH_MAX];
		if (fs_path(path, sizeof(path), "%s/%s", job->dir, name)) {
			snprintf(job->error, sizeof(job->error), "path too long: %s", name);
			goto done;
		}
		archive_entry_set_pathname(entry, path);
		const char *hardlink = archive_entry_hardlink(entry);
		if (hardlink) {
			char target[PATH_MAX];
			if (hardlink[0] == '/' || strstr(hardlink, "..") ||
			    fs_path(target, sizeof(target), "%s/%s", job->dir, hardlink)) {
				snprintf(job->error, sizeof(job->error),
					 "the guest sent an unsafe link '%s'", hardlink);
				goto done;
			}
			archive_entry_set_hardlink(entry, target);
		}
		if (archive_write_header(disk, entry) < ARCHIVE_WARN) {
			snprintf(job->error, sizeof(job->error), "%s", archive_error_string(disk));
			goto done;
		}
		const void *block;
		size_t size;
		la_int64_t offset;
		while ((r = archive_read_data_block(in, &block, &size, &offset)) == ARCHIVE_OK) {
			if (archive_write_data_block(disk, block, size, offset) < ARCHIVE_WARN)
				break;
		}
		if (r != ARCHIVE_EOF || archive_write_finish_entry(disk) < ARCHIVE_WARN) {
			snprintf(job->error, sizeof(job->error), "%s",
				 r != ARCHIVE_EOF ? archive_error_string(in)
						  : archive_error_string(disk));
			goto done;
		}
	}
	if (r != ARCHIVE_EOF) {
		snprintf(job->error, sizeof(job->error), "%s", archive_error_string(in));
		goto done;
	}
	job->rc = 0;
done:
	archive_read_free(in);
	archive_write_free(disk);
	/* Drain, so the channel never blocks writing to a reader that gave up. */
	char sink[65536];
	while (read(job->fd, sink, sizeof(sink)) > 0)
		;
	return NULL;
}

int vm_get(struct vm *vm, const char *guest_path, const char *host_dir, struct vmci_err *err)
{
	int rc = fs_mkdir_p(host_dir, 0755, err);
	if (rc)
		return rc;
	char real_dir[PATH_MAX];
	if (!realpath(host_dir, real_dir))
		return vmci_err_errno(err, errno, "cannot resolve %s", host_dir);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return vmci_err_errno(err, errno, "cannot create a socket pair");
	struct untar_job job = {.fd = sv[1], .dir = real_dir};
	pthread_t thread;
	if (pthread_create(&thread, NULL, untar_thread, &job)) {
		close(sv[0]);
		close(sv[1]);
		return vmci_err_set(err, EAGAIN, "cannot start a thread to write %s", host_dir);
	}
	rc = vm_get_tar(vm, guest_path, sv[0], err);
	shutdown(sv[0], SHUT_WR); /* end of the stream for the extractor */
	pthread_join(thread, NULL);
	close(sv[0]);
	close(sv[1]);
	if (!rc && job.rc)
		rc = vmci_err_set(err, EIO, "cannot unpack %s from the guest into %s: %s",
				  guest_path, host_dir, job.error);
	return rc;
}
