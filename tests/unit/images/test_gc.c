/*
 * images/gc.c and list.c: gc keeps what a name, a live clone or a kept
 * image's backing chain references and removes the rest, never while a
 * build publishes it; rm drops names only; ls and inspect report sizes,
 * sharing and parents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include "fake_image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *home;
static char work[PATH_MAX];

static struct img_gc_report gc(bool dry_run)
{
	struct img_gc_opts o = {.dry_run = dry_run};
	struct img_gc_report r;
	struct vmci_err err = {0};
	if (img_gc(&o, &r, &err))
		fail_msg("img_gc: %s", err.msg);
	return r;
}

/* Removes everything left by earlier tests, so each test counts only its own items. */
static int clean_store(void **state)
{
	char names[PATH_MAX];
	snprintf(names, sizeof(names), "%s/names", img_store_root());
	fs_rm_rf(names, NULL);
	gc(false);
	return 0;
}

static int entries(const char *sub)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", img_store_root(), sub);
	int n = 0;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void rm(const char *name)
{
	struct vmci_err err = {0};
	if (img_remove(name, NULL, &err))
		fail_msg("img_remove %s: %s", name, err.msg);
}

static void test_gc_keeps_named_images_and_removes_the_rest(void **state)
{
	struct img_boot kept, doomed;
	fake_publish("kept-x86_64", 64, NULL, &kept);
	fake_publish("doomed-x86_64", 64, NULL, &doomed);
	char digest[SHA256_HEX_LEN + 1];
	assert_int_equal(img_remove("doomed-x86_64", digest, NULL), 0);
	assert_string_equal(digest, doomed.digest);
	/* rm drops the name only: the image waits for gc. */
	assert_int_equal(img_find("doomed-x86_64", &doomed, NULL), -ENOENT);
	assert_true(fs_exists(doomed.dir));

	struct img_gc_report r = gc(false);
	assert_int_equal(r.removed[IMG_GC_IMAGE], 1);
	assert_true(r.bytes > 0);
	assert_false(fs_exists(doomed.dir));
	assert_true(fs_exists(kept.disk));
	assert_int_equal(img_find("kept-x86_64", &kept, NULL), 0);
	assert_int_equal(entries("tmp"), 0); /* deleted, not just moved aside */
	assert_int_equal(gc(false).removed[IMG_GC_IMAGE], 0);
}

static void test_dry_run_reports_without_removing(void **state)
{
	struct img_boot img;
	fake_publish("dry-x86_64", 64, NULL, &img);
	rm("dry-x86_64");
	struct img_gc_report r = gc(true);
	assert_int_equal(r.removed[IMG_GC_IMAGE], 1);
	assert_true(fs_exists(img.dir));
	assert_int_equal(gc(false).removed[IMG_GC_IMAGE], 1);
	assert_false(fs_exists(img.dir));
}

static void test_gc_keeps_an_image_a_live_clone_uses(void **state)
{
	struct img_boot img;
	fake_publish("cloned-x86_64", 256, NULL, &img);
	char overlay[PATH_MAX];
	snprintf(overlay, sizeof(overlay), "%s/live.qcow2", work);
	assert_int_equal(img_clone(&img, overlay, NULL), 0);
	rm("cloned-x86_64");
	struct img_gc_report r = gc(false);
	assert_int_equal(r.removed[IMG_GC_IMAGE], 0);
	assert_int_equal(r.removed[IMG_GC_CLONE], 0);
	assert_true(img_blob_complete(img.dir));
	assert_true(fs_exists(overlay));

	assert_int_equal(img_clone_release(overlay, NULL), 0);
	r = gc(false);
	assert_int_equal(r.removed[IMG_GC_IMAGE], 1);
	assert_false(fs_exists(img.dir));
}

