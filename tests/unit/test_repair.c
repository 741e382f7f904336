/*
 * test_repair.c - keeping the bus sequence whole (gateway/repair.c): a flush
 * after a hole or an incomplete one is repaired by replay of the wanted rooms
 * while newer flushes are held; the held ones follow in order; a replay asked
 * before a stream joined a new room is asked again and not used; paging with
 * MORE; a failed replay resets every stream after the hole; too much held
 * abandons the repair; an epoch change resets with epoch_changed; a tick
 * beyond the position repairs.
 *
 * On a real gateway loop (gw_fixture.h), without link stubs: the flushes go
 * to the real hub, a stream of room a shows what was delivered (its client's
 * events and resets, in order), and the broker api is the real client, whose
 * replay requests the test receives and answers itself.
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
#include "error.h"
#include "frame.h"
#include "gw_fixture.h"
#include "hub.h"
#include "log.h"
#include "repair.h"

#define EPOCH GWF_EPOCH

static struct gwf fx;
static struct gw_repair *rp;
static struct gwf_client *watch; /* a stream of room a: every event of the tests' flushes */

static int setup_with(void **state, int64_t publish_timeout_ms)
{
	struct gw_options o;

	gwf_options(&o);
	o.publish_timeout_ms = publish_timeout_ms;
	gwf_start(&fx, &o);
	watch = gwf_stream(&fx, "room_id=a", NULL);
	rp = gw_repair_new(&fx.gw, 1 << 20);
	assert_non_null(rp);
	*state = &fx;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, 5000);
}

/* A replay the broker never answers times out soon. */
static int setup_short_timeout(void **state)
{
	return setup_with(state, 50);
}

static int teardown(void **state)
{
	/* a replay still out finds the repair gone; the api's stop ends it */
	gw_repair_free(rp);
	gwf_stop(*state);
	return 0;
}

/* ---- frames ---- */

/* A frame in epoch of events in room a at gseqs[0..n), header last_gseq and flags. */
static size_t frame(uint8_t *buf, size_t cap, uint64_t epoch, uint64_t last, uint8_t flags, const uint64_t *gseqs,
		    size_t n)
{
	struct gwf_ev evs[16];

	assert_true(n <= 16);
	for (size_t i = 0; i < n; i++)
		evs[i] = (struct gwf_ev){ gseqs[i], "a", NULL };
	return gwf_frame(buf, cap, epoch, last, flags, evs, n);
}

/* Hands the flush first..last (events gseqs) of epoch to the repair stage r. */
static void flush_in(struct gw_repair *r, uint64_t epoch, uint64_t first, uint64_t last, const uint64_t *gseqs,
		     size_t n, bool complete)
{
	uint8_t buf[4096];
	size_t len = frame(buf, sizeof(buf), epoch, last, first == last + 1 && n == 0 ? RC_FRAME_TICK : 0, gseqs, n);
	struct rc_frame_reader rd;

	assert_int_equal(rc_frame_reader_init(&rd, buf, len), RC_OK);
	gw_repair_flush(r, &rd, first, complete);
}

static void flush(uint64_t first, uint64_t last, const uint64_t *gseqs, size_t n, bool complete)
{
	flush_in(rp, EPOCH, first, last, gseqs, n, complete);
}

/* The replay request the gateway sent (waits for it). */
static const char *request(void)
{
	return gwf_api_request(&fx);
}

/* Answers the request with events gseqs (flags REPLAY [+MORE]), last_gseq = the broker's. */
static void answer(const uint64_t *gseqs, size_t n, uint64_t broker_last, bool more)
{
	uint8_t buf[4096];
	size_t len =
		frame(buf, sizeof(buf), EPOCH, broker_last, RC_FRAME_REPLAY | (more ? RC_FRAME_MORE : 0), gseqs, n);

	gwf_api_reply(&fx, buf, len);
}

static void answer_text(const char *text)
{
	gwf_api_reply(&fx, text, strlen(text));
}

