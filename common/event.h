/*
 * event.h - the published event: validation and compact serialization.
 *
 * An event is a JSON object with a `type` (1-64 bytes of [A-Za-z0-9._-]), an
 * optional `room_id` (1-128 bytes of [A-Za-z0-9._:@-]; absent = global event)
 * and any other fields, kept as published. Pure functions; any thread.
 */
#ifndef RC_EVENT_H
#define RC_EVENT_H

#include <stdbool.h>
#include <stddef.h>

#include "proto_limits.h" /* RC_TYPE_MAX, RC_ROOM_MAX, RC_MAX_EVENT_BYTES_* */

struct json_object;

/* What validation found. Pointers are owned by the json object checked. */
struct rc_event_view {
	const char *type;
	size_t type_len;
	const char *room; /* NULL for a global event */
	size_t room_len;
	const char *json; /* compact one-line serialization */
	size_t json_len;
};

/* True when s[0..len) is a valid room id / event type. */
bool rc_room_valid(const char *s, size_t len);
bool rc_type_valid(const char *s, size_t len);

/*
 * Checks obj against the event rules and serializes it compactly. Numbers
 * that are NaN or Infinity (json-c parses them, JSON has none) are refused.
 * On failure returns RC_EINVAL (or RC_ETOOBIG when the serialization exceeds
 * max_bytes) and writes into why a reason that starts with the field name,
 * e.g. "type missing", "room_id must be 1-128 bytes of [A-Za-z0-9._:@-]".
 */
int rc_event_check(struct json_object *obj, size_t max_bytes, struct rc_event_view *view, char *why,
		   size_t whylen);

#endif
