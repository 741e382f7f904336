/*
 * test_outq.c - refcounted chunks and the per-connection output queue
 * (gateway/outq.c): chunk references, consecutive ranges of one chunk merging
 * into one entry (and nothing else merging), take handing out entries once and
 * marking them busy, done releasing them, consume dropping written bytes (a
 * partial entry keeps its tail), the bytes/count accounting, the ring growing
 * past its first capacity while wrapped, trim, and fini dropping every
 * reference (the ASan build turns a leaked or doubly freed chunk into a failure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "outq.h"

/* A chunk of n bytes where byte i is (char)i. */
static struct gw_chunk *pattern(size_t n)
{
	struct gw_chunk *c = gw_chunk_new(n);

	assert_non_null(c);
	for (size_t i = 0; i < n; i++)
		c->data[i] = (char)i;
	c->len = (uint32_t)n;
	return c;
}

static void assert_buf(uv_buf_t b, const struct gw_chunk *c, uint32_t off, uint32_t len)
{
	assert_ptr_equal(b.base, c->data + off);
	assert_int_equal(b.len, len);
}

static void test_chunk_refs(void **state)
{
	struct gw_chunk *c, *d, *e;

	(void)state;
	c = gw_chunk_new(16);
	assert_non_null(c);
	assert_int_equal(c->ref, 1);
	assert_int_equal(c->len, 0);
	assert_int_equal(c->cap, 16);
	memset(c->data, 'x', 16); /* all cap bytes are usable */

	d = gw_chunk_dup("hello", 5);
	assert_non_null(d);
	assert_int_equal(d->ref, 1);
	assert_int_equal(d->len, 5);
	assert_int_equal(d->cap, 5);
	assert_memory_equal(d->data, "hello", 5);

	e = gw_chunk_dup("", 0);
	assert_non_null(e);
	assert_int_equal(e->len, 0);

	gw_chunk_ref(c);
	gw_chunk_ref(c);
	assert_int_equal(c->ref, 3);
	gw_chunk_unref(c);
	gw_chunk_unref(c);
	assert_int_equal(c->ref, 1);
	assert_int_equal(c->data[15], 'x');
	gw_chunk_unref(c); /* the last reference frees it */
	gw_chunk_unref(d);
	gw_chunk_unref(e);
	gw_chunk_unref(NULL);

	/* a length does not fit the chunk's 32-bit fields */
	if (SIZE_MAX > UINT32_MAX)
		assert_null(gw_chunk_new((size_t)UINT32_MAX + 1));
}

static void test_push_merges_consecutive_ranges(void **state)
{
	struct gw_chunk *c = pattern(64);
	struct gw_outq q;
	uv_buf_t bufs[4];

	(void)state;
	gw_outq_init(&q);
	assert_int_equal(gw_outq_push(&q, c, 0, 3), RC_OK);
	assert_int_equal(gw_outq_push(&q, c, 3, 4), RC_OK);
	assert_int_equal(gw_outq_push(&q, c, 7, 10), RC_OK);
	assert_int_equal(q.count, 1);
	assert_int_equal(q.bytes, 17);
	assert_int_equal(c->ref, 2); /* one reference per entry, not per push */

	/* an empty range is no entry and no reference */
	assert_int_equal(gw_outq_push(&q, c, 40, 0), RC_OK);
	assert_int_equal(q.count, 1);
	assert_int_equal(q.bytes, 17);
	assert_int_equal(c->ref, 2);

	assert_int_equal(gw_outq_take(&q, bufs, 4), 1);
	assert_buf(bufs[0], c, 0, 17);
	gw_outq_done(&q);
	assert_int_equal(q.count, 0);
	assert_int_equal(q.bytes, 0);
	assert_int_equal(c->ref, 1);
	gw_outq_fini(&q);
	gw_chunk_unref(c);
}

