/*
 * The end of `vmci run` (contract in cli/board.h): the summary table, what
 * failed and where its log is, and the machine-readable result (--json).
 */
#include "cli/board.h"
#include "cli/cli.h"

#include "pipelines/pipelines.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

const char *summary_path(const char *path, const char *cwd)
{
	size_t n = strlen(cwd);
	if (n > 1 && !strncmp(path, cwd, n) && path[n] == '/')
		return path + n + 1;
	return path;
}

static bool selected(const struct run_summary *s, size_t i)
{
	return !s->selected || s->selected[i];
}

static void print_tail(FILE *out, const struct buf *tail, int max_lines)
{
	if (!tail->len)
		return;
	const char *start = (const char *)tail->data, *end = start + tail->len;
	if (end > start && end[-1] == '\n')
		end--;
	const char *p = end;
	int lines = 0;
	while (p > start && lines < max_lines) {
		p--;
		if (*p == '\n' && ++lines == max_lines) {
			p++;
			break;
		}
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		fprintf(out, "  | %.*s\n", (int)(e - p), p);
		p = e + 1;
	}
}

static const char *result_color(enum runner_result r)
{
	return r == RUNNER_PASSED   ? "\033[32m"
	       : r == RUNNER_FAILED ? "\033[1;31m"
	       : r == RUNNER_ERROR  ? "\033[1;35m"
				    : "\033[33m";
}

void summary_print(FILE *out, const struct run_summary *s, int64_t elapsed)
{
	const struct pipe_run *run = s->run;
	int name_w = 4;
	for (size_t i = 0; i < run->n_jobs; i++)
		if (selected(s, i) && (int)strlen(run->jobs[i].name) > name_w)
			name_w = (int)strlen(run->jobs[i].name);
	fprintf(out, "\n%-*s  %-9s  %8s  %s\n", name_w, "JOB", "RESULT", "DURATION",
		"FAILING STEP");
	int counts[RUNNER_SKIPPED + 1] = {0};
	for (size_t i = 0; i < run->n_jobs; i++) {
		if (!selected(s, i))
			continue;
		const struct board_job *bj = board_job(s->board, i);
		const struct runner_job_result *r = &bj->res;
		counts[r->result]++;
		char dur[32] = "-", step[300] = "";
		if (r->result != RUNNER_SKIPPED && !(r->result == RUNNER_CANCELLED && !r->attempts))
			format_duration(r->duration_ms, dur, sizeof(dur));
		if (r->failed_step >= 0)
			snprintf(step, sizeof(step), "%s: %s",
				 run->jobs[i].steps[r->failed_step].name, r->how);
		else if (r->result == RUNNER_SKIPPED || r->result == RUNNER_CANCELLED)
			snprintf(step, sizeof(step), "(%s)", r->how);
		const char *word = runner_result_name(r->result);
		fprintf(out, "%-*s  %s%-9s%s  %8s  %s\n", name_w, run->jobs[i].name,
			s->color ? result_color(r->result) : "", word, s->color ? "\033[0m" : "",
			dur, step);
	}
	/* What went wrong, where to look. */
	for (size_t i = 0; i < run->n_jobs; i++) {
		if (!selected(s, i))
			continue;
		const struct board_job *bj = board_job(s->board, i);
		const struct runner_job_result *r = &bj->res;
		if (r->result != RUNNER_FAILED && r->result != RUNNER_ERROR && !r->error[0])
			continue;
		fprintf(out, "\n%s%s%s: ", s->color ? "\033[1m" : "", run->jobs[i].name,
			s->color ? "\033[0m" : "");
		if (r->result == RUNNER_ERROR)
			fprintf(out, "infrastructure error%s: %s\n",
				r->attempts > 1 ? " on every attempt" : "", r->error);
		else if (r->failed_step >= 0)
			fprintf(out, "step '%s': %s; its last output:\n",
				run->jobs[i].steps[r->failed_step].name, r->how);
		else
			fprintf(out, "%s%s%s\n", r->how, r->error[0] ? ": " : "", r->error);
		if (r->result == RUNNER_FAILED && r->failed_step >= 0) {
			print_tail(out, &bj->fail_tail, 15);
			if (!bj->fail_tail.len)
				fprintf(out, "  (no output)\n");
			if (r->error[0])
				fprintf(out, "  also: %s\n", r->error);
		}
		if (bj->log_path[0] && bj->log_dropped)
			fprintf(out, "  log: %s (cut at its log-limit: %lld bytes dropped)\n",
				summary_path(bj->log_path, s->cwd), (long long)bj->log_dropped);
		else if (bj->log_path[0])
			fprintf(out, "  log: %s\n", summary_path(bj->log_path, s->cwd));
	}
	char dur[32];
	format_duration(elapsed, dur, sizeof(dur));
	fprintf(out, "\n%d passed", counts[RUNNER_PASSED]);
	static const enum runner_result others[] = {RUNNER_FAILED, RUNNER_ERROR, RUNNER_CANCELLED,
						    RUNNER_SKIPPED};
	for (size_t k = 0; k < ARRAY_LEN(others); k++)
		if (counts[others[k]])
			fprintf(out, ", %d %s", counts[others[k]], runner_result_name(others[k]));
	fprintf(out, " in %s\n", dur);
	if (s->run_dir)
		fprintf(out, "logs and artifacts: %s/\n", summary_path(s->run_dir, s->cwd));
	fflush(out);
}

