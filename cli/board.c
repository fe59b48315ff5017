/*
 * The terminal side of `vmci run` (contract in cli/board.h).
 *
 * Sink callbacks come from the job threads; one mutex guards the records,
 * the log files and the output stream. A live board is redrawn by its own
 * thread: the cursor goes up over the lines drawn last time, and each line
 * is rewritten and cleared to its end, cut to the terminal's width so
 * that no line wraps and the count stays right.
 */
#include "cli/board.h"

#include "pipelines/pipelines.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TAIL_MAX    8192 /* output kept per job for the summary */
#define REDRAW_MS   200
#define PARTIAL_MAX 4096 /* a longer line is printed in pieces */

struct board {
	struct board_opts o;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct board_job *jobs;
	size_t n_jobs;
	int64_t t0;
	int drawn; /* lines of the last live draw */
	bool ticking, stopping;
	pthread_t ticker;
};

static const char *const job_colors[] = {"\033[36m", "\033[35m", "\033[34m",
					 "\033[33m", "\033[32m", "\033[96m"};

static bool shown(const struct board *b, size_t i)
{
	return !b->o.selected || b->o.selected[i];
}

int board_new(const struct board_opts *opts, struct board **out, struct vmci_err *err)
{
	*out = NULL;
	struct board *b = calloc(1, sizeof(*b));
	if (!b)
		return vmci_err_set(err, ENOMEM, "out of memory");
	b->o = *opts;
	b->n_jobs = opts->run->n_jobs;
	b->t0 = clock_ms();
	b->jobs = calloc(b->n_jobs ? b->n_jobs : 1, sizeof(*b->jobs));
	if (!b->jobs) {
		free(b);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	int rc = opts->logs_dir ? fs_mkdir_p(opts->logs_dir, 0755, err) : 0;
	for (size_t i = 0; i < b->n_jobs && !rc; i++) {
		const struct pipe_job *j = &opts->run->jobs[i];
		struct board_job *bj = &b->jobs[i];
		bj->res.failed_step = -1;
		bj->steps = calloc(j->n_steps ? j->n_steps : 1, sizeof(*bj->steps));
		bj->n_steps = j->n_steps;
		if (!bj->steps) {
			rc = vmci_err_set(err, ENOMEM, "out of memory");
			break;
		}
		if (opts->logs_dir && shown(b, i)) {
			char name[200];
			runner_job_dirname(j->name, name, sizeof(name));
			if (fs_path(bj->log_path, sizeof(bj->log_path), "%s/%s.log", opts->logs_dir,
				    name))
				rc = vmci_err_set(err, ENAMETOOLONG, "log path too long in %s",
						  opts->logs_dir);
		}
	}
	if (rc) {
		board_free(b);
		return rc;
	}
	*out = b;
	return 0;
}

/* ---- log lines (not live) ------------------------------------------------------- */

static void prefix(struct board *b, size_t i)
{
	const char *name = b->o.run->jobs[i].name;
	if (b->o.color)
		fprintf(b->o.out, "%s[%s]\033[0m ", job_colors[i % ARRAY_LEN(job_colors)], name);
	else
		fprintf(b->o.out, "[%s] ", name);
}

/* A line of vmci's own about job i: in the log file, and among the log lines. */
static void job_line(struct board *b, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void job_line(struct board *b, size_t i, const char *fmt, ...)
{
	char text[1400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	struct board_job *bj = &b->jobs[i];
	if (bj->cap) {
		char line[sizeof(text) + 8];
		int n = snprintf(line, sizeof(line), "==> %s\n", text);
		runner_log_cap_write(bj->cap, line, (size_t)n);
		fflush(bj->log);
	}
	if (!b->o.live) {
		prefix(b, i);
		fprintf(b->o.out, "%s%s%s\n", b->o.color ? "\033[1m" : "", text,
			b->o.color ? "\033[0m" : "");
		fflush(b->o.out);
	}
}

/* Prints the complete lines of a stream's output, keeping an unfinished one. */
static void print_lines(struct board *b, size_t i, int stream, const char *data, size_t len,
			bool flush)
{
	struct buf *part = &b->jobs[i].partial[stream == 2 ? 2 : 1];
	buf_append(part, data, len);
	size_t start = 0;
	for (size_t k = 0; k < part->len; k++) {
		if (part->data[k] != '\n' && k - start < PARTIAL_MAX)
			continue;
		prefix(b, i);
		fwrite(part->data + start, 1, k - start, b->o.out);
		fputc('\n', b->o.out);
		start = part->data[k] == '\n' ? k + 1 : k;
	}
	if (flush && start < part->len) {
		prefix(b, i);
		fwrite(part->data + start, 1, part->len - start, b->o.out);
		fputc('\n', b->o.out);
		start = part->len;
	}
	buf_consume(part, start);
	fflush(b->o.out);
}

static void flush_partials(struct board *b, size_t i)
{
	print_lines(b, i, 1, "", 0, true);
	print_lines(b, i, 2, "", 0, true);
}

/* ---- the log file ---------------------------------------------------------------- */

static int write_log(void *ctx, const void *data, size_t len)
{
	FILE *f = ctx;
	return fwrite(data, 1, len, f) == len ? 0 : -EIO;
}

/* Opens job i's log (once: attempts share it) with its cap. */
static void open_log(struct board *b, size_t i)
{
	struct board_job *bj = &b->jobs[i];
	if (!bj->log_path[0] || bj->log)
		return;
	struct vmci_err err = {0};
	bj->log = fopen(bj->log_path, "we");
	if (!bj->log) {
		log_warn("cannot write %s: %s", bj->log_path, strerror(errno));
	} else if (runner_log_cap_new(b->o.run->jobs[i].log_limit, write_log, bj->log, &bj->cap,
				      &err)) {
		log_warn("no log in %s: %s", bj->log_path, err.msg);
		fclose(bj->log);
		bj->log = NULL;
	}
}

/* Writes what the log holds back and closes it. */
static void close_log(struct board *b, size_t i)
{
	struct board_job *bj = &b->jobs[i];
	if (!bj->log)
		return;
	int rc = runner_log_cap_finish(bj->cap);
	bj->log_dropped = runner_log_cap_dropped(bj->cap);
	if (fclose(bj->log) != 0 && !rc)
		rc = -errno;
	if (rc)
		log_warn("cannot write %s: %s", bj->log_path, strerror(-rc));
	runner_log_cap_free(bj->cap);
	bj->cap = NULL;
	bj->log = NULL;
}

/* ---- sink callbacks ------------------------------------------------------------------ */

/* Job i's step records cover the steps its pipe_job knows now (they may grow). */
static bool steps_known(struct board *b, size_t i)
{
	struct board_job *bj = &b->jobs[i];
	size_t n = b->o.run->jobs[i].n_steps;
	if (n <= bj->n_steps)
		return true;
	struct runner_step_result *steps = realloc(bj->steps, n * sizeof(*steps));
	if (!steps)
		return false;
	memset(steps + bj->n_steps, 0, (n - bj->n_steps) * sizeof(*steps));
	bj->steps = steps;
	bj->n_steps = n;
	return true;
}

static void on_job_started(void *ctx, size_t i, int attempt)
{
	struct board *b = ctx;
	const struct pipe_job *j = &b->o.run->jobs[i];
	pthread_mutex_lock(&b->lock);
	struct board_job *bj = &b->jobs[i];
	bj->phase = BOARD_BOOTING;
	bj->attempt = attempt;
	if (attempt == 1)
		bj->started_ms = clock_ms();
	open_log(b, i);
	snprintf(bj->note, sizeof(bj->note), "%s", j->image);
	job_line(b, i, "starting on %s%s", j->image,
		 attempt > 1 ? " (another attempt after an infrastructure failure)" : "");
	pthread_mutex_unlock(&b->lock);
}

static void on_vm_ready(void *ctx, size_t i, const struct runner_job_result *res)
{
	struct board *b = ctx;
	char dur[32];
	format_duration(res->boot_ms, dur, sizeof(dur));
	pthread_mutex_lock(&b->lock);
	struct board_job *bj = &b->jobs[i];
	bj->phase = BOARD_RUNNING;
	snprintf(bj->res.os, sizeof(bj->res.os), "%s", res->os);
	snprintf(bj->res.arch, sizeof(bj->res.arch), "%s", res->arch);
	job_line(b, i, "VM ready: %s, %s (%s)", res->os, res->arch, dur);
	pthread_mutex_unlock(&b->lock);
}

static void on_step_started(void *ctx, size_t i, size_t step)
{
	struct board *b = ctx;
	const struct pipe_job *j = &b->o.run->jobs[i];
	pthread_mutex_lock(&b->lock);
	struct board_job *bj = &b->jobs[i];
	if (!steps_known(b, i)) {
		pthread_mutex_unlock(&b->lock);
		return;
	}
	bj->step = step;
	bj->tail.len = 0;
	bj->steps[step].result = RUNNER_PENDING;
	if (bj->phase == BOARD_BOOTING) /* without a vm_ready (a followed run): it runs */
		bj->phase = BOARD_RUNNING;
	snprintf(bj->note, sizeof(bj->note), "step %zu/%zu: %s", step + 1, j->n_steps,
		 j->steps[step].name);
	job_line(b, i, "step %zu/%zu: %s", step + 1, j->n_steps, j->steps[step].name);
	pthread_mutex_unlock(&b->lock);
}

static void on_output(void *ctx, size_t i, size_t step, int stream, const void *data, size_t len)
{
	struct board *b = ctx;
	pthread_mutex_lock(&b->lock);
	struct board_job *bj = &b->jobs[i];
	ssize_t shown_len = (ssize_t)len;
	if (bj->cap && (shown_len = runner_log_cap_write(bj->cap, data, len)) < 0)
		shown_len = (ssize_t)len; /* the log file failed (said when it closes): show all */
	buf_append(&bj->tail, data, len);
	if (bj->tail.len > TAIL_MAX)
		buf_consume(&bj->tail, bj->tail.len - TAIL_MAX);
	/* The lines show what the log has so far: its head, not what it may drop. */
	if (!b->o.live && !bj->held)
		print_lines(b, i, stream, data, (size_t)shown_len, false);
	if (!b->o.live && !bj->held && (size_t)shown_len < len) {
		bj->held = true;
		flush_partials(b, i);
		prefix(b, i);
		fprintf(b->o.out,
			"%s(the rest of its output is not shown: past its log-limit, the log keeps "
			"only its end)%s\n",
			b->o.color ? "\033[1m" : "", b->o.color ? "\033[0m" : "");
		fflush(b->o.out);
	}
	pthread_mutex_unlock(&b->lock);
}

static void on_step_finished(void *ctx, size_t i, size_t step, const struct runner_step_result *res)
{
	struct board *b = ctx;
	const struct pipe_job *j = &b->o.run->jobs[i];
	char dur[32];
	format_duration(res->duration_ms, dur, sizeof(dur));
	pthread_mutex_lock(&b->lock);
	struct board_job *bj = &b->jobs[i];
	if (steps_known(b, i))
		bj->steps[step] = *res;
	if (bj->log)
		fflush(bj->log);
	if (!b->o.live)
		flush_partials(b, i);
	if (res->result != RUNNER_PASSED && !res->continued) {
		bj->fail_tail.len = 0;
		buf_append(&bj->fail_tail, bj->tail.data, bj->tail.len);
	}
	const char *word = res->continued ? "failed, continuing" : runner_result_name(res->result);
	if (res->result == RUNNER_PASSED || !strcmp(res->how, word))
		job_line(b, i, "step '%s' %s (%s)", j->steps[step].name, word, dur);
	else
		job_line(b, i, "step '%s' %s: %s (%s)", j->steps[step].name, word, res->how, dur);
	pthread_mutex_unlock(&b->lock);
}

static void on_note(void *ctx, size_t i, const char *text)
{
	struct board *b = ctx;
	pthread_mutex_lock(&b->lock);
	snprintf(b->jobs[i].note, sizeof(b->jobs[i].note), "%s", text);
	job_line(b, i, "%s", text);
	pthread_mutex_unlock(&b->lock);
}

static void on_job_retrying(void *ctx, size_t i, int attempt, const char *why)
{
	struct board *b = ctx;
	pthread_mutex_lock(&b->lock);
	job_line(b, i, "attempt %d met an infrastructure failure, retrying: %s", attempt, why);
	pthread_mutex_unlock(&b->lock);
}

/* Called under the run's lock (runner/sched.c): takes only the board's. */
static void on_job_finished(void *ctx, size_t i, const struct runner_job_result *res)
{
	struct board *b = ctx;
	char dur[32];
	format_duration(res->duration_ms, dur, sizeof(dur));
	pthread_mutex_lock(&b->lock);
	struct board_job *bj = &b->jobs[i];
	steps_known(b, i); /* for summary_json, which reads those it has */
	char os[sizeof(bj->res.os)], arch[sizeof(bj->res.arch)];
	snprintf(os, sizeof(os), "%s", bj->res.os);
	snprintf(arch, sizeof(arch), "%s", bj->res.arch);
	bj->res = *res;
	if (!bj->res.os[0])
		snprintf(bj->res.os, sizeof(bj->res.os), "%s", os);
	if (!bj->res.arch[0])
		snprintf(bj->res.arch, sizeof(bj->res.arch), "%s", arch);
	bj->phase = BOARD_DONE;
	bj->ended_ms = clock_ms();
	if (!bj->started_ms)
		bj->started_ms = bj->ended_ms;
	const char *word = runner_result_name(res->result);
	const char *detail = res->result == RUNNER_ERROR ? res->error : res->how;
	if (!strcmp(detail, word))
		detail = "";
	job_line(b, i, "%s%s%s (%s)", word, *detail ? ": " : "", detail, dur);
	close_log(b, i);
	if (bj->log_dropped && !b->o.live) {
		prefix(b, i);
		fprintf(b->o.out, "log cut at its log-limit: %lld bytes dropped from its middle\n",
			(long long)bj->log_dropped);
		fflush(b->o.out);
	}
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

void board_sink(struct board *b, struct runner_sink *out)
{
	*out = (struct runner_sink){
	    .ctx = b,
	    .job_started = on_job_started,
	    .vm_ready = on_vm_ready,
	    .step_started = on_step_started,
	    .output = on_output,
	    .step_finished = on_step_finished,
	    .note = on_note,
	    .job_retrying = on_job_retrying,
	    .job_finished = on_job_finished,
	};
}

/* ---- the live board ---------------------------------------------------------------- */

static const char *state_color(const struct board_job *bj)
{
	if (bj->phase != BOARD_DONE)
		return bj->phase == BOARD_QUEUED ? "\033[2m" : "\033[1;36m";
	switch (bj->res.result) {
	case RUNNER_PASSED:
		return "\033[32m";
	case RUNNER_FAILED:
		return "\033[1;31m";
	case RUNNER_ERROR:
		return "\033[1;35m";
	default:
		return "\033[33m";
	}
}

static const char *state_word(const struct board_job *bj)
{
	switch (bj->phase) {
	case BOARD_QUEUED:
		return "queued";
	case BOARD_BOOTING:
		return "booting";
	case BOARD_RUNNING:
		return "running";
	case BOARD_DONE:
		break;
	}
	return runner_result_name(bj->res.result);
}

/* One board line for job i, cut to width columns (the text is ASCII but for names). */
static void draw_job(struct board *b, size_t i, int width, int name_w)
{
	const struct board_job *bj = &b->jobs[i];
	char dur[32] = "";
	if (bj->phase != BOARD_QUEUED)
		format_duration((bj->phase == BOARD_DONE ? bj->ended_ms : clock_ms()) -
				    bj->started_ms,
				dur, sizeof(dur));
	const char *detail = bj->phase == BOARD_DONE
				 ? (bj->res.result == RUNNER_ERROR ? bj->res.error : bj->res.how)
			     : bj->phase == BOARD_QUEUED ? ""
							 : bj->note;
	char line[512];
	int n = snprintf(line, sizeof(line), "  %-*.*s  %-9s %7s  %s", name_w, name_w,
			 b->o.run->jobs[i].name, state_word(bj), dur, detail);
	if (n > width - 1)
		n = width - 1;
	for (int k = 0; k < n; k++) /* a multi-line error shows its first line */
		if (line[k] == '\n' || line[k] == '\r' || line[k] == '\t')
			line[k] = ' ';
	if (b->o.color) {
		/* Colour the state word: it starts after the name column. */
		int at = 2 + name_w + 2;
		int wl = (int)strlen(state_word(bj));
		if (n > at + wl) {
			fprintf(b->o.out, "\r\033[K%.*s%s%.*s\033[0m%.*s\n", at, line,
				state_color(bj), wl, line + at, n - at - wl, line + at + wl);
			return;
		}
	}
	fprintf(b->o.out, "\r\033[K%.*s\n", n, line);
}

static void draw(struct board *b)
{
	struct winsize ws = {0};
	int cols = 100, rows = 40;
	if (ioctl(fileno(b->o.out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) {
		cols = ws.ws_col;
		rows = ws.ws_row > 4 ? ws.ws_row : 4;
	}
	size_t total = 0, counts[BOARD_DONE + 1] = {0}, failed = 0;
	int name_w = 8;
	for (size_t i = 0; i < b->n_jobs; i++) {
		if (!shown(b, i))
			continue;
		total++;
		counts[b->jobs[i].phase]++;
		if (b->jobs[i].phase == BOARD_DONE && b->jobs[i].res.result != RUNNER_PASSED)
			failed++;
		int l = (int)strlen(b->o.run->jobs[i].name);
		name_w = l > name_w ? l : name_w;
	}
	name_w = name_w > cols / 2 ? cols / 2 : name_w;
	if (b->drawn)
		fprintf(b->o.out, "\033[%dA", b->drawn);
	char elapsed[32];
	format_duration(clock_ms() - b->t0, elapsed, sizeof(elapsed));
	char bad[48] = "";
	if (failed)
		snprintf(bad, sizeof(bad), " (%zu not passed)", failed);
	fprintf(b->o.out, "\r\033[K%s%s%s: %zu jobs, %zu running, %zu done%s, %s\n",
		b->o.color ? "\033[1m" : "", b->o.run->name, b->o.color ? "\033[0m" : "", total,
		counts[BOARD_BOOTING] + counts[BOARD_RUNNING], counts[BOARD_DONE], bad, elapsed);
	int lines = 1;
	/* Every job when they fit; else the ones not queued or passed, then a count. */
	bool all = total + 2 <= (size_t)rows;
	size_t hidden = 0;
	for (size_t i = 0; i < b->n_jobs; i++) {
		if (!shown(b, i))
			continue;
		const struct board_job *bj = &b->jobs[i];
		bool quiet = bj->phase == BOARD_QUEUED ||
			     (bj->phase == BOARD_DONE && bj->res.result == RUNNER_PASSED);
		if (!all && (quiet || lines + 2 >= rows)) {
			hidden++;
			continue;
		}
		draw_job(b, i, cols, name_w);
		lines++;
	}
	if (hidden) {
		fprintf(b->o.out, "\r\033[K  ... and %zu more (%zu queued)\n", hidden,
			counts[BOARD_QUEUED]);
		lines++;
	}
	/* Lines left over from a taller draw are cleared. */
	for (int k = lines; k < b->drawn; k++)
		fprintf(b->o.out, "\r\033[K\n");
	if (b->drawn > lines)
		fprintf(b->o.out, "\033[%dA", b->drawn - lines);
	b->drawn = lines;
	fflush(b->o.out);
}

static void *ticker(void *arg)
{
	struct board *b = arg;
	pthread_mutex_lock(&b->lock);
	while (!b->stopping) {
		draw(b);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += REDRAW_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&b->cond, &b->lock, &ts);
	}
	draw(b);
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

void board_start(struct board *b)
{
	if (b->o.live && !b->ticking && pthread_create(&b->ticker, NULL, ticker, b) == 0)
		b->ticking = true;
}

void board_stop(struct board *b)
{
	if (!b->ticking)
		return;
	pthread_mutex_lock(&b->lock);
	b->stopping = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	pthread_join(b->ticker, NULL);
	b->ticking = false;
}

void board_message(struct board *b, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&b->lock);
	if (b->o.live && b->drawn) {
		/* Above the board: the board is drawn again below it. */
		fprintf(b->o.out, "\033[%dA\r\033[J", b->drawn);
		b->drawn = 0;
	}
	fprintf(b->o.out, "vmci: %s\n", text);
	if (b->ticking)
		draw(b);
	fflush(b->o.out);
	pthread_mutex_unlock(&b->lock);
}

const struct board_job *board_job(const struct board *b, size_t job)
{
	return &b->jobs[job];
}

int64_t board_elapsed_ms(const struct board *b)
{
	return clock_ms() - b->t0;
}

void board_free(struct board *b)
{
	if (!b)
		return;
	board_stop(b);
	for (size_t i = 0; i < b->n_jobs; i++) {
		struct board_job *bj = &b->jobs[i];
		close_log(b, i);
		free(bj->steps);
		buf_free(&bj->tail);
		buf_free(&bj->fail_tail);
		for (int k = 0; k < 3; k++)
			buf_free(&bj->partial[k]);
	}
	free(b->jobs);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
