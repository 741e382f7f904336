/*
 * test_repair.c - keeping the bus sequence whole (gateway/repair.c): a flush
 * after a hole or an incomplete one is repaired by replay of the wanted rooms
 * while newer flushes are held; the held ones follow in order; a replay asked
 * before a stream joined a new room is asked again and not used; paging with
 * MORE; a failed replay resets every stream after the hole; too much held
 * abandons the repair; an epoch change resets with epoch_changed; a tick
 * beyond the position repairs.
 *
 * repair.c is linked on its own: the gateway functions it calls (the hub's
 * delivery and resets, the broker api) are defined here and record what they
 * get; the test answers each replay request itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_client.h"
#include "buf.h"
#include "error.h"
#include "frame.h"
#include "gateway.h"
#include "log.h"
#include "repair.h"

#define EPOCH 0x6f1c2a9eu

/* ---- the test's side of the gateway ---- */

static struct gw gw;
static uint64_t delivered[256];
static size_t ndelivered;
static char resets[8][64];
static size_t nresets;
static int bus_known;
static const char *room_names = "\"a\",\"b\"";

/* A replay request waiting for the test's answer. */
static struct {
	char req[512];
	gw_api_cb cb;
	void *arg;
	int pending;
	int fail; /* gw_api_call_wait itself fails */
} api;

size_t gw_hub_deliver(struct gw_hub *hub, struct rc_frame_reader *r)
{
	struct rc_frame_event ev;
	size_t n = 0;

	while (rc_frame_reader_next(r, &ev)) {
		if (ev.gseq <= hub->last_gseq)
			continue;
		assert_true(ndelivered < 256);
		delivered[ndelivered++] = ev.gseq;
		hub->last_gseq = ev.gseq;
		n++;
	}
	return n;
}

static void reset_all(const char *reason, uint64_t epoch, uint64_t gseq)
{
	assert_true(nresets < 8);
	snprintf(resets[nresets++], sizeof(resets[0]), "%s %llx-%llu", reason, (unsigned long long)epoch,
		 (unsigned long long)gseq);
}

void gw_hub_start(struct gw_hub *hub, uint64_t epoch, uint64_t gseq)
{
	hub->epoch = epoch;
	hub->last_gseq = gseq;
	bus_known++;
}

void gw_hub_restart(struct gw_hub *hub, uint64_t epoch)
{
	hub->epoch = epoch;
	hub->last_gseq = 0;
	reset_all("epoch_changed", epoch, 0);
}

uint64_t gw_hub_skip(struct gw_hub *hub, uint64_t gseq)
{
	gw_hub_advance(hub, gseq);
	reset_all("gap_unrecoverable", hub->epoch, hub->last_gseq);
	return hub->last_gseq;
}

void gw_hub_room_names(const struct gw_hub *hub, struct rc_buf *b)
{
	(void)hub;
	rc_buf_puts(b, room_names);
}

int gw_api_call_wait(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg)
{
	(void)a;
	(void)timeout_ms;
	if (api.fail)
		return RC_EIO;
	assert_int_equal(api.pending, 0); /* one replay at a time */
	assert_true(len < sizeof(api.req));
	memcpy(api.req, req, len);
	api.req[len] = '\0';
	api.cb = cb;
	api.arg = arg;
	api.pending = 1;
	return RC_OK;
}

/* ---- frames ---- */

struct frame {
	uint8_t buf[4096];
	size_t len;
};

/* A frame with events at gseqs[0..n), header last_gseq and flags. */
static struct frame *frame(uint64_t epoch, uint64_t last, uint8_t flags, const uint64_t *gseqs, size_t n)
{
	static struct frame f;
	struct rc_frame_hdr hdr = { .epoch = epoch, .last_gseq = last, .count = (uint32_t)n, .flags = flags };

	f.len = RC_FRAME_HDR_SIZE;
	rc_frame_put_header(f.buf, &hdr);
	for (size_t i = 0; i < n; i++) {
		struct rc_frame_event ev = { .gseq = gseqs[i], .rseq = 1, .room = "a", .room_len = 1, .json = "{}",
					     .json_len = 2 };
		f.len += rc_frame_put_event(f.buf + f.len, &ev);
	}
	return &f;
}

