#include "json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

/* A key shown in a path is cut after this many bytes. */
#define JSON_PATH_KEY_MAX 48

/*
 * Bytes a string may hold as they are: printable ASCII other than '"' and
 * '\\'. Everything else (quote, backslash, control characters, bytes of
 * multi-byte UTF-8 sequences) needs a look.
 */
/* clang-format off */
static const unsigned char json_plain[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* clang-format on */

static bool json_fail(struct rc_json *j, const char *why)
{
	if (j->why != NULL)
		return false;
	j->why = why;
	j->err_steps = j->depth > 0 && !j->at_child ? j->depth - 1 : j->depth;
	return false;
}

static bool json_failf(struct rc_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool json_failf(struct rc_json *j, const char *fmt, ...)
{
	va_list ap;

	if (j->why != NULL)
		return false;
	va_start(ap, fmt);
	vsnprintf(j->why_buf, sizeof(j->why_buf), fmt, ap);
	va_end(ap);
	return json_fail(j, j->why_buf);
}

static void json_put(struct rc_json *j, const char *s, size_t n)
{
	if (j->out != NULL)
		rc_buf_append(j->out, s, n);
}

void rc_json_init(struct rc_json *j, const char *text, size_t len, struct rc_buf *out)
{
	j->p = text;
	j->end = text + len;
	j->out = out;
	j->root = NULL;
	j->depth = 0;
	j->max_depth = RC_JSON_STACK;
	j->limit = RC_JSON_STACK;
	j->at_child = false;
	j->in_key = false;
	j->err_steps = 0;
	j->why = NULL;
	if (out != NULL)
		rc_buf_reserve(out, len); /* the compact form is never longer */
}

void rc_json_limit(struct rc_json *j, unsigned levels)
{
	j->limit = levels;
	j->max_depth = j->depth + levels < RC_JSON_STACK ? j->depth + levels : RC_JSON_STACK;
}

static void json_ws(struct rc_json *j)
{
	const char *p = j->p;

	while (p < j->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	j->p = p;
}

static bool json_unexpected(struct rc_json *j)
{
	unsigned char c;

	if (j->p >= j->end)
		return json_fail(j, "unexpected end of input");
	c = (unsigned char)*j->p;
	if (c > 0x20 && c < 0x7f)
		return json_failf(j, "unexpected character '%c'", c);
	return json_failf(j, "unexpected byte 0x%02x", c);
}

enum rc_json_kind rc_json_peek(struct rc_json *j)
{
	if (j->why != NULL)
		return RC_JSON_NONE;
	json_ws(j);
	if (j->p < j->end) {
		switch (*j->p) {
		case '{': return RC_JSON_OBJECT;
		case '[': return RC_JSON_ARRAY;
		case '"': return RC_JSON_STRING;
		case 't': return RC_JSON_TRUE;
		case 'f': return RC_JSON_FALSE;
		case 'n': return RC_JSON_NULL;
		case '-': return RC_JSON_NUMBER;
		default:
			if (*j->p >= '0' && *j->p <= '9')
				return RC_JSON_NUMBER;
		}
	}
	json_unexpected(j);
	return RC_JSON_NONE;
}

/*
 * Length of the well-formed UTF-8 sequence of 2-4 bytes at s (Unicode,
 * table 3-7), or 0. Overlong forms (C0, C1, E0 80-9F, F0 80-8F), encoded
 * surrogates (ED A0-BF), code points above U+10FFFF (F4 90-, F5-FF) and cut
 * sequences are not.
 */
static size_t json_utf8_len(const unsigned char *s, const unsigned char *end)
{
	size_t left = (size_t)(end - s);
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		return left >= 2 && s[1] >= 0x80 && s[1] <= 0xbf ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
		return left >= 3 && s[1] >= lo && s[1] <= hi && s[2] >= 0x80 && s[2] <= 0xbf ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
		return left >= 4 && s[1] >= lo && s[1] <= hi && s[2] >= 0x80 && s[2] <= 0xbf && s[3] >= 0x80 &&
				       s[3] <= 0xbf
			       ? 4
			       : 0;
	}
	return 0;
}

static int json_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The code unit of the \uXXXX at s (6 bytes available), or -1 when it is not one. */
static long json_u_escape(const unsigned char *s, const unsigned char *end)
{
	long u = 0;

	if (end - s < 6 || s[0] != '\\' || s[1] != 'u')
		return -1;
	for (int i = 2; i < 6; i++) {
		int h = json_hex(s[i]);
		if (h < 0)
			return -1;
		u = u * 16 + h;
	}
	return u;
}

/*
 * Checks the escape at s (its backslash) and returns its length (2, 6, or
 * 12 for a surrogate pair), or 0 after failing the reader.
 */
static size_t json_escape(struct rc_json *j, const unsigned char *s, const unsigned char *end)
{
	long u, lo;

	if (end - s < 2) {
		json_fail(j, "unexpected end of input (a string is not closed)");
		return 0;
	}
	switch (s[1]) {
	case '"':
	case '\\':
	case '/':
	case 'b':
	case 'f':
	case 'n':
	case 'r':
	case 't': return 2;
	case 'u': break;
	default:
		if (s[1] > 0x20 && s[1] < 0x7f)
			json_failf(j, "invalid escape \\%c", s[1]);
		else
			json_fail(j, "invalid escape");
		return 0;
	}
	u = json_u_escape(s, end);
	if (u < 0) {
		json_fail(j, "invalid \\u escape (\\u and 4 hex digits)");
		return 0;
	}
	if (u < 0xd800 || u > 0xdfff)
		return 6;
	lo = u <= 0xdbff ? json_u_escape(s + 6, end) : -1;
	if (lo < 0xdc00 || lo > 0xdfff) {
		/* valid JSON grammar, but no character: strict parsers and UTF-8 encoders refuse it */
		json_failf(j, "\\u%.4s is half of a surrogate pair without its other half, not a character",
			   (const char *)s + 2);
		return 0;
	}
	return 12;
}

/* Reads the string at j->p (its opening quote) and writes it as it is. */
static bool json_string(struct rc_json *j)
{
	const unsigned char *start = (const unsigned char *)j->p, *end = (const unsigned char *)j->end;
	const unsigned char *s = start + 1;
	size_t n;

	for (;;) {
		while (s < end && json_plain[*s])
			s++;
		if (s >= end)
			return json_fail(j, "unexpected end of input (a string is not closed)");
		if (*s == '"')
			break;
		if (*s == '\\') {
			n = json_escape(j, s, end);
		} else if (*s < 0x20) {
			return json_failf(j, "raw control character 0x%02x (escape it: \\u%04x)", *s, *s);
		} else {
			n = json_utf8_len(s, end);
			if (n == 0)
				return json_fail(j, "invalid UTF-8");
		}
		if (n == 0)
			return false;
		s += n;
	}
	s++;
	json_put(j, (const char *)start, (size_t)(s - start));
	j->p = (const char *)s;
	return true;
}

static bool json_digits(const char **p, const char *end)
{
	const char *s = *p;

	while (s < end && *s >= '0' && *s <= '9')
		s++;
	if (s == *p)
		return false;
	*p = s;
	return true;
}

/* Reads the number at j->p by the grammar and writes its text as it is. */
static bool json_number(struct rc_json *j)
{
	const char *s = j->p, *end = j->end;

	if (*s == '-')
		s++;
	if (s < end && *s == '0') {
		s++;
		if (s < end && *s >= '0' && *s <= '9')
			return json_fail(j, "invalid number (a leading zero)");
	} else if (!json_digits(&s, end)) {
		return json_fail(j, "invalid number");
	}
	if (s < end && *s == '.') {
		s++;
		if (!json_digits(&s, end))
			return json_fail(j, "invalid number (no digit after the '.')");
	}
	if (s < end && (*s == 'e' || *s == 'E')) {
		s++;
		if (s < end && (*s == '+' || *s == '-'))
			s++;
		if (!json_digits(&s, end))
			return json_fail(j, "invalid number (no digit in the exponent)");
	}
	json_put(j, j->p, (size_t)(s - j->p));
	j->p = s;
	return true;
}

static bool json_literal(struct rc_json *j, const char *word, size_t n)
{
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return json_unexpected(j);
	json_put(j, word, n);
	j->p += n;
	return true;
}

bool rc_json_value(struct rc_json *j)
{
	switch (rc_json_peek(j)) {
	case RC_JSON_OBJECT:
	case RC_JSON_ARRAY:
		if (!rc_json_begin(j))
			return false;
		while (rc_json_next(j))
			if (!rc_json_value(j))
				return false;
		return j->why == NULL;
	case RC_JSON_STRING: return json_string(j);
	case RC_JSON_NUMBER: return json_number(j);
	case RC_JSON_TRUE: return json_literal(j, "true", 4);
	case RC_JSON_FALSE: return json_literal(j, "false", 5);
	case RC_JSON_NULL: return json_literal(j, "null", 4);
	case RC_JSON_NONE: break;
	}
	return false;
}

bool rc_json_begin(struct rc_json *j)
{
	enum rc_json_kind k = rc_json_peek(j);
	struct rc_json_step *st;

	if (k != RC_JSON_OBJECT && k != RC_JSON_ARRAY)
		return k == RC_JSON_NONE ? false : json_fail(j, "an object or array expected");
	if (j->depth >= j->max_depth)
		return json_failf(j, "nested deeper than %u levels", j->limit);
	json_put(j, j->p, 1);
	j->p++;
	st = &j->path[j->depth++];
	st->key = NULL;
	st->n = 0;
	st->array = k == RC_JSON_ARRAY;
	st->started = false;
	j->at_child = false;
	return true;
}

bool rc_json_next(struct rc_json *j)
{
	struct rc_json_step *st;
	char close;
	const char *key;

	if (j->why != NULL || j->depth == 0)
		return false;
	st = &j->path[j->depth - 1];
	close = st->array ? ']' : '}';
	j->at_child = false;
	json_ws(j);
	if (j->p >= j->end)
		return json_fail(j, "unexpected end of input");
	if (*j->p == close) {
		json_put(j, j->p, 1);
		j->p++;
		j->depth--;
		j->at_child = j->depth > 0; /* the container just read is the member being read above */
		return false;
	}
	if (st->started) {
		if (*j->p != ',')
			return json_fail(j, st->array ? "',' or ']' expected" : "',' or '}' expected");
		json_put(j, ",", 1);
		j->p++;
		st->n++;
	}
	st->started = true;
	if (st->array) {
		j->at_child = true;
		return true;
	}
	json_ws(j);
	if (j->p >= j->end)
		return json_fail(j, "unexpected end of input");
	if (*j->p != '"')
		return json_fail(j, "a key (a string) expected");
	key = j->p + 1;
	j->in_key = true;
	if (!json_string(j))
		return false;
	j->in_key = false;
	st->key = key;
	st->n = (size_t)(j->p - 1 - key);
	json_ws(j);
	if (j->p >= j->end || *j->p != ':')
		return json_fail(j, "':' expected after the key");
	json_put(j, ":", 1);
	j->p++;
	j->at_child = true;
	return true;
}

const char *rc_json_key(const struct rc_json *j, size_t *len)
{
	const struct rc_json_step *st;

	if (j->depth == 0 || !j->at_child || j->path[j->depth - 1].array) {
		*len = 0;
		return NULL;
	}
	st = &j->path[j->depth - 1];
	*len = st->n;
	return st->key;
}

bool rc_json_key_is(const struct rc_json *j, const char *name)
{
	size_t len, n = strlen(name), got;
	const char *key = rc_json_key(j, &len);
	char buf[64];

	if (key == NULL)
		return false;
	if (memchr(key, '\\', len) == NULL)
		return len == n && memcmp(key, name, n) == 0;
	/* escaped: decode, at most one byte more than name, to tell a longer key */
	return n < sizeof(buf) && rc_json_unescape(key, len, buf, n + 1, &got) && got == n && memcmp(buf, name, n) == 0;
}

bool rc_json_end(struct rc_json *j)
{
	if (j->why != NULL)
		return false;
	if (j->depth != 0)
		return json_fail(j, "unexpected end of input");
	json_ws(j);
	if (j->p < j->end)
		return json_fail(j, "trailing bytes after the value");
	return true;
}

/* Appends s[0..n) to buf (len bytes in all) at *at, if it fits. */
static bool json_path_put(char *buf, size_t len, size_t *at, const char *s, size_t n)
{
	if (*at + n + 1 > len)
		return false;
	memcpy(buf + *at, s, n);
	*at += n;
	buf[*at] = '\0';
	return true;
}

void rc_json_path(const struct rc_json *j, char *buf, size_t len)
{
	unsigned steps = j->why != NULL ? j->err_steps : j->depth > 0 && !j->at_child ? j->depth - 1 : j->depth;
	size_t at = 0;
	char tmp[JSON_PATH_KEY_MAX + 8];

	if (len == 0)
		return;
	buf[0] = '\0';
	for (unsigned i = 0; i < steps; i++) {
		const struct rc_json_step *st = &j->path[i];
		size_t n;

		if (st->array) {
			if (i == 0 && j->root != NULL && !json_path_put(buf, len, &at, j->root, strlen(j->root)))
				goto out_cut;
			n = (size_t)snprintf(tmp, sizeof(tmp), "[%zu]", st->n);
		} else {
			size_t kn = st->n;
			size_t dot = at > 0 ? 1 : 0;

			if (dot)
				tmp[0] = '.';
			if (kn > JSON_PATH_KEY_MAX) {
				memcpy(tmp + dot, st->key, JSON_PATH_KEY_MAX);
				tmp[dot + JSON_PATH_KEY_MAX] = '\0';
				rc_utf8_trim(tmp + dot);
				kn = strlen(tmp + dot);
				memcpy(tmp + dot + kn, "...", 3);
				kn += 3;
			} else {
				memcpy(tmp + dot, st->key, kn);
			}
			n = dot + kn;
		}
		if (!json_path_put(buf, len, &at, tmp, n))
			goto out_cut;
	}
	return;

out_cut:
	/* room for "..." at the end of what fits */
	if (len < 4) {
		buf[0] = '\0';
		return;
	}
	if (at + 4 > len)
		at = len - 4;
	buf[at] = '\0';
	rc_utf8_trim(buf);
	at = strlen(buf);
	memcpy(buf + at, "...", 4);
}

void rc_json_error(const struct rc_json *j, char *buf, size_t len)
{
	char path[160];

	if (len == 0)
		return;
	rc_json_path(j, path, sizeof(path));
	snprintf(buf, len, "%s%s%s%s", path, path[0] ? ": " : "", j->why ? j->why : "no error",
		 j->in_key ? " in a key" : "");
	rc_utf8_trim(buf);
}

/* Writes code point u as UTF-8 into dst if it fits in cap - *at bytes. */
static bool json_put_utf8(char *dst, size_t cap, size_t *at, uint32_t u)
{
	unsigned char b[4];
	size_t n;

	if (u < 0x80) {
		b[0] = (unsigned char)u;
		n = 1;
	} else if (u < 0x800) {
		b[0] = (unsigned char)(0xc0 | (u >> 6));
		b[1] = (unsigned char)(0x80 | (u & 0x3f));
		n = 2;
	} else if (u < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (u >> 12));
		b[1] = (unsigned char)(0x80 | ((u >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (u & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (u >> 18));
		b[1] = (unsigned char)(0x80 | ((u >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((u >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (u & 0x3f));
		n = 4;
	}
	if (*at + n > cap)
		return false;
	memcpy(dst + *at, b, n);
	*at += n;
	return true;
}

bool rc_json_unescape(const char *raw, size_t n, char *dst, size_t cap, size_t *len)
{
	const unsigned char *s = (const unsigned char *)raw, *end = s + n;
	size_t at = 0;

	while (s < end) {
		uint32_t u;

		if (*s != '\\') {
			if (at >= cap)
				return false;
			dst[at++] = (char)*s++;
			continue;
		}
		if (end - s < 2)
			return false;
		switch (s[1]) {
		case 'b': u = '\b'; break;
		case 'f': u = '\f'; break;
		case 'n': u = '\n'; break;
		case 'r': u = '\r'; break;
		case 't': u = '\t'; break;
		case 'u': {
			long hi = json_u_escape(s, end), lo;

			if (hi < 0)
				return false;
			u = (uint32_t)hi;
			if (hi >= 0xd800 && hi <= 0xdbff) {
				lo = json_u_escape(s + 6, end);
				if (lo < 0xdc00 || lo > 0xdfff)
					return false;
				u = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
				s += 6;
			}
			s += 4; /* and 2 below */
			break;
		}
		default: u = s[1]; break; /* '"', '\\', '/' */
		}
		s += 2;
		if (!json_put_utf8(dst, cap, &at, u))
			return false;
	}
	*len = at;
	return true;
}

void rc_utf8_trim(char *buf)
{
	size_t n = strlen(buf), i = n, need;
	unsigned char c;

	/* find the start of the last character */
	while (i > 0 && ((unsigned char)buf[i - 1] & 0xc0) == 0x80 && n - i < 3)
		i--;
	if (i == 0)
		return;
	c = (unsigned char)buf[i - 1];
	if (c < 0x80)
		return;
	need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
	if (n - (i - 1) < need)
		buf[i - 1] = '\0';
}

int rc_json_compact(const char *text, size_t len, struct rc_buf *out, char *why, size_t whylen)
{
	struct rc_json j;

	rc_json_init(&j, text, len, out);
	if (rc_json_value(&j) && rc_json_end(&j))
		return RC_OK;
	if (whylen > 0)
		rc_json_error(&j, why, whylen);
	return RC_EPROTO;
}