static int barrier_done;

static void barrier_cb(void *arg, int err, bool sent, const char *reply, size_t len)
{
	(void)arg;
	(void)err;
	(void)sent;
	(void)reply;
	(void)len;
	barrier_done = 1;
}

/*
 * Runs the loop until the api's replies sent so far have reached their
 * callbacks: a call of the test's own goes through the same socket after them.
 */
static void api_barrier(void)
{
	barrier_done = 0;
	assert_int_equal(gw_api_call(fx.gw.api, "{}", 2, 5000, barrier_cb, NULL), RC_OK);
	assert_string_equal(request(), "{}");
	answer_text("{}");
	GWF_WAIT(&fx, barrier_done);
}

/* The watching stream got these events next, in this order. */
static void delivered(const uint64_t *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gwf_take(&fx, watch, gwf_event_text(want[i], NULL));
}

/* The watching stream got a reset (reason, id epoch-gseq) next. */
static void reset(const char *reason, uint64_t epoch, uint64_t gseq)
{
	gwf_take(&fx, watch, gwf_reset_text(reason, epoch, gseq));
}

/* The watching stream got nothing else: the next thing it gets is an event the test hands the hub now. */
static void nothing_more(void)
{
	struct gwf_ev end = { fx.gw.hub.last_gseq + 1, NULL, "{\"end\":true}" };

	assert_int_equal(gwf_deliver(&fx, &end, 1), 1);
	gwf_take(&fx, watch, gwf_event_text(end.gseq, end.json));
}

static void assert_has(const char *text, const char *needle)
{
	if (strstr(text, needle) == NULL)
		fail_msg("no %s in: %s", needle, text);
}

/* ---- tests ---- */

/* The first flush sets the position; whole flushes in order are delivered and move it. */
static void test_in_order(void **state)
{
	static const uint64_t f1[] = { 5, 7 }, f2[] = { 9 }, all[] = { 5, 7, 9 };

	(void)state;
	flush(5, 8, f1, 2, true);
	assert_int_equal(fx.gw.hub.epoch, EPOCH);
	assert_int_equal(fx.gw.hub.last_gseq, 8); /* the flush's last, not its last wanted event */
	flush(9, 12, f2, 1, true);
	flush(13, 12, NULL, 0, true); /* an idle tick at the position */
	delivered(all, 3);
	assert_int_equal(fx.gw.hub.last_gseq, 12);
	assert_int_equal(fx.gw.m.replays, 0);
	assert_int_equal(fx.gw.m.gaps_detected, 0);
	nothing_more();
}

/* A hole (an index lost): the flush after it is held, the hole replayed for the wanted rooms, then it follows. */
static void test_hole_is_replayed_then_held_released(void **state)
{
	static const uint64_t f1[] = { 1 }, f3[] = { 8 }, f4[] = { 11 }, r[] = { 4, 6, 8 };
	static const uint64_t want[] = { 4, 6, 8, 11 };
	const char *req;

	(void)state;
	flush(1, 3, f1, 1, true);
	delivered(f1, 1);
	flush(7, 9, f3, 1, true); /* 4..6 never came */
	assert_int_equal(fx.gw.m.gaps_detected, 1);
	req = request();
	assert_has(req, "\"op\":\"replay\"");
	assert_has(req, "\"after\":\"6f1c2a9e-3\"");
	assert_has(req, "\"format\":\"frame\"");
	assert_has(req, "\"rooms\":[\"a\"]");
	flush(10, 12, f4, 1, true); /* held too */
	assert_int_equal(fx.gw.hub.last_gseq, 3);
	/* the broker's answer: the wanted events after 3 up to its newest when it answered (9) */
	answer(r, 3, 9, false);
	/* the held 7..9 adds nothing new, the held 10..12 follows */
	delivered(want, 4);
	assert_int_equal(fx.gw.hub.last_gseq, 12);
	assert_int_equal(fx.gw.m.events_repaired, 3);
	assert_int_equal(fx.gw.m.resets_gap_unrecoverable, 0);
	nothing_more();
}

