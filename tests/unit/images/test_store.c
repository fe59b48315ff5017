/*
 * images/store.c: publishing, the name index, scratch directories and the
 * build lock, driven by fake recipes (no network, no kernel).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char home[256];

/* What the fake recipes build from; changing it changes their digest. */
static char fake_input[32] = "v1";
static bool fake_fails;

static int fake_prepare(struct img_build *b, struct vmci_err *err)
{
	struct sha256_ctx *ctx = sha256_new();
	sha256_update(ctx, b->recipe->name, strlen(b->recipe->name));
	sha256_update(ctx, fake_input, strlen(fake_input));
	sha256_finish(ctx, b->digest);
	return 0;
}

/* Counts builds in a file, so builds in child processes count too. */
static int builds(void)
{
	char path[PATH_MAX];
	struct stat st;
	fs_path(path, sizeof(path), "%s/builds", home);
	return stat(path, &st) == 0 ? (int)st.st_size : 0;
}

static int fake_build(struct img_build *b, struct vmci_err *err)
{
	char path[PATH_MAX];
	fs_path(path, sizeof(path), "%s/builds", home);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	assert_int_equal(write(fd, "b", 1), 1);
	close(fd);
	fs_path(path, sizeof(path), "%s/%s", b->dir, IMG_KERNEL_FILE);
	int rc = fs_write_atomic(path, "kernel", 6, 0644, err);
	if (!rc && fake_fails)
		return vmci_err_set(err, EIO, "the fake build failed half way");
	fs_path(path, sizeof(path), "%s/%s", b->dir, IMG_INITRD_FILE);
	if (!rc)
		rc = fs_write_atomic(path, fake_input, strlen(fake_input), 0644, err);
	json_object_set_new(b->manifest, "cmdline", json_string("console=hvc0"));
	return rc;
}

static void fake_finish(struct img_build *b)
{
}

#define FAKE(n)                                                                                    \
	{                                                                                          \
		.name = n, .arch = "x86_64", .prepare = fake_prepare, .build = fake_build,         \
		.finish = fake_finish                                                              \
	}
static const struct img_recipe fake = FAKE("fake-x86_64");
static const struct img_recipe failing = FAKE("failing-x86_64");
static const struct img_recipe ghost = FAKE("ghost-x86_64");
static const struct img_recipe shared = FAKE("shared-x86_64");

static void store_path(char *out, const char *fmt, const char *arg)
{
	char rel[PATH_MAX];
	fs_path(rel, sizeof(rel), fmt, arg);
	fs_path(out, PATH_MAX, "%s/%s", img_store_root(), rel);
}

