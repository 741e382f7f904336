/*
 * test_rewind.c - the history parameters (gateway/rewind.c): rewind counts
 * and durations, their bounds and bad values (the message names rewind);
 * before/after/limit/order of the history API, their bad values (the message
 * names the parameter) and the default order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "rewind.h"

/* Parses a copy of s in a buffer of its exact length (ASan sees any read past it). */
static int parse(const char *s, uint32_t max, struct gw_rewind *r, char *why)
{
	size_t n = strlen(s);
	char *p = malloc(n ? n : 1);
	int rv;

	assert_non_null(p);
	memcpy(p, s, n);
	why[0] = '\0';
	rv = gw_rewind_parse(p, n, max, r, why, 256);
	free(p);
	return rv;
}

static void test_rewind_count(void **state)
{
	struct gw_rewind r;
	char why[256];

	(void)state;
	assert_int_equal(parse("50", 1000, &r, why), RC_OK);
	assert_int_equal(r.count, 50);
	assert_int_equal(r.ms, 0);
	assert_int_equal(parse("0", 1000, &r, why), RC_OK);
	assert_int_equal(r.count, 0);
	assert_int_equal(parse("1000", 1000, &r, why), RC_OK);
	assert_int_equal(r.count, 1000);
	assert_int_equal(parse("007", 1000, &r, why), RC_OK);
	assert_int_equal(r.count, 7);
}

static void test_rewind_duration(void **state)
{
	struct gw_rewind r;
	char why[256];

	(void)state;
	assert_int_equal(parse("30s", 1000, &r, why), RC_OK);
	assert_int_equal(r.ms, 30000);
	assert_int_equal(r.count, 1000); /* the newest --max-rewind of the window */
	assert_int_equal(parse("5m", 200, &r, why), RC_OK);
	assert_int_equal(r.ms, 300000);
	assert_int_equal(r.count, 200);
	assert_int_equal(parse("1h", 1000, &r, why), RC_OK);
	assert_int_equal(r.ms, 3600000);
	assert_int_equal(parse("1000h", 1000, &r, why), RC_OK);
	assert_int_equal(r.ms, 3600000000ull);
}

static void test_rewind_bad(void **state)
{
	static const char *const bad[] = { "",	 "-1", "1001", "abc", "10x", "s",   "0s", "1001h", "1.5s",
					   "30S", " 5", "5 ", "1e3", "999999999999", "3000000m", "+5" };
	struct gw_rewind r;
	char why[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], 1000, &r, why) != RC_EINVAL)
			fail_msg("rewind=%s was accepted", bad[i]);
		if (strstr(why, "rewind") == NULL)
			fail_msg("rewind=%s: message does not name rewind: %s", bad[i], why);
	}
	assert_int_equal(parse("1001", 1000, &r, why), RC_EINVAL);
	assert_non_null(strstr(why, "--max-rewind"));
}

static int hset(struct gw_hparams *p, const char *k, const char *v, char *why)
{
	why[0] = '\0';
	return gw_hparams_set(p, k, strlen(k), v, strlen(v), why, 256);
}

static void test_hparams(void **state)
{
	struct gw_hparams p;
	char why[256];

	(void)state;
	gw_hparams_init(&p);
	gw_hparams_finish(&p);
	assert_int_equal(p.limit, 50);
	assert_true(p.newest_first);
	assert_string_equal(p.before, "");

	gw_hparams_init(&p);
	assert_int_equal(hset(&p, "after", "6f1c2a9e-1042", why), RC_OK);
	assert_int_equal(hset(&p, "limit", "500", why), RC_OK);
	assert_int_equal(hset(&p, "other", "x", why), RC_OK); /* ignored */
	gw_hparams_finish(&p);
	assert_string_equal(p.after, "6f1c2a9e-1042");
	assert_int_equal(p.limit, 500);
	assert_false(p.newest_first); /* after alone: oldest first */

	gw_hparams_init(&p);
	assert_int_equal(hset(&p, "before", "6f1c2a9e-1042", why), RC_OK);
	gw_hparams_finish(&p);
	assert_true(p.newest_first);

	gw_hparams_init(&p);
	assert_int_equal(hset(&p, "order", "asc", why), RC_OK);
	gw_hparams_finish(&p);
	assert_false(p.newest_first);
	assert_int_equal(hset(&p, "order", "desc", why), RC_OK);
	gw_hparams_finish(&p);
	assert_true(p.newest_first);
}

static void test_hparams_bad(void **state)
{
	static const char *const bad[][2] = {
		{ "before", "" },     { "before", "x" },    { "before", "6f1c2a9e" }, { "after", "-5" },
		{ "after", "6f1c2a9e-1042-3" }, { "limit", "0" }, { "limit", "501" }, { "limit", "" },
		{ "limit", "ten" },   { "limit", "-1" },    { "limit", "1000000" }, { "order", "up" },
		{ "order", "" },      { "order", "DESC" },
	};
	struct gw_hparams p;
	char why[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		gw_hparams_init(&p);
		if (hset(&p, bad[i][0], bad[i][1], why) != RC_EINVAL)
			fail_msg("%s=%s was accepted", bad[i][0], bad[i][1]);
		if (strncmp(why, bad[i][0], strlen(bad[i][0])) != 0)
			fail_msg("%s=%s: message does not name it: %s", bad[i][0], bad[i][1], why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rewind_count), cmocka_unit_test(test_rewind_duration),
		cmocka_unit_test(test_rewind_bad),   cmocka_unit_test(test_hparams),
		cmocka_unit_test(test_hparams_bad),
	};
	return cmocka_run_group_tests_name("rewind", tests, NULL, NULL);
}
