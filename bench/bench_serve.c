/*
 * vmci serve, in this process (runner/http and runner/service over a
 * SQLite store in $TMPDIR, a git repository made for the run):
 *
 *   - trigger to `queued`: POST /api/v1/runs of a pipeline whose matrix
 *     makes 100 jobs, from the request to its 201 (the run and its 100
 *     jobs are in the store by then: the commit fetched into the bare
 *     cache, the pipeline loaded and expanded), p50 and p99 over
 *     TRIGGERS requests, no workers running;
 *   - jobs per hour: JOBS trivial jobs (one echo on busybox-x86_64) of
 *     one run through the service at CAPACITY jobs at once, from the POST
 *     to the run's end, with warm pools (booted by a warm-up run first,
 *     as in a service that has been up a while) and then with a VM
 *     booted per job (`vmci serve --cold`), in the same run of the
 *     benchmark. The ratio of the two is the figure.
 *
 * $BENCH_SERVE_JOBS sets JOBS (default 60).
 */
#include "images/images.h"
#include "runner/http.h"
#include "runner/service.h"
#include "runner/store.h"
#include "bench/results.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMAGE	   "busybox-x86_64"
#define TRIGGERS   100
#define CAPACITY   2
#define JOBS_FIRST 60

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench_serve: %s: %s\n", what, why);
	exit(1);
}

/* ---- a repository with one branch per pipeline ------------------------------------------ */

static void sh(const char *dir, const char *script)
{
	struct vmci_err err = {0};
	char *argv[] = {"sh", "-c", (char *)script, NULL};
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)) || chdir(dir))
		die(dir, "cannot enter");
	if (run_command(argv, NULL, &err))
		die(script, err.msg);
	if (chdir(cwd))
		die(cwd, "cannot go back");
}

/* Commits text as .vmci.yml on branch (made from the first commit). */
static void commit_pipeline(const char *repo, const char *branch, const char *text)
{
	char path[PATH_MAX], script[512];
	struct vmci_err err = {0};
	snprintf(script, sizeof(script), "git checkout -q -B %s", branch);
	sh(repo, script);
	fs_path(path, sizeof(path), "%s/.vmci.yml", repo);
	if (fs_write_atomic(path, text, strlen(text), 0644, &err))
		die(path, err.msg);
	snprintf(script, sizeof(script), "git add -A && git commit -qm %s", branch);
	sh(repo, script);
}

/* "jobs:" with one job `name` whose matrix n counts 1..count; trivial steps. */
static char *matrix_pipeline(const char *name, int count, int rows)
{
	struct buf b = {0};
	buf_appendf(&b,
		    "jobs:\n  %s:\n    image: " IMAGE "\n    resources: { memory: 256M }\n"
		    "    strategy:\n      matrix:\n",
		    name);
	/* rows x (count / rows) combinations: the matrix of a real pipeline has several keys. */
	buf_appendf(&b, "        row: [");
	for (int i = 1; i <= rows; i++)
		buf_appendf(&b, "%s\"r%d\"", i > 1 ? ", " : "", i);
	buf_appendf(&b, "]\n        n: [");
	for (int i = 1; i <= count / rows; i++)
		buf_appendf(&b, "%s\"%d\"", i > 1 ? ", " : "", i);
	buf_appendf(&b, "]\n    steps:\n      - run: echo job ${{ matrix.row }} ${{ matrix.n }}\n");
	buf_cstr(&b);
	return (char *)b.data; /* the caller frees it */
}

/* ---- the service ----------------------------------------------------------------------- */

struct bench {
	char dir[PATH_MAX], repo[PATH_MAX], git[PATH_MAX], artifacts[PATH_MAX];
	char url[PATH_MAX + 16];
	char token[STORE_TOKEN_LEN + 1];
	struct service_repo repo_cfg;
	struct service_config cfg;
	struct store *store;
	struct http_server *http;
	char base[64];
};

/* A fresh store named name in the bench's directory, a token, and the API on a free port. */
static void bench_open(struct bench *b, const char *name)
{
	struct vmci_err err = {0};
	snprintf(b->url, sizeof(b->url), "sqlite:%s/%s.db", b->dir, name);
	if (store_open(b->url, &b->store, &err) ||
	    store_token_create(b->store, "bench", b->token, &err))
		die(b->url, err.msg);
	struct http_opts o = {.listen = "127.0.0.1:0",
			      .db_url = b->url,
			      .config = &b->cfg,
			      .dirs = {.git = b->git, .artifacts = b->artifacts},
			      .host = "bench"};
	if (http_start(&o, &b->http, &err))
		die("http_start", err.msg);
	snprintf(b->base, sizeof(b->base), "http://127.0.0.1:%d", http_port(b->http));
}

static void bench_close(struct bench *b)
{
	http_stop(b->http);
	store_close(b->store);
	b->http = NULL;
	b->store = NULL;
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
	return buf_append(ctx, data, size * n) ? 0 : size * n;
}

/* POST /api/v1/runs for branch; returns the new run's id (the answer must be 201). */
static int64_t post_run(const struct bench *b, const char *branch)
{
	CURL *curl = curl_easy_init();
	char url[128], auth[128], body[256];
	snprintf(url, sizeof(url), "%s/api/v1/runs", b->base);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", b->token);
	snprintf(body, sizeof(body), "{\"repo\": \"bench\", \"ref\": \"refs/heads/%s\"}", branch);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	struct buf out = {0};
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
	long status = 0;
	if (curl_easy_perform(curl) != CURLE_OK)
		die(url, "no answer");
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(curl);
	if (status != 201)
		die("POST /api/v1/runs", buf_cstr(&out));
	const char *id = strstr(buf_cstr(&out), "\"id\":");
	int64_t run = id ? strtoll(id + 5, NULL, 10) : 0;
	buf_free(&out);
	return run;
}

