/*
 * test_flush.c - putting the broker's flushes back together
 * (common/flush.c): frames wait for their index; the wanted rooms' counts
 * decide whether a flush is complete; several frames merge into gseq order;
 * frames of a flush whose index was lost are dropped; a whole flush in one
 * message; ticks; corrupt messages are counted, reported and dropped; the
 * frames kept waiting are bounded.
 *
 * The test is the assembler's subscriber: its callbacks say which rooms are
 * wanted and record what the assembler handed over. Messages are built the
 * way the broker's bus.c builds them (common/frame.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "flush.h"
#include "frame.h"

#define EPOCH 0x6f1c2a9eu

/* ---- the test's side: the subscriber ---- */

/* What the assembler counted. */
static struct rc_flush_counts counted;

/* Rooms this subscriber wants ("*": every room); global events always. */
static const char *wanted[8];

static bool wants(void *arg, const char *room, size_t room_len)
{
	(void)arg;
	if (room_len == 0)
		return true;
	for (int i = 0; i < 8 && wanted[i] != NULL; i++)
		if (strcmp(wanted[i], "*") == 0 || (strlen(wanted[i]) == room_len && memcmp(wanted[i], room, room_len) == 0))
			return true;
	return false;
}

/* What the assembler handed to the subscriber. */
struct handed {
	uint64_t first, last;
	bool complete, tick;
	uint64_t gseq[32];
	char room[32][8];
	size_t n;
};

static struct handed handed[16];
static size_t nhanded;

static void done(void *arg, struct rc_frame_reader *r, uint64_t first, bool complete)
{
	struct handed *h = &handed[nhanded++];
	struct rc_frame_event ev;

	(void)arg;
	assert_true(nhanded <= 16);
	assert_int_equal(r->hdr.epoch, EPOCH);
	h->first = first;
	h->last = r->hdr.last_gseq;
	h->complete = complete;
	h->tick = (r->hdr.flags & RC_FRAME_TICK) != 0;
	h->n = 0;
	while (rc_frame_reader_next(r, &ev)) {
		assert_true(h->n < 32);
		h->gseq[h->n] = ev.gseq;
		snprintf(h->room[h->n], sizeof(h->room[h->n]), "%.*s", (int)ev.room_len, ev.room);
		h->n++;
	}
}

/* The corrupt messages reported, in order ("topic", "frame" or "index"). */
static const char *bad_what[8];
static size_t nbad;

static void bad(void *arg, int err, const char *what, size_t len)
{
	(void)arg;
	(void)len;
	assert_true(err == RC_EPROTO || err == RC_ETRUNC);
	if (nbad < 8)
		bad_what[nbad] = what;
	nbad++;
}

/* Checks that count flushes were handed, the last one complete or not, with n events; returns it. */
static const struct handed *assert_handed(size_t count, bool complete, size_t n)
{
	assert_int_equal(nhanded, count);
	assert_int_equal(handed[count - 1].complete, complete);
	assert_int_equal(handed[count - 1].n, n);
	return &handed[count - 1];
}

/* ---- messages as the broker sends them ---- */

static nng_msg *msg_of(const void *topic, size_t tlen, const uint8_t *body, size_t len)
{
	nng_msg *m;

	assert_int_equal(nng_msg_alloc(&m, 0), 0);
	assert_int_equal(nng_msg_append(m, topic, tlen), 0);
	assert_int_equal(nng_msg_append(m, body, len), 0);
	return m;
}

/* A frame of room (NULL: global) with events at gseqs[0..n), in flush ..last, under the room's topic. */
static nng_msg *frame(const char *room, const uint64_t *gseqs, size_t n, uint64_t last, uint64_t epoch)
{
	uint8_t buf[4096];
	char topic[RC_BUS_TOPIC_MAX];
	size_t rlen = room ? strlen(room) : 0, off = RC_FRAME_HDR_SIZE;
	struct rc_frame_hdr hdr = { .epoch = epoch, .last_gseq = last, .count = (uint32_t)n };

	rc_frame_put_header(buf, &hdr);
	for (size_t i = 0; i < n; i++) {
		struct rc_frame_event ev = {
			.gseq = gseqs[i], .rseq = i + 1, .room = room, .room_len = (uint16_t)rlen,
			.json = "{\"type\":\"t\"}", .json_len = 12,
		};
		off += rc_frame_put_event(buf + off, &ev);
	}
	return msg_of(topic, rc_bus_topic(topic, room, rlen), buf, off);
}

