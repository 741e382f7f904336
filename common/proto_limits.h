/*
 * proto_limits.h - the protocol's limits, shared by the broker, the gateway and
 * the tools, so that one side never accepts what the other refuses.
 * (Not "limits.h": common/ is on the include path, and <limits.h> must stay
 * the C library's.)
 *
 * Each limit says what a client sees when it is reached. The ones a user can
 * change are flags; their defaults and bounds are here, their doc lines in
 * README.md and docs/PROTOCOL.md. Changing a value here changes the protocol:
 * update docs/PROTOCOL.md (and SPEC) with it.
 */
#ifndef RC_PROTO_LIMITS_H
#define RC_PROTO_LIMITS_H

/* ---- events ---- */

/*
 * An event's `type`: 1-64 bytes. Longer: POST answers 400 invalid_event
 * ("type must be 1-64 bytes ..."), the broker api invalid_event.
 */
#define RC_TYPE_MAX 64

/*
 * A room id: 1-128 bytes. Longer: POST answers 400 invalid_event, a stream
 * 400 invalid_room_id, the broker api invalid_event (publish) or
 * invalid_field (replay); `roomcast tail --room` exits 2. A bus topic holds
 * the longest (RC_BUS_TOPIC_MAX).
 */
#define RC_ROOM_MAX 128

/*
 * An idempotency key (an event's `key` field, the Idempotency-Key header,
 * `roomcast publish --key`): 1-128 bytes of printable ASCII without space
 * (0x21-0x7e). Otherwise: POST answers 400 invalid_event, the broker api
 * invalid_event, `roomcast publish --key` exits 2; nothing is published.
 */
#define RC_KEY_MAX 128

/*
 * --max-event-bytes (broker and gateway): the default and the flag's bounds
 * on an event's compact serialization. A larger event: POST answers 413
 * event_too_large, the broker api too_large; nothing of the batch is
 * published.
 */
#define RC_MAX_EVENT_BYTES_DEFAULT (64 * 1024)
#define RC_MAX_EVENT_BYTES_MIN 64
#define RC_MAX_EVENT_BYTES_MAX (16 * 1024 * 1024)

/* ---- publish ---- */

/*
 * Events in one publish: a POST array, the broker's `publish` op, a batch of
 * `roomcast publish --ndjson`. More: POST answers 400 invalid_event ("body: an
 * array must hold 1-1000 events"), the broker invalid_field; nothing is
 * published. The gateway coalesces POSTs into broker requests of at most
 * this many events, `roomcast publish --ndjson` cuts its batches here.
 */
#define RC_PUBLISH_MAX_EVENTS 1000

/* Ack tokens one api op "acks" may ask about (the gateway asks for its one publish in flight). */
#define RC_ACKS_MAX_TOKENS 64

/*
 * --api-max-bytes (broker): the default largest api request. A larger one:
 * nng drops the requester's connection before the broker sees it (REQ
 * sockets reconnect by themselves); the requester gets no answer.
 */
#define RC_API_MAX_BYTES_DEFAULT (8 * 1024 * 1024)

/*
 * Bytes of events a coalesced publish request carries (the gateway's POST
 * batches, `roomcast publish --ndjson`): a client sees nothing, its events go
 * in the next request. Kept under RC_API_MAX_BYTES_DEFAULT so that a default
 * broker takes every batch.
 */
#define RC_PUBLISH_BATCH_BYTES (4 * 1024 * 1024)

_Static_assert(RC_PUBLISH_BATCH_BYTES < RC_API_MAX_BYTES_DEFAULT, "a default broker takes a full publish batch");

/* ---- replay ---- */

/*
 * The broker's `replay` op: `limit` may be 1-10000 events (more: invalid_field
 * "limit must be an integer 1-10000"), 1000 when absent; an answer cut by it
 * has `more` (MORE in a frame) and the caller asks again after its last id.
 */
#define RC_REPLAY_MAX_EVENTS 10000
#define RC_REPLAY_DEFAULT_EVENTS 1000

/*
 * Rooms named in one `replay`: more answers invalid_field ("rooms: at most
 * 1024 rooms"). Also the upper bound of the gateway's --max-rooms-per-stream,
 * so that a resuming stream's rooms fit in one replay (a stream naming more
 * rooms than the flag allows gets 400 too_many_rooms). A gateway serving
 * more rooms repairs a gap by replaying every room and keeping its own.
 */
#define RC_REPLAY_MAX_ROOMS 1024

/*
 * A resuming stream (Last-Event-ID) receives what it missed in pages of this
 * many events (and at most a quarter of --max-client-buffer bytes), the next
 * page asked once the previous one is written: a long resume never floods the
 * client's buffer, the client sees the events arrive in bursts.
 */
#define RC_RESUME_PAGE_EVENTS 1000

/*
 * The gateway's repair of a bus gap replays in pages of this many events (as
 * many as one replay gives): the streams see the gap's events late, never
 * lost or doubled.
 */
#define RC_REPAIR_PAGE_EVENTS RC_REPLAY_MAX_EVENTS

/*
 * --max-rewind (gateway): the default and the flag's bounds on a stream's
 * `rewind=N` (more: 400 invalid_parameter naming rewind); a `rewind=<duration>`
 * gives at most this many of the newest events of its window. The broker's
 * replay `last` is bounded by RC_REPLAY_MAX_EVENTS.
 */
#define RC_REWIND_DEFAULT 1000
#define RC_REWIND_MAX RC_REPLAY_MAX_EVENTS

/*
 * GET /api/v1/rooms/{room_id}/events: `limit` may be 1-500 (more: 400
 * invalid_parameter naming limit), 50 when absent.
 */
#define RC_HISTORY_PAGE_MAX 500
#define RC_HISTORY_PAGE_DEFAULT 50

_Static_assert(RC_HISTORY_PAGE_MAX <= RC_REPLAY_MAX_EVENTS, "a history page is one replay");

_Static_assert(RC_RESUME_PAGE_EVENTS <= RC_REPLAY_MAX_EVENTS, "a resume page is one replay");
_Static_assert(RC_REPAIR_PAGE_EVENTS <= RC_REPLAY_MAX_EVENTS, "a repair page is one replay");

#endif
