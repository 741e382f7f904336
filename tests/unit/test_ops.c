/*
 * test_ops.c - the broker api operations (broker/ops.c), called directly with
 * a real history and a real bus listening on a fresh inproc:// address.
 *
 * Every error reply must carry a code and a message that names the field at
 * fault; a publish is all or none; replies are checked as JSON (or as a bus
 * frame for format "frame"). Requests are copied into buffers of their exact
 * size, without a NUL, so the ASan build catches any read past the request.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <pthread.h>

#include "broker.h"
#include "buf.h"
#include "error.h"
#include "frame.h"
#include "ackmem.h"
#include "history.h"
#include "id.h"
#include "ops.h"

#define EPOCH 0xabc123u
#define EPOCH_STR "abc123"

struct fixture {
	struct broker br;
	struct bus *bus;
	char url[64];
};

static int fixture_setup(void **state, size_t max_events)
{
	static int seq;
	struct fixture *f = calloc(1, sizeof(*f));
	struct bus_config bc = { .epoch = EPOCH, .max_frame_bytes = 1 << 20, .tick_ms = 1000, .sendbuf = 1024 };

	if (f == NULL)
		return -1;
	snprintf(f->url, sizeof(f->url), "inproc://test-ops-%d-%d", (int)getpid(), seq++);
	bc.url = f->url;
	if (bus_start(&bc, &f->bus) != RC_OK) {
		free(f);
		return -1;
	}
	f->br.hist = history_new(EPOCH, max_events, 64 << 20);
	if (f->br.hist == NULL) {
		bus_stop(f->bus);
		free(f);
		return -1;
	}
	history_set_sink(f->br.hist, bus_sink, f->bus);
	f->br.bus = f->bus;
	f->br.acks = ackmem_new(1 << 20);
	assert_non_null(f->br.acks);
	f->br.max_event_bytes = 64 * 1024;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return fixture_setup(state, 100000);
}

static int setup_small(void **state)
{
	return fixture_setup(state, 8);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	bus_stop(f->bus);
	history_free(f->br.hist);
	ackmem_free(f->br.acks);
	free(f);
	return 0;
}

/* Runs ops_handle on req[0..len) (copied to an exact-size buffer); returns the raw reply, malloc'ed. */
static char *call_raw(struct fixture *f, const void *req, size_t len, size_t *reply_len)
{
	char *copy = malloc(len ? len : 1);
	struct rc_buf reply;
	char *out;

	assert_non_null(copy);
	memcpy(copy, req, len);
	rc_buf_init(&reply);
	if (ops_handle(&f->br, copy, len, false, &reply) == OPS_DONE_REPLAY)
		ops_replay_done(&f->br);
	free(copy);
	assert_int_equal(reply.err, 0);
	out = rc_buf_take(&reply, reply_len);
	assert_non_null(out);
	return out;
}

/* Runs a request; returns the reply parsed as a JSON object (caller puts it). */
static struct json_object *call_bytes(struct fixture *f, const void *req, size_t len)
{
	size_t rlen;
	char *raw = call_raw(f, req, len, &rlen);
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj = json_tokener_parse_ex(tok, raw, (int)rlen);

	if (obj == NULL || json_tokener_get_parse_end(tok) != rlen || !json_object_is_type(obj, json_type_object))
		fail_msg("reply is not one JSON object: %s", raw);
	json_tokener_free(tok);
	free(raw);
	return obj;
}

static struct json_object *call(struct fixture *f, const char *req)
{
	return call_bytes(f, req, strlen(req));
}

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

static void assert_ok(struct json_object *reply)
{
	struct json_object *ok = jget(reply, "ok");

	if (ok == NULL || !json_object_is_type(ok, json_type_boolean) || !json_object_get_boolean(ok))
		fail_msg("reply not ok: %s", json_object_to_json_string(reply));
}

/* Checks reply is {"ok":false,"error":{"code":code,"message":"...needle..."}} and puts it. */
static void assert_error(struct json_object *reply, const char *code, const char *needle)
{
	struct json_object *ok = jget(reply, "ok"), *err = jget(reply, "error");
	const char *c = json_object_get_string(jget(err, "code"));
	const char *m = json_object_get_string(jget(err, "message"));

	if (ok == NULL || !json_object_is_type(ok, json_type_boolean) || json_object_get_boolean(ok))
		fail_msg("reply is not an error: %s", json_object_to_json_string(reply));
	if (c == NULL || strcmp(c, code) != 0)
		fail_msg("want code %s: %s", code, json_object_to_json_string(reply));
	if (m == NULL || *m == '\0' || strstr(m, needle) == NULL)
		fail_msg("want a message naming '%s': %s", needle, json_object_to_json_string(reply));
	json_object_put(reply);
}

static uint64_t parse_gseq(const char *id)
{
	struct rc_id v;

	assert_non_null(id);
	assert_int_equal(rc_id_parse(id, strlen(id), &v), RC_OK);
	assert_int_equal(v.epoch, EPOCH);
	return v.gseq;
}

/* The broker's last gseq, asked with ping. */
static uint64_t last_gseq(struct fixture *f)
{
	struct json_object *r = call(f, "{\"op\":\"ping\"}");
	uint64_t g;

	assert_ok(r);
	g = parse_gseq(json_object_get_string(jget(r, "last_id")));
	json_object_put(r);
	return g;
}

/* Publishes events_json (a JSON array); returns the first gseq and checks the ids are consecutive. */
static uint64_t publish(struct fixture *f, const char *events_json, size_t n)
{
	struct rc_buf b;
	struct json_object *r, *ids;
	uint64_t first;

	rc_buf_init(&b);
	rc_buf_printf(&b, "{\"op\":\"publish\",\"events\":%s}", events_json);
	r = call(f, b.data);
	rc_buf_fini(&b);
	assert_ok(r);
	ids = jget(r, "ids");
	assert_non_null(ids);
	assert_int_equal(json_object_array_length(ids), n);
	first = parse_gseq(json_object_get_string(json_object_array_get_idx(ids, 0)));
	for (size_t i = 1; i < n; i++)
		assert_int_equal(parse_gseq(json_object_get_string(json_object_array_get_idx(ids, i))), first + i);
	json_object_put(r);
	return first;
}

static void test_ping_stats(void **state)
{
	struct fixture *f = *state;
	struct json_object *r, *h;

	r = call(f, "{\"op\":\"ping\"}");
	assert_ok(r);
	assert_string_equal(json_object_get_string(jget(r, "epoch")), EPOCH_STR);
	assert_string_equal(json_object_get_string(jget(r, "last_id")), EPOCH_STR "-0");
	json_object_put(r);

	publish(f, "[{\"type\":\"a\",\"room_id\":\"r1\"},{\"type\":\"b\"}]", 2);
	assert_error(call(f, "{\"op\":\"nope\"}"), "unknown_op", "op");
	r = call(f, "{\"op\":\"replay\"}");
	assert_ok(r);
	json_object_put(r);

	r = call(f, "{\"op\":\"stats\"}");
	assert_ok(r);
	assert_string_equal(json_object_get_string(jget(r, "epoch")), EPOCH_STR);
	assert_string_equal(json_object_get_string(jget(r, "last_id")), EPOCH_STR "-2");
	assert_int_equal(json_object_get_int64(jget(r, "gseq")), 2);
	assert_int_equal(json_object_get_int64(jget(r, "rooms")), 1);
	h = jget(r, "history");
	assert_int_equal(json_object_get_int64(jget(h, "events")), 2);
	assert_int_equal(json_object_get_int64(jget(h, "first_gseq")), 1);
	assert_true(json_object_get_int64(jget(h, "bytes")) > 0);
	/* ping, publish, nope, replay and this stats */
	assert_int_equal(json_object_get_int64(jget(r, "requests")), 5);
	assert_int_equal(json_object_get_int64(jget(r, "errors")), 1);
	assert_int_equal(json_object_get_int64(jget(r, "publishes")), 1);
	assert_int_equal(json_object_get_int64(jget(r, "events_published")), 2);
	assert_int_equal(json_object_get_int64(jget(r, "replays")), 1);
	assert_non_null(jget(jget(r, "bus"), "frames"));
	json_object_put(r);
}