/* Waits for the run to end; dies unless it succeeded. */
static void wait_run(const struct bench *b, int64_t run_id)
{
	for (;;) {
		struct store_run *run = NULL;
		struct vmci_err err = {0};
		if (store_run_get(b->store, run_id, &run, &err))
			die("run", err.msg);
		enum store_status st = run->status;
		store_run_free(run);
		if (st == STORE_SUCCESS)
			return;
		if (store_status_finished(st))
			die("run", store_status_name(st));
		usleep(100 * 1000);
	}
}

/* ---- the two measurements --------------------------------------------------------------- */

static void trigger_to_queued(struct bench *b)
{
	bench_open(b, "trigger");
	double ms[TRIGGERS];
	for (int i = 0; i < TRIGGERS; i++) {
		int64_t t0 = clock_ns();
		post_run(b, "hundred");
		ms[i] = (double)(clock_ns() - t0) / 1e6;
	}
	struct vmci_err err = {0};
	struct store_run *run = NULL;
	if (store_run_get(b->store, 1, &run, &err) || run->n_jobs != 100 ||
	    run->jobs[0].status != STORE_QUEUED)
		die("trigger", "the run is not 100 queued jobs");
	store_run_free(run);
	bench_close(b);
	struct stats st = stats_of(ms, TRIGGERS);
	bench_row("trigger to queued", "POST /api/v1/runs", "100-job matrix, 10 x 10", TRIGGERS, st,
		  "ms");
	printf("\ntrigger to queued: p50 %.2f ms, p99 %.2f ms\n\n",
	       stats_percentile(ms, TRIGGERS, 50), stats_percentile(ms, TRIGGERS, 99));
}

/* JOBS jobs through the service, warm or cold; returns jobs per hour. */
static double jobs_per_hour(struct bench *b, bool cold, int jobs)
{
	bench_open(b, cold ? "cold" : "warm");
	struct service_opts so = {.db_url = b->url,
				  .host = "bench",
				  .capacity = CAPACITY,
				  .config = &b->cfg,
				  .dirs = {.git = b->git, .artifacts = b->artifacts},
				  .cold = cold};
	struct service *svc = NULL;
	struct vmci_err err = {0};
	if (service_start(&so, &svc, &err))
		die("service_start", err.msg);
	/* The pool boots with the first jobs that need it: once, as in a service long up. */
	wait_run(b, post_run(b, "warmup"));
	int64_t t0 = clock_ns();
	wait_run(b, post_run(b, "many"));
	double secs = (double)(clock_ns() - t0) / 1e9;
	service_stop(svc, 0);
	bench_close(b);
	return jobs / secs * 3600;
}

int main(void)
{
	const char *env = getenv("BENCH_SERVE_JOBS");
	int jobs = env && atoi(env) > 0 ? atoi(env) : JOBS_FIRST;
	struct img_boot img;
	struct vmci_err err = {0};
	if (img_ensure(IMAGE, &img, NULL, NULL, &err))
		die("image", err.msg);
	curl_global_init(CURL_GLOBAL_DEFAULT);

	static struct bench b;
	snprintf(b.dir, sizeof(b.dir), "%s/vmci-bench-serve.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(b.dir))
		die("mkdtemp", b.dir);
	fs_path(b.repo, sizeof(b.repo), "%s/repo", b.dir);
	fs_path(b.git, sizeof(b.git), "%s/git", b.dir);
	fs_path(b.artifacts, sizeof(b.artifacts), "%s/artifacts", b.dir);
	if (fs_mkdir_p(b.repo, 0755, &err))
		die(b.repo, err.msg);
	sh(b.repo, "git init -q -b main . && git config user.email b@example.org && "
		   "git config user.name bench && echo x >README && git add -A && "
		   "git commit -qm init");
	char *hundred = matrix_pipeline("cell", 100, 10);
	char *many = matrix_pipeline("trivial", jobs, 1);
	char *warmup = matrix_pipeline("warmup", CAPACITY, 1);
	if (!hundred || !many || !warmup)
		die("pipeline", "out of memory");
	commit_pipeline(b.repo, "hundred", hundred);
	commit_pipeline(b.repo, "many", many);
	commit_pipeline(b.repo, "warmup", warmup);
	b.repo_cfg = (struct service_repo){.name = "bench", .url = b.repo};
	b.cfg = (struct service_config){.repos = &b.repo_cfg, .n_repos = 1};

	bench_header("vmci serve (SQLite in $TMPDIR, " IMAGE ")");
	trigger_to_queued(&b);

	double warm = jobs_per_hour(&b, false, jobs);
	double cold = jobs_per_hour(&b, true, jobs);
	char inputs[64];
	snprintf(inputs, sizeof(inputs), "%d trivial jobs, %d at once", jobs, CAPACITY);
	bench_header("vmci serve: jobs per hour on this machine");
	bench_row("warm pool", "POST /api/v1/runs, run to its end", inputs, 1,
		  (struct stats){warm, warm, warm}, "1/h");
	bench_row("cold boot per job", "the same, vmci serve --cold", inputs, 1,
		  (struct stats){cold, cold, cold}, "1/h");
	printf("\njobs per hour: warm pool %.0f, cold boot %.0f: %.1f times as many\n", warm, cold,
	       warm / cold);
	free(hundred);
	free(many);
	free(warmup);
	fs_rm_rf(b.dir, NULL);
	curl_global_cleanup();
	return 0;
}
