/*
 * The workspace of a local run (runner/workspace.c) on a git repository
 * made with the git command: which files travel, and what the tar stream
 * holds for them (contents from the working directory, modes, symlinks).
 * Skipped when git is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/runner.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
	char cmd[2048], full[2200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
	assert_int_equal(system(full), 0);
}

static int setup(void **state)
{
	if (system("git --version >/dev/null 2>&1") != 0)
		return 0;
	snprintf(dir, sizeof(dir), "/tmp/vmci-ws-test.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	sh("git init -q -b main . && git config user.email t@example.org && git config user.name "
	   "t");
	sh("echo committed >committed.txt && echo before >modified.txt && echo gone >deleted.txt"
	   " && echo staged-gone >unstaged.txt && mkdir -p src/deep && echo x >src/deep/x.c"
	   " && printf '#!/bin/sh\\n' >run.sh && chmod 755 run.sh && ln -s committed.txt link"
	   " && printf 'ignored.txt\\nbuild/\\n' >.gitignore && git add -A && git commit -qm one");
	sh("echo after >modified.txt && rm deleted.txt && git rm -q --cached unstaged.txt"
	   " && echo new >untracked.txt && mkdir -p newdir/sub && echo n >newdir/sub/n.txt"
	   " && echo secret >ignored.txt && mkdir -p build && echo o >build/out.o"
	   " && echo staged >staged.txt && git add staged.txt"
	   " && mkdir -p .vmci/logs && echo log >.vmci/logs/a.log");
	return 0;
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

static bool listed(const struct runner_workspace *ws, const char *path)
{
	for (size_t i = 0; i < ws->n_files; i++)
		if (!strcmp(ws->files[i], path))
			return true;
	return false;
}

static void test_the_working_tree_is_what_travels(void **state)
{
	if (!dir[0])
		skip();
	struct runner_workspace *ws;
	struct vmci_err err = {0};
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/src/deep", dir);
	assert_int_equal(runner_workspace_open(sub, &ws, &err), 0);
	char real[PATH_MAX];
	assert_non_null(realpath(dir, real));
	assert_string_equal(ws->root, real);
	assert_true(ws->git);
	assert_int_equal(strlen(ws->sha), 40);
	assert_string_equal(ws->ref, "refs/heads/main");
	const char *want[] = {".gitignore", "committed.txt", "modified.txt",  "src/deep/x.c",
			      "run.sh",	    "link",	     "untracked.txt", "newdir/sub/n.txt",
			      "staged.txt", "unstaged.txt"};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!listed(ws, want[i]))
			fail_msg("%s is not in the workspace", want[i]);
	const char *unwanted[] = {"deleted.txt", "ignored.txt", "build/out.o", ".vmci/logs/a.log",
				  ".git/HEAD"};
	for (size_t i = 0; i < sizeof(unwanted) / sizeof(unwanted[0]); i++)
		if (listed(ws, unwanted[i]))
			fail_msg("%s should not be in the workspace", unwanted[i]);
	for (size_t i = 1; i < ws->n_files; i++)
		assert_true(strcmp(ws->files[i - 1], ws->files[i]) < 0);
	runner_workspace_free(ws);
}

static void test_the_tar_holds_contents_modes_links_and_directories(void **state)
{
	if (!dir[0])
		skip();
	struct runner_workspace *ws;
	struct vmci_err err = {0};
	char deep[160];
	snprintf(deep, sizeof(deep), "%s/src/deep", dir);
	assert_int_equal(chmod(deep, 0750), 0);
	assert_int_equal(runner_workspace_open(dir, &ws, &err), 0);
	char tar[128];
	snprintf(tar, sizeof(tar), "%s.tar", dir);
	int fd = open(tar, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(runner_workspace_write_tar(ws, fd, &err), 0);
	close(fd);

	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	assert_int_equal(archive_read_open_filename(a, tar, 10240), ARCHIVE_OK);
	struct archive_entry *e;
	size_t entries = 0;
	bool saw_modified = false, saw_exec = false, saw_link = false, saw_dir = false;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		if (archive_entry_filetype(e) == AE_IFDIR) {
			/* Each directory once, with its mode, before what it holds. */
			if (!strcmp(name, "src/deep") || !strcmp(name, "src/deep/")) {
				assert_int_equal(archive_entry_perm(e), 0750);
				assert_false(saw_dir);
				saw_dir = true;
			}
			continue;
		}
		if (!strcmp(name, "src/deep/x.c"))
			assert_true(saw_dir);
		entries++;
		if (!strcmp(name, "modified.txt")) {
			char data[64] = "";
			archive_read_data(a, data, sizeof(data) - 1);
			assert_string_equal(data, "after\n");
			saw_modified = true;
		} else if (!strcmp(name, "run.sh")) {
			assert_int_equal(archive_entry_perm(e), 0755);
			saw_exec = true;
		} else if (!strcmp(name, "link")) {
			assert_int_equal(archive_entry_filetype(e), AE_IFLNK);
			assert_string_equal(archive_entry_symlink(e), "committed.txt");
			saw_link = true;
		}
	}
	archive_read_free(a);
	unlink(tar);
	assert_true(saw_modified && saw_exec && saw_link && saw_dir);
	assert_int_equal(entries, ws->n_files);
	runner_workspace_free(ws);
}

