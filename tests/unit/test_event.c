/*
 * test_event.c - event validation and the compact one-line serialization
 * that subscribers receive (SPEC: Events): the event exactly as published,
 * whitespace outside strings dropped.
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

#include "error.h"
#include "event.h"

#define MAX_BYTES RC_MAX_EVENT_BYTES_DEFAULT

/* Checks text[0..len) from an exact-size copy (ASan sees reads past it); the compact event goes to out. */
static int check_n(const char *text, size_t len, size_t max, struct rc_buf *out, struct rc_event_view *v, char *why,
		   size_t whylen)
{
	char *copy = malloc(len ? len : 1);
	int rv;

	assert_non_null(copy);
	memcpy(copy, text, len);
	rv = rc_event_check(copy, len, max, out, v, why, whylen);
	free(copy);
	return rv;
}

static int check(const char *text, struct rc_buf *out, struct rc_event_view *v, char *why, size_t whylen)
{
	return check_n(text, strlen(text), MAX_BYTES, out, v, why, whylen);
}

/* Checks text and expects it to be accepted with exactly this serialization. */
static void assert_serializes(const char *text, const char *want)
{
	struct rc_buf out;
	struct rc_event_view v;
	char why[256] = "";

	rc_buf_init(&out);
	if (check(text, &out, &v, why, sizeof(why)) != RC_OK)
		fail_msg("%s rejected: %s", text, why);
	assert_int_equal(v.json_off, 0);
	if (v.json_len != strlen(want) || memcmp(out.data, want, v.json_len) != 0)
		fail_msg("%s serializes to %.*s, want %s", text, (int)v.json_len, out.data, want);
	assert_int_equal(out.len, v.json_len);
	rc_buf_fini(&out);
}

/* Checks text, expects rv and a reason that starts with prefix. */
static void assert_invalid(const char *text, int rv, const char *prefix)
{
	struct rc_buf out;
	struct rc_event_view v;
	char why[256] = "";
	int got;

	rc_buf_init(&out);
	got = check(text, &out, &v, why, sizeof(why));
	if (got != rv)
		fail_msg("%s: got %d (%s), want %d", text, got, why, rv);
	if (why[0] == '\0')
		fail_msg("%s: no reason given", text);
	if (prefix != NULL && strncmp(why, prefix, strlen(prefix)) != 0)
		fail_msg("%s: reason '%s' does not start with '%s'", text, why, prefix);
	rc_buf_fini(&out);
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
	struct rc_buf out;
	struct rc_event_view v;
	char why[128];

	(void)state;
	rc_buf_init(&out);
	assert_int_equal(check(text, &out, &v, why, sizeof(why)), RC_OK);
	assert_int_equal(v.type_len, strlen("message.created"));
	assert_memory_equal(v.type, "message.created", v.type_len);
	assert_int_equal(v.room_len, strlen("room-1"));
	assert_memory_equal(v.room, "room-1", v.room_len);
	assert_int_equal(v.json_len, strlen(text));
	assert_memory_equal(out.data + v.json_off, text, v.json_len);
	rc_buf_fini(&out);
}

