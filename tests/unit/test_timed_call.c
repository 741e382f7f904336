/*
 * test_timed_call.c - a call that returns is waited for; one that hangs is
 * abandoned after the deadline and still finishes (and frees) on its own
 * thread once it can; nng sockets close through it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <time.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "timed_call.h"

#define LONG_WAIT_MS 10000

static void count_call(void *arg)
{
	int *n = arg;

	(*n)++;
}

static void test_returns(void **state)
{
	int n = 0;

	(void)state;
	assert_true(rc_timed_call(count_call, &n, LONG_WAIT_MS));
	assert_int_equal(n, 1);
	/* each call has a thread and a control block of its own, freed after (ASan checks) */
	for (int i = 0; i < 200; i++)
		assert_true(rc_timed_call(count_call, &n, LONG_WAIT_MS));
	assert_int_equal(n, 201);
}

/* A call that blocks until the test lets it go, then says it ran to the end. */
struct blocked {
	sem_t release, finished;
	int ran;
};

static void blocked_call(void *arg)
{
	struct blocked *b = arg;

	sem_wait(&b->release);
	b->ran = 1;
	sem_post(&b->finished);
}

static void test_abandons_a_call_that_hangs(void **state)
{
	struct blocked *b = calloc(1, sizeof(*b));
	struct timespec deadline;

	(void)state;
	assert_non_null(b);
	sem_init(&b->release, 0, 0);
	sem_init(&b->finished, 0, 0);
	/* the call cannot return before it is released: the wait gives up */
	assert_false(rc_timed_call(blocked_call, b, 50));
	assert_int_equal(b->ran, 0);
	/* the abandoned call goes on once it can */
	sem_post(&b->release);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += LONG_WAIT_MS / 1000;
	assert_int_equal(sem_timedwait(&b->finished, &deadline), 0);
	assert_int_equal(b->ran, 1);
	sem_destroy(&b->release);
	sem_destroy(&b->finished);
	free(b);
}

static void test_nng_close(void **state)
{
	nng_socket s;
	nng_msg *msg;

	(void)state;
	assert_int_equal(nng_sub0_open(&s), 0);
	/* a dial that never connects: the close must stop its retries too */
	assert_int_equal(nng_dial(s, "tcp://127.0.0.1:1", NULL, NNG_FLAG_NONBLOCK), 0);
	assert_true(rc_nng_close_within(s, LONG_WAIT_MS));
	assert_int_equal(nng_recvmsg(s, &msg, NNG_FLAG_NONBLOCK), NNG_ECLOSED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_returns),
		cmocka_unit_test(test_abandons_a_call_that_hangs),
		cmocka_unit_test(test_nng_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
