#include "rewind.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "id.h"
#include "proto_limits.h"

/* s[0..len) as a decimal of at most 9 digits; false when it is not one. */
static bool rewind_digits(const char *s, size_t len, uint32_t *out)
{
	uint32_t v = 0;

	if (len == 0 || len > 9)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

int gw_rewind_parse(const char *s, size_t len, uint32_t max, struct gw_rewind *out, char *why, size_t whylen)
{
	uint32_t v;
	uint64_t unit = 0;

	memset(out, 0, sizeof(*out));
	if (len > 0 && s[len - 1] == 's')
		unit = 1000;
	else if (len > 0 && s[len - 1] == 'm')
		unit = 60 * 1000;
	else if (len > 0 && s[len - 1] == 'h')
		unit = 3600 * 1000;
	if (unit != 0) {
		if (!rewind_digits(s, len - 1, &v) || v == 0 || v * unit > 1000ull * 3600 * 1000) {
			snprintf(why, whylen, "rewind: a duration must be 1s to 1000h, like 30s, 5m or 1h");
			return RC_EINVAL;
		}
		out->ms = v * unit;
		out->count = max;
		return RC_OK;
	}
	if (!rewind_digits(s, len, &v)) {
		snprintf(why, whylen, "rewind must be a number of events (0-%u) or a duration like 30s, 5m or 1h", max);
		return RC_EINVAL;
	}
	if (v > max) {
		snprintf(why, whylen, "rewind: at most %u events (--max-rewind)", max);
		return RC_EINVAL;
	}
	out->count = v;
	return RC_OK;
}

void gw_hparams_init(struct gw_hparams *p)
{
	memset(p, 0, sizeof(*p));
	p->limit = RC_HISTORY_PAGE_DEFAULT;
	p->newest_first = true;
}

static bool key_is(const char *key, size_t klen, const char *want)
{
	return klen == strlen(want) && memcmp(key, want, klen) == 0;
}

/* Copies an event id into dst (sizeof dst bytes); false when it is not one. */
static bool hparams_id(char *dst, size_t size, const char *val, size_t vlen)
{
	struct rc_id id;

	if (vlen >= size || rc_id_parse(val, vlen, &id) != RC_OK)
		return false;
	memcpy(dst, val, vlen);
	dst[vlen] = '\0';
	return true;
}

int gw_hparams_set(struct gw_hparams *p, const char *key, size_t klen, const char *val, size_t vlen, char *why,
		   size_t whylen)
{
	if (key_is(key, klen, "before") || key_is(key, klen, "after")) {
		bool before = klen == 6;
		if (!hparams_id(before ? p->before : p->after, sizeof(p->before), val, vlen)) {
			snprintf(why, whylen, "%s must be an event id like 6f1c2a9e-1042", before ? "before" : "after");
			return RC_EINVAL;
		}
	} else if (key_is(key, klen, "limit")) {
		uint32_t v = 0;
		bool ok = vlen > 0 && vlen <= 3;
		for (size_t i = 0; ok && i < vlen; i++) {
			ok = val[i] >= '0' && val[i] <= '9';
			v = v * 10 + (uint32_t)(val[i] - '0');
		}
		if (!ok || v < 1 || v > RC_HISTORY_PAGE_MAX) {
			snprintf(why, whylen, "limit must be an integer 1-%d", RC_HISTORY_PAGE_MAX);
			return RC_EINVAL;
		}
		p->limit = v;
	} else if (key_is(key, klen, "order")) {
		if (key_is(val, vlen, "desc")) {
			p->newest_first = true;
		} else if (key_is(val, vlen, "asc")) {
			p->newest_first = false;
		} else {
			snprintf(why, whylen, "order must be asc or desc");
			return RC_EINVAL;
		}
		p->order_set = true;
	}
	return RC_OK;
}

void gw_hparams_finish(struct gw_hparams *p)
{
	if (!p->order_set)
		p->newest_first = p->after[0] == '\0' || p->before[0] != '\0';
}