static void test_gc_removes_stale_clones_then_their_image(void **state)
{
	struct img_boot img;
	fake_publish("crashed-x86_64", 256, NULL, &img);
	char overlay[PATH_MAX];
	snprintf(overlay, sizeof(overlay), "%s/crashed.qcow2", work);
	pid_t pid = fork();
	if (pid == 0)
		_exit(img_clone(&img, overlay, NULL) == 0 ? 0 : 1); /* and never release it */
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	rm("crashed-x86_64");

	struct img_gc_report r = gc(false);
	assert_int_equal(r.removed[IMG_GC_CLONE], 1);
	assert_int_equal(r.removed[IMG_GC_IMAGE], 1);
	assert_false(fs_exists(overlay));
	assert_false(fs_exists(img.dir));
	assert_int_equal(entries("clones"), 0);
}

static void test_gc_drops_registrations_whose_overlay_is_gone(void **state)
{
	struct img_boot img;
	fake_publish("named-x86_64", 64, NULL, &img);
	char overlay[PATH_MAX];
	snprintf(overlay, sizeof(overlay), "%s/deleted.qcow2", work);
	assert_int_equal(img_clone(&img, overlay, NULL), 0);
	assert_int_equal(unlink(overlay), 0);
	struct img_gc_report r = gc(false);
	assert_int_equal(r.removed[IMG_GC_REGISTRATION], 1);
	assert_int_equal(r.removed[IMG_GC_IMAGE], 0); /* still named */
	assert_int_equal(entries("clones"), 0);
}

static void test_gc_keeps_the_parents_of_kept_images(void **state)
{
	struct img_boot parent, child;
	fake_publish("parent-x86_64", 64, NULL, &parent);
	fake_publish("child-x86_64", 0, parent.disk, &child);
	rm("parent-x86_64");
	assert_int_equal(gc(false).removed[IMG_GC_IMAGE], 0);
	assert_true(img_blob_complete(parent.dir));

	struct img_details *d = NULL;
	assert_int_equal(img_inspect("child-x86_64", &d, NULL), 0);
	assert_int_equal(d->n_parents, 1);
	assert_string_equal(d->parents[0].digest, parent.digest);
	assert_string_equal(d->parents[0].dir, parent.dir);
	assert_null(d->parents[0].names[0]); /* its name was removed */
	/* The child's disk names its backing file. */
	bool backed = false;
	for (size_t i = 0; i < d->n_files; i++)
		backed = backed || (d->files[i].disk && !strcmp(d->files[i].backing, parent.disk));
	assert_true(backed);
	img_details_free(d);

	rm("child-x86_64");
	assert_int_equal(gc(false).removed[IMG_GC_IMAGE], 2);
	assert_false(fs_exists(parent.dir));
	assert_false(fs_exists(child.dir));
}

static void test_gc_skips_an_image_a_build_is_publishing(void **state)
{
	struct img_boot img;
	fake_publish("busy-x86_64", 64, NULL, &img);
	/* A build of the name holds its lock from before its blob appears until its name does. */
	int lock = -1;
	assert_int_equal(img_name_lock("busy-x86_64", false, &lock, NULL), 0);
	struct vmci_err err = {0};
	assert_int_equal(img_remove("busy-x86_64", NULL, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "try again"));
	close(lock);
	rm("busy-x86_64");

	assert_int_equal(img_name_lock("busy-x86_64", false, &lock, NULL), 0);
	struct img_gc_report r = gc(false);
	assert_int_equal(r.removed[IMG_GC_IMAGE], 0);
	assert_int_equal(r.busy, 1);
	assert_true(img_blob_complete(img.dir));
	close(lock);
	assert_int_equal(gc(false).removed[IMG_GC_IMAGE], 1);
}

/* What a gc reported, one "KIND PATH" line each. */
static void note_item(void *ctx, enum img_gc_kind kind, const char *what, long long bytes)
{
	struct buf *b = ctx;
	char line[PATH_MAX + 16];
	int n = snprintf(line, sizeof(line), "%d %s\n", (int)kind, what);
	buf_append(b, line, (size_t)n);
}

