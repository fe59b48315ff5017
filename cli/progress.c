/* A one-line progress display for long work, redrawn in place on a terminal. */
#include "cli/cli.h"

#include "common/common.h"

#include <string.h>
#include <unistd.h>

void cli_progress(void *ctx, const char *step, long long done, long long total)
{
	struct cli_progress *p = ctx;
	bool tty = isatty(STDERR_FILENO);
	bool new_step = strcmp(p->step, step) != 0;
	if (!tty) {
		/* Not a terminal: one line per step, no redraws. */
		if (new_step)
			fprintf(stderr, "%s: %s\n", p->label, step);
		snprintf(p->step, sizeof(p->step), "%s", step);
		return;
	}
	int64_t now = clock_ms();
	if (!new_step && now - p->last_draw_ms < 100 && done != total)
		return;
	p->last_draw_ms = now;
	snprintf(p->step, sizeof(p->step), "%s", step);
	char bar[32] = "";
	if (total > 0) {
		int width = 20;
		int filled = (int)(done * width / (total ? total : 1));
		if (filled > width)
			filled = width;
		bar[0] = '[';
		for (int i = 0; i < width; i++)
			bar[1 + i] = i < filled ? '#' : '.';
		snprintf(bar + 1 + width, sizeof(bar) - 1 - (size_t)width, "] %3lld%%",
			 done * 100 / total);
	} else if (done > 0) {
		snprintf(bar, sizeof(bar), "%.1f MiB", (double)done / (1 << 20));
	}
	fprintf(stderr, "\r\033[K%s: %s %s", p->label, step, bar);
	p->drawn = true;
}

void cli_progress_end(struct cli_progress *p)
{
	if (p->drawn && isatty(STDERR_FILENO))
		fprintf(stderr, "\r\033[K");
	p->drawn = false;
}
