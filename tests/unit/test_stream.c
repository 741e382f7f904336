/*
 * test_stream.c - SSE streams (gateway/stream.c) on a real gateway loop
 * (gw_fixture.h): clients connect over TCP, the router opens their streams,
 * the test hands frames to the hub and reads what each client receives.
 *
 * The response head and preamble; events in gseq order across rooms, with
 * global events, each once; a resume replays from the broker api (answered
 * by the test), holds the live events meanwhile and sends none twice, and
 * waits for the first bus frame when it comes before it; stream.reset text
 * and ids for each reason; pings over the real timer, in order with events;
 * a client that stops reading is closed past --max-client-buffer; a client
 * that leaves is noticed without a write and its stream freed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "gw_fixture.h"
#include "hub.h"
#include "log.h"
#include "sse.h"

#define EPOCH GWF_EPOCH

static struct gwf fx;

static int setup_with(void **state, const struct gw_options *o)
{
	gwf_start(&fx, o);
	*state = &fx;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, NULL);
}

static int setup_cors(void **state)
{
	struct gw_options o;

	gwf_options(&o);
	o.cors_origin = "*";
	return setup_with(state, &o);
}

static int setup_heartbeat(void **state)
{
	struct gw_options o;

	gwf_options(&o);
	o.heartbeat_ms = 5;
	return setup_with(state, &o);
}

static int setup_slow(void **state)
{
	struct gw_options o;

	gwf_options(&o);
	o.max_client_buffer = 4096;
	return setup_with(state, &o);
}

static int teardown(void **state)
{
	gwf_stop(*state);
	return 0;
}

/* A replay answer: events evs[0..n) in EPOCH, the broker's last gseq `last`, MORE when more. */
static void reply_replay(struct gwf *f, const struct gwf_ev *evs, size_t n, uint64_t last, bool more)
{
	uint8_t buf[4096];
	size_t len = gwf_frame(buf, sizeof(buf), EPOCH, last, RC_FRAME_REPLAY | (more ? RC_FRAME_MORE : 0), evs, n);

	gwf_api_reply(f, buf, len);
}

static void assert_has(const char *text, const char *needle)
{
	if (strstr(text, needle) == NULL)
		fail_msg("no %s in:\n%s", needle, text);
}

/* ---- tests ---- */

