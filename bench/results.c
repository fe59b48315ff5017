/*
 * The one writer of build/bench/results.json: each row is appended to the
 * array in the file (read, extended, written to a temporary name and
 * renamed), so the benchmarks that bench/run-benches runs one after
 * another build one array.
 */
#include "bench/results.h"

#include "common/common.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void bench_header(const char *title)
{
	stats_print_header(title);
}

static void record(const char *path, json_t *row)
{
	static bool warned;
	json_t *all = json_load_file(path, 0, NULL);
	if (!json_is_array(all)) {
		json_decref(all);
		all = json_array();
	}
	char tmp[PATH_MAX];
	bool ok = all && !json_array_append(all, row) &&
		  !fs_path(tmp, sizeof(tmp), "%s.tmp", path) &&
		  !json_dump_file(all, tmp, JSON_INDENT(1) | JSON_REAL_PRECISION(6)) &&
		  !rename(tmp, path);
	if (!ok && !warned) {
		fprintf(stderr, "%s: cannot record results in %s\n", program_invocation_short_name,
			path);
		warned = true;
	}
	json_decref(all);
}

void bench_row(const char *name, const char *command, const char *inputs, size_t runs,
	       struct stats s, const char *unit)
{
	stats_print_row(name, command, inputs, runs, s, unit);
	const char *path = getenv("VMCI_BENCH_RESULTS");
	if (!path || !*path)
		return;
	json_t *row = json_pack(
	    "{s:s, s:s, s:s, s:s, s:i, s:f, s:f, s:f, s:s}", "bench", program_invocation_short_name,
	    "case", name, "command", command ? command : "", "inputs", inputs ? inputs : "", "runs",
	    (int)runs, "figure", s.median, "min", s.min, "max", s.max, "unit", unit);
	if (row)
		record(path, row);
	json_decref(row);
}
