/*
 * test_hub.c - the fan-out of a flush (gateway/hub.c) when memory runs out:
 * every stream either gets each event it wants, framed with its id, or a
 * stream.reset (gap_unrecoverable) with the id after which it goes on live;
 * a stream that had the events already gets neither; a stream whose reset
 * closes it leaves the hub during the delivery (its room goes after it); the
 * position moves to the frame's last event either way and the next frame is
 * delivered whole.
 *
 * hub.c is linked on its own with outq.c: the gateway functions it calls (the
 * bus subscriptions, the stream's delivery and reset) are defined here and
 * record what they get. The test executable is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc: while armed, the wrappers
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

#include "bus_client.h"
#include "frame.h"
#include "gateway.h"
#include "hub.h"
#include "log.h"
#include "stream.h"

#define EPOCH	0x6f1c2a9eu
#define MAX_GOT 16

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

/* ---- the test's side of the gateway ---- */

/* What one stream was handed. */
struct seen {
	struct gw_stream *s;
	const char *name;
	uint64_t got[MAX_GOT];
	size_t ngot;
	char reset[64]; /* the last reset, "reason epoch-gseq" */
	size_t nresets;
	bool close_on_reset; /* the stream leaves the hub (and is freed) from its reset */
};

static struct gw gw;
static struct seen seen[10];
static size_t nseen;

static struct seen *seen_of(const struct gw_stream *s)
{
	for (size_t i = 0; i < nseen; i++)
		if (seen[i].s == s)
			return &seen[i];
	fail_msg("a stream the test does not know");
	return NULL;
}

void gw_bus_room(struct gw_bus *b, const char *room, size_t len, bool on)
{
	(void)b;
	(void)room;
	(void)len;
	(void)on;
}

void gw_bus_all(struct gw_bus *b, bool on)
{
	(void)b;
	(void)on;
}

void gw_stream_bus_known(struct gw_stream *s)
{
	(void)s;
}

/* As stream.c: events at or below the stream's last gseq are skipped; each one is checked to be its own SSE text. */
void gw_stream_deliver(struct gw_stream *s, const struct gw_run *run)
{
	struct seen *t = seen_of(s);

	assert_true(run->n > 0);
	assert_non_null(run->chunk);
	if (run->ev[run->n - 1].gseq <= s->last_gseq)
		return;
	for (size_t i = 0; i < run->n; i++) {
		const struct gw_framed *f = &run->ev[i];
		uint32_t off = run->fire ? f->fire_off : f->off;
		char want[64];
		int n = snprintf(want, sizeof(want), "id: %x-%llu\n", EPOCH, (unsigned long long)f->gseq);

		assert_true(off + f->len <= run->chunk->len);
		assert_true(f->len > (uint32_t)n);
		assert_memory_equal(run->chunk->data + off, want, (size_t)n);
		if (f->gseq <= s->last_gseq)
			continue;
		assert_true(t->ngot < MAX_GOT);
		t->got[t->ngot++] = f->gseq;
	}
	s->last_gseq = run->ev[run->n - 1].gseq;
}

/* As stream.c: the stream goes on live after (epoch, gseq). */
void gw_stream_reset(struct gw_stream *s, const char *reason, uint64_t epoch, uint64_t gseq)
{
	struct seen *t = seen_of(s);

	snprintf(t->reset, sizeof(t->reset), "%s %llx-%llu", reason, (unsigned long long)epoch,
		 (unsigned long long)gseq);
	t->nresets++;
	s->last_gseq = gseq;
	if (t->close_on_reset) {
		/* a stream that leaves the hub during the delivery: the hub must stay safe */
		gw_hub_remove(&gw.hub, s);
		free(s);
		t->s = NULL;
	}
}

/* As stream.c: a stream that had the event already is not reset. */
bool gw_stream_missed(struct gw_stream *s, uint64_t gseq, uint64_t epoch, uint64_t upto)
{
	if (s->last_gseq >= gseq)
		return false;
	gw_stream_reset(s, "gap_unrecoverable", epoch, upto);
	return true;
}

/* ---- streams and frames ---- */

/* A stream following rooms (none: the firehose), added to the hub. */
static struct seen *stream(const char *name, const char *const *rooms, size_t nrooms)
{
	struct gw_stream *s = calloc(1, sizeof(*s) + nrooms * sizeof(struct gw_member));
	size_t lens[4];
	struct seen *t = &seen[nseen++];

