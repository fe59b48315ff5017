/*
 * Parse + validate + expand of generated pipeline files (pipe_load from
 * text in memory to the expanded run, freed between runs).
 *
 * Prints one row per case: the number of jobs the file expands to and the
 * min / median / max wall time over RUNS runs. The aim (issue 5): a
 * matrix of 10,000 jobs in under 50 ms.
 */
#include "bench/results.h"
#include "common/common.h"
#include "pipelines/pipelines.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS 25

static const char steps[] = "    steps:\n"
			    "      - name: configure ${{ matrix.os }}\n"
			    "        run: ./configure CC=${{ matrix.cc }}\n"
			    "      - run: |\n"
			    "          make -j2 OPT=${{ matrix.opt }}\n"
			    "          make check\n"
			    "        timeout: 10m\n"
			    "      - run: make dist\n"
			    "        env: { TAG: \"${{ vmci.sha }}\" }\n";

/* Ten plain jobs, each needing the one before. */
static void ten_jobs(struct buf *b)
{
	buf_appendf(b,
		    "name: ten\non: { push: { branches: [main] } }\nenv: { CFLAGS: -O2 }\njobs:\n");
	for (int i = 0; i < 10; i++) {
		buf_appendf(b, "  job%d:\n    image: debian-12\n    timeout: 20m\n", i);
		if (i)
			buf_appendf(b, "    needs: [job%d]\n", i - 1);
		buf_appendf(b, "    env: { N: \"%d\" }\n    steps:\n", i);
		buf_appendf(b, "      - run: make -j2 N=${{ env.N }}\n      - run: make check\n");
		buf_appendf(b, "    artifacts: [build/*.tar.gz]\n");
	}
}

static void values(struct buf *b, const char *key, const char *prefix, int n)
{
	buf_appendf(b, "        %s: [", key);
	for (int i = 0; i < n; i++)
		buf_appendf(b, "%s%s%d", i ? ", " : "", prefix, i);
	buf_appendf(b, "]\n");
}

/* One job whose matrix is 10 x 10 x 10 x 10 = 10,000 combinations. */
static void matrix_10k(struct buf *b)
{
	buf_appendf(b, "env: { CFLAGS: -O2 }\njobs:\n  build:\n    image: ${{ matrix.os }}\n");
	buf_appendf(b, "    strategy:\n      matrix:\n");
	values(b, "os", "os-", 10);
	values(b, "cc", "cc-", 10);
	values(b, "opt", "O", 10);
	values(b, "arch", "arch-", 10);
	buf_appendf(b, "    env: { CC: \"${{ matrix.cc }}\", ARCH: \"${{ matrix.arch }}\" }\n%s",
		    steps);
}

/*
 * 10 x 10 x 10 x 11 = 11,000; one exclude takes a whole value out (-1,000),
 * one a single combination (-1); one include extends 1,000 combinations
 * and one adds a new one (+1): 10,000 jobs.
 */
static void matrix_10k_rules(struct buf *b)
{
	buf_appendf(b,
		    "jobs:\n  build:\n    image: ${{ matrix.os }}\n    strategy:\n      matrix:\n");
	values(b, "os", "os-", 10);
	values(b, "cc", "cc-", 10);
	values(b, "opt", "O", 10);
	values(b, "arch", "arch-", 11);
	buf_appendf(b, "        exclude:\n          - { arch: arch-10 }\n"
		       "          - { os: os-9, cc: cc-9, opt: O9, arch: arch-9 }\n");
	buf_appendf(b, "        include:\n          - { os: os-1, coverage: \"yes\" }\n"
		       "          - { os: other, cc: cc-0, opt: O0, arch: arch-0 }\n");
	buf_appendf(b, "    env: { CC: \"${{ matrix.cc }}\" }\n%s", steps);
}

/* 100 jobs of 100 combinations each, each needing the one before. */
static void jobs_100x100(struct buf *b)
{
	buf_appendf(b, "jobs:\n");
	for (int i = 0; i < 100; i++) {
		buf_appendf(b, "  j%d:\n    image: ${{ matrix.os }}\n", i);
		if (i)
			buf_appendf(b, "    needs: j%d\n", i - 1);
		buf_appendf(b, "    strategy:\n      matrix:\n");
		values(b, "os", "os-", 10);
		values(b, "cc", "cc-", 10);
		buf_appendf(b, "        opt: [O2]\n%s", steps);
	}
}

/* 30 keys of 10 values: refused with its size (10^30), never made. */
static void matrix_refused(struct buf *b)
{
	buf_appendf(b, "jobs:\n  huge:\n    image: x\n    strategy:\n      matrix:\n");
	for (int i = 0; i < 30; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		values(b, key, "v", 10);
	}
	buf_appendf(b, "    steps: [{run: x}]\n");
}

static int bench(const char *name, void (*make)(struct buf *), bool expect_valid)
{
	struct buf text = {0};
	make(&text);
	double ms[RUNS];
	size_t jobs = 0;
	for (int i = 0; i < RUNS; i++) {
		struct pipe_errors errors = {0};
		struct pipe_run *run = NULL;
		int64_t t0 = clock_ns();
		int rc = pipe_load((const char *)text.data, text.len, NULL, &run, &errors);
		ms[i] = (double)(clock_ns() - t0) / 1e6;
		if ((rc == 0) != expect_valid) {
			fprintf(stderr, "bench_pipelines: case '%s': pipe_load returned %d\n", name,
				rc);
			for (size_t e = 0; e < errors.len; e++)
				fprintf(stderr, "  %d:%d: %s\n", errors.items[e].line,
					errors.items[e].col, errors.items[e].message);
			pipe_errors_free(&errors);
			buf_free(&text);
			return 1;
		}
		jobs = run ? run->n_jobs : 0;
		pipe_run_free(run);
		pipe_errors_free(&errors);
	}
	char inputs[64];
	snprintf(inputs, sizeof(inputs), "expands to %zu jobs", jobs);
	bench_row(name, "pipe_load", inputs, RUNS, stats_of(ms, RUNS), "ms");
	buf_free(&text);
	return 0;
}

int main(void)
{
	int failed = 0;
	bench_header("pipelines: parse + validate + expand");
	failed |= bench("10 jobs", ten_jobs, true);
	failed |= bench("matrix 10x10x10x10", matrix_10k, true);
	failed |= bench("matrix 10x10x10x11 exclude+include", matrix_10k_rules, true);
	failed |= bench("100 jobs x 100 combinations", jobs_100x100, true);
	failed |= bench("matrix 10^30 (refused)", matrix_refused, false);
	return failed;
}
