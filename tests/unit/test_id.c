/*
 * test_id.c - public event ids: formatting, parsing, and the strictness that
 * makes "parse then re-format" give back the same string; the fast
 * formatter (rc_id_prefix + rc_id_format_gseq) writes rc_id_format's bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "id.h"

/* Parses a NUL-terminated string (its strlen is the length). */
static int parse_str(const char *s, struct rc_id *out)
{
	return rc_id_parse(s, strlen(s), out);
}

static void assert_rejected(const char *s, int want)
{
	struct rc_id id = { 7, 7 };

	if (parse_str(s, &id) != want)
		fail_msg("'%s': got %d, want %d", s, parse_str(s, &id), want);
}

static void test_format_examples(void **state)
{
	char buf[RC_ID_MAX];

	(void)state;
	assert_int_equal(rc_id_format(buf, 0x6f1c2a9e, 1042), 13);
	assert_string_equal(buf, "6f1c2a9e-1042");
	assert_int_equal(rc_id_format(buf, 1, 0), 3);
	assert_string_equal(buf, "1-0");
	assert_int_equal(rc_id_format(buf, UINT64_MAX, UINT64_MAX), 16 + 1 + 20);
	assert_string_equal(buf, "ffffffffffffffff-18446744073709551615");
	assert_true(strlen(buf) < RC_ID_MAX);
}

static void test_epoch_format(void **state)
{
	char buf[RC_ID_MAX];

	(void)state;
	assert_int_equal(rc_epoch_format(buf, 0x6f1c2a9e), 8);
	assert_string_equal(buf, "6f1c2a9e");
	assert_int_equal(rc_epoch_format(buf, 0xabcdef0123456789ULL), 16);
	assert_string_equal(buf, "abcdef0123456789");
	assert_int_equal(rc_epoch_format(buf, 1), 1);
	assert_string_equal(buf, "1");
}

static void test_round_trip(void **state)
{
	static const uint64_t epochs[] = {
		1, 0xa, 0x6f1c2a9e, 0x1000000000000000ULL, 0xabcdef0123456789ULL, UINT64_MAX,
	};
	static const uint64_t gseqs[] = {
		0, 1, 9, 10, 1042, 4294967296ULL, UINT64_MAX / 10, UINT64_MAX - 1, UINT64_MAX,
	};

	(void)state;
	for (size_t e = 0; e < sizeof(epochs) / sizeof(epochs[0]); e++) {
		for (size_t g = 0; g < sizeof(gseqs) / sizeof(gseqs[0]); g++) {
			char buf[RC_ID_MAX], again[RC_ID_MAX];
			struct rc_id id = { 0, 0 };
			size_t n = rc_id_format(buf, epochs[e], gseqs[g]);

			assert_int_equal(n, strlen(buf));
			assert_int_equal(rc_id_parse(buf, n, &id), RC_OK);
			assert_true(id.epoch == epochs[e]);
			assert_true(id.gseq == gseqs[g]);
			/* the string is canonical: re-formatting gives the same bytes */
			rc_id_format(again, id.epoch, id.gseq);
			assert_string_equal(again, buf);
		}
	}
}

/*
 * The fast formatter against rc_id_format for (epoch, gseq): same bytes, same
 * length, rc_id_gseq_len agreeing, a NUL after, the prefix left alone, and
 * nothing written past the id's NUL.
 */
static void assert_fast_matches(uint64_t epoch, uint64_t gseq)
{
	char want[RC_ID_MAX], got[RC_ID_MAX], prefix[RC_ID_MAX];
	size_t want_len = rc_id_format(want, epoch, gseq);
	size_t plen = rc_id_prefix(got, epoch), len;

	memcpy(prefix, got, plen);
	memset(got + plen, '#', sizeof(got) - plen);
	len = rc_id_format_gseq(got, plen, gseq);
	if (len != want_len || memcmp(got, want, want_len + 1) != 0)
		fail_msg("epoch %" PRIx64 " gseq %" PRIu64 ": got '%.*s' (%zu), want '%s' (%zu)", epoch, gseq, (int)len,
			 got, len, want, want_len);
	assert_int_equal(rc_id_gseq_len(gseq), len - plen);
	assert_memory_equal(got, prefix, plen);
	for (size_t i = len + 1; i < sizeof(got); i++)
		assert_int_equal(got[i], '#');
}

