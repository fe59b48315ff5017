/*
 * Interruption by signal, one scheme for every front end.
 *
 * SIGINT, SIGTERM and SIGHUP are blocked in every thread and taken by one
 * thread with sigwait, so no handler ever runs in the middle of a job's
 * code. The first signal calls what the front end registered as its
 * cancellation (cancel the jobs, stop their VMs in order); with nothing
 * registered, or on a second signal, the process ends at once, after the
 * registered cleanup (the terminal's state) and the removal of the run
 * directories it holds: its QEMUs die with it (PR_SET_PDEATHSIG), and
 * children it spawns get a clean signal mask.
 */
#include "runner/interrupt.h"
#include "runner/run_dir.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static struct {
	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when a call of the handler returns */
	struct runner_interrupt handler;
	int calling; /* calls of a copy of handler under way (0 or 1) */
	pthread_t thread;
	void (*cleanup)(void);
	int exit_code;
	int count;
	int first_signal;
	bool started;
} state = {.lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

/* Marks the end of a call of the handler copied under the lock (see runner_interrupt_set). */
static void call_done(void)
{
	pthread_mutex_lock(&state.lock);
	state.calling--;
	pthread_cond_broadcast(&state.idle);
	pthread_mutex_unlock(&state.lock);
}

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	for (;;) {
		int signo;
		if (sigwait(set, &signo))
			continue;
		if (signo == SIGUSR1) {
			pthread_mutex_lock(&state.lock);
			struct runner_interrupt h = state.handler;
			if (h.move)
				state.calling++;
			pthread_mutex_unlock(&state.lock);
			if (h.move) {
				h.move(h.ctx);
				call_done();
			}
			continue;
		}
		pthread_mutex_lock(&state.lock);
		if (++state.count == 1)
			state.first_signal = signo;
		struct runner_interrupt h = state.handler;
		bool cancel = state.count == 1 && h.cancel;
		if (cancel)
			state.calling++;
		pthread_mutex_unlock(&state.lock);
		if (cancel) {
			h.cancel(h.ctx, signo);
			call_done();
			continue;
		}
		if (state.cleanup)
			state.cleanup();
		/* Its VMs die with the process: their directories (and workspace disks) go now. */
		runner_remove_own_run_dirs();
		fprintf(stderr, "\nvmci: killed\n");
		_exit(state.exit_code ? state.exit_code : 128 + signo);
	}
	return NULL;
}

static void no_op(int signo)
{
}

void runner_interrupt_start(void (*cleanup)(void), int exit_code)
{
	pthread_mutex_lock(&state.lock);
	bool started = state.started;
	if (!started) {
		state.started = true;
		state.cleanup = cleanup;
		state.exit_code = exit_code;
	}
	pthread_mutex_unlock(&state.lock);
	if (started)
		return;
	static sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	/*
	 * A handler (not SIG_IGN, which a background shell job inherits) so that sigwait sees them.
	 */
	struct sigaction sa = {.sa_handler = no_op};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_t t;
	pthread_mutex_lock(&state.lock);
	if (pthread_create(&t, NULL, signal_thread, &set) == 0) {
		state.thread = t;
		pthread_detach(t);
	}
	pthread_mutex_unlock(&state.lock);
}

struct runner_interrupt runner_interrupt_set(const struct runner_interrupt *handler)
{
	pthread_mutex_lock(&state.lock);
	struct runner_interrupt old = state.handler;
	state.handler = handler ? *handler : (struct runner_interrupt){0};
	/*
	 * A call of the old handler under way ends first, so that its context
	 * can be freed on return (unless the handler itself is the caller).
	 */
	while (state.calling && !pthread_equal(pthread_self(), state.thread))
		pthread_cond_wait(&state.idle, &state.lock);
	pthread_mutex_unlock(&state.lock);
	return old;
}

int runner_interrupted(void)
{
	pthread_mutex_lock(&state.lock);
	int signo = state.first_signal;
	pthread_mutex_unlock(&state.lock);
	return signo;
}