static void test_a_plain_directory_travels_whole(void **state)
{
	char plain[64] = "/tmp/vmci-ws-plain.XXXXXX";
	assert_non_null(mkdtemp(plain));
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && mkdir -p a/b .git .vmci && echo 1 >a/b/f && echo 2 >top"
		 " && echo g >.git/x && echo v >.vmci/y",
		 plain);
	assert_int_equal(system(cmd), 0);
	struct runner_workspace *ws;
	struct vmci_err err = {0};
	assert_int_equal(runner_workspace_open(plain, &ws, &err), 0);
	assert_false(ws->git);
	assert_string_equal(ws->sha, "");
	assert_int_equal(ws->n_files, 2);
	assert_string_equal(ws->files[0], "a/b/f");
	assert_string_equal(ws->files[1], "top");
	runner_workspace_free(ws);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", plain);
	assert_int_equal(system(cmd), 0);
}

static void test_auto_sends_a_disk_from_the_threshold_on(void **state)
{
	char plain[64] = "/tmp/vmci-ws-size.XXXXXX";
	assert_non_null(mkdtemp(plain));
	char cmd[512];
	/* Sparse files: the size counts, not the blocks. */
	snprintf(cmd, sizeof(cmd), "cd %s && echo small >a && truncate -s %lld b", plain,
		 RUNNER_WS_DISK_MIN_BYTES - 7);
	assert_int_equal(system(cmd), 0);
	struct runner_workspace *ws;
	struct vmci_err err = {0};
	assert_int_equal(runner_workspace_open(plain, &ws, &err), 0);
	assert_int_equal(runner_workspace_bytes(ws), RUNNER_WS_DISK_MIN_BYTES - 1);
	assert_false(runner_workspace_wants_disk(ws, RUNNER_WS_AUTO));
	assert_true(runner_workspace_wants_disk(ws, RUNNER_WS_DISK));
	runner_workspace_free(ws);

	snprintf(cmd, sizeof(cmd), "cd %s && echo big >>b", plain);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(runner_workspace_open(plain, &ws, &err), 0);
	assert_true(runner_workspace_wants_disk(ws, RUNNER_WS_AUTO));
	assert_false(runner_workspace_wants_disk(ws, RUNNER_WS_TAR));
	runner_workspace_free(ws);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", plain);
	assert_int_equal(system(cmd), 0);
}

static void test_workspace_via_names_parse(void **state)
{
	enum runner_ws_via via;
	assert_int_equal(runner_ws_via_parse("disk", &via), 0);
	assert_int_equal(via, RUNNER_WS_DISK);
	assert_int_equal(runner_ws_via_parse("tar", &via), 0);
	assert_int_equal(via, RUNNER_WS_TAR);
	assert_int_equal(runner_ws_via_parse("auto", &via), 0);
	assert_int_equal(via, RUNNER_WS_AUTO);
	assert_int_equal(runner_ws_via_parse("nfs", &via), -1);
	assert_int_equal(runner_ws_via_parse(NULL, &via), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_working_tree_is_what_travels),
	    cmocka_unit_test(test_the_tar_holds_contents_modes_links_and_directories),
	    cmocka_unit_test(test_a_plain_directory_travels_whole),
	    cmocka_unit_test(test_auto_sends_a_disk_from_the_threshold_on),
	    cmocka_unit_test(test_workspace_via_names_parse),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
