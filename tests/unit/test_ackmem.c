/*
 * test_ackmem.c - the broker's memory of acknowledgements: lookup, the
 * bound (the oldest forgotten first), duplicates, and what cannot fit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "ackmem.h"
#include "error.h"
#include "frame.h"
#include "proto_limits.h"

/* Looks (gw, req) up; returns its number of ids (0: unknown) and checks they are base, base+1, ... in epoch. */
static uint32_t lookup(struct ackmem *m, uint64_t gw, uint64_t req, uint64_t want_epoch, uint64_t base)
{
	static uint8_t buf[RC_ACK_HDR_SIZE + 8 * RC_PUBLISH_MAX_EVENTS];
	struct rc_ack_reader r = { buf, buf };
	struct rc_ack a;
	uint64_t epoch = 0;
	size_t len = ackmem_get(m, gw, req, buf, sizeof(buf), &epoch);

	if (len == 0)
		return 0;
	r.end = buf + len;
	assert_true(rc_ack_next(&r, &a));
	assert_int_equal(a.gw, gw);
	assert_int_equal(a.req, req);
	assert_int_equal(epoch, want_epoch);
	assert_int_equal(len, rc_ack_size(a.n));
	for (uint32_t i = 0; i < a.n; i++)
		assert_int_equal(rc_ack_gseq(&a, i), base + i);
	assert_false(rc_ack_next(&r, &a));
	return a.n;
}

static void put(struct ackmem *m, uint64_t gw, uint64_t req, uint64_t base, uint32_t n)
{
	uint64_t g[16];

	assert_true(n <= 16);
	for (uint32_t i = 0; i < n; i++)
		g[i] = base + i;
	assert_int_equal(ackmem_put(m, gw, req, 7, g, n), RC_OK);
}

static void test_lookup(void **state)
{
	struct ackmem *m = ackmem_new(1 << 20);
	struct ackmem_stats st;

	(void)state;
	assert_non_null(m);
	put(m, 0xff, 1, 100, 3);
	put(m, 0xff, 2, 103, 1);
	put(m, 0xee, 1, 104, 2); /* another gateway's request 1 */
	assert_int_equal(lookup(m, 0xff, 1, 7, 100), 3);
	assert_int_equal(lookup(m, 0xff, 2, 7, 103), 1);
	assert_int_equal(lookup(m, 0xee, 1, 7, 104), 2);
	assert_int_equal(lookup(m, 0xff, 3, 7, 0), 0);
	assert_int_equal(lookup(m, 0xdd, 1, 7, 0), 0);
	/* a token is put once: the first record stays */
	put(m, 0xff, 1, 900, 1);
	assert_int_equal(lookup(m, 0xff, 1, 7, 100), 3);
	/* no ids: nothing to remember */
	assert_int_equal(ackmem_put(m, 0xff, 9, 7, NULL, 0), RC_OK);
	assert_int_equal(lookup(m, 0xff, 9, 7, 0), 0);
	ackmem_stats(m, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.forgotten, 0);
	assert_int_equal(st.hits, 4);
	assert_int_equal(st.misses, 3);
	ackmem_free(m);
	ackmem_free(NULL);
}

/* A record too large for the caller's buffer is not copied (and not a hit). */
static void test_small_buffer(void **state)
{
	struct ackmem *m = ackmem_new(1 << 20);
	uint8_t buf[RC_ACK_HDR_SIZE + 8];
	uint64_t epoch = 0;

	(void)state;
	put(m, 1, 1, 10, 2);
	assert_int_equal(ackmem_get(m, 1, 1, buf, sizeof(buf), &epoch), 0);
	put(m, 1, 2, 10, 1);
	assert_int_equal(ackmem_get(m, 1, 2, buf, sizeof(buf), &epoch), rc_ack_size(1));
	assert_int_equal(epoch, 7);
	ackmem_free(m);
}

/* Past the bound the oldest go first; what stays is the latest, and the bound holds. */
static void test_bound_forgets_oldest(void **state)
{
	struct ackmem *m;
	struct ackmem_stats st;
	uint64_t one, held;

	(void)state;
	/* measure what one single-id record costs */
	m = ackmem_new(1 << 20);
	put(m, 1, 1, 1, 1);
	ackmem_stats(m, &st);
	one = st.bytes;
	ackmem_free(m);
	assert_true(one >= rc_ack_size(1));

	m = ackmem_new((size_t)(10 * one));
	for (uint64_t r = 1; r <= 25; r++)
		put(m, 1, r, 1000 + r, 1);
	ackmem_stats(m, &st);
	assert_int_equal(st.entries, 10);
	assert_true(st.bytes <= 10 * one);
	assert_int_equal(st.forgotten, 15);
	for (uint64_t r = 1; r <= 15; r++)
		assert_int_equal(lookup(m, 1, r, 7, 0), 0);
	for (uint64_t r = 16; r <= 25; r++)
		assert_int_equal(lookup(m, 1, r, 7, 1000 + r), 1);
	/* a larger record makes room by forgetting as many of the oldest as it needs */
	put(m, 2, 1, 50, 16);
	ackmem_stats(m, &st);
	assert_true(st.bytes <= 10 * one);
	assert_int_equal(lookup(m, 2, 1, 7, 50), 16);
	assert_int_equal(lookup(m, 1, 16, 7, 0), 0);
	assert_int_equal(lookup(m, 1, 25, 7, 1025), 1);
	held = st.entries;
	assert_true(held >= 2 && held < 10);
	ackmem_free(m);

	/* one record larger than the whole bound is not kept (nor does it empty the table) */
	m = ackmem_new((size_t)one);
	put(m, 3, 1, 5, 1);
	put(m, 3, 2, 6, 4);
	assert_int_equal(lookup(m, 3, 1, 7, 5), 1);
	assert_int_equal(lookup(m, 3, 2, 7, 0), 0);
	ackmem_free(m);

	/* 0 bytes: nothing is remembered */
	m = ackmem_new(0);
	put(m, 3, 1, 5, 1);
	assert_int_equal(lookup(m, 3, 1, 7, 0), 0);
	ackmem_free(m);
}

/* Many entries in few buckets' worth: chains work, every token found after churn. */
static void test_many(void **state)
{
	struct ackmem *m = ackmem_new(4096 * 64);
	struct ackmem_stats st;
	uint64_t n;

	(void)state;
	for (uint64_t r = 1; r <= 20000; r++)
		put(m, r % 3, r, r * 10, 1);
	ackmem_stats(m, &st);
	n = st.entries;
	assert_true(n > 100 && n < 20000);
	assert_int_equal(st.forgotten, 20000 - n);
	for (uint64_t r = 20000 - n + 1; r <= 20000; r++)
		assert_int_equal(lookup(m, r % 3, r, 7, r * 10), 1);
	assert_int_equal(lookup(m, (20000 - n) % 3, 20000 - n, 7, 0), 0);
	ackmem_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_bound_forgets_oldest),
		cmocka_unit_test(test_many),
	};

	return cmocka_run_group_tests_name("ackmem", tests, NULL, NULL);
}