static void test_publish_ok(void **state)
{
	static const char ev[] = "{\"type\":\"message.created\",\"room_id\":\"room-1\","
				 "\"message\":{\"text\":\"a/b \\\"q\\\" \\u00e9\",\"n\":[1,2.5,true,null]}}";
	struct fixture *f = *state;
	struct json_object *r, *events, *e0;
	size_t rlen;
	char *raw;

	assert_int_equal(publish(f, "[{\"type\":\"t\"}]", 1), 1);
	assert_int_equal(publish(f, "[{\"type\":\"t\",\"room_id\":\"a\"},{\"type\":\"t\"},{\"type\":\"t\"}]", 3), 2);
	/* whitespace around the request is fine */
	r = call(f, " \n{ \"op\" : \"publish\", \"events\" : [ { \"type\" : \"t\" } ] }\r\n ");
	assert_ok(r);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(jget(r, "ids"), 0)), EPOCH_STR "-5");
	json_object_put(r);
	/* the payload is kept as published (escapes too), compact on one line */
	char req[512];
	snprintf(req, sizeof(req), "{\"op\":\"publish\",\"events\":[  %s  ]}", ev);
	r = call(f, req);
	assert_ok(r);
	json_object_put(r);
	raw = call_raw(f, "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-5\"}",
		       strlen("{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-5\"}"), &rlen);
	if (strstr(raw, "\"event\":{\"type\":\"message.created\",\"room_id\":\"room-1\","
			"\"message\":{\"text\":\"a/b \\\"q\\\" \\u00e9\",\"n\":[1,2.5,true,null]}}") == NULL)
		fail_msg("payload changed: %s", raw);
	free(raw);
	r = call(f, "{\"op\":\"replay\",\"rooms\":[\"room-1\"],\"global\":false}");
	assert_ok(r);
	events = jget(r, "events");
	assert_int_equal(json_object_array_length(events), 1);
	e0 = json_object_array_get_idx(events, 0);
	assert_string_equal(json_object_get_string(jget(e0, "id")), EPOCH_STR "-6");
	assert_int_equal(json_object_get_int64(jget(e0, "rseq")), 1);
	struct json_object *want = json_tokener_parse(ev);
	assert_true(json_object_equal(jget(e0, "event"), want));
	json_object_put(want);
	json_object_put(r);
	assert_int_equal(last_gseq(f), 6);
}

/* Replays everything after gseq and returns the raw reply (malloc'ed). */
static char *replay_raw_after(struct fixture *f, uint64_t gseq)
{
	char req[128];
	size_t rlen;

	snprintf(req, sizeof(req), "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-%llu\"}", (unsigned long long)gseq);
	return call_raw(f, req, strlen(req), &rlen);
}

/*
 * A publish keeps each event exactly as published, whitespace outside
 * strings dropped: numbers beyond 64 bits and beyond a double, -0, 1.0,
 * escapes. The broker never re-serializes them.
 */
static void test_publish_exact(void **state)
{
	static const char req[] =
		"{ \"events\" : [ { \"type\":\"n\", \"room_id\":\"r\", \"big\": 123456789012345678901234567890,"
		" \"neg\": -123456789012345678901234567890, \"f\": 1.0, \"e\": 1e400, \"z\": -0, \"d\": 0.1,"
		" \"s\": \"\\u00e9\\ud83d\\ude00 \\/ \xc3\xa9\" } ,\n\t{\"type\":\"g\",\"x\":[ 1 , 2 ]} ], "
		"\"op\" : \"p\\u0075blish\" }";
	static const char want0[] = "{\"type\":\"n\",\"room_id\":\"r\",\"big\":123456789012345678901234567890,"
				    "\"neg\":-123456789012345678901234567890,\"f\":1.0,\"e\":1e400,\"z\":-0,\"d\":0.1,"
				    "\"s\":\"\\u00e9\\ud83d\\ude00 \\/ \xc3\xa9\"}";
	static const char want1[] = "{\"type\":\"g\",\"x\":[1,2]}";
	struct fixture *f = *state;
	struct json_object *r;
	char *raw, want[1024];

	r = call(f, req);
	assert_ok(r);
	json_object_put(r);
	raw = replay_raw_after(f, 0);
	snprintf(want, sizeof(want), "\"rseq\":1,\"event\":%s}", want0);
	if (strstr(raw, want) == NULL)
		fail_msg("event 1 changed: %s", raw);
	snprintf(want, sizeof(want), "\"rseq\":1,\"event\":%s}", want1);
	if (strstr(raw, want) == NULL)
		fail_msg("event 2 changed: %s", raw);
	free(raw);
	/* the room is the decoded room_id, escapes or not */
	r = call(f, "{\"op\":\"publish\",\"events\":[{\"type\":\"n\",\"room_id\":\"\\u0072\"}]}");
	assert_ok(r);
	json_object_put(r);
	r = call(f, "{\"op\":\"replay\",\"rooms\":[\"r\"],\"global\":false}");
	assert_ok(r);
	assert_int_equal(json_object_array_length(jget(r, "events")), 2);
	json_object_put(r);
	/* an event nested 64 levels is fine */
	{
		struct rc_buf b;

		rc_buf_init(&b);
		rc_buf_puts(&b, "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"x\":");
		for (int i = 1; i < 64; i++)
			rc_buf_puts(&b, "[");
		for (int i = 1; i < 64; i++)
			rc_buf_puts(&b, "]");
		rc_buf_puts(&b, "}]}");
		r = call(f, b.data);
		assert_ok(r);
		json_object_put(r);
		rc_buf_fini(&b);
	}
	assert_int_equal(last_gseq(f), 4);
}

/* Requests that are not strict JSON are bad_request with the field named; nothing is published. */
static void test_publish_strict(void **state)
{
	static const struct {
		const char *req;
		const char *code, *field;
	} cases[] = {
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\",\"room_id\":\"r\",\"x\":\"\xff\"}]}", "bad_request",
		  "request is not one JSON object: events[0].x: invalid UTF-8" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\"},{\"type\":\"a\",\"m\":{\"t\":\"\xc0\x80\"}}]}",
		  "bad_request", "events[1].m.t: invalid UTF-8" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\",\"x\":\"\xed\xa0\x80\"}]}", "bad_request",
		  "events[0].x: invalid UTF-8" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\",\"k\xff\":1}]}", "bad_request",
		  "events[0]: invalid UTF-8 in a key" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\",\"x\":\"a\tb\"}]}", "bad_request",
		  "events[0].x: raw control character 0x09" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\",\"x\":\"\\ud800\"}]}", "bad_request",
		  "events[0].x: \\ud800 is half of a surrogate pair" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\",\"x\":NaN}]}", "bad_request",
		  "events[0].x: unexpected character 'N'" },
		/* the reader stops at the first error: a JSON error after a rule error still wins */
		{ "{\"op\":\"publish\",\"events\":[{\"room_id\":\"r\"},{\"type\":\"a\",\"x\":\"\x01\"}]}", "bad_request",
		  "events[1].x: raw control character 0x01" },
		/* outside the events too, whatever the op */
		{ "{\"op\":\"ping\",\"x\":\"\xff\"}", "bad_request", "x: invalid UTF-8" },
		{ "{\"op\":\"p\xffing\"}", "bad_request", "op: invalid UTF-8" },
		/* duplicates of what decides the request */
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\",\"type\":\"b\"}]}", "invalid_event",
		  "events[0].type appears more than once" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\",\"room_id\":\"r\",\"room_id\":\"s\"}]}",
		  "invalid_event", "events[0].room_id appears more than once" },
		{ "{\"op\":\"ping\",\"op\":\"publish\",\"events\":[{\"type\":\"a\"}]}", "invalid_field",
		  "op appears more than once" },
		{ "{\"op\":\"publish\",\"op\":\"publish\",\"events\":[{\"type\":\"a\"}]}", "invalid_field",
		  "op appears more than once" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\"}],\"events\":[{\"type\":\"b\"}]}", "invalid_field",
		  "events appears more than once" },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_error(call(f, cases[i].req), cases[i].code, cases[i].field);
	assert_int_equal(last_gseq(f), 0);
}

