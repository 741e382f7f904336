/*
 * test_frame.c - the bus frame codec: round trips, the byte layout, topics,
 * the flush index, merging a flush's room frames, and that every truncated,
 * corrupt or random frame or index is rejected without reading past
 * its buffer (buffers are malloc'ed to their exact size, so the ASan build
 * turns any overread into a failure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "error.h"
#include "event.h"
#include "frame.h"

/* A frame in a malloc'ed buffer of exactly len bytes. */
struct frame {
	uint8_t *buf;
	size_t len;
};

static struct rc_frame_event event(uint64_t gseq, uint64_t rseq, const char *room, const char *json)
{
	struct rc_frame_event ev = {
		.gseq = gseq,
		.rseq = rseq,
		.room = room,
		.room_len = (uint16_t)strlen(room),
		.json = json,
		.json_len = (uint32_t)strlen(json),
	};
	return ev;
}

static struct frame build(const struct rc_frame_hdr *hdr, const struct rc_frame_event *evs, size_t n)
{
	struct frame f;
	size_t off = RC_FRAME_HDR_SIZE;

	f.len = RC_FRAME_HDR_SIZE;
	for (size_t i = 0; i < n; i++)
		f.len += rc_frame_event_size(evs[i].room_len, evs[i].json_len);
	f.buf = malloc(f.len);
	assert_non_null(f.buf);
	rc_frame_put_header(f.buf, hdr);
	for (size_t i = 0; i < n; i++)
		off += rc_frame_put_event(f.buf + off, &evs[i]);
	assert_int_equal(off, f.len);
	return f;
}

/* A copy of the first len bytes of f (len may exceed f.len: zero-filled). */
static struct frame copy(const struct frame *f, size_t len)
{
	struct frame c = { malloc(len ? len : 1), len };

	assert_non_null(c.buf);
	memset(c.buf, 0, len);
	memcpy(c.buf, f->buf, len < f->len ? len : f->len);
	return c;
}

/* Three events, the middle one global, in a valid frame. */
static struct frame sample(void)
{
	const struct rc_frame_event evs[] = {
		event(10, 1, "room-1", "{\"type\":\"a\",\"room_id\":\"room-1\"}"),
		event(11, 1, "", "{\"type\":\"user.created\"}"),
		event(13, 2, "room-1", "{\"type\":\"b\",\"room_id\":\"room-1\"}"),
	};
	const struct rc_frame_hdr hdr = { .epoch = 0x6f1c2a9e, .last_gseq = 13, .count = 3 };

	return build(&hdr, evs, 3);
}

/* Offset of event i in sample(). */
static size_t sample_event_off(const struct frame *f, int i)
{
	size_t off = RC_FRAME_HDR_SIZE;
	struct rc_frame_reader r;
	struct rc_frame_event ev;

	assert_int_equal(rc_frame_reader_init(&r, f->buf, f->len), RC_OK);
	while (i-- > 0) {
		assert_int_equal(rc_frame_reader_next(&r, &ev), 1);
		off += rc_frame_event_size(ev.room_len, ev.json_len);
	}
	return off;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Expects f to be rejected with want (or either error when want is 0). */
static void assert_rejected(const struct frame *f, int want)
{
	struct rc_frame_reader r;
	struct rc_frame_event ev;
	int rv = rc_frame_reader_init(&r, f->buf, f->len);

	if (want != 0 && rv != want)
		fail_msg("got %d, want %d", rv, want);
	if (rv != RC_ETRUNC && rv != RC_EPROTO)
		fail_msg("got %d, want RC_ETRUNC or RC_EPROTO", rv);
	/* a rejected frame delivers nothing */
	assert_int_equal(rc_frame_reader_next(&r, &ev), 0);
}

static void test_round_trip_one(void **state)
{
	static const char json[] = "{\"type\":\"message.created\",\"room_id\":\"room-1\"}";
	const struct rc_frame_event in = event(1042, 7, "room-1", json);
	const struct rc_frame_hdr hdr = { .epoch = 0x6f1c2a9e, .last_gseq = 1042, .count = 1 };
	struct frame f = build(&hdr, &in, 1);
	struct rc_frame_reader r;
	struct rc_frame_event ev;

	(void)state;
	assert_int_equal(f.len, RC_FRAME_HDR_SIZE + RC_FRAME_EVENT_HDR_SIZE + 6 + strlen(json));
	assert_int_equal(rc_frame_reader_init(&r, f.buf, f.len), RC_OK);
	assert_true(r.hdr.epoch == 0x6f1c2a9e);
	assert_true(r.hdr.last_gseq == 1042);
	assert_int_equal(r.hdr.count, 1);
	assert_int_equal(r.hdr.flags, 0);
	assert_int_equal(rc_frame_reader_next(&r, &ev), 1);
	assert_true(ev.gseq == 1042);
	assert_true(ev.rseq == 7);
	assert_int_equal(ev.room_len, 6);
	assert_memory_equal(ev.room, "room-1", 6);
	assert_int_equal(ev.json_len, strlen(json));
	assert_memory_equal(ev.json, json, ev.json_len);
	/* events point into the frame, which the reader only borrows */
	assert_true((const uint8_t *)ev.json >= f.buf && (const uint8_t *)ev.json + ev.json_len == f.buf + f.len);
	assert_int_equal(rc_frame_reader_next(&r, &ev), 0);
	assert_int_equal(rc_frame_reader_next(&r, &ev), 0);
	free(f.buf);
}

#define MANY 1000

static void test_round_trip_many(void **state)
{
	static const char *const rooms[] = { "room-1", "", "team:42@chat.example", "r", "" };
	static struct rc_frame_event in[MANY];
	static char json[MANY][48];
	uint64_t rseq[5] = { 0 };
	struct rc_frame_hdr hdr = { .epoch = UINT64_MAX, .count = MANY, .flags = 0 };
	struct rc_frame_reader r;
	struct rc_frame_event ev;
	struct frame f;
	size_t globals = 0;

	(void)state;
	for (int i = 0; i < MANY; i++) {
		int room = i % 5;
		/* "" and the fifth room share the global sequence */
		int seq = room == 4 ? 1 : room;

		snprintf(json[i], sizeof(json[i]), "{\"type\":\"t\",\"n\":%d}", i);
		in[i] = event(UINT64_MAX - 2 * MANY + 2 * (uint64_t)i, ++rseq[seq], rooms[room], json[i]);
	}
	hdr.last_gseq = in[MANY - 1].gseq;
	f = build(&hdr, in, MANY);

	assert_int_equal(rc_frame_reader_init(&r, f.buf, f.len), RC_OK);
	assert_int_equal(r.hdr.count, MANY);
	assert_true(r.hdr.epoch == UINT64_MAX);
	assert_true(r.hdr.last_gseq == in[MANY - 1].gseq);
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(rc_frame_reader_next(&r, &ev), 1);
		assert_true(ev.gseq == in[i].gseq);
		assert_true(ev.rseq == in[i].rseq);
		assert_int_equal(ev.room_len, in[i].room_len);
		assert_memory_equal(ev.room, in[i].room, ev.room_len);
		assert_int_equal(ev.json_len, in[i].json_len);
		assert_memory_equal(ev.json, in[i].json, ev.json_len);
		globals += ev.room_len == 0;
	}
	assert_int_equal(globals, 2 * MANY / 5);
	assert_int_equal(rc_frame_reader_next(&r, &ev), 0);
	free(f.buf);
}

