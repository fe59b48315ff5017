/* Summaries of repeated measurements for benchmark tables. */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct stats stats_of(double *values, size_t n)
{
	struct stats s = {0};
	if (n == 0)
		return s;
	qsort(values, n, sizeof(double), cmp_double);
	s.min = values[0];
	s.max = values[n - 1];
	s.median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
	return s;
}

double stats_percentile(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

void stats_print_header(const char *title)
{
	printf("## %s\n\n", title);
	printf("| %-28s | %-40s | %-26s | %4s | %10s | %10s | %10s | %-5s |\n", "benchmark",
	       "command", "inputs", "runs", "min", "median", "max", "unit");
	printf("|%.30s|%.42s|%.28s|%.6s|%.12s|%.12s|%.12s|%.7s|\n",
	       "------------------------------", "------------------------------------------",
	       "----------------------------", "------", "------------", "------------",
	       "------------", "-------");
}

void stats_print_row(const char *name, const char *command, const char *inputs, size_t runs,
		     struct stats s, const char *unit)
{
	printf("| %-28s | %-40s | %-26s | %4zu | %10.2f | %10.2f | %10.2f | %-5s |\n", name,
	       command, inputs, runs, s.min, s.median, s.max, unit);
	fflush(stdout);
}
