/*
 * Watchers of the queue in this process: called after a transaction that
 * may have made jobs claimable commits, so idle workers of this process
 * claim them at once instead of at their next poll.
 */
#include "runner/store/internal.h"

#include <errno.h>
#include <pthread.h>

#define WATCHERS_MAX 16

struct watcher {
	void (*fn)(void *ctx);
	void *ctx;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct watcher watchers[WATCHERS_MAX];

int store_queue_watch(void (*fn)(void *ctx), void *ctx, struct vmci_err *err)
{
	pthread_mutex_lock(&mu);
	int id = -1;
	for (int i = 0; i < WATCHERS_MAX && id < 0; i++)
		if (!watchers[i].fn)
			id = i;
	if (id >= 0)
		watchers[id] = (struct watcher){fn, ctx};
	pthread_mutex_unlock(&mu);
	if (id < 0)
		return vmci_err_set(
		    err, ENOSPC, "more than %d watchers of the queue in one process", WATCHERS_MAX);
	return id;
}

void store_queue_unwatch(int id)
{
	if (id < 0 || id >= WATCHERS_MAX)
		return;
	pthread_mutex_lock(&mu);
	watchers[id] = (struct watcher){0};
	pthread_mutex_unlock(&mu);
}

void queue_changed(void)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < WATCHERS_MAX; i++)
		if (watchers[i].fn)
			watchers[i].fn(watchers[i].ctx);
	pthread_mutex_unlock(&mu);
}