static void test_tick(void **state)
{
	const struct rc_frame_hdr hdr = { .epoch = 0x6f1c2a9e, .last_gseq = 1042, .count = 0, .flags = RC_FRAME_TICK };
	struct frame f = build(&hdr, NULL, 0);
	struct rc_frame_reader r;
	struct rc_frame_event ev;

	(void)state;
	assert_int_equal(f.len, RC_FRAME_HDR_SIZE);
	assert_int_equal(rc_frame_reader_init(&r, f.buf, f.len), RC_OK);
	assert_int_equal(r.hdr.flags & RC_FRAME_TICK, RC_FRAME_TICK);
	assert_int_equal(r.hdr.count, 0);
	assert_true(r.hdr.epoch == 0x6f1c2a9e);
	assert_true(r.hdr.last_gseq == 1042);
	assert_int_equal(rc_frame_reader_next(&r, &ev), 0);
	free(f.buf);

	/* a tick before the first event: last_gseq 0 */
	const struct rc_frame_hdr first = { .epoch = 1, .last_gseq = 0, .count = 0, .flags = RC_FRAME_TICK };
	f = build(&first, NULL, 0);
	assert_int_equal(rc_frame_reader_init(&r, f.buf, f.len), RC_OK);
	assert_true(r.hdr.last_gseq == 0);
	free(f.buf);
}

/* The documented little-endian layout, byte for byte (docs/PROTOCOL.md). */
static void test_wire_layout(void **state)
{
	static const uint8_t want[] = {
		'R', 'C', 'F', '1', 1, RC_FRAME_TICK, 0, 0,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* epoch */
		0x11, 0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, /* last_gseq */
		0x03, 0x02, 0x01, 0x00,                         /* count */
		0x11, 0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, /* gseq */
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* rseq */
		0x01, 0x00,                                     /* room_len */
		0x02, 0x00, 0x00, 0x00,                         /* json_len */
		'r', '{', '}',
	};
	const struct rc_frame_hdr hdr = {
		.epoch = 0x0102030405060708ULL, .last_gseq = 0x0a0b0c0d0e0f1011ULL, .count = 0x010203,
		.flags = RC_FRAME_TICK,
	};
	const struct rc_frame_event ev = event(0x0a0b0c0d0e0f1011ULL, 2, "r", "{}");
	uint8_t buf[sizeof(want)];

	(void)state;
	assert_int_equal(RC_FRAME_HDR_SIZE, 28);
	assert_int_equal(RC_FRAME_EVENT_HDR_SIZE, 22);
	assert_int_equal(rc_frame_event_size(1, 2), 25);
	rc_frame_put_header(buf, &hdr);
	assert_int_equal(rc_frame_put_event(buf + RC_FRAME_HDR_SIZE, &ev), 25);
	assert_memory_equal(buf, want, sizeof(want));
}

/* The reader works on any alignment (nng message bodies promise none). */
static void test_unaligned(void **state)
{
	struct frame f = sample();
	uint8_t *odd = malloc(f.len + 1);
	struct rc_frame_reader r;
	struct rc_frame_event ev;
	int n = 0;

	(void)state;
	assert_non_null(odd);
	memcpy(odd + 1, f.buf, f.len);
	assert_int_equal(rc_frame_reader_init(&r, odd + 1, f.len), RC_OK);
	while (rc_frame_reader_next(&r, &ev) == 1)
		n++;
	assert_int_equal(n, 3);
	free(odd);
	free(f.buf);
}

