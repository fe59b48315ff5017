/*
 * Root disks: a directory tree made into an ext4 filesystem with
 * `mke2fs -d` (which keeps owners, modes, links and extended attributes
 * when run as root), converted to qcow2 for the store, and optionally
 * changed by the recipe's setup commands in between.
 *
 * Trees are assembled in scratch directories under $VMCI_HOME/cache/rootfs.
 * Tools that build them may mount things inside (debootstrap mounts /proc
 * and /sys in its target), so nothing there is removed before everything
 * below it is unmounted: removing through a mount would reach the host.
 */
#include "images/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- mounts ---------------------------------------------------------------- */

/* Undoes mountinfo's octal escapes ("\040" for a space) in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

static int by_length_desc(const void *a, const void *b)
{
	size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
	return la < lb ? 1 : la > lb ? -1 : 0;
}

void img_umount_below(const char *dir)
{
	char real[PATH_MAX];
	if (!realpath(dir, real))
		return;
	size_t n = strlen(real);
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	char **found = NULL;
	size_t count = 0;
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
		/* "36 35 98:0 /root /mnt/point rw,..." : the fifth field is the mount point. */
		char *save = NULL, *field = strtok_r(line, " ", &save);
		for (int i = 1; field && i < 5; i++)
			field = strtok_r(NULL, " ", &save);
		if (!field)
			continue;
		unescape(field);
		if (strncmp(field, real, n) || (field[n] && field[n] != '/'))
			continue;
		char **nf = realloc(found, (count + 1) * sizeof(*nf));
		if (!nf || !(nf[count] = strdup(field))) {
			found = nf ? nf : found;
			break;
		}
		found = nf;
		count++;
	}
	fclose(f);
	/* Deepest first, so a mount is never busy with one below it. */
	if (count)
		qsort(found, count, sizeof(*found), by_length_desc);
	for (size_t i = 0; i < count; i++) {
		if (umount2(found[i], MNT_DETACH) != 0)
			log_warn("cannot unmount %s: %s", found[i], strerror(errno));
		free(found[i]);
	}
	free(found);
}

/* ---- scratch trees ----------------------------------------------------------- */

/* Removes the trees of builds that died, unmounting what they left mounted. */
static void clean_abandoned(const char *parent)
{
	DIR *d = opendir(parent);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		if (de->d_name[0] == '.' ||
		    fs_path(path, sizeof(path), "%s/%s", parent, de->d_name))
			continue;
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			log_info("removing %s, left by an interrupted build", path);
			img_umount_below(path);
			if (fs_rm_rf(path, NULL))
				log_warn("cannot remove %s", path);
		}
		close(fd);
	}
	if (d)
		closedir(d);
}

int img_rootfs_scratch(const char *prefix, struct img_scratch *out, struct vmci_err *err)
{
	char parent[PATH_MAX];
	out->fd = -1;
	if (fs_path(parent, sizeof(parent), "%s/cache/rootfs", vmci_home()))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", vmci_home());
	int rc = fs_mkdir_p(parent, 0755, err);
	if (rc)
		return rc;
	clean_abandoned(parent);
	return img_scratch_new(parent, prefix, out, err);
}

void img_rootfs_scratch_drop(struct img_scratch *s)
{
	if (s->fd < 0)
		return;
	img_umount_below(s->path);
	img_scratch_drop(s);
}

/* ---- disks ---------------------------------------------------------------------- */

static int sync_file(const char *path, struct vmci_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = fd < 0 || fsync(fd) != 0 ? vmci_err_errno(err, errno, "cannot sync %s", path) : 0;
	if (fd >= 0)
		close(fd);
	return rc;
}