/* One nesting limit: any request the reader accepts, json-c reads too (it used to stop at 32). */
static void test_nesting_one_limit(void **state)
{
	struct fixture *f = *state;
	struct json_object *r;
	struct rc_buf b;

	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"replay\",\"x\":");
	for (int i = 0; i < 60; i++)
		rc_buf_puts(&b, "[");
	for (int i = 0; i < 60; i++)
		rc_buf_puts(&b, "]");
	rc_buf_puts(&b, "}");
	r = call(f, b.data);
	assert_ok(r);
	json_object_put(r);
	rc_buf_fini(&b);
	/* deeper than the reader tracks: named */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"replay\",\"x\":");
	for (int i = 0; i < 70; i++)
		rc_buf_puts(&b, "[");
	for (int i = 0; i < 70; i++)
		rc_buf_puts(&b, "]");
	rc_buf_puts(&b, "}");
	assert_error(call(f, b.data), "bad_request", "x[0][0]");
	rc_buf_fini(&b);
}

/* Appends n events {"type":"t","i":k} to b, comma-separated, in brackets. */
static void events_array(struct rc_buf *b, size_t n)
{
	rc_buf_puts(b, "[");
	for (size_t i = 0; i < n; i++)
		rc_buf_printf(b, "%s{\"type\":\"t\",\"room_id\":\"r\",\"i\":%zu}", i ? "," : "", i);
	rc_buf_puts(b, "]");
}

static void test_publish_errors(void **state)
{
	static const struct {
		const char *req, *code, *field;
	} cases[] = {
		{ "{\"op\":\"publish\"}", "invalid_field", "events missing" },
		{ "{\"op\":\"publish\",\"events\":null}", "invalid_field", "events" },
		{ "{\"op\":\"publish\",\"events\":{\"type\":\"t\"}}", "invalid_field", "events must be an array" },
		{ "{\"op\":\"publish\",\"events\":[]}", "invalid_field", "events must hold 1-1000" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a\"},{\"room_id\":\"r\"}]}", "invalid_event",
		  "events[1].type missing" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"a b\"}]}", "invalid_event", "events[0].type" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"\"}]}", "invalid_event", "events[0].type" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":7}]}", "invalid_event",
		  "events[0].type must be a string" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"t\"},{\"type\":\"t\"},{\"type\":\"t\",\"room_id\":\"bad "
		  "room\"}]}",
		  "invalid_event", "events[2].room_id" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":\"\"}]}", "invalid_event",
		  "events[0].room_id" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":\"r\\u0000x\"}]}", "invalid_event",
		  "events[0].room_id" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":5}]}", "invalid_event",
		  "events[0].room_id must be a string" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"t\"},[1]]}", "invalid_event", "events[1]" },
		{ "{\"op\":\"publish\",\"events\":[{\"type\":\"t\"},\"x\"]}", "invalid_event", "events[1]" },
	};
	struct fixture *f = *state;
	struct rc_buf b;
	char type65[70];

	publish(f, "[{\"type\":\"t\"}]", 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_error(call(f, cases[i].req), cases[i].code, cases[i].field);
		/* all or none: nothing of a rejected batch was published */
		assert_int_equal(last_gseq(f), 1);
	}
	/* type of 65 bytes */
	memset(type65, 'x', 65);
	type65[65] = '\0';
	rc_buf_init(&b);
	rc_buf_printf(&b, "{\"op\":\"publish\",\"events\":[{\"type\":\"t\"},{\"type\":\"%s\"}]}", type65);
	assert_error(call(f, b.data), "invalid_event", "events[1].type");
	rc_buf_fini(&b);
	/* a room of 129 bytes */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":\"");
	for (int i = 0; i < 129; i++)
		rc_buf_puts(&b, "r");
	rc_buf_puts(&b, "\"}]}");
	assert_error(call(f, b.data), "invalid_event", "events[0].room_id");
	rc_buf_fini(&b);
	/* too many events */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"publish\",\"events\":");
	events_array(&b, 1001);
	rc_buf_puts(&b, "}");
	assert_error(call(f, b.data), "invalid_field", "events must hold 1-1000 events, not 1001");
	rc_buf_fini(&b);
	/* the last of 1000 is bad: none of them */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"publish\",\"events\":");
	events_array(&b, 999);
	b.len--;
	rc_buf_puts(&b, ",{\"type\":\"t\",\"room_id\":\"no spaces\"}]}");
	assert_error(call(f, b.data), "invalid_event", "events[999].room_id");
	rc_buf_fini(&b);
	/* an event over --max-event-bytes */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"publish\",\"events\":[{\"type\":\"t\"},{\"type\":\"big\",\"data\":\"");
	for (int i = 0; i < 64 * 1024; i++)
		rc_buf_puts(&b, "x");
	rc_buf_puts(&b, "\"}]}");
	assert_error(call(f, b.data), "too_large", "events[1]");
	rc_buf_fini(&b);
	assert_int_equal(last_gseq(f), 1);
	/* exactly 1000 is fine */
	rc_buf_init(&b);
	events_array(&b, 1000);
	assert_int_equal(publish(f, b.data, 1000), 2);
	rc_buf_fini(&b);
	assert_int_equal(last_gseq(f), 1001);
}

static void test_replay_errors(void **state)
{
	static const struct {
		const char *req, *code, *field;
	} cases[] = {
		{ "{\"op\":\"replay\",\"after\":\"zzz\"}", "invalid_id", "after" },
		{ "{\"op\":\"replay\",\"after\":\"\"}", "invalid_id", "after" },
		{ "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-01\"}", "invalid_id", "after" },
		{ "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-1 \"}", "invalid_id", "after" },
		{ "{\"op\":\"replay\",\"after\":\"ABC123-1\"}", "invalid_id", "after" },
		{ "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-99999999999999999999999\"}", "invalid_id", "after" },
		{ "{\"op\":\"replay\",\"after\":3}", "invalid_id", "after" },
		{ "{\"op\":\"replay\",\"after\":\"abc124-1\"}", "epoch_mismatch", "after" },
		{ "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-4\"}", "history_unavailable", "after" },
		{ "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-18446744073709551615\"}", "history_unavailable",
		  "after" },
		{ "{\"op\":\"replay\",\"rooms\":\"a\"}", "invalid_field", "rooms" },
		{ "{\"op\":\"replay\",\"rooms\":[\"a\",\"b c\"]}", "invalid_field", "rooms[1]" },
		{ "{\"op\":\"replay\",\"rooms\":[\"a\",7]}", "invalid_field", "rooms[1]" },
		{ "{\"op\":\"replay\",\"rooms\":[\"\"]}", "invalid_field", "rooms[0]" },
		{ "{\"op\":\"replay\",\"global\":\"yes\"}", "invalid_field", "global" },
		{ "{\"op\":\"replay\",\"global\":1}", "invalid_field", "global" },
		{ "{\"op\":\"replay\",\"limit\":0}", "invalid_field", "limit" },
		{ "{\"op\":\"replay\",\"limit\":10001}", "invalid_field", "limit" },
		{ "{\"op\":\"replay\",\"limit\":-1}", "invalid_field", "limit" },
		{ "{\"op\":\"replay\",\"limit\":1.5}", "invalid_field", "limit" },
		{ "{\"op\":\"replay\",\"limit\":\"5\"}", "invalid_field", "limit" },
		{ "{\"op\":\"replay\",\"limit\":99999999999999999999}", "invalid_field", "limit" },
		{ "{\"op\":\"replay\",\"max_bytes\":-1}", "invalid_field", "max_bytes" },
		{ "{\"op\":\"replay\",\"max_bytes\":\"1k\"}", "invalid_field", "max_bytes" },
		{ "{\"op\":\"replay\",\"format\":\"xml\"}", "invalid_field", "format" },
		{ "{\"op\":\"replay\",\"format\":1}", "invalid_field", "format" },
	};
	struct fixture *f = *state;
	struct rc_buf b;

	for (int i = 0; i < 3; i++)
		publish(f, "[{\"type\":\"t\",\"room_id\":\"a\"}]", 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_error(call(f, cases[i].req), cases[i].code, cases[i].field);
	/* more rooms than allowed */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"replay\",\"rooms\":[");
	for (int i = 0; i <= RC_REPLAY_MAX_ROOMS; i++)
		rc_buf_printf(&b, "%s\"r%d\"", i ? "," : "", i);
	rc_buf_puts(&b, "]}");
	assert_error(call(f, b.data), "invalid_field", "rooms");
	rc_buf_fini(&b);
}