/* Every proper prefix of a valid frame is rejected. */
static void test_truncation(void **state)
{
	struct frame f = sample();

	(void)state;
	for (size_t len = 0; len < f.len; len++) {
		struct frame c = copy(&f, len);

		assert_rejected(&c, len < RC_FRAME_HDR_SIZE ? RC_ETRUNC : 0);
		free(c.buf);
	}
	/* NULL with length 0 is just an empty frame */
	struct rc_frame_reader r;
	assert_int_equal(rc_frame_reader_init(&r, NULL, 0), RC_ETRUNC);
	free(f.buf);
}

static void test_bad_magic_version(void **state)
{
	struct frame f = sample(), c;

	(void)state;
	for (int i = 0; i < 4; i++) {
		c = copy(&f, f.len);
		c.buf[i] ^= 0x20;
		assert_rejected(&c, RC_EPROTO);
		free(c.buf);
	}
	static const uint8_t versions[] = { 0, 2, 0x31, 0xff };
	for (size_t i = 0; i < sizeof(versions); i++) {
		c = copy(&f, f.len);
		c.buf[4] = versions[i];
		assert_rejected(&c, RC_EPROTO);
		free(c.buf);
	}
	/* a short buffer that is clearly not a frame */
	c = copy(&f, 10);
	memcpy(c.buf, "HTTP/1.1 2", 10);
	assert_rejected(&c, RC_EPROTO);
	free(c.buf);
	free(f.buf);
}

static void test_bad_header(void **state)
{
	struct frame f = sample(), c;

	(void)state;
	/* epoch 0 */
	c = copy(&f, f.len);
	put_le(c.buf + 8, 0, 8);
	assert_rejected(&c, RC_EPROTO);
	free(c.buf);
	/* last_gseq below the last event */
	c = copy(&f, f.len);
	put_le(c.buf + 16, 12, 8);
	assert_rejected(&c, RC_EPROTO);
	free(c.buf);
	c = copy(&f, f.len);
	put_le(c.buf + 16, 0, 8);
	assert_rejected(&c, RC_EPROTO);
	free(c.buf);
	/* count larger than the events present */
	static const uint32_t counts[] = { 4, 5, 1000, UINT32_MAX };
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		c = copy(&f, f.len);
		put_le(c.buf + 24, counts[i], 4);
		assert_rejected(&c, 0);
		free(c.buf);
	}
	/* count smaller: the rest is trailing garbage */
	c = copy(&f, f.len);
	put_le(c.buf + 24, 2, 4);
	assert_rejected(&c, RC_EPROTO);
	free(c.buf);
	c = copy(&f, f.len);
	put_le(c.buf + 24, 0, 4);
	assert_rejected(&c, RC_EPROTO);
	free(c.buf);
	free(f.buf);
}

static void test_bad_sequence(void **state)
{
	static const char json[] = "{\"type\":\"t\"}";
	static const uint64_t bad[][3] = {
		{ 0, 1, 2 },  /* gseq 0 */
		{ 5, 5, 6 },  /* repeated */
		{ 5, 7, 6 },  /* going back */
		{ 5, 6, 8 },  /* above last_gseq (7) */
	};
	struct rc_frame_hdr hdr = { .epoch = 9, .last_gseq = 7, .count = 3 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rc_frame_event evs[3];
		struct frame f;

		for (int j = 0; j < 3; j++)
			evs[j] = event(bad[i][j], 1 + (uint64_t)j, "r", json);
		f = build(&hdr, evs, 3);
		assert_rejected(&f, RC_EPROTO);
		free(f.buf);
	}
	/* gaps are fine: a frame carries what the broker sent, in order */
	struct rc_frame_event ok[3] = { event(1, 1, "a", json), event(4, 1, "b", json), event(7, 2, "a", json) };
	struct rc_frame_reader r;
	struct frame f = build(&hdr, ok, 3);
	assert_int_equal(rc_frame_reader_init(&r, f.buf, f.len), RC_OK);
	free(f.buf);
}

static void test_bad_event_fields(void **state)
{
	static const char json[] = "{\"type\":\"t\"}";
	const struct rc_frame_hdr hdr = { .epoch = 9, .last_gseq = 2, .count = 2 };
	struct rc_frame_event evs[2];
	struct frame f;

	(void)state;
	/* rseq 0 */
	evs[0] = event(1, 1, "r", json);
	evs[1] = event(2, 0, "", json);
	f = build(&hdr, evs, 2);
	assert_rejected(&f, RC_EPROTO);
	free(f.buf);
	/* json_len 0 */
	evs[1] = event(2, 2, "r", "");
	f = build(&hdr, evs, 2);
	assert_rejected(&f, RC_EPROTO);
	free(f.buf);
	/* room bytes that are not a valid room id */
	static const char *const rooms[] = { "a b", "a/b", "a#b", "caf\xc3\xa9", "\n", "a,b" };
	for (size_t i = 0; i < sizeof(rooms) / sizeof(rooms[0]); i++) {
		evs[1] = event(2, 2, rooms[i], json);
		f = build(&hdr, evs, 2);
		assert_rejected(&f, RC_EPROTO);
		free(f.buf);
	}
	/* a NUL inside the room */
	evs[1] = event(2, 2, "ab", json);
	f = build(&hdr, evs, 2);
	f.buf[f.len - strlen(json) - 1] = '\0';
	assert_rejected(&f, RC_EPROTO);
	free(f.buf);
	/* a room longer than RC_ROOM_MAX */
	char room[RC_ROOM_MAX + 2];
	memset(room, 'r', sizeof(room) - 1);
	room[sizeof(room) - 1] = '\0';
	evs[1] = event(2, 2, room, json);
	f = build(&hdr, evs, 2);
	assert_rejected(&f, RC_EPROTO);
	free(f.buf);
	room[RC_ROOM_MAX] = '\0';
	evs[1] = event(2, 2, room, json);
	f = build(&hdr, evs, 2);
	struct rc_frame_reader r;
	assert_int_equal(rc_frame_reader_init(&r, f.buf, f.len), RC_OK);
	free(f.buf);
}

