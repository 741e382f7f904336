/*
 * test_idem.c - the idempotency key table (broker/idem.c): a key is known
 * within its window and forgotten after it, the first id stays, the oldest
 * key goes when the table is full, and the keys are listed oldest first.
 * Times are passed in: no clock is read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "idem.h"

#define T0 1700000000000ull

static bool known(struct idem *t, const char *key, uint64_t now, uint64_t *gseq)
{
	return idem_get(t, key, strlen(key), now, gseq);
}

static void put(struct idem *t, const char *key, uint64_t gseq, uint64_t time_ms)
{
	assert_int_equal(idem_put(t, key, strlen(key), gseq, time_ms, time_ms), RC_OK);
}

static void test_hit_within_window_miss_after(void **state)
{
	struct idem *t = idem_new(1000, 100);
	struct idem_stats st;
	uint64_t g = 0;
	(void)state;

	assert_non_null(t);
	assert_false(known(t, "a", T0, &g));
	put(t, "a", 7, T0);
	assert_true(known(t, "a", T0, &g));
	assert_int_equal(g, 7);
	assert_true(known(t, "a", T0 + 999, &g));
	/* the window is over at time + window, expired or not */
	assert_false(known(t, "a", T0 + 1000, &g));
	idem_stats(t, &st);
	assert_int_equal(st.keys, 1);
	idem_expire(t, T0 + 999);
	idem_stats(t, &st);
	assert_int_equal(st.keys, 1);
	idem_expire(t, T0 + 1000);
	idem_stats(t, &st);
	assert_int_equal(st.keys, 0);
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.evicted, 0);
	/* forgotten: the key may be published again, as a new event */
	put(t, "a", 9, T0 + 1000);
	assert_true(known(t, "a", T0 + 1000, &g));
	assert_int_equal(g, 9);
	idem_free(t);
}

static void test_first_id_stays(void **state)
{
	struct idem *t = idem_new(1000, 100);
	uint64_t g = 0;
	(void)state;

	put(t, "k", 3, T0);
	put(t, "k", 4, T0 + 10);
	assert_true(known(t, "k", T0 + 10, &g));
	assert_int_equal(g, 3);
	/* keys are bytes: no folding, no prefix match */
	assert_false(known(t, "K", T0, &g));
	assert_false(known(t, "kk", T0, &g));
	idem_free(t);
}

static void test_eviction_oldest_first(void **state)
{
	struct idem *t = idem_new(60000, 3);
	struct idem_stats st;
	uint64_t g = 0;
	(void)state;

	put(t, "k1", 1, T0);
	put(t, "k2", 2, T0 + 1);
	put(t, "k3", 3, T0 + 2);
	put(t, "k4", 4, T0 + 3);
	assert_false(known(t, "k1", T0 + 3, &g));
	assert_true(known(t, "k2", T0 + 3, &g));
	assert_true(known(t, "k4", T0 + 3, &g));
	idem_stats(t, &st);
	assert_int_equal(st.keys, 3);
	assert_int_equal(st.evicted, 1);
	assert_true(st.bytes > 0);
	idem_free(t);
}

/* What idem_each listed. */
struct listed {
	char keys[8][8];
	uint64_t gseqs[8];
	size_t n;
};

static void list_key(void *arg, const char *key, size_t len, uint64_t gseq, uint64_t time_ms)
{
	struct listed *l = arg;

	(void)time_ms;
	assert_true(l->n < 8 && len < 8);
	memcpy(l->keys[l->n], key, len);
	l->keys[l->n][len] = '\0';
	l->gseqs[l->n++] = gseq;
}

static void test_each_below_gseq(void **state)
{
	struct idem *t = idem_new(60000, 100);
	struct listed l = { .n = 0 };
	(void)state;

	put(t, "c", 30, T0);
	put(t, "a", 10, T0 + 1);
	put(t, "b", 20, T0 + 2);
	idem_each(t, 25, list_key, &l);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.keys[0], "a");
	assert_string_equal(l.keys[1], "b");
	idem_free(t);
}

/* Recovery hands keys with their publish time: those already past their window are not remembered. */
static void test_put_past_window(void **state)
{
	struct idem *t = idem_new(1000, 100);
	uint64_t g = 0;
	(void)state;

	assert_int_equal(idem_put(t, "old", 3, 1, T0, T0 + 1000), RC_OK);
	assert_int_equal(idem_put(t, "new", 3, 2, T0 + 500, T0 + 1000), RC_OK);
	assert_false(known(t, "old", T0 + 1000, &g));
	assert_true(known(t, "new", T0 + 1000, &g));
	assert_int_equal(g, 2);
	idem_free(t);
}

/* A window of 0: keys are ignored. */
static void test_window_zero(void **state)
{
	struct idem *t = idem_new(0, 100);
	struct idem_stats st;
	uint64_t g = 0;
	(void)state;

	put(t, "a", 1, T0);
	assert_false(known(t, "a", T0, &g));
	idem_stats(t, &st);
	assert_int_equal(st.keys, 0);
	idem_free(t);
	idem_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_within_window_miss_after),
		cmocka_unit_test(test_first_id_stays),
		cmocka_unit_test(test_eviction_oldest_first),
		cmocka_unit_test(test_each_below_gseq),
		cmocka_unit_test(test_put_past_window),
		cmocka_unit_test(test_window_zero),
	};
	return cmocka_run_group_tests_name("idem", tests, NULL, NULL);
}
