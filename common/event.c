#include "event.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

static bool charset_ok(const char *s, size_t len, const char *extra)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			continue;
		if (c == '\0' || strchr(extra, c) == NULL)
			return false;
	}
	return true;
}

bool rc_room_valid(const char *s, size_t len)
{
	return s != NULL && len >= 1 && len <= RC_ROOM_MAX && charset_ok(s, len, "._:@-");
}

bool rc_type_valid(const char *s, size_t len)
{
	return s != NULL && len >= 1 && len <= RC_TYPE_MAX && charset_ok(s, len, "._-");
}

bool rc_key_valid(const char *s, size_t len)
{
	if (s == NULL || len < 1 || len > RC_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* What the event says about `type`, `room_id` or `key`. */
enum event_field {
	FIELD_ABSENT,
	FIELD_STRING, /* decoded into the view */
	FIELD_TOO_LONG,
	FIELD_NOT_STRING,
	FIELD_TWICE,
};

enum { MEMBER_OTHER, MEMBER_TYPE, MEMBER_ROOM, MEMBER_KEY };

/* Which field the key of the member being read names. */
static int event_key(const struct rc_json *j)
{
	size_t len;
	const char *key = rc_json_key(j, &len);

	if (memchr(key, '\\', len) != NULL) /* spelled with escapes: decode to compare */
		return rc_json_key_is(j, "type")      ? MEMBER_TYPE
		       : rc_json_key_is(j, "room_id") ? MEMBER_ROOM
		       : rc_json_key_is(j, "key")     ? MEMBER_KEY
						      : MEMBER_OTHER;
	if (len == 4 && memcmp(key, "type", 4) == 0)
		return MEMBER_TYPE;
	if (len == 7 && memcmp(key, "room_id", 7) == 0)
		return MEMBER_ROOM;
	if (len == 3 && memcmp(key, "key", 3) == 0)
		return MEMBER_KEY;
	return MEMBER_OTHER;
}

/* Records the value just written to out[start..) for a field: its decoded string, or why it is none. */
static void event_field(enum event_field *f, const struct rc_buf *out, size_t start, char *dst, size_t cap, size_t *len)
{
	const char *v;
	size_t n;

	if (out->err)
		return; /* reported by the caller */
	v = out->data + start;
	n = out->len - start;
	if (*f != FIELD_ABSENT)
		*f = FIELD_TWICE;
	else if (n < 2 || v[0] != '"')
		*f = FIELD_NOT_STRING;
	else
		*f = rc_json_unescape(v + 1, n - 2, dst, cap, len) ? FIELD_STRING : FIELD_TOO_LONG;
}

/* Writes "<path of the event>.<msg>" (or "<path>: <msg>" when sep is ':'), or msg alone at the top. */
static void event_why(const struct rc_json *j, char sep, char *why, size_t whylen, const char *msg)
{
	char path[160];

	if (whylen == 0)
		return;
	rc_json_path(j, path, sizeof(path));
	snprintf(why, whylen, "%s%s%s", path, !path[0] ? "" : sep == ':' ? ": " : ".", msg);
	rc_utf8_trim(why);
}

/* Checks the rules for a field; returns false with why written when it breaks one. */
static bool event_field_ok(const struct rc_json *j, enum event_field f, int member, const char *s, size_t len,
			   char *why, size_t whylen)
{
	const char *name = member == MEMBER_ROOM ? "room_id" : member == MEMBER_KEY ? "key" : "type";
	char msg[96];

	switch (f) {
	case FIELD_ABSENT:
		if (member != MEMBER_TYPE)
			return true;
		snprintf(msg, sizeof(msg), "type missing");
		break;
	case FIELD_TWICE: snprintf(msg, sizeof(msg), "%s appears more than once", name); break;
	case FIELD_NOT_STRING: snprintf(msg, sizeof(msg), "%s must be a string", name); break;
	case FIELD_STRING:
		if (member == MEMBER_ROOM  ? rc_room_valid(s, len)
		    : member == MEMBER_KEY ? rc_key_valid(s, len)
					   : rc_type_valid(s, len))
			return true;
		/* fall through */
	case FIELD_TOO_LONG:
		if (member == MEMBER_ROOM)
			snprintf(msg, sizeof(msg), "room_id must be 1-%d bytes of [A-Za-z0-9._:@-]", RC_ROOM_MAX);
		else if (member == MEMBER_KEY)
			snprintf(msg, sizeof(msg), "key must be 1-%d bytes of printable ASCII without space",
				 RC_KEY_MAX);
		else
			snprintf(msg, sizeof(msg), "type must be 1-%d bytes of [A-Za-z0-9._-]", RC_TYPE_MAX);
		break;
	}
	event_why(j, '.', why, whylen, msg);
	return false;
}

/*
 * Takes the member just written at out[before..) out of the compact text. When
 * it was the object's first member, the next member's ',' must go too: *first
 * says so.
 */
static void event_drop_member(struct rc_buf *out, size_t obj, size_t before, bool *first)
{
	out->len = before;
	*first = before == obj + 1;
}

/* After rc_json_next wrote at out[before..): drops a ',' that followed a dropped first member. */
static void event_drop_comma(struct rc_buf *out, size_t before, bool *first)
{
	if (*first && !out->err && out->len > before && out->data[before] == ',') {
		memmove(out->data + before, out->data + before + 1, out->len - before - 1);
		out->len--;
	}
	*first = false;
}

int rc_event_read(struct rc_json *j, struct rc_buf *out, size_t max_bytes, struct rc_event_view *v, char *why,
		  size_t whylen)
{
	struct rc_buf *saved_out = j->out;
	unsigned saved_max = j->max_depth, saved_limit = j->limit;
	enum event_field type = FIELD_ABSENT, room = FIELD_ABSENT, key = FIELD_ABSENT;
	bool object, dropped_first = false;
	char msg[96];

	v->type_len = 0;
	v->room_len = 0;
	v->key_len = 0;
	v->json_off = out->len;
	v->json_len = 0;
	rc_buf_reserve(out, (size_t)(j->end - j->p)); /* one growth at most: the compact text is never longer */
	j->out = out;
	rc_json_limit(j, RC_JSON_MAX_DEPTH);
	object = rc_json_peek(j) == RC_JSON_OBJECT;
	if (!object) {
		rc_json_value(j);
	} else if (rc_json_begin(j)) {
		for (;;) {
			size_t before = out->len, start;
			bool more = rc_json_next(j);
			int field;

			event_drop_comma(out, before, &dropped_first);
			if (!more)
				break;
			field = event_key(j);
			start = out->len;
			if (!rc_json_value(j))
				break;
			if (field == MEMBER_TYPE) {
				event_field(&type, out, start, v->type, sizeof(v->type), &v->type_len);
			} else if (field == MEMBER_ROOM) {
				event_field(&room, out, start, v->room, sizeof(v->room), &v->room_len);
			} else if (field == MEMBER_KEY) {
				/* the idempotency key is the broker's, not the event's: never stored or delivered */
				event_field(&key, out, start, v->key, sizeof(v->key), &v->key_len);
				event_drop_member(out, v->json_off, before, &dropped_first);
			}
		}
	}
	j->out = saved_out;
	j->max_depth = saved_max;
	j->limit = saved_limit;
	if (rc_json_failed(j)) {
		if (whylen > 0)
			rc_json_error(j, why, whylen);
		return RC_EPROTO;
	}
	if (out->err) {
		snprintf(why, whylen, "out of memory");
		return RC_ENOMEM;
	}
	v->json_len = out->len - v->json_off;
	if (!object) {
		event_why(j, ':', why, whylen, "an event must be a JSON object");
		return RC_EINVAL;
	}
	if (!event_field_ok(j, type, MEMBER_TYPE, v->type, v->type_len, why, whylen) ||
	    !event_field_ok(j, room, MEMBER_ROOM, v->room, v->room_len, why, whylen) ||
	    !event_field_ok(j, key, MEMBER_KEY, v->key, v->key_len, why, whylen))
		return RC_EINVAL;
	if (room != FIELD_STRING)
		v->room_len = 0;
	if (key != FIELD_STRING)
		v->key_len = 0;
	if (v->json_len > max_bytes) {
		snprintf(msg, sizeof(msg), "event is %zu bytes, more than the limit of %zu", v->json_len, max_bytes);
		event_why(j, ':', why, whylen, msg);
		return RC_ETOOBIG;
	}
	return RC_OK;
}

int rc_event_check(const char *text, size_t len, size_t max_bytes, struct rc_buf *out, struct rc_event_view *view,
		   char *why, size_t whylen)
{
	struct rc_json j;
	int rv;

	rc_json_init(&j, text, len, NULL);
	rv = rc_event_read(&j, out, max_bytes, view, why, whylen);
	if (rv != RC_EPROTO && rv != RC_ENOMEM && !rc_json_end(&j)) {
		if (whylen > 0)
			rc_json_error(&j, why, whylen);
		return RC_EPROTO;
	}
	return rv;
}