/* Hands the flush first..last (events gseqs) to the repair stage. */
static void flush(struct gw_repair *rp, uint64_t first, uint64_t last, const uint64_t *gseqs, size_t n, bool complete)
{
	struct frame *f = frame(EPOCH, last, first == last + 1 && n == 0 ? RC_FRAME_TICK : 0, gseqs, n);
	struct rc_frame_reader r;

	assert_int_equal(rc_frame_reader_init(&r, f->buf, f->len), RC_OK);
	gw_repair_flush(rp, &r, first, complete);
}

/* Answers the pending replay with events gseqs (flags REPLAY [+MORE]), last_gseq = the broker's. */
static void answer(const uint64_t *gseqs, size_t n, uint64_t broker_last, bool more)
{
	struct frame *f = frame(EPOCH, broker_last, RC_FRAME_REPLAY | (more ? RC_FRAME_MORE : 0), gseqs, n);
	gw_api_cb cb = api.cb;

	assert_int_equal(api.pending, 1);
	api.pending = 0;
	cb(api.arg, RC_OK, (const char *)f->buf, f->len);
}

static void assert_delivered(const uint64_t *want, size_t n)
{
	assert_int_equal(ndelivered, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(delivered[i], want[i]);
}

static int setup(void **state)
{
	memset(&gw, 0, sizeof(gw));
	memset(&api, 0, sizeof(api));
	ndelivered = nresets = 0;
	bus_known = 0;
	room_names = "\"a\",\"b\"";
	gw.opt.publish_timeout_ms = 5000;
	*state = gw_repair_new(&gw, 1 << 20);
	return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	gw_repair_free(*state);
	/* as the api client does when it stops: a call still out gets its callback (and frees its state) */
	if (api.pending) {
		api.pending = 0;
		api.cb(api.arg, RC_ECLOSED, NULL, 0);
	}
	return 0;
}

/* ---- tests ---- */

/* The first flush sets the position; whole flushes in order are delivered and move it. */
static void test_in_order(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 5, 7 }, f2[] = { 9 }, all[] = { 5, 7, 9 };

	flush(rp, 5, 8, f1, 2, true);
	assert_int_equal(bus_known, 1);
	assert_int_equal(gw.hub.epoch, EPOCH);
	assert_int_equal(gw.hub.last_gseq, 8); /* the flush's last, not its last wanted event */
	flush(rp, 9, 12, f2, 1, true);
	flush(rp, 13, 12, NULL, 0, true); /* an idle tick at the position */
	assert_delivered(all, 3);
	assert_int_equal(gw.hub.last_gseq, 12);
	assert_int_equal(api.pending, 0);
	assert_int_equal(gw.m.gaps_detected, 0);
}

/* A hole (an index lost): the flush after it is held, the hole replayed for the wanted rooms, then it follows. */
static void test_hole_is_replayed_then_held_released(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, f3[] = { 8 }, f4[] = { 11 }, r[] = { 4, 6, 8 };
	static const uint64_t want[] = { 1, 4, 6, 8, 11 };

	flush(rp, 1, 3, f1, 1, true);
	flush(rp, 7, 9, f3, 1, true); /* 4..6 never came */
	assert_int_equal(api.pending, 1);
	assert_int_equal(gw.m.gaps_detected, 1);
	assert_non_null(strstr(api.req, "\"op\":\"replay\""));
	assert_non_null(strstr(api.req, "\"after\":\"6f1c2a9e-3\""));
	assert_non_null(strstr(api.req, "\"format\":\"frame\""));
	assert_non_null(strstr(api.req, "\"rooms\":[\"a\",\"b\"]"));
	flush(rp, 10, 12, f4, 1, true); /* held too */
	assert_int_equal(ndelivered, 1);
	/* the broker's answer: the wanted events after 3 up to its newest when it answered (9) */
	answer(r, 3, 9, false);
	/* the held 7..9 adds nothing new, the held 10..12 follows */
	assert_delivered(want, 5);
	assert_int_equal(gw.hub.last_gseq, 12);
	assert_int_equal(gw.m.events_repaired, 3);
	assert_int_equal(nresets, 0);
}