	assert_non_null(s);
	assert_true(nrooms <= 4 && nseen <= 10);
	memset(t, 0, sizeof(*t));
	t->s = s;
	t->name = name;
	s->gw = &gw;
	s->firehose = nrooms == 0;
	s->nrooms = (uint16_t)nrooms;
	gw_tq_entry_init(&s->hb);
	gw_list_init(&s->hub_node);
	for (size_t i = 0; i < nrooms; i++) {
		gw_list_init(&s->members[i].node);
		lens[i] = strlen(rooms[i]);
	}
	assert_int_equal(gw_hub_add(&gw.hub, s, rooms, lens), 0);
	s->last_gseq = gw.hub.last_gseq;
	return t;
}

struct ev {
	uint64_t gseq;
	const char *room; /* NULL: global */
};

/* Hands a frame of events evs[0..n) (flush last_gseq: the last event's) to the hub. */
static size_t deliver(const struct ev *evs, size_t n)
{
	uint8_t buf[2048];
	struct rc_frame_hdr hdr = { .epoch = EPOCH, .last_gseq = evs[n - 1].gseq, .count = (uint32_t)n };
	struct rc_frame_reader r;
	size_t len = RC_FRAME_HDR_SIZE;

	rc_frame_put_header(buf, &hdr);
	for (size_t i = 0; i < n; i++) {
		struct rc_frame_event ev = {
			.gseq = evs[i].gseq,
			.rseq = 1,
			.room = evs[i].room,
			.room_len = (uint16_t)(evs[i].room ? strlen(evs[i].room) : 0),
			.json = "{\"type\":\"t\"}",
			.json_len = 12,
		};
		len += rc_frame_put_event(buf + len, &ev);
	}
	assert_int_equal(rc_frame_reader_init(&r, buf, len), 0);
	return gw_hub_deliver(&gw.hub, &r);
}

/* 1 in a, 2 in b, 3 global, 4 in a, 5 in d */
static const struct ev frame1[] = { { 1, "a" }, { 2, "b" }, { 3, NULL }, { 4, "a" }, { 5, "d" } };
static const struct ev frame2[] = { { 6, "a" } };

static const char *const rooms_a[] = { "a" }, *const rooms_b[] = { "b" }, *const rooms_ab[] = { "a", "b" },
			 *const rooms_c[] = { "c" }, *const rooms_d[] = { "d" };

/* The streams of every test, and what each wants of frame1 (0-terminated). */
static struct world {
	struct seen *a, *b, *ab, *c, *d, *fire, *fire2, *ahead;
} w;

static const uint64_t want_a[] = { 1, 3, 4, 0 }, want_b[] = { 2, 3, 0 }, want_ab[] = { 1, 2, 3, 4, 0 },
		      want_c[] = { 3, 0 }, want_d[] = { 3, 5, 0 }, want_fire[] = { 1, 2, 3, 4, 5, 0 },
		      want_none[] = { 0 };

static int setup(void **state)
{
	(void)state;
	memset(&gw, 0, sizeof(gw));
	nseen = 0;
	gw_hub_init(&gw.hub, &gw);
	gw.hub.epoch = EPOCH;
	w.a = stream("a", rooms_a, 1);
	w.b = stream("b", rooms_b, 1);
	w.ab = stream("ab", rooms_ab, 2);
	w.c = stream("c", rooms_c, 1);
	/* the only stream of room d: when its reset closes it, the room goes, after the delivery */
	w.d = stream("d", rooms_d, 1);
	w.d->close_on_reset = true;
	w.fire = stream("fire", NULL, 0);
	w.fire2 = stream("fire2", NULL, 0);
	/* a resume whose replay already went past frame1: it misses nothing */
	w.ahead = stream("ahead", rooms_a, 1);
	w.ahead->s->last_gseq = 5;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	oom_disarm();
	for (size_t i = 0; i < nseen; i++) {
		if (seen[i].s == NULL)
			continue; /* closed by its reset */
		gw_hub_remove(&gw.hub, seen[i].s);
		free(seen[i].s);
	}
	nseen = 0;
	gw_hub_fini(&gw.hub);
	return 0;
}