/* 200, an event-stream that is never cached, then the preamble; nothing more while nothing happens. */
static void test_head_and_preamble(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_stream(f, "room_id=a", NULL);
	char *head_end = strstr(c->in, "\r\n\r\n");

	assert_non_null(head_end);
	*head_end = '\0'; /* the head alone (the preamble after it was checked and taken) */
	assert_true(strncmp(c->in, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_has(c->in, "\r\nContent-Type: text/event-stream; charset=utf-8");
	assert_has(c->in, "\r\nCache-Control: no-cache");
	assert_has(c->in, "\r\nX-Accel-Buffering: no");
	assert_null(strstr(c->in, "Content-Length"));
	assert_null(strstr(c->in, "Access-Control-Allow-Origin"));
	*head_end = '\r';
	assert_int_equal(f->gw.m.streams_open, 1);
	assert_int_equal(f->gw.m.firehose_open, 0);
	assert_int_equal(f->gw.m.http_by_status[200], 1);
	/* a firehose counts as one */
	gwf_stream(f, NULL, NULL);
	assert_int_equal(f->gw.m.streams_open, 2);
	assert_int_equal(f->gw.m.firehose_open, 1);
	assert_int_equal(c->len, c->seen);
}

/* With --cors-origin, the stream's head allows that origin. */
static void test_head_with_cors(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_stream(f, "room_id=a", NULL);

	assert_has(c->in, "\r\nAccess-Control-Allow-Origin: *\r\n");
}

/* Each stream gets the events of its rooms and the global ones, in gseq order, each once. */
static void test_rooms_in_gseq_order_with_global_events(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *ab = gwf_stream(f, "room_id=a,b", NULL), *c = gwf_stream(f, "room_id=c", NULL),
			  *fire = gwf_stream(f, NULL, NULL);
	static const struct gwf_ev f1[] = {
		{ 1, "a", NULL }, { 2, "b", NULL }, { 3, NULL, NULL }, { 4, "a", NULL }, { 5, "d", NULL }
	};
	/* overlaps what was delivered (a repair's replay does): only 6 and 7 are new */
	static const struct gwf_ev f2[] = { { 4, "a", NULL }, { 5, "d", NULL }, { 6, "b", NULL }, { 7, "c", NULL } };
	static const struct gwf_ev f3[] = { { 8, NULL, "{\"type\":\"end\"}" } };

	assert_int_equal(gwf_deliver(f, f1, 5), 5);
	assert_int_equal(f->gw.hub.last_gseq, 5);
	for (uint64_t g = 1; g <= 4; g++)
		gwf_take(f, ab, gwf_event_text(g, NULL));
	gwf_take(f, c, gwf_event_text(3, NULL));
	for (uint64_t g = 1; g <= 5; g++)
		gwf_take(f, fire, gwf_event_text(g, NULL));

	assert_int_equal(gwf_deliver(f, f2, 4), 2);
	gwf_take(f, ab, gwf_event_text(6, NULL));
	gwf_take(f, c, gwf_event_text(7, NULL));
	gwf_take(f, fire, gwf_event_text(6, NULL));
	gwf_take(f, fire, gwf_event_text(7, NULL));

	/* a global event everyone gets next: nothing else came before it */
	assert_int_equal(gwf_deliver(f, f3, 1), 1);
	gwf_take(f, ab, gwf_event_text(8, "{\"type\":\"end\"}"));
	gwf_take(f, c, gwf_event_text(8, "{\"type\":\"end\"}"));
	gwf_take(f, fire, gwf_event_text(8, "{\"type\":\"end\"}"));
	assert_int_equal(f->gw.m.events_delivered, (4 + 1 + 5) + (1 + 1 + 2) + 3);
}

/*
 * A resume: the replay (its pages asked for one after the other) comes
 * first, the live events that arrived meanwhile follow, and what both
 * carried goes out once.
 */
static void test_resume_replays_then_goes_live(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *s;
	const char *req;
	static const struct gwf_ev live[] = { { 3, "a", NULL }, { 4, "a", NULL } };
	static const struct gwf_ev page1[] = { { 2, "a", NULL } }, page2[] = { { 3, "a", NULL } };
	static const struct gwf_ev next[] = { { 5, NULL, NULL } };

	gw_hub_start(&f->gw.hub, EPOCH, 2);
	s = gwf_stream(f, "room_id=a", "6f1c2a9e-1");
	req = gwf_api_request(f);
	assert_has(req, "\"op\":\"replay\"");
	assert_has(req, "\"rooms\":[\"a\"],\"global\":true");
	assert_has(req, "\"after\":\"6f1c2a9e-1\"");
	assert_has(req, "\"format\":\"frame\"");
	/* live events while the replay is out: held */
	assert_int_equal(gwf_deliver(f, live, 2), 2);
	reply_replay(f, page1, 1, 3, true);
	gwf_take(f, s, gwf_event_text(2, NULL));
	/* the next page once the first is written */
	req = gwf_api_request(f);
	assert_has(req, "\"after\":\"6f1c2a9e-2\"");
	reply_replay(f, page2, 1, 3, false);
	gwf_take(f, s, gwf_event_text(3, NULL));
	gwf_take(f, s, gwf_event_text(4, NULL)); /* held; 3 was in the replay */
	assert_int_equal(gwf_deliver(f, next, 1), 1);
	gwf_take(f, s, gwf_event_text(5, NULL));
	assert_int_equal(f->gw.m.replays, 2);
	assert_int_equal(f->gw.m.resets_history_unavailable, 0);
}

/* A resume before the gateway's first bus frame waits for it, then replays from its id. */
static void test_resume_waits_for_the_first_frame(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *s = gwf_stream(f, "room_id=a", "6f1c2a9e-1");
	static const struct gwf_ev replay[] = { { 2, "a", NULL }, { 3, "a", NULL } };
	static const struct gwf_ev live[] = { { 4, "a", NULL } };
	const char *req;

	assert_int_equal(f->gw.m.replays, 0);
	gw_hub_start(&f->gw.hub, EPOCH, 3);
	assert_int_equal(f->gw.m.replays, 1);
	req = gwf_api_request(f);
	assert_has(req, "\"after\":\"6f1c2a9e-1\"");
	reply_replay(f, replay, 2, 3, false);
	gwf_take(f, s, gwf_event_text(2, NULL));
	gwf_take(f, s, gwf_event_text(3, NULL));
	assert_int_equal(gwf_deliver(f, live, 1), 1);
	gwf_take(f, s, gwf_event_text(4, NULL));
}

/*
 * stream.reset's text and id for each reason, and the stream goes on live
 * after that id: a resume from another epoch or with a malformed id, a gap
 * the gateway gives up on (the position never goes back), a new epoch.
 */
static void test_resets(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *other, *bad, *live;
	static const struct gwf_ev old[] = { { 9, "a", NULL } }, next[] = { { 10, "a", NULL } };

	gw_hub_start(&f->gw.hub, EPOCH, 7);
	other = gwf_stream(f, "room_id=a", "1234abcd-3");
	gwf_take(f, other, gwf_reset_text("epoch_changed", EPOCH, 7));
	bad = gwf_stream(f, "room_id=a", "nope");
	gwf_take(f, bad, gwf_reset_text("history_unavailable", EPOCH, 7));
	live = gwf_stream(f, "room_id=a", NULL);
	assert_int_equal(f->gw.m.resets_epoch_changed, 1);
	assert_int_equal(f->gw.m.resets_history_unavailable, 1);
	assert_int_equal(f->gw.m.replays, 0);

	assert_int_equal(gw_hub_skip(&f->gw.hub, 9), 9);
	assert_int_equal(gw_hub_skip(&f->gw.hub, 5), 9);
	assert_int_equal(f->gw.hub.last_gseq, 9);
	assert_int_equal(gwf_deliver(f, old, 1), 0);
	assert_int_equal(gwf_deliver(f, next, 1), 1);
	for (int i = 0; i < 3; i++) {
		struct gwf_client *c = i == 0 ? other : i == 1 ? bad : live;
		gwf_take(f, c, gwf_reset_text("gap_unrecoverable", EPOCH, 9));
		gwf_take(f, c, gwf_reset_text("gap_unrecoverable", EPOCH, 9));
		gwf_take(f, c, gwf_event_text(10, NULL));
	}
	assert_int_equal(f->gw.m.resets_gap_unrecoverable, 6);

	gw_hub_restart(&f->gw.hub, EPOCH + 1);
	assert_int_equal(f->gw.hub.epoch, EPOCH + 1);
	assert_int_equal(f->gw.hub.last_gseq, 0);
	gwf_take(f, other, gwf_reset_text("epoch_changed", EPOCH + 1, 0));
	gwf_take(f, bad, gwf_reset_text("epoch_changed", EPOCH + 1, 0));
	gwf_take(f, live, gwf_reset_text("epoch_changed", EPOCH + 1, 0));
	assert_int_equal(f->gw.m.resets_epoch_changed, 4);
}

/* The broker cannot replay: epoch_mismatch resets with epoch_changed, anything else history_unavailable. */
static void test_resume_refused_by_the_broker(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *s1, *s2;
	static const char mismatch[] = "{\"ok\":false,\"error\":{\"code\":\"epoch_mismatch\",\"message\":\"x\"}}";
	static const char evicted[] = "{\"ok\":false,\"error\":{\"code\":\"history_unavailable\",\"message\":\"x\"}}";
	static const struct gwf_ev live[] = { { 6, "a", NULL } };

	gw_hub_start(&f->gw.hub, EPOCH, 5);
	s1 = gwf_stream(f, "room_id=a", "6f1c2a9e-2");
	gwf_api_request(f);
	gwf_api_reply(f, mismatch, sizeof(mismatch) - 1);
	gwf_take(f, s1, gwf_reset_text("epoch_changed", EPOCH, 5));
	s2 = gwf_stream(f, "room_id=a", "6f1c2a9e-2");
	gwf_api_request(f);
	gwf_api_reply(f, evicted, sizeof(evicted) - 1);
	gwf_take(f, s2, gwf_reset_text("history_unavailable", EPOCH, 5));
	assert_int_equal(gwf_deliver(f, live, 1), 1);
	gwf_take(f, s1, gwf_event_text(6, NULL));
	gwf_take(f, s2, gwf_event_text(6, NULL));
}

/* The api client is gone (the gateway stops): a resume is reset at once. */
static void test_resume_without_the_api(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *s;

	gw_hub_start(&f->gw.hub, EPOCH, 5);
	gwf_api_stop(f);
	s = gwf_stream(f, "room_id=a", "6f1c2a9e-2");
	gwf_take(f, s, gwf_reset_text("history_unavailable", EPOCH, 5));
}

/* Takes the pings at the head of what c got; what is left is at most the start of one more. */
static size_t take_only_pings(struct gwf_client *c)
{
	size_t n = gwf_take_pings(c), left = c->len - c->seen;

	if (left >= strlen(RC_SSE_PING) || memcmp(gwf_rest(c), RC_SSE_PING, left) != 0)
		fail_msg("wanted only pings, got:\n%s", gwf_rest(c));
	return n;
}

/* A quiet stream gets ': ping' from the timer: after the preamble, and again after an event. */
static void test_heartbeat(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_stream(f, "room_id=a", NULL);
	static const struct gwf_ev ev[] = { { 1, "a", NULL } };

	GWF_WAIT(f, gwf_has(c, RC_SSE_PING));
	assert_true(take_only_pings(c) >= 1);
	assert_int_equal(gwf_deliver(f, ev, 1), 1);
	GWF_WAIT(f, gwf_has(c, "data: "));
	gwf_take_pings(c); /* pings may come before it, never within it */
	gwf_take(f, c, gwf_event_text(1, NULL));
	GWF_WAIT(f, gwf_has(c, RC_SSE_PING));
	assert_true(take_only_pings(c) >= 1);
	assert_true(f->gw.m.heartbeats >= 2);
}

/* A client that stops reading is closed once more than --max-client-buffer waits for it; what it got has no hole. */
static void test_slow_client_is_closed(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c;
	struct gw_conn *conn;
	uv_os_fd_t fd;
	int sndbuf = 4096;
	static char json[1024];
	uint64_t g, want = 1;
	const char *p;

	f->stream_rcvbuf = 1024;
	c = gwf_stream(f, "room_id=a", NULL);
	c->paused = true;
	/* the kernel's buffers on both sides small too, so that the gateway's queue grows soon */
	conn = gw_container_of(gw_list_first(&f->gw.conns), struct gw_conn, node);
	assert_int_equal(uv_fileno((uv_handle_t *)&conn->tcp, &fd), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	snprintf(json, sizeof(json), "{\"pad\":\"%0*d\"}", 1000, 0);
	for (g = 1; g <= 20000 && f->gw.m.streams_open == 1; g++) {
		struct gwf_ev ev = { g, "a", json };
		assert_int_equal(gwf_deliver(f, &ev, 1), 1);
		gwf_poll(f);
	}
	GWF_WAIT(f, f->gw.m.streams_open == 0);
	assert_int_equal(f->gw.m.slow_closes, 1);
	assert_int_equal(f->gw.m.conns_open, 0);
	assert_false(gw_hub_wants(&f->gw.hub, "a", 1));
	/* what reached the client: events 1, 2, ... up to the close, none missing */
	gwf_wait_eof(f, c);
	for (p = gwf_rest(c); (p = strstr(p, "id: 6f1c2a9e-")) != NULL; p++)
		assert_int_equal(strtoull(p + 13, NULL, 10), want++);
	assert_true(want > 1);
	assert_true(want < g); /* it was behind */
}

/* A client that goes away is noticed without writing to it: its stream and its rooms go. */
static void test_client_eof_frees_the_stream(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *a = gwf_stream(f, "room_id=a", NULL), *ab = gwf_stream(f, "room_id=a,b", NULL);

	assert_int_equal(f->gw.m.streams_open, 2);
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 2);
	gwf_close(ab);
	GWF_WAIT(f, f->gw.m.streams_open == 1);
	assert_int_equal(f->gw.m.conns_open, 1);
	assert_true(gw_hub_wants(&f->gw.hub, "a", 1));
	assert_false(gw_hub_wants(&f->gw.hub, "b", 1));
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 1);
	gwf_close(a);
	GWF_WAIT(f, f->gw.m.streams_open == 0);
	assert_int_equal(f->gw.m.conns_open, 0);
	assert_false(gw_hub_wants(&f->gw.hub, "a", 1));
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 0);
	assert_int_equal(f->gw.m.bytes_delivered, 2 * (a->len)); /* the heads and preambles only */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_head_and_preamble, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_with_cors, setup_cors, teardown),
		cmocka_unit_test_setup_teardown(test_rooms_in_gseq_order_with_global_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_replays_then_goes_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_waits_for_the_first_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_refused_by_the_broker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_without_the_api, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat, setup_heartbeat, teardown),
		cmocka_unit_test_setup_teardown(test_slow_client_is_closed, setup_slow, teardown),
		cmocka_unit_test_setup_teardown(test_client_eof_frees_the_stream, setup, teardown),
	};

	rc_log_set_level(RC_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
