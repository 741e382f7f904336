/*
 * event.h - the published event: its rules, checked while its text is read.
 *
 * An event is a JSON object with a `type` (1-64 bytes of [A-Za-z0-9._-]), an
 * optional `room_id` (1-128 bytes of [A-Za-z0-9._:@-]; absent = global event)
 * and any other fields, kept as published: the event's text is read once by
 * the strict reader (json.h), which writes it back compact with every string
 * and number byte for byte as published. `type` and `room_id` may each appear
 * once (a second one is refused: readers disagree on which one counts); any
 * other key is the publisher's business, duplicates included. A top-level
 * `key` (an idempotency key, 1-128 bytes of printable ASCII without space,
 * at most once) is taken out: it is reported in the view and left out of
 * the compact text, so it is never stored or delivered.
 * Pure functions; any thread.
 */
#ifndef RC_EVENT_H
#define RC_EVENT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "json.h"
#include "proto_limits.h" /* RC_TYPE_MAX, RC_ROOM_MAX, RC_MAX_EVENT_BYTES_* */

/* What reading an event found. */
struct rc_event_view {
	char type[RC_TYPE_MAX]; /* decoded (escapes as the characters they mean) */
	size_t type_len;
	char room[RC_ROOM_MAX]; /* decoded; room_len 0: a global event */
	size_t room_len;
	char key[RC_KEY_MAX]; /* decoded; key_len 0: no idempotency key */
	size_t key_len;
	size_t json_off; /* the compact event is out->data[json_off .. json_off + json_len) */
	size_t json_len;
};

/* True when s[0..len) is a valid room id / event type / idempotency key. */
bool rc_room_valid(const char *s, size_t len);
bool rc_type_valid(const char *s, size_t len);
bool rc_key_valid(const char *s, size_t len);

/*
 * Reads the value at j's position as an event, at most RC_JSON_MAX_DEPTH
 * levels deep, and appends its compact text, without its `key` member, to
 * out (j's own output is left as it was). Returns:
 * - RC_OK;
 * - RC_EPROTO: the text is not strict JSON; j has failed and why holds
 *   rc_json_error's "<path>: <reason>";
 * - RC_EINVAL: the event breaks an event rule; why starts with the field,
 *   e.g. "type missing", "events[2].room_id must be 1-128 bytes of
 *   [A-Za-z0-9._:@-]" (the path of the event first, if any);
 * - RC_ETOOBIG: its compact text (without the key) is longer than max_bytes;
 * with RC_EINVAL and RC_ETOOBIG, j is past the event and may go on.
 * why is cut to whylen (after a whole character). out->err tells an
 * allocation failure, which the caller checks.
 */
int rc_event_read(struct rc_json *j, struct rc_buf *out, size_t max_bytes, struct rc_event_view *view, char *why,
		  size_t whylen);

/* rc_event_read of text[0..len), which must hold that one event and nothing else. */
int rc_event_check(const char *text, size_t len, size_t max_bytes, struct rc_buf *out, struct rc_event_view *view,
		   char *why, size_t whylen);

#endif
