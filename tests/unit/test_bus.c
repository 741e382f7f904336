/*
 * test_bus.c - the clock of the broker bus's idle tick (broker/bus.c), and
 * the length of its queues per subscriber (bounded in bytes).
 *
 * The tick waits on a condition variable with a deadline. Both must be on
 * CLOCK_MONOTONIC: on CLOCK_REALTIME, setting the wall clock back stops the
 * ticks for as long, and setting it forward sends them at once. Changing the
 * wall clock is not something a test may do, so these check the two halves
 * the sender thread uses (bus_tick_deadline, bus_tick_cond_init) directly,
 * without timing anything:
 * - a deadline is "now + ms" on the monotonic clock;
 * - a condvar from bus_tick_cond_init reads deadlines on the monotonic
 *   clock: a deadline an hour ahead on that clock is still ahead (read on
 *   CLOCK_REALTIME it would be decades past, and the wait would time out at
 *   once), shown by a wait that ends by a signal rather than a timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "bus.h"

static int64_t ns_of(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ns_of(&ts);
}

static void test_deadline_is_ms_from_now_on_the_monotonic_clock(void **state)
{
	const int cases[] = { 0, 1, 999, 1000, 1500, 60000 };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timespec ts;
		int64_t before = mono_ns(), after;

		bus_tick_deadline(cases[i], &ts);
		after = mono_ns();
		assert_true(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L);
		/* between the readings before and after, plus ms: not a timing check, a clock check */
		assert_true(ns_of(&ts) >= before + (int64_t)cases[i] * 1000000);
		assert_true(ns_of(&ts) <= after + (int64_t)cases[i] * 1000000);
	}
}

struct waiter {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool signalled;
};

static void *signaller(void *arg)
{
	struct waiter *w = arg;

	/* the mutex is free only once the main thread waits on cv */
	pthread_mutex_lock(&w->mtx);
	w->signalled = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx);
	return NULL;
}

static void test_condvar_waits_on_the_monotonic_clock(void **state)
{
	struct waiter w = { .signalled = false };
	struct timespec ts;
	pthread_t th;
	int rv = 0;

	(void)state;
	pthread_mutex_init(&w.mtx, NULL);
	assert_int_equal(bus_tick_cond_init(&w.cv), 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += 3600;
	pthread_mutex_lock(&w.mtx);
	assert_int_equal(pthread_create(&th, NULL, signaller, &w), 0);
	while (!w.signalled && rv == 0)
		rv = pthread_cond_timedwait(&w.cv, &w.mtx, &ts);
	pthread_mutex_unlock(&w.mtx);
	pthread_join(th, NULL);
	/* ETIMEDOUT: the condvar took the monotonic deadline as a wall clock time, long past */
	assert_int_equal(rv, 0);
	assert_true(w.signalled);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mtx);
}

/*
 * The queue per subscriber is sized so that the largest messages it can hold
 * stay within buffer_bytes: the bound on what subscribers that read nothing
 * cost the broker.
 */
static void test_queue_len_bounds_the_bytes(void **state)
{
	struct bus_config c = {
		.max_frame_bytes = 64 * 1024, .max_event_bytes = 64 * 1024, .sendbuf = 8192, .buffer_bytes = 64 << 20
	};
	size_t m;

	(void)state;
	/* the defaults: a flush of 64 KiB or one event of 64 KiB, wrapped */
	m = bus_max_message_bytes(&c);
	assert_true(m >= 64 * 1024 + 128 + 22 && m < 66 * 1024);
	assert_true(bus_queue_len(&c) > 512);
	assert_true((size_t)bus_queue_len(&c) * m <= c.buffer_bytes);
	/* a larger flush or event: fewer messages */
	c.max_frame_bytes = 1 << 20;
	assert_int_equal(bus_queue_len(&c), (64 << 20) / bus_max_message_bytes(&c));
	c.max_frame_bytes = 4096;
	c.max_event_bytes = 16 << 20;
	assert_true((size_t)bus_queue_len(&c) * bus_max_message_bytes(&c) <= c.buffer_bytes);
	assert_int_equal(bus_queue_len(&c), 3);
	/* never below one, never above sendbuf; 0: sendbuf alone */
	c.buffer_bytes = 1;
	assert_int_equal(bus_queue_len(&c), 1);
	c.max_event_bytes = 64;
	c.buffer_bytes = (size_t)1 << 40;
	assert_int_equal(bus_queue_len(&c), 8192);
	c.buffer_bytes = 0;
	c.sendbuf = 100;
	assert_int_equal(bus_queue_len(&c), 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deadline_is_ms_from_now_on_the_monotonic_clock),
		cmocka_unit_test(test_condvar_waits_on_the_monotonic_clock),
		cmocka_unit_test(test_queue_len_bounds_the_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
