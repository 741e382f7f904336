/*
 * test_inbox.c - the door from other threads into the loop (gateway/inbox.c):
 * items pushed from several threads while a real libuv loop runs are each
 * delivered exactly once, in push order per thread; a bounded inbox refuses
 * (returns false, keeps nothing) beyond its max until the loop drains it; drain
 * hands over what is queued; after close, pushes are still taken but wait for
 * the owner's drain. Every loop run is bounded by a guard timer that stops the
 * loop and fails the test.
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inbox.h"

#define NTHREADS 4
#define GUARD_MS 10000

struct item {
	struct gw_inbox_item link; /* first: the inbox hands it back */
	unsigned thread, seq;
	unsigned delivered;
};

/* One test's loop, inbox and what the loop thread saw. */
struct fix {
	uv_loop_t loop;
	uv_timer_t guard;
	struct gw_inbox ib;
	atomic_bool abort; /* the guard fired: pushers give up */
	bool timed_out;
	/* deliver stops the loop at want; 0 while no run waits for it (a stop would outlive the run) */
	unsigned want, got;
	unsigned next[NTHREADS]; /* the seq expected next from each thread */
	unsigned out_of_order, again;
	int closed;
};

/* Loop thread: records the item; no cmocka asserts here (they would jump out of uv_run). */
static void deliver(struct gw_inbox *ib, struct gw_inbox_item *link)
{
	struct fix *f = ib->arg;
	struct item *it = (struct item *)link;

	if (it->delivered++ > 0)
		f->again++;
	if (it->thread >= NTHREADS || it->seq != f->next[it->thread])
		f->out_of_order++;
	else
		f->next[it->thread]++;
	if (++f->got == f->want)
		uv_stop(&f->loop);
}

static void guard_fired(uv_timer_t *t)
{
	struct fix *f = t->data;

	f->timed_out = true;
	atomic_store(&f->abort, true);
	uv_stop(&f->loop);
}

static void fix_start(struct fix *f, size_t max)
{
	memset(f, 0, sizeof(*f));
	atomic_init(&f->abort, false);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_timer_init(&f->loop, &f->guard), 0);
	f->guard.data = f;
	assert_int_equal(uv_timer_start(&f->guard, guard_fired, GUARD_MS, 0), 0);
	/* the guard alone does not keep the loop alive */
	uv_unref((uv_handle_t *)&f->guard);
	assert_int_equal(gw_inbox_init(&f->loop, &f->ib, max, deliver, f), 0);
}

/* Runs the loop until want items are delivered (or the guard fires). */
static void fix_run(struct fix *f, unsigned want)
{
	f->want = want;
	if (f->got < want)
		uv_run(&f->loop, UV_RUN_DEFAULT);
	f->want = 0;
	assert_false(f->timed_out);
	assert_int_equal(f->got, want);
}

static void inbox_closed(uv_handle_t *h)
{
	struct gw_inbox *ib = h->data;
	struct fix *f = ib->arg;

	f->closed++;
}

static void fix_end(struct fix *f)
{
	if (!uv_is_closing((uv_handle_t *)&f->ib.async))
		gw_inbox_close(&f->ib, NULL);
	uv_close((uv_handle_t *)&f->guard, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT); /* nothing active is left: returns after the close callbacks */
	assert_int_equal(uv_loop_close(&f->loop), 0);
	pthread_mutex_destroy(&f->ib.mtx);
}

static struct item *items_new(unsigned nthreads, unsigned n)
{
	struct item *items = calloc((size_t)nthreads * n, sizeof(*items));

	assert_non_null(items);
	for (unsigned t = 0; t < nthreads; t++) {
		for (unsigned i = 0; i < n; i++) {
			items[t * n + i].thread = t;
			items[t * n + i].seq = i;
		}
	}
	return items;
}

struct pusher {
	pthread_t tid;
	struct fix *f;
	struct item *items;
	unsigned n;
	unsigned pushed, refused;
};

/* Pushes its items in order, retrying a refused one until the loop makes room. */
static void *push_all(void *arg)
{
	struct pusher *p = arg;

	while (p->pushed < p->n && !atomic_load(&p->f->abort)) {
		if (gw_inbox_push(&p->f->ib, &p->items[p->pushed].link)) {
			p->pushed++;
		} else {
			p->refused++;
			sched_yield();
		}
	}
	return NULL;
}