static void test_push_keeps_other_ranges_apart(void **state)
{
	struct gw_chunk *a = pattern(64), *b = pattern(64);
	struct gw_outq q;
	uv_buf_t bufs[8];

	(void)state;
	gw_outq_init(&q);
	assert_int_equal(gw_outq_push(&q, a, 0, 4), RC_OK);
	assert_int_equal(gw_outq_push(&q, b, 4, 4), RC_OK);  /* another chunk, same offsets */
	assert_int_equal(gw_outq_push(&q, a, 4, 4), RC_OK);  /* adjacent to a[0,4), but not the tail */
	assert_int_equal(gw_outq_push(&q, a, 10, 2), RC_OK); /* a gap after the tail */
	assert_int_equal(gw_outq_push(&q, a, 8, 2), RC_OK);  /* before the tail */
	assert_int_equal(gw_outq_push(&q, a, 9, 2), RC_OK);  /* overlapping the tail */
	assert_int_equal(q.count, 6);
	assert_int_equal(q.bytes, 18);
	assert_int_equal(a->ref, 1 + 5);
	assert_int_equal(b->ref, 1 + 1);

	assert_int_equal(gw_outq_take(&q, bufs, 8), 6);
	assert_buf(bufs[0], a, 0, 4);
	assert_buf(bufs[1], b, 4, 4);
	assert_buf(bufs[2], a, 4, 4);
	assert_buf(bufs[3], a, 10, 2);
	assert_buf(bufs[4], a, 8, 2);
	assert_buf(bufs[5], a, 9, 2);
	gw_outq_fini(&q);
	assert_int_equal(a->ref, 1);
	assert_int_equal(b->ref, 1);
	gw_chunk_unref(a);
	gw_chunk_unref(b);
}

static void test_take_marks_busy(void **state)
{
	struct gw_chunk *c = pattern(64);
	struct gw_outq q;
	uv_buf_t bufs[8], more[8];

	(void)state;
	gw_outq_init(&q);
	for (uint32_t i = 0; i < 5; i++)
		assert_int_equal(gw_outq_push(&q, c, i * 4, 3), RC_OK); /* gaps: five entries */
	assert_int_equal(q.count, 5);

	assert_int_equal(gw_outq_take(&q, bufs, 2), 2);
	assert_int_equal(q.busy, 2);
	assert_buf(bufs[0], c, 0, 3);
	assert_buf(bufs[1], c, 4, 3);
	/* the next take starts after the busy entries */
	assert_int_equal(gw_outq_take(&q, more, 8), 3);
	assert_int_equal(q.busy, 5);
	assert_buf(more[0], c, 8, 3);
	assert_buf(more[2], c, 16, 3);
	assert_int_equal(gw_outq_take(&q, more, 8), 0);
	assert_int_equal(gw_outq_take(&q, more, 0), 0);

	/* a range adjacent to a busy tail does not grow a buffer already handed out */
	assert_int_equal(gw_outq_push(&q, c, 19, 5), RC_OK);
	assert_int_equal(q.count, 6);
	assert_int_equal(q.bytes, 5 * 3 + 5);
	assert_int_equal(gw_outq_take(&q, more, 8), 1);
	assert_buf(more[0], c, 19, 5);
	assert_int_equal(q.busy, 6);

	/* busy bytes still count until the write is done */
	assert_int_equal(q.bytes, 20);
	gw_outq_done(&q);
	assert_int_equal(q.busy, 0);
	assert_int_equal(q.count, 0);
	assert_int_equal(q.bytes, 0);
	assert_int_equal(c->ref, 1);
	gw_outq_fini(&q);
	gw_chunk_unref(c);
}

static void test_done_releases_only_busy(void **state)
{
	struct gw_chunk *a = pattern(32), *b = pattern(32), *c = pattern(32);
	struct gw_outq q;
	uv_buf_t bufs[8];

	(void)state;
	gw_outq_init(&q);
	assert_int_equal(gw_outq_push(&q, a, 0, 10), RC_OK);
	assert_int_equal(gw_outq_push(&q, b, 0, 20), RC_OK);
	assert_int_equal(gw_outq_take(&q, bufs, 8), 2);
	/* queued while the write is in flight */
	assert_int_equal(gw_outq_push(&q, c, 0, 5), RC_OK);
	assert_int_equal(gw_outq_push(&q, c, 5, 5), RC_OK); /* merges: the tail is not busy */
	assert_int_equal(q.count, 3);
	assert_int_equal(q.bytes, 40);

	gw_outq_done(&q);
	assert_int_equal(q.busy, 0);
	assert_int_equal(q.count, 1);
	assert_int_equal(q.bytes, 10);
	assert_int_equal(a->ref, 1);
	assert_int_equal(b->ref, 1);
	assert_int_equal(c->ref, 2);
	/* done with nothing busy releases nothing */
	gw_outq_done(&q);
	assert_int_equal(q.count, 1);

	assert_int_equal(gw_outq_take(&q, bufs, 8), 1);
	assert_buf(bufs[0], c, 0, 10);
	gw_outq_done(&q);
	assert_int_equal(c->ref, 1);
	gw_outq_fini(&q);
	gw_chunk_unref(a);
	gw_chunk_unref(b);
	gw_chunk_unref(c);
}

