/*
 * test_timer.c - deadline queues on one libuv timer (gateway/timer.c), on a
 * real loop: an entry expires once its queue's timeout has passed and not
 * before the entries pushed ahead of it, an expire callback may push its
 * entry again (a heartbeat), a removed entry never expires, a queue with
 * timeout 0 takes nothing, several queues share the timer, and the loop ends
 * once every queue is empty (the timer is not left armed). Nothing here
 * asserts how long anything took; deadlines are compared in loop time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "timer.h"

#define MAX_EXPIRED 64

struct item {
	struct gw_tq_entry e;
	int id;
	int repeats; /* pushes again from its expire callback this many times */
};

struct log {
	int ids[MAX_EXPIRED];
	uint64_t at[MAX_EXPIRED];      /* loop time of the expiry */
	uint64_t deadline[MAX_EXPIRED];
	size_t n;
};

static void record(struct gw_tq *q, struct gw_tq_entry *e)
{
	struct log *log = q->data;
	struct item *it = gw_container_of(e, struct item, e);

	assert_false(gw_tq_queued(e)); /* handed over off its queue */
	assert_true(log->n < MAX_EXPIRED);
	log->ids[log->n] = it->id;
	log->deadline[log->n] = e->deadline;
	log->at[log->n] = gw_timer_now(q->timer);
	log->n++;
	if (it->repeats > 0) {
		it->repeats--;
		gw_tq_push(q, e);
	}
}

