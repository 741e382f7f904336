/*
 * test_event.c - event validation and the compact one-line serialization
 * that subscribers receive (SPEC: Events).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <math.h>

#include "error.h"
#include "event.h"

#define MAX_BYTES RC_MAX_EVENT_BYTES_DEFAULT

/* Parses text, which the test itself wrote and must be valid JSON. */
static struct json_object *parse(const char *text)
{
	struct json_object *obj = json_tokener_parse(text);

	if (obj == NULL)
		fail_msg("test JSON does not parse: %s", text);
	return obj;
}

/* Checks text and expects it to be accepted with exactly this serialization. */
static void assert_serializes(const char *text, const char *want)
{
	struct json_object *obj = parse(text);
	struct rc_event_view v;
	char why[256] = "";

	if (rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)) != RC_OK)
		fail_msg("%s rejected: %s", text, why);
	assert_int_equal(v.json_len, strlen(want));
	assert_memory_equal(v.json, want, v.json_len);
	json_object_put(obj);
}

/* Checks text, expects rv and a reason that starts with prefix. */
static void assert_invalid(const char *text, int rv, const char *prefix)
{
	struct json_object *obj = json_tokener_parse(text);
	struct rc_event_view v;
	char why[256] = "";
	int got = rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why));

	if (got != rv)
		fail_msg("%s: got %d (%s), want %d", text, got, why, rv);
	if (why[0] == '\0')
		fail_msg("%s: no reason given", text);
	if (prefix != NULL && strncmp(why, prefix, strlen(prefix)) != 0)
		fail_msg("%s: reason '%s' does not start with '%s'", text, why, prefix);
	json_object_put(obj);
}

/* Returns a malloc'ed string of n copies of c. */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void test_valid_room_event(void **state)
{
	static const char text[] = "{\"type\":\"message.created\",\"room_id\":\"room-1\",\"text\":\"hi\"}";
	struct json_object *obj = parse(text);
	struct rc_event_view v;
	char why[128];

	(void)state;
	assert_int_equal(rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)), RC_OK);
	assert_int_equal(v.type_len, strlen("message.created"));
	assert_memory_equal(v.type, "message.created", v.type_len);
	assert_non_null(v.room);
	assert_int_equal(v.room_len, strlen("room-1"));
	assert_memory_equal(v.room, "room-1", v.room_len);
	assert_int_equal(v.json_len, strlen(text));
	assert_memory_equal(v.json, text, v.json_len);
	json_object_put(obj);
}

static void test_valid_global_event(void **state)
{
	struct json_object *obj = parse("{\"type\":\"user.created\",\"user\":{\"id\":\"u1\"}}");
	struct rc_event_view v;
	char why[128];

	(void)state;
	assert_int_equal(rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)), RC_OK);
	assert_null(v.room);
	assert_int_equal(v.room_len, 0);
	assert_memory_equal(v.type, "user.created", v.type_len);
	json_object_put(obj);
}

/* Other fields, nested values and field order are kept; whitespace is not. */
static void test_fields_kept_compact(void **state)
{
	(void)state;
	assert_serializes("{ \"type\" : \"message.created\",\n  \"room_id\": \"room-1\",\n"
			  "  \"message\": { \"id\": 7, \"tags\": [\"a\", \"b\"], \"meta\": {\"x\": null, "
			  "\"ok\": true, \"no\": false, \"deep\": [[[{}]]]}},\n  \"empty\": [] }",
			  "{\"type\":\"message.created\",\"room_id\":\"room-1\",\"message\":{\"id\":7,"
			  "\"tags\":[\"a\",\"b\"],\"meta\":{\"x\":null,\"ok\":true,\"no\":false,\"deep\":[[[{}]]]}},"
			  "\"empty\":[]}");
	/* fields before type are kept in place */
	assert_serializes("{\"z\":1,\"type\":\"t\",\"a\":2}", "{\"z\":1,\"type\":\"t\",\"a\":2}");
	/* a slash is not escaped */
	assert_serializes("{\"type\":\"t\",\"url\":\"https://x/y\"}", "{\"type\":\"t\",\"url\":\"https://x/y\"}");
}