static void test_consume_keeps_partial_tail(void **state)
{
	struct gw_chunk *a = pattern(16), *b = pattern(16), *c = pattern(16);
	struct gw_outq q;
	uv_buf_t bufs[4];

	(void)state;
	gw_outq_init(&q);
	assert_int_equal(gw_outq_push(&q, a, 1, 3), RC_OK);
	assert_int_equal(gw_outq_push(&q, b, 2, 4), RC_OK);
	assert_int_equal(gw_outq_push(&q, c, 0, 5), RC_OK);
	assert_int_equal(q.bytes, 12);

	gw_outq_consume(&q, 0);
	assert_int_equal(q.count, 3);
	assert_int_equal(q.bytes, 12);

	/* all of a's range and two bytes of b's */
	gw_outq_consume(&q, 5);
	assert_int_equal(q.count, 2);
	assert_int_equal(q.bytes, 7);
	assert_int_equal(a->ref, 1);
	assert_int_equal(b->ref, 2);
	assert_int_equal(gw_outq_take(&q, bufs, 1), 1);
	assert_buf(bufs[0], b, 4, 2);
	q.busy = 0; /* as conn.c does before consuming what it wrote itself */

	/* exactly the rest of an entry drops it */
	gw_outq_consume(&q, 2);
	assert_int_equal(q.count, 1);
	assert_int_equal(q.bytes, 5);
	assert_int_equal(b->ref, 1);

	/* a range extended after a partial consume stays one entry */
	gw_outq_consume(&q, 1);
	assert_int_equal(gw_outq_push(&q, c, 5, 3), RC_OK);
	assert_int_equal(q.count, 1);
	assert_int_equal(q.bytes, 7);
	assert_int_equal(gw_outq_take(&q, bufs, 4), 1);
	assert_buf(bufs[0], c, 1, 7);
	q.busy = 0;

	/* more than is queued empties the queue */
	gw_outq_consume(&q, 1000);
	assert_int_equal(q.count, 0);
	assert_int_equal(q.bytes, 0);
	assert_int_equal(c->ref, 1);
	gw_outq_consume(&q, 1);
	assert_int_equal(q.count, 0);
	gw_outq_fini(&q);
	gw_chunk_unref(a);
	gw_chunk_unref(b);
	gw_chunk_unref(c);
}

/* Entry k of the ring test: byte 2k of c, one byte long (the gaps keep entries apart). */
static void push_nth(struct gw_outq *q, struct gw_chunk *c, uint32_t k)
{
	size_t bytes = q->bytes;
	uint32_t count = q->count;

	assert_int_equal(gw_outq_push(q, c, 2 * k, 1), RC_OK);
	assert_int_equal(q->count, count + 1);
	assert_int_equal(q->bytes, bytes + 1);
}

static void test_ring_grows_while_wrapped(void **state)
{
	struct gw_chunk *c = pattern(256);
	struct gw_outq q;
	uv_buf_t bufs[64];
	uint32_t first_cap;

	(void)state;
	gw_outq_init(&q);
	/* move the head to the end of the first ring */
	for (uint32_t k = 0; k < 6; k++)
		push_nth(&q, c, k);
	first_cap = q.cap;
	assert_true(first_cap >= 6);
	gw_outq_consume(&q, 6);
	assert_int_equal(q.count, 0);
	assert_int_equal(c->ref, 1);

	/* entries 0..first_cap-1 fill the ring across its end; two go into a write */
	for (uint32_t k = 0; k < first_cap; k++)
		push_nth(&q, c, k);
	assert_int_equal(q.cap, first_cap);
	assert_int_equal(gw_outq_take(&q, bufs, 2), 2);
	assert_buf(bufs[0], c, 0, 1);
	assert_buf(bufs[1], c, 2, 1);

	/* the ring grows (twice) with busy entries at its head */
	for (uint32_t k = first_cap; k < 3 * first_cap; k++)
		push_nth(&q, c, k);
	assert_true(q.cap >= 3 * first_cap);
	assert_int_equal(q.busy, 2);
	assert_int_equal(q.count, 3 * first_cap);
	assert_int_equal(c->ref, 1 + 3 * first_cap);

	/* the same entries, in push order, the busy ones not handed out again */
	assert_int_equal(gw_outq_take(&q, bufs, 64), 3 * first_cap - 2);
	for (uint32_t k = 2; k < 3 * first_cap; k++)
		assert_buf(bufs[k - 2], c, 2 * k, 1);
	gw_outq_done(&q);
	assert_int_equal(q.count, 0);
	assert_int_equal(q.bytes, 0);
	assert_int_equal(c->ref, 1);
	gw_outq_fini(&q);
	gw_chunk_unref(c);
}

