/*
 * test_json.c - the strict JSON reader (common/json.c): what RFC 8259 and
 * Unicode allow is accepted and written back compact with every string and
 * number as written; everything else is refused with the path of the value
 * at fault. Inputs are copied into buffers of their exact size, without a
 * NUL, so the ASan build catches any read past the end.
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

#include "buf.h"
#include "error.h"
#include "json.h"

/* Compacts text[0..len) from an exact-size copy; returns the rc, the output in out, the error in why. */
static int compact_n(const char *text, size_t len, struct rc_buf *out, char *why, size_t whylen)
{
	char *copy = malloc(len ? len : 1);
	int rv;

	assert_non_null(copy);
	memcpy(copy, text, len);
	why[0] = '\0';
	rv = rc_json_compact(copy, len, out, why, whylen);
	free(copy);
	return rv;
}

/* text compacts to want. */
static void assert_compacts(const char *text, const char *want)
{
	struct rc_buf out;
	char why[256];

	rc_buf_init(&out);
	if (compact_n(text, strlen(text), &out, why, sizeof(why)) != RC_OK)
		fail_msg("%s refused: %s", text, why);
	if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
		fail_msg("%s compacts to %.*s, want %s", text, (int)out.len, out.data ? out.data : "", want);
	rc_buf_fini(&out);
}

/* text is kept exactly as it is (it is compact already). */
static void assert_kept(const char *text)
{
	assert_compacts(text, text);
}

/* True when s[0..n) is valid UTF-8 (as the reader sees it: a JSON string of it is accepted). */
static bool utf8_valid(const char *s, size_t n)
{
	struct rc_buf b, out;
	char why[256];
	bool ok;

	rc_buf_init(&b);
	rc_buf_init(&out);
	rc_buf_json_str(&b, s, n);
	ok = rc_json_compact(b.data, b.len, &out, why, sizeof(why)) == RC_OK;
	rc_buf_fini(&b);
	rc_buf_fini(&out);
	return ok;
}

/* text[0..len) is refused with exactly the message want (or, prefix: one that starts with want). */
static void assert_refused_n(const char *text, size_t len, const char *want, bool prefix)
{
	struct rc_buf out;
	char why[256];
	int rv;

	rc_buf_init(&out);
	rv = compact_n(text, len, &out, why, sizeof(why));
	if (rv != RC_EPROTO)
		fail_msg("%.*s: got %d, want RC_EPROTO", (int)len, text, rv);
	if (prefix ? strncmp(why, want, strlen(want)) != 0 : strcmp(why, want) != 0)
		fail_msg("%.*s: message '%s', want '%s'%s", (int)len, text, why, want, prefix ? "..." : "");
	/* messages go into JSON replies: always valid UTF-8 */
	assert_true(utf8_valid(why, strlen(why)));
	rc_buf_fini(&out);
}

static void assert_refused(const char *text, const char *want)
{
	assert_refused_n(text, strlen(text), want, true);
}

static void test_compact(void **state)
{
	(void)state;
	assert_compacts(" { \"a\" : 1 ,\n\t\"b\" : [ true , false , null , { } , [ ] ] ,\r\n\"c\":\"x y\" } ",
			"{\"a\":1,\"b\":[true,false,null,{},[]],\"c\":\"x y\"}");
	assert_compacts("[ ]", "[]");
	assert_compacts("{ }", "{}");
	/* any value at the top */
	assert_kept("\"s\"");
	assert_kept("0");
	assert_kept("true");
	assert_kept("null");
	/* keys and order as written, duplicates too (the reader judges no meaning) */
	assert_kept("{\"z\":1,\"a\":2,\"z\":3}");
	/* deep but within the limit */
	assert_kept("[[[[[[[[[[{\"a\":[[[]]]}]]]]]]]]]]");
}