static bool reported(const struct buf *b, enum img_gc_kind kind, const char *path)
{
	char line[PATH_MAX + 16];
	snprintf(line, sizeof(line), "%d %s\n", (int)kind, path);
	return strstr(buf_cstr((struct buf *)b), line) != NULL;
}

static void test_gc_removes_what_dead_processes_left_and_keeps_live_work(void **state)
{
	char tmp[PATH_MAX], rootfs[PATH_MAX], partial[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s/tmp", img_store_root());
	snprintf(rootfs, sizeof(rootfs), "%s/cache/rootfs", home);
	snprintf(partial, sizeof(partial), "%s/cache/debs/partial", home);
	/* Live work first: making a root filesystem scratch cleans abandoned ones. */
	struct img_scratch live, live_import;
	assert_int_equal(img_scratch_new(tmp, "live", &live, NULL), 0);
	assert_int_equal(img_rootfs_scratch("live-import", &live_import, NULL), 0);
	char live_part[PATH_MAX];
	snprintf(live_part, sizeof(live_part), "%s/pull-%064d.part", tmp, 3);
	int live_fd = open(live_part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	assert_true(live_fd >= 0);
	assert_int_equal(flock(live_fd, LOCK_EX), 0);

	/* What processes that died left: a pull's partial file, fresh or old, and scratch. */
	char abandoned[PATH_MAX], old[PATH_MAX], fresh[PATH_MAX], import[PATH_MAX], apt[PATH_MAX],
	    inside[PATH_MAX];
	snprintf(abandoned, sizeof(abandoned), "%s/0123abcd.4000000", tmp);
	assert_int_equal(mkdir(abandoned, 0555), 0);
	snprintf(old, sizeof(old), "%s/pull-%064d.part", tmp, 1);
	snprintf(fresh, sizeof(fresh), "%s/pull-%064d.part", tmp, 2);
	assert_int_equal(fs_write_atomic(old, "old", 3, 0644, NULL), 0);
	assert_int_equal(fs_write_atomic(fresh, "fresh", 5, 0644, NULL), 0);
	struct timeval long_ago[2] = {{.tv_sec = time(NULL) - 30 * 86400},
				      {.tv_sec = time(NULL) - 30 * 86400}};
	assert_int_equal(utimes(old, long_ago), 0);
	snprintf(import, sizeof(import), "%s/killed-0123456789ab.4000000", rootfs);
	snprintf(inside, sizeof(inside), "%s/target/etc", import);
	assert_int_equal(fs_mkdir_p(inside, 0755, NULL), 0);
	snprintf(apt, sizeof(apt), "%s/apt.4000000", partial);
	assert_int_equal(fs_mkdir_p(apt, 0755, NULL), 0);

	/* A dry run lists every one of them, and removes nothing. */
	struct buf items = {0};
	struct img_gc_opts o = {.dry_run = true, .on_item = note_item, .ctx = &items};
	struct img_gc_report r;
	struct vmci_err err = {0};
	if (img_gc(&o, &r, &err))
		fail_msg("img_gc: %s", err.msg);
	assert_true(reported(&items, IMG_GC_SCRATCH, abandoned));
	assert_true(reported(&items, IMG_GC_SCRATCH, import));
	assert_true(reported(&items, IMG_GC_SCRATCH, apt));
	assert_true(reported(&items, IMG_GC_DOWNLOAD, old));
	assert_true(reported(&items, IMG_GC_DOWNLOAD, fresh));
	assert_int_equal(r.removed[IMG_GC_SCRATCH], 3);
	assert_int_equal(r.removed[IMG_GC_DOWNLOAD], 2);
	assert_true(fs_exists(import) && fs_exists(fresh) && fs_exists(abandoned));
	buf_free(&items);

	r = gc(false);
	assert_int_equal(r.removed[IMG_GC_SCRATCH], 3);
	assert_int_equal(r.removed[IMG_GC_DOWNLOAD], 2);
	assert_false(fs_exists(abandoned));
	assert_false(fs_exists(old));
	assert_false(fs_exists(fresh));
	assert_false(fs_exists(import));
	assert_false(fs_exists(apt));
	/* Work whose process lives is kept. */
	assert_true(fs_exists(live.path));
	assert_true(fs_exists(live_import.path));
	assert_true(fs_exists(live_part));
	img_scratch_drop(&live);
	img_rootfs_scratch_drop(&live_import);
	close(live_fd);
	unlink(live_part);
}

static void test_remove_unknown_name_says_what_to_do(void **state)
{
	struct vmci_err err = {0};
	assert_int_equal(img_remove("never-was", NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "never-was"));
	assert_non_null(strstr(err.msg, "vmci image ls"));
	assert_int_equal(img_remove("../names", NULL, &err), -EINVAL);
	char lock[PATH_MAX];
	snprintf(lock, sizeof(lock), "%s/locks/never-was.lock", img_store_root());
	assert_false(fs_exists(lock));
}

static const struct img_info *row(const struct img_info *rows, size_t n, const char *name,
				  const char *digest)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(rows[i].name, name) && (!digest || !strcmp(rows[i].digest, digest)))
			return &rows[i];
	fail_msg("no row for '%s'", name);
	return NULL;
}