static void test_trim(void **state)
{
	struct gw_chunk *c = pattern(256);
	struct gw_outq q;
	uv_buf_t bufs[4];
	uint32_t small_cap;

	(void)state;
	gw_outq_init(&q);
	gw_outq_trim(&q); /* nothing to trim */
	assert_null(q.ents);

	/* a small ring is kept for the next writes */
	push_nth(&q, c, 0);
	small_cap = q.cap;
	gw_outq_consume(&q, 1);
	gw_outq_trim(&q);
	assert_int_equal(q.cap, small_cap);
	assert_non_null(q.ents);

	/* a large ring is not freed while it holds entries */
	for (uint32_t k = 0; k < 100; k++)
		push_nth(&q, c, k);
	assert_true(q.cap >= 100);
	gw_outq_trim(&q);
	assert_true(q.cap >= 100);
	assert_int_equal(q.count, 100);

	/* ... and is freed once empty */
	gw_outq_consume(&q, q.bytes);
	gw_outq_trim(&q);
	assert_null(q.ents);
	assert_int_equal(q.cap, 0);
	assert_int_equal(q.count, 0);
	assert_int_equal(c->ref, 1);

	/* the queue works again afterwards */
	push_nth(&q, c, 7);
	assert_int_equal(gw_outq_take(&q, bufs, 4), 1);
	assert_buf(bufs[0], c, 14, 1);
	gw_outq_done(&q);
	gw_outq_fini(&q);
	gw_chunk_unref(c);
}

static void test_fini_drops_every_reference(void **state)
{
	struct gw_chunk *kept = pattern(256), *owned[3];
	struct gw_outq q;
	uv_buf_t bufs[4];

	(void)state;
	gw_outq_init(&q);
	gw_outq_fini(&q); /* an empty queue */
	gw_outq_init(&q);
	for (int i = 0; i < 3; i++) {
		owned[i] = pattern(8);
		assert_int_equal(gw_outq_push(&q, owned[i], 0, 8), RC_OK);
		/* the queue's reference is the only one left: fini must free it */
		gw_chunk_unref(owned[i]);
		for (uint32_t k = 0; k < 4; k++)
			push_nth(&q, kept, (uint32_t)i * 8 + k);
	}
	assert_int_equal(kept->ref, 1 + 12);
	/* busy entries and a wrapped head too */
	assert_int_equal(gw_outq_take(&q, bufs, 4), 4);
	gw_outq_done(&q);
	for (uint32_t k = 0; k < 20; k++)
		push_nth(&q, kept, 100 + k);
	assert_int_equal(gw_outq_take(&q, bufs, 2), 2);
	gw_outq_fini(&q);
	assert_int_equal(kept->ref, 1);
	assert_null(q.ents);
	assert_int_equal(q.count, 0);
	assert_int_equal(q.busy, 0);
	assert_int_equal(q.bytes, 0);
	gw_chunk_unref(kept);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunk_refs),
		cmocka_unit_test(test_push_merges_consecutive_ranges),
		cmocka_unit_test(test_push_keeps_other_ranges_apart),
		cmocka_unit_test(test_take_marks_busy),
		cmocka_unit_test(test_done_releases_only_busy),
		cmocka_unit_test(test_consume_keeps_partial_tail),
		cmocka_unit_test(test_ring_grows_while_wrapped),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_fini_drops_every_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