/* An index of the flush first..last naming rooms[i] with counts[i] events ("" = global). */
static nng_msg *index_msg(uint8_t flags, uint64_t first, uint64_t last, const char *const *rooms,
			  const uint32_t *counts, size_t n)
{
	uint8_t buf[1024];
	size_t off = RC_INDEX_HDR_SIZE;
	struct rc_frame_hdr hdr = {
		.epoch = EPOCH, .last_gseq = last, .count = (uint32_t)n, .flags = RC_FRAME_INDEX | flags
	};

	rc_index_put_header(buf, &hdr, first);
	for (size_t i = 0; i < n; i++) {
		struct rc_index_entry e = { .room = rooms[i], .room_len = (uint16_t)strlen(rooms[i]), .events = counts[i] };
		off += rc_index_put_entry(buf + off, &e);
	}
	return msg_of(RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN, buf, off);
}

/* A whole flush first..last (one event per gseq, rooms[i] for gseq first + i, "" = global). */
static nng_msg *whole_msg(uint64_t first, uint64_t last, const char *const *rooms)
{
	uint8_t buf[4096];
	size_t off = RC_INDEX_HDR_SIZE + RC_FRAME_HDR_SIZE;
	struct rc_frame_hdr ihdr = { .epoch = EPOCH, .last_gseq = last, .flags = RC_FRAME_INDEX | RC_FRAME_WHOLE };
	struct rc_frame_hdr fhdr = { .epoch = EPOCH, .last_gseq = last, .count = (uint32_t)(last - first + 1) };

	rc_index_put_header(buf, &ihdr, first);
	rc_frame_put_header(buf + RC_INDEX_HDR_SIZE, &fhdr);
	for (uint64_t g = first; g <= last; g++) {
		const char *room = rooms[g - first];
		struct rc_frame_event ev = {
			.gseq = g,
			.rseq = g,
			.room = room,
			.room_len = (uint16_t)strlen(room),
			.json = "{\"type\":\"t\"}",
			.json_len = 12,
		};
		off += rc_frame_put_event(buf + off, &ev);
	}
	return msg_of(RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN, buf, off);
}

static const struct rc_flush_cfg cfg = { .wants = wants, .done = done, .bad = bad, .counts = &counted };

static int setup(void **state)
{
	memset(&counted, 0, sizeof(counted));
	memset(handed, 0, sizeof(handed));
	memset(wanted, 0, sizeof(wanted));
	nhanded = 0;
	nbad = 0;
	*state = rc_flush_asm_new(&cfg);
	return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	/* frames still waiting are freed here: ASan's leak check covers them */
	rc_flush_asm_free(*state);
	return 0;
}

/* ---- tests ---- */

/* Rooms a and b wanted, c not: a's and b's events in gseq order, c's left out, complete. */
static void test_merge_wanted_rooms(void **state)
{
	struct rc_flush_asm *a = *state;
	static const uint64_t ga[] = { 10, 12 }, gb[] = { 11, 14 }, gc[] = { 13 }, gg[] = { 15 };
	static const char *const rooms[] = { "a", "b", "c", "" };
	static const uint32_t counts[] = { 2, 2, 1, 1 };

	wanted[0] = "a";
	wanted[1] = "b";
	rc_flush_asm_msg(a, frame("a", ga, 2, 15, EPOCH));
	rc_flush_asm_msg(a, frame("b", gb, 2, 15, EPOCH));
	rc_flush_asm_msg(a, frame("c", gc, 1, 15, EPOCH));
	rc_flush_asm_msg(a, frame(NULL, gg, 1, 15, EPOCH));
	assert_int_equal(nhanded, 0); /* nothing before the index */
	rc_flush_asm_msg(a, index_msg(0, 10, 15, rooms, counts, 4));
	assert_int_equal(nhanded, 1);
	assert_int_equal(handed[0].first, 10);
	assert_int_equal(handed[0].last, 15);
	assert_true(handed[0].complete);
	assert_false(handed[0].tick);
	assert_int_equal(handed[0].n, 5);
	static const uint64_t want[] = { 10, 11, 12, 14, 15 };
	static const char *const want_room[] = { "a", "b", "a", "b", "" };
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(handed[0].gseq[i], want[i]);
		assert_string_equal(handed[0].room[i], want_room[i]);
	}
	assert_int_equal(counted.frames, 4);
	assert_int_equal(counted.events, 6);
	assert_int_equal(counted.bad, 0);
}