/* Lengths that point past the end of the frame. */
static void test_bad_lengths(void **state)
{
	struct frame f = sample(), c;
	size_t last = sample_event_off(&f, 2);
	static const uint64_t room_lens[] = { 0xffff, 1000, 7 };
	static const uint64_t json_lens[] = { 0xffffffff, 0x7fffffff, 0x10000, 1000 };

	(void)state;
	for (size_t i = 0; i < sizeof(room_lens) / sizeof(room_lens[0]); i++) {
		c = copy(&f, f.len);
		put_le(c.buf + last + 16, room_lens[i], 2);
		assert_rejected(&c, 0);
		free(c.buf);
	}
	for (size_t i = 0; i < sizeof(json_lens) / sizeof(json_lens[0]); i++) {
		c = copy(&f, f.len);
		put_le(c.buf + last + 18, json_lens[i], 4);
		assert_rejected(&c, RC_ETRUNC);
		free(c.buf);
	}
	free(f.buf);
}

static void test_trailing_garbage(void **state)
{
	struct frame f = sample(), c;
	struct frame two;

	(void)state;
	for (size_t extra = 1; extra <= 30; extra++) {
		c = copy(&f, f.len + extra);
		assert_rejected(&c, RC_EPROTO);
		free(c.buf);
	}
	/* a whole valid event beyond count */
	two = copy(&f, f.len);
	put_le(two.buf + 24, 2, 4);
	put_le(two.buf + 16, 11, 8);
	assert_rejected(&two, RC_EPROTO);
	free(two.buf);
	free(f.buf);
}

/* xorshift64*: a fixed seed keeps failures reproducible. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Reads a frame the way a gateway would and checks what an accepted one promises. */
static void read_any(const uint8_t *buf, size_t len)
{
	struct rc_frame_reader r;
	struct rc_frame_event ev;
	uint64_t prev = 0;
	uint32_t n = 0;
	int rv = rc_frame_reader_init(&r, buf, len);

	if (rv != RC_OK) {
		assert_true(rv == RC_ETRUNC || rv == RC_EPROTO);
		assert_int_equal(rc_frame_reader_next(&r, &ev), 0);
		return;
	}
	assert_true(r.hdr.epoch != 0);
	while (rc_frame_reader_next(&r, &ev) == 1) {
		const uint8_t *room = (const uint8_t *)ev.room, *json = (const uint8_t *)ev.json;

		assert_true(room >= buf + RC_FRAME_HDR_SIZE && room + ev.room_len <= buf + len);
		assert_true(json >= room + ev.room_len && json + ev.json_len <= buf + len);
		assert_true(ev.gseq > prev && ev.gseq <= r.hdr.last_gseq);
		assert_true(ev.rseq != 0 && ev.json_len != 0);
		assert_true(ev.room_len == 0 || rc_room_valid(ev.room, ev.room_len));
		prev = ev.gseq;
		n++;
	}
	assert_int_equal(n, r.hdr.count);
}

#define FUZZ_ITERATIONS 20000

static void test_fuzz_random_bytes(void **state)
{
	(void)state;
	for (int i = 0; i < FUZZ_ITERATIONS; i++) {
		size_t len = (size_t)(rng() % 200);
		uint8_t *buf = malloc(len ? len : 1);

		assert_non_null(buf);
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rng();
		/* mostly a real header, so the event decoding gets exercised */
		if (len >= 5 && rng() % 4 != 0) {
			memcpy(buf, "RCF1", 4);
			buf[4] = RC_FRAME_VERSION;
			if (len >= 28 && rng() % 2)
				put_le(buf + 24, rng() % 4, 4);
		}
		read_any(buf, len);
		free(buf);
	}
}

static void test_fuzz_mutations(void **state)
{
	struct frame f = sample();

	(void)state;
	for (int i = 0; i < FUZZ_ITERATIONS; i++) {
		size_t len = f.len;
		struct frame c;
		int flips = 1 + (int)(rng() % 4);

		/* sometimes cut or extend the frame, then flip a few bytes */
		switch (rng() % 4) {
		case 0: len = (size_t)(rng() % (f.len + 1)); break;
		case 1: len = f.len + (size_t)(rng() % 8); break;
		default: break;
		}
		c = copy(&f, len);
		for (int k = 0; k < flips && len > 0; k++) {
			size_t at = (size_t)(rng() % len);

			if (rng() % 2)
				c.buf[at] ^= (uint8_t)(1u << (rng() % 8));
			else
				c.buf[at] = (uint8_t)rng();
		}
		read_any(c.buf, c.len);
		free(c.buf);
	}
	free(f.buf);
}

