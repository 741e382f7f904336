#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

void rc_buf_init(struct rc_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void rc_buf_fini(struct rc_buf *b)
{
	free(b->data);
	rc_buf_init(b);
}

int rc_buf_reserve(struct rc_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->err)
		return b->err;
	if (b->len + n + 1 <= b->cap)
		return RC_OK;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->err = RC_ENOMEM;
		return b->err;
	}
	b->data = p;
	b->cap = cap;
	return RC_OK;
}

void rc_buf_append(struct rc_buf *b, const void *p, size_t n)
{
	if (rc_buf_reserve(b, n) != RC_OK)
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void rc_buf_puts(struct rc_buf *b, const char *s)
{
	rc_buf_append(b, s, strlen(s));
}

void rc_buf_printf(struct rc_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || rc_buf_reserve(b, (size_t)n) != RC_OK)
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* The length of the well-formed UTF-8 character at s[0..n) (RFC 3629), or 0 when there is none. */
static size_t buf_utf8_char(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp, min;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		len = 2, cp = s[0] & 0x1f, min = 0x80;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f, min = 0x800;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	/* overlong forms, UTF-16 surrogates and what lies past U+10FFFF are not characters */
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void rc_buf_json_str(struct rc_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;

	rc_buf_append(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = u[i];
		size_t len;

		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			rc_buf_append(b, e, 2);
			i++;
		} else if (c < 0x20) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			rc_buf_append(b, e, 6);
			i++;
		} else if ((len = buf_utf8_char(u + i, n - i)) == 0) {
			/* a byte that starts no character: U+FFFD, so the output stays UTF-8 */
			rc_buf_append(b, "\\ufffd", 6);
			i++;
		} else {
			rc_buf_append(b, s + i, len);
			i += len;
		}
	}
	rc_buf_append(b, "\"", 1);
}

char *rc_buf_take(struct rc_buf *b, size_t *len)
{
	char *p;

	if (b->data == NULL && rc_buf_reserve(b, 0) != RC_OK)
		return NULL;
	p = b->data;
	if (len)
		*len = b->len;
	rc_buf_init(b);
	return p;
}