static void test_valid_global_event(void **state)
{
	struct rc_buf out;
	struct rc_event_view v;
	char why[128];

	(void)state;
	rc_buf_init(&out);
	assert_int_equal(check("{\"type\":\"user.created\",\"user\":{\"id\":\"u1\"}}", &out, &v, why, sizeof(why)),
			 RC_OK);
	assert_int_equal(v.room_len, 0);
	assert_memory_equal(v.type, "user.created", v.type_len);
	/* the compact event is appended to what out holds */
	rc_buf_puts(&out, ",");
	assert_int_equal(check("{ \"type\" : \"t\" }", &out, &v, why, sizeof(why)), RC_OK);
	assert_int_equal(v.json_off, strlen("{\"type\":\"user.created\",\"user\":{\"id\":\"u1\"}},"));
	assert_int_equal(v.json_len, strlen("{\"type\":\"t\"}"));
	assert_string_equal(out.data, "{\"type\":\"user.created\",\"user\":{\"id\":\"u1\"}},{\"type\":\"t\"}");
	rc_buf_fini(&out);
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

/* Numbers keep their published spelling, whatever a double or an int64 would make of them. */
static void test_numbers_kept(void **state)
{
	(void)state;
	assert_serializes("{\"type\":\"price\",\"a\":1.50,\"b\":1e3,\"c\":-7,\"d\":0.1,\"e\":1E+3,"
			  "\"f\":12345678901234567890,\"g\":-9223372036854775808,\"h\":2.0}",
			  "{\"type\":\"price\",\"a\":1.50,\"b\":1e3,\"c\":-7,\"d\":0.1,\"e\":1E+3,"
			  "\"f\":12345678901234567890,\"g\":-9223372036854775808,\"h\":2.0}");
	/* beyond 64 bits, beyond a double, negative zero */
	assert_serializes("{\"type\":\"n\", \"big\": 123456789012345678901234567890, \"neg\": "
			  "-123456789012345678901234567890, \"u\": 18446744073709551616, \"z\": -0, \"zf\": -0.0,"
			  " \"inf\": 1e400, \"ninf\": -1e400, \"tiny\": 1e-400, \"one\": 1.0, \"pi\": "
			  "3.14159265358979323846264338327950288, \"a\": [ 9007199254740993 ] }",
			  "{\"type\":\"n\",\"big\":123456789012345678901234567890,\"neg\":"
			  "-123456789012345678901234567890,\"u\":18446744073709551616,\"z\":-0,\"zf\":-0.0,"
			  "\"inf\":1e400,\"ninf\":-1e400,\"tiny\":1e-400,\"one\":1.0,\"pi\":"
			  "3.14159265358979323846264338327950288,\"a\":[9007199254740993]}");
}

/* UTF-8 and escapes pass through unchanged. */
static void test_unicode(void **state)
{
	(void)state;
	assert_serializes("{\"type\":\"t\",\"text\":\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"}",
			  "{\"type\":\"t\",\"text\":\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"}");
	assert_serializes("{\"type\":\"t\",\"text\":\"h\\u00e9llo \\u2603 \\ud83d\\ude00 \\/ \\\"\"}",
			  "{\"type\":\"t\",\"text\":\"h\\u00e9llo \\u2603 \\ud83d\\ude00 \\/ \\\"\"}");
}

/* A payload is one SSE data: line, so it never holds a raw CR or LF. */
static void test_one_line(void **state)
{
	static const char text[] =
		"{\"type\":\"t\",\n\"text\":\"line1\\nline2\\r\\nend\",\r\n\"ctl\":\"\\u0001\\t\\u001f\",\n"
		"\"nested\":{\"k\":[\"a\\nb\"]}\n}";
	struct json_object *obj = json_tokener_parse(text), *back;
	struct rc_buf out;
	struct rc_event_view v;
	char why[128];

	(void)state;
	rc_buf_init(&out);
	assert_int_equal(check(text, &out, &v, why, sizeof(why)), RC_OK);
	assert_null(memchr(out.data, '\n', v.json_len));
	assert_null(memchr(out.data, '\r', v.json_len));
	assert_int_equal(strlen(out.data), v.json_len);
	/* and it still means the same thing */
	back = json_tokener_parse(out.data);
	assert_non_null(obj);
	assert_non_null(back);
	assert_true(json_object_equal(obj, back));
	json_object_put(back);
	json_object_put(obj);
	rc_buf_fini(&out);
}

