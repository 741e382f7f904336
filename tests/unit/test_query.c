/*
 * test_query.c - URL query strings (gateway/query.c): key=value pairs in
 * order, repeated keys, empty values, empty pairs and keys without '=', '+' as
 * a space, %XX decoding in keys and values (a decoded '&', '=' or '+' is data),
 * malformed escapes rejected with RC_EINVAL, the buffers emptied and
 * NUL-terminated on every pair, and long inputs. Queries are copied to
 * malloc'ed buffers of their exact length without a NUL, so the ASan build
 * turns any read past the end into a failure.
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
#include "query.h"

/* A copy of s[0..n) in a buffer of exactly n bytes. */
static char *exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

static void assert_text(const struct rc_buf *b, const char *want)
{
	assert_non_null(b->data);
	assert_int_equal(b->len, strlen(want));
	assert_memory_equal(b->data, want, b->len);
	assert_int_equal(b->data[b->len], '\0');
}

/* qs yields the pairs kv[0]=kv[1], kv[2]=kv[3], ... and then the end, twice. */
static void expect_pairs(const char *qs, const char *const *kv, size_t npairs)
{
	size_t len = strlen(qs);
	char *s = exact(qs, len);
	struct rc_buf key, val;
	struct gw_query q;

	rc_buf_init(&key);
	rc_buf_init(&val);
	gw_query_init(&q, s, len);
	for (size_t i = 0; i < npairs; i++) {
		assert_int_equal(gw_query_next(&q, &key, &val), 1);
		assert_text(&key, kv[2 * i]);
		assert_text(&val, kv[2 * i + 1]);
	}
	assert_int_equal(gw_query_next(&q, &key, &val), 0);
	assert_int_equal(key.len, 0);
	assert_int_equal(val.len, 0);
	assert_int_equal(gw_query_next(&q, &key, &val), 0);
	rc_buf_fini(&key);
	rc_buf_fini(&val);
	free(s);
}

#define EXPECT(qs, ...)                                                                                                \
	expect_pairs(qs, (const char *const[]){ __VA_ARGS__ },                                                         \
		     sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *) / 2)
#define EXPECT_NONE(qs) expect_pairs(qs, NULL, 0)

/* qs yields npairs good pairs and then RC_EINVAL. */
static void expect_einval(const char *qs, size_t npairs)
{
	size_t len = strlen(qs);
	char *s = exact(qs, len);
	struct rc_buf key, val;
	struct gw_query q;

	rc_buf_init(&key);
	rc_buf_init(&val);
	gw_query_init(&q, s, len);
	for (size_t i = 0; i < npairs; i++)
		assert_int_equal(gw_query_next(&q, &key, &val), 1);
	assert_int_equal(gw_query_next(&q, &key, &val), RC_EINVAL);
	rc_buf_fini(&key);
	rc_buf_fini(&val);
	free(s);
}

static void test_pairs_in_order(void **state)
{
	(void)state;
	EXPECT("a=1", "a", "1");
	EXPECT("a=1&b=two&last_event_id=42", "a", "1", "b", "two", "last_event_id", "42");
	EXPECT("room_id=r1&room_id=r2&room_id=r1", "room_id", "r1", "room_id", "r2", "room_id", "r1");
	/* commas, dots, colons and the like are plain bytes */
	EXPECT("room_id=a,b.c:d@e-f_g~h", "room_id", "a,b.c:d@e-f_g~h");
	/* only the first '=' separates */
	EXPECT("a==b&c=d=e", "a", "=b", "c", "d=e");
}

static void test_empty_parts(void **state)
{
	(void)state;
	EXPECT_NONE("");
	EXPECT_NONE("&");
	EXPECT_NONE("&&&");
	EXPECT("a=", "a", "");
	EXPECT("a=&b=", "a", "", "b", "");
	/* a key without '=' has an empty value */
	EXPECT("flag", "flag", "");
	EXPECT("flag&a=1&other", "flag", "", "a", "1", "other", "");
	/* an empty key is still a pair */
	EXPECT("=v", "", "v");
	EXPECT("=", "", "");
	/* empty pairs are skipped, wherever they are */
	EXPECT("&&a=1&&&b=2&", "a", "1", "b", "2");
}

