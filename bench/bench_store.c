/*
 * The service's store on SQLite (WAL, synchronous=FULL, in $TMPDIR):
 *
 *   - claims per second: 400 queued jobs taken by 1 claimer, then by 4
 *     threads each with its own handle (claims only; the jobs stay
 *     running), on a fresh database each run;
 *   - the time to store a 100-job run (the trigger waits for it before it
 *     is acknowledged): a matrix of 100 combinations, 99 of them needing
 *     the first, p50 and p99 over many runs.
 *
 * Every commit syncs the WAL, so the figures follow the disk's fsync
 * time; the line after the table gives it for this directory.
 */
#include "runner/store.h"
#include "bench/results.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLAIM_JOBS 400
#define CLAIM_RUNS 5
#define CREATES	   200
#define RUN_JOBS   100

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench_store: %s: %s\n", what, why);
	exit(1);
}

/* 100 jobs "build (os-N)": job 0 is needed by all the others. */
static void make_jobs(struct store_job_spec *jobs, char names[][32], char matrix[][64],
		      size_t *need0)
{
	*need0 = 0;
	for (int i = 0; i < RUN_JOBS; i++) {
		snprintf(names[i], 32, "build (os-%d)", i);
		snprintf(matrix[i], 64, "{\"os\": \"os-%d\", \"cc\": \"gcc\"}", i);
		jobs[i] = (struct store_job_spec){.name = names[i],
						  .image = "debian-12",
						  .matrix_json = matrix[i],
						  .needs = i ? need0 : NULL,
						  .n_needs = i ? 1 : 0,
						  .timeout_s = 3600,
						  .retries = 1,
						  .fail_fast = true};
	}
}

static const struct store_run_spec run_spec = {
    .repo = "acme/widget", .ref = "refs/heads/main", .sha = "0123abcd", .trigger = "push"};

static struct store *open_store(const char *url)
{
	struct store *s;
	struct vmci_err err = {0};
	if (store_open(url, &s, &err))
		die("open", err.msg);
	return s;
}

struct claimer {
	const char *url;
	pthread_barrier_t *start;
	int claimed;
};

static void *claimer(void *arg)
{
	struct claimer *c = arg;
	struct store *s = open_store(c->url);
	struct vmci_err err = {0};
	char host[32];
	snprintf(host, sizeof(host), "host-%p", arg);
	pthread_barrier_wait(c->start);
	pthread_barrier_wait(c->start);
	struct store_job *j;
	int rc;
	while ((rc = store_claim(s, host, 600, &j, &err)) == 1) {
		c->claimed++;
		store_job_free(j);
	}
	if (rc < 0)
		die("claim", err.msg);
	store_close(s);
	return NULL;
}

/* Claims per second of `threads` claimers emptying a fresh queue of CLAIM_JOBS jobs. */
static double claims_per_second(const char *dir, int threads, int round)
{
	char url[PATH_MAX];
	snprintf(url, sizeof(url), "sqlite:%s/claims-%d-%d.db", dir, threads, round);
	struct store *s = open_store(url);
	static struct store_job_spec jobs[RUN_JOBS];
	static char names[RUN_JOBS][32], matrix[RUN_JOBS][64];
	size_t need0;
	make_jobs(jobs, names, matrix, &need0);
	for (int i = 0; i < RUN_JOBS; i++)
		jobs[i].n_needs = 0; /* every job claimable at once */
	struct vmci_err err = {0};
	for (int r = 0; r < CLAIM_JOBS / RUN_JOBS; r++) {
		int64_t id;
		if (store_run_create(s, &run_spec, jobs, RUN_JOBS, &id, &err))
			die("create", err.msg);
	}
	store_close(s);

	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
	struct claimer c[8] = {0};
	pthread_t t[8];
	for (int i = 0; i < threads; i++) {
		c[i] = (struct claimer){.url = url, .start = &start};
		pthread_create(&t[i], NULL, claimer, &c[i]);
	}
	pthread_barrier_wait(&start); /* every claimer has its handle open */
	int64_t t0 = clock_ns();
	pthread_barrier_wait(&start);
	int total = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		total += c[i].claimed;
	}
	double secs = (double)(clock_ns() - t0) / 1e9;
	pthread_barrier_destroy(&start);
	if (total != CLAIM_JOBS)
		die("claims", "not every job was claimed exactly once");
	return total / secs;
}

/* The fsync of a small write in dir, in ms (median of 20): what every commit pays. */
static double fsync_ms(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/fsync-probe", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(path, "cannot create");
	double ms[20];
	for (int i = 0; i < 20; i++) {
		int64_t t0 = clock_ns();
		if (write(fd, "x", 1) != 1 || fsync(fd) != 0)
			die(path, "write or fsync failed");
		ms[i] = (double)(clock_ns() - t0) / 1e6;
	}
	close(fd);
	return stats_of(ms, 20).median;
}

int main(void)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/vmci-bench-store.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp", dir);

	bench_header("store (SQLite, WAL, synchronous=FULL)");
	for (int threads = 1; threads <= 4; threads += 3) {
		double rate[CLAIM_RUNS];
		for (int i = 0; i < CLAIM_RUNS; i++)
			rate[i] = claims_per_second(dir, threads, i);
		char name[64], inputs[64];
		snprintf(name, sizeof(name), "claims, %d thread%s", threads,
			 threads > 1 ? "s" : "");
		snprintf(inputs, sizeof(inputs), "%d queued jobs, %d handle%s", CLAIM_JOBS, threads,
			 threads > 1 ? "s" : "");
		bench_row(name, "store_claim until empty", inputs, CLAIM_RUNS,
			  stats_of(rate, CLAIM_RUNS), "1/s");
	}

	char url[PATH_MAX];
	snprintf(url, sizeof(url), "sqlite:%s/create.db", dir);
	struct store *s = open_store(url);
	static struct store_job_spec jobs[RUN_JOBS];
	static char names[RUN_JOBS][32], matrix[RUN_JOBS][64];
	size_t need0;
	make_jobs(jobs, names, matrix, &need0);
	double ms[CREATES];
	struct vmci_err err = {0};
	for (int i = 0; i < CREATES; i++) {
		int64_t id, t0 = clock_ns();
		if (store_run_create(s, &run_spec, jobs, RUN_JOBS, &id, &err))
			die("create", err.msg);
		ms[i] = (double)(clock_ns() - t0) / 1e6;
	}
	store_close(s);
	struct stats st = stats_of(ms, CREATES);
	bench_row("create a 100-job run", "store_run_create", "100 jobs, 99 needs, matrix", CREATES,
		  st, "ms");
	printf("\ncreate a 100-job run: p50 %.2f ms, p99 %.2f ms; one fsync in %s: %.2f ms\n",
	       stats_percentile(ms, CREATES, 50), stats_percentile(ms, CREATES, 99),
	       getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", fsync_ms(dir));
	fs_rm_rf(dir, NULL);
	return 0;
}