/* A flush missing a wanted frame is replayed whole; a firehose asks for every room. */
static void test_incomplete_flush(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, f2[] = { 3 }, r[] = { 2, 3 }, want[] = { 1, 2, 3 };

	gw.hub.nfirehose = 1;
	flush(rp, 1, 1, f1, 1, true);
	flush(rp, 2, 4, f2, 1, false);
	assert_int_equal(api.pending, 1);
	assert_null(strstr(api.req, "\"rooms\""));
	answer(r, 2, 4, false);
	assert_delivered(want, 3);
	assert_int_equal(gw.hub.last_gseq, 4);
}

/* A hole and then an incomplete flush: one replay covers both, up to the flush's end. */
static void test_hole_then_incomplete(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, f4[] = { 4 }, r[] = { 2, 3, 4 }, want[] = { 1, 2, 3, 4 };

	flush(rp, 1, 1, f1, 1, true);
	flush(rp, 3, 4, f4, 1, false);
	assert_int_equal(api.pending, 1);
	assert_non_null(strstr(api.req, "\"after\":\"6f1c2a9e-1\""));
	answer(r, 3, 4, false);
	assert_delivered(want, 4);
	assert_int_equal(gw.hub.last_gseq, 4);
}

/* A page cut by its limit (MORE) is followed by the next one. */
static void test_paging(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, f9[] = { 9 }, p1[] = { 2, 3 }, p2[] = { 5, 9 };
	static const uint64_t want[] = { 1, 2, 3, 5, 9 };

	flush(rp, 1, 1, f1, 1, true);
	flush(rp, 9, 9, f9, 1, true);
	answer(p1, 2, 9, true);
	assert_int_equal(api.pending, 1);
	assert_non_null(strstr(api.req, "\"after\":\"6f1c2a9e-3\""));
	answer(p2, 2, 9, false);
	assert_delivered(want, 5);
	assert_int_equal(gw.hub.last_gseq, 9);
}

/* A stream joined a new room while a replay was out: its answer is not used, it is asked again. */
static void test_new_room_during_repair_refetches(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, f5[] = { 5 }, stale[] = { 3, 5 }, fresh[] = { 2, 3, 5 };
	static const uint64_t want[] = { 1, 2, 3, 5 };

	flush(rp, 1, 1, f1, 1, true);
	flush(rp, 5, 5, f5, 1, true);
	assert_int_equal(api.pending, 1);
	gw.hub.sub_gen++; /* the hub subscribed room c */
	room_names = "\"a\",\"b\",\"c\"";
	answer(stale, 2, 5, false);
	assert_int_equal(ndelivered, 1); /* nothing of the stale answer */
	assert_int_equal(gw.hub.last_gseq, 1);
	assert_int_equal(api.pending, 1);
	assert_non_null(strstr(api.req, "\"rooms\":[\"a\",\"b\",\"c\"]"));
	answer(fresh, 3, 5, false);
	assert_delivered(want, 4);
}

/* The history no longer has the hole: every stream is reset after it, then the held flush follows. */
static void test_unrecoverable_resets_after_the_hole(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, f9[] = { 9 }, want[] = { 1, 9 };
	static const char evicted[] = "{\"ok\":false,\"error\":{\"code\":\"history_unavailable\"}}";
	gw_api_cb cb;

	flush(rp, 1, 1, f1, 1, true);
	flush(rp, 8, 9, f9, 1, true);
	cb = api.cb;
	api.pending = 0;
	cb(api.arg, RC_OK, evicted, sizeof(evicted) - 1);
	assert_int_equal(nresets, 1);
	assert_string_equal(resets[0], "gap_unrecoverable 6f1c2a9e-7");
	assert_delivered(want, 2);
	assert_int_equal(gw.hub.last_gseq, 9);
}

