/*
 * runner: a job's log, capped at its log-limit with its head and tail
 * kept.
 */
#ifndef VMCI_RUNNER_LOG_CAP_H
#define VMCI_RUNNER_LOG_CAP_H

#include "common/common.h"

/* ---- a job's log, capped (runner/log_cap.c) -------------------------- */

/*
 * A log of at most `limit` bytes (a job's log-limit), for whatever keeps
 * logs (the terminal's log files, the service's store). Its first bytes,
 * the head, go straight through to write; once the head is full, the
 * newest bytes are held in memory (the tail: half the limit, at most
 * RUNNER_LOG_TAIL_MAX) and written when the log ends. A log that outgrew
 * its limit then reads: the head, a notice line
 *
 *   ==> log cut: N bytes dropped here (log-limit 1M keeps the first H and the last T bytes)
 *
 * and the tail, never more than `limit` bytes in all; N is exactly the
 * bytes given that are not in the log. A log within its limit is written
 * whole, unchanged. Not thread-safe: the caller serializes.
 */
#define RUNNER_LOG_TAIL_MAX   (8 << 20)
#define RUNNER_LOG_NOTICE_MAX 200 /* bytes the notice may take */
#define RUNNER_LOG_MIN_LIMIT  (4 * RUNNER_LOG_NOTICE_MAX)

/* Where a log's bytes go, in order. Returns 0 or a negative code (which stops the writes). */
typedef int (*runner_log_write_fn)(void *ctx, const void *data, size_t len);

struct runner_log_cap;

/* Returns 0 with *out, or -EINVAL (limit below RUNNER_LOG_MIN_LIMIT) or -ENOMEM with err. */
int runner_log_cap_new(int64_t limit, runner_log_write_fn write, void *ctx,
		       struct runner_log_cap **out, struct vmci_err *err);

/*
 * Adds data to the log. Returns how many of its first bytes went through
 * to write now (all of them while the head has room; the others are held
 * for the tail), or the first negative code of write (or -ENOMEM), after
 * which nothing more is written.
 */
ssize_t runner_log_cap_write(struct runner_log_cap *c, const void *data, size_t len);

/*
 * Ends the log: writes what is held, after the notice when bytes were
 * dropped. Returns 0 or the first failure of write. Later writes fail.
 */
int runner_log_cap_finish(struct runner_log_cap *c);

/* Bytes dropped so far (final after runner_log_cap_finish). */
int64_t runner_log_cap_dropped(const struct runner_log_cap *c);

/* Frees without finishing (the held tail is lost). Safe on NULL. */
void runner_log_cap_free(struct runner_log_cap *c);

#endif