static void test_fast_format_boundaries(void **state)
{
	static const uint64_t epochs[] = { 1, 0xa, 0xf, 0x10, 0x6f1c2a9e, 0x1000000000000000ULL, UINT64_MAX };
	uint64_t p = 1;

	(void)state;
	for (size_t e = 0; e < sizeof(epochs) / sizeof(epochs[0]); e++) {
		assert_fast_matches(epochs[e], 0);
		assert_fast_matches(epochs[e], 1);
		assert_fast_matches(epochs[e], UINT64_MAX);
		assert_fast_matches(epochs[e], UINT64_MAX - 1);
		assert_fast_matches(epochs[e], UINT64_MAX / 10);
		assert_fast_matches(epochs[e], UINT32_MAX);
		assert_fast_matches(epochs[e], (uint64_t)UINT32_MAX + 1);
	}
	/* every power of ten, and its neighbours: where the length changes */
	for (int k = 1; k <= 19; k++) {
		p *= 10;
		assert_fast_matches(0x6f1c2a9e, p - 1);
		assert_fast_matches(0x6f1c2a9e, p);
		assert_fast_matches(0x6f1c2a9e, p + 1);
		assert_fast_matches(UINT64_MAX, p - 1);
		assert_fast_matches(UINT64_MAX, p);
		assert_int_equal(rc_id_gseq_len(p - 1), (size_t)k);
		assert_int_equal(rc_id_gseq_len(p), (size_t)k + 1);
	}
	/* 0..100099 in one run: every pair of digits in every position of a short id */
	for (uint64_t g = 0; g < 100100; g++)
		assert_fast_matches(0x6f1c2a9e, g);
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A random value of 1-64 significant bits: every length of id turns up. */
static uint64_t random_width(uint64_t *s)
{
	unsigned bits = (unsigned)(xorshift(s) % 64) + 1;
	uint64_t v = xorshift(s);

	return bits == 64 ? v : v & ((1ull << bits) - 1);
}

static void test_fast_format_random(void **state)
{
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	(void)state;
	for (int i = 0; i < 200000; i++) {
		uint64_t epoch = random_width(&rng) | 1; /* an epoch is never 0 */
		assert_fast_matches(epoch, random_width(&rng));
	}
}

static void test_parse_valid(void **state)
{
	struct rc_id id;

	(void)state;
	assert_int_equal(parse_str("6f1c2a9e-1042", &id), RC_OK);
	assert_true(id.epoch == 0x6f1c2a9e && id.gseq == 1042);
	assert_int_equal(parse_str("1-0", &id), RC_OK);
	assert_true(id.epoch == 1 && id.gseq == 0);
	assert_int_equal(parse_str("ffffffffffffffff-18446744073709551615", &id), RC_OK);
	assert_true(id.epoch == UINT64_MAX && id.gseq == UINT64_MAX);
	assert_int_equal(parse_str("1000000000000000-1", &id), RC_OK);
	assert_true(id.epoch == 0x1000000000000000ULL && id.gseq == 1);
}

/* Only len bytes are read: a longer buffer holding a valid prefix parses. */
static void test_parse_uses_len(void **state)
{
	static const char s[] = "6f1c2a9e-1042XYZ";
	struct rc_id id;

	(void)state;
	assert_int_equal(rc_id_parse(s, 13, &id), RC_OK);
	assert_true(id.epoch == 0x6f1c2a9e && id.gseq == 1042);
	assert_int_equal(rc_id_parse(s, 11, &id), RC_OK);
	assert_true(id.gseq == 10);
	assert_int_equal(rc_id_parse(s, 14, &id), RC_EINVAL);
}

static void test_reject_empty(void **state)
{
	struct rc_id id;

	(void)state;
	assert_int_equal(rc_id_parse("", 0, &id), RC_EINVAL);
	assert_int_equal(rc_id_parse("1-1", 0, &id), RC_EINVAL);
	assert_int_equal(rc_id_parse(NULL, 0, &id), RC_EINVAL);
	assert_rejected("-1", RC_EINVAL);   /* empty epoch */
	assert_rejected("1-", RC_EINVAL);   /* empty gseq */
	assert_rejected("-", RC_EINVAL);
	assert_rejected("abc", RC_EINVAL);  /* missing '-' */
	assert_rejected("123", RC_EINVAL);
}

static void test_reject_signs_and_spaces(void **state)
{
	static const char *const bad[] = {
		"+1-1", "1-+1", "1--1", "-1-1", "1-1-", "1-1-1",
		" 1-1", "1-1 ", "1 -1", "1- 1", "1-1 0", "a b-1", "1-\t1", "1-1\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_rejected(bad[i], RC_EINVAL);
}

static void test_reject_case_and_digits(void **state)
{
	static const char *const bad[] = {
		"6F1C2A9E-1042", "A-1", "aBc-1", /* upper-case hex */
		"g-1", "0x1-1", "z-1", "1-a", "1-1f", "1-ff", "1-1.5", "1-1e3",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_rejected(bad[i], RC_EINVAL);
}

static void test_reject_leading_zeros(void **state)
{
	static const char *const bad[] = {
		"01-1", "00ff-1", "0000000000000001-1", /* epoch */
		"1-01", "1-00", "1-0001042",           /* gseq */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_rejected(bad[i], RC_EINVAL);
}

static void test_reject_epoch_zero(void **state)
{
	(void)state;
	assert_rejected("0-0", RC_EINVAL);
	assert_rejected("0-1", RC_EINVAL);
	assert_rejected("0-1042", RC_EINVAL);
}

static void test_reject_overflow(void **state)
{
	struct rc_id id;
	int rv;

	(void)state;
	/* 17 hex digits */
	assert_rejected("10000000000000000-1", RC_ERANGE);
	assert_rejected("fffffffffffffffff-1", RC_ERANGE);
	/* UINT64_MAX + 1, and far beyond */
	assert_rejected("1-18446744073709551616", RC_ERANGE);
	assert_rejected("1-18446744073709551620", RC_ERANGE);
	assert_rejected("1-99999999999999999999", RC_ERANGE);
	assert_rejected("1-100000000000000000000", RC_ERANGE);
	/* a non-digit after an overflowing prefix is still rejected */
	rv = parse_str("1-18446744073709551616x", &id);
	assert_true(rv == RC_ERANGE || rv == RC_EINVAL);
}

static void test_reject_trailing_bytes(void **state)
{
	static const char nul_gseq[] = "1-2\0";
	static const char nul_mid[] = "1-2\0003";
	static const char nul_epoch[] = "1\0-2";
	struct rc_id id;

	(void)state;
	assert_rejected("1-2x", RC_EINVAL);
	assert_rejected("1-2-", RC_EINVAL);
	assert_rejected("1-2 ", RC_EINVAL);
	/* a NUL inside len is a byte like any other, not an end */
	assert_int_equal(rc_id_parse(nul_gseq, sizeof(nul_gseq) - 1, &id), RC_EINVAL);
	assert_int_equal(rc_id_parse(nul_mid, sizeof(nul_mid) - 1, &id), RC_EINVAL);
	assert_int_equal(rc_id_parse(nul_epoch, sizeof(nul_epoch) - 1, &id), RC_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_examples),
		cmocka_unit_test(test_epoch_format),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_fast_format_boundaries),
		cmocka_unit_test(test_fast_format_random),
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_uses_len),
		cmocka_unit_test(test_reject_empty),
		cmocka_unit_test(test_reject_signs_and_spaces),
		cmocka_unit_test(test_reject_case_and_digits),
		cmocka_unit_test(test_reject_leading_zeros),
		cmocka_unit_test(test_reject_epoch_zero),
		cmocka_unit_test(test_reject_overflow),
		cmocka_unit_test(test_reject_trailing_bytes),
	};

	return cmocka_run_group_tests_name("id", tests, NULL, NULL);
}