static void test_replay_evicted(void **state)
{
	struct fixture *f = *state; /* history of 8 events */
	struct json_object *r;

	for (int i = 0; i < 12; i++)
		publish(f, "[{\"type\":\"t\",\"room_id\":\"a\"}]", 1);
	/* retained: 5..12 */
	assert_error(call(f, "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-0\"}"), "history_unavailable", "after");
	assert_error(call(f, "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-3\"}"), "history_unavailable", "after");
	assert_error(call(f, "{\"op\":\"replay\",\"rooms\":[\"a\"],\"after\":\"" EPOCH_STR "-3\"}"),
		     "history_unavailable", "after");
	r = call(f, "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-4\"}");
	assert_ok(r);
	assert_int_equal(json_object_array_length(jget(r, "events")), 8);
	json_object_put(r);
	/* no after: everything retained */
	r = call(f, "{\"op\":\"replay\",\"rooms\":[\"a\"]}");
	assert_ok(r);
	assert_int_equal(json_object_array_length(jget(r, "events")), 8);
	assert_string_equal(json_object_get_string(jget(json_object_array_get_idx(jget(r, "events"), 0), "id")),
			    EPOCH_STR "-5");
	json_object_put(r);
}

static void test_request_errors(void **state)
{
	static const struct {
		const char *req;
		size_t len; /* 0: strlen */
		const char *code, *field;
	} cases[] = {
		{ "{\"op\":\"nope\"}", 0, "unknown_op", "op 'nope'" },
		{ "{\"op\":\"\"}", 0, "unknown_op", "op" },
		{ "{}", 0, "invalid_field", "op missing" },
		{ "{\"op\":1}", 0, "invalid_field", "op" },
		{ "{\"op\":null}", 0, "invalid_field", "op" },
		{ "", 0, "bad_request", "request" },
		{ "   ", 0, "bad_request", "request" },
		{ "garbage", 0, "bad_request", "request" },
		{ "\xff\xfe\x01\x02", 0, "bad_request", "request" },
		{ "{\"op\":\"ping\"", 0, "bad_request", "end of input" },
		{ "{\"op\":\"ping\"} x", 0, "bad_request", "request is not one JSON object" },
		{ "{\"op\":\"ping\"}{\"op\":\"ping\"}", 0, "bad_request", "request is not one JSON object" },
		{ "{\"op\":\"ping\"}\0", 14, "bad_request", "trailing bytes" },
		{ "\0{\"op\":\"ping\"}", 14, "bad_request", "request" },
		{ "{\"op\":\"pi\0ng\"}", 14, "bad_request", "request" },
		{ "{\"op\":\"ping\",}", 0, "bad_request", "request" },
		{ "{'op':'ping'}", 0, "bad_request", "request" },
		{ "[{\"op\":\"ping\"}]", 0, "bad_request", "JSON object" },
		{ "\"ping\"", 0, "bad_request", "JSON object" },
		{ "42", 0, "bad_request", "JSON object" },
		{ "null", 0, "bad_request", "request" },
	};
	struct fixture *f = *state;
	struct rc_buf b;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].req);
		assert_error(call_bytes(f, cases[i].req, len), cases[i].code, cases[i].field);
	}
	/* nesting deeper than the reader allows: the message names the field and the limit */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"x\":");
	for (int i = 0; i < 100; i++)
		rc_buf_puts(&b, "[");
	for (int i = 0; i < 100; i++)
		rc_buf_puts(&b, "]");
	rc_buf_puts(&b, "}]}");
	assert_error(call(f, b.data), "bad_request", "request is not one JSON object: events[0].x[0][0]");
	assert_error(call(f, b.data), "bad_request", "nested deeper than 64 levels");
	rc_buf_fini(&b);
	/* an absurd op name is cut in the message */
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"");
	for (int i = 0; i < 5000; i++)
		rc_buf_puts(&b, "o");
	rc_buf_puts(&b, "\"}");
	assert_error(call(f, b.data), "unknown_op", "op 'ooo");
	rc_buf_fini(&b);
	assert_int_equal(last_gseq(f), 0);
}

/* True when s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/*
 * Whatever bytes an op name holds (invalid UTF-8, a character cut by the
 * 64-byte limit of the echo, escapes of lone surrogates), the error reply is
 * valid UTF-8 and strict JSON, and echoes the name's valid start.
 */
static void test_replies_are_utf8(void **state)
{
	static const struct {
		const char *op;	  /* the bytes between the quotes of "op" */
		const char *echo; /* what the message must contain */
	} cases[] = {
		/* not JSON (the strict read refuses them, naming the field): bad_request */
		{ "\xff\xfe", "op: invalid UTF-8" },
		{ "bad\xc3", "op: invalid UTF-8" },				/* a character cut at the end */
		{ "x\xc3(y", "op: invalid UTF-8" },				/* a lead byte without its continuation */
		{ "\xe2\x82", "op: invalid UTF-8" },			/* 2 of 3 bytes */
		{ "\xc0\xaf", "op: invalid UTF-8" },			/* an overlong '/' */
		{ "\xed\xa0\x80", "op: invalid UTF-8" },			/* an encoded surrogate */
		{ "\xf4\x90\x80\x80", "op: invalid UTF-8" },		/* past U+10FFFF */
		{ "\x80\x80\x80", "op: invalid UTF-8" },			/* continuations alone */
		{ "\\ud800x", "op: " },					/* a lone surrogate as an escape */
		/* JSON, but no op: unknown_op, the name echoed whole */
		{ "caf\xc3\xa9", "op 'caf\xc3\xa9'" },
		{ "\xf0\x9f\x98\x80 smile", "op '\xf0\x9f\x98\x80 smile'" }, /* 4 bytes */
	};
	const size_t not_json = 9;
	struct fixture *f = *state;
	struct rc_buf req;

	rc_buf_init(&req);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) + 3; i++) {
		size_t rlen;
		char *raw;
		struct json_tokener *tok;
		struct json_object *obj;

		req.len = 0;
		rc_buf_puts(&req, "{\"op\":\"");
		if (i < sizeof(cases) / sizeof(cases[0])) {
			rc_buf_puts(&req, cases[i].op);
		} else {
			/* long names of multibyte characters: the 64-byte cut falls inside one */
			const char *ch = i % 3 == 0 ? "\xc3\xa9" : i % 3 == 1 ? "\xe2\x82\xac" : "\xf0\x9f\x98\x80";
			rc_buf_puts(&req, i % 3 == 0 ? "a" : "ab");
			for (int k = 0; k < 40; k++)
				rc_buf_puts(&req, ch);
		}
		rc_buf_puts(&req, "\"}");
		raw = call_raw(f, req.data, req.len, &rlen);
		if (!utf8_valid((const unsigned char *)raw, rlen))
			fail_msg("request %zu: the reply is not UTF-8: %s", i, raw);
		tok = json_tokener_new();
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		obj = json_tokener_parse_ex(tok, raw, (int)rlen);
		if (obj == NULL || json_tokener_get_parse_end(tok) != rlen)
			fail_msg("request %zu: the reply is not strict JSON: %s", i, raw);
		json_tokener_free(tok);
		assert_error(obj, i < not_json ? "bad_request" : "unknown_op",
			     i < sizeof(cases) / sizeof(cases[0]) ? cases[i].echo : "op 'a");
		free(raw);
	}
	rc_buf_fini(&req);
}

static void test_shutting_down(void **state)
{
	struct fixture *f = *state;
	struct json_object *r;

	publish(f, "[{\"type\":\"t\"}]", 1);
	atomic_store(&f->br.stopping, true);
	assert_error(call(f, "{\"op\":\"publish\",\"events\":[{\"type\":\"t\"}]}"), "shutting_down", "published");
	/* reads still work while stopping */
	r = call(f, "{\"op\":\"replay\"}");
	assert_ok(r);
	assert_int_equal(json_object_array_length(jget(r, "events")), 1);
	json_object_put(r);
	assert_int_equal(last_gseq(f), 1);
}