int img_ext4_scratch_make(const char *dir, long long size, long long inodes, const char *label,
			  const char *raw_out, struct vmci_err *err)
{
	char blocks[32], count[32];
	snprintf(blocks, sizeof(blocks), "%lldk", size / 1024);
	snprintf(count, sizeof(count), "%lld", inodes);
	/*
	 * No journal, no reserved blocks, inode tables left unwritten (the
	 * file is sparse, so they read as zeros): the cost is the tree's
	 * bytes, not the filesystem's size. Not root: a user namespace maps
	 * the caller to root, so the files are root's, as a tar extracted by
	 * the agent makes them.
	 */
	char *argv[] = {"unshare",
			"--map-root-user",
			"mke2fs",
			"-q",
			"-F",
			"-t",
			"ext4",
			"-O",
			"^has_journal",
			"-m",
			"0",
			"-N",
			count,
			"-L",
			(char *)label,
			"-d",
			(char *)dir,
			"-E",
			"root_owner=0:0,lazy_itable_init=1",
			(char *)raw_out,
			blocks,
			NULL};
	unlink(raw_out);
	int rc = run_command(geteuid() == 0 ? argv + 2 : argv, NULL, err);
	if (rc)
		vmci_err_wrap(err, "cannot make an ext4 disk of %s from %s", raw_out, dir);
	return rc;
}

int img_rootdisk_make(const char *dir, long long size, const char *raw_out, struct vmci_err *err)
{
	char blocks[32];
	snprintf(blocks, sizeof(blocks), "%lldk", size / 1024);
	/* -E root_owner: the root directory keeps the tree's owner, not the caller's. */
	char *argv[] = {"mke2fs",    "-q", "-F",	"-t", "ext4",		"-L",
			"vmci-root", "-d", (char *)dir, "-E", "root_owner=0:0", (char *)raw_out,
			blocks,	     NULL};
	unlink(raw_out);
	int rc = run_command(argv, NULL, err);
	if (rc) {
		vmci_err_wrap(err,
			      "cannot make an ext4 root disk of %s from %s (is there %lld MB "
			      "free?)",
			      raw_out, dir, size >> 20);
		return rc;
	}
	return sync_file(raw_out, err);
}

/*
 * debugfs's mknod links its argument into the current directory as one
 * name, whatever slashes it holds, and does not check that the name is
 * free; so each node is made by changing into its parent, removing the
 * placeholder mke2fs copied (which fails when it is not there), and making
 * the node under the same name. debugfs exits 0 whatever its commands did:
 * anything it prints on stderr after its banner is a failure.
 */
static int write_node_commands(FILE *f, const struct img_node *n)
{
	const char *slash = strrchr(n->path, '/');
	const char *name = slash ? slash + 1 : n->path;
	int dir_len = slash ? (int)(slash - n->path) : 0;
	int n_out = fprintf(f,
			    "cd \"/%.*s\"\n"
			    "rm \"%s\"\n"
			    "mknod \"%s\" %c %u %u\n"
			    "sif \"./%s\" mode 0%o\n"
			    "sif \"./%s\" uid %u\n"
			    "sif \"./%s\" gid %u\n"
			    "sif \"./%s\" mtime @%lld\n",
			    dir_len, n->path, name, name, S_ISBLK(n->mode) ? 'b' : 'c', n->major,
			    n->minor, name, n->mode, name, n->uid, name, n->gid, name, n->mtime);
	return n_out < 0 ? -EIO : 0;
}

