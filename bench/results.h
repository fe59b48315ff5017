/*
 * Benchmark rows, printed and recorded: every benchmark prints its tables
 * with these, and each row also goes into the JSON file named by
 * $VMCI_BENCH_RESULTS (bench/run-benches sets build/bench/results.json),
 * so that runs can be compared:
 *
 *   [{"bench": "bench_run", "case": "warm pool", "command": "vmci run -j 2",
 *     "inputs": "40-job matrix, -j 2", "runs": 1, "figure": 11234.5,
 *     "min": ..., "max": ..., "unit": "ms"}, ...]
 *
 * figure is the median. Without $VMCI_BENCH_RESULTS nothing is recorded.
 */
#ifndef VMCI_BENCH_RESULTS_H
#define VMCI_BENCH_RESULTS_H

#include <stddef.h>

#include "stats.h"

/* Prints a table's header. */
void bench_header(const char *title);

/*
 * Prints a row (stats_print_row) and appends it to the results file; a
 * file that cannot be written is said once on stderr, the table goes on.
 */
void bench_row(const char *name, const char *command, const char *inputs, size_t runs,
	       struct stats s, const char *unit);

#endif