/* Numbers come out as written, whatever a double or an int64 would make of them. */
static void test_numbers_kept(void **state)
{
	static const char *const nums[] = {
		"0",
		"-0",
		"0.0",
		"-0.0",
		"1",
		"-1",
		"1.0",
		"1.50",
		"0.1",
		"2.0",
		"1e3",
		"1E3",
		"1e+3",
		"1E-3",
		"1e400",
		"-1e400",
		"1e-400",
		"123456789012345678901234567890",
		"-123456789012345678901234567890",
		"18446744073709551615",
		"18446744073709551616",
		"-9223372036854775809",
		"9007199254740993",
		"3.14159265358979323846264338327950288419716939937510",
		"0e0",
		"-0E-0",
		"10",
		"100000000000000000000e-20",
	};
	char text[256];

	(void)state;
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		assert_kept(nums[i]);
		snprintf(text, sizeof(text), "{\"n\":%s,\"a\":[%s]}", nums[i], nums[i]);
		assert_kept(text);
	}
}

static void test_bad_numbers(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "{\"n\":01}", "n: invalid number (a leading zero)" },
		{ "{\"n\":-01}", "n: invalid number (a leading zero)" },
		{ "{\"n\":00}", "n: invalid number (a leading zero)" },
		{ "{\"n\":-}", "n: invalid number" },
		{ "{\"n\":1.}", "n: invalid number (no digit after the '.')" },
		{ "{\"n\":1.e5}", "n: invalid number (no digit after the '.')" },
		{ "{\"n\":1e}", "n: invalid number (no digit in the exponent)" },
		{ "{\"n\":1e+}", "n: invalid number (no digit in the exponent)" },
		{ "{\"n\":.5}", "n: unexpected character '.'" },
		{ "{\"n\":+1}", "n: unexpected character '+'" },
		{ "{\"n\":NaN}", "n: unexpected character 'N'" },
		{ "{\"n\":Infinity}", "n: unexpected character 'I'" },
		{ "{\"n\":-Infinity}", "n: invalid number" },
		{ "{\"n\":0x10}", "',' or '}' expected" },
		{ "{\"n\":1.5.2}", "',' or '}' expected" },
		{ "[1,-]", "[1]: invalid number" },
		{ "-", "invalid number" },
		{ "12 3", "trailing bytes after the value" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused_n(bad[i].text, strlen(bad[i].text), bad[i].why, false);
}

/* Strings come out byte for byte: escapes are not decoded, UTF-8 is not escaped. */
static void test_strings_kept(void **state)
{
	(void)state;
	assert_kept("\"\"");
	assert_kept("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"");
	assert_kept("\"\\u0000 \\u001f \\u00e9 \\u00E9 \\u2603 \\uffff \\ud83d\\ude00 \\uDBFF\\uDFFF\"");
	assert_kept("\"caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80\"");
	assert_kept("\"\x7f\""); /* DEL is not a control character for JSON */
	assert_kept("{\"caf\xc3\xa9\":\"\\u00e9\",\"\\u0074ype\":1}");
	assert_compacts("\"  spaces  inside  \"", "\"  spaces  inside  \"");
}

/* The boundaries of each UTF-8 form (Unicode table 3-7) are accepted. */
static void test_utf8_valid(void **state)
{
	static const char *const ok[] = {
		"\xc2\x80",	    /* U+0080 */
		"\xdf\xbf",	    /* U+07FF */
		"\xe0\xa0\x80",	    /* U+0800 */
		"\xec\xbf\xbf",	    /* U+CFFF */
		"\xed\x80\x80",	    /* U+D000 */
		"\xed\x9f\xbf",	    /* U+D7FF, the last before the surrogates */
		"\xee\x80\x80",	    /* U+E000, the first after */
		"\xef\xbf\xbf",	    /* U+FFFF */
		"\xef\xbb\xbf",	    /* U+FEFF inside a string */
		"\xf0\x90\x80\x80", /* U+10000 */
		"\xf3\xbf\xbf\xbf", /* U+FFFFF */
		"\xf4\x80\x80\x80", /* U+100000 */
		"\xf4\x8f\xbf\xbf", /* U+10FFFF, the last */
	};
	char text[64];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "{\"x\":\"a%sb\"}", ok[i]);
		assert_kept(text);
		snprintf(text, sizeof(text), "{\"%s\":1}", ok[i]);
		assert_kept(text);
	}
}