/* One frame: handed over as it is. */
static void test_single_frame(void **state)
{
	struct rc_flush_asm *a = *state;
	static const uint64_t g[] = { 3, 4, 5 };
	static const char *const rooms[] = { "a" };
	static const uint32_t counts[] = { 3 };

	wanted[0] = "a";
	rc_flush_asm_msg(a, frame("a", g, 3, 5, EPOCH));
	rc_flush_asm_msg(a, index_msg(0, 3, 5, rooms, counts, 1));
	assert_int_equal(assert_handed(1, true, 3)->gseq[2], 5);
}

/* nng dropped b's frame: the flush is incomplete; an unwanted room missing does not count. */
static void test_missing_frame_is_incomplete(void **state)
{
	struct rc_flush_asm *a = *state;
	static const uint64_t ga[] = { 20 };
	static const char *const rooms[] = { "a", "b", "zzz" };
	static const uint32_t counts[] = { 1, 1, 5 };

	wanted[0] = "a";
	wanted[1] = "b";
	rc_flush_asm_msg(a, frame("a", ga, 1, 26, EPOCH));
	rc_flush_asm_msg(a, index_msg(0, 20, 26, rooms, counts, 3));
	assert_int_equal(nhanded, 1);
	assert_false(handed[0].complete);
	assert_int_equal(handed[0].first, 20);
	assert_int_equal(handed[0].last, 26);

	/* the same without wanting b: complete */
	wanted[1] = NULL;
	rc_flush_asm_msg(a, frame("a", ga, 1, 26, EPOCH));
	rc_flush_asm_msg(a, index_msg(0, 20, 26, rooms, counts, 3));
	assert_int_equal(nhanded, 2);
	assert_true(handed[1].complete);
}

/* Frames of flush 1 whose index never came are dropped when flush 2's index comes. */
static void test_lost_index_drops_old_frames(void **state)
{
	struct rc_flush_asm *a = *state;
	static const uint64_t g1[] = { 1, 2 }, g2[] = { 4 };
	static const char *const rooms[] = { "a" };
	static const uint32_t counts[] = { 1 };

	wanted[0] = "*";
	rc_flush_asm_msg(a, frame("a", g1, 2, 3, EPOCH));
	rc_flush_asm_msg(a, frame("a", g2, 1, 5, EPOCH));
	rc_flush_asm_msg(a, index_msg(0, 4, 5, rooms, counts, 1));
	assert_int_equal(nhanded, 1);
	assert_int_equal(handed[0].first, 4); /* the subscriber sees the hole before 4 */
	assert_true(handed[0].complete);
	assert_int_equal(handed[0].n, 1);
	assert_int_equal(handed[0].gseq[0], 4);
}

/* A frame of the next flush that came before this flush's index waits for its own. */
static void test_newer_frame_waits(void **state)
{
	struct rc_flush_asm *a = *state;
	static const uint64_t g1[] = { 1 }, g2[] = { 2 };
	static const char *const rooms[] = { "a" };
	static const uint32_t counts[] = { 1 };

	wanted[0] = "a";
	rc_flush_asm_msg(a, frame("a", g1, 1, 1, EPOCH));
	rc_flush_asm_msg(a, frame("a", g2, 1, 2, EPOCH)); /* cannot happen in order, but must not be lost */
	rc_flush_asm_msg(a, index_msg(0, 1, 1, rooms, counts, 1));
	rc_flush_asm_msg(a, index_msg(0, 2, 2, rooms, counts, 1));
	assert_int_equal(nhanded, 2);
	assert_int_equal(handed[0].gseq[0], 1);
	assert_int_equal(handed[1].n, 1);
	assert_int_equal(handed[1].gseq[0], 2);
	assert_true(handed[1].complete);
}

/*
 * A whole flush is complete as it comes, every room in it (the hub keeps the
 * ones it serves); frames of older flushes whose index was lost go with it,
 * and the room-by-room flush after it is assembled as usual.
 */
static void test_whole_flush(void **state)
{
	struct rc_flush_asm *a = *state;
	static const char *const whole_rooms[] = { "a", "b", "", "c" };
	static const uint64_t old[] = { 7 }, next[] = { 45 };
	static const char *const rooms[] = { "a" };
	static const uint32_t counts[] = { 1 };
	const struct handed *h;

	wanted[0] = "a";
	rc_flush_asm_msg(a, frame("a", old, 1, 8, EPOCH)); /* its index is lost */
	rc_flush_asm_msg(a, whole_msg(40, 43, whole_rooms));
	h = assert_handed(1, true, 4);
	assert_int_equal(h->first, 40);
	assert_int_equal(h->last, 43);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(h->gseq[i], 40 + i);
		assert_string_equal(h->room[i], whole_rooms[i]);
	}
	assert_int_equal(counted.frames, 2);
	assert_int_equal(counted.events, 5);
	rc_flush_asm_msg(a, frame("a", next, 1, 45, EPOCH));
	rc_flush_asm_msg(a, index_msg(0, 44, 45, rooms, counts, 1));
	assert_int_equal(assert_handed(2, true, 1)->gseq[0], 45);
	assert_int_equal(counted.bad, 0);
}