int img_rootdisk_add_nodes(const char *raw, const struct img_nodes *nodes, struct vmci_err *err)
{
	if (nodes->n == 0)
		return 0;
	char script[PATH_MAX];
	if (fs_path(script, sizeof(script), "%s.debugfs", raw))
		return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", raw);
	FILE *f = fopen(script, "we");
	if (!f)
		return vmci_err_errno(err, errno, "cannot create %s", script);
	int rc = 0;
	for (size_t i = 0; i < nodes->n && !rc; i++)
		rc = write_node_commands(f, &nodes->v[i]);
	if (fclose(f) != 0 && !rc)
		rc = -errno;
	if (rc) {
		unlink(script);
		return vmci_err_errno(err, -rc, "cannot write %s", script);
	}
	/* Only stderr is kept: the commands' echo goes to /dev/null. */
	char *argv[] = {"sh", "-c",   "exec debugfs -w -f \"$1\" \"$2\" 2>&1 >/dev/null",
			"sh", script, (char *)raw,
			NULL};
	struct buf out = {0};
	rc = run_command(argv, &out, err);
	unlink(script);
	const char *text = buf_cstr(&out);
	for (const char *line = text; !rc && line && *line;) {
		size_t len = strcspn(line, "\n");
		bool banner = line == text && !strncmp(line, "debugfs ", 8);
		if (len && !banner)
			rc = vmci_err_set(err, EIO,
					  "debugfs cannot make the device nodes of the archive in "
					  "%s: %.*s",
					  raw, (int)len, line);
		line += len;
		line += *line == '\n';
	}
	if (!rc && !strstr(text, "debugfs "))
		rc = vmci_err_set(err, ENOENT,
				  "debugfs did not run (install the Debian package e2fsprogs, or "
				  "run: make deps)");
	buf_free(&out);
	return rc ? rc : sync_file(raw, err);
}

int img_rootdisk_to_qcow2(const char *in, const char *in_format, const char *out,
			  struct img_build *b, struct vmci_err *err)
{
	if (b)
		img_progress(b, "writing qcow2 disk", 0, 0);
	char *argv[] = {"qemu-img", "convert",	 "-f", (char *)in_format, "-O", "qcow2",
			(char *)in, (char *)out, NULL};
	int rc = run_command(argv, NULL, err);
	if (rc) {
		vmci_err_wrap(err, "cannot convert %s to qcow2 at %s", in, out);
		return rc;
	}
	return sync_file(out, err);
}

int img_rootdisk_run(struct img_build *b, const char *disk, const char *cmdline,
		     const char *const *commands, size_t n, bool network, struct vmci_err *err)
{
	const char *name = b->recipe->name;
	if (!b->setup)
		return vmci_err_set(err, ENOTSUP,
				    "image %s is made with commands that run in a VM: build it "
				    "with `vmci image build %s`",
				    name, name);
	char kernel[PATH_MAX], initrd[PATH_MAX];
	if (fs_path(kernel, sizeof(kernel), "%s/%s", b->dir, IMG_KERNEL_FILE) ||
	    fs_path(initrd, sizeof(initrd), "%s/%s", b->dir, IMG_INITRD_FILE))
		return vmci_err_set(err, ENAMETOOLONG, "path too long under %s", b->dir);
	struct img_setup_vm vm = {
	    .image = name,
	    .arch = b->recipe->arch,
	    .kernel = kernel,
	    .initrd = initrd,
	    .cmdline = cmdline,
	    .disk = disk,
	    .commands = commands,
	    .ncommands = n,
	    .network = network,
	    .progress = b->progress,
	    .progress_ctx = b->ctx,
	};
	int rc = b->setup(b->setup_ctx, &vm, err);
	return rc ? rc : sync_file(disk, err);
}

int img_rootdisk_setup(struct img_build *b, const char *disk, const char *cmdline,
		       struct vmci_err *err)
{
	const struct img_spec *spec = b->recipe->spec;
	if (!spec || spec->setup.n == 0)
		return 0;
	if (!b->setup)
		return vmci_err_set(err, ENOTSUP,
				    "the recipe %s has setup commands, which run in a VM: build "
				    "the image with `vmci image build %s`",
				    spec->file, spec->name);
	img_progress(b, "running setup commands", 0, (long long)spec->setup.n);
	int rc = img_rootdisk_run(b, disk, cmdline, (const char *const *)spec->setup.v,
				  spec->setup.n, spec->setup_network, err);
	if (rc)
		vmci_err_wrap(err, "setup of image %s", spec->name);
	return rc;
}