/* Overlong forms, encoded surrogates, 5- and 6-byte forms, stray and cut sequences are refused. */
static void test_utf8_invalid(void **state)
{
	static const char *const bad[] = {
		"\x80",			    /* a continuation byte alone */
		"\xbf",			    /* another */
		"\xc0\x80",		    /* overlong U+0000 */
		"\xc0\xaf",		    /* overlong '/' */
		"\xc1\xbf",		    /* overlong U+007F */
		"\xe0\x80\x80",		    /* overlong U+0000, 3 bytes */
		"\xe0\x9f\xbf",		    /* overlong U+07FF */
		"\xed\xa0\x80",		    /* U+D800 encoded */
		"\xed\xaf\xbf",		    /* U+DBFF encoded */
		"\xed\xb0\x80",		    /* U+DC00 encoded */
		"\xed\xbf\xbf",		    /* U+DFFF encoded */
		"\xed\xa0\xbd\xed\xb8\x80", /* a surrogate pair encoded (CESU-8) */
		"\xf0\x80\x80\x80",	    /* overlong U+0000, 4 bytes */
		"\xf0\x8f\xbf\xbf",	    /* overlong U+FFFF */
		"\xf4\x90\x80\x80",	    /* U+110000 */
		"\xf5\x80\x80\x80",	    /* above U+10FFFF */
		"\xf7\xbf\xbf\xbf",
		"\xf8\x88\x80\x80\x80",	    /* 5-byte form */
		"\xfc\x84\x80\x80\x80\x80", /* 6-byte form */
		"\xfe",
		"\xff",
		"\xc3", /* cut: lead byte then the closing quote */
		"\xe2\x82",
		"\xf0\x9f\x98",
		"\xc3\x28", /* a lead byte then ASCII */
		"\xe2\x28\xa1",
		"\xf0\x28\x8c\xbc",
		"caf\xe9", /* Latin-1 */
	};
	char text[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "{\"x\":\"a%sb\"}", bad[i]);
		assert_refused(text, "x: invalid UTF-8");
		snprintf(text, sizeof(text), "{\"x\":\"%s\"}", bad[i]);
		assert_refused(text, "x: invalid UTF-8");
		/* in a key: the key cannot be shown, the object holding it is named */
		snprintf(text, sizeof(text), "{\"o\":{\"k%s\":1}}", bad[i]);
		assert_refused_n(text, strlen(text), "o: invalid UTF-8 in a key", false);
		snprintf(text, sizeof(text), "{\"%s\":1}", bad[i]);
		assert_refused_n(text, strlen(text), "invalid UTF-8 in a key", false);
	}
	/* cut by the end of the input itself */
	assert_refused_n("{\"x\":\"\xe2\x82", 8, "x: invalid UTF-8", false);
	assert_refused_n("{\"x\":\"\xf0", 7, "x: invalid UTF-8", false);
	/* outside strings, any byte but whitespace and the grammar's is unexpected */
	assert_refused_n("\xef\xbb\xbf{}", 5, "unexpected byte 0xef", false);
	assert_refused_n("{\"a\":1}\xff", 8, "trailing bytes after the value", false);
}

/* Every byte below 0x20 is refused raw inside strings (values and keys), and fine escaped. */
static void test_control_characters(void **state)
{
	char text[64], want[96];

	(void)state;
	for (int c = 0; c < 0x20; c++) {
		size_t n = (size_t)snprintf(text, sizeof(text), "{\"m\":{\"text\":\"a%cb\"}}", c);
		text[15] = (char)c; /* snprintf stops a string at a NUL: put the byte itself */
		snprintf(want, sizeof(want), "m.text: raw control character 0x%02x (escape it: \\u%04x)", c, c);
		assert_refused_n(text, n, want, false);
		n = (size_t)snprintf(text, sizeof(text), "{\"m\":{\"k%cy\":1}}", c);
		text[8] = (char)c;
		snprintf(want, sizeof(want), "m: raw control character 0x%02x (escape it: \\u%04x) in a key", c, c);
		assert_refused_n(text, n, want, false);
		snprintf(text, sizeof(text), "{\"m\":\"\\u%04x\"}", c);
		assert_kept(text);
	}
	/* whitespace between tokens is fine and dropped */
	assert_compacts("{\t\"a\"\n:\r[\t]\n}", "{\"a\":[]}");
	/* but only JSON's four */
	assert_refused_n("{\"a\":\f1}", 7, "a: unexpected byte 0x0c", false);
	assert_refused_n("{\"a\":1\v}", 7, "',' or '}' expected", false);
}

