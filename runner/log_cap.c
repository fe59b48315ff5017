/*
 * A job's log, capped (contract in runner/runner.h).
 *
 * The head goes through as it comes, so a log can be followed while the
 * job runs. Past the head, bytes go into a ring in memory, which is
 * written out when the log ends: whole when the log stayed within its
 * limit after all, else its last tail_max bytes after a notice. The ring
 * is allocated only when the head is full, so small logs cost nothing.
 */
#include "runner/log_cap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct runner_log_cap {
	runner_log_write_fn write;
	void *ctx;
	int64_t limit;
	int64_t head_max, tail_max;
	int64_t head;	   /* bytes written through */
	int64_t held;	   /* bytes given after the head */
	uint8_t last;	   /* the head's last byte */
	uint8_t *ring;	   /* ring_cap bytes, or NULL until the head is full */
	size_t ring_cap;   /* tail_max + RUNNER_LOG_NOTICE_MAX: all of a log within its limit */
	size_t ring_start; /* the oldest byte */
	size_t ring_len;
	int error; /* the first failure of write */
	bool finished;
};

int runner_log_cap_new(int64_t limit, runner_log_write_fn write, void *ctx,
		       struct runner_log_cap **out, struct vmci_err *err)
{
	*out = NULL;
	if (limit < RUNNER_LOG_MIN_LIMIT)
		return vmci_err_set(err, EINVAL, "a log limit of %lld bytes is below the least, %d",
				    (long long)limit, RUNNER_LOG_MIN_LIMIT);
	struct runner_log_cap *c = calloc(1, sizeof(*c));
	if (!c)
		return vmci_err_set(err, ENOMEM, "out of memory");
	c->write = write;
	c->ctx = ctx;
	c->limit = limit;
	c->tail_max = limit / 2 < RUNNER_LOG_TAIL_MAX ? limit / 2 : RUNNER_LOG_TAIL_MAX;
	c->head_max = limit - c->tail_max - RUNNER_LOG_NOTICE_MAX;
	c->ring_cap = (size_t)c->tail_max + RUNNER_LOG_NOTICE_MAX;
	c->last = '\n';
	*out = c;
	return 0;
}

static void put(struct runner_log_cap *c, const void *data, size_t len)
{
	if (len && !c->error)
		c->error = c->write(c->ctx, data, len);
}

/* Keeps the newest ring_cap bytes of everything given to it. */
static void ring_add(struct runner_log_cap *c, const uint8_t *data, size_t len)
{
	if (len >= c->ring_cap) {
		memcpy(c->ring, data + len - c->ring_cap, c->ring_cap);
		c->ring_start = 0;
		c->ring_len = c->ring_cap;
		return;
	}
	size_t end = (c->ring_start + c->ring_len) % c->ring_cap;
	size_t first = len < c->ring_cap - end ? len : c->ring_cap - end;
	memcpy(c->ring + end, data, first);
	memcpy(c->ring, data + first, len - first);
	size_t over = c->ring_len + len > c->ring_cap ? c->ring_len + len - c->ring_cap : 0;
	c->ring_start = (c->ring_start + over) % c->ring_cap;
	c->ring_len += len - over;
}

/* Writes the last n bytes of the ring, oldest first. */
static void ring_put(struct runner_log_cap *c, size_t n)
{
	size_t start = (c->ring_start + c->ring_len - n) % c->ring_cap;
	size_t first = n < c->ring_cap - start ? n : c->ring_cap - start;
	put(c, c->ring + start, first);
	put(c, c->ring, n - first);
}

ssize_t runner_log_cap_write(struct runner_log_cap *c, const void *data, size_t len)
{
	if (c->finished)
		return -EINVAL;
	size_t through = 0;
	if (c->head < c->head_max) {
		through =
		    (int64_t)len < c->head_max - c->head ? len : (size_t)(c->head_max - c->head);
		put(c, data, through);
		c->head += (int64_t)through;
		if (through)
			c->last = ((const uint8_t *)data)[through - 1];
	}
	if (through < len) {
		if (!c->ring && !(c->ring = malloc(c->ring_cap))) {
			c->error = c->error ? c->error : -ENOMEM;
		} else {
			ring_add(c, (const uint8_t *)data + through, len - through);
			c->held += (int64_t)(len - through);
		}
	}
	return c->error ? c->error : (ssize_t)through;
}

int64_t runner_log_cap_dropped(const struct runner_log_cap *c)
{
	return c->held > (int64_t)c->ring_cap ? c->held - c->tail_max : 0;
}

/* "1M", "3G": the limit as a pipeline writes it, else in bytes. */
static void limit_text(int64_t limit, char *out, size_t size)
{
	if (limit % (1LL << 30) == 0)
		snprintf(out, size, "%lldG", (long long)(limit >> 30));
	else if (limit % (1LL << 20) == 0)
		snprintf(out, size, "%lldM", (long long)(limit >> 20));
	else
		snprintf(out, size, "%lld bytes", (long long)limit);
}

int runner_log_cap_finish(struct runner_log_cap *c)
{
	if (c->finished)
		return c->error;
	c->finished = true;
	int64_t dropped = runner_log_cap_dropped(c);
	if (!dropped) {
		ring_put(c, c->ring_len);
		return c->error;
	}
	char limit[32], notice[RUNNER_LOG_NOTICE_MAX + 1];
	limit_text(c->limit, limit, sizeof(limit));
	int n = snprintf(notice, sizeof(notice),
			 "%s==> log cut: %lld bytes dropped here (log-limit %s keeps the first "
			 "%lld and the last %lld bytes)\n",
			 c->last == '\n' ? "" : "\n", (long long)dropped, limit,
			 (long long)c->head_max, (long long)c->tail_max);
	put(c, notice, n < (int)sizeof(notice) ? (size_t)n : sizeof(notice) - 1);
	ring_put(c, (size_t)c->tail_max);
	return c->error;
}

void runner_log_cap_free(struct runner_log_cap *c)
{
	if (!c)
		return;
	free(c->ring);
	free(c);
}
