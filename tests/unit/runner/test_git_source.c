/*
 * The service's commits (runner/git_source.c) on real repositories made
 * with the git command: fetch into a bare cache, ref and sha resolution,
 * reading a file of a commit, and a workspace that is exactly the
 * commit's tree whatever the working tree holds. Skipped without git.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/git_source.h"
#include "runner/runner.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], src[128], cache[128];
static bool have_git;

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
	char cmd[2048], full[2300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd %s && (%s) >/dev/null 2>&1", src, cmd);
	assert_int_equal(system(full), 0);
}

static void head_sha(char out[41])
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "git -C %s rev-parse HEAD", src);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, 41, p));
	pclose(p);
}

static int setup(void **state)
{
	have_git = system("git --version >/dev/null 2>&1") == 0;
	if (!have_git)
		return 0;
	snprintf(dir, sizeof(dir), "/tmp/vmci-git-test.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p %s && cd %s && git init -q -b main . && git config "
		 "user.email t@example.org && git config user.name t",
		 src, src);
	return system(cmd) ? -1 : 0;
}

static int teardown(void **state)
{
	if (dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			return -1;
	}
	return 0;
}

static void test_fetch_resolves_a_branch_and_keeps_an_older_sha(void **state)
{
	if (!have_git)
		skip();
	sh("echo one >a.txt && git add -A && git commit -qm one");
	char first[41], second[41], got[41];
	head_sha(first);
	sh("echo two >a.txt && git commit -qam two");
	head_sha(second);
	struct vmci_err err = {0};
	assert_int_equal(
	    git_source_fetch(cache, "acme/widget", src, "refs/heads/main", NULL, got, &err), 0);
	assert_string_equal(got, second);
	assert_int_equal(git_source_fetch(cache, "acme/widget", src, "main", NULL, got, &err), 0);
	assert_string_equal(got, second);
	assert_int_equal(
	    git_source_fetch(cache, "acme/widget", src, "refs/heads/main", first, got, &err), 0);
	assert_string_equal(got, first);
	char path[256];
	snprintf(path, sizeof(path), "%s/acme/widget.git/HEAD", cache);
	assert_int_equal(access(path, F_OK), 0);
}

static void test_an_unknown_ref_or_sha_is_enoent(void **state)
{
	if (!have_git)
		skip();
	sh("echo x >x.txt && git add -A && git commit -qm x");
	char got[41];
	struct vmci_err err = {0};
	assert_int_equal(git_source_fetch(cache, "w", src, "refs/heads/nope", NULL, got, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "refs/heads/nope"));
	assert_int_equal(git_source_fetch(cache, "w", src, "refs/heads/main",
					  "0123456789012345678901234567890123456789", got, &err),
			 -ENOENT);
}

static void test_a_bad_url_says_which_repository(void **state)
{
	if (!have_git)
		skip();
	char got[41];
	struct vmci_err err = {0};
	assert_true(
	    git_source_fetch(cache, "gone", "/nonexistent/repo.git", "main", NULL, got, &err) < 0);
	assert_non_null(strstr(err.msg, "gone"));
	assert_int_equal(git_source_fetch(cache, "../up", src, "main", NULL, got, &err), -EINVAL);
}

static void test_a_file_is_read_at_the_commit(void **state)
{
	if (!have_git)
		skip();
	sh("echo 'jobs: {}' >.vmci.yml && git add -A && git commit -qm p");
	char sha[41], gitdir[256];
	struct vmci_err err = {0};
	assert_int_equal(git_source_fetch(cache, "r", src, "main", NULL, sha, &err), 0);
	sh("echo changed >.vmci.yml && git commit -qam later");
	assert_int_equal(git_source_dir(cache, "r", gitdir, sizeof(gitdir), &err), 0);
	struct buf b = {0};
	assert_int_equal(git_source_read_file(gitdir, sha, ".vmci.yml", 1 << 20, &b, &err), 0);
	assert_string_equal(buf_cstr(&b), "jobs: {}\n");
	assert_int_equal(git_source_read_file(gitdir, sha, "missing.yml", 1 << 20, &b, &err),
			 -ENOENT);
	buf_free(&b);
}

/* Reads the tar the workspace writes into names and contents. */
static void read_tar(const char *path, struct buf *listing)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_all(a);
	assert_int_equal(archive_read_open_filename(a, path, 10240), ARCHIVE_OK);
	struct archive_entry *e;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		char data[256] = "";
		ssize_t n = archive_read_data(a, data, sizeof(data) - 1);
		data[n > 0 ? n : 0] = 0;
		const char *link = archive_entry_symlink(e);
		buf_appendf(listing, "%s %o %s%s|", archive_entry_pathname(e),
			    (unsigned)archive_entry_perm(e), link ? "->" : "", link ? link : data);
	}
	archive_read_free(a);
}