json_t *summary_json(const struct run_summary *s, const struct runner_workspace *ws,
		     const char *run_id, int exit_code, int64_t elapsed)
{
	const struct pipe_run *run = s->run;
	json_t *jobs = json_array();
	for (size_t i = 0; i < run->n_jobs; i++) {
		if (!selected(s, i))
			continue;
		const struct pipe_job *j = &run->jobs[i];
		const struct board_job *bj = board_job(s->board, i);
		const struct runner_job_result *r = &bj->res;
		json_t *matrix = json_object();
		for (size_t v = 0; v < j->n_matrix; v++)
			json_object_set_new(matrix, j->matrix[v].key,
					    json_string(j->matrix[v].value));
		json_t *steps = json_array();
		for (size_t k = 0; k < j->n_steps; k++) {
			const struct runner_step_result *sr =
			    k < bj->n_steps ? &bj->steps[k] : NULL;
			bool ran = sr && sr->result != RUNNER_PENDING;
			json_t *st =
			    json_pack("{s:s, s:s}", "name", j->steps[k].name, "result",
				      ran ? (sr->continued ? "failed-continued"
							   : runner_result_name(sr->result))
					  : "not-run");
			if (ran) {
				json_object_set_new(st, "how", json_string(sr->how));
				json_object_set_new(st, "duration_ms",
						    json_integer(sr->duration_ms));
				if (sr->exit.kind == VM_EXITED)
					json_object_set_new(st, "exit_code",
							    json_integer(sr->exit.code));
			}
			json_array_append_new(steps, st);
		}
		char dir[256], art[PATH_MAX] = "";
		runner_job_dirname(j->name, dir, sizeof(dir));
		if (j->n_artifacts && s->artifacts_dir)
			fs_path(art, sizeof(art), "%s/%s", s->artifacts_dir, dir);
		json_t *o = json_pack(
		    "{s:s, s:s, s:s, s:o, s:s, s:i, s:I, s:I, s:s, s:s, s:o, s:s, s:o, s:o, s:o, "
		    "s:b}",
		    "name", j->name, "id", j->id, "image", j->image, "matrix", matrix, "result",
		    runner_result_name(r->result), "attempts", r->attempts, "duration_ms",
		    (json_int_t)r->duration_ms, "boot_ms", (json_int_t)r->boot_ms, "os", r->os,
		    "arch", r->arch, "failed_step",
		    r->failed_step >= 0 ? json_string(j->steps[r->failed_step].name) : json_null(),
		    "how", r->how, "error", r->error[0] ? json_string(r->error) : json_null(),
		    "log", bj->log_path[0] ? json_string(bj->log_path) : json_null(), "artifacts",
		    art[0] ? json_string(art) : json_null(), "kept", r->kept);
		json_object_set_new(o, "log_dropped", json_integer(bj->log_dropped));
		json_object_set_new(o, "steps", steps);
		json_array_append_new(jobs, o);
	}
	const char *result = exit_code == EXIT_OK	       ? "passed"
			     : exit_code == EXIT_FAILED	       ? "failed"
			     : exit_code == RUN_EXIT_CANCELLED ? "cancelled"
							       : "error";
	json_t *o =
	    json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:I}, s:s, s:i, s:I, s:o}", "pipeline",
		      run->name, "run_id", run_id, "workspace", "root", ws->root, "sha", ws->sha,
		      "ref", ws->ref, "files", (json_int_t)ws->n_files, "result", result,
		      "exit_code", exit_code, "duration_ms", (json_int_t)elapsed, "jobs", jobs);
	if (o && s->run_dir)
		json_object_set_new(o, "dir", json_string(s->run_dir));
	return o;
}
