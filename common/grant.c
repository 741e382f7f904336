#include "grant.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "event.h"

/* NumericDates above 2^53 s lose integer precision in a double and are nonsense anyway. */
#define GRANT_DATE_MAX (INT64_C(1) << 53)

/* What the first pass over a list found: entries and the bytes their strings need. */
struct grant_count {
	size_t patterns;
	size_t bytes;
	bool global;
};

bool rc_grant_entry_valid(const char *s, size_t len, bool publish)
{
	if (publish && len == sizeof(RC_GRANT_GLOBAL) - 1 && memcmp(s, RC_GRANT_GLOBAL, len) == 0)
		return true;
	if (len > 0 && s[len - 1] == '*') {
		len--; /* a prefix: the part before '*' may be empty ("*": every room) */
		return len == 0 || (len <= RC_ROOM_MAX && rc_room_valid(s, len));
	}
	return rc_room_valid(s, len);
}

/* A sub or jti: 1-255 bytes without control characters (they end up in logs). */
static bool grant_id_valid(const char *s, size_t len)
{
	if (len == 0 || len > RC_GRANT_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* Checks the list roomcast.<name> (absent: empty) and counts what it needs. */
static int grant_list_check(struct json_object *rc, const char *name, bool publish, struct grant_count *c, char *why,
			    size_t whylen)
{
	struct json_object *arr;
	size_t n;

	if (rc == NULL || !json_object_object_get_ex(rc, name, &arr))
		return RC_OK;
	if (!json_object_is_type(arr, json_type_array)) {
		snprintf(why, whylen, "roomcast.%s must be an array of strings", name);
		return RC_EINVAL;
	}
	n = json_object_array_length(arr);
	if (n > RC_GRANT_PATTERNS_MAX) {
		snprintf(why, whylen, "roomcast.%s has more than %d entries", name, RC_GRANT_PATTERNS_MAX);
		return RC_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *s;
		size_t len;

		if (!json_object_is_type(e, json_type_string)) {
			snprintf(why, whylen, "roomcast.%s[%zu] must be a string", name, i);
			return RC_EINVAL;
		}
		s = json_object_get_string(e);
		len = (size_t)json_object_get_string_len(e);
		if (!rc_grant_entry_valid(s, len, publish) || strlen(s) != len) {
			snprintf(why, whylen, "roomcast.%s[%zu] is not a room id or prefix pattern%s", name, i,
				 publish ? " or \"" RC_GRANT_GLOBAL "\"" : "");
			return RC_EINVAL;
		}
		if (publish && strcmp(s, RC_GRANT_GLOBAL) == 0) {
			c->global = true;
			continue;
		}
		c->patterns++;
		c->bytes += len + 1;
	}
	return RC_OK;
}

/* Copies the checked list into pats and the bytes at *str; returns how many patterns. */
static uint16_t grant_list_fill(struct json_object *rc, const char *name, struct rc_grant_pattern *pats, char **str)
{
	struct json_object *arr;
	uint16_t k = 0;

	if (rc == NULL || !json_object_object_get_ex(rc, name, &arr))
		return 0;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *s = json_object_get_string(e);
		size_t len = (size_t)json_object_get_string_len(e);

		if (strcmp(s, RC_GRANT_GLOBAL) == 0)
			continue; /* only publish may hold it (checked): publish_global */
		pats[k].prefix = s[len - 1] == '*';
		if (pats[k].prefix)
			len--;
		memcpy(*str, s, len);
		(*str)[len] = '\0';
		pats[k].s = *str;
		pats[k].len = (uint16_t)len;
		*str += len + 1;
		k++;
	}
	return k;
}

/* Reads the string claim name into s and len (NULL when absent); RC_EINVAL when it is not an id. */
static int grant_id_claim(struct json_object *claims, const char *name, bool required, const char **s, size_t *len,
			  char *why, size_t whylen)
{
	struct json_object *v;

	*s = NULL;
	*len = 0;
	if (!json_object_object_get_ex(claims, name, &v)) {
		if (!required)
			return RC_OK;
		snprintf(why, whylen, "%s missing", name);
		return RC_EINVAL;
	}
	if (!json_object_is_type(v, json_type_string) ||
	    !grant_id_valid(json_object_get_string(v), (size_t)json_object_get_string_len(v)) ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
		snprintf(why, whylen, "%s must be a string of 1-%d bytes without control characters", name,
			 RC_GRANT_ID_MAX);
		return RC_EINVAL;
	}
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	return RC_OK;
}

int rc_claims_numeric_date(struct json_object *claims, const char *name, int64_t *out)
{
	struct json_object *v;
	double d;

	if (!json_object_object_get_ex(claims, name, &v))
		return RC_ENOTFOUND;
	if (json_object_is_type(v, json_type_int)) {
		int64_t x = json_object_get_int64(v);
		if (x < 0 || x > GRANT_DATE_MAX)
			return RC_EINVAL;
		*out = x;
		return RC_OK;
	}
	if (!json_object_is_type(v, json_type_double))
		return RC_EINVAL;
	d = json_object_get_double(v);
	if (!isfinite(d) || d < 0 || d > (double)GRANT_DATE_MAX)
		return RC_EINVAL;
	*out = (int64_t)floor(d);
	return RC_OK;
}

int rc_grant_parse(struct json_object *claims, struct rc_grant **out, char *why, size_t whylen)
{
	struct grant_count rd = { 0 }, pub = { 0 };
	struct json_object *rc = NULL, *fh;
	const char *sub, *jti;
	size_t sub_len, jti_len, size;
	struct rc_grant *g;
	struct rc_grant_pattern *pats;
	char *str;
	int64_t exp;
	bool firehose = false;
	int rv;

	*out = NULL;
	if (!json_object_is_type(claims, json_type_object)) {
		snprintf(why, whylen, "the claims are not a JSON object");
		return RC_EINVAL;
	}
	if ((rv = grant_id_claim(claims, "sub", true, &sub, &sub_len, why, whylen)) != RC_OK ||
	    (rv = grant_id_claim(claims, "jti", false, &jti, &jti_len, why, whylen)) != RC_OK)
		return rv;
	if ((rv = rc_claims_numeric_date(claims, "exp", &exp)) != RC_OK) {
		snprintf(why, whylen, rv == RC_ENOTFOUND ? "exp missing" : "exp must be a NumericDate (seconds)");
		return RC_EINVAL;
	}
	if (json_object_object_get_ex(claims, "roomcast", &rc) && !json_object_is_type(rc, json_type_object)) {
		snprintf(why, whylen, "roomcast must be an object");
		return RC_EINVAL;
	}
	if ((rv = grant_list_check(rc, "read", false, &rd, why, whylen)) != RC_OK ||
	    (rv = grant_list_check(rc, "publish", true, &pub, why, whylen)) != RC_OK)
		return rv;
	if (rc != NULL && json_object_object_get_ex(rc, "firehose", &fh)) {
		if (!json_object_is_type(fh, json_type_boolean)) {
			snprintf(why, whylen, "roomcast.firehose must be true or false");
			return RC_EINVAL;
		}
		firehose = json_object_get_boolean(fh);
	}

	/* one allocation: the grant, its patterns, then every string */
	size = sizeof(*g) + (rd.patterns + pub.patterns) * sizeof(*pats) + sub_len + 1 + (jti ? jti_len + 1 : 0) +
	       rd.bytes + pub.bytes;
	if ((g = calloc(1, size)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return RC_ENOMEM;
	}
	pats = (struct rc_grant_pattern *)(g + 1);
	str = (char *)(pats + rd.patterns + pub.patterns);
	memcpy(str, sub, sub_len);
	g->sub = str;
	g->sub_hash = rc_grant_id_hash(sub, sub_len);
	str += sub_len + 1;
	if (jti != NULL) {
		memcpy(str, jti, jti_len);
		g->jti = str;
		g->jti_hash = rc_grant_id_hash(jti, jti_len);
		str += jti_len + 1;
	}
	g->exp = exp;
	g->firehose = firehose;
	g->publish_global = pub.global;
	g->read = pats;
	g->n_read = grant_list_fill(rc, "read", pats, &str);
	g->publish = pats + g->n_read;
	g->n_publish = grant_list_fill(rc, "publish", pats + g->n_read, &str);
	*out = g;
	return RC_OK;
}

void rc_grant_free(struct rc_grant *g)
{
	free(g);
}

static bool grant_match(const struct rc_grant_pattern *pats, uint16_t n, const char *room, size_t len)
{
	for (uint16_t i = 0; i < n; i++) {
		const struct rc_grant_pattern *p = &pats[i];

		if (p->prefix ? len >= p->len && memcmp(room, p->s, p->len) == 0
			      : len == p->len && memcmp(room, p->s, len) == 0)
			return true;
	}
	return false;
}

bool rc_grant_can_read(const struct rc_grant *g, const char *room, size_t len)
{
	return len == 0 || g->firehose || grant_match(g->read, g->n_read, room, len);
}

bool rc_grant_can_publish(const struct rc_grant *g, const char *room, size_t len)
{
	return len == 0 ? g->publish_global : grant_match(g->publish, g->n_publish, room, len);
}

bool rc_grant_can_firehose(const struct rc_grant *g)
{
	return g->firehose;
}

void rc_grant_stamp(const struct rc_grant *g, struct rc_grant_stamp *out)
{
	out->exp = g->exp;
	out->sub_hash = g->sub_hash;
	out->jti_hash = g->jti_hash;
}

uint64_t rc_grant_id_hash(const char *s, size_t len)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= UINT64_C(1099511628211);
	}
	return h != 0 ? h : 1;
}