/* A flush missing a wanted frame is replayed whole; a firehose asks for every room. */
static void test_incomplete_flush(void **state)
{
	static const uint64_t f1[] = { 1 }, f2[] = { 3 }, r[] = { 2, 3 }, want[] = { 1, 2, 3 };

	(void)state;
	gwf_stream(&fx, NULL, NULL);
	flush(1, 1, f1, 1, true);
	flush(2, 4, f2, 1, false);
	assert_null(strstr(request(), "\"rooms\""));
	answer(r, 2, 4, false);
	delivered(want, 3);
	assert_int_equal(fx.gw.hub.last_gseq, 4);
	nothing_more();
}

/* A hole and then an incomplete flush: one replay covers both, up to the flush's end. */
static void test_hole_then_incomplete(void **state)
{
	static const uint64_t f1[] = { 1 }, f4[] = { 4 }, r[] = { 2, 3, 4 }, want[] = { 1, 2, 3, 4 };

	(void)state;
	flush(1, 1, f1, 1, true);
	flush(3, 4, f4, 1, false);
	assert_has(request(), "\"after\":\"6f1c2a9e-1\"");
	answer(r, 3, 4, false);
	delivered(want, 4);
	assert_int_equal(fx.gw.hub.last_gseq, 4);
	nothing_more();
}

/* A page cut by its limit (MORE) is followed by the next one. */
static void test_paging(void **state)
{
	static const uint64_t f1[] = { 1 }, f9[] = { 9 }, p1[] = { 2, 3 }, p2[] = { 5, 9 };
	static const uint64_t want[] = { 1, 2, 3, 5, 9 };

	(void)state;
	flush(1, 1, f1, 1, true);
	flush(9, 9, f9, 1, true);
	request();
	answer(p1, 2, 9, true);
	assert_has(request(), "\"after\":\"6f1c2a9e-3\"");
	answer(p2, 2, 9, false);
	delivered(want, 5);
	assert_int_equal(fx.gw.hub.last_gseq, 9);
	assert_int_equal(fx.gw.m.replays, 2);
	nothing_more();
}

/* A stream joined a new room while a replay was out: its answer is not used, it is asked again. */
static void test_new_room_during_repair_refetches(void **state)
{
	static const uint64_t f1[] = { 1 }, f5[] = { 5 }, stale[] = { 3, 5 }, fresh[] = { 2, 3, 5 };
	static const uint64_t want[] = { 2, 3, 5 };
	const char *req;

	(void)state;
	flush(1, 1, f1, 1, true);
	delivered(f1, 1);
	flush(5, 5, f5, 1, true);
	assert_has(request(), "\"rooms\":[\"a\"]");
	gwf_stream(&fx, "room_id=c", NULL); /* the hub subscribes room c */
	answer(stale, 2, 5, false);
	req = request(); /* asked again, nothing of the stale answer used */
	assert_int_equal(fx.gw.hub.last_gseq, 1);
	assert_true(strstr(req, "\"rooms\":[\"a\",\"c\"]") != NULL || strstr(req, "\"rooms\":[\"c\",\"a\"]") != NULL);
	answer(fresh, 3, 5, false);
	delivered(want, 3);
	assert_int_equal(fx.gw.m.replays, 2);
	nothing_more();
}

/* The history no longer has the hole: every stream is reset after it, then the held flush follows. */
static void test_unrecoverable_resets_after_the_hole(void **state)
{
	static const uint64_t f1[] = { 1 }, f9[] = { 9 };

	(void)state;
	flush(1, 1, f1, 1, true);
	flush(8, 9, f9, 1, true);
	request();
	answer_text("{\"ok\":false,\"error\":{\"code\":\"history_unavailable\"}}");
	delivered(f1, 1);
	reset("gap_unrecoverable", EPOCH, 7);
	delivered(f9, 1);
	assert_int_equal(fx.gw.hub.last_gseq, 9);
	assert_int_equal(fx.gw.m.resets_gap_unrecoverable, 1);
	nothing_more();
}

