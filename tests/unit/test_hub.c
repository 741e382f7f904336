/*
 * test_hub.c - the hub (gateway/hub.c) on a real gateway loop (gw_fixture.h):
 * which rooms it wants from the bus as streams come and go (a room from its
 * first stream here to its last, everything with a firehose or past
 * --bus-max-rooms, back to rooms well under it), and the fan-out of a flush
 * when memory runs out: every stream either gets each event it wants, framed
 * with its id, or a stream.reset (gap_unrecoverable) with the id after which
 * it goes on live, or is closed (its client resumes from the last id it got,
 * so nothing it got may have a hole before it); a stream that had the events
 * already gets nothing; the position moves to the frame's last event either
 * way and the next frames are delivered whole.
 *
 * The streams are real connections read by the test. The test executable is
 * linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc (the gateway
 * library's allocations go through the wrappers): while armed, the wrappers
 * make the Nth allocation fail (only it, or it and every later one), and the
 * test fails each allocation of a delivery in turn.
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
#include "frame.h"
#include "gw_fixture.h"
#include "hub.h"
#include "log.h"

#define EPOCH GWF_EPOCH

/* ---- allocation failures ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static struct {
	bool armed;
	bool sticky;	/* every allocation after the failed one fails too */
	long countdown; /* allocations left before the one that fails */
	long failed;	/* allocations made to fail */
} oom;

/* From now on the allocation after `skip` more fails (and, sticky, every later one). */
static void oom_arm(long skip, bool sticky)
{
	oom.armed = true;
	oom.sticky = sticky;
	oom.countdown = skip;
	oom.failed = 0;
}

static void oom_disarm(void)
{
	oom.armed = false;
}

static bool oom_fail(void)
{
	if (!oom.armed)
		return false;
	if (oom.countdown > 0) {
		oom.countdown--;
		return false;
	}
	if (oom.countdown == 0 || oom.sticky) {
		oom.countdown = -1;
		oom.failed++;
		return true;
	}
	return false;
}

void *__wrap_malloc(size_t n)
{
	return oom_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return oom_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return oom_fail() ? NULL : __real_realloc(p, n);
}

/* ---- membership and the bus ---- */

static struct gwf fx;

static int setup(void **state)
{
	gwf_start(&fx, NULL);
	*state = &fx;
	return 0;
}

static int setup_max_rooms(void **state)
{
	struct gw_options o;

	gwf_options(&o);
	o.bus_max_rooms = 2;
	gwf_start(&fx, &o);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	oom_disarm();
	gwf_stop(*state);
	return 0;
}

static bool wants(struct gwf *f, const char *room)
{
	return gw_hub_wants(&f->gw.hub, room, strlen(room));
}

/* The client closes and the gateway notices (no write needed). */
static void leave(struct gwf *f, struct gwf_client *c)
{
	uint64_t open = f->gw.m.streams_open;

	gwf_close(c);
	GWF_WAIT(f, f->gw.m.streams_open == open - 1);
}

/* A room is wanted from its first stream to its last; global events always. */
static void test_rooms_from_first_stream_to_last(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *a, *ab, *a2;
	struct rc_buf names;

	assert_true(gw_hub_wants(&f->gw.hub, NULL, 0));
	assert_false(wants(f, "a"));
	a = gwf_stream(f, "room_id=a", NULL);
	assert_true(wants(f, "a"));
	assert_false(wants(f, "b"));
	assert_int_equal(f->gw.hub.sub_gen, 1);
	ab = gwf_stream(f, "room_id=a,b", NULL);
	a2 = gwf_stream(f, "room_id=a", NULL);
	assert_true(wants(f, "b"));
	assert_int_equal(f->gw.hub.sub_gen, 2); /* b was new, a was not */
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 2);
	assert_int_equal(f->gw.m.bus_subscribed_all, 0);
	rc_buf_init(&names);
	gw_hub_room_names(&f->gw.hub, &names);
	rc_buf_append(&names, "", 1);
	assert_true(strcmp(names.data, "\"a\",\"b\"") == 0 || strcmp(names.data, "\"b\",\"a\"") == 0);
	rc_buf_fini(&names);

	leave(f, ab);
	assert_false(wants(f, "b"));
	assert_true(wants(f, "a"));
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 1);
	leave(f, a);
	assert_true(wants(f, "a"));
	leave(f, a2);
	assert_false(wants(f, "a"));
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 0);
	assert_int_equal(f->gw.hub.rooms.count, 0);
	assert_true(gw_hub_wants(&f->gw.hub, NULL, 0));
}

/* A firehose stream wants every room (the bus takes everything) and gets it; its rooms' streams get theirs. */
static void test_firehose_takes_everything(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *a = gwf_stream(f, "room_id=a", NULL), *fire;
	static const struct gwf_ev evs[] = { { 1, "zzz", NULL }, { 2, "a", NULL }, { 3, NULL, NULL } };

	assert_false(wants(f, "zzz"));
	fire = gwf_stream(f, NULL, NULL);
	assert_true(wants(f, "zzz"));
	assert_int_equal(f->gw.hub.sub_gen, 2);
	assert_int_equal(f->gw.m.bus_subscribed_all, 1);
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 0);
	assert_int_equal(gwf_deliver(f, evs, 3), 3);
	for (uint64_t g = 1; g <= 3; g++)
		gwf_take(f, fire, gwf_event_text(g, NULL));
	gwf_take(f, a, gwf_event_text(2, NULL));
	gwf_take(f, a, gwf_event_text(3, NULL));
	leave(f, fire);
	assert_false(wants(f, "zzz"));
	assert_true(wants(f, "a"));
	assert_int_equal(f->gw.m.bus_subscribed_all, 0);
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 1);
}

