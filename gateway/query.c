#include "query.h"

#include <string.h>

#include "error.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int gw_pct_decode(const char *s, size_t n, bool plus_is_space, struct rc_buf *out)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			int hi, lo;
			if (i + 2 >= n)
				return RC_EINVAL;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return RC_EINVAL;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		rc_buf_append(out, &c, 1);
	}
	return out->err ? out->err : RC_OK;
}

void gw_query_init(struct gw_query *q, const char *s, size_t len)
{
	q->p = s;
	q->end = s + len;
}

int gw_query_next(struct gw_query *q, struct rc_buf *key, struct rc_buf *val)
{
	const char *amp, *eq;

	key->len = 0;
	val->len = 0;
	/* skip empty pairs ("a=1&&b=2") */
	while (q->p < q->end && *q->p == '&')
		q->p++;
	if (q->p >= q->end)
		return 0;
	amp = memchr(q->p, '&', (size_t)(q->end - q->p));
	if (amp == NULL)
		amp = q->end;
	eq = memchr(q->p, '=', (size_t)(amp - q->p));
	if (eq == NULL)
		eq = amp;
	if (gw_pct_decode(q->p, (size_t)(eq - q->p), true, key) != RC_OK)
		return RC_EINVAL;
	if (eq < amp && gw_pct_decode(eq + 1, (size_t)(amp - eq - 1), true, val) != RC_OK)
		return RC_EINVAL;
	/* keep the buffers NUL-terminated even when empty */
	rc_buf_append(key, "", 0);
	rc_buf_append(val, "", 0);
	q->p = amp;
	return 1;
}
