/*
 * A local run's own directory (runner/local_run.c): runs started at once
 * get directories of their own, `latest` names the newest, and pruning
 * keeps the newest runs and every run a process still holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[64], runs[PATH_MAX];

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/vmci-local-run-test.XXXXXX");
	if (!mkdtemp(root))
		return -1;
	snprintf(runs, sizeof(runs), "%s/.vmci/runs", root);
	return 0;
}

static int teardown(void **state)
{
	return fs_rm_rf(root, NULL);
}

static int clean(void **state)
{
	char vmci[PATH_MAX];
	snprintf(vmci, sizeof(vmci), "%s/.vmci", root);
	return fs_rm_rf(vmci, NULL);
}

/* The entries of runs, sorted, joined by spaces. */
static char *listing(void)
{
	struct dirent **names;
	int n = scandir(runs, &names, NULL, alphasort);
	assert_true(n >= 0);
	struct buf b = {0};
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' || names[i]->d_name[1] == 'l')
			buf_appendf(&b, "%s%s", b.len ? " " : "", names[i]->d_name);
		free(names[i]);
	}
	free(names);
	char *s = strdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

static void latest_is(const char *id)
{
	char latest[PATH_MAX], target[64] = "";
	snprintf(latest, sizeof(latest), "%s/latest", runs);
	ssize_t n = readlink(latest, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = 0;
	assert_string_equal(target, id);
}

static void test_runs_at_once_get_directories_of_their_own(void **state)
{
	struct runner_local_run a, b;
	assert_int_equal(runner_local_run_new(root, &a, NULL), 0);
	assert_int_equal(runner_local_run_new(root, &b, NULL), 0);
	assert_string_not_equal(a.id, b.id);
	assert_true(strcmp(a.id, b.id) < 0); /* names sort by age */
	assert_int_equal(strlen(a.id), 18);
	char want[PATH_MAX];
	snprintf(want, sizeof(want), "%s/%s", runs, a.id);
	assert_string_equal(a.dir, want);
	snprintf(want, sizeof(want), "%s/%s/logs", runs, a.id);
	assert_string_equal(a.logs, want);
	snprintf(want, sizeof(want), "%s/%s/artifacts", runs, a.id);
	assert_string_equal(a.artifacts, want);
	assert_true(fs_exists(a.dir) && fs_exists(b.dir));
	/* git ignores the lot. */
	struct buf ignore = {0};
	snprintf(want, sizeof(want), "%s/.vmci/.gitignore", root);
	assert_int_equal(fs_read_file(want, 64, &ignore, NULL), 0);
	assert_string_equal(buf_cstr(&ignore), "*\n");
	buf_free(&ignore);
	runner_local_run_close(&a, false);
	runner_local_run_close(&b, false);
	assert_true(fs_exists(a.dir) && fs_exists(b.dir));
}

static void test_runs_of_many_processes_at_once_never_share_a_directory(void **state)
{
	enum { N = 8 };
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t kids[N];
	for (int i = 0; i < N; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			struct runner_local_run r;
			char line[64];
			if (runner_local_run_new(root, &r, NULL) ||
			    runner_local_run_publish(&r, NULL))
				_exit(1);
			int n = snprintf(line, sizeof(line), "%s\n", r.id);
			_exit(write(fds[1], line, (size_t)n) == n ? 0 : 1);
		}
	}
	close(fds[1]);
	for (int i = 0; i < N; i++) {
		int status;
		assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	char ids[N * 32] = "";
	ssize_t got = read(fds[0], ids, sizeof(ids) - 1);
	close(fds[0]);
	assert_int_equal(got, N * 19);
	/* N distinct directories, each named by its run, and latest. */
	char *all = listing(), *save = NULL;
	int dirs = 0;
	bool latest = false;
	for (char *w = strtok_r(all, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (!strcmp(w, "latest")) {
			latest = true;
			continue;
		}
		assert_non_null(strstr(ids, w));
		dirs++;
	}
	assert_int_equal(dirs, N);
	assert_true(latest);
	free(all);
}

static void test_latest_names_the_newest_published_run(void **state)
{
	struct runner_local_run a, b;
	assert_int_equal(runner_local_run_new(root, &a, NULL), 0);
	assert_int_equal(runner_local_run_publish(&a, NULL), 0);
	latest_is(a.id);
	assert_int_equal(runner_local_run_new(root, &b, NULL), 0);
	latest_is(a.id); /* not before it is published */
	assert_int_equal(runner_local_run_publish(&b, NULL), 0);
	latest_is(b.id);
	/* No temporary link is left beside it. */
	char *all = listing();
	char want[128];
	snprintf(want, sizeof(want), "%s %s latest", a.id, b.id);
	assert_string_equal(all, want);
	free(all);
	runner_local_run_close(&a, false);
	runner_local_run_close(&b, false);
}

static void test_a_discarded_run_leaves_nothing(void **state)
{
	struct runner_local_run a;
	assert_int_equal(runner_local_run_new(root, &a, NULL), 0);
	runner_local_run_close(&a, true);
	assert_false(fs_exists(a.dir));
	assert_int_equal(a.lock, -1);
	char *all = listing();
	assert_string_equal(all, "");
	free(all);
}

static void test_prune_keeps_the_newest_and_the_runs_still_held(void **state)
{
	assert_int_equal(fs_mkdir_p(runs, 0755, NULL), 0);
	char path[PATH_MAX];
	for (int i = 1; i <= 25; i++) {
		snprintf(path, sizeof(path), "%s/20240101-0000%02d-01", runs, i);
		assert_int_equal(mkdir(path, 0755), 0);
	}
	/* Not runs: never pruned. */
	snprintf(path, sizeof(path), "%s/notes", runs);
	assert_int_equal(mkdir(path, 0755), 0);
	/* An old run whose process still runs. */
	snprintf(path, sizeof(path), "%s/20240101-000002-01", runs);
	int held = open(path, O_RDONLY | O_DIRECTORY);
	assert_true(held >= 0);
	assert_int_equal(flock(held, LOCK_EX), 0);

	assert_int_equal(runner_local_runs_prune(runs, 20), 4);
	for (int i = 1; i <= 25; i++) {
		snprintf(path, sizeof(path), "%s/20240101-0000%02d-01", runs, i);
		if (i > 5 || i == 2)
			assert_true(fs_exists(path));
		else
			assert_false(fs_exists(path));
	}
	snprintf(path, sizeof(path), "%s/notes", runs);
	assert_true(fs_exists(path));
	close(held);
	assert_int_equal(runner_local_runs_prune(runs, 20), 1);
}

static void test_publishing_prunes_beyond_the_kept_runs(void **state)
{
	assert_int_equal(fs_mkdir_p(runs, 0755, NULL), 0);
	char path[PATH_MAX];
	for (int i = 1; i <= RUNNER_KEEP_RUNS; i++) {
		snprintf(path, sizeof(path), "%s/20240101-0000%02d-01", runs, i);
		assert_int_equal(mkdir(path, 0755), 0);
	}
	struct runner_local_run r;
	assert_int_equal(runner_local_run_new(root, &r, NULL), 0);
	assert_int_equal(runner_local_run_publish(&r, NULL), 0);
	snprintf(path, sizeof(path), "%s/20240101-000001-01", runs);
	assert_false(fs_exists(path));
	snprintf(path, sizeof(path), "%s/20240101-000002-01", runs);
	assert_true(fs_exists(path));
	assert_true(fs_exists(r.dir));
	runner_local_run_close(&r, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_runs_at_once_get_directories_of_their_own, clean),
	    cmocka_unit_test_teardown(test_runs_of_many_processes_at_once_never_share_a_directory,
				      clean),
	    cmocka_unit_test_teardown(test_latest_names_the_newest_published_run, clean),
	    cmocka_unit_test_teardown(test_a_discarded_run_leaves_nothing, clean),
	    cmocka_unit_test_teardown(test_prune_keeps_the_newest_and_the_runs_still_held, clean),
	    cmocka_unit_test_teardown(test_publishing_prunes_beyond_the_kept_runs, clean),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
