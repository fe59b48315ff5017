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
	struct runner_interrupt handler;
	void (*cleanup)(void);
	int exit_code;
	int count;
	int first_signal;
	bool started;
} state = {.lock = PTHREAD_MUTEX_INITIALIZER};

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
			pthread_mutex_unlock(&state.lock);
			if (h.move)
				h.move(h.ctx);
			continue;
		}
		pthread_mutex_lock(&state.lock);
		if (++state.count == 1)
			state.first_signal = signo;
		struct runner_interrupt h = state.handler;
		bool cancel = state.count == 1 && h.cancel;
		pthread_mutex_unlock(&state.lock);
		if (cancel) {
			h.cancel(h.ctx, signo);
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
	if (pthread_create(&t, NULL, signal_thread, &set) == 0)
		pthread_detach(t);
}

struct runner_interrupt runner_interrupt_set(const struct runner_interrupt *handler)
{
	pthread_mutex_lock(&state.lock);
	struct runner_interrupt old = state.handler;
	state.handler = handler ? *handler : (struct runner_interrupt){0};
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
