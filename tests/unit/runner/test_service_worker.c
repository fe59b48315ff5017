/*
 * The workers of `vmci serve` on a real SQLite store: a job queued by
 * this process is claimed at once, not at the idle workers' next poll
 * (made a minute long here, so only the wake can explain a quick claim).
 * The job's repository is not in the host's config, so it ends `error`
 * before it needs a VM.
 */
#include "store_helpers.h"

#include "runner/service.h"

#include <unistd.h>

#define POLL_MS	  60000
#define WITHIN_MS 10000 /* generous: far below POLL_MS, far above a claim */
#define CAPACITY  2

/* Waits up to WITHIN_MS for job `name` of run_id to end; returns its status. */
static enum store_status ended(struct store *s, int64_t run_id, const char *name)
{
	int64_t deadline = clock_ms() + WITHIN_MS;
	enum store_status st;
	do {
		st = status_of(s, run_id, name);
		if (store_status_finished(st))
			break;
		usleep(20 * 1000);
	} while (clock_ms() < deadline);
	return st;
}

static void test_a_job_queued_while_the_workers_are_idle_is_claimed_at_once(void **state)
{
	struct fx *f = *state;
	struct vmci_err err = {0};
	struct service_config cfg = {0};
	struct service_opts o = {.db_url = f->url,
				 .host = "h1",
				 .capacity = CAPACITY,
				 .config = &cfg,
				 .poll_ms = POLL_MS,
				 .cold = true};
	struct service *svc = NULL;
	if (service_start(&o, &svc, &err))
		fail_msg("service_start: %s", err.msg);
	usleep(300 * 1000); /* every worker found nothing and waits */
	for (int i = 0; i < 3; i++) {
		int64_t id = 0;
		assert_int_equal(run_try(f->s, "elsewhere", "a", NULL, &id, &err), 0);
		assert_int_equal(ended(f->s, id, "a"), STORE_ERROR);
		usleep(100 * 1000);
	}
	service_stop(svc, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_a_job_queued_while_the_workers_are_idle_is_claimed_at_once, fx_setup,
		fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