static void test_list_reports_sizes_sharing_and_clones(void **state)
{
	struct img_boot solo, aliased, cloned, orphan;
	fake_publish("solo-x86_64", 64, NULL, &solo);
	fake_publish("aliased-x86_64", 64, NULL, &aliased);
	assert_int_equal(img_name_write("alias", aliased.digest, NULL), 0);
	fake_publish("cloned-x86_64", 64, NULL, &cloned);
	fake_publish("orphan-x86_64", 64, NULL, &orphan);
	rm("orphan-x86_64");
	char overlay[PATH_MAX];
	snprintf(overlay, sizeof(overlay), "%s/listed.qcow2", work);
	assert_int_equal(img_clone(&cloned, overlay, NULL), 0);

	struct img_info *rows = NULL;
	size_t n = 0;
	assert_int_equal(img_list(&rows, &n, NULL), 0);
	assert_int_equal(n, 5);
	const struct img_info *r = row(rows, n, "solo-x86_64", NULL);
	assert_string_equal(r->arch, "x86_64");
	assert_string_equal(r->digest, solo.digest);
	assert_true(r->size > 0);
	assert_int_equal(r->shared, 0);
	assert_int_equal(r->clones, 0);
	assert_true(time(NULL) - r->created < 600);
	/* Two names for one image share all of it. */
	r = row(rows, n, "alias", NULL);
	assert_int_equal(r->shared, r->size);
	assert_int_equal(row(rows, n, "aliased-x86_64", NULL)->shared, r->size);
	/* A clone shares the disk it is backed by. */
	r = row(rows, n, "cloned-x86_64", NULL);
	assert_int_equal(r->clones, 1);
	assert_true(r->shared > 0 && r->shared < r->size);
	assert_true(r->clones_size > 0);
	/* An image no name points at comes last, with no name. */
	assert_string_equal(rows[n - 1].name, "");
	assert_string_equal(rows[n - 1].digest, orphan.digest);
	free(rows);
	assert_int_equal(img_clone_release(overlay, NULL), 0);
}

