/*
 * test_grant.c - the roomcast claims of a token: which entries are valid,
 * what exact ids, prefix patterns, "*", "$global" and the firehose grant,
 * and how a grant is laid out (one allocation, a 24-byte stamp).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "error.h"
#include "grant.h"

#define EXP 1700000000

/* The grant of claims_json (a JSON object), or fails the test. */
static struct rc_grant *grant_of(const char *claims_json)
{
	struct json_object *o = json_tokener_parse(claims_json);
	struct rc_grant *g = NULL;
	char why[200] = "";
	int rv;

	assert_non_null(o);
	rv = rc_grant_parse(o, &g, why, sizeof(why));
	json_object_put(o);
	if (rv != RC_OK)
		fail_msg("%s: %s", claims_json, why);
	return g;
}

/* Expects claims_json to be refused, with a reason that contains want. */
static void assert_refused(const char *claims_json, const char *want)
{
	struct json_object *o = json_tokener_parse(claims_json);
	struct rc_grant *g = (struct rc_grant *)1;
	char why[200] = "";

	assert_non_null(o);
	assert_int_equal(rc_grant_parse(o, &g, why, sizeof(why)), RC_EINVAL);
	assert_null(g);
	if (strstr(why, want) == NULL)
		fail_msg("%s: reason '%s' does not say '%s'", claims_json, why, want);
	json_object_put(o);
}

static bool can_read(const struct rc_grant *g, const char *room)
{
	return rc_grant_can_read(g, room, strlen(room));
}

static bool can_publish(const struct rc_grant *g, const char *room)
{
	return rc_grant_can_publish(g, room, strlen(room));
}

static void test_exact_and_prefix(void **state)
{
	struct rc_grant *g = grant_of("{\"sub\":\"alice\",\"exp\":1700000000,\"roomcast\":"
				      "{\"read\":[\"lobby\",\"team-42:*\"],\"publish\":[\"lobby\"]}}");

	(void)state;
	assert_true(can_read(g, "lobby"));
	assert_false(can_read(g, "lobby2")); /* exact means exact */
	assert_false(can_read(g, "lobb"));
	assert_false(can_read(g, "Lobby")); /* case matters */
	assert_true(can_read(g, "team-42:general"));
	assert_true(can_read(g, "team-42:")); /* the prefix itself is a room id too */
	assert_false(can_read(g, "team-42")); /* shorter than the prefix */
	assert_false(can_read(g, "team-420:x"));
	assert_false(can_read(g, "team-4"));
	assert_true(can_publish(g, "lobby"));
	assert_false(can_publish(g, "team-42:general")); /* read is not publish */
	assert_false(rc_grant_can_firehose(g));
	assert_int_equal(g->n_read, 2);
	assert_int_equal(g->n_publish, 1);
	assert_string_equal(g->read[1].s, "team-42:");
	assert_true(g->read[1].prefix);
	assert_false(g->read[0].prefix);
	rc_grant_free(g);
}

static void test_star_alone_covers_every_room_but_not_global_publish(void **state)
{
	struct rc_grant *g = grant_of("{\"sub\":\"svc\",\"exp\":1700000000,\"roomcast\":"
				      "{\"read\":[\"*\"],\"publish\":[\"*\"]}}");

	(void)state;
	assert_true(can_read(g, "anything"));
	assert_true(can_publish(g, "anything"));
	assert_false(rc_grant_can_publish(g, NULL, 0)); /* global events need "$global" */
	assert_false(rc_grant_can_firehose(g));		/* and the firehose its own grant */
	rc_grant_free(g);
}

static void test_global_events(void **state)
{
	struct rc_grant *none = grant_of("{\"sub\":\"a\",\"exp\":1}");
	struct rc_grant *pub = grant_of("{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"publish\":[\"$global\",\"lobby\"]}}");

	(void)state;
	/* read covers global events (SPEC), even for a token that grants no room */
	assert_true(rc_grant_can_read(none, NULL, 0));
	assert_false(can_read(none, "lobby"));
	assert_false(rc_grant_can_publish(none, NULL, 0));
	assert_true(rc_grant_can_publish(pub, NULL, 0));
	assert_true(pub->publish_global);
	assert_true(can_publish(pub, "lobby"));
	assert_int_equal(pub->n_publish, 1); /* "$global" is a flag, not a pattern */
	assert_false(can_publish(pub, "$global"));
	rc_grant_free(none);
	rc_grant_free(pub);
}

