#include "event.h"

#include <json-c/json.h>
#include <math.h>
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

/*
 * True when every number in obj is a JSON number. json-c parses NaN and
 * [-]Infinity even in strict mode and would send them on as such, which a
 * subscriber's JSON.parse rejects. An overflowing literal such as 1e400 is
 * also infinite but keeps its published (valid) spelling, so look at that.
 */
static bool event_numbers_ok(struct json_object *obj)
{
	struct json_object_iterator it, end;
	const char *s;

	switch (json_object_get_type(obj)) {
	case json_type_double:
		if (isfinite(json_object_get_double(obj)))
			return true;
		s = json_object_to_json_string(obj);
		if (s != NULL && *s == '-')
			s++;
		return s != NULL && *s >= '0' && *s <= '9';
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(obj); i++)
			if (!event_numbers_ok(json_object_array_get_idx(obj, i)))
				return false;
		return true;
	case json_type_object:
		it = json_object_iter_begin(obj);
		end = json_object_iter_end(obj);
		for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
			if (!event_numbers_ok(json_object_iter_peek_value(&it)))
				return false;
		return true;
	default:
		return true;
	}
}

int rc_event_check(struct json_object *obj, size_t max_bytes, struct rc_event_view *view, char *why,
		   size_t whylen)
{
	struct json_object *type, *room;

	memset(view, 0, sizeof(*view));
	if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
		snprintf(why, whylen, "event must be a JSON object");
		return RC_EINVAL;
	}
	if (!json_object_object_get_ex(obj, "type", &type)) {
		snprintf(why, whylen, "type missing");
		return RC_EINVAL;
	}
	if (!json_object_is_type(type, json_type_string)) {
		snprintf(why, whylen, "type must be a string");
		return RC_EINVAL;
	}
	view->type = json_object_get_string(type);
	view->type_len = (size_t)json_object_get_string_len(type);
	if (!rc_type_valid(view->type, view->type_len)) {
		snprintf(why, whylen, "type must be 1-%d bytes of [A-Za-z0-9._-]", RC_TYPE_MAX);
		return RC_EINVAL;
	}
	if (json_object_object_get_ex(obj, "room_id", &room)) {
		if (!json_object_is_type(room, json_type_string)) {
			snprintf(why, whylen, "room_id must be a string");
			return RC_EINVAL;
		}
		view->room = json_object_get_string(room);
		view->room_len = (size_t)json_object_get_string_len(room);
		if (!rc_room_valid(view->room, view->room_len)) {
			snprintf(why, whylen, "room_id must be 1-%d bytes of [A-Za-z0-9._:@-]", RC_ROOM_MAX);
			return RC_EINVAL;
		}
	}
	if (!event_numbers_ok(obj)) {
		snprintf(why, whylen, "event has a NaN or Infinity number, which JSON cannot carry");
		return RC_EINVAL;
	}
	view->json = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &view->json_len);
	if (view->json == NULL) {
		snprintf(why, whylen, "event could not be serialized");
		return RC_ENOMEM;
	}
	if (view->json_len > max_bytes) {
		snprintf(why, whylen, "event is %zu bytes, more than the limit of %zu", view->json_len, max_bytes);
		return RC_ETOOBIG;
	}
	return RC_OK;
}