/* Numbers keep their published spelling. */
static void test_numbers_kept(void **state)
{
	(void)state;
	assert_serializes("{\"type\":\"price\",\"a\":1.50,\"b\":1e3,\"c\":-7,\"d\":0.1,\"e\":1E+3,"
			  "\"f\":12345678901234567890,\"g\":-9223372036854775808,\"h\":2.0}",
			  "{\"type\":\"price\",\"a\":1.50,\"b\":1e3,\"c\":-7,\"d\":0.1,\"e\":1E+3,"
			  "\"f\":12345678901234567890,\"g\":-9223372036854775808,\"h\":2.0}");
}

/* UTF-8 passes through unchanged; \u escapes become the same characters. */
static void test_unicode(void **state)
{
	(void)state;
	assert_serializes("{\"type\":\"t\",\"text\":\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"}",
			  "{\"type\":\"t\",\"text\":\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"}");
	assert_serializes("{\"type\":\"t\",\"text\":\"h\\u00e9llo \\u2603 \\ud83d\\ude00\"}",
			  "{\"type\":\"t\",\"text\":\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"}");
}

/* A payload is one SSE data: line, so it never holds a raw CR or LF. */
static void test_one_line(void **state)
{
	static const char text[] =
		"{\"type\":\"t\",\n\"text\":\"line1\\nline2\\r\\nend\",\r\n\"ctl\":\"\\u0001\\t\\u001f\",\n"
		"\"nested\":{\"k\":[\"a\\nb\"]}\n}";
	struct json_object *obj = parse(text), *back;
	struct rc_event_view v;
	char why[128];

	(void)state;
	assert_int_equal(rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)), RC_OK);
	assert_null(memchr(v.json, '\n', v.json_len));
	assert_null(memchr(v.json, '\r', v.json_len));
	assert_int_equal(strlen(v.json), v.json_len);
	/* and it still means the same thing */
	back = json_tokener_parse(v.json);
	assert_non_null(back);
	assert_true(json_object_equal(obj, back));
	json_object_put(back);
	json_object_put(obj);
}

/* Parses text as the broker and gateways do (strict, whole input). */
static struct json_object *parse_strict(const char *text)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj;

	assert_non_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, text, (int)strlen(text));
	if (obj == NULL)
		fail_msg("strict parse failed: %s", text);
	json_tokener_free(tok);
	return obj;
}

/*
 * json-c accepts NaN and Infinity even in strict mode, but they are not JSON:
 * a subscriber's JSON.parse would throw on the whole event.
 */
static void test_non_json_numbers(void **state)
{
	static const char *const bad[] = {
		"{\"type\":\"t\",\"x\":NaN}",
		"{\"type\":\"t\",\"x\":Infinity}",
		"{\"type\":\"t\",\"x\":-Infinity}",
		"{\"type\":\"t\",\"a\":[1,{\"b\":[2,NaN]}]}",
	};
	struct json_object *obj;
	struct rc_event_view v;
	char why[128];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		obj = parse_strict(bad[i]);
		if (rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)) != RC_EINVAL)
			fail_msg("%s accepted", bad[i]);
		json_object_put(obj);
	}
	/* the same values built in code */
	obj = parse("{\"type\":\"t\"}");
	json_object_object_add(obj, "x", json_object_new_double(NAN));
	assert_int_equal(rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)), RC_EINVAL);
	json_object_object_add(obj, "x", json_object_new_double(-INFINITY));
	assert_int_equal(rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)), RC_EINVAL);
	json_object_put(obj);
	/* a literal too large for a double is still valid JSON, kept as written */
	obj = parse_strict("{\"type\":\"t\",\"big\":1e400,\"neg\":-1e400,\"tiny\":1e-400}");
	assert_int_equal(rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)), RC_OK);
	assert_string_equal(v.json, "{\"type\":\"t\",\"big\":1e400,\"neg\":-1e400,\"tiny\":1e-400}");
	json_object_put(obj);
}