static void test_inspect_shows_manifest_files_and_clones(void **state)
{
	struct img_boot img;
	fake_publish("inspected-x86_64", 128, NULL, &img);
	assert_int_equal(img_name_write("inspected-alias", img.digest, NULL), 0);
	char overlay[PATH_MAX];
	snprintf(overlay, sizeof(overlay), "%s/inspected.qcow2", work);
	assert_int_equal(img_clone(&img, overlay, NULL), 0);
	struct img_details *d = NULL;
	assert_int_equal(img_inspect("inspected-x86_64", &d, NULL), 0);
	assert_string_equal(d->name, "inspected-x86_64");
	assert_string_equal(d->digest, img.digest);
	assert_string_equal(d->dir, img.dir);
	assert_true(d->size > 0);
	/* Every name of the image, in no particular order. */
	int names = 0;
	for (size_t i = 0; d->names[i]; i++, names++)
		assert_true(!strcmp(d->names[i], "inspected-x86_64") ||
			    !strcmp(d->names[i], "inspected-alias"));
	assert_int_equal(names, 2);
	/* The manifest's facts, and its text as stored. */
	assert_string_equal(d->manifest.name, "inspected-x86_64");
	assert_string_equal(d->manifest.arch, "x86_64");
	assert_string_equal(d->manifest.disk_file, IMG_DISK_FILE);
	assert_string_equal(d->manifest.cmdline, "console=hvc0");
	assert_string_equal(d->manifest.kernel_file, IMG_KERNEL_FILE);
	assert_string_equal(d->manifest.builder, IMG_BUILDER_VERSION);
	assert_int_equal(strlen(d->manifest.created), strlen("2024-05-01T12:00:00Z"));
	char path[PATH_MAX];
	struct buf stored = {0};
	snprintf(path, sizeof(path), "%s/%s", img.dir, IMG_MANIFEST_FILE);
	assert_int_equal(fs_read_file(path, 1 << 20, &stored, NULL), 0);
	assert_string_equal(d->manifest.text, buf_cstr(&stored));
	buf_free(&stored);
	/* Its files, the disk with its header. */
	bool disk_seen = false, manifest_seen = false;
	for (size_t i = 0; i < d->n_files; i++) {
		const struct img_file_info *f = &d->files[i];
		snprintf(path, sizeof(path), "%s/%s", img.dir, f->name);
		assert_string_equal(f->path, path);
		assert_true(f->size > 0);
		manifest_seen = manifest_seen || !strcmp(f->name, IMG_MANIFEST_FILE);
		if (strcmp(f->name, IMG_DISK_FILE)) {
			assert_false(f->disk);
			continue;
		}
		disk_seen = true;
		assert_true(f->disk);
		assert_string_equal(f->format, "qcow2");
		assert_int_equal(f->virtual_size, 128LL << 20);
		assert_string_equal(f->backing, "");
	}
	assert_true(disk_seen && manifest_seen);
	assert_int_equal(d->n_parents, 0);
	/* Its live clone, made by this process. */
	assert_int_equal(d->n_clones, 1);
	assert_string_equal(d->clones[0].overlay, overlay);
	assert_int_equal(d->clones[0].pid, getpid());
	assert_true(d->clones[0].disk_usage > 0);
	img_details_free(d);
	assert_int_equal(img_clone_release(overlay, NULL), 0);
	assert_int_equal(img_inspect("inspected-x86_64", &d, NULL), 0);
	assert_int_equal(d->n_clones, 0);
	img_details_free(d);
	struct vmci_err err = {0};
	assert_int_equal(img_inspect("missing", &d, &err), -ENOENT);
	assert_null(d);
	assert_non_null(strstr(err.msg, "missing"));
}

int main(void)
{
	home = fake_home("vmci-gc");
	if (!home)
		return 1;
	snprintf(work, sizeof(work), "%s/work", home);
	mkdir(work, 0755);
#define T(f) cmocka_unit_test_setup(f, clean_store)
	const struct CMUnitTest tests[] = {
	    T(test_gc_keeps_named_images_and_removes_the_rest),
	    T(test_dry_run_reports_without_removing),
	    T(test_gc_keeps_an_image_a_live_clone_uses),
	    T(test_gc_removes_stale_clones_then_their_image),
	    T(test_gc_drops_registrations_whose_overlay_is_gone),
	    T(test_gc_keeps_the_parents_of_kept_images),
	    T(test_gc_skips_an_image_a_build_is_publishing),
	    T(test_gc_removes_what_dead_processes_left_and_keeps_live_work),
	    T(test_remove_unknown_name_says_what_to_do),
	    T(test_list_reports_sizes_sharing_and_clones),
	    T(test_inspect_shows_manifest_files_and_clones),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	fs_rm_rf(home, NULL);
	return failed;
}