static void test_replay_json(void **state)
{
	struct fixture *f = *state;
	struct json_object *r, *events;
	struct rc_buf b;

	/* 1 a, 2 b, 3 global, 4 a, 5 c, 6 a */
	publish(f, "[{\"type\":\"t\",\"room_id\":\"a\"},{\"type\":\"t\",\"room_id\":\"b\"},{\"type\":\"g\"}]", 3);
	publish(f,
		"[{\"type\":\"t\",\"room_id\":\"a\"},{\"type\":\"t\",\"room_id\":\"c\"},{\"type\":\"t\",\"room_id\":"
		"\"a\"}]",
		3);
	static const struct {
		const char *req;
		uint64_t gseqs[6], rseqs[6];
		size_t n;
		bool more;
	} cases[] = {
		{ "{\"op\":\"replay\"}", { 1, 2, 3, 4, 5, 6 }, { 1, 1, 1, 2, 1, 3 }, 6, false },
		{ "{\"op\":\"replay\",\"rooms\":null}", { 1, 2, 3, 4, 5, 6 }, { 1, 1, 1, 2, 1, 3 }, 6, false },
		{ "{\"op\":\"replay\",\"global\":false}", { 1, 2, 3, 4, 5, 6 }, { 1, 1, 1, 2, 1, 3 }, 6, false },
		{ "{\"op\":\"replay\",\"rooms\":[\"a\"]}", { 1, 3, 4, 6 }, { 1, 1, 2, 3 }, 4, false },
		{ "{\"op\":\"replay\",\"rooms\":[\"a\"],\"global\":false}", { 1, 4, 6 }, { 1, 2, 3 }, 3, false },
		{ "{\"op\":\"replay\",\"rooms\":[\"c\",\"a\",\"c\"],\"global\":true,\"after\":\"" EPOCH_STR "-1\"}",
		  { 3, 4, 5, 6 },
		  { 1, 2, 1, 3 },
		  4,
		  false },
		{ "{\"op\":\"replay\",\"rooms\":[],\"after\":\"" EPOCH_STR "-0\"}", { 3 }, { 1 }, 1, false },
		{ "{\"op\":\"replay\",\"rooms\":[\"zz\"],\"global\":false}", { 0 }, { 0 }, 0, false },
		{ "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-2\",\"limit\":2}", { 3, 4 }, { 1, 2 }, 2, true },
		{ "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-4\",\"limit\":2}", { 5, 6 }, { 1, 3 }, 2, false },
		{ "{\"op\":\"replay\",\"after\":\"" EPOCH_STR "-6\",\"format\":\"json\"}", { 0 }, { 0 }, 0, false },
		{ "{\"op\":\"replay\",\"rooms\":[\"b\",\"a\"],\"global\":false,\"limit\":3}",
		  { 1, 2, 4 },
		  { 1, 1, 2 },
		  3,
		  true },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = call(f, cases[i].req);
		assert_ok(r);
		assert_string_equal(json_object_get_string(jget(r, "epoch")), EPOCH_STR);
		assert_string_equal(json_object_get_string(jget(r, "last_id")), EPOCH_STR "-6");
		if (json_object_get_boolean(jget(r, "more")) != cases[i].more)
			fail_msg("case %zu: more wrong: %s", i, json_object_to_json_string(r));
		events = jget(r, "events");
		if (json_object_array_length(events) != cases[i].n)
			fail_msg("case %zu: %s", i, json_object_to_json_string(r));
		for (size_t j = 0; j < cases[i].n; j++) {
			struct json_object *e = json_object_array_get_idx(events, j);
			assert_int_equal(parse_gseq(json_object_get_string(jget(e, "id"))), cases[i].gseqs[j]);
			assert_int_equal(json_object_get_int64(jget(e, "rseq")), cases[i].rseqs[j]);
			assert_non_null(jget(jget(e, "event"), "type"));
		}
		json_object_put(r);
	}
	/* the default limit is 1000 */
	rc_buf_init(&b);
	events_array(&b, 1000);
	publish(f, b.data, 1000);
	rc_buf_fini(&b);
	r = call(f, "{\"op\":\"replay\"}");
	assert_ok(r);
	assert_int_equal(json_object_array_length(jget(r, "events")), 1000);
	assert_true(json_object_get_boolean(jget(r, "more")));
	json_object_put(r);
	r = call(f, "{\"op\":\"replay\",\"limit\":10000}");
	assert_int_equal(json_object_array_length(jget(r, "events")), 1006);
	assert_false(json_object_get_boolean(jget(r, "more")));
	json_object_put(r);
}

/* Calls a frame replay and checks the frame decodes; returns the reader's events via out. */
static size_t replay_frame(struct fixture *f, const char *req, uint8_t want_flags, struct rc_frame_event *out,
			   size_t cap, char **raw)
{
	struct rc_frame_reader rd;
	size_t len, n = 0;

	*raw = call_raw(f, req, strlen(req), &len);
	assert_int_equal(rc_frame_reader_init(&rd, *raw, len), RC_OK);
	assert_int_equal(rd.hdr.epoch, EPOCH);
	assert_int_equal(rd.hdr.flags, want_flags);
	while (n < cap && rc_frame_reader_next(&rd, &out[n]))
		n++;
	assert_int_equal(n, rd.hdr.count);
	return n;
}

static void test_replay_frame(void **state)
{
	struct fixture *f = *state;
	struct rc_frame_event evs[8];
	char *raw;
	size_t n;

	publish(f,
		"[{\"type\":\"t\",\"room_id\":\"a\"},{\"type\":\"g\"},{\"type\":\"t\",\"room_id\":\"b\"},"
		"{\"type\":\"t\",\"room_id\":\"a\"}]",
		4);
	n = replay_frame(f, "{\"op\":\"replay\",\"format\":\"frame\"}", RC_FRAME_REPLAY, evs, 8, &raw);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(evs[i].gseq, i + 1);
	assert_int_equal(evs[1].room_len, 0);
	assert_int_equal(evs[3].rseq, 2);
	assert_int_equal(evs[3].room_len, 1);
	assert_memory_equal(evs[3].room, "a", 1);
	assert_int_equal(evs[3].json_len, strlen("{\"type\":\"t\",\"room_id\":\"a\"}"));
	assert_memory_equal(evs[3].json, "{\"type\":\"t\",\"room_id\":\"a\"}", evs[3].json_len);
	free(raw);

	n = replay_frame(f, "{\"op\":\"replay\",\"format\":\"frame\",\"rooms\":[\"a\"],\"limit\":2}",
			 RC_FRAME_REPLAY | RC_FRAME_MORE, evs, 8, &raw);
	assert_int_equal(n, 2);
	assert_int_equal(evs[0].gseq, 1);
	assert_int_equal(evs[1].gseq, 2);
	free(raw);
	n = replay_frame(f, "{\"op\":\"replay\",\"format\":\"frame\",\"rooms\":[\"a\"],\"after\":\"" EPOCH_STR "-2\"}",
			 RC_FRAME_REPLAY, evs, 8, &raw);
	assert_int_equal(n, 1);
	assert_int_equal(evs[0].gseq, 4);
	free(raw);
	/* an empty frame still says where the broker is */
	struct rc_frame_reader rd;
	size_t len;
	raw = call_raw(f, "{\"op\":\"replay\",\"format\":\"frame\",\"after\":\"" EPOCH_STR "-4\"}",
		       strlen("{\"op\":\"replay\",\"format\":\"frame\",\"after\":\"" EPOCH_STR "-4\"}"), &len);
	assert_int_equal(len, RC_FRAME_HDR_SIZE);
	assert_int_equal(rc_frame_reader_init(&rd, raw, len), RC_OK);
	assert_int_equal(rd.hdr.last_gseq, 4);
	assert_int_equal(rd.hdr.count, 0);
	free(raw);
	/* errors stay JSON */
	assert_error(call(f, "{\"op\":\"replay\",\"format\":\"frame\",\"after\":\"x\"}"), "invalid_id", "after");
}

/*
 * The broker's cap on what one replay answer holds wins over what the client
 * asks (limit, max_bytes); "more" (or the MORE flag) says to page on, and the
 * pages add up to every event. An event larger than the cap comes alone.
 */