/* NTHREADS pushers of n items each against a loop that runs meanwhile. */
static void run_pushers(struct fix *f, unsigned n, unsigned *refused)
{
	struct item *items = items_new(NTHREADS, n);
	struct pusher p[NTHREADS];

	*refused = 0;
	for (unsigned t = 0; t < NTHREADS; t++) {
		p[t] = (struct pusher){ .f = f, .items = items + (size_t)t * n, .n = n };
		assert_int_equal(pthread_create(&p[t].tid, NULL, push_all, &p[t]), 0);
	}
	f->want = NTHREADS * n;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	f->want = 0;
	for (unsigned t = 0; t < NTHREADS; t++) {
		pthread_join(p[t].tid, NULL);
		*refused += p[t].refused;
	}
	assert_false(f->timed_out);
	assert_int_equal(f->got, NTHREADS * n);
	assert_int_equal(f->again, 0);
	assert_int_equal(f->out_of_order, 0);
	for (unsigned t = 0; t < NTHREADS; t++) {
		assert_int_equal(p[t].pushed, n);
		assert_int_equal(f->next[t], n);
	}
	for (size_t i = 0; i < (size_t)NTHREADS * n; i++)
		assert_int_equal(items[i].delivered, 1);
	free(items);
}

static void test_threads_unbounded(void **state)
{
	struct fix f;
	unsigned refused;

	(void)state;
	fix_start(&f, 0);
	run_pushers(&f, 20000, &refused);
	assert_int_equal(refused, 0); /* max 0: never full */
	fix_end(&f);
}

static void test_threads_bounded(void **state)
{
	struct fix f;
	unsigned refused;

	(void)state;
	fix_start(&f, 8);
	/* refusals depend on timing; that nothing is lost or reordered does not */
	run_pushers(&f, 5000, &refused);
	fix_end(&f);
}

static void test_bounded_refuses_beyond_max(void **state)
{
	struct item *items = items_new(1, 6);
	struct fix f;

	(void)state;
	fix_start(&f, 3);
	/* the loop is not running: nothing is drained meanwhile */
	assert_true(gw_inbox_push(&f.ib, &items[0].link));
	assert_true(gw_inbox_push(&f.ib, &items[1].link));
	assert_true(gw_inbox_push(&f.ib, &items[2].link));
	assert_int_equal(f.ib.count, 3);
	assert_false(gw_inbox_push(&f.ib, &items[3].link));
	assert_false(gw_inbox_push(&f.ib, &items[3].link));
	assert_int_equal(f.ib.count, 3);
	assert_int_equal(f.got, 0);

	/* a drain hands over the three, in order, and makes room */
	gw_inbox_drain(&f.ib);
	assert_int_equal(f.got, 3);
	assert_int_equal(f.ib.count, 0);
	assert_int_equal(f.next[0], 3);
	assert_int_equal(items[3].delivered, 0); /* the refused item was not kept */

	/* room again; the loop's wake-up delivers */
	assert_true(gw_inbox_push(&f.ib, &items[3].link));
	assert_true(gw_inbox_push(&f.ib, &items[4].link));
	assert_true(gw_inbox_push(&f.ib, &items[5].link));
	fix_run(&f, 6);
	assert_int_equal(f.next[0], 6);
	assert_int_equal(f.out_of_order, 0);
	assert_int_equal(f.again, 0);

	/* a drain of an empty inbox calls nothing */
	gw_inbox_drain(&f.ib);
	assert_int_equal(f.got, 6);
	fix_end(&f);
	free(items);
}

static void test_loop_delivers_queued(void **state)
{
	struct item *items = items_new(1, 100);
	struct fix f;

	(void)state;
	fix_start(&f, 0);
	/* queued before the loop runs: the pending wake-up delivers them all */
	for (unsigned i = 0; i < 100; i++)
		assert_true(gw_inbox_push(&f.ib, &items[i].link));
	fix_run(&f, 100);
	assert_int_equal(f.next[0], 100);
	assert_int_equal(f.ib.count, 0);
	assert_int_equal(f.out_of_order, 0);
	assert_int_equal(f.again, 0);
	fix_end(&f);
	free(items);
}

static void test_push_after_close(void **state)
{
	struct item *items = items_new(1, 4);
	struct fix f;

	(void)state;
	fix_start(&f, 0);
	assert_true(gw_inbox_push(&f.ib, &items[0].link));
	assert_true(gw_inbox_push(&f.ib, &items[1].link));
	gw_inbox_drain(&f.ib);
	assert_int_equal(f.got, 2);

	gw_inbox_close(&f.ib, inbox_closed);
	/* still taken, but nobody is woken: they wait for the owner */
	assert_true(gw_inbox_push(&f.ib, &items[2].link));
	assert_true(gw_inbox_push(&f.ib, &items[3].link));
	uv_run(&f.loop, UV_RUN_DEFAULT); /* only the close is pending: returns once it ran */
	assert_false(f.timed_out);
	assert_int_equal(f.closed, 1);
	assert_int_equal(f.got, 2);
	assert_int_equal(f.ib.count, 2);

	gw_inbox_drain(&f.ib);
	assert_int_equal(f.got, 4);
	assert_int_equal(f.next[0], 4);
	assert_int_equal(f.out_of_order, 0);
	assert_int_equal(f.again, 0);
	fix_end(&f);
	free(items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_unbounded),
		cmocka_unit_test(test_threads_bounded),
		cmocka_unit_test(test_bounded_refuses_beyond_max),
		cmocka_unit_test(test_loop_delivers_queued),
		cmocka_unit_test(test_push_after_close),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
