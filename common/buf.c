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

void rc_buf_json_str(struct rc_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	rc_buf_append(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			rc_buf_append(b, e, 2);
		} else if (c < 0x20) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			rc_buf_append(b, e, 6);
		} else {
			rc_buf_append(b, &s[i], 1);
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