static void test_replay_cap(void **state)
{
	enum { N = 50, CAP = 4096, SLACK = 128 };
	struct fixture *f = *state;
	struct rc_buf b;
	char after[RC_ID_MAX + 16];

	f->br.replay_max_bytes = CAP;
	rc_buf_init(&b);
	for (int i = 0; i < N; i++) {
		b.len = 0;
		rc_buf_printf(&b, "[{\"type\":\"t\",\"room_id\":\"r\",\"i\":%d,\"pad\":\"%0300d\"}]", i, 0);
		publish(f, b.data, 1);
	}
	for (int frame = 0; frame < 2; frame++) {
		size_t got = 0, pages = 0;
		bool more = true;

		after[0] = '\0';
		while (more) {
			size_t len;
			char *raw;

			b.len = 0;
			rc_buf_printf(&b, "{\"op\":\"replay\",\"rooms\":[\"r\"],\"limit\":10000,\"max_bytes\":100000000%s%s}",
				      frame ? ",\"format\":\"frame\"" : "", after);
			raw = call_raw(f, b.data, b.len, &len);
			if (len > CAP + SLACK)
				fail_msg("%s page %zu: %zu bytes, the cap is %d", frame ? "frame" : "json", pages, len, CAP);
			if (frame) {
				struct rc_frame_reader rd;
				struct rc_frame_event ev;
				assert_int_equal(rc_frame_reader_init(&rd, raw, len), RC_OK);
				more = (rd.hdr.flags & RC_FRAME_MORE) != 0;
				while (rc_frame_reader_next(&rd, &ev)) {
					got++;
					snprintf(after, sizeof(after), ",\"after\":\"" EPOCH_STR "-%llu\"",
						 (unsigned long long)ev.gseq);
				}
			} else {
				struct json_object *r = json_tokener_parse(raw), *evs = jget(r, "events");
				size_t n = json_object_array_length(evs);
				assert_ok(r);
				more = json_object_get_boolean(jget(r, "more"));
				got += n;
				if (n > 0)
					snprintf(after, sizeof(after), ",\"after\":\"%s\"",
						 json_object_get_string(jget(json_object_array_get_idx(evs, n - 1), "id")));
				json_object_put(r);
			}
			free(raw);
			pages++;
			assert_true(pages <= N);
		}
		assert_int_equal(got, N);
		assert_true(pages > 1);
	}
	/* an event larger than the cap: alone in its answer */
	b.len = 0;
	rc_buf_printf(&b, "[{\"type\":\"big\",\"room_id\":\"r\",\"pad\":\"%06000d\"},{\"type\":\"t\",\"room_id\":\"r\"}]", 0);
	publish(f, b.data, 2);
	b.len = 0;
	rc_buf_printf(&b, "{\"op\":\"replay\",\"rooms\":[\"r\"],\"after\":\"" EPOCH_STR "-%d\"}", N);
	struct json_object *r = call(f, b.data);
	assert_ok(r);
	assert_int_equal(json_object_array_length(jget(r, "events")), 1);
	assert_true(json_object_get_boolean(jget(r, "more")));
	json_object_put(r);
	rc_buf_fini(&b);
}

/*
 * Beyond max_replays answers in flight, a replay waits (OPS_WAIT: nothing
 * done, nothing counted) while the caller may wait, then is answered busy;
 * other ops go on. A slot is free again once its answer was handed over.
 */
static void test_max_replays(void **state)
{
	static const char replay[] = "{\"op\":\"replay\",\"format\":\"frame\"}";
	struct fixture *f = *state;
	struct rc_buf a, b, c;
	struct json_object *r;

	f->br.max_replays = 2;
	publish(f, "[{\"type\":\"t\"}]", 1);
	rc_buf_init(&a);
	rc_buf_init(&b);
	rc_buf_init(&c);
	assert_int_equal(ops_handle(&f->br, replay, sizeof(replay) - 1, true, &a), OPS_DONE_REPLAY);
	assert_int_equal(ops_handle(&f->br, replay, sizeof(replay) - 1, true, &b), OPS_DONE_REPLAY);
	/* both answers still in flight */
	assert_int_equal(ops_handle(&f->br, replay, sizeof(replay) - 1, true, &c), OPS_WAIT);
	assert_int_equal(c.len, 0);
	assert_int_equal(ops_handle(&f->br, replay, sizeof(replay) - 1, false, &c), OPS_DONE);
	r = json_tokener_parse(c.data);
	assert_error(r, "busy", "replay");
	/* a replay that is refused for its fields takes no slot; other ops go on */
	assert_error(call(f, "{\"op\":\"replay\",\"limit\":0}"), "invalid_field", "limit");
	assert_int_equal(last_gseq(f), 1);
	ops_replay_done(&f->br);
	r = call(f, "{\"op\":\"replay\"}");
	assert_ok(r);
	json_object_put(r);
	ops_replay_done(&f->br);
	r = call(f, "{\"op\":\"stats\"}");
	assert_int_equal(json_object_get_int64(jget(r, "replays_busy")), 1);
	assert_int_equal(json_object_get_int64(jget(r, "replays_in_flight")), 0);
	/* publish, 2 replays, busy, refused replay, ping, replay, stats: the wait was not a request */
	assert_int_equal(json_object_get_int64(jget(r, "requests")), 8);
	json_object_put(r);
	rc_buf_fini(&a);
	rc_buf_fini(&b);
	rc_buf_fini(&c);
}

/* Published events reach the bus, in order. */
static void test_bus_delivery(void **state)
{
	struct fixture *f = *state;
	nng_socket sub;
	nng_msg *msg;
	uint64_t next = 0, probe;
	struct rc_bus_msg bm;
	int rv;

	assert_int_equal(nng_sub0_open(&sub), 0);
	assert_int_equal(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 100), 0);
	assert_int_equal(nng_dial(sub, f->url, NULL, 0), 0);
	/*
	 * The pipe may not be attached on the PUB side yet, so a frame can be
	 * lost: publish a probe, and another one only when nothing arrives.
	 */
	probe = publish(f, "[{\"type\":\"probe\"}]", 1);
	for (int tries = 0; next != probe + 1; tries++) {
		struct rc_frame_reader rd;
		struct rc_frame_event ev;

		assert_true(tries < 100);
		rv = nng_recvmsg(sub, &msg, 0);
		if (rv == NNG_ETIMEDOUT) {
			probe = publish(f, "[{\"type\":\"probe\"}]", 1);
			continue;
		}
		assert_int_equal(rv, 0);
		assert_int_equal(rc_bus_msg_parse(&bm, nng_msg_body(msg), nng_msg_len(msg)), RC_OK);
		if (!bm.index) {
			assert_int_equal(rc_frame_reader_init(&rd, bm.body, bm.body_len), RC_OK);
			while (rc_frame_reader_next(&rd, &ev))
				next = ev.gseq + 1;
		}
		nng_msg_free(msg);
	}
	struct rc_buf b;
	rc_buf_init(&b);
	events_array(&b, 500);
	publish(f, b.data, 500);
	rc_buf_fini(&b);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 5000), 0);
	while (next <= probe + 500) {
		struct rc_frame_reader rd;
		struct rc_frame_event ev;

		assert_int_equal(nng_recvmsg(sub, &msg, 0), 0);
		assert_int_equal(rc_bus_msg_parse(&bm, nng_msg_body(msg), nng_msg_len(msg)), RC_OK);
		if (bm.index) {
			/* the end of a flush: it names room "a" with what the frame had */
			struct rc_index_reader ir;
			struct rc_index_entry e;
			assert_int_equal(rc_index_reader_init(&ir, bm.body, bm.body_len), RC_OK);
			assert_int_equal(ir.hdr.epoch, EPOCH);
			if (!(ir.hdr.flags & RC_FRAME_TICK) && next > probe + 1) {
				assert_int_equal(ir.hdr.last_gseq, next - 1);
				assert_int_equal(ir.hdr.count, 1);
				assert_true(rc_index_reader_next(&ir, &e));
				assert_int_equal(e.room_len, 1);
				assert_int_equal(e.events, next - ir.first_gseq);
			}
			nng_msg_free(msg);
			continue;
		}
		assert_int_equal(bm.room_len, 1);
		assert_int_equal(rc_frame_reader_init(&rd, bm.body, bm.body_len), RC_OK);
		assert_int_equal(rd.hdr.epoch, EPOCH);
		assert_int_equal(rd.hdr.flags, 0);
		while (rc_frame_reader_next(&rd, &ev)) {
			assert_int_equal(ev.gseq, next);
			assert_int_equal(ev.rseq, next - probe);
			assert_int_equal(ev.room_len, 1);
			next++;
		}
		nng_msg_free(msg);
	}
	nng_close(sub);
}

