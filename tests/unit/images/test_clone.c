/*
 * images/clone.c: clones are constant time whatever the image's size,
 * back onto the golden disk, are registered while they exist, and are
 * judged live, gone or stale from facts that survive a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include "fake_image.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *home;
static char work[PATH_MAX]; /* where the overlays go, outside the store like a VM's run dir */

static void overlay_path(char *out, const char *name)
{
	snprintf(out, PATH_MAX, "%s/%s", work, name);
}

/* The registration of overlay, as img_clone_regs reports it; fails when missing. */
static struct img_clone_reg find_reg(const char *overlay)
{
	struct img_clone_reg *regs = NULL, found = {0};
	size_t n = 0;
	assert_int_equal(img_clone_regs(&regs, &n, NULL), 0);
	bool seen = false;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(regs[i].overlay, overlay)) {
			found = regs[i];
			seen = true;
		}
	free(regs);
	if (!seen)
		fail_msg("no registration for %s", overlay);
	return found;
}

static size_t reg_count(void)
{
	struct img_clone_reg *regs = NULL;
	size_t n = 0;
	assert_int_equal(img_clone_regs(&regs, &n, NULL), 0);
	free(regs);
	return n;
}

/* The fastest of a few clones of img, in ms. */
static double clone_ms(const struct img_boot *img, const char *name)
{
	double best = 1e9;
	for (int i = 0; i < 3; i++) {
		char overlay[PATH_MAX];
		struct vmci_err err = {0};
		overlay_path(overlay, name);
		int64_t t0 = clock_ns();
		if (img_clone(img, overlay, &err))
			fail_msg("img_clone: %s", err.msg);
		double ms = (double)(clock_ns() - t0) / 1e6;
		best = ms < best ? ms : best;
		assert_int_equal(img_clone_release(overlay, NULL), 0);
	}
	return best;
}

static void test_clone_time_does_not_grow_with_image_size(void **state)
{
	struct img_boot small, big;
	fake_publish("small-x86_64", 64, NULL, &small);
	fake_publish("big-x86_64", 8192, NULL, &big);
	struct img_disk d;
	assert_int_equal(img_disk_probe(big.disk, &d, NULL), 0);
	assert_int_equal(d.virtual_size, 8192LL << 20);
	double small_ms = clone_ms(&small, "small.qcow2");
	double big_ms = clone_ms(&big, "big.qcow2");
	print_message("clone of a 64 MiB image: %.1f ms, of an 8 GiB image: %.1f ms\n", small_ms,
		      big_ms);
	/* Both write the same few header bytes; the bound is generous for loaded CI machines. */
	assert_true(small_ms < 500);
	assert_true(big_ms < 500);
}

static void test_clone_backs_onto_the_golden_disk_and_is_registered(void **state)
{
	struct img_boot img;
	fake_publish("golden-x86_64", 256, NULL, &img);
	char overlay[PATH_MAX];
	overlay_path(overlay, "vm.qcow2");
	assert_int_equal(img_clone(&img, overlay, NULL), 0);

	struct img_disk d;
	assert_int_equal(img_disk_probe(overlay, &d, NULL), 0);
	assert_string_equal(d.format, "qcow2");
	assert_string_equal(d.backing, img.disk);
	assert_int_equal(d.virtual_size, 256LL << 20);

	struct img_clone_reg reg = find_reg(overlay);
	assert_string_equal(reg.digest, img.digest);
	assert_string_equal(reg.image, "golden-x86_64");
	assert_int_equal(reg.pid, getpid());
	assert_int_equal(reg.state, IMG_CLONE_LIVE);

	size_t before = reg_count();
	assert_int_equal(img_clone_release(overlay, NULL), 0);
	assert_false(fs_exists(overlay));
	assert_false(fs_exists(reg.file));
	assert_int_equal(reg_count(), before - 1);
	/* Releasing twice is not an error. */
	assert_int_equal(img_clone_release(overlay, NULL), 0);
}

static void test_relative_overlay_path_is_registered_absolute(void **state)
{
	struct img_boot img;
	fake_publish("golden-x86_64", 256, NULL, &img);
	char cwd[PATH_MAX], overlay[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(work), 0);
	assert_int_equal(img_clone(&img, "./rel.qcow2", NULL), 0);
	overlay_path(overlay, "rel.qcow2");
	struct img_clone_reg reg = find_reg(overlay);
	assert_int_equal(reg.state, IMG_CLONE_LIVE);
	assert_int_equal(img_clone_release("rel.qcow2", NULL), 0);
	assert_false(fs_exists(reg.file));
	assert_int_equal(chdir(cwd), 0);
}

static void test_clone_of_an_image_without_disk_is_a_scratch_disk(void **state)
{
	struct img_boot img;
	fake_publish("diskless-x86_64", 0, NULL, &img);
	assert_string_equal(img.disk, "");
	char overlay[PATH_MAX];
	overlay_path(overlay, "scratch.qcow2");
	assert_int_equal(img_clone(&img, overlay, NULL), 0);
	struct img_disk d;
	assert_int_equal(img_disk_probe(overlay, &d, NULL), 0);
	assert_string_equal(d.backing, "");
	assert_int_equal(d.virtual_size, (long long)IMG_SCRATCH_DISK_MB << 20);
	assert_string_equal(find_reg(overlay).digest, img.digest);
	assert_int_equal(img_clone_release(overlay, NULL), 0);
}