/* An idle tick: an empty, complete flush after the last gseq; a frame of another epoch is dropped. */
static void test_tick_and_epoch(void **state)
{
	struct rc_flush_asm *a = *state;
	static const uint64_t g[] = { 8 };
	static const char *const rooms[] = { "a" };
	static const uint32_t counts[] = { 1 };

	wanted[0] = "a";
	rc_flush_asm_msg(a, index_msg(RC_FRAME_TICK, 8, 7, NULL, NULL, 0));
	assert_int_equal(nhanded, 1);
	assert_true(handed[0].tick);
	assert_true(handed[0].complete);
	assert_int_equal(handed[0].first, 8);
	assert_int_equal(handed[0].last, 7);
	assert_int_equal(handed[0].n, 0);
	assert_int_equal(counted.ticks, 1);

	rc_flush_asm_msg(a, frame("a", g, 1, 8, EPOCH + 1));
	rc_flush_asm_msg(a, index_msg(0, 8, 8, rooms, counts, 1));
	assert_handed(2, false, 0);
}

/* Garbage never reaches the subscriber; it is counted. */
static void test_corrupt_messages(void **state)
{
	struct rc_flush_asm *a = *state;
	static const uint8_t junk[] = { 'R', 'C', 'F', '1', 1, 0, 0, 0, 1, 2, 3 };
	static const uint64_t g[] = { 1 };
	nng_msg *m;

	wanted[0] = "*";
	rc_flush_asm_msg(a, msg_of("x\0", 2, junk, sizeof(junk)));  /* unknown topic */
	rc_flush_asm_msg(a, msg_of("ra\0", 3, junk, sizeof(junk))); /* truncated frame */
	rc_flush_asm_msg(a, msg_of("i\0", 2, junk, sizeof(junk)));  /* truncated index */
	rc_flush_asm_msg(a, msg_of("rbad room\0", 10, junk, 0));    /* bad room in the topic */
	m = frame("a", g, 1, 1, EPOCH);
	nng_msg_chop(m, 1); /* one byte short */
	rc_flush_asm_msg(a, m);
	/* room b's event under room a's topic */
	m = frame("b", g, 1, 1, EPOCH);
	assert_int_equal(nng_msg_trim(m, 3), 0);
	assert_int_equal(nng_msg_insert(m, "ra\0", 3), 0);
	rc_flush_asm_msg(a, m);
	assert_int_equal(counted.bad, 6);
	assert_int_equal(nhanded, 0);
	assert_int_equal(counted.frames, 0);
	assert_int_equal(nbad, 6);
	static const char *const want_what[] = { "topic", "frame", "index", "topic", "frame", "frame" };
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(bad_what[i], want_what[i]);
}

/*
 * At most max_pending frames wait: beyond, the oldest goes, and its flush is
 * handed over incomplete when its index comes late. Without counters given,
 * the assembler counts for itself.
 */
static void test_max_pending(void **state)
{
	struct rc_flush_cfg small = { .wants = wants, .done = done, .max_pending = 4 };
	struct rc_flush_asm *a = rc_flush_asm_new(&small);
	static const char *const rooms[] = { "a" };
	static const uint32_t one[] = { 1 };

	(void)state;
	assert_non_null(a);
	wanted[0] = "a";
	for (uint64_t g = 1; g <= 5; g++)
		rc_flush_asm_msg(a, frame("a", &g, 1, g, EPOCH)); /* flushes 1..5, no index yet */
	rc_flush_asm_msg(a, index_msg(0, 1, 1, rooms, one, 1));
	assert_handed(1, false, 0); /* flush 1's frame was the oldest: dropped */
	rc_flush_asm_msg(a, index_msg(0, 2, 2, rooms, one, 1));
	assert_int_equal(assert_handed(2, true, 1)->gseq[0], 2);
	assert_int_equal(counted.frames, 0); /* counted inside */
	rc_flush_asm_free(a); /* frames 3..5 still wait: freed here */
}