static void test_escapes(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "{\"s\":\"\\x41\"}", "s: invalid escape \\x" },
		{ "{\"s\":\"\\'\"}", "s: invalid escape \\'" },
		{ "{\"s\":\"\\U0041\"}", "s: invalid escape \\U" },
		{ "{\"s\":\"\\u12\"}", "s: invalid \\u escape (\\u and 4 hex digits)" },
		{ "{\"s\":\"\\u12G4\"}", "s: invalid \\u escape (\\u and 4 hex digits)" },
		{ "{\"s\":\"\\u 123\"}", "s: invalid \\u escape (\\u and 4 hex digits)" },
		/* escaped lone surrogates: JSON's grammar allows them, but they are no character */
		{ "{\"s\":\"\\ud800\"}",
		  "s: \\ud800 is half of a surrogate pair without its other half, not a character" },
		{ "{\"s\":\"\\uDBFF x\"}", "s: \\uDBFF is half of a surrogate pair" },
		{ "{\"s\":\"\\udc00\"}", "s: \\udc00 is half of a surrogate pair" },
		{ "{\"s\":\"\\uDFFF\\uD800\"}", "s: \\uDFFF is half of a surrogate pair" },
		{ "{\"s\":\"\\ud83d\\ud83d\"}", "s: \\ud83d is half of a surrogate pair" },
		{ "{\"s\":\"\\ud83d\\u0041\"}", "s: \\ud83d is half of a surrogate pair" },
		{ "{\"s\":\"\\ud83d\\n\"}", "s: \\ud83d is half of a surrogate pair" },
		{ "{\"s\":\"\\ud83d\\ude0\"}", "s: \\ud83d is half of a surrogate pair" },
		{ "{\"s\":\"\\ud83dx\\ude00\"}", "s: \\ud83d is half of a surrogate pair" },
		{ "{\"\\ud800\":1}", "\\ud800 is half of a surrogate pair" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused(bad[i].text, bad[i].why);
	assert_refused_n("{\"s\":\"\\", 7, "s: unexpected end of input (a string is not closed)", false);
	assert_refused_n("{\"s\":\"\\u00", 10, "s: invalid \\u escape (\\u and 4 hex digits)", false);
}

static void test_grammar_errors(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "", "unexpected end of input" },
		{ "   ", "unexpected end of input" },
		{ "{", "unexpected end of input" },
		{ "[", "unexpected end of input" },
		{ "{\"a\"", "':' expected after the key" },
		{ "{\"a\":", "a: unexpected end of input" },
		{ "{\"a\":1", "unexpected end of input" },
		{ "{\"a\" 1}", "':' expected after the key" },
		{ "{\"a\":1 \"b\":2}", "',' or '}' expected" },
		{ "{\"a\":1,}", "a key (a string) expected" },
		{ "{,}", "a key (a string) expected" },
		{ "{'a':1}", "a key (a string) expected" },
		{ "{a:1}", "a key (a string) expected" },
		{ "{\"o\":{1:2}}", "o: a key (a string) expected" },
		{ "[1 2]", "',' or ']' expected" },
		{ "[1,]", "[1]: unexpected character ']'" },
		{ "[,1]", "[0]: unexpected character ','" },
		{ "{\"a\":[1,{\"b\":tru}]}", "a[1].b: unexpected character 't'" },
		{ "{\"a\":nul}", "a: unexpected character 'n'" },
		{ "{\"a\":True}", "a: unexpected character 'T'" },
		{ "{\"a\":'x'}", "a: unexpected character '''" },
		{ "{\"a\":1}/* c */", "trailing bytes after the value" },
		{ "{\"a\":1}{}", "trailing bytes after the value" },
		{ "{\"a\":1}]", "trailing bytes after the value" },
		{ "\"abc", "unexpected end of input (a string is not closed)" },
		{ "{\"a\":\"x}", "a: unexpected end of input (a string is not closed)" },
		{ "{\"ab", "unexpected end of input (a string is not closed) in a key" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused_n(bad[i].text, strlen(bad[i].text), bad[i].why, false);
	assert_refused_n("\0", 1, "unexpected byte 0x00", false);
	assert_refused_n("{\"a\":1}\0", 8, "trailing bytes after the value", false);
	assert_refused_n("{\"a\":\"x\0y\"}", 11, "a: raw control character 0x00", true);
}