static void test_clone_of_a_removed_image_says_so(void **state)
{
	struct img_boot img;
	fake_publish("doomed-x86_64", 64, NULL, &img);
	/* What gc does to an image nothing references. */
	char moved[PATH_MAX];
	snprintf(moved, sizeof(moved), "%s/moved", work);
	assert_int_equal(chmod(img.dir, 0755), 0);
	assert_int_equal(rename(img.dir, moved), 0);
	char overlay[PATH_MAX];
	overlay_path(overlay, "doomed.qcow2");
	struct vmci_err err = {0};
	assert_int_equal(img_clone(&img, overlay, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "doomed-x86_64"));
	assert_non_null(strstr(err.msg, "no longer"));
	assert_false(fs_exists(overlay));
	fs_rm_rf(moved, NULL);
}

/* A child that clones img to overlay and exits without releasing it, as a crash would. */
static void clone_in_child_and_die(const struct img_boot *img, const char *overlay)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(img_clone(img, overlay, NULL) == 0 ? 0 : 1);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_clone_of_a_dead_process_is_stale_unless_someone_holds_it(void **state)
{
	struct img_boot img;
	fake_publish("golden-x86_64", 256, NULL, &img);
	char overlay[PATH_MAX];
	overlay_path(overlay, "orphan.qcow2");
	clone_in_child_and_die(&img, overlay);
	assert_int_equal(find_reg(overlay).state, IMG_CLONE_STALE);
	assert_false(img_file_locked(overlay));

	/* A process holding the overlay as QEMU does (OFD locks) keeps it live. */
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t holder = fork();
	if (holder == 0) {
		int fd = open(overlay, O_RDWR);
		struct flock l = {
		    .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
		if (fd < 0 || fcntl(fd, F_OFD_SETLK, &l) != 0)
			_exit(1);
		assert_int_equal(write(pipefd[1], "x", 1), 1);
		pause();
		_exit(0);
	}
	char c;
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	assert_true(img_file_locked(overlay));
	assert_int_equal(find_reg(overlay).state, IMG_CLONE_LIVE);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	close(pipefd[0]);
	close(pipefd[1]);
	assert_int_equal(find_reg(overlay).state, IMG_CLONE_STALE);

	struct img_clone_reg reg = find_reg(overlay);
	assert_int_equal(img_clone_reg_drop(&reg, true, NULL), 0);
	assert_false(fs_exists(overlay));
	assert_false(fs_exists(reg.file));
}

static void test_clone_whose_overlay_is_gone_or_replaced_is_gone(void **state)
{
	struct img_boot img;
	fake_publish("golden-x86_64", 256, NULL, &img);
	char overlay[PATH_MAX];
	overlay_path(overlay, "gone.qcow2");
	assert_int_equal(img_clone(&img, overlay, NULL), 0);
	struct img_clone_reg reg = find_reg(overlay);
	/* Deleted behind vmci's back (rm -rf of a run directory). */
	assert_int_equal(unlink(overlay), 0);
	assert_int_equal(find_reg(overlay).state, IMG_CLONE_GONE);
	/* Another file at the same path is not the clone either. */
	assert_int_equal(fs_write_atomic(overlay, "other", 5, 0644, NULL), 0);
	assert_int_equal(find_reg(overlay).state, IMG_CLONE_GONE);
	assert_int_equal(img_clone_reg_drop(&reg, false, NULL), 0);
	assert_true(fs_exists(overlay)); /* not ours to delete */
	unlink(overlay);
}

static void test_clone_over_a_derived_disk_is_registered_for_the_image(void **state)
{
	struct img_boot img;
	fake_publish("golden-x86_64", 256, NULL, &img);
	char template[PATH_MAX], overlay[PATH_MAX];
	overlay_path(template, "template.qcow2");
	overlay_path(overlay, "from-template.qcow2");
	assert_int_equal(img_clone_file(img.disk, template, 0, NULL), 0);
	assert_int_equal(img_clone_over(&img, template, overlay, NULL), 0);
	struct img_disk d;
	assert_int_equal(img_disk_probe(overlay, &d, NULL), 0);
	assert_string_equal(d.backing, template);
	struct img_clone_reg reg = find_reg(overlay);
	assert_string_equal(reg.digest, img.digest);
	assert_int_equal(reg.state, IMG_CLONE_LIVE);
	assert_int_equal(img_clone_release(overlay, NULL), 0);
	assert_false(fs_exists(reg.file));
	unlink(template);
}

static void test_clone_file_is_not_registered(void **state)
{
	char base[PATH_MAX], overlay[PATH_MAX];
	overlay_path(base, "base.qcow2");
	overlay_path(overlay, "plain.qcow2");
	size_t before = reg_count();
	assert_int_equal(img_clone_file(NULL, base, 64, NULL), 0);
	assert_int_equal(img_clone_file(base, overlay, 0, NULL), 0);
	assert_int_equal(reg_count(), before);
	struct img_disk d;
	assert_int_equal(img_disk_probe(overlay, &d, NULL), 0);
	assert_string_equal(d.backing, base);
	unlink(overlay);
	unlink(base);
}

int main(void)
{
	home = fake_home("vmci-clone");
	if (!home)
		return 1;
	snprintf(work, sizeof(work), "%s/work", home);
	mkdir(work, 0755);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clone_time_does_not_grow_with_image_size),
	    cmocka_unit_test(test_clone_backs_onto_the_golden_disk_and_is_registered),
	    cmocka_unit_test(test_relative_overlay_path_is_registered_absolute),
	    cmocka_unit_test(test_clone_of_an_image_without_disk_is_a_scratch_disk),
	    cmocka_unit_test(test_clone_of_a_removed_image_says_so),
	    cmocka_unit_test(test_clone_of_a_dead_process_is_stale_unless_someone_holds_it),
	    cmocka_unit_test(test_clone_whose_overlay_is_gone_or_replaced_is_gone),
	    cmocka_unit_test(test_clone_over_a_derived_disk_is_registered_for_the_image),
	    cmocka_unit_test(test_clone_file_is_not_registered),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	fs_rm_rf(home, NULL);
	return failed;
}