static void test_plus_is_space(void **state)
{
	(void)state;
	EXPECT("q=a+b", "q", "a b");
	EXPECT("q=+", "q", " ");
	EXPECT("x+y=1+2+3", "x y", "1 2 3");
	/* an encoded '+' is a plus, an encoded space a space */
	EXPECT("q=a%2Bb&r=c%20d", "q", "a+b", "r", "c d");
}

static void test_percent_decoding(void **state)
{
	(void)state;
	EXPECT("a=%41%62c", "a", "Abc");
	EXPECT("a=%4a%4A%4f%4F", "a", "JJOO");
	EXPECT("%61=%62", "a", "b");
	EXPECT("room%5Fid=r%2D1", "room_id", "r-1");
	EXPECT("a=%25", "a", "%");
	EXPECT("a=%2541", "a", "%41"); /* decoded once */
	/* a decoded '&' or '=' is data: it neither ends the pair nor splits it */
	EXPECT("a=x%26y%3Dz&b=1", "a", "x&y=z", "b", "1");
	EXPECT("k%3Dk=v", "k=k", "v");
	/* bytes above 0x7f */
	EXPECT("name=%C3%A9t%C3%A9", "name", "\xc3\xa9t\xc3\xa9");
	EXPECT("a=%ff%FF%80", "a", "\xff\xff\x80");
}

static void test_decoded_nul(void **state)
{
	static const char qs[] = "a%00b=x%00";
	char *s = exact(qs, sizeof(qs) - 1);
	struct rc_buf key, val;
	struct gw_query q;

	(void)state;
	rc_buf_init(&key);
	rc_buf_init(&val);
	gw_query_init(&q, s, sizeof(qs) - 1);
	assert_int_equal(gw_query_next(&q, &key, &val), 1);
	/* the length counts the decoded NUL: a caller can tell "a\0b" from "a" */
	assert_int_equal(key.len, 3);
	assert_memory_equal(key.data, "a\0b", 4);
	assert_int_equal(val.len, 2);
	assert_memory_equal(val.data, "x\0", 3);
	assert_int_equal(gw_query_next(&q, &key, &val), 0);
	rc_buf_fini(&key);
	rc_buf_fini(&val);
	free(s);
}

static void test_malformed_escapes(void **state)
{
	(void)state;
	expect_einval("%", 0);
	expect_einval("a=%", 0);
	expect_einval("a=%4", 0);
	expect_einval("a=%4&b=1", 0); /* the escape may not take the '&' */
	expect_einval("a=%G1", 0);
	expect_einval("a=%1G", 0);
	expect_einval("a=%%41", 0);
	expect_einval("a=% 1", 0);
	expect_einval("a=%+1", 0);
	expect_einval("a=%-1", 0);
	expect_einval("a=%\xff\xff", 0);
	expect_einval("%zz=1", 0);
	expect_einval("k%=1", 0);
	/* the good pairs before a bad one come first */
	expect_einval("a=1&b=two&c=%", 2);
	expect_einval("a=1&%x", 1);
}

static void test_buffers_reused(void **state)
{
	static const char qs[] = "long_key_name=a_rather_long_value&k=v&e=&f";
	char *s = exact(qs, sizeof(qs) - 1);
	struct rc_buf key, val;
	struct gw_query q;

	(void)state;
	rc_buf_init(&key);
	rc_buf_init(&val);
	/* whatever the buffers held before is not kept */
	rc_buf_puts(&key, "stale");
	rc_buf_puts(&val, "stale");
	gw_query_init(&q, s, sizeof(qs) - 1);
	assert_int_equal(gw_query_next(&q, &key, &val), 1);
	assert_text(&key, "long_key_name");
	assert_text(&val, "a_rather_long_value");
	assert_int_equal(gw_query_next(&q, &key, &val), 1);
	assert_text(&key, "k");
	assert_text(&val, "v");
	assert_int_equal(gw_query_next(&q, &key, &val), 1);
	assert_text(&key, "e");
	assert_text(&val, "");
	assert_int_equal(gw_query_next(&q, &key, &val), 1);
	assert_text(&key, "f");
	assert_text(&val, "");
	assert_int_equal(gw_query_next(&q, &key, &val), 0);
	rc_buf_fini(&key);
	rc_buf_fini(&val);
	free(s);
}