/* Whether t got exactly want (0-terminated) and no reset. */
static bool got_all(const struct seen *t, const uint64_t *want)
{
	size_t n = 0;

	while (want[n] != 0)
		n++;
	if (t->nresets != 0 || t->ngot != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (t->got[i] != want[i])
			return false;
	return true;
}

static uint64_t last_got(const struct seen *t)
{
	return t->ngot > 0 ? t->got[t->ngot - 1] : 0;
}

/* t got every event it wants of frame1, or a reset after which it goes on live after 5. */
static void check_stream(const struct seen *t, const uint64_t *want, const char *when)
{
	if (got_all(t, want))
		return;
	if (t->nresets == 1 && strcmp(t->reset, "gap_unrecoverable 6f1c2a9e-5") == 0)
		return;
	fail_msg("%s: stream %s got %zu of its events and %zu resets (%s)", when, t->name, t->ngot, t->nresets,
		 t->nresets ? t->reset : "none");
}

/* After frame1 (whatever failed): each stream whole or reset; the hub is at 5; frame2 goes through. */
static void check_frame1_then_frame2(const char *when)
{
	check_stream(w.a, want_a, when);
	check_stream(w.b, want_b, when);
	check_stream(w.ab, want_ab, when);
	check_stream(w.c, want_c, when);
	check_stream(w.d, want_d, when);
	check_stream(w.fire, want_fire, when);
	check_stream(w.fire2, want_fire, when);
	if (!got_all(w.ahead, want_none))
		fail_msg("%s: stream ahead, which missed nothing, got %zu events and %zu resets", when, w.ahead->ngot,
			 w.ahead->nresets);
	if (gw.hub.last_gseq != 5)
		fail_msg("%s: the hub is at %llu, not 5", when, (unsigned long long)gw.hub.last_gseq);

	/* nothing of the failure stays behind: the next frame reaches everyone who wants it */
	assert_int_equal(deliver(frame2, 1), 1);
	assert_int_equal(gw.hub.last_gseq, 6);
	assert_int_equal(last_got(w.a), 6);
	assert_int_equal(last_got(w.ab), 6);
	assert_int_equal(last_got(w.fire), 6);
	assert_int_equal(last_got(w.fire2), 6);
	assert_int_equal(last_got(w.ahead), 6);
}

/* ---- tests ---- */

/* With memory, every stream gets its events, each framed once with its id. */
static void test_delivers_each_stream_its_events(void **state)
{
	(void)state;
	assert_int_equal(deliver(frame1, 5), 5);
	assert_true(got_all(w.a, want_a));
	assert_true(got_all(w.b, want_b));
	assert_true(got_all(w.ab, want_ab));
	assert_true(got_all(w.c, want_c));
	assert_true(got_all(w.d, want_d));
	assert_true(got_all(w.fire, want_fire));
	assert_true(got_all(w.ahead, want_none));
	check_frame1_then_frame2("no failure");
}

/* The delivery's scratch cannot grow: every stream that wanted an event of the frame is reset after it. */
static void test_scratch_fails_resets_the_streams_that_wanted_events(void **state)
{
	(void)state;
	oom_arm(0, false); /* the first allocation of the first delivery is the scratch */
	deliver(frame1, 5);
	oom_disarm();
	assert_int_equal(oom.failed, 1);
	assert_int_equal(w.a->nresets, 1);
	assert_string_equal(w.a->reset, "gap_unrecoverable 6f1c2a9e-5");
	assert_int_equal(w.c->nresets, 1); /* the global event */
	assert_int_equal(w.d->nresets, 1);
	assert_null(w.d->s); /* closed by its reset */
	assert_int_equal(w.fire->nresets, 1);
	assert_int_equal(w.ahead->nresets, 0);
	check_frame1_then_frame2("scratch");
}

/*
 * Each allocation of a delivery fails in turn, alone and with every later one:
 * no stream misses an event without a reset.
 */
static void test_each_allocation_fails(void **state)
{
	char when[64];
	bool fresh = true; /* as setup left it */
	long k;

	for (int sticky = 0; sticky <= 1; sticky++) {
		for (k = 0;; k++) {
			if (!fresh) {
				teardown(state);
				setup(state);
			}
			fresh = false;
			oom_arm(k, sticky);
			deliver(frame1, 5);
			oom_disarm();
			if (oom.failed == 0)
				break; /* the delivery makes fewer than k + 1 allocations */
			snprintf(when, sizeof(when), "allocation %ld failing%s", k + 1, sticky ? " with the rest" : "");
			check_frame1_then_frame2(when);
		}
		assert_true(k >= 3); /* the scratch and at least two slabs */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_delivers_each_stream_its_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scratch_fails_resets_the_streams_that_wanted_events, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_each_allocation_fails, setup, teardown),
	};

	rc_log_set_level(RC_LOG_ERROR); /* the resets are logged as warnings */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