/* ---- bus topics, the index, and merging a flush ---- */

/* A message of exactly len bytes: topic bytes then body. */
static struct frame message(const char *topic, size_t tlen, const struct frame *body)
{
	struct frame m = { malloc(tlen + body->len + 1), tlen + body->len };

	assert_non_null(m.buf);
	memcpy(m.buf, topic, tlen);
	if (body->len > 0)
		memcpy(m.buf + tlen, body->buf, body->len);
	return m;
}

static void test_bus_topics(void **state)
{
	char topic[RC_BUS_TOPIC_MAX];
	char room[RC_ROOM_MAX + 1];
	struct frame f = sample(), m;
	struct rc_bus_msg bm;
	size_t n;

	(void)state;
	/* a room's topic is "r" room NUL: "r" "ab" never prefixes "r" "abc" */
	n = rc_bus_topic(topic, "room-1", 6);
	assert_int_equal(n, 8);
	assert_memory_equal(topic, "rroom-1\0", 8);
	n = rc_bus_topic(topic, NULL, 0);
	assert_int_equal(n, 2);
	assert_memory_equal(topic, "g\0", 2);
	/* the longest room id fits */
	memset(room, 'x', RC_ROOM_MAX);
	assert_int_equal(rc_bus_topic(topic, room, RC_ROOM_MAX), RC_BUS_TOPIC_MAX);

	rc_bus_topic(topic, "room-1", 6);
	m = message(topic, 8, &f);
	assert_int_equal(rc_bus_msg_parse(&bm, m.buf, m.len), RC_OK);
	assert_false(bm.index);
	assert_int_equal(bm.room_len, 6);
	assert_memory_equal(bm.room, "room-1", 6);
	assert_ptr_equal(bm.body, m.buf + 8);
	assert_int_equal(bm.body_len, f.len);
	free(m.buf);

	m = message("g", 2, &f);
	assert_int_equal(rc_bus_msg_parse(&bm, m.buf, m.len), RC_OK);
	assert_false(bm.index);
	assert_int_equal(bm.room_len, 0);
	free(m.buf);

	m = message(RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN, &f);
	assert_int_equal(rc_bus_msg_parse(&bm, m.buf, m.len), RC_OK);
	assert_true(bm.index);
	free(m.buf);

	/* no NUL, an unknown kind, a bad room, an empty room, a topic longer than any room */
	static const struct {
		const char *t;
		size_t len;
	} bad[] = { { "rroom", 5 }, { "x\0", 2 }, { "rro om\0", 7 }, { "r\0", 2 }, { "", 0 }, { "gg\0", 3 } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct frame e = { NULL, 0 };
		m = message(bad[i].t, bad[i].len, &e);
		assert_int_equal(rc_bus_msg_parse(&bm, m.buf, m.len), RC_EPROTO);
		free(m.buf);
	}
	memset(topic, 'r', sizeof(topic));
	assert_int_equal(rc_bus_msg_parse(&bm, topic, sizeof(topic)), RC_EPROTO);
	free(f.buf);
}

/* An index of the given entries in a buffer of exact size. */
static struct frame build_index(uint8_t flags, uint64_t first, uint64_t last, const struct rc_index_entry *es,
				size_t n)
{
	struct rc_frame_hdr hdr = {
		.epoch = 0x6f1c2a9e, .last_gseq = last, .count = (uint32_t)n, .flags = RC_FRAME_INDEX | flags
	};
	struct frame f = { NULL, RC_INDEX_HDR_SIZE };
	size_t off = RC_INDEX_HDR_SIZE;

	for (size_t i = 0; i < n; i++)
		f.len += rc_index_entry_size(es[i].room_len);
	f.buf = malloc(f.len);
	assert_non_null(f.buf);
	rc_index_put_header(f.buf, &hdr, first);
	for (size_t i = 0; i < n; i++)
		off += rc_index_put_entry(f.buf + off, &es[i]);
	assert_int_equal(off, f.len);
	return f;
}

/* Every cut of an index f, and f with one byte too many, is rejected. */
static void assert_index_cuts_rejected(const struct frame *f)
{
	struct rc_index_reader r;
	struct frame c;

	for (size_t len = 0; len < f->len; len++) {
		c = copy(f, len);
		int rv = rc_index_reader_init(&r, c.buf, c.len);
		assert_true(rv == RC_ETRUNC || rv == RC_EPROTO);
		free(c.buf);
	}
	c = copy(f, f->len + 1);
	assert_int_equal(rc_index_reader_init(&r, c.buf, c.len), RC_EPROTO);
	free(c.buf);
}