/* Past --bus-max-rooms the bus takes everything (the hub filters); back to rooms at half of it. */
static void test_bus_max_rooms(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *r1 = gwf_stream(f, "room_id=r1", NULL), *r2 = gwf_stream(f, "room_id=r2", NULL), *r3;

	assert_int_equal(f->gw.m.bus_subscribed_all, 0);
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 2);
	r3 = gwf_stream(f, "room_id=r3", NULL);
	assert_int_equal(f->gw.m.bus_subscribed_all, 1);
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 0);
	assert_false(wants(f, "other")); /* taken from the bus, dropped here */
	leave(f, r3);
	assert_int_equal(f->gw.m.bus_subscribed_all, 1); /* no flapping at the edge */
	leave(f, r2);
	assert_int_equal(f->gw.m.bus_subscribed_all, 0);
	assert_int_equal(f->gw.m.bus_rooms_subscribed, 1);
	assert_true(wants(f, "r1"));
	(void)r1;
}

/* ---- out of memory during a delivery ---- */

/* 1 in a, 2 in b, 3 global, 4 in a, 5 in d; then 6 in a; then 7 global, which every stream wants. */
static const struct gwf_ev frame1[] = {
	{ 1, "a", NULL }, { 2, "b", NULL }, { 3, NULL, NULL }, { 4, "a", NULL }, { 5, "d", NULL }
};
static const struct gwf_ev frame2[] = { { 6, "a", NULL } };
static const struct gwf_ev frame3[] = { { 7, NULL, NULL } };

/* A stream of the world, and what it wants of frame1, then frame2 and frame3 (0-terminated). */
struct member {
	const char *name, *query;
	uint64_t want1[6], want2[3];
	struct gwf_client *c;
};

static struct member world[] = {
	{ "a", "room_id=a", { 1, 3, 4, 0 }, { 6, 7, 0 }, NULL },
	{ "b", "room_id=b", { 2, 3, 0 }, { 7, 0 }, NULL },
	{ "ab", "room_id=a,b", { 1, 2, 3, 4, 0 }, { 6, 7, 0 }, NULL },
	{ "c", "room_id=c", { 3, 0 }, { 7, 0 }, NULL },
	{ "d", "room_id=d", { 3, 5, 0 }, { 7, 0 }, NULL }, /* the only stream of room d */
	{ "fire", NULL, { 1, 2, 3, 4, 5, 0 }, { 6, 7, 0 }, NULL },
	{ "fire2", NULL, { 1, 2, 3, 4, 5, 0 }, { 6, 7, 0 }, NULL },
	/* a resume whose replay already went past frame1: it misses nothing */
	{ "ahead", "room_id=a", { 0 }, { 6, 7, 0 }, NULL },
};
#define NWORLD (sizeof(world) / sizeof(world[0]))
#define AHEAD  (&world[NWORLD - 1])

static int setup_world(void **state)
{
	static const struct gwf_ev replay[] = { { 5, "a", NULL } };
	uint8_t buf[256];
	size_t len;

	setup(state);
	gw_hub_start(&fx.gw.hub, EPOCH, 0);
	for (size_t i = 0; i + 1 < NWORLD; i++)
		world[i].c = gwf_stream(&fx, world[i].query, NULL);
	/* ahead resumes after 4: its replay has 5, the broker's last */
	AHEAD->c = gwf_stream(&fx, AHEAD->query, "6f1c2a9e-4");
	gwf_api_request(&fx);
	len = gwf_frame(buf, sizeof(buf), EPOCH, 5, RC_FRAME_REPLAY, replay, 1);
	gwf_api_reply(&fx, buf, len);
	gwf_take(&fx, AHEAD->c, gwf_event_text(5, NULL));
	return 0;
}

static bool text_is(const char *p, const char *want)
{
	return strncmp(p, want, strlen(want)) == 0;
}

/* Whether p, cut by the close, is the start of want. */
static bool text_cut(const char *p, const char *want)
{
	return strlen(p) < strlen(want) && strncmp(p, want, strlen(p)) == 0;
}

/*
 * What m's client got after frame1..3: the events it wants in order, except
 * that a reset after 5 may replace what it did not get of frame1, and that a
 * close may end it anywhere (but not after a hole). Returns 'w' whole, 'r'
 * reset, 'c' closed.
 */