/* Builds n nested arrays around 0 inside {"x":…}: the object and n arrays are n + 1 levels. */
static void nest(struct rc_buf *b, unsigned n)
{
	rc_buf_puts(b, "{\"x\":");
	for (unsigned i = 0; i < n; i++)
		rc_buf_puts(b, "[");
	rc_buf_puts(b, "0");
	for (unsigned i = 0; i < n; i++)
		rc_buf_puts(b, "]");
	rc_buf_puts(b, "}");
}

/* Reads text as an event would be read: limited to RC_JSON_MAX_DEPTH levels. */
static bool read_limited(const char *text, size_t len, char *why, size_t whylen)
{
	struct rc_json j;
	bool ok;

	rc_json_init(&j, text, len, NULL);
	rc_json_limit(&j, RC_JSON_MAX_DEPTH);
	ok = rc_json_value(&j) && rc_json_end(&j);
	if (!ok)
		rc_json_error(&j, why, whylen);
	return ok;
}

static void test_depth_limit(void **state)
{
	struct rc_buf b;
	char why[256], want[256];
	size_t at;

	(void)state;
	assert_int_equal(RC_JSON_MAX_DEPTH, 64);
	rc_buf_init(&b);
	nest(&b, RC_JSON_MAX_DEPTH - 1);
	assert_true(read_limited(b.data, b.len, why, sizeof(why)));
	b.len = 0;
	nest(&b, RC_JSON_MAX_DEPTH);
	assert_false(read_limited(b.data, b.len, why, sizeof(why)));
	/* the path names the value that opens the 65th level, cut, and the limit */
	assert_true(strncmp(why, "x[0][0][0]", 10) == 0);
	at = strlen(why);
	assert_true(at < sizeof(why) - 1);
	snprintf(want, sizeof(want), "...: nested deeper than %d levels", RC_JSON_MAX_DEPTH);
	assert_string_equal(why + at - strlen(want), want);
	rc_buf_fini(&b);

	/* a short path to a deep value is named whole */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"a\":{\"b\":");
	for (int i = 0; i < RC_JSON_MAX_DEPTH; i++)
		rc_buf_puts(&b, "{\"c\":");
	assert_false(read_limited(b.data, b.len, why, sizeof(why)));
	assert_true(strncmp(why, "a.b.c.c.c", 9) == 0);
	assert_non_null(strstr(why, "nested deeper than 64 levels"));
	rc_buf_fini(&b);

	/* without a limit set, the reader tracks RC_JSON_STACK levels */
	rc_buf_init(&b);
	nest(&b, RC_JSON_STACK - 1);
	assert_int_equal(compact_n(b.data, b.len, NULL, why, sizeof(why)), RC_OK);
	b.len = 0;
	nest(&b, RC_JSON_STACK);
	assert_int_equal(compact_n(b.data, b.len, NULL, why, sizeof(why)), RC_EPROTO);
	assert_non_null(strstr(why, "nested deeper than"));
	b.len = 0;
	for (int i = 0; i < 100000; i++)
		rc_buf_puts(&b, "[");
	assert_int_equal(compact_n(b.data, b.len, NULL, why, sizeof(why)), RC_EPROTO);
	rc_buf_fini(&b);
}