static void test_firehose(void **state)
{
	struct rc_grant *g = grant_of("{\"sub\":\"ops\",\"exp\":1,\"roomcast\":{\"firehose\":true}}");
	struct rc_grant *no =
		grant_of("{\"sub\":\"ops\",\"exp\":1,\"roomcast\":{\"firehose\":false,\"read\":[\"*\"]}}");

	(void)state;
	assert_true(rc_grant_can_firehose(g));
	assert_true(can_read(g, "any-room")); /* the firehose carries every room */
	assert_false(can_publish(g, "any-room"));
	assert_false(rc_grant_can_firehose(no)); /* "*" is every room, not the firehose */
	rc_grant_free(g);
	rc_grant_free(no);
}

static void test_fields_and_stamp(void **state)
{
	struct rc_grant *g = grant_of("{\"sub\":\"alice\",\"jti\":\"t-1\",\"exp\":1700000000.9,\"iat\":1,"
				      "\"roomcast\":{\"read\":[\"a\"],\"other\":1}}");
	struct rc_grant *nojti = grant_of("{\"sub\":\"alice\",\"exp\":5}");
	struct rc_grant_stamp st;

	(void)state;
	assert_string_equal(g->sub, "alice");
	assert_string_equal(g->jti, "t-1");
	assert_int_equal(g->exp, EXP); /* a fraction is dropped */
	rc_grant_stamp(g, &st);
	assert_int_equal(sizeof(st), 24);
	assert_int_equal(st.exp, EXP);
	assert_int_equal(st.sub_hash, rc_grant_id_hash("alice", 5));
	assert_int_equal(st.jti_hash, rc_grant_id_hash("t-1", 3));
	assert_true(rc_grant_id_hash("alice", 5) != rc_grant_id_hash("bob", 3));
	assert_true(rc_grant_id_hash("", 0) != 0);
	assert_null(nojti->jti);
	rc_grant_stamp(nojti, &st);
	assert_int_equal(st.jti_hash, 0); /* no revocation by id can match it */
	assert_int_equal(st.sub_hash, g->sub_hash);
	rc_grant_free(g);
	rc_grant_free(nojti);
	rc_grant_free(NULL);
}

static void test_entries(void **state)
{
	char room128[131], room129[131];

	(void)state;
	memset(room128, 'r', 128);
	room128[128] = '\0';
	memset(room129, 'r', 129);
	room129[129] = '\0';
	assert_true(rc_grant_entry_valid("lobby", 5, false));
	assert_true(rc_grant_entry_valid("a.b:c@d_e-f", 11, false));
	assert_true(rc_grant_entry_valid("team-42:*", 9, false));
	assert_true(rc_grant_entry_valid("*", 1, false));
	assert_true(rc_grant_entry_valid(room128, 128, false));
	room128[127] = '*'; /* 127 bytes of prefix */
	assert_true(rc_grant_entry_valid(room128, 128, false));
	assert_false(rc_grant_entry_valid(room129, 129, false));
	room129[128] = '*'; /* a prefix of 128 bytes is still a room id's length */
	assert_true(rc_grant_entry_valid(room129, 129, false));
	assert_false(rc_grant_entry_valid("", 0, false));
	assert_false(rc_grant_entry_valid("a*b", 3, false)); /* '*' only at the end */
	assert_false(rc_grant_entry_valid("**", 2, false));
	assert_false(rc_grant_entry_valid("a b", 3, false));
	assert_false(rc_grant_entry_valid("a/b", 3, false));
	assert_false(rc_grant_entry_valid("$global", 7, false)); /* meaningless in read */
	assert_true(rc_grant_entry_valid("$global", 7, true));
	assert_false(rc_grant_entry_valid("$globa", 6, true));
}