static int tmp_entries(void)
{
	char path[PATH_MAX];
	store_path(path, "%s", "tmp");
	int n = 0;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void test_store_root_is_under_vmci_home(void **state)
{
	char want[PATH_MAX];
	fs_path(want, sizeof(want), "%s/images", home);
	assert_string_equal(img_store_root(), want);
}

static void test_ensure_publishes_read_only_and_indexes(void **state)
{
	struct img_boot boot;
	struct vmci_err err = {0};
	int before = builds();
	assert_int_equal(img_ensure_recipe(&fake, &boot, NULL, NULL, &err), 0);
	assert_int_equal(builds(), before + 1);
	assert_string_equal(boot.name, "fake-x86_64");
	assert_string_equal(boot.arch, "x86_64");
	assert_string_equal(boot.cmdline, "console=hvc0");
	assert_string_equal(boot.disk, "");
	assert_int_equal(strlen(boot.digest), SHA256_HEX_LEN);

	char want[PATH_MAX];
	store_path(want, "blobs/sha256-%s", boot.digest);
	assert_string_equal(boot.dir, want);
	struct stat st;
	assert_int_equal(stat(boot.dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0555);
	assert_int_equal(stat(boot.kernel, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0444);
	assert_int_equal(stat(boot.initrd, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0444);

	char name[PATH_MAX], line[SHA256_HEX_LEN + 16];
	struct buf b = {0};
	store_path(name, "names/%s", "fake-x86_64");
	assert_int_equal(fs_read_file(name, 1024, &b, NULL), 0);
	snprintf(line, sizeof(line), "sha256:%s\n", boot.digest);
	assert_string_equal(buf_cstr(&b), line);
	buf_free(&b);

	struct img_boot found;
	assert_int_equal(img_find("fake-x86_64", &found, NULL), 0);
	assert_memory_equal(&found, &boot, sizeof(boot));
	assert_int_equal(tmp_entries(), 0);
}

static void test_second_ensure_reuses_without_building(void **state)
{
	struct img_boot a, b;
	assert_int_equal(img_ensure_recipe(&fake, &a, NULL, NULL, NULL), 0);
	int before = builds();
	assert_int_equal(img_ensure_recipe(&fake, &b, NULL, NULL, NULL), 0);
	assert_int_equal(builds(), before);
	assert_string_equal(a.digest, b.digest);
}

static void test_changed_input_builds_a_new_image(void **state)
{
	struct img_boot old, new;
	assert_int_equal(img_ensure_recipe(&fake, &old, NULL, NULL, NULL), 0);
	int before = builds();
	snprintf(fake_input, sizeof(fake_input), "v2");
	assert_int_equal(img_ensure_recipe(&fake, &new, NULL, NULL, NULL), 0);
	snprintf(fake_input, sizeof(fake_input), "v1");
	assert_int_equal(builds(), before + 1);
	assert_string_not_equal(old.digest, new.digest);
	assert_true(fs_exists(old.dir)); /* left for gc */
	struct img_boot found;
	assert_int_equal(img_find("fake-x86_64", &found, NULL), 0);
	assert_string_equal(found.digest, new.digest);
}

static void test_lost_name_is_restored_from_the_blob(void **state)
{
	struct img_boot a, b;
	assert_int_equal(img_ensure_recipe(&fake, &a, NULL, NULL, NULL), 0);
	char name[PATH_MAX];
	store_path(name, "names/%s", "fake-x86_64");
	assert_int_equal(unlink(name), 0);
	assert_int_equal(img_find("fake-x86_64", &b, NULL), -ENOENT);
	int before = builds();
	assert_int_equal(img_ensure_recipe(&fake, &b, NULL, NULL, NULL), 0);
	assert_int_equal(builds(), before);
	assert_string_equal(a.digest, b.digest);
}

static void test_incomplete_blob_is_replaced(void **state)
{
	struct img_boot a, b;
	assert_int_equal(img_ensure_recipe(&fake, &a, NULL, NULL, NULL), 0);
	/* What a removal of the blob that was interrupted half way leaves. */
	assert_int_equal(chmod(a.dir, 0755), 0);
	assert_int_equal(unlink(a.initrd), 0);
	assert_int_equal(img_find("fake-x86_64", &b, NULL), -ENOENT);
	int before = builds();
	assert_int_equal(img_ensure_recipe(&fake, &b, NULL, NULL, NULL), 0);
	assert_int_equal(builds(), before + 1);
	assert_string_equal(a.digest, b.digest);
	assert_true(fs_exists(b.initrd));
}

static void test_stale_tmp_dirs_are_removed_and_live_ones_kept(void **state)
{
	char tmp[PATH_MAX], stale[PATH_MAX], file[PATH_MAX];
	store_path(tmp, "%s", "tmp");
	assert_int_equal(fs_mkdir_p(tmp, 0755, NULL), 0);
	/* What a build killed after sealing but before publishing leaves. */
	fs_path(stale, sizeof(stale), "%s/0123abcd.4000000", tmp);
	assert_int_equal(mkdir(stale, 0755), 0);
	fs_path(file, sizeof(file), "%s/%s", stale, IMG_KERNEL_FILE);
	assert_int_equal(fs_write_atomic(file, "half", 4, 0444, NULL), 0);
	assert_int_equal(chmod(stale, 0555), 0);
	/* A build in progress in this very process holds its lock. */
	struct img_scratch live;
	assert_int_equal(img_scratch_new(tmp, "live", &live, NULL), 0);

	struct img_boot boot;
	assert_int_equal(img_ensure_recipe(&fake, &boot, NULL, NULL, NULL), 0);
	assert_false(fs_exists(stale));
	assert_true(fs_exists(live.path));
	assert_int_equal(tmp_entries(), 1);
	img_scratch_drop(&live);
	assert_false(fs_exists(live.path));
	assert_int_equal(tmp_entries(), 0);
}

static void test_failed_build_publishes_nothing(void **state)
{
	struct img_boot boot;
	struct vmci_err err = {0};
	fake_fails = true;
	int rc = img_ensure_recipe(&failing, &boot, NULL, NULL, &err);
	fake_fails = false;
	assert_int_equal(rc, -EIO);
	assert_non_null(strstr(err.msg, "failing-x86_64"));
	assert_non_null(strstr(err.msg, "half way"));
	assert_int_equal(img_find("failing-x86_64", &boot, NULL), -ENOENT);
	assert_int_equal(tmp_entries(), 0);
	char blob[PATH_MAX];
	struct img_build b = {.recipe = &failing};
	fake_prepare(&b, NULL);
	store_path(blob, "blobs/sha256-%s", b.digest);
	assert_false(fs_exists(blob));
}

static void test_name_pointing_at_a_missing_blob_is_not_found_then_rebuilt(void **state)
{
	char names[PATH_MAX], name[PATH_MAX];
	store_path(names, "%s", "names");
	assert_int_equal(fs_mkdir_p(names, 0755, NULL), 0);
	store_path(name, "names/%s", "ghost-x86_64");
	char line[80];
	snprintf(line, sizeof(line), "sha256:%064d\n", 0);
	assert_int_equal(fs_write_atomic(name, line, strlen(line), 0644, NULL), 0);
	struct img_boot boot;
	struct vmci_err err = {0};
	assert_int_equal(img_find("ghost-x86_64", &boot, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing"));
	assert_non_null(strstr(err.msg, "vmci image build ghost-x86_64"));
	assert_int_equal(img_ensure_recipe(&ghost, &boot, NULL, NULL, NULL), 0);
	assert_int_equal(img_find("ghost-x86_64", &boot, NULL), 0);
}

static void test_find_errors_say_what_to_do(void **state)
{
	struct img_boot boot;
	struct vmci_err err = {0};
	assert_int_equal(img_find("never-built", &boot, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "run: vmci image build never-built"));
	assert_int_equal(img_find("../etc/passwd", &boot, &err), -EINVAL);

	char names[PATH_MAX], name[PATH_MAX];
	store_path(names, "%s", "names");
	assert_int_equal(fs_mkdir_p(names, 0755, NULL), 0);
	store_path(name, "names/%s", "corrupt");
	assert_int_equal(fs_write_atomic(name, "garbage\n", 8, 0644, NULL), 0);
	assert_int_equal(img_find("corrupt", &boot, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "delete it"));
}

static void test_unknown_image_lists_the_recipes_there_are(void **state)
{
	struct img_boot boot;
	struct vmci_err err = {0};
	assert_int_equal(img_ensure("no-such-image", &boot, NULL, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no-such-image"));
	assert_non_null(strstr(err.msg, "busybox-x86_64"));

	/* A recipe is known by being in the recipes directory: nothing else lists it. */
	char dir[PATH_MAX], file[PATH_MAX];
	fs_path(dir, sizeof(dir), "%s/recipes", home);
	fs_path(file, sizeof(file), "%s/mine.yml", dir);
	assert_int_equal(fs_mkdir_p(dir, 0755, NULL), 0);
	assert_int_equal(fs_write_atomic(file, "name: mine\n", 11, 0644, NULL), 0);
	setenv("VMCI_RECIPES_DIR", dir, 1);
	assert_int_equal(img_ensure("no-such-image", &boot, NULL, NULL, &err), -ENOENT);
	unsetenv("VMCI_RECIPES_DIR");
	assert_non_null(strstr(err.msg, "(known: mine)"));
}

/* Child side of the concurrency test: notes that it waited, exits 0 on success. */
static void note_wait(void *ctx, const char *step, long long done, long long total)
{
	if (strstr(step, "waiting")) {
		char path[PATH_MAX];
		fs_path(path, sizeof(path), "%s/waited.%d", home, (int)getpid());
		fs_write_atomic(path, "", 0, 0644, NULL);
	}
}

static void test_concurrent_ensures_build_once(void **state)
{
	/* Hold the lock so that both children must wait, then let them race. */
	char lock[PATH_MAX];
	store_path(lock, "locks/%s.lock", "shared-x86_64");
	char dir[PATH_MAX];
	store_path(dir, "%s", "locks");
	assert_int_equal(fs_mkdir_p(dir, 0755, NULL), 0);
	int fd = open(lock, O_RDWR | O_CREAT, 0644);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	int before = builds();
	pid_t kids[2];
	for (int i = 0; i < 2; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			/* The lock belongs to the open file, which fork shares: let go of it. */
			close(fd);
			struct img_boot boot;
			_exit(img_ensure_recipe(&shared, &boot, note_wait, NULL, NULL) == 0 ? 0
											    : 1);
		}
	}
	char waited[PATH_MAX];
	for (int i = 0; i < 2; i++) {
		fs_path(waited, sizeof(waited), "%s/waited.%d", home, (int)kids[i]);
		for (int tries = 0; tries < 500 && !fs_exists(waited); tries++)
			usleep(10000);
		assert_true(fs_exists(waited));
	}
	close(fd);
	for (int i = 0; i < 2; i++) {
		int status = 0;
		assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(builds(), before + 1);
	struct img_boot boot;
	assert_int_equal(img_find("shared-x86_64", &boot, NULL), 0);
}

int main(void)
{
	/* Before anything calls vmci_home(), which keeps the first value it sees. */
	snprintf(home, sizeof(home), "%s/vmci-store-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(home))
		return 1;
	setenv("VMCI_HOME", home, 1);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_root_is_under_vmci_home),
	    cmocka_unit_test(test_ensure_publishes_read_only_and_indexes),
	    cmocka_unit_test(test_second_ensure_reuses_without_building),
	    cmocka_unit_test(test_changed_input_builds_a_new_image),
	    cmocka_unit_test(test_lost_name_is_restored_from_the_blob),
	    cmocka_unit_test(test_incomplete_blob_is_replaced),
	    cmocka_unit_test(test_stale_tmp_dirs_are_removed_and_live_ones_kept),
	    cmocka_unit_test(test_failed_build_publishes_nothing),
	    cmocka_unit_test(test_name_pointing_at_a_missing_blob_is_not_found_then_rebuilt),
	    cmocka_unit_test(test_find_errors_say_what_to_do),
	    cmocka_unit_test(test_unknown_image_lists_the_recipes_there_are),
	    cmocka_unit_test(test_concurrent_ensures_build_once),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	fs_rm_rf(home, NULL);
	return failed;
}
