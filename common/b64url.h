/*
 * b64url.h - base64url without padding (RFC 7515 section 2), strictly.
 *
 * JWS parts and JWK members are base64url. Only the canonical form is valid:
 * the alphabet [A-Za-z0-9_-], no '=', no whitespace, a length that is not 1
 * more than a multiple of 4, and zero bits where the last character holds
 * fewer than 6 bits of data. So each byte string has exactly one valid
 * encoding, and nothing a decoder might treat loosely (cjose's stops at '=')
 * ever reaches one. Pure functions; any thread.
 */
#ifndef RC_B64URL_H
#define RC_B64URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when s[0..len) is canonical unpadded base64url (the empty string is). */
bool rc_b64url_valid(const char *s, size_t len);

/* Bytes that a valid encoding of len characters decodes to. */
size_t rc_b64url_decoded_len(size_t len);

/* Characters that n bytes encode to (no NUL counted). */
size_t rc_b64url_encoded_len(size_t n);

/*
 * Decodes s[0..len) into out, which has room for rc_b64url_decoded_len(len)
 * bytes. Returns RC_OK, or RC_EINVAL (out untouched) when s is not valid.
 */
int rc_b64url_decode(const char *s, size_t len, uint8_t *out);

/* Encodes in[0..n) into out (room for rc_b64url_encoded_len(n) + 1); NUL-terminates, returns the length. */
size_t rc_b64url_encode(const uint8_t *in, size_t n, char *out);

#endif
