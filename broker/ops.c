#include "ops.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ackmem.h"
#include "error.h"
#include "log.h"
#include "event.h"
#include "frame.h"
#include "id.h"
#include "json.h"
#include "link.h"

static void reply_error(struct broker *br, struct rc_buf *reply, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void reply_error(struct broker *br, struct rc_buf *reply, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	br->errors++;
	reply->len = 0;
	rc_buf_puts(reply, "{\"ok\":false,\"error\":{\"code\":\"");
	rc_buf_puts(reply, code);
	rc_buf_puts(reply, "\",\"message\":");
	rc_buf_json_str(reply, msg, strlen(msg));
	rc_buf_puts(reply, "}}");
}

static void put_id(struct rc_buf *b, uint64_t epoch, uint64_t gseq)
{
	char id[RC_ID_MAX];
	size_t n = rc_id_format(id, epoch, gseq);
	rc_buf_append(b, "\"", 1);
	rc_buf_append(b, id, n);
	rc_buf_append(b, "\"", 1);
}

/*
 * A request as the strict reader saw it (ops_read). The events of a publish
 * are checked on the way, so a publish is read once and its events go to
 * the history exactly as published (compact), never through json-c.
 */
struct ops_req {
	bool publish; /* op is "publish" */
	bool op_seen;
	bool op_twice; /* op appears more than once */
	enum { EVENTS_ABSENT, EVENTS_ARRAY, EVENTS_OTHER, EVENTS_TWICE } events;
	enum { ACK_NONE, ACK_OK, ACK_BAD } ack; /* "ack": answer a publish on the bus */
	uint64_t ack_gw, ack_req;		/* its token, "<16 hex digits>-<decimal>" */
	bool on_bus;				/* the publish was answered on the bus */
	size_t n;	   /* events in the array (more than RC_PUBLISH_MAX_EVENTS are counted, not kept) */
	int err;	   /* the first event that breaks a rule (RC_EINVAL, RC_ETOOBIG, RC_ENOMEM), or 0 */
	char why[256];	   /* its reason, "events[3].type missing" */
	struct rc_buf buf; /* each event's compact text (without its key), then its room, then its key */
	struct hinput in[RC_PUBLISH_MAX_EVENTS]; /* json, room and key lengths; pointers set by op_publish */
	size_t off[RC_PUBLISH_MAX_EVENTS];	 /* where each event starts in buf */
	uint64_t gseqs[RC_PUBLISH_MAX_EVENTS];	 /* the answer */
};

/* Reads the events array at j's position into r, checking each event. */
static void ops_read_events(struct broker *br, struct rc_json *j, struct ops_req *r)
{
	struct rc_event_view v;
	char why[256];
	int rv;

	if (r->events != EVENTS_ABSENT) {
		r->events = EVENTS_TWICE;
		rc_json_value(j);
		return;
	}
	if (rc_json_peek(j) != RC_JSON_ARRAY) {
		r->events = EVENTS_OTHER;
		rc_json_value(j);
		return;
	}
	r->events = EVENTS_ARRAY;
	rc_json_begin(j);
	while (rc_json_next(j)) {
		size_t i = r->n++;

		if (i >= RC_PUBLISH_MAX_EVENTS || r->err != 0) {
			rc_json_value(j); /* refused anyway: only checked as JSON */
			continue;
		}
		r->off[i] = r->buf.len;
		rv = rc_event_read(j, &r->buf, br->max_event_bytes, &v, why, sizeof(why));
		if (rv == RC_EPROTO)
			return; /* j has failed: the request is not JSON */
		if (rv != RC_OK) {
			r->err = rv;
			memcpy(r->why, why, sizeof(why));
			continue;
		}
		r->in[i].json_len = v.json_len;
		r->in[i].room_len = v.room_len;
		r->in[i].key_len = v.key_len;
		rc_buf_append(&r->buf, v.room, v.room_len);
		rc_buf_append(&r->buf, v.key, v.key_len);
	}
}

/* Reads an ack token p[0..n): exactly 16 lower-case hex digits, '-', a decimal below 2^64. */
static bool ops_parse_token(const char *p, size_t n, uint64_t *gw_out, uint64_t *req_out)
{
	uint64_t gw = 0, req = 0;

	if (n < 18 || n > 37 || p[16] != '-')
		return false;
	for (size_t i = 0; i < 16; i++) {
		char c = p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		gw = gw << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	for (size_t i = 17; i < n; i++) {
		if (p[i] < '0' || p[i] > '9' || req > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
			return false;
		req = req * 10 + (uint64_t)(p[i] - '0');
	}
	*gw_out = gw;
	*req_out = req;
	return true;
}

/* Reads the token of "ack" (ops_parse_token), given once. */
static void ops_read_ack(struct rc_json *j, struct ops_req *r)
{
	const char *p = rc_json_peek(j) == RC_JSON_STRING ? j->p + 1 : NULL;
	bool twice = r->ack != ACK_NONE;

	r->ack = ACK_BAD;
	if (!rc_json_value(j) || p == NULL || twice)
		return;
	/* the string's bytes between its quotes */
	if (ops_parse_token(p, (size_t)(j->p - p - 1), &r->ack_gw, &r->ack_req))
		r->ack = ACK_OK;
}

/*
 * Reads req[0..len) with the strict reader: one JSON object, whose "op" it
 * notes and whose "events" it checks. Returns false with why set when the
 * request is not one strict JSON object.
 */
static bool ops_read(struct broker *br, const char *req, size_t len, struct ops_req *r, char *why, size_t whylen)
{
	struct rc_json j;

	rc_json_init(&j, req, len, NULL);
	if (rc_json_peek(&j) != RC_JSON_OBJECT) {
		if (rc_json_value(&j) && rc_json_end(&j)) {
			snprintf(why, whylen, "request must be a JSON object");
			return false;
		}
		rc_json_error(&j, why, whylen);
		return false;
	}
	rc_json_begin(&j);
	while (rc_json_next(&j)) {
		if (rc_json_key_is(&j, "events")) {
			ops_read_events(br, &j, r);
		} else if (rc_json_key_is(&j, "ack")) {
			ops_read_ack(&j, r);
		} else if (rc_json_key_is(&j, "op")) {
			const char *p = rc_json_peek(&j) == RC_JSON_STRING ? j.p : NULL;
			char op[8];
			size_t n;

			if (!rc_json_value(&j))
				break;
			r->op_twice = r->op_seen;
			r->op_seen = true;
			r->publish = p != NULL && rc_json_unescape(p + 1, (size_t)(j.p - p - 2), op, sizeof(op), &n) &&
				     n == 7 && memcmp(op, "publish", 7) == 0;
		} else {
			rc_json_value(&j);
		}
	}
	if (!rc_json_end(&j)) {
		rc_json_error(&j, why, whylen);
		return false;
	}
	return true;
}

/* Publishes the events ops_read checked. */
static void op_publish(struct broker *br, struct ops_req *r, struct rc_buf *reply)
{
	uint64_t epoch = history_epoch(br->hist);
	size_t n = r->n, published = 0;
	bool on_bus;
	int rv;

	if (atomic_load(&br->stopping)) {
		reply_error(br, reply, "shutting_down", "the broker is stopping; nothing was published");
		return;
	}
	if (r->ack == ACK_BAD) {
		reply_error(br, reply, "invalid_field",
			    "ack must be given once, as \"<16 lower-case hex digits>-<decimal below 2^64>\"");
		return;
	}
	if (r->events == EVENTS_ABSENT) {
		reply_error(br, reply, "invalid_field", "events missing");
		return;
	}
	if (r->events == EVENTS_TWICE) {
		reply_error(br, reply, "invalid_field", "events appears more than once");
		return;
	}
	if (r->events != EVENTS_ARRAY) {
		reply_error(br, reply, "invalid_field", "events must be an array of event objects");
		return;
	}
	if (n == 0 || n > RC_PUBLISH_MAX_EVENTS) {
		reply_error(br, reply, "invalid_field", "events must hold 1-%d events, not %zu", RC_PUBLISH_MAX_EVENTS,
			    n);
		return;
	}
	if (r->err != 0 || r->buf.err) {
		if (r->err == RC_ENOMEM || r->buf.err)
			reply_error(br, reply, "internal", "events: out of memory; nothing was published");
		else
			reply_error(br, reply, r->err == RC_ETOOBIG ? "too_large" : "invalid_event", "%s", r->why);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		r->in[i].json = r->buf.data + r->off[i];
		r->in[i].room = r->in[i].room_len ? r->in[i].json + r->in[i].json_len : NULL;
		r->in[i].key = r->in[i].key_len ? r->in[i].json + r->in[i].json_len + r->in[i].room_len : NULL;
	}
	/*
	 * With an ack token the answer goes in the index of the flush that
	 * carries the events (docs/PROTOCOL.md, "Acknowledgements"): one bus
	 * message instead of a bus message and a reply. Not with --store nats
	 * (the bus is fed by the follower, later) nor --fsync always (answered
	 * after the fdatasync): there the token is ignored and the api answers.
	 */
	on_bus = r->ack == ACK_OK && br->bus != NULL && br->nats == NULL &&
		 (br->store == NULL || store_fsync_mode(br->store) != STORE_FSYNC_ALWAYS);
	/* an event whose key is known is answered with the original id and not published again */
	if (br->nats != NULL) {
		rv = nstore_publish(br->nats, r->in, n, r->gseqs, &published);
	} else {
		if (on_bus)
			bus_publish_begin(br->bus);
		rv = history_publish(br->hist, r->in, n, r->gseqs, &published);
		if (on_bus)
			bus_publish_end(br->bus, r->ack_gw, r->ack_req, r->gseqs, rv == RC_OK ? (uint32_t)n : 0);
		/* kept for the op "acks": the gateway asks when the bus message was lost (ackmem.h) */
		if (on_bus && rv == RC_OK && br->acks != NULL &&
		    ackmem_put(br->acks, r->ack_gw, r->ack_req, epoch, r->gseqs, (uint32_t)n) != RC_OK)
			rc_log_warn("an acknowledgement is not remembered (out of memory)", NULL);
	}
	if (rv == RC_ETOOBIG) {
		reply_error(br, reply, "too_many_rooms",
			    "events: a new room would pass the broker's limit of rooms (--max-rooms); nothing was "
			    "published");
		return;
	} else if (rv == RC_EIO && br->nats != NULL) {
		reply_error(br, reply, "storage_unavailable",
			    "events: NATS JetStream is unreachable or refused them; nothing was published");
		return;
	} else if (rv == RC_ETIMEDOUT) {
		reply_error(br, reply, "publish_outcome_unknown",
			    "events: JetStream did not acknowledge every event in time; some may have been published "
			    "(retry with the same idempotency keys)");
		return;
	} else if (rv == RC_EIO) {
		reply_error(br, reply, "storage_unavailable",
			    "events: the broker cannot write its log (disk full or I/O error); nothing was published");
		return;
	} else if (rv != RC_OK) {
		reply_error(br, reply, "internal", "events: %s; nothing was published", rc_strerror(rv));
		return;
	}
	/*
	 * --fsync always: answered once on disk, with one fdatasync for every
	 * publish waiting (group commit); also when every key was known: the
	 * original publish may still be waiting for its fdatasync
	 */
	if (br->store != NULL && store_fsync_mode(br->store) == STORE_FSYNC_ALWAYS && store_sync(br->store) != RC_OK) {
		reply_error(br, reply, "storage_unavailable",
			    "events: published but the log could not be flushed to disk (fdatasync failed); a power "
			    "loss may lose them");
		return;
	}
	br->publishes++;
	br->events_published += published;
	if (on_bus) {
		r->on_bus = true;
		return;
	}
	rc_buf_puts(reply, "{\"ok\":true,\"ids\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			rc_buf_append(reply, ",", 1);
		put_id(reply, epoch, r->gseqs[i]);
	}
	rc_buf_puts(reply, "]}");
}

static void replay_json(struct broker *br, const struct history_result *res, struct rc_buf *reply)
{
	uint64_t epoch = history_epoch(br->hist);
	char e[RC_ID_MAX];

	rc_epoch_format(e, epoch);
	rc_buf_printf(reply, "{\"ok\":true,\"epoch\":\"%s\",\"last_id\":", e);
	put_id(reply, epoch, res->last_gseq);
	rc_buf_printf(reply, ",\"more\":%s,\"events\":[", res->more ? "true" : "false");
	for (size_t i = 0; i < res->count; i++) {
		const struct hevent *ev = res->events[i];
		rc_buf_puts(reply, i ? ",{\"id\":" : "{\"id\":");
		put_id(reply, epoch, ev->gseq);
		rc_buf_printf(reply, ",\"rseq\":%" PRIu64 ",\"event\":", ev->rseq);
		rc_buf_append(reply, ev->json, ev->json_len);
		rc_buf_append(reply, "}", 1);
	}
	rc_buf_puts(reply, "]}");
}

/* A frame lists its events oldest first (the reader checks it): a newest-first result goes in reverse. */
static void replay_frame(struct broker *br, const struct history_result *res, bool reversed, struct rc_buf *reply)
{
	struct rc_frame_hdr hdr = {
		.epoch = history_epoch(br->hist),
		.last_gseq = res->last_gseq,
		.count = (uint32_t)res->count,
		.flags = RC_FRAME_REPLAY | (res->more ? RC_FRAME_MORE : 0),
	};
	size_t size = RC_FRAME_HDR_SIZE;

	for (size_t i = 0; i < res->count; i++)
		size += rc_frame_event_size(res->events[i]->room_len, res->events[i]->json_len);
	if (rc_buf_reserve(reply, size) != RC_OK)
		return;
	rc_frame_put_header((uint8_t *)reply->data, &hdr);
	reply->len = RC_FRAME_HDR_SIZE;
	for (size_t i = 0; i < res->count; i++)
		reply->len += hevent_put_frame((uint8_t *)reply->data + reply->len,
					       res->events[reversed ? res->count - 1 - i : i]);
}

/* Takes one of the --max-replays slots; false when all are taken. */
static bool replay_slot_take(struct broker *br)
{
	if (atomic_fetch_add(&br->replays_in_flight, 1) < br->max_replays)
		return true;
	atomic_fetch_sub(&br->replays_in_flight, 1);
	return false;
}

void ops_replay_done(struct broker *br)
{
	atomic_fetch_sub(&br->replays_in_flight, 1);
}

/* Reads the event id v (field name) of the current epoch into *gseq; false after answering the error. */
static bool replay_id(struct broker *br, struct json_object *v, const char *name, uint64_t *gseq,
		      struct rc_buf *reply)
{
	struct rc_id id;
	char e[RC_ID_MAX];

	if (!json_object_is_type(v, json_type_string) ||
	    rc_id_parse(json_object_get_string(v), (size_t)json_object_get_string_len(v), &id) != RC_OK) {
		reply_error(br, reply, "invalid_id", "%s must be an event id like 6f1c2a9e-1042", name);
		return false;
	}
	if (id.epoch != history_epoch(br->hist)) {
		rc_epoch_format(e, history_epoch(br->hist));
		reply_error(br, reply, "epoch_mismatch", "%s: epoch is not the current epoch %s", name, e);
		return false;
	}
	*gseq = id.gseq;
	return true;
}

static enum ops_outcome op_replay(struct broker *br, struct json_object *req, bool may_wait, struct rc_buf *reply)
{
	struct json_object *rooms = NULL, *v;
	const char *names[RC_REPLAY_MAX_ROOMS];
	size_t lens[RC_REPLAY_MAX_ROOMS];
	struct history_query q = { .with_global = true,
				   .limit = RC_REPLAY_DEFAULT_EVENTS,
				   .max_answer_bytes = br->replay_max_bytes };
	struct history_result res;
	enum ops_outcome outcome;
	bool frame = false;
	int rv;

	if (json_object_object_get_ex(req, "rooms", &rooms) && rooms != NULL) {
		if (!json_object_is_type(rooms, json_type_array)) {
			reply_error(br, reply, "invalid_field", "rooms must be an array of room ids");
			return OPS_DONE;
		}
		q.nrooms = json_object_array_length(rooms);
		if (q.nrooms > RC_REPLAY_MAX_ROOMS) {
			reply_error(br, reply, "invalid_field", "rooms: at most %d rooms", RC_REPLAY_MAX_ROOMS);
			return OPS_DONE;
		}
		for (size_t i = 0; i < q.nrooms; i++) {
			struct json_object *r = json_object_array_get_idx(rooms, i);
			if (!json_object_is_type(r, json_type_string) ||
			    !rc_room_valid(json_object_get_string(r), (size_t)json_object_get_string_len(r))) {
				reply_error(br, reply, "invalid_field",
					    "rooms[%zu] must be 1-%d bytes of [A-Za-z0-9._:@-]", i, RC_ROOM_MAX);
				return OPS_DONE;
			}
			names[i] = json_object_get_string(r);
			lens[i] = (size_t)json_object_get_string_len(r);
		}
		q.rooms = names;
		q.room_lens = lens;
	}
	if (json_object_object_get_ex(req, "global", &v) && v != NULL) {
		if (!json_object_is_type(v, json_type_boolean)) {
			reply_error(br, reply, "invalid_field", "global must be true or false");
			return OPS_DONE;
		}
		q.with_global = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(req, "limit", &v) && v != NULL) {
		int64_t l = json_object_get_int64(v);
		if (!json_object_is_type(v, json_type_int) || l < 1 || l > RC_REPLAY_MAX_EVENTS) {
			reply_error(br, reply, "invalid_field", "limit must be an integer 1-%d", RC_REPLAY_MAX_EVENTS);
			return OPS_DONE;
		}
		q.limit = (size_t)l;
	}
	if (json_object_object_get_ex(req, "max_bytes", &v) && v != NULL) {
		int64_t mb = json_object_get_int64(v);
		if (!json_object_is_type(v, json_type_int) || mb < 0) {
			reply_error(br, reply, "invalid_field", "max_bytes must be a non-negative integer");
			return OPS_DONE;
		}
		q.max_bytes = (size_t)mb;
	}
	if (json_object_object_get_ex(req, "format", &v) && v != NULL) {
		const char *f = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		if (strcmp(f, "frame") == 0) {
			frame = true;
		} else if (strcmp(f, "json") != 0) {
			reply_error(br, reply, "invalid_field", "format must be \"json\" or \"frame\"");
			return OPS_DONE;
		}
	}
	if (json_object_object_get_ex(req, "after", &v) && v != NULL) {
		if (!replay_id(br, v, "after", &q.after, reply))
			return OPS_DONE;
	} else {
		q.oldest = true; /* everything retained */
	}
	if (json_object_object_get_ex(req, "before", &v) && v != NULL) {
		if (!replay_id(br, v, "before", &q.before, reply))
			return OPS_DONE;
		if (q.before == 0)
			q.before = 1; /* before the first id: nothing */
	}
	if (json_object_object_get_ex(req, "order", &v) && v != NULL) {
		const char *o = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		if (strcmp(o, "desc") == 0) {
			q.newest_first = true;
		} else if (strcmp(o, "asc") != 0) {
			reply_error(br, reply, "invalid_field", "order must be \"asc\" or \"desc\"");
			return OPS_DONE;
		}
	}
	/* rewind: where the first page starts, later pages go on with after */
	if (json_object_object_get_ex(req, "last", &v) && v != NULL) {
		int64_t l = json_object_get_int64(v);
		if (!json_object_is_type(v, json_type_int) || l < 0 || l > RC_REPLAY_MAX_EVENTS) {
			reply_error(br, reply, "invalid_field", "last must be an integer 0-%d", RC_REPLAY_MAX_EVENTS);
			return OPS_DONE;
		}
		q.last = (size_t)l;
	}
	if (json_object_object_get_ex(req, "last_ms", &v) && v != NULL) {
		int64_t ms = json_object_get_int64(v);
		struct timespec ts;
		uint64_t now;
		if (!json_object_is_type(v, json_type_int) || ms < 1) {
			reply_error(br, reply, "invalid_field", "last_ms must be a positive integer");
			return OPS_DONE;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
		/* the broker's clock, the one the events were stamped with */
		q.since_ms = (uint64_t)ms < now ? now - (uint64_t)ms : 1;
	}
	if ((q.last != 0 || q.since_ms != 0) && q.newest_first) {
		reply_error(br, reply, "invalid_field", "last and last_ms go with order asc");
		return OPS_DONE;
	}
	/* the answers in flight are what a replay costs: beyond --max-replays they wait or are refused */
	if (br->max_replays > 0 && !replay_slot_take(br)) {
		if (may_wait)
			return OPS_WAIT;
		br->replays_busy++;
		reply_error(br, reply, "busy", "replay: %d replays are in flight (--max-replays); ask again",
			    br->max_replays);
		return OPS_DONE;
	}
	outcome = br->max_replays > 0 ? OPS_DONE_REPLAY : OPS_DONE;
	br->replays++;
	rv = history_replay(br->hist, &q, &res);
	if (rv == RC_EEVICTED) {
		reply_error(br, reply, "history_unavailable", "after: events after this id are no longer retained");
		return outcome;
	} else if (rv == RC_ERANGE) {
		reply_error(br, reply, "history_unavailable", "after: this id is beyond the last id");
		return outcome;
	} else if (rv != RC_OK) {
		reply_error(br, reply, "internal", "replay: %s", rc_strerror(rv));
		return outcome;
	}
	if (frame)
		replay_frame(br, &res, q.newest_first, reply);
	else
		replay_json(br, &res, reply);
	history_result_fini(&res);
	return outcome;
}

static void op_stats(struct broker *br, struct rc_buf *reply)
{
	struct history_stats hs;
	struct bus_stats bs;
	uint64_t epoch = history_epoch(br->hist);
	char e[RC_ID_MAX];

	history_stats(br->hist, &hs);
	bus_stats(br->bus, &bs);
	rc_epoch_format(e, epoch);
	rc_buf_printf(reply, "{\"ok\":true,\"epoch\":\"%s\",\"last_id\":", e);
	put_id(reply, epoch, hs.last_gseq);
	rc_buf_printf(reply,
		      ",\"gseq\":%" PRIu64 ",\"rooms\":%zu,\"room_bytes\":%zu,"
		      "\"history\":{\"events\":%zu,\"bytes\":%zu,\"first_gseq\":%" PRIu64 "},"
		      "\"requests\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"publishes\":%" PRIu64
		      ",\"events_published\":%" PRIu64 ",\"replays\":%" PRIu64 ",\"replays_in_flight\":%d"
		      ",\"replays_busy\":%" PRIu64 ","
		      "\"bus\":{\"frames\":%" PRIu64 ",\"events\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"ticks\":%" PRIu64
		      ",\"send_errors\":%" PRIu64 ",\"acks\":%" PRIu64 ",\"ack_ticks\":%" PRIu64 "}}",
		      hs.last_gseq, hs.rooms, hs.room_bytes, hs.events, hs.bytes, hs.first_gseq, br->requests,
		      br->errors, br->publishes, br->events_published, br->replays, atomic_load(&br->replays_in_flight),
		      br->replays_busy, bs.frames, bs.events, bs.bytes, bs.ticks, bs.send_errors, bs.acks,
		      bs.ack_ticks);
	reply->len--; /* the closing brace */
	rc_buf_printf(reply,
		      ",\"idempotency\":{\"window_ms\":%" PRIu64 ",\"keys\":%" PRIu64 ",\"bytes\":%" PRIu64
		      ",\"hits\":%" PRIu64 ",\"evicted\":%" PRIu64 ",\"expired\":%" PRIu64 "}}",
		      hs.idem_window_ms, hs.keys.keys, hs.keys.bytes, hs.keys.hits, hs.keys.evicted, hs.keys.expired);
	if (br->acks != NULL) {
		struct ackmem_stats as;
		ackmem_stats(br->acks, &as);
		reply->len--; /* the closing brace */
		rc_buf_printf(reply,
			      ",\"ack_memory\":{\"entries\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"limit_bytes\":%" PRIu64
			      ",\"forgotten\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64 "}}",
			      as.entries, as.bytes, as.limit, as.forgotten, as.hits, as.misses);
	}
	if (br->nats != NULL) {
		struct nstore_stats ns;
		nstore_stats(br->nats, &ns);
		reply->len--; /* the closing brace */
		rc_buf_printf(reply,
			      ",\"nats\":{\"connected\":%s,\"replicas\":%d,\"disconnects\":%" PRIu64
			      ",\"reconnects\":%" PRIu64 ",\"published\":%" PRIu64 ",\"duplicates\":%" PRIu64
			      ",\"fence_retries\":%" PRIu64 ",\"resends\":%" PRIu64 ",\"room_reads\":%" PRIu64
			      ",\"failed\":%" PRIu64
			      ",\"unknown\":%" PRIu64 ",\"followed\":%" PRIu64 ",\"skipped\":%" PRIu64
			      ",\"follow_seq\":%" PRIu64 ",\"direct_reads\":%" PRIu64 "}}",
			      ns.connected ? "true" : "false", ns.replicas, ns.disconnects, ns.reconnects, ns.published,
			      ns.duplicates, ns.fence_retries, ns.resends, ns.room_reads, ns.failed, ns.unknown, ns.followed,
			      ns.skipped, ns.follow_seq, ns.direct_reads);
	}
	if (br->link != NULL) {
		struct link_stats ls;
		link_stats(br->link, &ls);
		reply->len--; /* the closing brace */
		rc_buf_printf(reply,
			      ",\"link\":{\"connections\":%" PRIu64 ",\"bus_messages_dropped\":%" PRIu64
			      ",\"requests\":%" PRIu64 "}}",
			      ls.connections, ls.bus_messages_dropped, ls.requests);
	}
	if (br->store != NULL) {
		struct store_stats ss;
		store_stats(br->store, &ss);
		reply->len--; /* the closing brace */
		rc_buf_printf(reply,
			      ",\"store\":{\"fsync\":\"%s\",\"bytes\":%" PRIu64 ",\"segments\":%" PRIu64
			      ",\"oldest_gseq\":%" PRIu64 ",\"fsyncs\":%" PRIu64 ",\"fsync_us_total\":%" PRIu64
			      ",\"fsync_us_last\":%" PRIu64
			      ",\"fsync_us_max\":%" PRIu64 ",\"fsync_us_avg\":%" PRIu64 ",\"write_errors\":%" PRIu64
			      ",\"fsync_errors\":%" PRIu64 ",\"recovery_ms\":%.1f}}",
			      store_fsync_name(store_fsync_mode(br->store)), ss.bytes, ss.segments, ss.first_gseq,
			      ss.fsyncs, ss.fsync_us_total, ss.fsync_us_last, ss.fsync_us_max,
			      ss.fsyncs ? ss.fsync_us_total / ss.fsyncs : 0, ss.write_errors, ss.fsync_errors,
			      ss.recovery_ms);
	}
}

static void op_ping(struct broker *br, struct rc_buf *reply)
{
	struct history_stats hs;
	uint64_t epoch = history_epoch(br->hist);
	char e[RC_ID_MAX];

	history_stats(br->hist, &hs);
	rc_epoch_format(e, epoch);
	rc_buf_printf(reply, "{\"ok\":true,\"epoch\":\"%s\",\"last_id\":", e);
	put_id(reply, epoch, hs.last_gseq);
	rc_buf_append(reply, "}", 1);
}

/*
 * {"op":"revoke","sub":ID} or {"op":"revoke","jti":ID}, optional "until"
 * (unix seconds; default now + 1 day): tells every gateway on the bus to
 * close the streams of that subject or token and to refuse it until then.
 */
static void op_revoke(struct broker *br, struct json_object *req, struct rc_buf *reply)
{
	struct json_object *id = NULL, *until;
	bool jti = json_object_object_get_ex(req, "jti", &id);
	int64_t u = (int64_t)time(NULL) + 86400;
	struct rc_buf msg;

	if ((!jti && !json_object_object_get_ex(req, "sub", &id)) || !json_object_is_type(id, json_type_string) ||
	    json_object_get_string_len(id) < 1 || json_object_get_string_len(id) > 255) {
		reply_error(br, reply, "invalid_field", "revoke needs sub or jti: a string of 1-255 bytes");
		return;
	}
	if (json_object_object_get_ex(req, "until", &until)) {
		if (!json_object_is_type(until, json_type_int) || json_object_get_int64(until) < 0) {
			reply_error(br, reply, "invalid_field", "until must be unix seconds");
			return;
		}
		u = json_object_get_int64(until);
	}
	rc_buf_init(&msg);
	rc_buf_printf(&msg, "{\"op\":\"revoke\",\"%s\":", jti ? "jti" : "sub");
	rc_buf_json_str(&msg, json_object_get_string(id), (size_t)json_object_get_string_len(id));
	rc_buf_printf(&msg, ",\"until\":%" PRId64 "}", u);
	if (msg.err || bus_control(br->bus, msg.data, msg.len) != RC_OK)
		reply_error(br, reply, "internal", "the revocation could not be sent on the bus");
	else
		rc_buf_printf(reply, "{\"ok\":true,\"until\":%" PRId64 "}", u);
	rc_buf_fini(&msg);
}

/*
 * {"op":"acks","tokens":[...]}: the acknowledgements of publishes answered on
 * the bus that the broker still remembers (ackmem.h), for a gateway that lost
 * the bus message: {"ok":true,"acks":{"<token>":["<id>",...]},"unknown":[...]}.
 * A token is unknown when its publish has not been published yet, went to
 * another broker, was answered on the api, or was forgotten.
 */
static void op_acks(struct broker *br, struct json_object *req, struct rc_buf *reply)
{
	uint8_t rec[RC_ACK_HDR_SIZE + 8 * RC_PUBLISH_MAX_EVENTS];
	struct json_object *tokens;
	bool known[RC_ACKS_MAX_TOKENS] = { false };
	size_t n, unknown = 0;
	bool first = true;

	if (!json_object_object_get_ex(req, "tokens", &tokens) || !json_object_is_type(tokens, json_type_array) ||
	    (n = json_object_array_length(tokens)) > RC_ACKS_MAX_TOKENS) {
		reply_error(br, reply, "invalid_field", "tokens must be an array of at most %d ack tokens",
			    RC_ACKS_MAX_TOKENS);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *t = json_object_array_get_idx(tokens, i);
		uint64_t gw, rq;
		if (!json_object_is_type(t, json_type_string) ||
		    !ops_parse_token(json_object_get_string(t), (size_t)json_object_get_string_len(t), &gw, &rq)) {
			reply_error(br, reply, "invalid_field",
				    "tokens[%zu] must be \"<16 lower-case hex digits>-<decimal below 2^64>\"", i);
			return;
		}
	}
	rc_buf_puts(reply, "{\"ok\":true,\"acks\":{");
	for (size_t i = 0; i < n; i++) {
		struct json_object *t = json_object_array_get_idx(tokens, i);
		struct rc_ack_reader rd = { rec, rec };
		struct rc_ack a;
		uint64_t gw, rq, epoch;
		size_t len;

		ops_parse_token(json_object_get_string(t), (size_t)json_object_get_string_len(t), &gw, &rq);
		len = br->acks != NULL ? ackmem_get(br->acks, gw, rq, rec, sizeof(rec), &epoch) : 0;
		if (len == 0) {
			unknown++;
			continue;
		}
		known[i] = true;
		rd.end = rec + len;
		rc_ack_next(&rd, &a);
		rc_buf_puts(reply, first ? "\"" : ",\"");
		first = false;
		rc_buf_append(reply, json_object_get_string(t), (size_t)json_object_get_string_len(t));
		rc_buf_puts(reply, "\":[");
		for (uint32_t k = 0; k < a.n; k++) {
			if (k)
				rc_buf_append(reply, ",", 1);
			put_id(reply, epoch, rc_ack_gseq(&a, k));
		}
		rc_buf_append(reply, "]", 1);
	}
	rc_buf_puts(reply, "},\"unknown\":[");
	first = true;
	for (size_t i = 0; i < n && unknown > 0; i++) {
		struct json_object *t = json_object_array_get_idx(tokens, i);

		if (known[i])
			continue;
		rc_buf_puts(reply, first ? "\"" : ",\"");
		first = false;
		rc_buf_append(reply, json_object_get_string(t), (size_t)json_object_get_string_len(t));
		rc_buf_append(reply, "\"", 1);
	}
	rc_buf_puts(reply, "]}");
}

/* How much of an unknown op's name an error echoes: at most 64 bytes, not ending inside a UTF-8 character. */
static size_t op_echo_len(const char *name, size_t len)
{
	size_t n = len < 64 ? len : 64;

	while (n > 0 && n < len && ((unsigned char)name[n] & 0xc0) == 0x80)
		n--;
	return n;
}

enum ops_outcome ops_handle(struct broker *br, const char *req, size_t len, bool may_wait, struct rc_buf *reply)
{
	enum ops_outcome outcome = OPS_DONE;
	struct json_tokener *tok = NULL;
	struct json_object *obj = NULL, *op;
	const char *name;
	struct ops_req req_read, *r = &req_read; /* ~40 KB on the stack, as the events' inputs were before */
	char why[256];

	br->requests++;
	reply->len = 0;
	/* one strict read decides what is JSON, and checks a publish's events on the way */
	r->publish = r->op_seen = r->op_twice = false;
	r->events = EVENTS_ABSENT;
	r->ack = ACK_NONE;
	r->on_bus = false;
	r->n = 0;
	r->err = 0;
	rc_buf_init(&r->buf);
	if (!ops_read(br, req, len, r, why, sizeof(why))) {
		reply_error(br, reply, "bad_request", "request is not one JSON object: %s", why);
		goto out;
	}
	if (r->op_twice) {
		reply_error(br, reply, "invalid_field", "op appears more than once");
		goto out;
	}
	if (r->publish) {
		op_publish(br, r, reply);
		if (r->on_bus)
			outcome = OPS_DONE_BUS;
		goto out;
	}
	/* the other ops read the request with json-c; the strict read has checked it, nesting too */
	tok = json_tokener_new_ex(RC_JSON_STACK + 2);
	if (tok == NULL) {
		reply_error(br, reply, "internal", "out of memory");
		goto out;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, req, (int)len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		enum json_tokener_error err = json_tokener_get_error(tok);
		reply_error(br, reply, "bad_request", "request is not one JSON object: %s",
			    obj != NULL && err == json_tokener_success ? "trailing bytes after the object"
			    : err == json_tokener_continue	       ? "unexpected end of input"
								       : json_tokener_error_desc(err));
		goto out;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		reply_error(br, reply, "bad_request", "request must be a JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(obj, "op", &op) || !json_object_is_type(op, json_type_string)) {
		reply_error(br, reply, "invalid_field",
			    "op missing: one of publish, replay, stats, ping, revoke, acks");
		goto out;
	}
	name = json_object_get_string(op);
	if (strcmp(name, "replay") == 0)
		outcome = op_replay(br, obj, may_wait, reply);
	else if (strcmp(name, "stats") == 0)
		op_stats(br, reply);
	else if (strcmp(name, "ping") == 0)
		op_ping(br, reply);
	else if (strcmp(name, "revoke") == 0)
		op_revoke(br, obj, reply);
	else if (strcmp(name, "acks") == 0)
		op_acks(br, obj, reply);
	else
		reply_error(br, reply, "unknown_op",
			    "op '%.*s' is not one of publish, replay, stats, ping, revoke, acks",
			    (int)op_echo_len(name, (size_t)json_object_get_string_len(op)), name);
out:
	json_object_put(obj);
	if (tok != NULL)
		json_tokener_free(tok);
	rc_buf_fini(&r->buf);
	if (outcome == OPS_WAIT)
		br->requests--; /* it comes again */
	return outcome;
}