/* The broker does not answer in time: the same reset. */
static void test_replay_timeout(void **state)
{
	static const uint64_t f1[] = { 1 }, f4[] = { 4 };

	(void)state;
	flush(1, 1, f1, 1, true);
	flush(3, 4, f4, 1, false); /* a hole and incomplete: replayed up to its end, not held */
	request();		   /* and never answered */
	delivered(f1, 1);
	reset("gap_unrecoverable", EPOCH, 4);
	assert_int_equal(fx.gw.hub.last_gseq, 4);
	nothing_more();
}

/* More held than --repair-max-bytes: the repair is abandoned, streams reset, live goes on. */
static void test_too_much_held_abandons(void **state)
{
	struct gw_repair *small = gw_repair_new(&fx.gw, 64);
	static const uint64_t f1[] = { 1 }, f5[] = { 5 }, f6[] = { 6 }, r[] = { 2, 3, 4 };

	(void)state;
	assert_non_null(small);
	flush_in(small, EPOCH, 1, 1, f1, 1, true);
	flush_in(small, EPOCH, 5, 5, f5, 1, true); /* a hole: held (56 bytes) */
	request();
	flush_in(small, EPOCH, 6, 6, f6, 1, true); /* would pass 64 bytes */
	delivered(f1, 1);
	reset("gap_unrecoverable", EPOCH, 5);
	delivered(f6, 1);
	/* the abandoned replay's answer finds nothing to do */
	answer(r, 3, 6, false);
	api_barrier();
	assert_int_equal(fx.gw.hub.last_gseq, 6);
	nothing_more();
	gw_repair_free(small);
}

/* A new epoch (the broker restarted empty): every stream reset with epoch_changed, then a repair from 0. */
static void test_epoch_change(void **state)
{
	static const uint64_t f1[] = { 1 }, n3[] = { 3 };

	(void)state;
	flush(1, 1, f1, 1, true);
	flush_in(rp, EPOCH + 1, 3, 3, n3, 1, true);
	assert_int_equal(fx.gw.hub.epoch, EPOCH + 1);
	delivered(f1, 1);
	reset("epoch_changed", EPOCH + 1, 0);
	assert_int_equal(fx.gw.m.resets_epoch_changed, 1);
	assert_has(request(), "\"after\":\"6f1c2a9f-0\""); /* 1..2 of the new epoch */
}

/* An idle tick beyond the position means the last flush was lost. */
static void test_tick_beyond_repairs(void **state)
{
	static const uint64_t f1[] = { 1 }, r[] = { 2 }, want[] = { 1, 2 };

	(void)state;
	flush(1, 1, f1, 1, true);
	flush(4, 3, NULL, 0, true);
	request();
	answer(r, 1, 3, false);
	delivered(want, 2);
	assert_int_equal(fx.gw.hub.last_gseq, 3);
	nothing_more();
}

/* The api refuses at once (the gateway stops): the hole resets at once, nothing stays held. */
static void test_api_refuses(void **state)
{
	static const uint64_t f1[] = { 1 }, f5[] = { 5 };

	(void)state;
	flush(1, 1, f1, 1, true);
	gwf_api_stop(&fx);
	flush(5, 5, f5, 1, true);
	delivered(f1, 1);
	reset("gap_unrecoverable", EPOCH, 4);
	delivered(f5, 1);
	assert_int_equal(fx.gw.hub.last_gseq, 5);
	nothing_more();
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
		cmocka_unit_test_setup_teardown(test_replay_timeout, setup_short_timeout, teardown),
		cmocka_unit_test_setup_teardown(test_too_much_held_abandons, setup, teardown),
		cmocka_unit_test_setup_teardown(test_epoch_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tick_beyond_repairs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_api_refuses, setup, teardown),
	};

	rc_log_set_level(RC_LOG_ERROR); /* the resets are logged as warnings */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
