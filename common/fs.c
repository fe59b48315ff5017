/* Files and paths: durable writes, recursive create and remove. */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_path(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

bool fs_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int fs_mkdir_p(const char *path, mode_t mode, struct vmci_err *err)
{
	char tmp[PATH_MAX];
	if (fs_path(tmp, sizeof(tmp), "%s", path))
		return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", path);
	for (char *p = tmp + 1;; p++) {
		if (*p != '/' && *p != 0)
			continue;
		char saved = *p;
		*p = 0;
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return vmci_err_errno(err, errno, "cannot create directory %s", tmp);
		*p = saved;
		if (saved == 0)
			break;
	}
	return 0;
}

int fs_read_file(const char *path, size_t max, struct buf *out, struct vmci_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot open %s", path);
	size_t total = 0;
	for (;;) {
		if (buf_reserve(out, 65536)) {
			close(fd);
			return vmci_err_set(err, ENOMEM, "out of memory reading %s", path);
		}
		ssize_t n = read(fd, out->data + out->len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return vmci_err_errno(err, e, "cannot read %s", path);
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		total += (size_t)n;
		if (total > max) {
			close(fd);
			return vmci_err_set(err, EFBIG, "%s is larger than %zu bytes", path, max);
		}
	}
	close(fd);
	return 0;
}

static int fsync_dir_of(const char *path)
{
	char tmp[PATH_MAX];
	if (fs_path(tmp, sizeof(tmp), "%s", path))
		return -ENAMETOOLONG;
	int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

int fs_rename_durable(const char *from, const char *to, struct vmci_err *err)
{
	if (rename(from, to) != 0)
		return vmci_err_errno(err, errno, "cannot rename %s to %s", from, to);
	int rc = fsync_dir_of(to);
	if (rc)
		return vmci_err_errno(err, -rc, "cannot sync the directory of %s", to);
	return 0;
}

static int write_replace(const char *path, const void *data, size_t len, mode_t mode, bool durable,
			 struct vmci_err *err)
{
	char tmp[PATH_MAX];
	if (fs_path(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()))
		return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot create %s", tmp);
	int rc = io_write_all(fd, data, len);
	if (!rc && durable && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && !rc)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return vmci_err_errno(err, -rc, "cannot write %s", path);
	}
	if (durable)
		rc = fs_rename_durable(tmp, path, err);
	else if (rename(tmp, path) != 0)
		rc = vmci_err_errno(err, errno, "cannot rename %s to %s", tmp, path);
	if (rc)
		unlink(tmp);
	return rc;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct vmci_err *err)
{
	return write_replace(path, data, len, mode, true, err);
}

int fs_write_replace(const char *path, const void *data, size_t len, mode_t mode,
		     struct vmci_err *err)
{
	return write_replace(path, data, len, mode, false, err);
}

int fs_rm_rf(const char *path, struct vmci_err *err)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : vmci_err_errno(err, errno, "cannot stat %s", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) != 0 && errno != ENOENT)
			return vmci_err_errno(err, errno, "cannot remove %s", path);
		return 0;
	}
	/* A read-only directory (a published image) must become writable to empty it. */
	chmod(path, 0700);
	DIR *d = opendir(path);
	if (!d)
		return vmci_err_errno(err, errno, "cannot open directory %s", path);
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char child[PATH_MAX];
		if (fs_path(child, sizeof(child), "%s/%s", path, de->d_name)) {
			rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", path);
			break;
		}
		rc = fs_rm_rf(child, err);
		if (rc)
			break;
	}
	closedir(d);
	if (!rc && rmdir(path) != 0 && errno != ENOENT)
		rc = vmci_err_errno(err, errno, "cannot remove directory %s", path);
	return rc;
}

int fs_copy_file(const char *from, const char *to, mode_t mode, bool durable, struct vmci_err *err)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return vmci_err_errno(err, errno, "cannot open %s", from);
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode ? mode : 0644);
	if (out < 0) {
		int e = errno;
		close(in);
		return vmci_err_errno(err, e, "cannot create %s", to);
	}
	static __thread uint8_t chunk[1 << 16];
	int rc = 0;
	/*
	 * In the kernel (no copy through here) until it says it cannot, then by
	 * hand. A first answer of 0 is not taken for the end: some filesystems
	 * give it for files they cannot copy so.
	 */
	for (bool first = true;; first = false) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if ((n == 0 && first) || (n < 0 && (errno == EXDEV || errno == ENOSYS ||
						    errno == EINVAL || errno == EOPNOTSUPP)))
			break;
		if (n < 0)
			rc = vmci_err_errno(err, errno, "cannot copy %s to %s", from, to);
		if (n <= 0)
			goto done;
	}
	for (;;) {
		ssize_t n = read(in, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				rc = vmci_err_errno(err, errno, "cannot read %s", from);
			break;
		}
		int w = io_write_all(out, chunk, (size_t)n);
		if (w) {
			rc = vmci_err_errno(err, -w, "cannot write %s", to);
			break;
		}
	}
done:
	if (!rc && durable && fsync(out) != 0)
		rc = vmci_err_errno(err, errno, "cannot sync %s", to);
	close(in);
	close(out);
	return rc;
}

int fs_self_dir(char *out, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return -errno;
	exe[n] = 0;
	return fs_path(out, size, "%s", dirname(exe));
}

const char *vmci_home(void)
{
	static char home[PATH_MAX];
	if (home[0])
		return home;
	const char *env = getenv("VMCI_HOME");
	const char *user_home = getenv("HOME");
	if (env && *env)
		fs_path(home, sizeof(home), "%s", env);
	else if (user_home && *user_home)
		fs_path(home, sizeof(home), "%s/.cache/vmci", user_home);
	else {
		struct passwd *pw = getpwuid(getuid());
		if (pw && pw->pw_dir)
			fs_path(home, sizeof(home), "%s/.cache/vmci", pw->pw_dir);
		else
			fs_path(home, sizeof(home), "/tmp/vmci-%d", (int)getuid());
	}
	return home;
}