struct race {
	struct fixture *f;
	atomic_bool done;
};

static void *race_publisher(void *arg)
{
	struct race *r = arg;
	static const char req[] =
		"{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":\"a\"},{\"type\":\"t\"}]}";

	while (!atomic_load(&r->done)) {
		struct rc_buf reply;
		rc_buf_init(&reply);
		ops_handle(&r->f->br, req, sizeof(req) - 1, false, &reply);
		rc_buf_fini(&reply);
	}
	return NULL;
}

/* A replay without `after` means "all retained", even while publishes evict. */
static void test_replay_all_while_evicting(void **state)
{
	struct fixture *f = *state; /* history of 8 events */
	struct race r = { .f = f };
	pthread_t t;
	int failures = 0;

	assert_int_equal(pthread_create(&t, NULL, race_publisher, &r), 0);
	for (int i = 0; i < 3000; i++) {
		static const char *const reqs[] = { "{\"op\":\"replay\"}", "{\"op\":\"replay\",\"rooms\":[\"a\"]}" };
		size_t len;
		char *raw = call_raw(f, reqs[i % 2], strlen(reqs[i % 2]), &len);
		if (strstr(raw, "\"ok\":true") == NULL) {
			if (failures++ == 0)
				print_error("replay failed: %s\n", raw);
		}
		free(raw);
	}
	atomic_store(&r.done, true);
	pthread_join(t, NULL);
	assert_int_equal(failures, 0);
}

/* A publish that would pass the history's room limit: 503-worthy too_many_rooms, nothing published. */
static void test_too_many_rooms(void **state)
{
	struct fixture *f = *state;
	struct json_object *r;

	history_set_max_rooms(f->br.hist, 2);
	publish(f, "[{\"type\":\"t\",\"room_id\":\"a\"},{\"type\":\"t\",\"room_id\":\"b\"},{\"type\":\"t\"}]", 3);
	assert_error(call(f, "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":\"a\"},"
			     "{\"type\":\"t\",\"room_id\":\"c\"}]}"),
		     "too_many_rooms", "events");
	assert_int_equal(last_gseq(f), 3);
	/* the rooms it has go on */
	assert_int_equal(publish(f, "[{\"type\":\"t\",\"room_id\":\"b\"}]", 1), 4);
	r = call(f, "{\"op\":\"stats\"}");
	assert_int_equal(json_object_get_int64(jget(r, "rooms")), 2);
	assert_true(json_object_get_int64(jget(r, "room_bytes")) > 0);
	json_object_put(r);
}

/*
 * The api's `key` per event: the same key again is answered with the
 * original id and nothing is published; the key is taken out of the event
 * (never in a replay); a bad key refuses the batch; stats count the keys.
 */
static void test_publish_keys(void **state)
{
	struct fixture *f = *state;
	struct json_object *r, *ids, *idem;
	char *raw;

	r = call(f,
		 "{\"op\":\"publish\",\"events\":[{\"key\":\"k1\",\"type\":\"a\"},{\"type\":\"b\",\"key\":\"k2\"}]}");
	assert_ok(r);
	json_object_put(r);
	r = call(f, "{\"op\":\"publish\",\"events\":[{\"type\":\"c\",\"key\":\"k3\"},{\"type\":\"b\",\"key\":\"k2\"},"
		    "{\"type\":\"d\",\"key\":\"k3\"}]}");
	assert_ok(r);
	ids = jget(r, "ids");
	assert_int_equal(json_object_array_length(ids), 3);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ids, 0)), EPOCH_STR "-3");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ids, 1)), EPOCH_STR "-2");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ids, 2)), EPOCH_STR "-3");
	json_object_put(r);
	assert_int_equal(last_gseq(f), 3);
	raw = replay_raw_after(f, 0);
	if (strstr(raw, "key") != NULL || strstr(raw, "{\"type\":\"a\"}") == NULL ||
	    strstr(raw, "{\"type\":\"c\"}") == NULL)
		fail_msg("keys delivered or events changed: %s", raw);
	free(raw);
	r = call(f,
		 "{\"op\":\"publish\",\"events\":[{\"type\":\"e\",\"key\":\"k4\"},{\"type\":\"f\",\"key\":\"a b\"}]}");
	assert_error(r, "invalid_event", "events[1].key must be 1-128 bytes");
	assert_int_equal(last_gseq(f), 3);
	r = call(f, "{\"op\":\"stats\"}");
	assert_ok(r);
	idem = jget(r, "idempotency");
	assert_int_equal(json_object_get_int64(jget(idem, "keys")), 3);
	assert_int_equal(json_object_get_int64(jget(idem, "hits")), 2);
	assert_int_equal(json_object_get_int64(jget(idem, "window_ms")), 120000);
	assert_int_equal(json_object_get_int64(jget(r, "events_published")), 3);
	json_object_put(r);
}

/* Runs req on ops_handle; returns its outcome and leaves its reply (maybe empty) in reply. */
static enum ops_outcome handle(struct fixture *f, const char *req, struct rc_buf *reply)
{
	size_t len = strlen(req);
	char *copy = malloc(len);
	enum ops_outcome out;

	assert_non_null(copy);
	memcpy(copy, req, len);
	rc_buf_init(reply);
	out = ops_handle(&f->br, copy, len, false, reply);
	free(copy);
	return out;
}

/*
 * Reads the bus (up to 5 s) until an index carries the acknowledgement of
 * request (gw, req); returns its gseqs in out (at most max), and their count.
 */
static uint32_t bus_wait_ack(nng_socket sub, uint64_t gw, uint64_t req, uint64_t *out, uint32_t max)
{
	for (int i = 0; i < 1000; i++) {
		struct rc_bus_msg bm;
		struct rc_index_reader ir;
		struct rc_ack_reader ar;
		struct rc_ack a;
		nng_msg *msg;
		size_t len;
		int rv = nng_recvmsg(sub, &msg, 0);

		if (rv == NNG_ETIMEDOUT)
			fail_msg("no acknowledgement of %llx-%llu on the bus", (unsigned long long)gw,
				 (unsigned long long)req);
		assert_int_equal(rv, 0);
		assert_int_equal(rc_bus_msg_parse(&bm, nng_msg_body(msg), nng_msg_len(msg)), RC_OK);
		if (!bm.index) {
			nng_msg_free(msg);
			continue;
		}
		assert_int_equal(rc_index_reader_init(&ir, bm.body, bm.body_len), RC_OK);
		len = bm.body_len;
		assert_int_equal(rc_index_acks(bm.body, &len, &ar), RC_OK);
		while (rc_ack_next(&ar, &a)) {
			if (a.gw != gw || a.req != req)
				continue;
			/* the flush that carries it has its events, or they went before (a tick) */
			for (uint32_t k = 0; k < a.n; k++) {
				assert_true(rc_ack_gseq(&a, k) <= ir.hdr.last_gseq);
				if (k < max)
					out[k] = rc_ack_gseq(&a, k);
			}
			nng_msg_free(msg);
			return a.n;
		}
		nng_msg_free(msg);
	}
	fail_msg("no acknowledgement among 1000 bus messages");
	return 0;
}

/*
 * A publish with an "ack" token is answered on the bus: no api reply, and
 * the index of a flush names the token and the ids (also the originals of
 * known keys). Whatever is not a success is still an api reply.
 */