/*
 * Random flushes over 6 rooms, 2 of them wanted, with random messages lost
 * (as nng drops them): every flush whose index arrives is handed over, in
 * order; complete exactly when none of its wanted frames was lost, and then
 * with exactly its wanted events; a flush whose index was lost is not handed
 * over, so the next one starts after a hole the subscriber sees.
 */
static void test_random_losses(void **state)
{
	struct rc_flush_asm *a = *state;
	static const char *const names[] = { "a", "b", "c", "d", "e", "" };
	uint64_t next = 1, rng = 0x9e3779b97f4a7c15ull, prev_last = 0;
	size_t checked = 0;

	wanted[0] = "b";
	wanted[1] = "e";
	for (int f = 0; f < 2000; f++) {
		uint64_t gseqs[6][8], first = next;
		size_t counts[6] = { 0 }, nev = 1 + (size_t)(rng % 8), want_n = 0;
		uint64_t want[32];
		bool lost_wanted = false, index_lost;
		const char *rooms[6];
		uint32_t rc[6];
		size_t nrooms = 0;

		for (size_t i = 0; i < nev; i++) {
			int r;
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			r = (int)((rng >> 33) % 6);
			gseqs[r][counts[r]++] = next++;
		}
		for (int r = 0; r < 6; r++) {
			bool lost;
			if (counts[r] == 0)
				continue;
			rooms[nrooms] = names[r];
			rc[nrooms++] = (uint32_t)counts[r];
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			lost = (rng >> 40) % 7 == 0;
			if (wants(NULL, names[r], strlen(names[r])))
				lost_wanted |= lost;
			if (!lost)
				rc_flush_asm_msg(a,
						 frame(r == 5 ? NULL : names[r], gseqs[r], counts[r], next - 1, EPOCH));
		}
		for (uint64_t g = first; g < next; g++)
			for (int r = 0; r < 6; r++)
				for (size_t k = 0; k < counts[r]; k++)
					if (gseqs[r][k] == g && wants(NULL, names[r], strlen(names[r])))
						want[want_n++] = g;
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		index_lost = (rng >> 40) % 9 == 0;
		nhanded = 0;
		if (!index_lost)
			rc_flush_asm_msg(a, index_msg(0, first, next - 1, rooms, rc, nrooms));
		if (index_lost) {
			assert_int_equal(nhanded, 0);
			continue;
		}
		assert_int_equal(nhanded, 1);
		assert_int_equal(handed[0].first, first);
		assert_int_equal(handed[0].last, next - 1);
		assert_true(handed[0].last > prev_last);
		prev_last = handed[0].last;
		assert_int_equal(handed[0].complete, !lost_wanted);
		if (handed[0].complete) {
			assert_int_equal(handed[0].n, want_n);
			for (size_t i = 0; i < want_n; i++)
				assert_int_equal(handed[0].gseq[i], want[i]);
			checked++;
		}
	}
	assert_true(checked > 1000);
}

/* Random bytes after every kind of topic: never handed over unless valid, never a crash or a leak. */
static void test_fuzz(void **state)
{
	struct rc_flush_asm *a = *state;
	static const char *const topics[] = { "i", "g", "ra", "rb", "x", "" };
	uint64_t rng = 0x2545f4914f6cdd1dull;
	int handed_any = 0;

	wanted[0] = "*";
	for (int i = 0; i < 20000; i++) {
		uint8_t body[96];
		size_t len, t;
		nng_msg *m;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		len = (size_t)(rng % sizeof(body));
		t = (size_t)((rng >> 8) % 6);
		for (size_t k = 0; k < len; k++)
			body[k] = (uint8_t)(rng >> (8 * (k % 8))) ^ (uint8_t)k;
		/* mostly a real header, so the decoding past it gets exercised */
		if (len >= 36 && (rng >> 20) % 4 != 0) {
			struct rc_frame_hdr hdr = { .epoch = EPOCH, .last_gseq = (rng >> 24) % 50,
						    .count = (uint32_t)((rng >> 32) % 3),
						    .flags = (uint8_t)(t == 0 ? RC_FRAME_INDEX : 0) };
			rc_index_put_header(body, &hdr, (rng >> 40) % 50);
		}
		m = msg_of(topics[t], strlen(topics[t]) + 1, body, len);
		nhanded = 0;
		rc_flush_asm_msg(a, m);
		/* whatever was handed over was a valid flush */
		if (nhanded == 1) {
			assert_true(handed[0].first <= handed[0].last + 1);
			handed_any++;
		}
	}
	assert_true(handed_any > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_merge_wanted_rooms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_frame_is_incomplete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_index_drops_old_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_frame_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_whole_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tick_and_epoch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_losses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