/* The broker does not answer in time: the same reset. */
static void test_replay_timeout(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, f4[] = { 4 };
	gw_api_cb cb;

	flush(rp, 1, 1, f1, 1, true);
	flush(rp, 3, 4, f4, 1, false); /* a hole and incomplete: replayed up to its end, not held */
	cb = api.cb;
	api.pending = 0;
	cb(api.arg, RC_ETIMEDOUT, NULL, 0);
	assert_int_equal(nresets, 1);
	assert_string_equal(resets[0], "gap_unrecoverable 6f1c2a9e-4");
	assert_int_equal(gw.hub.last_gseq, 4);
}

/* More held than --repair-max-bytes: the repair is abandoned, streams reset, live goes on. */
static void test_too_much_held_abandons(void **state)
{
	struct gw_repair *small = gw_repair_new(&gw, 64);
	static const uint64_t f1[] = { 1 }, f5[] = { 5 }, f6[] = { 6 }, want[] = { 1, 6 };

	(void)state;
	flush(small, 1, 1, f1, 1, true);
	flush(small, 5, 5, f5, 1, true); /* a hole: held (56 bytes) */
	assert_int_equal(api.pending, 1);
	flush(small, 6, 6, f6, 1, true); /* would pass 64 bytes */
	assert_int_equal(nresets, 1);
	assert_string_equal(resets[0], "gap_unrecoverable 6f1c2a9e-5");
	assert_delivered(want, 2);
	/* the abandoned replay's answer finds nothing to do */
	api.pending = 0;
	api.cb(api.arg, RC_OK, NULL, 0);
	assert_int_equal(ndelivered, 2);
	gw_repair_free(small);
}

/* A new epoch (the broker restarted empty): every stream reset with epoch_changed, then a repair from 0. */
static void test_epoch_change(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, n3[] = { 3 };
	struct frame *f;
	struct rc_frame_reader r;

	flush(rp, 1, 1, f1, 1, true);
	f = frame(EPOCH + 1, 3, 0, n3, 1);
	assert_int_equal(rc_frame_reader_init(&r, f->buf, f->len), RC_OK);
	gw_repair_flush(rp, &r, 3, true);
	assert_int_equal(gw.hub.epoch, EPOCH + 1);
	assert_int_equal(nresets, 1);
	assert_string_equal(resets[0], "epoch_changed 6f1c2a9f-0");
	assert_int_equal(api.pending, 1); /* 1..2 of the new epoch */
	assert_non_null(strstr(api.req, "\"after\":\"6f1c2a9f-0\""));
}

/* An idle tick beyond the position means the last flush was lost. */
static void test_tick_beyond_repairs(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, r[] = { 2 }, want[] = { 1, 2 };

	flush(rp, 1, 1, f1, 1, true);
	flush(rp, 4, 3, NULL, 0, true);
	assert_int_equal(api.pending, 1);
	answer(r, 1, 3, false);
	assert_delivered(want, 2);
	assert_int_equal(gw.hub.last_gseq, 3);
}

/* The api refuses at once: the hole resets at once, nothing stays held. */
static void test_api_refuses(void **state)
{
	struct gw_repair *rp = *state;
	static const uint64_t f1[] = { 1 }, f5[] = { 5 }, want[] = { 1, 5 };

	flush(rp, 1, 1, f1, 1, true);
	api.fail = 1;
	flush(rp, 5, 5, f5, 1, true);
	assert_int_equal(nresets, 1);
	assert_string_equal(resets[0], "gap_unrecoverable 6f1c2a9e-4");
	assert_delivered(want, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hole_is_replayed_then_held_released, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incomplete_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hole_then_incomplete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_room_during_repair_refetches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unrecoverable_resets_after_the_hole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_much_held_abandons, setup, teardown),
		cmocka_unit_test_setup_teardown(test_epoch_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tick_beyond_repairs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_api_refuses, setup, teardown),
	};

	rc_log_set_level(RC_LOG_ERROR); /* the resets are logged as warnings */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
