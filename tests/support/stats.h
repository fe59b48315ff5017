/* Summaries of repeated measurements for benchmark tables. */
#ifndef VMCI_TESTS_STATS_H
#define VMCI_TESTS_STATS_H

#include <stddef.h>

struct stats {
	double min, median, max;
};

/* Sorts values in place and summarizes them. */
struct stats stats_of(double *values, size_t n);
/* The p-th percentile (0 to 100, nearest rank) of values sorted by stats_of; 0 when n is 0. */
double stats_percentile(const double *sorted, size_t n, double p);

/* Prints the table header and a row: name, command, inputs, runs, min/median/max with unit. */
void stats_print_header(const char *title);
void stats_print_row(const char *name, const char *command, const char *inputs, size_t runs,
		     struct stats s, const char *unit);

#endif