static char check_member(const struct member *m, const char *when)
{
	uint64_t want[8];
	size_t n = 0, n1, j = 0;
	const char *p = gwf_rest(m->c);
	char what = 'w';

	for (size_t i = 0; m->want1[i] != 0; i++)
		want[n++] = m->want1[i];
	n1 = n;
	for (size_t i = 0; m->want2[i] != 0; i++)
		want[n++] = m->want2[i];
	while (*p != '\0') {
		const char *ev = j < n ? gwf_event_text(want[j], NULL) : "";
		const char *reset = gwf_reset_text("gap_unrecoverable", EPOCH, 5);
		if (j < n && text_is(p, ev)) {
			p += strlen(ev);
			j++;
		} else if (what == 'w' && j < n1 && text_is(p, reset)) {
			/* it had not got everything of frame1: goes on after 5 */
			p += strlen(reset);
			j = n1;
			what = 'r';
		} else if (m->c->eof && (text_cut(p, ev) || (what == 'w' && j < n1 && text_cut(p, reset)))) {
			break;
		} else {
			fail_msg("%s: stream %s got, after %zu of its events:\n%s", when, m->name, j, p);
		}
	}
	if (m->c->eof)
		return 'c';
	if (j != n)
		fail_msg("%s: stream %s got %zu of its %zu events and no close", when, m->name, j, n);
	return what;
}

/* Frame1 was delivered (whatever failed): the hub is at 5; frame2 and 3 go through; each stream is checked. */
static void check_world(struct gwf *f, const char *when, char *outcome)
{
	if (f->gw.hub.last_gseq != 5)
		fail_msg("%s: the hub is at %llu, not 5", when, (unsigned long long)f->gw.hub.last_gseq);
	assert_int_equal(gwf_deliver(f, frame2, 1), 1);
	assert_int_equal(f->gw.hub.last_gseq, 6);
	assert_int_equal(gwf_deliver(f, frame3, 1), 1);
	for (size_t i = 0; i < NWORLD; i++)
		GWF_WAIT(f, world[i].c->eof || gwf_has(world[i].c, "id: 6f1c2a9e-7\n"));
	for (size_t i = 0; i < NWORLD; i++)
		outcome[i] = check_member(&world[i], when);
	if (outcome[NWORLD - 1] == 'r')
		fail_msg("%s: stream ahead, which missed nothing, was reset", when);
}

/* With memory, every stream gets its events, each framed once with its id. */
static void test_delivers_each_stream_its_events(void **state)
{
	struct gwf *f = *state;
	char outcome[NWORLD];

	assert_int_equal(gwf_deliver(f, frame1, 5), 5);
	check_world(f, "no failure", outcome);
	for (size_t i = 0; i < NWORLD; i++)
		assert_int_equal(outcome[i], 'w');
}

/* The delivery's scratch cannot grow: every stream that wanted an event of the frame is reset after it. */
static void test_scratch_fails_resets_the_streams_that_wanted_events(void **state)
{
	struct gwf *f = *state;
	char outcome[NWORLD];

	oom_arm(0, false); /* the first allocation of the first delivery is the scratch */
	gwf_deliver(f, frame1, 5);
	oom_disarm();
	assert_int_equal(oom.failed, 1);
	check_world(f, "scratch", outcome);
	for (size_t i = 0; i + 1 < NWORLD; i++)
		if (outcome[i] != 'r')
			fail_msg("stream %s was not reset", world[i].name);
	assert_int_equal(outcome[NWORLD - 1], 'w');
	assert_int_equal(f->gw.m.resets_gap_unrecoverable, NWORLD - 1);
}

/*
 * Each allocation of a delivery fails in turn, alone and with every later one:
 * no stream misses an event without a reset or a close.
 */
static void test_each_allocation_fails(void **state)
{
	char when[64], outcome[NWORLD];
	bool fresh = true; /* as setup left it */
	size_t closed = 0, reset = 0;
	long k;

	for (int sticky = 0; sticky <= 1; sticky++) {
		for (k = 0;; k++) {
			if (!fresh) {
				teardown(state);
				setup_world(state);
			}
			fresh = false;
			oom_arm(k, sticky);
			gwf_deliver(*state, frame1, 5);
			oom_disarm();
			if (oom.failed == 0)
				break; /* the delivery makes fewer than k + 1 allocations */
			snprintf(when, sizeof(when), "allocation %ld failing%s", k + 1, sticky ? " with the rest" : "");
			check_world(*state, when, outcome);
			for (size_t i = 0; i < NWORLD; i++) {
				closed += outcome[i] == 'c';
				reset += outcome[i] == 'r';
			}
		}
		assert_true(k >= 3); /* the scratch and at least two slabs */
	}
	/* both ways out were taken: resets, and closes when not even a reset could be queued */
	assert_true(reset > 0);
	assert_true(closed > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rooms_from_first_stream_to_last, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firehose_takes_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bus_max_rooms, setup_max_rooms, teardown),
		cmocka_unit_test_setup_teardown(test_delivers_each_stream_its_events, setup_world, teardown),
		cmocka_unit_test_setup_teardown(test_scratch_fails_resets_the_streams_that_wanted_events, setup_world,
						teardown),
		cmocka_unit_test_setup_teardown(test_each_allocation_fails, setup_world, teardown),
	};

	rc_log_set_level(RC_LOG_ERROR); /* the resets are logged as warnings */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