static void test_index_round_trip(void **state)
{
	const struct rc_index_entry es[] = { { "room-1", 6, 2 }, { NULL, 0, 1 }, { "b", 1, 40 } };
	struct frame f = build_index(0, 10, 52, es, 3);
	struct rc_index_reader r;
	struct rc_index_entry e;

	(void)state;
	assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_OK);
	assert_int_equal(r.hdr.epoch, 0x6f1c2a9e);
	assert_int_equal(r.first_gseq, 10);
	assert_int_equal(r.hdr.last_gseq, 52);
	assert_int_equal(r.hdr.count, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rc_index_reader_next(&r, &e), 1);
		assert_int_equal(e.room_len, es[i].room_len);
		assert_int_equal(e.events, es[i].events);
		if (e.room_len)
			assert_memory_equal(e.room, es[i].room, e.room_len);
	}
	assert_int_equal(rc_index_reader_next(&r, &e), 0);
	/* a data frame is not an index, an index not a data frame */
	assert_int_equal(rc_frame_reader_init(&(struct rc_frame_reader){ 0 }, f.buf, f.len) == RC_OK, 0);
	free(f.buf);
	f = sample();
	assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_EPROTO);
	free(f.buf);

	/* the idle tick: no entries, first = last + 1 */
	f = build_index(RC_FRAME_TICK, 8, 7, NULL, 0);
	assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_OK);
	assert_true(r.hdr.flags & RC_FRAME_TICK);
	assert_int_equal(rc_index_reader_next(&r, &e), 0);
	free(f.buf);
}

static void test_index_rejects(void **state)
{
	static const struct rc_index_entry one[] = { { "a", 1, 3 } };
	static const struct rc_index_entry zero[] = { { "a", 1, 0 } };
	static const struct rc_index_entry badroom[] = { { "a b", 3, 1 } };
	struct rc_index_reader r;
	struct frame f, c;

	(void)state;
	/* first after last + 1, first 0, a tick with entries or a gap, an entry of 0 events, a bad room */
	static const struct {
		uint8_t flags;
		uint64_t first, last;
		const struct rc_index_entry *es;
		size_t n;
	} bad[] = {
		{ 0, 9, 7, one, 1 },	 { 0, 0, 7, one, 1 },  { RC_FRAME_TICK, 5, 7, one, 1 },
		{ RC_FRAME_TICK, 5, 7, NULL, 0 }, { 0, 5, 7, zero, 1 }, { 0, 5, 7, badroom, 1 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f = build_index(bad[i].flags, bad[i].first, bad[i].last, bad[i].es, bad[i].n);
		assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_EPROTO);
		free(f.buf);
	}
	/* every cut and one extra byte */
	f = build_index(0, 5, 7, one, 1);
	assert_index_cuts_rejected(&f);
	/* random mutations never read outside the buffer */
	for (int i = 0; i < FUZZ_ITERATIONS; i++) {
		c = copy(&f, f.len);
		c.buf[rng() % c.len] = (uint8_t)rng();
		if (rc_index_reader_init(&r, c.buf, c.len) == RC_OK) {
			struct rc_index_entry e;
			while (rc_index_reader_next(&r, &e))
				assert_true(e.room_len == 0 || rc_room_valid(e.room, e.room_len));
		}
		free(c.buf);
	}
	free(f.buf);
}

/* A whole flush: an index (RC_FRAME_WHOLE, no entries) for first..last, then the frame of evs. */
static struct frame build_whole(uint64_t epoch, uint64_t first, uint64_t last, const struct rc_frame_hdr *fhdr,
				const struct rc_frame_event *evs, size_t n)
{
	struct rc_frame_hdr ihdr = { .epoch = epoch, .last_gseq = last, .flags = RC_FRAME_INDEX | RC_FRAME_WHOLE };
	struct frame fr = build(fhdr, evs, n), f = { NULL, RC_INDEX_HDR_SIZE + fr.len };

	f.buf = malloc(f.len);
	assert_non_null(f.buf);
	rc_index_put_header(f.buf, &ihdr, first);
	memcpy(f.buf + RC_INDEX_HDR_SIZE, fr.buf, fr.len);
	free(fr.buf);
	return f;
}

static void test_index_whole(void **state)
{
	const struct rc_frame_event evs[] = {
		event(30, 4, "a", "{\"n\":30}"),
		event(31, 1, "", "{\"n\":31}"),
		event(32, 9, "b", "{\"n\":32}"),
	};
	const struct rc_frame_hdr fhdr = { .epoch = 5, .last_gseq = 32, .count = 3 };
	struct rc_index_reader r;
	struct rc_index_entry e;
	struct rc_frame_event ev;
	struct frame f = build_whole(5, 30, 32, &fhdr, evs, 3);

	(void)state;
	assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_OK);
	assert_true(r.hdr.flags & RC_FRAME_WHOLE);
	assert_int_equal(r.first_gseq, 30);
	assert_int_equal(r.hdr.last_gseq, 32);
	assert_int_equal(rc_index_reader_next(&r, &e), 0);
	assert_int_equal(r.whole.hdr.count, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rc_frame_reader_next(&r.whole, &ev), 1);
		assert_int_equal(ev.gseq, evs[i].gseq);
		assert_int_equal(ev.rseq, evs[i].rseq);
		assert_int_equal(ev.room_len, evs[i].room_len);
		assert_memory_equal(ev.json, evs[i].json, ev.json_len);
	}
	assert_int_equal(rc_frame_reader_next(&r.whole, &ev), 0);
	assert_index_cuts_rejected(&f);
	free(f.buf);
}