/* Paths: keys joined by '.', indexes in brackets, a root name before a leading index. */
static void test_paths(void **state)
{
	static const char text[] = "[{\"items\":[0,1,2,{\"message\":{\"text\":\"\xff\"}}]}]";
	struct rc_json j;
	char why[256], key[300];
	struct rc_buf b;

	(void)state;
	assert_refused("{\"message\":{\"text\":\"\xff\"}}", "message.text: invalid UTF-8");
	assert_refused("{\"items\":[0,1,2,\"\xff\"]}", "items[3]: invalid UTF-8");
	assert_refused("[[0,[1,\"\xff\"]]]", "[0][1][1]: invalid UTF-8");
	assert_refused("{\"a\\\"b\":[\"\xff\"]}", "a\\\"b[0]: invalid UTF-8");
	rc_json_init(&j, text, sizeof(text) - 1, NULL);
	j.root = "events";
	assert_false(rc_json_value(&j));
	rc_json_error(&j, why, sizeof(why));
	assert_string_equal(why, "events[0].items[3].message.text: invalid UTF-8");
	rc_json_path(&j, why, sizeof(why));
	assert_string_equal(why, "events[0].items[3].message.text");
	/* later calls do nothing */
	assert_false(rc_json_value(&j));
	assert_false(rc_json_next(&j));
	assert_false(rc_json_end(&j));
	assert_int_equal(rc_json_peek(&j), RC_JSON_NONE);
	rc_json_error(&j, why, sizeof(why));
	assert_string_equal(why, "events[0].items[3].message.text: invalid UTF-8");

	/* a long key is cut after a whole character */
	memset(key, 0, sizeof(key));
	for (int i = 0; i < 40; i++)
		strcat(key, "\xc3\xa9");
	rc_buf_init(&b);
	rc_buf_printf(&b, "{\"%s\":[\"\xff\"]}", key);
	assert_int_equal(compact_n(b.data, b.len, NULL, why, sizeof(why)), RC_EPROTO);
	assert_true(utf8_valid(why, strlen(why)));
	assert_non_null(strstr(why, "...[0]: invalid UTF-8"));
	assert_true(strncmp(why, "\xc3\xa9\xc3\xa9", 4) == 0);
	rc_buf_fini(&b);

	/* a short message buffer gets a cut, valid message */
	for (size_t len = 1; len < 40; len++) {
		char small[40];
		rc_buf_init(&b);
		rc_buf_printf(&b, "{\"%s\":\"\xff\"}", key);
		assert_int_equal(compact_n(b.data, b.len, NULL, small, len), RC_EPROTO);
		assert_true(strlen(small) < len);
		assert_true(utf8_valid(small, strlen(small)));
		rc_buf_fini(&b);
	}
}

/* The walk: the caller looks at members on the way, the output is the same compact text. */
static void test_walk(void **state)
{
	static const char text[] = " { \"type\" : \"t\" , \"typ\\u0065\" : [ 1 , 2 ] , \"x\\/\" : { \"y\" : null } } ";
	struct rc_json j;
	struct rc_buf out;
	const char *key;
	size_t len;
	int members = 0;

	(void)state;
	rc_buf_init(&out);
	rc_json_init(&j, text, sizeof(text) - 1, &out);
	assert_int_equal(rc_json_peek(&j), RC_JSON_OBJECT);
	assert_true(rc_json_begin(&j));
	while (rc_json_next(&j)) {
		key = rc_json_key(&j, &len);
		switch (members++) {
		case 0:
			assert_true(len == 4 && memcmp(key, "type", 4) == 0);
			assert_true(rc_json_key_is(&j, "type"));
			assert_int_equal(rc_json_peek(&j), RC_JSON_STRING);
			break;
		case 1:
			assert_true(len == 9 && memcmp(key, "typ\\u0065", 9) == 0);
			assert_true(rc_json_key_is(&j, "type"));
			assert_false(rc_json_key_is(&j, "typ"));
			assert_false(rc_json_key_is(&j, "types"));
			assert_int_equal(rc_json_peek(&j), RC_JSON_ARRAY);
			break;
		case 2:
			assert_true(rc_json_key_is(&j, "x/"));
			assert_false(rc_json_key_is(&j, "type"));
			break;
		}
		assert_true(rc_json_value(&j));
	}
	assert_false(rc_json_failed(&j));
	assert_int_equal(members, 3);
	assert_int_equal(j.depth, 0);
	assert_true(rc_json_end(&j));
	assert_string_equal(out.data, "{\"type\":\"t\",\"typ\\u0065\":[1,2],\"x\\/\":{\"y\":null}}");
	/* begin on a scalar fails */
	rc_json_init(&j, "1", 1, NULL);
	assert_false(rc_json_begin(&j));
	assert_true(rc_json_failed(&j));
	rc_buf_fini(&out);
}

