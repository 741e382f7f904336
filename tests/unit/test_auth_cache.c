/*
 * test_auth_cache.c - the --auth url answer cache (gateway/auth_cache.c):
 * keys (credential and rooms, or the credential alone; every field counts,
 * no two inputs collide by concatenation), hits until the ttl and misses
 * after, the bound on entries (the oldest goes), replacing an entry,
 * unavailable answers never kept, and grants owned and freed (ASan build).
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
#include <json-c/json.h>

#include "auth_cache.h"
#include "auth_url_http.h"
#include "error.h"
#include "grant.h"

static struct gw_authurl_ask ask_of(const char *method, const char *cookie, const char *authz, const char *room)
{
	static const char *rooms[1];
	static size_t lens[1];
	struct gw_authurl_ask a = {
		.method = method,
		.uri = "/api/v1/events",
		.uri_len = 14,
		.cookie = cookie,
		.cookie_len = cookie ? strlen(cookie) : 0,
		.authorization = authz,
		.authorization_len = authz ? strlen(authz) : 0,
	};

	if (room != NULL) {
		rooms[0] = room;
		lens[0] = strlen(room);
		a.rooms = rooms;
		a.room_lens = lens;
		a.nrooms = 1;
	} else {
		a.firehose = true;
	}
	return a;
}

static struct gw_auth_cache_key key_of(const char *method, const char *cookie, const char *authz, const char *room,
				       bool with_rooms)
{
	struct gw_authurl_ask a = ask_of(method, cookie, authz, room);
	struct gw_auth_cache_key k;

	gw_auth_cache_key(&k, &a, with_rooms);
	return k;
}

static bool same(struct gw_auth_cache_key a, struct gw_auth_cache_key b)
{
	return memcmp(a.d, b.d, sizeof(a.d)) == 0;
}

static struct rc_grant *grant_reading(const char *room)
{
	char body[128];
	char why[128];
	struct rc_grant *g = NULL;

	snprintf(body, sizeof(body), "{\"read\":[\"%s\"]}", room);
	assert_int_equal(gw_authurl_verdict(200, body, strlen(body), &g, why, sizeof(why)), GW_AUTHURL_ALLOW);
	assert_non_null(g);
	return g;
}

static void test_keys(void **state)
{
	(void)state;
	struct gw_auth_cache_key base = key_of("GET", "s=1", "Bearer a", "lobby", true);

	assert_true(same(base, key_of("GET", "s=1", "Bearer a", "lobby", true)));
	assert_false(same(base, key_of("POST", "s=1", "Bearer a", "lobby", true)));
	assert_false(same(base, key_of("GET", "s=2", "Bearer a", "lobby", true)));
	assert_false(same(base, key_of("GET", "s=1", "Bearer b", "lobby", true)));
	assert_false(same(base, key_of("GET", "s=1", "Bearer a", "other", true)));
	assert_false(same(base, key_of("GET", "s=1", "Bearer a", NULL, true)));
	/* the credential alone: the same for any rooms, and never a rooms key */
	assert_true(same(key_of("GET", "s=1", "Bearer a", "lobby", false), key_of("GET", "s=1", "Bearer a", "x", false)));
	assert_false(same(base, key_of("GET", "s=1", "Bearer a", "lobby", false)));
	/* the fields do not run into each other */
	assert_false(same(key_of("GET", "s=1B", "earer a", "lobby", true), key_of("GET", "s=1", "Bearer a", "lobby", true)));
	assert_false(same(key_of("GET", "", "x", "lobby", true), key_of("GET", "x", "", "lobby", true)));
	assert_false(same(key_of("GET", NULL, NULL, "lobby", true), key_of("GET", "", "", "lobby,x", true)));
}

static void test_hit_expire_replace(void **state)
{
	struct gw_auth_cache *c;
	struct gw_auth_cached got;
	struct gw_auth_cache_key a = key_of("GET", "s=1", NULL, "lobby", true);
	struct gw_auth_cache_key b = key_of("GET", "s=2", NULL, "lobby", false);

	(void)state;
	assert_int_equal(gw_auth_cache_new(10, 1000, &c), RC_OK);
	assert_false(gw_auth_cache_get(c, &a, 100, &got));
	gw_auth_cache_put(c, &a, 100, GW_AUTHURL_ALLOW, NULL, "");
	gw_auth_cache_put(c, &b, 200, GW_AUTHURL_ALLOW, grant_reading("lobby"), "");
	assert_true(gw_auth_cache_get(c, &a, 1099, &got));
	assert_int_equal(got.verdict, GW_AUTHURL_ALLOW);
	assert_null(got.grant);
	assert_true(gw_auth_cache_get(c, &b, 1100, &got));
	assert_non_null(got.grant);
	assert_true(rc_grant_can_read(got.grant, "lobby", 5));
	/* a's time is up; b's not yet */
	assert_false(gw_auth_cache_get(c, &a, 1100, &got));
	assert_true(gw_auth_cache_get(c, &b, 1199, &got));
	assert_int_equal(gw_auth_cache_count(c), 1);
	/* replaced: the new answer, the old grant freed */
	gw_auth_cache_put(c, &b, 1150, GW_AUTHURL_UNAUTHORIZED, NULL, "Cookie realm=\"app\"");
	assert_true(gw_auth_cache_get(c, &b, 2000, &got));
	assert_int_equal(got.verdict, GW_AUTHURL_UNAUTHORIZED);
	assert_string_equal(got.challenge, "Cookie realm=\"app\"");
	assert_null(got.grant);
	assert_int_equal(gw_auth_cache_count(c), 1);
	assert_false(gw_auth_cache_get(c, &b, 2150, &got));
	assert_int_equal(gw_auth_cache_count(c), 0);
	/* unavailable is never kept */
	gw_auth_cache_put(c, &a, 3000, GW_AUTHURL_UNAVAILABLE, NULL, "");
	assert_false(gw_auth_cache_get(c, &a, 3000, &got));
	/* a grant left in the cache is freed with it */
	gw_auth_cache_put(c, &a, 3000, GW_AUTHURL_ALLOW, grant_reading("x"), "");
	gw_auth_cache_free(c);
	gw_auth_cache_free(NULL);
}

static void test_bounded(void **state)
{
	struct gw_auth_cache *c;
	struct gw_auth_cached got;
	char cookie[32];

	(void)state;
	assert_int_equal(gw_auth_cache_new(3, 60000, &c), RC_OK);
	for (int i = 0; i < 100; i++) {
		snprintf(cookie, sizeof(cookie), "s=%d", i);
		struct gw_auth_cache_key k = key_of("GET", cookie, NULL, "lobby", true);
		gw_auth_cache_put(c, &k, (uint64_t)i, GW_AUTHURL_ALLOW, i % 2 ? grant_reading("lobby") : NULL, "");
		assert_true(gw_auth_cache_count(c) <= 3);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(cookie, sizeof(cookie), "s=%d", i);
		struct gw_auth_cache_key k = key_of("GET", cookie, NULL, "lobby", true);
		assert_int_equal(gw_auth_cache_get(c, &k, 100, &got), i >= 97);
	}
	gw_auth_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_hit_expire_replace),
		cmocka_unit_test(test_bounded),
	};
	return cmocka_run_group_tests_name("auth_cache", tests, NULL, NULL);
}