static void test_long_inputs(void **state)
{
	enum { NPAIRS = 2000, VLEN = 100000 };
	struct rc_buf qs, key, val;
	struct gw_query q;
	char want[32];
	char *s;
	int rv;

	(void)state;
	rc_buf_init(&qs);
	rc_buf_init(&key);
	rc_buf_init(&val);

	/* many pairs */
	for (int i = 0; i < NPAIRS; i++)
		rc_buf_printf(&qs, "%sk%d=v%d", i ? "&" : "", i, i);
	assert_int_equal(qs.err, RC_OK);
	s = exact(qs.data, qs.len);
	gw_query_init(&q, s, qs.len);
	for (int i = 0; i < NPAIRS; i++) {
		assert_int_equal(gw_query_next(&q, &key, &val), 1);
		snprintf(want, sizeof(want), "k%d", i);
		assert_text(&key, want);
		snprintf(want, sizeof(want), "v%d", i);
		assert_text(&val, want);
	}
	assert_int_equal(gw_query_next(&q, &key, &val), 0);
	free(s);

	/* one long value, encoded and plain bytes mixed, and a pair after it */
	qs.len = 0;
	rc_buf_puts(&qs, "big=");
	for (int i = 0; i < VLEN / 2; i++)
		rc_buf_puts(&qs, "%41b");
	rc_buf_puts(&qs, "&z=1");
	assert_int_equal(qs.err, RC_OK);
	s = exact(qs.data, qs.len);
	gw_query_init(&q, s, qs.len);
	assert_int_equal(gw_query_next(&q, &key, &val), 1);
	assert_text(&key, "big");
	assert_int_equal(val.len, VLEN);
	for (size_t i = 0; i < val.len; i++)
		assert_int_equal(val.data[i], i % 2 ? 'b' : 'A');
	assert_int_equal(gw_query_next(&q, &key, &val), 1);
	assert_text(&key, "z");
	assert_int_equal(gw_query_next(&q, &key, &val), 0);
	free(s);

	/* a bad escape at the very end of a long query */
	qs.len--; /* drop the "1" of "z=1" */
	qs.data[qs.len - 1] = '%';
	s = exact(qs.data, qs.len);
	gw_query_init(&q, s, qs.len);
	assert_int_equal(gw_query_next(&q, &key, &val), 1);
	rv = gw_query_next(&q, &key, &val);
	assert_int_equal(rv, RC_EINVAL);
	free(s);

	rc_buf_fini(&qs);
	rc_buf_fini(&key);
	rc_buf_fini(&val);
}

static void test_pct_decode(void **state)
{
	struct rc_buf out;
	char *s;

	(void)state;
	rc_buf_init(&out);
	/* it appends */
	rc_buf_puts(&out, ">");
	assert_int_equal(gw_pct_decode("a%2Fb+c", 7, false, &out), RC_OK);
	assert_text(&out, ">a/b+c");
	assert_int_equal(gw_pct_decode("+%2B", 4, true, &out), RC_OK);
	assert_text(&out, ">a/b+c +");
	assert_int_equal(gw_pct_decode("", 0, true, &out), RC_OK);
	assert_text(&out, ">a/b+c +");

	/* only n bytes are read: an escape cut by n is malformed */
	s = exact("%41", 3);
	out.len = 0;
	assert_int_equal(gw_pct_decode(s, 3, false, &out), RC_OK);
	assert_int_equal(out.len, 1);
	assert_int_equal(out.data[0], 'A');
	assert_int_equal(gw_pct_decode(s, 2, false, &out), RC_EINVAL);
	assert_int_equal(gw_pct_decode(s, 1, false, &out), RC_EINVAL);
	free(s);
	assert_int_equal(gw_pct_decode("%g0", 3, false, &out), RC_EINVAL);
	rc_buf_fini(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs_in_order),
		cmocka_unit_test(test_empty_parts),
		cmocka_unit_test(test_plus_is_space),
		cmocka_unit_test(test_percent_decoding),
		cmocka_unit_test(test_decoded_nul),
		cmocka_unit_test(test_malformed_escapes),
		cmocka_unit_test(test_buffers_reused),
		cmocka_unit_test(test_long_inputs),
		cmocka_unit_test(test_pct_decode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
