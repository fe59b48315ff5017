/*
 * Did-you-mean suggestions: the candidate a misspelt word most likely
 * meant, by optimal string alignment distance (edits, counting a swap of
 * neighbours as one).
 */
#include "common/common.h"

#include <stdint.h>
#include <string.h>

/* Words longer than this are not compared: their distance is SIZE_MAX. */
#define SUGGEST_MAX_LEN 64

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > SUGGEST_MAX_LEN || lb > SUGGEST_MAX_LEN)
		return SIZE_MAX;
	size_t d[SUGGEST_MAX_LEN + 1][SUGGEST_MAX_LEN + 1];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

const char *suggest_nearest(const char *word, const char *const *candidates, size_t n)
{
	size_t len = strlen(word);
	/* Short words get one edit, longer ones up to three: "stpes" -> "steps". */
	size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
	const char *best = NULL;
	size_t best_d = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		size_t lc = strlen(candidates[i]);
		if ((lc > len ? lc - len : len - lc) > limit)
			continue; /* too far apart in length to be within the limit */
		size_t d = edit_distance(word, candidates[i]);
		/* Never a candidate all of whose letters would have to change. */
		if (d <= limit && d < best_d && d < lc) {
			best = candidates[i];
			best_d = d;
		}
	}
	return best;
}