static void test_index_whole_rejects(void **state)
{
	const struct rc_frame_event evs[] = { event(30, 4, "a", "{\"n\":30}"), event(31, 1, "", "{\"n\":31}") };
	const struct rc_frame_event hole[] = { event(30, 4, "a", "{\"n\":30}"), event(32, 1, "", "{\"n\":32}") };
	const struct rc_frame_event early[] = { event(29, 4, "a", "{\"n\":29}"), event(31, 1, "", "{\"n\":31}") };
	const struct rc_frame_hdr ok = { .epoch = 5, .last_gseq = 31, .count = 2 };
	const struct rc_frame_hdr other_epoch = { .epoch = 6, .last_gseq = 31, .count = 2 };
	const struct rc_frame_hdr other_last = { .epoch = 5, .last_gseq = 33, .count = 2 };
	const struct rc_frame_hdr replay = { .epoch = 5, .last_gseq = 31, .count = 2, .flags = RC_FRAME_REPLAY };
	const struct rc_frame_hdr hole_hdr = { .epoch = 5, .last_gseq = 32, .count = 2 };
	struct rc_index_reader r;
	struct frame f;

	(void)state;
	/*
	 * the frame's epoch or last gseq is not the index's, or it is not a live
	 * frame; events missing from the flush: one short, a hole, or starting late
	 */
	const struct {
		uint64_t first, last;
		const struct rc_frame_hdr *hdr;
		const struct rc_frame_event *evs;
	} bad[] = {
		{ 30, 31, &other_epoch, evs }, { 30, 31, &other_last, evs }, { 30, 31, &replay, evs },
		{ 29, 31, &ok, evs },	       { 30, 32, &hole_hdr, hole },  { 30, 31, &ok, early },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f = build_whole(5, bad[i].first, bad[i].last, bad[i].hdr, bad[i].evs, 2);
		assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_EPROTO);
		free(f.buf);
	}
	/* a tick is never whole; a whole index has no entries */
	f = build_whole(5, 30, 31, &ok, evs, 2);
	f.buf[5] |= RC_FRAME_TICK;
	assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_EPROTO);
	f.buf[5] &= (uint8_t)~RC_FRAME_TICK;
	f.buf[24] = 1; /* count of entries */
	assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_EPROTO);
	free(f.buf);
	/* random mutations never read outside the buffer */
	f = build_whole(5, 30, 31, &ok, evs, 2);
	for (int i = 0; i < FUZZ_ITERATIONS; i++) {
		struct frame c = copy(&f, f.len);
		c.buf[rng() % c.len] = (uint8_t)rng();
		if (rc_index_reader_init(&r, c.buf, c.len) == RC_OK && (r.hdr.flags & RC_FRAME_WHOLE)) {
			struct rc_frame_event ev;
			uint64_t g = r.first_gseq;
			while (rc_frame_reader_next(&r.whole, &ev))
				assert_int_equal(ev.gseq, g++);
			assert_int_equal(g, r.hdr.last_gseq + 1);
		}
		free(c.buf);
	}
	free(f.buf);
}

/* f with an acknowledgement block (RC_FRAME_ACKS) of the given records appended. */
static struct frame with_acks(const struct frame *f, const uint64_t (*recs)[2], const uint64_t *const *gseqs,
			      const uint32_t *ns, size_t nrec)
{
	size_t block = 0, off = f->len;
	struct frame g;

	for (size_t i = 0; i < nrec; i++)
		block += rc_ack_size(ns[i]);
	g = copy(f, f->len + block + 4);
	g.buf[5] |= RC_FRAME_ACKS;
	for (size_t i = 0; i < nrec; i++)
		off += rc_ack_put(g.buf + off, recs[i][0], recs[i][1], gseqs[i], ns[i]);
	g.buf[off] = (uint8_t)block;
	g.buf[off + 1] = (uint8_t)(block >> 8);
	g.buf[off + 2] = (uint8_t)(block >> 16);
	g.buf[off + 3] = (uint8_t)(block >> 24);
	assert_int_equal(off + 4, g.len);
	return g;
}

/*
 * A publish acknowledged on the bus: an index (plain, whole or a tick) with
 * RC_FRAME_ACKS ends with the block; the index reads as without it, the
 * acks read back, and a block that does not fit is refused.
 */
static void test_index_acks(void **state)
{
	const struct rc_index_entry es[] = { { "room-1", 6, 2 }, { "b", 1, 1 } };
	const struct rc_frame_event evs[] = { event(30, 4, "a", "{\"n\":30}"), event(31, 1, "", "{\"n\":31}") };
	const struct rc_frame_hdr fhdr = { .epoch = 5, .last_gseq = 31, .count = 2 };
	const uint64_t recs[][2] = { { 0x0123456789abcdefULL, 7 }, { 42, 0xffffffffffffffffULL } };
	const uint64_t g0[] = { 30 }, g1[] = { 31, 12, 29 };
	const uint64_t *gs[] = { g0, g1 };
	const uint32_t ns[] = { 1, 3 };
	struct frame plain[3], f;
	struct rc_index_reader r;
	struct rc_index_entry e;
	struct rc_ack_reader ar;
	struct rc_ack a;
	size_t len;

	(void)state;
	plain[0] = build_index(0, 10, 12, es, 2);
	plain[1] = build_whole(5, 30, 31, &fhdr, evs, 2);
	plain[2] = build_index(RC_FRAME_TICK, 8, 7, NULL, 0);
	for (int k = 0; k < 3; k++) {
		f = with_acks(&plain[k], recs, gs, ns, 2);
		assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_OK);
		assert_true(r.hdr.flags & RC_FRAME_ACKS);
		assert_int_equal(rc_index_reader_next(&r, &e), k == 0);
		len = f.len;
		assert_int_equal(rc_index_acks(f.buf, &len, &ar), RC_OK);
		assert_int_equal(len, plain[k].len);
		for (int i = 0; i < 2; i++) {
			assert_int_equal(rc_ack_next(&ar, &a), 1);
			assert_int_equal(a.gw, recs[i][0]);
			assert_int_equal(a.req, recs[i][1]);
			assert_int_equal(a.n, ns[i]);
			for (uint32_t j = 0; j < a.n; j++)
				assert_int_equal(rc_ack_gseq(&a, j), gs[i][j]);
		}
		assert_int_equal(rc_ack_next(&ar, &a), 0);
		assert_index_cuts_rejected(&f);
		/* a block longer than the message, or records that do not fill it */
		f.buf[f.len - 4]++;
		assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_EPROTO);
		len = f.len;
		assert_int_not_equal(rc_index_acks(f.buf, &len, &ar), RC_OK);
		f.buf[f.len - 4] -= 2;
		assert_int_equal(rc_index_reader_init(&r, f.buf, f.len), RC_EPROTO);
		free(f.buf);
		/* without the flag nothing is split off */
		len = plain[k].len;
		assert_int_equal(rc_index_acks(plain[k].buf, &len, &ar), RC_OK);
		assert_int_equal(len, plain[k].len);
		assert_int_equal(rc_ack_next(&ar, &a), 0);
		free(plain[k].buf);
	}
}

