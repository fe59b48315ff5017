/*
 * runner: interruption by signal, one scheme for every front end.
 */
#ifndef VMCI_RUNNER_INTERRUPT_H
#define VMCI_RUNNER_INTERRUPT_H

#include <stdbool.h>

/* ---- interruption by signal (runner/interrupt.c) --------------------- */

/*
 * One scheme for every front end: SIGINT, SIGTERM and SIGHUP go to one
 * thread (sigwait), never to a handler inside a job's code. The first
 * calls the registered cancellation; a second, or a first with nothing
 * registered, runs cleanup and ends the process at once. SIGUSR1 goes
 * to the same thread and calls the registered move, every time.
 */
struct runner_interrupt {
	/* Cancels the work in progress (any thread may be running it); returns at once. */
	void (*cancel)(void *ctx, int signo);
	void *ctx;
	/* SIGUSR1: moves the work elsewhere (may be NULL: the signal is ignored). */
	void (*move)(void *ctx);
};

/*
 * Starts the signal thread; call it before any other thread exists (the
 * mask is inherited). cleanup (may be NULL) runs before the process ends,
 * which it does with exit_code (0: 128 + the signal). Later calls do
 * nothing: the first caller (the command) decides.
 */
void runner_interrupt_start(void (*cleanup)(void), int exit_code);

/*
 * Registers what the first signal cancels (NULL: nothing); returns the one
 * it replaces. A call of the replaced handler under way (on the signal
 * thread) has returned when this returns, so its context may be freed.
 */
struct runner_interrupt runner_interrupt_set(const struct runner_interrupt *handler);

/* The first signal received, or 0. */
int runner_interrupted(void);

#endif
