#include "scan.h"

#include <string.h>

void rb_fields_clear(struct rb_fields *f)
{
	memset(f, 0, sizeof(*f));
}

/*
 * Returns the first byte of the value of "key" in s, or NULL. The key must be
 * a whole quoted string followed by optional spaces and a colon.
 */
static const char *scan_value(const char *s, size_t len, const char *key)
{
	size_t klen = strlen(key);
	const char *end = s + len;
	const char *p = s;

	/* Each pass moves p forward by at least one byte. */
	while (p < end) {
		const char *q = memchr(p, '"', (size_t)(end - p));

		if (q == NULL)
			return NULL;
		p = q + 1;
		if ((size_t)(end - p) < klen + 1 || memcmp(p, key, klen) != 0 || p[klen] != '"')
			continue;
		q = p + klen + 1;
		while (q < end && (*q == ' ' || *q == '\t'))
			q++;
		if (q >= end || *q != ':')
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\t'))
			q++;
		return q < end ? q : NULL;
	}
	return NULL;
}

/* Parses an unsigned decimal at [p, end); false if none or it overflows. */
static bool scan_uint(const char *p, const char *end, uint64_t *out)
{
	uint64_t v = 0;
	const char *start = p;

	while (p < end && *p >= '0' && *p <= '9') {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
		p++;
	}
	if (p == start)
		return false;
	*out = v;
	return true;
}

void rb_scan_fields(const char *s, size_t len, const char *room_prefix, size_t prefix_len,
		    struct rb_fields *f)
{
	const char *end = s + len;
	const char *v;
	uint64_t n;

	if (!f->has_ts && (v = scan_value(s, len, "ts")) != NULL && scan_uint(v, end, &n) &&
	    n <= INT64_MAX) {
		f->ts = (int64_t)n;
		f->has_ts = true;
	}
	if (!f->has_seq && (v = scan_value(s, len, "seq")) != NULL && scan_uint(v, end, &n)) {
		f->seq = n;
		f->has_seq = true;
	}
	if (!f->has_room && (v = scan_value(s, len, "room")) != NULL && *v == '"') {
		v++;
		if ((size_t)(end - v) > prefix_len && memcmp(v, room_prefix, prefix_len) == 0 &&
		    scan_uint(v + prefix_len, end, &n) && n <= UINT32_MAX) {
			const char *q = v + prefix_len;

			while (q < end && *q >= '0' && *q <= '9')
				q++;
			if (q < end && *q == '"') {
				f->room = (uint32_t)n;
				f->has_room = true;
			}
		}
	}
	if (!f->is_reset && (v = scan_value(s, len, "type")) != NULL) {
		static const char reset[] = "\"stream.reset\"";

		if ((size_t)(end - v) >= sizeof(reset) - 1 && memcmp(v, reset, sizeof(reset) - 1) == 0)
			f->is_reset = true;
	}
}
