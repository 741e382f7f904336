#include "b64url.h"

#include "error.h"

static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of c, or -1. */
static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

bool rc_b64url_valid(const char *s, size_t len)
{
	int last = 0;

	if (len % 4 == 1)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((last = b64url_value((unsigned char)s[i])) < 0)
			return false;
	/* the bits past the data in the last character must be zero (canonical form) */
	if (len % 4 == 2)
		return (last & 0x0f) == 0;
	if (len % 4 == 3)
		return (last & 0x03) == 0;
	return true;
}

size_t rc_b64url_decoded_len(size_t len)
{
	return len / 4 * 3 + (len % 4 == 2 ? 1 : len % 4 == 3 ? 2 : 0);
}

size_t rc_b64url_encoded_len(size_t n)
{
	return n / 3 * 4 + (n % 3 == 1 ? 2 : n % 3 == 2 ? 3 : 0);
}

int rc_b64url_decode(const char *s, size_t len, uint8_t *out)
{
	uint32_t acc = 0;
	size_t bits = 0, o = 0;

	if (!rc_b64url_valid(s, len))
		return RC_EINVAL;
	for (size_t i = 0; i < len; i++) {
		acc = (acc << 6) | (uint32_t)b64url_value((unsigned char)s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return RC_OK;
}

size_t rc_b64url_encode(const uint8_t *in, size_t n, char *out)
{
	uint32_t acc = 0;
	size_t bits = 0, o = 0;

	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = b64url_alphabet[(acc >> bits) & 0x3f];
		}
	}
	if (bits > 0)
		out[o++] = b64url_alphabet[(acc << (6 - bits)) & 0x3f];
	out[o] = '\0';
	return o;
}