/* Frames of rooms a, b and global from one flush 20..27 merge back into gseq order. */
static void test_merge(void **state)
{
	const struct rc_frame_event a[] = { event(20, 1, "a", "{\"n\":20}"), event(23, 2, "a", "{\"n\":23}"),
					    event(27, 3, "a", "{\"n\":27}") };
	const struct rc_frame_event b[] = { event(21, 7, "b", "{\"n\":21}"), event(22, 8, "b", "{\"n\":22}"),
					    event(26, 9, "b", "{\"n\":26}") };
	const struct rc_frame_event g[] = { event(24, 4, "", "{\"n\":24}"), event(25, 5, "", "{\"n\":25}") };
	struct rc_frame_hdr hdr = { .epoch = 7, .last_gseq = 27 };
	struct frame fa, fb, fg;
	struct rc_frame_reader rs[3], out;
	struct rc_frame_event ev;
	struct rc_buf buf;
	uint64_t want = 20;

	(void)state;
	hdr.count = 3;
	fa = build(&hdr, a, 3);
	fb = build(&hdr, b, 3);
	hdr.count = 2;
	fg = build(&hdr, g, 2);
	assert_int_equal(rc_frame_reader_init(&rs[0], fb.buf, fb.len), RC_OK);
	assert_int_equal(rc_frame_reader_init(&rs[1], fg.buf, fg.len), RC_OK);
	assert_int_equal(rc_frame_reader_init(&rs[2], fa.buf, fa.len), RC_OK);
	rc_buf_init(&buf);
	assert_int_equal(rc_frame_merge(&buf, hdr, rs, 3), RC_OK);
	assert_int_equal(rc_frame_reader_init(&out, buf.data, buf.len), RC_OK);
	assert_int_equal(out.hdr.count, 8);
	assert_int_equal(out.hdr.last_gseq, 27);
	assert_int_equal(out.hdr.epoch, 7);
	while (rc_frame_reader_next(&out, &ev)) {
		char json[16];
		assert_int_equal(ev.gseq, want);
		snprintf(json, sizeof(json), "{\"n\":%llu}", (unsigned long long)want);
		assert_int_equal(ev.json_len, strlen(json));
		assert_memory_equal(ev.json, json, ev.json_len);
		assert_int_equal(ev.room_len, want == 24 || want == 25 ? 0 : 1);
		want++;
	}
	assert_int_equal(want, 28);

	/* the same gseq in two frames is refused */
	buf.len = 0;
	assert_int_equal(rc_frame_reader_init(&rs[0], fa.buf, fa.len), RC_OK);
	assert_int_equal(rc_frame_reader_init(&rs[1], fa.buf, fa.len), RC_OK);
	assert_int_equal(rc_frame_merge(&buf, hdr, rs, 2), RC_EPROTO);
	/* nothing to merge: an empty frame that still says where the flush ends */
	buf.len = 0;
	assert_int_equal(rc_frame_merge(&buf, hdr, rs, 0), RC_OK);
	assert_int_equal(rc_frame_reader_init(&out, buf.data, buf.len), RC_OK);
	assert_int_equal(out.hdr.count, 0);
	assert_int_equal(out.hdr.last_gseq, 27);
	rc_buf_fini(&buf);
	free(fa.buf);
	free(fb.buf);
	free(fg.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_one),
		cmocka_unit_test(test_round_trip_many),
		cmocka_unit_test(test_tick),
		cmocka_unit_test(test_wire_layout),
		cmocka_unit_test(test_unaligned),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_bad_magic_version),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_bad_sequence),
		cmocka_unit_test(test_bad_event_fields),
		cmocka_unit_test(test_bad_lengths),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_fuzz_random_bytes),
		cmocka_unit_test(test_fuzz_mutations),
		cmocka_unit_test(test_bus_topics),
		cmocka_unit_test(test_index_round_trip),
		cmocka_unit_test(test_index_rejects),
		cmocka_unit_test(test_index_whole),
		cmocka_unit_test(test_index_whole_rejects),
		cmocka_unit_test(test_index_acks),
		cmocka_unit_test(test_merge),
	};

	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