struct fixture {
	uv_loop_t loop;
	struct gw_timer timer;
	struct log log;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	gw_timer_init(&f->timer, &f->loop);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	gw_timer_close(&f->timer);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

/* Runs the loop until nothing is armed: returns only when every queue is empty. */
static void run(struct fixture *f)
{
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_false(uv_is_active((uv_handle_t *)&f->timer.handle));
}

static void test_expires_in_push_order_after_timeout(void **state)
{
	struct fixture *f = *state;
	struct gw_tq q;
	struct item a = { .id = 1 }, b = { .id = 2 }, c = { .id = 3 };

	gw_tq_init(&q, &f->timer, 5, record, &f->log);
	gw_tq_entry_init(&a.e);
	gw_tq_entry_init(&b.e);
	gw_tq_entry_init(&c.e);
	gw_tq_push(&q, &a.e);
	gw_tq_push(&q, &b.e);
	gw_tq_push(&q, &c.e);
	/* pushed again: a goes behind c */
	gw_tq_push(&q, &a.e);
	assert_true(gw_tq_queued(&a.e));
	run(f);
	assert_int_equal(f->log.n, 3);
	assert_int_equal(f->log.ids[0], 2);
	assert_int_equal(f->log.ids[1], 3);
	assert_int_equal(f->log.ids[2], 1);
	for (size_t i = 0; i < f->log.n; i++)
		assert_true(f->log.at[i] >= f->log.deadline[i]); /* never early */
}

static void test_expire_may_push_again(void **state)
{
	struct fixture *f = *state;
	struct gw_tq q;
	struct item hb = { .id = 7, .repeats = 3 };

	gw_tq_init(&q, &f->timer, 2, record, &f->log);
	gw_tq_entry_init(&hb.e);
	gw_tq_push(&q, &hb.e);
	run(f);
	assert_int_equal(f->log.n, 4);
	for (size_t i = 1; i < f->log.n; i++) {
		/* each next one a whole timeout after the previous expiry */
		assert_true(f->log.deadline[i] >= f->log.at[i - 1] + 2);
		assert_true(f->log.at[i] >= f->log.deadline[i]);
	}
}

static void test_removed_entry_never_expires(void **state)
{
	struct fixture *f = *state;
	struct gw_tq q;
	struct item a = { .id = 1 }, b = { .id = 2 };

	gw_tq_init(&q, &f->timer, 3, record, &f->log);
	gw_tq_entry_init(&a.e);
	gw_tq_entry_init(&b.e);
	gw_tq_push(&q, &a.e);
	gw_tq_push(&q, &b.e);
	gw_tq_remove(&a.e);
	gw_tq_remove(&a.e); /* twice: a no-op */
	assert_false(gw_tq_queued(&a.e));
	run(f);
	assert_int_equal(f->log.n, 1);
	assert_int_equal(f->log.ids[0], 2);
}

static void test_timeout_zero_is_off(void **state)
{
	struct fixture *f = *state;
	struct gw_tq off;
	struct item a = { .id = 1 };

	gw_tq_init(&off, &f->timer, 0, record, &f->log);
	gw_tq_entry_init(&a.e);
	gw_tq_push(&off, &a.e);
	assert_false(gw_tq_queued(&a.e));
	assert_false(uv_is_active((uv_handle_t *)&f->timer.handle));
	run(f);
	assert_int_equal(f->log.n, 0);
}

static void test_queues_share_the_timer(void **state)
{
	struct fixture *f = *state;
	struct gw_tq slow, fast;
	struct item s = { .id = 1 }, q1 = { .id = 2 }, q2 = { .id = 3 };

	gw_tq_init(&slow, &f->timer, 30, record, &f->log);
	gw_tq_init(&fast, &f->timer, 1, record, &f->log);
	gw_tq_entry_init(&s.e);
	gw_tq_entry_init(&q1.e);
	gw_tq_entry_init(&q2.e);
	/* the slow queue arms first; the fast one must still fire first */
	gw_tq_push(&slow, &s.e);
	gw_tq_push(&fast, &q1.e);
	gw_tq_push(&fast, &q2.e);
	run(f);
	assert_int_equal(f->log.n, 3);
	assert_int_equal(f->log.ids[0], 2);
	assert_int_equal(f->log.ids[1], 3);
	assert_int_equal(f->log.ids[2], 1);
	assert_true(f->log.at[2] >= f->log.deadline[2]);
}

/* An entry moved from one queue to another leaves the first. */
static void test_push_moves_between_queues(void **state)
{
	struct fixture *f = *state;
	struct gw_tq a, b;
	struct item it = { .id = 9 };
	int *ids = f->log.ids;

	gw_tq_init(&a, &f->timer, 1, record, &f->log);
	gw_tq_init(&b, &f->timer, 2, record, &f->log);
	gw_tq_entry_init(&it.e);
	gw_tq_push(&a, &it.e);
	gw_tq_push(&b, &it.e);
	assert_true(gw_list_empty(&a.entries));
	run(f);
	assert_int_equal(f->log.n, 1);
	assert_int_equal(ids[0], 9);
}

/* gw_tq_push_at: entries with their own deadlines expire in deadline order, whatever the push order. */
static void test_push_at_keeps_deadline_order(void **state)
{
	struct fixture *f = *state;
	struct gw_tq q;
	struct item a = { .id = 1 }, b = { .id = 2 }, c = { .id = 3 }, d = { .id = 4 };
	uint64_t now = gw_timer_now(&f->timer);

	gw_tq_init(&q, &f->timer, 1, record, &f->log);
	gw_tq_entry_init(&a.e);
	gw_tq_entry_init(&b.e);
	gw_tq_entry_init(&c.e);
	gw_tq_entry_init(&d.e);
	gw_tq_push_at(&q, &a.e, now + 30);
	gw_tq_push_at(&q, &b.e, now + 10); /* a new head: the timer fires for it, not for a */
	gw_tq_push_at(&q, &c.e, now + 20); /* between */
	gw_tq_push_at(&q, &d.e, now + 30); /* the same deadline as a: after it */
	gw_tq_push_at(&q, &c.e, now + 5);  /* pushed again: moves */
	run(f);
	assert_int_equal(f->log.n, 4);
	assert_int_equal(f->log.ids[0], 3);
	assert_int_equal(f->log.ids[1], 2);
	assert_int_equal(f->log.ids[2], 1);
	assert_int_equal(f->log.ids[3], 4);
	assert_int_equal(f->log.deadline[0], now + 5);
	for (size_t i = 0; i < f->log.n; i++)
		assert_true(f->log.at[i] >= f->log.deadline[i]); /* never early */
	gw_tq_fini(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_expires_in_push_order_after_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_may_push_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_entry_never_expires, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_zero_is_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queues_share_the_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_moves_between_queues, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_at_keeps_deadline_order, setup, teardown),
	};
	return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