static void test_publish_ack_on_bus(void **state)
{
	struct fixture *f = *state;
	struct rc_buf reply;
	uint64_t probe, g[4];
	nng_socket sub;
	nng_msg *msg;
	int rv;

	assert_int_equal(nng_sub0_open(&sub), 0);
	assert_int_equal(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 100), 0);
	assert_int_equal(nng_dial(sub, f->url, NULL, 0), 0);
	/* the subscriber is attached once a probe's flush arrives */
	probe = publish(f, "[{\"type\":\"probe\"}]", 1);
	for (int tries = 0; (rv = nng_recvmsg(sub, &msg, 0)) != 0; tries++) {
		assert_true(tries < 100);
		probe = publish(f, "[{\"type\":\"probe\"}]", 1);
	}
	nng_msg_free(msg);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 5000), 0);

	assert_int_equal(
		handle(f,
		       "{\"op\":\"publish\",\"ack\":\"00000000000000ff-9\",\"events\":[{\"type\":\"a\",\"room_id\":"
		       "\"r1\"},{\"type\":\"b\",\"key\":\"k1\"}]}",
		       &reply),
		OPS_DONE_BUS);
	assert_int_equal(reply.len, 0);
	rc_buf_fini(&reply);
	assert_int_equal(bus_wait_ack(sub, 0xff, 9, g, 4), 2);
	assert_true(g[0] > probe);
	assert_int_equal(g[1], g[0] + 1);
	assert_int_equal(last_gseq(f), g[1]);

	/* a known key publishes nothing, and is acknowledged with the original id */
	assert_int_equal(handle(f,
				"{\"op\":\"publish\",\"ack\":\"0123456789abcdef-18446744073709551615\",\"events\":["
				"{\"type\":\"b\",\"key\":\"k1\"}]}",
				&reply),
			 OPS_DONE_BUS);
	rc_buf_fini(&reply);
	assert_int_equal(bus_wait_ack(sub, 0x0123456789abcdefULL, UINT64_MAX, g + 2, 2), 1);
	assert_int_equal(g[2], g[1]);
	assert_int_equal(last_gseq(f), g[1]);

	/* refusals are api replies, as without a token */
	assert_int_equal(handle(f,
				"{\"op\":\"publish\",\"ack\":\"00000000000000ff-10\",\"events\":[{\"room_id\":\"r\"}]}",
				&reply),
			 OPS_DONE);
	assert_non_null(strstr(reply.data, "invalid_event"));
	rc_buf_fini(&reply);
	assert_error(call(f, "{\"op\":\"publish\",\"ack\":\"ff-1\",\"events\":[{\"type\":\"a\"}]}"), "invalid_field",
		     "ack");
	assert_error(call(f, "{\"op\":\"publish\",\"ack\":\"00000000000000FF-1\",\"events\":[{\"type\":\"a\"}]}"),
		     "invalid_field", "ack");
	assert_error(call(f,
			  "{\"op\":\"publish\",\"ack\":\"00000000000000ff-18446744073709551616\",\"events\":[{\"type\""
			  ":\"a\"}]}"),
		     "invalid_field", "ack");
	assert_error(call(f, "{\"op\":\"publish\",\"ack\":7,\"events\":[{\"type\":\"a\"}]}"), "invalid_field", "ack");
	assert_int_equal(last_gseq(f), g[1]);
	nng_close(sub);
}

/*
 * The op "acks" answers, for a gateway that lost the bus message, the ids
 * of the publishes it acknowledged on the bus, and names the tokens it does
 * not know (never published with a token, refused, answered on the api).
 */
static void test_acks_op(void **state)
{
	struct fixture *f = *state;
	struct json_object *r, *acks, *ids, *unknown;
	struct rc_buf reply, req;
	char want[RC_ID_MAX];
	uint64_t first;

	first = last_gseq(f) + 1;
	assert_int_equal(handle(f,
				"{\"op\":\"publish\",\"ack\":\"00000000000000ff-9\",\"events\":[{\"type\":\"a\"},"
				"{\"type\":\"b\",\"key\":\"k1\"}]}",
				&reply),
			 OPS_DONE_BUS);
	rc_buf_fini(&reply);
	/* the same key again: acknowledged with the original id */
	assert_int_equal(handle(f,
				"{\"op\":\"publish\",\"ack\":\"00000000000000ff-10\",\"events\":[{\"type\":\"b\","
				"\"key\":\"k1\"}]}",
				&reply),
			 OPS_DONE_BUS);
	rc_buf_fini(&reply);
	/* refused: an api reply, nothing to remember */
	assert_int_equal(handle(f,
				"{\"op\":\"publish\",\"ack\":\"00000000000000ff-11\",\"events\":[{\"room_id\":\"r\"}]}",
				&reply),
			 OPS_DONE);
	rc_buf_fini(&reply);

	r = call(f, "{\"op\":\"acks\",\"tokens\":[\"00000000000000ff-9\",\"00000000000000ff-11\","
		    "\"00000000000000ff-10\",\"0000000000000abc-9\"]}");
	assert_ok(r);
	acks = jget(r, "acks");
	assert_non_null(acks);
	assert_int_equal(json_object_object_length(acks), 2);
	ids = jget(acks, "00000000000000ff-9");
	assert_non_null(ids);
	assert_int_equal(json_object_array_length(ids), 2);
	rc_id_format(want, EPOCH, first);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ids, 0)), want);
	rc_id_format(want, EPOCH, first + 1);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ids, 1)), want);
	ids = jget(acks, "00000000000000ff-10");
	assert_non_null(ids);
	assert_int_equal(json_object_array_length(ids), 1);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ids, 0)), want);
	unknown = jget(r, "unknown");
	assert_non_null(unknown);
	assert_int_equal(json_object_array_length(unknown), 2);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(unknown, 0)), "00000000000000ff-11");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(unknown, 1)), "0000000000000abc-9");
	json_object_put(r);

	/* stats: what the memory holds and how it was asked */
	r = call(f, "{\"op\":\"stats\"}");
	assert_ok(r);
	{
		struct json_object *am = jget(r, "ack_memory");
		assert_non_null(am);
		assert_int_equal(json_object_get_int64(jget(am, "entries")), 2);
		assert_true(json_object_get_int64(jget(am, "bytes")) > 0);
		assert_int_equal(json_object_get_int64(jget(am, "limit_bytes")), 1 << 20);
		assert_int_equal(json_object_get_int64(jget(am, "forgotten")), 0);
		assert_int_equal(json_object_get_int64(jget(am, "hits")), 2);
		assert_int_equal(json_object_get_int64(jget(am, "misses")), 2);
	}
	json_object_put(r);

	/* none asked: none answered */
	r = call(f, "{\"op\":\"acks\",\"tokens\":[]}");
	assert_ok(r);
	assert_int_equal(json_object_object_length(jget(r, "acks")), 0);
	assert_int_equal(json_object_array_length(jget(r, "unknown")), 0);
	json_object_put(r);

	/* a broker without the memory (NULL) knows none */
	{
		struct ackmem *keep = f->br.acks;
		f->br.acks = NULL;
		r = call(f, "{\"op\":\"acks\",\"tokens\":[\"00000000000000ff-9\"]}");
		assert_ok(r);
		assert_int_equal(json_object_object_length(jget(r, "acks")), 0);
		assert_int_equal(json_object_array_length(jget(r, "unknown")), 1);
		json_object_put(r);
		f->br.acks = keep;
	}

	assert_error(call(f, "{\"op\":\"acks\"}"), "invalid_field", "tokens");
	assert_error(call(f, "{\"op\":\"acks\",\"tokens\":\"00000000000000ff-9\"}"), "invalid_field", "tokens");
	assert_error(call(f, "{\"op\":\"acks\",\"tokens\":[\"ff-9\"]}"), "invalid_field", "tokens[0]");
	assert_error(call(f, "{\"op\":\"acks\",\"tokens\":[\"00000000000000ff-9\",7]}"), "invalid_field", "tokens[1]");
	rc_buf_init(&req);
	rc_buf_puts(&req, "{\"op\":\"acks\",\"tokens\":[");
	for (int i = 0; i <= RC_ACKS_MAX_TOKENS; i++)
		rc_buf_printf(&req, "%s\"00000000000000ff-%d\"", i ? "," : "", i);
	rc_buf_puts(&req, "]}");
	assert_error(call(f, req.data), "invalid_field", "at most");
	rc_buf_fini(&req);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ping_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_strict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nesting_one_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_evicted, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_request_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replies_are_utf8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutting_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_replays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bus_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_all_while_evicting, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_rooms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_ack_on_bus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acks_op, setup, teardown),
	};

	return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