static void test_the_workspace_is_the_commits_tree_only_by_tar_and_disk(void **state)
{
	if (!have_git)
		skip();
	sh("mkdir -p sub && echo deep >sub/d.txt && printf 'run\\n' >run.sh && chmod 755 run.sh"
	   " && ln -sf sub/d.txt link && git add -A && git commit -qm tree");
	char sha[41], gitdir[256];
	struct vmci_err err = {0};
	assert_int_equal(git_source_fetch(cache, "t", src, "main", NULL, sha, &err), 0);
	/* What the working tree has after the commit must not travel. */
	sh("echo dirty >sub/d.txt && echo new >untracked.txt");
	assert_int_equal(git_source_dir(cache, "t", gitdir, sizeof(gitdir), &err), 0);
	struct runner_workspace *ws = NULL;
	assert_int_equal(runner_workspace_from_commit(gitdir, sha, "refs/heads/main", &ws, &err),
			 0);
	assert_string_equal(ws->sha, sha);
	assert_string_equal(ws->ref, "refs/heads/main");
	char tar[256];
	snprintf(tar, sizeof(tar), "%s/ws.tar", dir);
	int fd = open(tar, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(runner_workspace_write_tar(ws, fd, &err), 0);
	close(fd);
	struct buf listing = {0};
	read_tar(tar, &listing);
	const char *l = buf_cstr(&listing);
	assert_non_null(strstr(l, "sub/d.txt 644 deep\n|"));
	assert_non_null(strstr(l, "run.sh 755 run\n|"));
	assert_non_null(strstr(l, "link 777 ->sub/d.txt|"));
	assert_null(strstr(l, "untracked"));
	assert_null(strstr(l, "dirty"));
	buf_free(&listing);

	/* The disk holds the same tree: the commit's bytes and modes. */
	assert_true(runner_workspace_bytes(ws) >= 9); /* "deep\n" and "run\n" at least */
	char image[PATH_MAX];
	if (runner_workspace_disk_image(ws, image, sizeof(image), &err))
		fail_msg("%s", err.msg);
	char *cat[] = {"debugfs", "-R", "cat /sub/d.txt", image, NULL};
	struct buf out = {0};
	assert_int_equal(run_command(cat, &out, &err), 0);
	assert_string_equal(buf_cstr(&out), "deep\n");
	buf_free(&out);
	char *stat[] = {"debugfs", "-R", "stat /run.sh", image, NULL};
	assert_int_equal(run_command(stat, &out, &err), 0);
	assert_non_null(strstr(buf_cstr(&out), "Mode:  0755"));
	buf_free(&out);
	runner_workspace_free(ws);
	assert_int_equal(access(image, F_OK), -1); /* removed with the workspace */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fetch_resolves_a_branch_and_keeps_an_older_sha),
	    cmocka_unit_test(test_an_unknown_ref_or_sha_is_enoent),
	    cmocka_unit_test(test_a_bad_url_says_which_repository),
	    cmocka_unit_test(test_a_file_is_read_at_the_commit),
	    cmocka_unit_test(test_the_workspace_is_the_commits_tree_only_by_tar_and_disk),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