/* NaN and Infinity are not JSON (a subscriber's JSON.parse would throw on the whole event). */
static void test_non_json_numbers(void **state)
{
	static const char *const bad[] = {
		"{\"type\":\"t\",\"x\":NaN}",
		"{\"type\":\"t\",\"x\":Infinity}",
		"{\"type\":\"t\",\"x\":-Infinity}",
		"{\"type\":\"t\",\"a\":[1,{\"b\":[2,NaN]}]}",
		"{\"type\":\"t\",\"x\":01}",
		"{\"type\":\"t\",\"x\":1.}",
		"{\"type\":\"t\",\"x\":.5}",
		"{\"type\":\"t\",\"x\":+1}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_invalid(bad[i], RC_EPROTO, bad[i][13] == 'x' ? "x: " : "a[1].b[1]: ");
	/* a literal too large for a double is still valid JSON, kept as written */
	assert_serializes("{\"type\":\"t\",\"big\":1e400,\"neg\":-1e400,\"tiny\":1e-400}",
			  "{\"type\":\"t\",\"big\":1e400,\"neg\":-1e400,\"tiny\":1e-400}");
}

/* Text that is not strict JSON is RC_EPROTO, with the path of the field at fault. */
static void test_not_json(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "{\"type\":\"a\",\"room_id\":\"r\",\"x\":\"\xff\"}", "x: invalid UTF-8" },
		{ "{\"type\":\"a\",\"message\":{\"text\":\"\xc0\x80\"}}", "message.text: invalid UTF-8" },
		{ "{\"type\":\"a\",\"items\":[1,2,3,\"\xed\xa0\x80\"]}", "items[3]: invalid UTF-8" },
		{ "{\"type\":\"a\",\"x\":\"\xe0\x80\x80\"}", "x: invalid UTF-8" },
		{ "{\"type\":\"a\",\"x\":\"\xf8\x88\x80\x80\x80\"}", "x: invalid UTF-8" },
		{ "{\"type\":\"a\",\"k\xff\":1}", "invalid UTF-8 in a key" },
		{ "{\"type\":\"a\",\"x\":\"tab\there\"}", "x: raw control character 0x09" },
		{ "{\"type\":\"a\",\"x\":\"line\nbreak\"}", "x: raw control character 0x0a" },
		{ "{\"type\":\"a\",\"x\":\"\\ud800\"}", "x: \\ud800 is half of a surrogate pair" },
		{ "{\"type\":\"t\"} trailing", "trailing bytes after the value" },
		{ "{\"type\":\"t\",}", "a key (a string) expected" },
		{ "{\"type\":", "type: unexpected end of input" },
		{ "", "unexpected end of input" },
		/* not JSON wins over a broken rule */
		{ "{\"type\":1,\"x\":\"\xff\"}", "x: invalid UTF-8" },
		{ "{\"room_id\":\"a\"} x", "trailing bytes after the value" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_invalid(bad[i].text, RC_EPROTO, bad[i].why);
}

/* type and room_id once each: readers disagree on which of two counts. Other keys may repeat. */
static void test_duplicates(void **state)
{
	(void)state;
	assert_invalid("{\"type\":\"a\",\"type\":\"b\"}", RC_EINVAL, "type appears more than once");
	assert_invalid("{\"type\":\"a\",\"type\":\"a\"}", RC_EINVAL, "type appears more than once");
	assert_invalid("{\"type\":\"a\",\"typ\\u0065\":\"b\"}", RC_EINVAL, "type appears more than once");
	assert_invalid("{\"type\":\"a\",\"room_id\":\"r\",\"room_id\":\"s\"}", RC_EINVAL,
		       "room_id appears more than once");
	assert_invalid("{\"type\":\"a\",\"room_id\":\"r\",\"room\\u005fid\":null}", RC_EINVAL,
		       "room_id appears more than once");
	assert_serializes("{\"type\":\"a\",\"x\":1,\"x\":2}", "{\"type\":\"a\",\"x\":1,\"x\":2}");
	/* nested type and room_id keys are just fields */
	assert_serializes("{\"type\":\"a\",\"o\":{\"type\":1,\"room_id\":[]}}",
			  "{\"type\":\"a\",\"o\":{\"type\":1,\"room_id\":[]}}");
}

/* type and room_id are compared decoded, and kept as written. */
static void test_escaped_fields(void **state)
{
	static const char text[] = "{\"\\u0074ype\":\"m\\u0073g.new\",\"room_id\":\"r\\u002d1\"}";
	struct rc_buf out;
	struct rc_event_view v;
	char why[128];

	(void)state;
	rc_buf_init(&out);
	assert_int_equal(check(text, &out, &v, why, sizeof(why)), RC_OK);
	assert_int_equal(v.type_len, 7);
	assert_memory_equal(v.type, "msg.new", 7);
	assert_int_equal(v.room_len, 3);
	assert_memory_equal(v.room, "r-1", 3);
	assert_string_equal(out.data, text);
	rc_buf_fini(&out);
	assert_invalid("{\"type\":\"t\\u0020\"}", RC_EINVAL, "type must be");
	assert_invalid("{\"type\":\"t\",\"room_id\":\"\\u00e9\"}", RC_EINVAL, "room_id must be");
}

static void test_not_an_object(void **state)
{
	(void)state;
	assert_invalid("[{\"type\":\"t\"}]", RC_EINVAL, "an event must be a JSON object");
	assert_invalid("\"type\"", RC_EINVAL, NULL);
	assert_invalid("42", RC_EINVAL, NULL);
	assert_invalid("1.5", RC_EINVAL, NULL);
	assert_invalid("true", RC_EINVAL, NULL);
	assert_invalid("null", RC_EINVAL, NULL);
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
	struct rc_buf out;
	struct rc_event_view v;
	char why[128];

	(void)state;
	assert_int_equal(RC_TYPE_MAX, 64);
	assert_int_equal(RC_ROOM_MAX, 128);

	rc_buf_init(&out);
	snprintf(text, sizeof(text), "{\"type\":\"%s\",\"room_id\":\"%s\"}", type64, room128);
	assert_int_equal(check(text, &out, &v, why, sizeof(why)), RC_OK);
	assert_int_equal(v.type_len, 64);
	assert_memory_equal(v.type, type64, 64);
	assert_int_equal(v.room_len, 128);
	assert_memory_equal(v.room, room128, 128);
	rc_buf_fini(&out);

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

/* Builds {"type":"t","pad":"xxx"} whose serialization is exactly n bytes, with some whitespace. */
static char *event_of_size(size_t n)
{
	static const size_t base = sizeof("{\"type\":\"t\",\"pad\":\"\"}") - 1;
	char *pad = repeat('x', n - base), *text = malloc(n + 16);

	assert_non_null(text);
	snprintf(text, n + 16, "{ \"type\":\"t\", \"pad\":\"%s\" }", pad);
	free(pad);
	return text;
}

static void test_size_limit(void **state)
{
	static const size_t limits[] = { 100, 1000, RC_MAX_EVENT_BYTES_DEFAULT };
	struct rc_buf out;
	struct rc_event_view v;
	char why[256];

	(void)state;
	assert_int_equal(RC_MAX_EVENT_BYTES_DEFAULT, 65536);
	rc_buf_init(&out);
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		size_t max = limits[i];
		char *at = event_of_size(max), *over = event_of_size(max + 1);

		out.len = 0;
		assert_int_equal(check_n(at, strlen(at), max, &out, &v, why, sizeof(why)), RC_OK);
		assert_int_equal(v.json_len, max);
		why[0] = '\0';
		assert_int_equal(check_n(over, strlen(over), max, &out, &v, why, sizeof(why)), RC_ETOOBIG);
		assert_true(why[0] != '\0');
		assert_non_null(strstr(why, "more than the limit"));
		/* the same event fits a larger limit */
		assert_int_equal(check_n(over, strlen(over), max + 1, &out, &v, why, sizeof(why)), RC_OK);
		free(at);
		free(over);
	}
	rc_buf_fini(&out);
}

/* The reason is cut to whylen and always NUL-terminated. */
static void test_short_why(void **state)
{
	struct rc_buf out;
	struct rc_event_view v;
	char why[9];

	(void)state;
	rc_buf_init(&out);
	memset(why, 'X', sizeof(why));
	assert_int_equal(check("{\"type\":\"t\",\"room_id\":\"\"}", &out, &v, why, 8), RC_EINVAL);
	assert_string_equal(why, "room_id");
	assert_int_equal(why[8], 'X');
	memset(why, 'X', sizeof(why));
	assert_int_equal(check("{\"type\":\"t\",\"room_id\":\"\xff\"}", &out, &v, why, 8), RC_EPROTO);
	assert_string_equal(why, "room_id");
	assert_int_equal(why[8], 'X');
	rc_buf_fini(&out);
}

/* Events read one by one from an array, as the gateway and the broker do: paths name the element. */
static void test_read_in_array(void **state)
{
	static const char text[] = " [ {\"type\":\"a\", \"room_id\":\"r1\"} , {\"type\":\"b\", \"n\":1.0},"
				   "{\"type\":\"c\",\"room_id\":\"bad room\"}, 7, {\"type\":\"e\"} ] ";
	static const char *const want_why[] = { NULL, NULL, "events[2].room_id must be", "events[3]: an event must be",
						NULL };
	struct rc_json j;
	struct rc_buf out;
	struct rc_event_view v;
	char why[256];
	size_t i = 0;

	(void)state;
	rc_buf_init(&out);
	rc_json_init(&j, text, sizeof(text) - 1, NULL);
	j.root = "events";
	assert_true(rc_json_begin(&j));
	while (rc_json_next(&j)) {
		int rv;

		assert_true(i < 5);
		why[0] = '\0';
		rv = rc_event_read(&j, &out, MAX_BYTES, &v, why, sizeof(why));
		if (want_why[i] == NULL) {
			if (rv != RC_OK)
				fail_msg("events[%zu]: %s", i, why);
		} else {
			assert_int_equal(rv, RC_EINVAL);
			if (strncmp(why, want_why[i], strlen(want_why[i])) != 0)
				fail_msg("events[%zu]: '%s', want '%s'", i, why, want_why[i]);
		}
		rc_buf_puts(&out, "|");
		i++;
	}
	assert_int_equal(i, 5);
	assert_true(rc_json_end(&j));
	assert_string_equal(out.data, "{\"type\":\"a\",\"room_id\":\"r1\"}|{\"type\":\"b\",\"n\":1.0}|"
				      "{\"type\":\"c\",\"room_id\":\"bad room\"}|7|{\"type\":\"e\"}|");
	rc_buf_fini(&out);

	/* a JSON error stops the walk, named from the root */
	rc_buf_init(&out);
	rc_json_init(&j, "[{\"type\":\"a\"},{\"type\":\"b\",\"x\":{\"y\":\"\x01\"}}]", 38, NULL);
	j.root = "events";
	assert_true(rc_json_begin(&j));
	assert_true(rc_json_next(&j));
	assert_int_equal(rc_event_read(&j, &out, MAX_BYTES, &v, why, sizeof(why)), RC_OK);
	assert_true(rc_json_next(&j));
	assert_int_equal(rc_event_read(&j, &out, MAX_BYTES, &v, why, sizeof(why)), RC_EPROTO);
	assert_string_equal(why, "events[1].x.y: raw control character 0x01 (escape it: \\u0001)");
	assert_false(rc_json_next(&j));
	rc_buf_fini(&out);
}

/* An event may nest RC_JSON_MAX_DEPTH levels, its own object included, wherever it sits. */
static void test_depth(void **state)
{
	struct rc_buf text, out;
	struct rc_event_view v;
	char why[256];

	(void)state;
	for (int outer = 0; outer <= 2; outer++) {
		for (int extra = 0; extra <= 1; extra++) {
			int levels = RC_JSON_MAX_DEPTH + extra;
			int rv;

			rc_buf_init(&text);
			rc_buf_init(&out);
			/* outer arrays around the event, as the gateway's body and the broker's request have */
			for (int i = 0; i < outer; i++)
				rc_buf_puts(&text, "[");
			rc_buf_puts(&text, "{\"type\":\"t\",\"x\":");
			for (int i = 1; i < levels; i++)
				rc_buf_puts(&text, "[");
			for (int i = 1; i < levels; i++)
				rc_buf_puts(&text, "]");
			rc_buf_puts(&text, "}");
			for (int i = 0; i < outer; i++)
				rc_buf_puts(&text, "]");
			{
				struct rc_json j;

				rc_json_init(&j, text.data, text.len, NULL);
				for (int i = 0; i < outer; i++) {
					assert_true(rc_json_begin(&j));
					assert_true(rc_json_next(&j));
				}
				rv = rc_event_read(&j, &out, MAX_BYTES, &v, why, sizeof(why));
			}
			if (extra == 0) {
				if (rv != RC_OK)
					fail_msg("%d levels inside %d: %s", levels, outer, why);
			} else {
				assert_int_equal(rv, RC_EPROTO);
				assert_non_null(strstr(why, "x[0][0]"));
				assert_non_null(strstr(why, "nested deeper than 64 levels"));
			}
			rc_buf_fini(&text);
			rc_buf_fini(&out);
		}
	}
}

/* A top-level `key` is the idempotency key: reported in the view, taken out of the text wherever it stands. */
static void test_idempotency_key(void **state)
{
	static const struct {
		const char *in, *out, *key;
	} ok[] = {
		{ "{\"type\":\"t\",\"key\":\"k1\"}", "{\"type\":\"t\"}", "k1" },
		{ "{\"key\":\"k1\",\"type\":\"t\",\"a\":1}", "{\"type\":\"t\",\"a\":1}", "k1" },
		{ " { \"a\" : 1 , \"key\" : \"x\" , \"type\" : \"t\" } ", "{\"a\":1,\"type\":\"t\"}", "x" },
		{ "{\"k\\u0065y\":\"\\u0041!~\",\"type\":\"t\"}", "{\"type\":\"t\"}", "A!~" },
		{ "{\"type\":\"t\",\"d\":{\"key\":1}}", "{\"type\":\"t\",\"d\":{\"key\":1}}", "" }, /* nested: data */
		{ "{\"type\":\"t\",\"keys\":1}", "{\"type\":\"t\",\"keys\":1}", "" },
	};
	char *longest = repeat('k', RC_KEY_MAX), *too_long = repeat('k', RC_KEY_MAX + 1);
	char text[512];
	(void)state;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct rc_buf out;
		struct rc_event_view v;
		char why[256] = "";

		rc_buf_init(&out);
		if (check(ok[i].in, &out, &v, why, sizeof(why)) != RC_OK)
			fail_msg("%s rejected: %s", ok[i].in, why);
		if (v.json_len != strlen(ok[i].out) || memcmp(out.data + v.json_off, ok[i].out, v.json_len) != 0)
			fail_msg("%s serializes to %.*s, want %s", ok[i].in, (int)v.json_len, out.data, ok[i].out);
		assert_int_equal(out.len, v.json_len);
		assert_int_equal(v.key_len, strlen(ok[i].key));
		assert_memory_equal(v.key, ok[i].key, v.key_len);
		rc_buf_fini(&out);
	}
	snprintf(text, sizeof(text), "{\"type\":\"t\",\"key\":\"%s\"}", longest);
	assert_serializes(text, "{\"type\":\"t\"}");
	snprintf(text, sizeof(text), "{\"type\":\"t\",\"key\":\"%s\"}", too_long);
	assert_invalid(text, RC_EINVAL, "key must be 1-128 bytes");
	assert_invalid("{\"type\":\"t\",\"key\":\"\"}", RC_EINVAL, "key must be");
	assert_invalid("{\"type\":\"t\",\"key\":\"a b\"}", RC_EINVAL, "key must be");
	assert_invalid("{\"type\":\"t\",\"key\":\"\\u00e9\"}", RC_EINVAL, "key must be");
	assert_invalid("{\"type\":\"t\",\"key\":7}", RC_EINVAL, "key must be a string");
	assert_invalid("{\"key\":\"a\",\"type\":\"t\",\"key\":\"a\"}", RC_EINVAL, "key appears more than once");
	assert_invalid("{\"key\":\"a\"}", RC_EINVAL, "type missing");
	assert_true(rc_key_valid("!~", 2));
	assert_false(rc_key_valid("a\x7f", 2));
	free(longest);
	free(too_long);
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
		cmocka_unit_test(test_not_json),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_escaped_fields),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_bad_type),
		cmocka_unit_test(test_bad_room),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_charsets),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_short_why),
		cmocka_unit_test(test_read_in_array),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_idempotency_key),
	};

	return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