static void test_not_an_object(void **state)
{
	struct rc_event_view v;
	char why[128] = "";

	(void)state;
	assert_invalid("[{\"type\":\"t\"}]", RC_EINVAL, NULL);
	assert_invalid("\"type\"", RC_EINVAL, NULL);
	assert_invalid("42", RC_EINVAL, NULL);
	assert_invalid("1.5", RC_EINVAL, NULL);
	assert_invalid("true", RC_EINVAL, NULL);
	assert_invalid("null", RC_EINVAL, NULL); /* json-c: NULL */
	assert_int_equal(rc_event_check(NULL, MAX_BYTES, &v, why, sizeof(why)), RC_EINVAL);
	assert_true(why[0] != '\0');
}

static void test_bad_type(void **state)
{
	static const char *const bad[] = {
		"{\"room_id\":\"r\"}", "{}",                                  /* missing */
		"{\"type\":1}", "{\"type\":null}", "{\"type\":true}",         /* not a string */
		"{\"type\":[\"t\"]}", "{\"type\":{\"t\":1}}",
		"{\"type\":\"\"}",                                            /* empty */
		"{\"type\":\"a b\"}", "{\"type\":\" t\"}", "{\"type\":\"t \"}", /* bad chars */
		"{\"type\":\"a/b\"}", "{\"type\":\"a#b\"}", "{\"type\":\"a:b\"}", "{\"type\":\"a@b\"}",
		"{\"type\":\"a+b\"}", "{\"type\":\"a\\nb\"}", "{\"type\":\"a\\u0000b\"}",
		"{\"type\":\"caf\xc3\xa9\"}", "{\"type\":\"\\u00e9\"}",
		"{\"type\":1,\"room_id\":\"bad room\"}", /* type is checked first */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_invalid(bad[i], RC_EINVAL, "type");
}

static void test_bad_room(void **state)
{
	static const char *const bad[] = {
		"{\"type\":\"t\",\"room_id\":1}", "{\"type\":\"t\",\"room_id\":null}", /* not a string */
		"{\"type\":\"t\",\"room_id\":true}", "{\"type\":\"t\",\"room_id\":[\"r\"]}",
		"{\"type\":\"t\",\"room_id\":{}}",
		"{\"type\":\"t\",\"room_id\":\"\"}", /* empty */
		"{\"type\":\"t\",\"room_id\":\"room 1\"}", "{\"type\":\"t\",\"room_id\":\" r\"}",
		"{\"type\":\"t\",\"room_id\":\"a/b\"}", "{\"type\":\"t\",\"room_id\":\"a#b\"}",
		"{\"type\":\"t\",\"room_id\":\"a,b\"}", "{\"type\":\"t\",\"room_id\":\"a?b\"}",
		"{\"type\":\"t\",\"room_id\":\"a\\nb\"}", "{\"type\":\"t\",\"room_id\":\"a\\u0000b\"}",
		"{\"type\":\"t\",\"room_id\":\"caf\xc3\xa9\"}", "{\"type\":\"t\",\"room_id\":\"\\u2603\"}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_invalid(bad[i], RC_EINVAL, "room_id");
}

/* 64-byte types and 128-byte rooms are the longest accepted. */
static void test_length_limits(void **state)
{
	char *type64 = repeat('t', RC_TYPE_MAX), *type65 = repeat('t', RC_TYPE_MAX + 1);
	char *room128 = repeat('r', RC_ROOM_MAX), *room129 = repeat('r', RC_ROOM_MAX + 1);
	char text[512];
	struct json_object *obj;
	struct rc_event_view v;
	char why[128];

	(void)state;
	assert_int_equal(RC_TYPE_MAX, 64);
	assert_int_equal(RC_ROOM_MAX, 128);

	snprintf(text, sizeof(text), "{\"type\":\"%s\",\"room_id\":\"%s\"}", type64, room128);
	obj = parse(text);
	assert_int_equal(rc_event_check(obj, MAX_BYTES, &v, why, sizeof(why)), RC_OK);
	assert_int_equal(v.type_len, 64);
	assert_int_equal(v.room_len, 128);
	json_object_put(obj);

	snprintf(text, sizeof(text), "{\"type\":\"%s\"}", type65);
	assert_invalid(text, RC_EINVAL, "type");
	snprintf(text, sizeof(text), "{\"type\":\"t\",\"room_id\":\"%s\"}", room129);
	assert_invalid(text, RC_EINVAL, "room_id");

	free(type64);
	free(type65);
	free(room128);
	free(room129);
}

/* Every character of the documented sets is accepted. */
static void test_charsets(void **state)
{
	static const char type_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
	static const char room_chars[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-";

	(void)state;
	/* the type set is 65 bytes, one more than a type may hold */
	assert_true(rc_type_valid(type_chars, RC_TYPE_MAX));
	assert_true(rc_type_valid(type_chars + 1, RC_TYPE_MAX));
	assert_false(rc_type_valid(type_chars, strlen(type_chars)));
	assert_true(rc_room_valid(room_chars, strlen(room_chars)));
	assert_serializes("{\"type\":\"a.B_c-9\",\"room_id\":\"team:42@chat.example_x-y\"}",
			  "{\"type\":\"a.B_c-9\",\"room_id\":\"team:42@chat.example_x-y\"}");

	/* every other byte is refused */
	for (int c = 0; c < 256; c++) {
		char s[3] = { 'a', (char)c, '\0' };
		bool in_type = c != 0 && strchr(type_chars, c) != NULL;
		bool in_room = c != 0 && strchr(room_chars, c) != NULL;

		if (rc_type_valid(s, 2) != in_type)
			fail_msg("type byte 0x%02x", c);
		if (rc_room_valid(s, 2) != in_room)
			fail_msg("room byte 0x%02x", c);
	}
	assert_false(rc_type_valid(NULL, 0));
	assert_false(rc_type_valid("", 0));
	assert_false(rc_room_valid(NULL, 0));
	assert_false(rc_room_valid("", 0));
	/* only len bytes count */
	assert_true(rc_room_valid("room-1/extra", 6));
	assert_false(rc_room_valid("room-1/extra", 7));
}

/* Builds {"type":"t","pad":"xxx"} whose serialization is exactly n bytes. */
static struct json_object *event_of_size(size_t n)
{
	static const size_t base = sizeof("{\"type\":\"t\",\"pad\":\"\"}") - 1;
	char *pad = repeat('x', n - base);
	struct json_object *obj = json_object_new_object();

	json_object_object_add(obj, "type", json_object_new_string("t"));
	json_object_object_add(obj, "pad", json_object_new_string(pad));
	free(pad);
	return obj;
}

static void test_size_limit(void **state)
{
	static const size_t limits[] = { 100, 1000, RC_MAX_EVENT_BYTES_DEFAULT };
	struct rc_event_view v;
	char why[256];

	(void)state;
	assert_int_equal(RC_MAX_EVENT_BYTES_DEFAULT, 65536);
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		size_t max = limits[i];
		struct json_object *at = event_of_size(max), *over = event_of_size(max + 1);

		assert_int_equal(rc_event_check(at, max, &v, why, sizeof(why)), RC_OK);
		assert_int_equal(v.json_len, max);
		why[0] = '\0';
		assert_int_equal(rc_event_check(over, max, &v, why, sizeof(why)), RC_ETOOBIG);
		assert_true(why[0] != '\0');
		/* the same event fits a larger limit */
		assert_int_equal(rc_event_check(over, max + 1, &v, why, sizeof(why)), RC_OK);
		json_object_put(at);
		json_object_put(over);
	}
}

/* The reason is cut to whylen and always NUL-terminated. */
static void test_short_why(void **state)
{
	struct json_object *obj = parse("{\"type\":\"t\",\"room_id\":\"\"}");
	struct rc_event_view v;
	char why[9];

	(void)state;
	memset(why, 'X', sizeof(why));
	assert_int_equal(rc_event_check(obj, MAX_BYTES, &v, why, 8), RC_EINVAL);
	assert_string_equal(why, "room_id");
	assert_int_equal(why[8], 'X');
	json_object_put(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_room_event),
		cmocka_unit_test(test_valid_global_event),
		cmocka_unit_test(test_fields_kept_compact),
		cmocka_unit_test(test_numbers_kept),
		cmocka_unit_test(test_unicode),
		cmocka_unit_test(test_one_line),
		cmocka_unit_test(test_non_json_numbers),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_bad_type),
		cmocka_unit_test(test_bad_room),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_charsets),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_short_why),
	};

	return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
