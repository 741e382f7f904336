/*
 * test_b64url.c - strict base64url: the RFC 4648 vectors, and everything a
 * loose decoder would take that this one refuses (padding, the '+' and '/'
 * of plain base64, whitespace, impossible lengths, non-zero spare bits).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "b64url.h"
#include "error.h"

static const struct {
	const char *plain, *enc;
} vectors[] = {
	{ "", "" },
	{ "f", "Zg" },
	{ "fo", "Zm8" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg" },
	{ "fooba", "Zm9vYmE" },
	{ "foobar", "Zm9vYmFy" },
	{ "\xfb\xff", "-_8" },
	{ "\xff\xff\xfe", "___-" },
};

static void test_rfc4648_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const char *plain = vectors[i].plain, *enc = vectors[i].enc;
		uint8_t dec[16];
		char out[16];

		assert_int_equal(rc_b64url_encoded_len(strlen(plain)), strlen(enc));
		assert_int_equal(rc_b64url_encode((const uint8_t *)plain, strlen(plain), out), strlen(enc));
		assert_string_equal(out, enc);
		assert_true(rc_b64url_valid(enc, strlen(enc)));
		assert_int_equal(rc_b64url_decoded_len(strlen(enc)), strlen(plain));
		assert_int_equal(rc_b64url_decode(enc, strlen(enc), dec), RC_OK);
		assert_memory_equal(dec, plain, strlen(plain));
	}
}

static void test_refuses_what_is_not_canonical_base64url(void **state)
{
	static const char *const bad[] = {
		"Zg==",	  /* padding */
		"Zm8=",	  /* padding */
		"Zm9v+A", /* '+' of plain base64 */
		"Zm9v/A", /* '/' of plain base64 */
		"Zm9 v",  /* a space */
		"Zm9v\n", /* a newline */
		"Z",	  /* 1 char: no byte */
		"Zm9vY",  /* 5 chars: 4n+1 */
		"Zh",	  /* 'h' leaves spare bits set: "Zg" is the one encoding of "f" */
		"Zm9",	  /* spare bits set: "Zm8" */
		"Zm%3D",  /* percent-encoded */
		"Zm\0v",  /* a NUL inside */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = i == sizeof(bad) / sizeof(bad[0]) - 1 ? 4 : strlen(bad[i]);
		uint8_t dec[16] = { 0x55 };

		if (rc_b64url_valid(bad[i], len))
			fail_msg("'%s' taken as base64url", bad[i]);
		assert_int_equal(rc_b64url_decode(bad[i], len, dec), RC_EINVAL);
		assert_int_equal(dec[0], 0x55); /* untouched */
	}
}

static void test_round_trip_every_length(void **state)
{
	uint8_t in[64], dec[64];
	char enc[100];

	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 37 + 11);
	for (size_t n = 0; n <= sizeof(in); n++) {
		size_t len = rc_b64url_encode(in, n, enc);
		assert_true(rc_b64url_valid(enc, len));
		assert_int_equal(rc_b64url_decoded_len(len), n);
		assert_int_equal(rc_b64url_decode(enc, len, dec), RC_OK);
		assert_memory_equal(dec, in, n);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_refuses_what_is_not_canonical_base64url),
		cmocka_unit_test(test_round_trip_every_length),
	};
	return cmocka_run_group_tests_name("b64url", tests, NULL, NULL);
}