static void test_refuses_malformed_claims(void **state)
{
	(void)state;
	assert_refused("{\"exp\":1}", "sub missing");
	assert_refused("{\"sub\":\"\",\"exp\":1}", "sub must be");
	assert_refused("{\"sub\":7,\"exp\":1}", "sub must be");
	assert_refused("{\"sub\":\"a\\nb\",\"exp\":1}", "sub must be");
	assert_refused("{\"sub\":\"a\",\"jti\":[],\"exp\":1}", "jti must be");
	assert_refused("{\"sub\":\"a\"}", "exp missing");
	assert_refused("{\"sub\":\"a\",\"exp\":\"1700000000\"}", "exp must be");
	assert_refused("{\"sub\":\"a\",\"exp\":-1}", "exp must be");
	assert_refused("{\"sub\":\"a\",\"exp\":1e300}", "exp must be");
	assert_refused("{\"sub\":\"a\",\"exp\":1,\"roomcast\":[]}", "roomcast must be an object");
	assert_refused("{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"read\":\"lobby\"}}", "roomcast.read must be an array");
	assert_refused("{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"read\":[1]}}", "roomcast.read[0] must be a string");
	assert_refused("{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"read\":[\"ok\",\"no way\"]}}", "roomcast.read[1]");
	assert_refused("{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"read\":[\"$global\"]}}", "roomcast.read[0]");
	assert_refused("{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"publish\":[\"x*y\"]}}", "roomcast.publish[0]");
	assert_refused("{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"firehose\":1}}", "roomcast.firehose");
	assert_refused("{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"firehose\":\"true\"}}", "roomcast.firehose");
}

static void test_numeric_date(void **state)
{
	struct json_object *o = json_tokener_parse("{\"a\":5,\"b\":5.7,\"c\":-1,\"d\":\"5\",\"e\":9007199254740993,"
						   "\"f\":null,\"g\":9007199254740992}");
	int64_t t = 0;

	(void)state;
	assert_int_equal(rc_claims_numeric_date(o, "a", &t), RC_OK);
	assert_int_equal(t, 5);
	assert_int_equal(rc_claims_numeric_date(o, "b", &t), RC_OK);
	assert_int_equal(t, 5);
	assert_int_equal(rc_claims_numeric_date(o, "c", &t), RC_EINVAL);
	assert_int_equal(rc_claims_numeric_date(o, "d", &t), RC_EINVAL);
	assert_int_equal(rc_claims_numeric_date(o, "e", &t), RC_EINVAL);
	assert_int_equal(rc_claims_numeric_date(o, "f", &t), RC_EINVAL);
	assert_int_equal(rc_claims_numeric_date(o, "g", &t), RC_OK);
	assert_int_equal(rc_claims_numeric_date(o, "zz", &t), RC_ENOTFOUND);
	json_object_put(o);
}

static void test_many_patterns_one_allocation(void **state)
{
	char json[8192];
	size_t n = 0;
	struct rc_grant *g;
	char room[32];

	(void)state;
	n += (size_t)snprintf(json + n, sizeof(json) - n, "{\"sub\":\"a\",\"exp\":1,\"roomcast\":{\"read\":[");
	for (int i = 0; i < 200; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, "%s\"room-%d%s\"", i ? "," : "", i,
				      i % 2 ? ":*" : "");
	snprintf(json + n, sizeof(json) - n, "]}}");
	g = grant_of(json);
	assert_int_equal(g->n_read, 200);
	for (int i = 0; i < 200; i++) {
		snprintf(room, sizeof(room), i % 2 ? "room-%d:x" : "room-%d", i);
		assert_true(can_read(g, room));
	}
	assert_false(can_read(g, "room-0:x"));
	assert_false(can_read(g, "room-200"));
	rc_grant_free(g); /* ASan: one free releases everything */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_and_prefix),
		cmocka_unit_test(test_star_alone_covers_every_room_but_not_global_publish),
		cmocka_unit_test(test_global_events),
		cmocka_unit_test(test_firehose),
		cmocka_unit_test(test_fields_and_stamp),
		cmocka_unit_test(test_entries),
		cmocka_unit_test(test_refuses_malformed_claims),
		cmocka_unit_test(test_numeric_date),
		cmocka_unit_test(test_many_patterns_one_allocation),
	};
	return cmocka_run_group_tests_name("grant", tests, NULL, NULL);
}