static void test_unescape(void **state)
{
	static const struct {
		const char *raw, *want;
	} cases[] = {
		{ "plain", "plain" },
		{ "\\\"\\\\\\/\\b\\f\\n\\r\\t", "\"\\/\b\f\n\r\t" },
		{ "\\u0041\\u00e9\\u20AC", "A\xc3\xa9\xe2\x82\xac" },
		{ "\\ud83d\\ude00!", "\xf0\x9f\x98\x80!" },
		{ "\\uDBFF\\uDFFF", "\xf4\x8f\xbf\xbf" },
		{ "\\u07ff\\u0800\\uffff", "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf" },
		{ "caf\xc3\xa9", "caf\xc3\xa9" },
	};
	char dst[32];
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(rc_json_unescape(cases[i].raw, strlen(cases[i].raw), dst, sizeof(dst), &len));
		assert_int_equal(len, strlen(cases[i].want));
		assert_memory_equal(dst, cases[i].want, len);
	}
	assert_true(rc_json_unescape("\\u0000", 6, dst, sizeof(dst), &len));
	assert_int_equal(len, 1);
	assert_int_equal(dst[0], 0);
	/* what does not fit */
	assert_true(rc_json_unescape("abc", 3, dst, 3, &len));
	assert_false(rc_json_unescape("abcd", 4, dst, 3, &len));
	assert_false(rc_json_unescape("ab\\u00e9", 8, dst, 3, &len));
	assert_true(rc_json_unescape("a\\u00e9", 7, dst, 3, &len));
}

static void test_utf8_trim(void **state)
{
	char s[16];

	(void)state;
	strcpy(s, "ab\xc3");
	rc_utf8_trim(s);
	assert_string_equal(s, "ab");
	strcpy(s, "ab\xc3\xa9");
	rc_utf8_trim(s);
	assert_string_equal(s, "ab\xc3\xa9");
	strcpy(s, "a\xe2\x82");
	rc_utf8_trim(s);
	assert_string_equal(s, "a");
	strcpy(s, "a\xf0\x9f\x98");
	rc_utf8_trim(s);
	assert_string_equal(s, "a");
	strcpy(s, "a\xf0\x9f\x98\x80");
	rc_utf8_trim(s);
	assert_string_equal(s, "a\xf0\x9f\x98\x80");
	strcpy(s, "");
	rc_utf8_trim(s);
	assert_string_equal(s, "");
}

/* The compact form is appended to what the buffer holds, and check-only reading writes nothing. */
static void test_output(void **state)
{
	struct rc_buf out;
	char why[64];

	(void)state;
	rc_buf_init(&out);
	rc_buf_puts(&out, "head:");
	assert_int_equal(rc_json_compact("[ 1 ]", 5, &out, why, sizeof(why)), RC_OK);
	assert_string_equal(out.data, "head:[1]");
	assert_int_equal(rc_json_compact("{ \"a\" : 1 }", 11, NULL, why, sizeof(why)), RC_OK);
	rc_buf_fini(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compact),
		cmocka_unit_test(test_numbers_kept),
		cmocka_unit_test(test_bad_numbers),
		cmocka_unit_test(test_strings_kept),
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_utf8_invalid),
		cmocka_unit_test(test_control_characters),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_grammar_errors),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_walk),
		cmocka_unit_test(test_unescape),
		cmocka_unit_test(test_utf8_trim),
		cmocka_unit_test(test_output),
	};

	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
