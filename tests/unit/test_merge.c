/*
 * test_merge.c - a gateway following several brokers' buses at once
 * (--broker-bus A,B; gateway/merge.c): every broker of one stream publishes
 * every event with the same epoch and gseq, so each gseq must reach a
 * stream once and in order, whichever bus brings it first:
 * (a) both buses deliver everything, in different batchings and
 *     interleavings; (b) one lags behind the other; (c) one stops mid-way
 *     and the other goes on; (d) one loses a flush (or a frame of one) that
 *     the other has: no replay; (e) both lose the same range: the existing
 *     repair replays it; a gap that a connected bus does not fill waits at
 *     most --bus-gap-wait-ms; with one bus a gap is repaired at once, as
 *     before; buses that disagree on the epoch: the one streams are on is
 *     kept while a bus still serves it, the new one followed once none does.
 *
 * On a real gateway loop (gw_fixture.h) with its real bus client dialing
 * two nng PUB sockets the test holds, one per broker, on which it sends
 * messages in the bus encoding of broker/bus.c (common/frame.h: a small
 * flush whole in one message, a larger one as a frame per room and its
 * index; idle ticks). The stream of room a shows what was delivered; the
 * broker api is the fixture's REP socket, whose replay requests the test
 * answers itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include "bus_client.h"
#include "error.h"
#include "frame.h"
#include "gw_fixture.h"
#include "hub.h"
#include "log.h"
#include "merge.h"

#define EPOCH  GWF_EPOCH
#define EPOCH2 0x11223344u
#define NSRC   2

static struct gwf fx;
static nng_socket pub[NSRC];
static bool pub_open[NSRC];
static unsigned nsrc;
static char urls[256];
static struct gwf_client *watch; /* a stream of room a: its events and the global ones */
static atomic_int pub_pipes[NSRC];   /* connections each PUB socket has taken on */

/* nng thread: a message sent before the PUB side has the connection would go nowhere. */
static void pub_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	(void)ev;
	atomic_fetch_add((atomic_int *)arg, 1);
}

static void start(unsigned n, int64_t gap_wait_ms)
{
	static unsigned gen;
	struct gw_options o;
	size_t off = 0;

	nsrc = n;
	for (unsigned i = 0; i < n; i++) {
		char url[64];
		snprintf(url, sizeof(url), "inproc://merge-%d-%u-%u", (int)getpid(), gen, i);
		assert_int_equal(nng_pub0_open(&pub[i]), 0);
		/* the tests send faster than the gateway reads: nng would drop past its default queue of 16 */
		assert_int_equal(nng_socket_set_int(pub[i], NNG_OPT_SENDBUF, 8192), 0);
		atomic_store(&pub_pipes[i], 0);
		assert_int_equal(nng_pipe_notify(pub[i], NNG_PIPE_EV_ADD_POST, pub_pipe_cb, &pub_pipes[i]), 0);
		assert_int_equal(nng_listen(pub[i], url, NULL, 0), 0);
		pub_open[i] = true;
		off += (size_t)snprintf(urls + off, sizeof(urls) - off, "%s%s", i ? "," : "", url);
	}
	gen++;
	gwf_options(&o);
	o.broker_bus = urls;
	o.bus_gap_wait_ms = gap_wait_ms;
	gwf_start(&fx, &o);
	assert_int_equal(gw_loop_bus_start(&fx.gw), RC_OK);
	for (unsigned i = 0; i < n; i++)
		GWF_WAIT(&fx, gw_bus_source_connected(fx.gw.bus, i) && atomic_load(&pub_pipes[i]) > 0);
	watch = gwf_stream(&fx, "room_id=a", NULL);
}

static int setup(void **state)
{
	start(NSRC, 60000); /* a gap waits for the other bus as long as the test runs */
	*state = &fx;
	return 0;
}

static int setup_short_wait(void **state)
{
	start(NSRC, 20);
	*state = &fx;
	return 0;
}

static int setup_one(void **state)
{
	start(1, 60000);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	for (unsigned i = 0; i < nsrc; i++)
		if (pub_open[i])
			nng_close(pub[i]);
	gwf_stop(*state); /* stops the bus side too */
	return 0;
}

/* ---- the brokers' side: flushes as broker/bus.c sends them ---- */

static void send_msg(unsigned s, const void *topic, size_t tlen, const uint8_t *body, size_t len)
{
	nng_msg *m;

	assert_int_equal(nng_msg_alloc(&m, 0), 0);
	assert_int_equal(nng_msg_append(m, topic, tlen), 0);
	assert_int_equal(nng_msg_append(m, body, len), 0);
	assert_int_equal(nng_sendmsg(pub[s], m, 0), 0);
}

/* Writes the frame events evs[0..n) at buf (after its header); returns the bytes. */
static size_t put_events(uint8_t *buf, const struct gwf_ev *evs, size_t n)
{
	size_t off = 0;

	for (size_t i = 0; i < n; i++) {
		char json[32];
		struct rc_frame_event ev = {
			.gseq = evs[i].gseq,
			.rseq = evs[i].gseq,
			.room = evs[i].room,
			.room_len = (uint16_t)(evs[i].room ? strlen(evs[i].room) : 0),
			.json = json,
		};
		snprintf(json, sizeof(json), "{\"n\":%llu}", (unsigned long long)evs[i].gseq);
		ev.json_len = (uint32_t)strlen(json);
		off += rc_frame_put_event(buf + off, &ev);
	}
	return off;
}

static bool same_room(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

enum how {
	WHOLE,	   /* one message: an index with RC_FRAME_WHOLE and every event */
	SPLIT,	   /* a frame per room, then the index */
	LOSE_A,	   /* SPLIT, but room a's frame is lost (the index says it was sent) */
};

/* Source s sends the flush first..last holding evs[0..n) (gseqs in first..last); n 0: an idle tick at last. */
static void send_flush(unsigned s, uint64_t epoch, uint64_t first, uint64_t last, const struct gwf_ev *evs, size_t n,
		       enum how how)
{
	uint8_t buf[8192];
	struct rc_frame_hdr ihdr = { .epoch = epoch, .last_gseq = last, .flags = RC_FRAME_INDEX };
	size_t off = RC_INDEX_HDR_SIZE;
	const char *rooms[16];
	uint32_t counts[16];
	size_t nrooms = 0;

	if (n == 0) {
		ihdr.flags |= RC_FRAME_TICK;
		rc_index_put_header(buf, &ihdr, last + 1);
		send_msg(s, RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN, buf, off);
		return;
	}
	if (how == WHOLE) {
		struct rc_frame_hdr fhdr = { .epoch = epoch, .last_gseq = last, .count = (uint32_t)n };
		ihdr.flags |= RC_FRAME_WHOLE;
		rc_index_put_header(buf, &ihdr, first);
		rc_frame_put_header(buf + off, &fhdr);
		off += RC_FRAME_HDR_SIZE;
		off += put_events(buf + off, evs, n);
		send_msg(s, RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN, buf, off);
		return;
	}
	/* the rooms in order of their first event, each room's events in one frame */
	for (size_t i = 0; i < n; i++) {
		size_t r = 0;
		while (r < nrooms && !same_room(rooms[r], evs[i].room))
			r++;
		if (r == nrooms) {
			assert_true(nrooms < 16);
			rooms[nrooms] = evs[i].room;
			counts[nrooms++] = 0;
		}
		counts[r]++;
	}
	for (size_t r = 0; r < nrooms; r++) {
		struct gwf_ev mine[64];
		size_t k = 0, len = RC_FRAME_HDR_SIZE;
		char topic[RC_BUS_TOPIC_MAX];
		struct rc_frame_hdr fhdr = { .epoch = epoch, .last_gseq = last, .count = counts[r] };
		for (size_t i = 0; i < n; i++)
			if (same_room(rooms[r], evs[i].room))
				mine[k++] = evs[i];
		rc_frame_put_header(buf, &fhdr);
		len += put_events(buf + len, mine, k);
		if (how == LOSE_A && rooms[r] != NULL && strcmp(rooms[r], "a") == 0)
			continue;
		send_msg(s, topic, rc_bus_topic(topic, rooms[r], rooms[r] ? strlen(rooms[r]) : 0), buf, len);
	}
	ihdr.count = (uint32_t)nrooms;
	rc_index_put_header(buf, &ihdr, first);
	for (size_t r = 0; r < nrooms; r++) {
		struct rc_index_entry e = { rooms[r], (uint16_t)(rooms[r] ? strlen(rooms[r]) : 0), counts[r] };
		off += rc_index_put_entry(buf + off, &e);
	}
	send_msg(s, RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN, buf, off);
}

/* The events of gseqs first..last: rooms a, b and global in turn. */
static size_t events(struct gwf_ev *evs, uint64_t first, uint64_t last)
{
	static const char *const rooms[] = { "a", "b", NULL };
	size_t n = 0;

	for (uint64_t g = first; g <= last; g++)
		evs[n++] = (struct gwf_ev){ g, rooms[g % 3], NULL };
	return n;
}

/* Source s sends the events first..last as one flush. */
static void flush(unsigned s, uint64_t first, uint64_t last, enum how how)
{
	struct gwf_ev evs[64];

	assert_true(last - first < 64);
	send_flush(s, EPOCH, first, last, evs, events(evs, first, last), how);
}

/* Waits until source s's flushes up to last reached the merge. */
static void reached(unsigned s, uint64_t last)
{
	GWF_WAIT(&fx, gw_merge_source_last(fx.gw.merge, s) >= last);
}

/* Source s sends first..last as flushes of `batch` events, each handled by the gateway before the next. */
static void flushes(unsigned s, uint64_t first, uint64_t last, uint64_t batch, enum how how)
{
	for (uint64_t g = first; g <= last; g += batch) {
		uint64_t end = g + batch - 1 <= last ? g + batch - 1 : last;
		flush(s, g, end, how);
		reached(s, end);
	}
}

/* The watching stream got the events of room a and the global ones among first..last next, in order. */
static void delivered(uint64_t first, uint64_t last)
{
	for (uint64_t g = first; g <= last; g++)
		if (g % 3 != 1) /* room b is not the stream's */
			gwf_take(&fx, watch, gwf_event_text(g, NULL));
}

/* Nothing else came before: source s's next flush (after the hub's position) is the next thing the stream gets. */
static void nothing_more(unsigned s)
{
	uint64_t g = fx.gw.hub.last_gseq + 1;
	struct gwf_ev end = { g, "a", NULL };

	send_flush(s, fx.gw.hub.epoch, g, g, &end, 1, WHOLE);
	gwf_take(&fx, watch, gwf_event_text(g, NULL));
}

static void no_repair(void)
{
	assert_int_equal(fx.gw.m.gaps_detected, 0);
	assert_int_equal(fx.gw.m.replays, 0);
	assert_int_equal(fx.gw.m.resets_gap_unrecoverable + fx.gw.m.resets_epoch_changed, 0);
}

static void assert_has(const char *text, const char *needle)
{
	if (strstr(text, needle) == NULL)
		fail_msg("no %s in: %s", needle, text);
}

/* The broker's answer to the replay after 3: room a's and the global events up to its newest (9). */
static size_t replay_answer(uint8_t *buf, size_t cap)
{
	static const struct gwf_ev r[] = { { 5, NULL, NULL }, { 6, "a", NULL }, { 8, NULL, NULL }, { 9, "a", NULL } };

	return gwf_frame(buf, cap, EPOCH, 9, RC_FRAME_REPLAY, r, 4);
}

/* ---- (a) both deliver everything ---- */

/* One bus after the other, each whole, in different batchings. */
static void test_both_one_after_the_other(void **state)
{
	(void)state;
	flushes(0, 1, 30, 3, WHOLE);
	flushes(1, 1, 30, 7, SPLIT);
	delivered(1, 30);
	assert_int_equal(fx.gw.hub.last_gseq, 30);
	no_repair();
	nothing_more(1);
}

/* Flush by flush, alternating, batches that overlap and straddle each other. */
static void test_both_interleaved(void **state)
{
	(void)state;
	flush(0, 1, 4, WHOLE);
	reached(0, 4);
	flush(1, 1, 2, SPLIT);
	flush(1, 3, 6, SPLIT);
	reached(1, 6);
	flush(0, 5, 9, SPLIT); /* 5..6 taken already from the other bus */
	reached(0, 9);
	flush(1, 7, 8, WHOLE);
	flush(1, 9, 12, WHOLE);
	reached(1, 12);
	flush(0, 10, 12, WHOLE);
	flush(0, 13, 13, WHOLE);
	reached(0, 13);
	delivered(1, 13);
	no_repair();
	nothing_more(0);
}

/* Both send at once without waiting: whatever the interleaving, each gseq once, in order. */
static void test_both_at_once(void **state)
{
	(void)state;
	for (uint64_t g = 1; g <= 40; g += 4) {
		flush(0, g, g + 3, (g / 4) % 2 ? SPLIT : WHOLE);
		flush(1, g, g + 1, WHOLE);
		flush(1, g + 2, g + 3, SPLIT);
	}
	reached(0, 40);
	reached(1, 40);
	delivered(1, 40);
	no_repair();
	/* ticks at the position from both: nothing */
	send_flush(0, EPOCH, 41, 40, NULL, 0, WHOLE);
	send_flush(1, EPOCH, 41, 40, NULL, 0, WHOLE);
	reached(0, 40);
	nothing_more(1);
}

/* ---- (b) one bus lags ---- */

static void test_one_lags(void **state)
{
	(void)state;
	flushes(0, 1, 20, 5, WHOLE);
	delivered(1, 20);
	flushes(1, 1, 10, 2, SPLIT); /* far behind: all taken already */
	flushes(0, 21, 30, 5, SPLIT);
	flushes(1, 11, 30, 10, WHOLE);
	delivered(21, 30);
	flushes(1, 31, 33, 3, WHOLE); /* the laggard leads now */
	delivered(31, 33);
	no_repair();
	nothing_more(0);
}

/* ---- (c) one bus stops mid-way ---- */

static void test_one_stops(void **state)
{
	(void)state;
	flushes(0, 1, 10, 2, WHOLE);
	flushes(1, 1, 4, 4, SPLIT);
	delivered(1, 10);
	nng_close(pub[0]); /* the leading broker dies */
	pub_open[0] = false;
	GWF_WAIT(&fx, !gw_bus_source_connected(fx.gw.bus, 0));
	flushes(1, 5, 25, 3, SPLIT);
	delivered(11, 25);
	assert_true(gw_bus_connected(fx.gw.bus));
	no_repair();
	nothing_more(1);
}

/* The bus that stops leaves a hole behind it: the other one fills it. */
static void test_one_stops_after_a_hole(void **state)
{
	(void)state;
	flushes(0, 1, 3, 3, WHOLE);
	flushes(1, 1, 3, 3, WHOLE);
	flushes(0, 7, 9, 3, WHOLE); /* 4..6 lost on this bus: held */
	delivered(1, 3);
	nng_close(pub[0]);
	pub_open[0] = false;
	GWF_WAIT(&fx, !gw_bus_source_connected(fx.gw.bus, 0));
	flushes(1, 4, 12, 3, SPLIT);
	delivered(4, 12);
	no_repair();
	nothing_more(1);
}

/* ---- (d) one bus loses what the other has ---- */

/* A whole flush lost (its index too): the flush after it waits for the other bus, which has it. */
static void test_lost_flush_filled_by_the_other(void **state)
{
	(void)state;
	flushes(0, 1, 3, 3, WHOLE);
	flushes(0, 7, 12, 3, WHOLE); /* 4..6 never came on this bus */
	delivered(1, 3);
	assert_int_equal(fx.gw.hub.last_gseq, 3);
	flushes(1, 1, 12, 6, SPLIT);
	delivered(4, 12);
	no_repair();
	nothing_more(0);
}

/* Room a's frame lost (the index came: the flush is incomplete): the other bus's complete copy is taken. */
static void test_incomplete_flush_filled_by_the_other(void **state)
{
	(void)state;
	flushes(0, 1, 3, 3, SPLIT);
	flush(0, 4, 6, LOSE_A);
	reached(0, 6);
	flushes(0, 7, 9, 3, SPLIT);
	delivered(1, 3);
	flushes(1, 1, 9, 3, WHOLE);
	delivered(4, 9);
	no_repair();
	nothing_more(1);
}

/* The other bus lost a different flush: each fills the other's hole. */
static void test_crossed_losses(void **state)
{
	(void)state;
	flushes(0, 1, 3, 3, WHOLE);
	flushes(0, 7, 9, 3, WHOLE);   /* bus 0 lost 4..6 */
	flushes(1, 1, 6, 3, WHOLE);   /* bus 1 has it */
	flushes(1, 10, 12, 3, WHOLE); /* but lost 7..9, which bus 0 gave already */
	flushes(0, 10, 15, 3, SPLIT);
	delivered(1, 15);
	no_repair();
	nothing_more(0);
}

/* ---- (e) both lose the same range ---- */

static void test_both_lose_the_same_range(void **state)
{
	uint8_t buf[1024];
	size_t len;
	const char *req;

	(void)state;
	flushes(0, 1, 3, 3, WHOLE);
	flushes(1, 1, 3, 3, SPLIT);
	flushes(0, 7, 9, 3, WHOLE);
	flushes(1, 7, 9, 3, SPLIT); /* both lost 4..6 */
	req = gwf_api_request(&fx);
	assert_has(req, "\"op\":\"replay\"");
	assert_has(req, "\"after\":\"6f1c2a9e-3\"");
	assert_int_equal(fx.gw.m.gaps_detected, 1);
	/* the broker's answer: room a's and global events after 3, up to its newest (9) */
	len = replay_answer(buf, sizeof(buf));
	gwf_api_reply(&fx, buf, len);
	delivered(1, 9);
	assert_int_equal(fx.gw.m.events_repaired, 4);
	assert_int_equal(fx.gw.m.resets_gap_unrecoverable, 0);
	nothing_more(0);
}

/* A hole that a connected bus does not fill (it says nothing) is repaired after --bus-gap-wait-ms. */
static void test_silent_bus_is_waited_for_a_while(void **state)
{
	uint8_t buf[1024];
	size_t len;

	(void)state;
	flushes(0, 1, 3, 3, WHOLE);
	flushes(0, 7, 9, 3, WHOLE); /* bus 1 never says a word */
	assert_has(gwf_api_request(&fx), "\"after\":\"6f1c2a9e-3\"");
	len = replay_answer(buf, sizeof(buf));
	gwf_api_reply(&fx, buf, len);
	delivered(1, 9);
	nothing_more(0);
}

/* With one bus a hole is repaired at once, as before (no wait). */
static void test_one_bus_repairs_at_once(void **state)
{
	uint8_t buf[1024];
	size_t len;

	(void)state;
	flushes(0, 1, 3, 3, WHOLE);
	flushes(0, 7, 9, 3, WHOLE);
	assert_has(gwf_api_request(&fx), "\"after\":\"6f1c2a9e-3\""); /* --bus-gap-wait-ms is 60 s here */
	len = replay_answer(buf, sizeof(buf));
	gwf_api_reply(&fx, buf, len);
	delivered(1, 9);
	nothing_more(0);
}

/* ---- epochs ---- */

/* A bus on another epoch is ignored while one on the streams' epoch serves; followed once none does. */
static void test_other_epoch_ignored_while_one_serves(void **state)
{
	struct gwf_ev ev[3];

	(void)state;
	flushes(0, 1, 3, 3, WHOLE);
	send_flush(1, EPOCH2, 1, 2, ev, events(ev, 1, 2), WHOLE); /* a broker on another stream */
	reached(1, 2);
	flushes(0, 4, 6, 3, SPLIT);
	delivered(1, 6);
	assert_int_equal(fx.gw.hub.epoch, EPOCH);
	no_repair();
	/* the bus of the streams' epoch is gone: the other one is followed, streams reset once */
	nng_close(pub[0]);
	pub_open[0] = false;
	GWF_WAIT(&fx, !gw_bus_source_connected(fx.gw.bus, 0));
	send_flush(1, EPOCH2, 3, 3, ev, events(ev, 3, 3), WHOLE);
	gwf_take(&fx, watch, gwf_reset_text("epoch_changed", EPOCH2, 0));
	assert_int_equal(fx.gw.hub.epoch, EPOCH2);
	assert_int_equal(fx.gw.m.resets_epoch_changed, 1);
}

/* Both move to a new epoch (the stream was made again): one reset, when the last of them moved. */
static void test_both_move_to_a_new_epoch(void **state)
{
	struct gwf_ev ev[3];

	(void)state;
	flushes(0, 1, 3, 3, WHOLE);
	flushes(1, 1, 3, 3, WHOLE);
	delivered(1, 3);
	send_flush(0, EPOCH2, 1, 1, ev, events(ev, 1, 1), WHOLE);
	reached(0, 1);
	assert_int_equal(fx.gw.hub.epoch, EPOCH); /* bus 1 still serves the old epoch */
	flushes(1, 4, 6, 3, WHOLE);
	delivered(4, 6);
	send_flush(1, EPOCH2, 1, 2, ev, events(ev, 1, 2), WHOLE);
	gwf_take(&fx, watch, gwf_reset_text("epoch_changed", EPOCH2, 0));
	assert_int_equal(fx.gw.hub.epoch, EPOCH2);
	assert_int_equal(fx.gw.m.resets_epoch_changed, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_both_one_after_the_other, setup, teardown),
		cmocka_unit_test_setup_teardown(test_both_interleaved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_both_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_lags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_stops_after_a_hole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_flush_filled_by_the_other, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incomplete_flush_filled_by_the_other, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crossed_losses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_both_lose_the_same_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_bus_is_waited_for_a_while, setup_short_wait, teardown),
		cmocka_unit_test_setup_teardown(test_one_bus_repairs_at_once, setup_one, teardown),
		cmocka_unit_test_setup_teardown(test_other_epoch_ignored_while_one_serves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_both_move_to_a_new_epoch, setup, teardown),
	};

	rc_log_set_level(RC_LOG_ERROR); /* resets and epoch changes are logged as warnings */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
