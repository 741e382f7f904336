/*
 * test_history.c - the broker's sequencer and history (broker/history.c):
 * gseq and per-room rseq without holes, eviction by count and by bytes,
 * replay boundaries, limits, the multi-room merge and event lifetimes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "error.h"
#include "history.h"
#include "segment.h"

#define EPOCH 0x6f1c2a9eu
#define NO_LIMIT ((size_t)1 << 30)

/* What the sink saw, in order: a copy of (gseq, rseq, room) per event. */
struct seen {
	struct hevent *evs[4096];
	size_t n;
};

static void seen_sink(void *arg, struct hevent *const *evs, size_t n)
{
	struct seen *s = arg;

	for (size_t i = 0; i < n; i++) {
		if (s->n < sizeof(s->evs) / sizeof(s->evs[0]))
			s->evs[s->n++] = evs[i]; /* keeps the sink's reference */
		else
			hevent_unref(evs[i]);
	}
}

static void seen_fini(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		hevent_unref(s->evs[i]);
	s->n = 0;
}

/* Publishes one event in room (NULL: global) with a json body of json_len bytes; returns its gseq. */
static uint64_t publish_sized(struct history *h, const char *room, size_t json_len)
{
	char json[1024];
	struct hinput in;
	uint64_t first = 0;

	assert_true(json_len >= 12 && json_len < sizeof(json));
	memset(json, 'x', sizeof(json));
	memcpy(json, "{\"type\":\"t\",\"p\":\"", 17);
	json[json_len - 2] = '"';
	json[json_len - 1] = '}';
	in = (struct hinput){ room, room ? strlen(room) : 0, json, json_len, NULL, 0 };
	assert_int_equal(history_publish(h, &in, 1, &first, NULL), RC_OK);
	return first;
}

static uint64_t publish1(struct history *h, const char *room)
{
	return publish_sized(h, room, 32);
}

/* A query for the given rooms (NULL-terminated list, or rooms == NULL: firehose). */
struct query {
	const char *names[16];
	size_t lens[16];
	struct history_query q;
};

static void query_init(struct query *qq, const char *const *rooms, bool with_global, uint64_t after, size_t limit)
{
	memset(qq, 0, sizeof(*qq));
	qq->q.with_global = with_global;
	qq->q.after = after;
	qq->q.limit = limit;
	if (rooms == NULL)
		return;
	for (size_t i = 0; rooms[i] != NULL; i++) {
		qq->names[i] = rooms[i];
		qq->lens[i] = strlen(rooms[i]);
		qq->q.nrooms++;
	}
	qq->q.rooms = qq->names;
	qq->q.room_lens = qq->lens;
}

/* Replays and checks the result's gseqs are exactly want[0..n). */
static void assert_replay(struct history *h, const char *const *rooms, bool with_global, uint64_t after, size_t limit,
			  const uint64_t *want, size_t n, bool more)
{
	struct query qq;
	struct history_result res;

	query_init(&qq, rooms, with_global, after, limit);
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	if (res.count != n)
		fail_msg("replay after %llu returned %zu events, want %zu", (unsigned long long)after, res.count, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(res.events[i]->gseq, want[i]);
	assert_int_equal(res.more, more);
	history_result_fini(&res);
}

static int replay_rc(struct history *h, uint64_t after)
{
	struct query qq;
	struct history_result res;
	int rv;

	query_init(&qq, NULL, true, after, NO_LIMIT);
	rv = history_replay(h, &qq.q, &res);
	if (rv == RC_OK)
		history_result_fini(&res);
	else
		assert_int_equal(res.count, 0);
	return rv;
}

static void test_empty(void **state)
{
	struct history *h = history_new(EPOCH, 10, 1 << 20);
	struct history_stats st;

	(void)state;
	assert_non_null(h);
	assert_int_equal(history_epoch(h), EPOCH);
	history_stats(h, &st);
	assert_int_equal(st.last_gseq, 0);
	assert_int_equal(st.first_gseq, 1);
	assert_int_equal(st.events, 0);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(st.rooms, 0);
	assert_replay(h, NULL, true, 0, NO_LIMIT, NULL, 0, false);
	assert_int_equal(replay_rc(h, 1), RC_ERANGE);
	history_free(h);
	history_free(NULL);
}

static void test_sequencing(void **state)
{
	static const char *const rooms[] = { "a", "b", NULL, "a", "c", NULL, "b", "a", "a", NULL };
	struct history *h = history_new(EPOCH, 100, 1 << 20);
	struct seen seen = { .n = 0 };
	uint64_t rseq_a = 0, rseq_b = 0, rseq_c = 0, rseq_g = 0;

	(void)state;
	history_set_sink(h, seen_sink, &seen);
	for (size_t i = 0; i < sizeof(rooms) / sizeof(rooms[0]); i++)
		assert_int_equal(publish1(h, rooms[i]), i + 1);
	assert_int_equal(seen.n, 10);
	for (size_t i = 0; i < seen.n; i++) {
		struct hevent *ev = seen.evs[i];
		uint64_t *r = rooms[i] == NULL	   ? &rseq_g
			      : rooms[i][0] == 'a' ? &rseq_a
			      : rooms[i][0] == 'b' ? &rseq_b
						   : &rseq_c;

		assert_int_equal(ev->gseq, i + 1);
		assert_int_equal(ev->rseq, ++*r);
		if (rooms[i] == NULL) {
			assert_null(ev->room);
			assert_int_equal(ev->room_len, 0);
		} else {
			assert_int_equal(ev->room_len, strlen(rooms[i]));
			assert_memory_equal(ev->room, rooms[i], ev->room_len);
		}
		assert_int_equal(ev->json_len, 32);
		assert_int_equal(ev->json[ev->json_len], '\0');
	}
	assert_int_equal(rseq_a, 4);
	assert_int_equal(rseq_b, 2);
	assert_int_equal(rseq_c, 1);
	assert_int_equal(rseq_g, 3); /* global events form their own sequence */

	struct history_stats st;
	history_stats(h, &st);
	assert_int_equal(st.last_gseq, 10);
	assert_int_equal(st.first_gseq, 1);
	assert_int_equal(st.events, 10);
	assert_int_equal(st.rooms, 3);
	seen_fini(&seen);
	history_free(h);
}

static void test_batch(void **state)
{
	struct history *h = history_new(EPOCH, 100, 1 << 20);
	struct seen seen = { .n = 0 };
	struct hinput in[5] = {
		{ "r1", 2, "{\"type\":\"a\"}", 12, NULL, 0 }, { NULL, 0, "{\"type\":\"b\"}", 12, NULL, 0 },
		{ "r1", 2, "{\"type\":\"c\"}", 12, NULL, 0 }, { "r2", 2, "{\"type\":\"d\"}", 12, NULL, 0 },
		{ "r1", 2, "{\"type\":\"e\"}", 12, NULL, 0 },
	};
	static const uint64_t rseq[5] = { 2, 1, 3, 1, 4 };
	uint64_t ids[5];

	(void)state;
	history_set_sink(h, seen_sink, &seen);
	assert_int_equal(publish1(h, "r1"), 1);
	assert_int_equal(history_publish(h, in, 5, ids, NULL), RC_OK);
	assert_int_equal(ids[0], 2);
	assert_int_equal(seen.n, 6);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(seen.evs[i + 1]->gseq, 2 + i);
		assert_int_equal(seen.evs[i + 1]->rseq, rseq[i]);
		assert_memory_equal(seen.evs[i + 1]->json, in[i].json, in[i].json_len);
	}
	seen_fini(&seen);
	history_free(h);
}

static void test_evict_by_count(void **state)
{
	struct history *h = history_new(EPOCH, 5, 1 << 20);
	struct history_stats st;
	static const uint64_t want[] = { 4, 5, 6, 7, 8 };
	static const uint64_t want_a[] = { 4, 6, 8 };
	static const char *const room_a[] = { "a", NULL };

	(void)state;
	for (int i = 0; i < 8; i++)
		publish1(h, i % 2 ? "a" : "b");
	history_stats(h, &st);
	assert_int_equal(st.last_gseq, 8);
	assert_int_equal(st.first_gseq, 4);
	assert_int_equal(st.events, 5);
	assert_replay(h, NULL, true, 3, NO_LIMIT, want, 5, false);
	/* the room index lost the evicted gseq 2 of "a" */
	assert_replay(h, room_a, false, 3, NO_LIMIT, want_a, 3, false);
	assert_int_equal(replay_rc(h, 2), RC_EEVICTED);
	assert_int_equal(replay_rc(h, 0), RC_EEVICTED);
	history_free(h);
}

static void test_evict_by_bytes(void **state)
{
	struct history *h;
	struct history_stats st;
	size_t cost;

	(void)state;
	/* measure what one event costs */
	h = history_new(EPOCH, 1000, 1 << 20);
	publish_sized(h, "r", 100);
	history_stats(h, &st);
	cost = st.bytes;
	assert_true(cost >= 100);
	history_free(h);

	/* room for exactly three */
	h = history_new(EPOCH, 1000, 3 * cost);
	for (int i = 0; i < 3; i++)
		publish_sized(h, "r", 100);
	history_stats(h, &st);
	assert_int_equal(st.events, 3);
	assert_int_equal(st.bytes, 3 * cost);
	publish_sized(h, "r", 100);
	history_stats(h, &st);
	assert_int_equal(st.events, 3);
	assert_int_equal(st.first_gseq, 2);
	assert_true(st.bytes <= 3 * cost);
	/* a bigger event (of less than two) pushes out as many as it needs */
	publish_sized(h, NULL, 100 + cost / 2);
	history_stats(h, &st);
	assert_true(st.bytes <= 3 * cost);
	assert_int_equal(st.last_gseq, 5);
	assert_int_equal(st.events, 2);
	assert_int_equal(st.first_gseq, 4);
	/* an event larger than the whole budget is still kept, alone */
	publish_sized(h, "r", 1000);
	history_stats(h, &st);
	assert_int_equal(st.events, 1);
	assert_int_equal(st.first_gseq, 6);
	assert_int_equal(replay_rc(h, 5), RC_OK);
	assert_int_equal(replay_rc(h, 4), RC_EEVICTED);
	history_free(h);
}

static void test_replay_boundaries(void **state)
{
	struct history *h = history_new(EPOCH, 10, 1 << 20);
	static const uint64_t all[] = { 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };

	(void)state;
	for (int i = 0; i < 15; i++)
		publish1(h, "r");
	/* retained: 6..15 */
	assert_int_equal(replay_rc(h, 0), RC_EEVICTED);
	assert_int_equal(replay_rc(h, 4), RC_EEVICTED);
	assert_replay(h, NULL, true, 5, NO_LIMIT, all, 10, false);    /* first - 1 */
	assert_replay(h, NULL, true, 6, NO_LIMIT, all + 1, 9, false); /* first */
	assert_replay(h, NULL, true, 14, NO_LIMIT, all + 9, 1, false);
	assert_replay(h, NULL, true, 15, NO_LIMIT, NULL, 0, false); /* last */
	assert_int_equal(replay_rc(h, 16), RC_ERANGE);		    /* last + 1 */
	assert_int_equal(replay_rc(h, UINT64_MAX), RC_ERANGE);

	/* oldest: from the first retained event, whatever after says */
	struct query qq;
	struct history_result res;
	query_init(&qq, NULL, true, 0, NO_LIMIT);
	qq.q.oldest = true;
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	assert_int_equal(res.count, 10);
	assert_int_equal(res.events[0]->gseq, 6);
	history_result_fini(&res);
	static const char *const r[] = { "r", NULL };
	query_init(&qq, r, false, 99, 3);
	qq.q.oldest = true;
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	assert_int_equal(res.count, 3);
	assert_int_equal(res.events[0]->gseq, 6);
	assert_true(res.more);
	history_result_fini(&res);
	history_free(h);

	/* after = 0 while nothing is evicted: everything */
	h = history_new(EPOCH, 10, 1 << 20);
	for (int i = 0; i < 3; i++)
		publish1(h, NULL);
	static const uint64_t three[] = { 1, 2, 3 };
	assert_replay(h, NULL, true, 0, NO_LIMIT, three, 3, false);
	history_free(h);
}

static void test_limit_more(void **state)
{
	static const char *const rooms[] = { "a", NULL };
	static const uint64_t all[] = { 1, 2, 3, 4, 5, 6 };
	struct history *h = history_new(EPOCH, 100, 1 << 20);

	(void)state;
	for (int i = 0; i < 6; i++)
		publish1(h, "a");
	/* firehose */
	assert_replay(h, NULL, true, 0, 1, all, 1, true);
	assert_replay(h, NULL, true, 0, 5, all, 5, true);
	assert_replay(h, NULL, true, 0, 6, all, 6, false);
	assert_replay(h, NULL, true, 0, 7, all, 6, false);
	assert_replay(h, NULL, true, 5, 1, all + 5, 1, false);
	/* rooms */
	assert_replay(h, rooms, true, 0, 5, all, 5, true);
	assert_replay(h, rooms, true, 0, 6, all, 6, false);
	assert_replay(h, rooms, true, 2, 3, all + 2, 3, true);
	assert_replay(h, rooms, true, 5, 1, all + 5, 1, false);
	/* paging by the last returned gseq walks everything exactly once */
	for (uint64_t after = 0, step = 0; after < 6; step++) {
		struct query qq;
		struct history_result res;

		assert_true(step < 6);
		query_init(&qq, rooms, true, after, 4);
		assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
		assert_true(res.count > 0);
		assert_int_equal(res.events[0]->gseq, after + 1);
		after = res.events[res.count - 1]->gseq;
		assert_int_equal(res.more, after < 6);
		history_result_fini(&res);
	}
	history_free(h);
}

static void test_merge_rooms(void **state)
{
	static const char *const pub[] = { "a", "b", "c", NULL, "a", "c", "b", NULL, "b", "a" };
	static const char *const ab[] = { "a", "b", NULL };
	static const char *const ba_dup[] = { "b", "a", "b", "a", "a", NULL };
	static const char *const c_unknown[] = { "nosuch", "c", NULL };
	static const char *const none[] = { NULL };
	static const uint64_t want_ab_g[] = { 1, 2, 4, 5, 7, 8, 9, 10 };
	static const uint64_t want_ab[] = { 1, 2, 5, 7, 9, 10 };
	static const uint64_t want_c_g_after3[] = { 4, 6, 8 };
	static const uint64_t want_g[] = { 4, 8 };
	struct history *h = history_new(EPOCH, 100, 1 << 20);

	(void)state;
	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++)
		publish1(h, pub[i]);
	assert_replay(h, ab, true, 0, NO_LIMIT, want_ab_g, 8, false);
	assert_replay(h, ab, false, 0, NO_LIMIT, want_ab, 6, false);
	/* duplicates in the query return each event once */
	assert_replay(h, ba_dup, true, 0, NO_LIMIT, want_ab_g, 8, false);
	assert_replay(h, ba_dup, false, 0, NO_LIMIT, want_ab, 6, false);
	assert_replay(h, ba_dup, false, 0, 6, want_ab, 6, false);
	/* an unknown room is empty, not an error */
	assert_replay(h, c_unknown, true, 3, NO_LIMIT, want_c_g_after3, 3, false);
	/* no rooms: only the global events, or nothing */
	assert_replay(h, none, true, 0, NO_LIMIT, want_g, 2, false);
	assert_replay(h, none, false, 0, NO_LIMIT, NULL, 0, false);
	/* the firehose ignores with_global */
	struct query qq;
	struct history_result res;
	query_init(&qq, NULL, false, 0, NO_LIMIT);
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	assert_int_equal(res.count, 10);
	assert_int_equal(res.last_gseq, 10);
	assert_int_equal(res.first_gseq, 1);
	for (size_t i = 0; i < res.count; i++)
		assert_int_equal(res.events[i]->gseq, i + 1);
	history_result_fini(&res);
	history_free(h);
}

/* Runs qq and checks the result's gseqs are exactly want[0..n). */
static void assert_query(struct history *h, const struct query *qq, const uint64_t *want, size_t n, bool more)
{
	struct history_result res;

	assert_int_equal(history_replay(h, &qq->q, &res), RC_OK);
	if (res.count != n)
		fail_msg("query returned %zu events, want %zu", res.count, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(res.events[i]->gseq, want[i]);
	assert_int_equal(res.more, more);
	history_result_fini(&res);
}

/* Rewind by count: the last N of the rooms and global, merged; fewer: what there is. */
static void test_rewind_last(void **state)
{
	static const char *const pub[] = { "a", "b", "c", NULL, "a", "c", "b", NULL, "b", "a" };
	static const char *const ab[] = { "a", "b", NULL };
	static const uint64_t want3[] = { 8, 9, 10 };
	static const uint64_t want_all[] = { 1, 2, 4, 5, 7, 8, 9, 10 };
	static const uint64_t want_fire[] = { 9, 10 };
	static const uint64_t want_page[] = { 5, 7 };
	struct history *h = history_new(EPOCH, 100, 1 << 20);
	struct query qq;

	(void)state;
	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++)
		publish1(h, pub[i]);
	query_init(&qq, ab, true, 0, NO_LIMIT);
	qq.q.oldest = true;
	qq.q.last = 3;
	assert_query(h, &qq, want3, 3, false);
	qq.q.last = 1000; /* more than the history holds */
	assert_query(h, &qq, want_all, 8, false);
	qq.q.last = 5; /* the first page of a rewind of 5 */
	qq.q.limit = 2;
	assert_query(h, &qq, want_page, 2, true);
	query_init(&qq, NULL, true, 0, NO_LIMIT);
	qq.q.oldest = true;
	qq.q.last = 2;
	assert_query(h, &qq, want_fire, 2, false);
	qq.q.last = 50;
	qq.q.limit = 3;
	assert_query(h, &qq, (const uint64_t[]){ 1, 2, 3 }, 3, true);
	history_free(h);
}

/* Rewind by time: the events published at or after since_ms. */
static void test_rewind_since(void **state)
{
	static const char *const a[] = { "a", NULL };
	struct history *h = history_new(EPOCH, 100, 1 << 20);
	struct history_result res;
	struct query qq;
	uint64_t t;

	(void)state;
	publish1(h, "a");
	publish1(h, "a");
	query_init(&qq, NULL, true, 0, NO_LIMIT);
	qq.q.oldest = true;
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	t = res.events[1]->time_ms;
	history_result_fini(&res);
	query_init(&qq, a, true, 0, NO_LIMIT);
	qq.q.oldest = true;
	qq.q.since_ms = t + 1000000; /* in the future: nothing */
	assert_query(h, &qq, NULL, 0, false);
	qq.q.since_ms = 1; /* long ago: everything */
	assert_query(h, &qq, (const uint64_t[]){ 1, 2 }, 2, false);
	qq.q.last = 1; /* both: the later start wins */
	assert_query(h, &qq, (const uint64_t[]){ 2 }, 1, false);
	history_free(h);
}

/* Newest first, below before and above after, paged by limit. */
static void test_newest_first(void **state)
{
	static const char *const pub[] = { "a", "b", "a", NULL, "a", "b", "a" };
	static const char *const a[] = { "a", NULL };
	struct history *h = history_new(EPOCH, 100, 1 << 20);
	struct query qq;

	(void)state;
	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++)
		publish1(h, pub[i]);
	query_init(&qq, a, false, 0, 2);
	qq.q.oldest = true;
	qq.q.newest_first = true;
	assert_query(h, &qq, (const uint64_t[]){ 7, 5 }, 2, true);
	qq.q.before = 5;
	assert_query(h, &qq, (const uint64_t[]){ 3, 1 }, 2, false);
	qq.q.before = 1;
	assert_query(h, &qq, NULL, 0, false);
	qq.q.before = 0;
	qq.q.oldest = false;
	qq.q.after = 3;
	qq.q.limit = NO_LIMIT;
	assert_query(h, &qq, (const uint64_t[]){ 7, 5 }, 2, false);
	/* oldest first below before */
	query_init(&qq, a, false, 0, NO_LIMIT);
	qq.q.before = 5;
	assert_query(h, &qq, (const uint64_t[]){ 1, 3 }, 2, false);
	/* the firehose */
	query_init(&qq, NULL, false, 0, 3);
	qq.q.oldest = true;
	qq.q.newest_first = true;
	qq.q.before = 6;
	assert_query(h, &qq, (const uint64_t[]){ 5, 4, 3 }, 3, true);
	history_free(h);
}

/* Newest first past the evicted events: it stops at the oldest retained, no error. */
static void test_newest_first_evicted(void **state)
{
	struct history *h = history_new(EPOCH, 3, 1 << 20);
	struct query qq;

	(void)state;
	for (int i = 0; i < 6; i++)
		publish1(h, "a");
	query_init(&qq, (const char *const[]){ "a", NULL }, false, 0, NO_LIMIT);
	qq.q.newest_first = true;
	assert_query(h, &qq, (const uint64_t[]){ 6, 5, 4 }, 3, false);
	history_free(h);
}

/* Many rooms, random order: the merge is in gseq order and rseqs count up per room. */
static void test_merge_many(void **state)
{
	static const char *const names[] = { "r0", "r1", "r2", "r3", "r4", "r5", "r6", NULL };
	struct history *h = history_new(EPOCH, 300, 1 << 20);
	uint32_t x = 12345;
	uint64_t rseq[8] = { 0 };
	struct query qq;
	struct history_result res;

	(void)state;
	for (int i = 0; i < 1000; i++) {
		x = x * 1103515245u + 12345u;
		publish1(h, names[(x >> 16) % 8]); /* index 7: global */
	}
	query_init(&qq, names, true, 700, NO_LIMIT);
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	assert_int_equal(res.count, 300);
	for (size_t i = 0; i < res.count; i++) {
		struct hevent *ev = res.events[i];
		size_t k = 7;

		assert_int_equal(ev->gseq, 701 + i);
		if (ev->room != NULL)
			k = (size_t)(ev->room[1] - '0');
		if (rseq[k] != 0)
			assert_int_equal(ev->rseq, rseq[k] + 1);
		rseq[k] = ev->rseq;
	}
	history_result_fini(&res);
	history_free(h);
}

/* A query's max_bytes cuts the result by the size of the events' json, but never below one event. */
static void test_max_bytes(void **state)
{
	static const uint64_t all[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	static const uint64_t odd[] = { 1, 3, 5, 7, 9 };
	static const char *const room_a[] = { "a", NULL };
	struct history *h = history_new(EPOCH, 100, 1 << 20);
	struct query qq;
	struct history_result res;

	(void)state;
	for (int i = 0; i < 10; i++)
		publish1(h, i % 2 ? "b" : "a"); /* 32 bytes of json each */
	static const struct {
		size_t max_bytes, n;
		bool more;
	} cases[] = {
		{ 0, 10, false }, { 320, 10, false }, { 319, 9, true }, { 96, 3, true },
		{ 95, 2, true },  { 32, 1, true },    { 1, 1, true },	{ 100000, 10, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		query_init(&qq, NULL, true, 0, NO_LIMIT);
		qq.q.max_bytes = cases[i].max_bytes;
		assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
		assert_int_equal(res.count, cases[i].n);
		assert_int_equal(res.more, cases[i].more);
		for (size_t j = 0; j < res.count; j++)
			assert_int_equal(res.events[j]->gseq, all[j]);
		history_result_fini(&res);
	}
	/* rooms: the same rule over the merged events */
	query_init(&qq, room_a, true, 0, NO_LIMIT);
	qq.q.max_bytes = 64;
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	assert_int_equal(res.count, 2);
	assert_true(res.more);
	assert_int_equal(res.events[1]->gseq, odd[1]);
	history_result_fini(&res);
	/* the limit still applies first */
	query_init(&qq, room_a, true, 2, 1);
	qq.q.max_bytes = 1000;
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	assert_int_equal(res.count, 1);
	assert_int_equal(res.events[0]->gseq, 3);
	assert_true(res.more);
	history_result_fini(&res);
	/* the last page is not "more" */
	query_init(&qq, room_a, true, 6, NO_LIMIT);
	qq.q.max_bytes = 64;
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	assert_int_equal(res.count, 2);
	assert_false(res.more);
	history_result_fini(&res);
	history_free(h);
}

static void test_result_outlives_eviction(void **state)
{
	struct history *h = history_new(EPOCH, 4, 1 << 20);
	struct query qq;
	struct history_result res;

	(void)state;
	for (int i = 0; i < 4; i++)
		publish1(h, "r");
	query_init(&qq, NULL, true, 0, NO_LIMIT);
	assert_int_equal(history_replay(h, &qq.q, &res), RC_OK);
	assert_int_equal(res.count, 4);
	/* evict everything the result holds, then free the history itself */
	for (int i = 0; i < 8; i++)
		publish1(h, "other");
	assert_int_equal(replay_rc(h, 0), RC_EEVICTED);
	history_free(h);
	/* still readable (ASan would flag a use after free) */
	for (size_t i = 0; i < res.count; i++) {
		assert_int_equal(res.events[i]->gseq, i + 1);
		assert_int_equal(res.events[i]->json_len, 32);
		assert_memory_equal(res.events[i]->json, "{\"type\":\"t\",\"p\":\"", 17);
	}
	history_result_fini(&res);
	assert_null(res.events);
	assert_int_equal(res.count, 0);
}

static void test_sink_refs_outlive_history(void **state)
{
	struct history *h = history_new(EPOCH, 2, 1 << 20);
	struct seen seen = { .n = 0 };

	(void)state;
	history_set_sink(h, seen_sink, &seen);
	for (int i = 0; i < 5; i++)
		publish1(h, i % 2 ? NULL : "r");
	history_free(h);
	assert_int_equal(seen.n, 5);
	for (size_t i = 0; i < seen.n; i++)
		assert_int_equal(seen.evs[i]->gseq, i + 1);
	seen_fini(&seen);
}

/* What the rooms cost per room, from the history's own count. */
static size_t room_cost(struct history *h)
{
	struct history_stats st;

	history_stats(h, &st);
	assert_true(st.rooms > 0);
	return st.room_bytes / st.rooms;
}

/* A room, its name and its index cost at most this (a name of 9 bytes, one event). */
#define ROOM_COST_MAX 192

/*
 * 1,000 events in 1,000 new rooms, in one publish and then one by one: each
 * room's index holds what the room holds (a 1,024-slot index reserved per
 * room for a batch of 1,000 cost 8 KiB a room).
 */
static void test_room_cost(void **state)
{
	static char names[1000][16];
	static struct hinput in[1000];
	struct history *h = history_new(EPOCH, 100000, NO_LIMIT);
	static uint64_t ids[1000];
	uint64_t first;

	(void)state;
	for (size_t i = 0; i < 1000; i++) {
		snprintf(names[i], sizeof(names[i]), "room-%04zu", i);
		in[i] = (struct hinput){ names[i], strlen(names[i]), "{\"type\":\"a\"}", 12, NULL, 0 };
	}
	assert_int_equal(history_publish(h, in, 1000, ids, NULL), RC_OK);
	if (room_cost(h) > ROOM_COST_MAX)
		fail_msg("one publish into 1,000 new rooms: %zu bytes per room, want <= %d", room_cost(h),
			 ROOM_COST_MAX);
	for (size_t i = 0; i < 1000; i++) {
		snprintf(names[i], sizeof(names[i]), "solo-%04zu", i);
		in[i].room = names[i];
		assert_int_equal(history_publish(h, &in[i], 1, &first, NULL), RC_OK);
	}
	print_message("room cost: %zu bytes per room (one event, names of 9 bytes)\n", room_cost(h));
	if (room_cost(h) > ROOM_COST_MAX)
		fail_msg("1,000 publishes into new rooms: %zu bytes per room, want <= %d", room_cost(h), ROOM_COST_MAX);
	history_free(h);
}

/*
 * A room's index shrinks when eviction empties most of it, and a room whose
 * events were all evicted keeps no index; its rseq goes on where it was.
 */
static void test_room_index_shrinks(void **state)
{
	struct history *h = history_new(EPOCH, 1024, NO_LIMIT), *fresh = history_new(EPOCH, 1024, NO_LIMIT);
	struct history_stats st, st_fresh;
	struct seen seen = { .n = 0 };
	static const char *const big[] = { "big", NULL };

	(void)state;
	for (int i = 0; i < 1024; i++)
		publish1(h, "big");
	/* 1,000 global events push out all but 24 of big's */
	for (int i = 0; i < 1000; i++) {
		publish1(h, NULL);
		publish1(fresh, NULL);
	}
	for (int i = 0; i < 24; i++)
		publish1(fresh, "big");
	history_stats(h, &st);
	history_stats(fresh, &st_fresh);
	/* about what a history holding the same events costs (big's index: 64 slots, not 1,024) */
	if (st.room_bytes > st_fresh.room_bytes + 64 * sizeof(uint64_t))
		fail_msg("room bytes %zu after eviction, %zu for the same events published fresh", st.room_bytes,
			 st_fresh.room_bytes);
	/* the last 24 of big's go too: no index left for it */
	for (int i = 0; i < 24; i++)
		publish1(h, NULL);
	history_stats(h, &st);
	assert_int_equal(st.rooms, 1);
	assert_replay(h, big, false, st.first_gseq - 1, NO_LIMIT, NULL, 0, false);
	/* rseq goes on after 1,024 */
	history_set_sink(h, seen_sink, &seen);
	publish1(h, "big");
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.evs[0]->rseq, 1025);
	seen_fini(&seen);
	history_free(h);
	history_free(fresh);
}

/* Beyond max_rooms a publish that would create a room is refused whole; known rooms go on. */
static void test_max_rooms(void **state)
{
	struct history *h = history_new(EPOCH, 100, NO_LIMIT);
	struct history_stats st;
	struct seen seen = { .n = 0 };
	struct hinput in[3] = {
		{ "a", 1, "{\"type\":\"a\"}", 12, NULL, 0 },
		{ "new1", 4, "{\"type\":\"b\"}", 12, NULL, 0 },
		{ "new2", 4, "{\"type\":\"c\"}", 12, NULL, 0 },
	};
	uint64_t first = 0, ids[3];

	(void)state;
	history_set_max_rooms(h, 3);
	publish1(h, "a");
	publish1(h, "b");
	publish1(h, NULL); /* global events are no room */
	/* new1 would be the third room, new2 the fourth: nothing of the batch, and new1 is not kept */
	assert_int_equal(history_publish(h, in, 3, ids, NULL), RC_ETOOBIG);
	history_stats(h, &st);
	assert_int_equal(st.rooms, 2);
	assert_int_equal(st.last_gseq, 3);
	/* the rooms there go on, rseq without a hole */
	history_set_sink(h, seen_sink, &seen);
	assert_int_equal(publish1(h, "a"), 4);
	assert_int_equal(seen.evs[0]->rseq, 2);
	/* one new room still fits */
	assert_int_equal(history_publish(h, in, 2, ids, NULL), RC_OK);
	assert_int_equal(ids[0], 5);
	assert_int_equal(history_publish(h, &in[2], 1, &first, NULL), RC_ETOOBIG);
	history_stats(h, &st);
	assert_int_equal(st.rooms, 3);
	assert_int_equal(st.last_gseq, 6);
	/* raised: it fits */
	history_set_max_rooms(h, 4);
	assert_int_equal(history_publish(h, &in[2], 1, &first, NULL), RC_OK);
	seen_fini(&seen);
	history_free(h);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#define EV(t) "{\"type\":\"" t "\"}", 8 + sizeof(t) + 2
#define KEYED(room, t, key)                                                                                            \
	{                                                                                                              \
		room, sizeof(room) - 1, EV(t), key, sizeof(key) - 1                                                    \
	}
#define GLOBAL_KEYED(t, key)                                                                                           \
	{                                                                                                              \
		NULL, 0, EV(t), key, sizeof(key) - 1                                                                   \
	}

/*
 * A key published within the window is answered with its gseq and the event
 * is not published again; a batch mixing known and new keys publishes the
 * new ones only (the same key twice in a batch is one event); a failed
 * publish remembers no key; with a window of 0 keys are ignored.
 */
static void test_idempotent_publish(void **state)
{
	struct history *h = history_new(EPOCH, 100, NO_LIMIT);
	struct seen seen = { .n = 0 };
	struct history_stats st;
	const struct hinput first[3] = { KEYED("r", "a", "k1"), GLOBAL_KEYED("b", "k2"), { "r", 1, EV("c"), NULL, 0 } };
	const struct hinput again[3] = { KEYED("r", "x", "k2"), KEYED("r", "y", "k3"), KEYED("q", "z", "k3") };
	const struct hinput bad[1] = { KEYED("new", "n", "k9") };
	uint64_t ids[3];
	size_t published = 99;

	(void)state;
	history_set_sink(h, seen_sink, &seen);
	assert_int_equal(history_publish(h, first, 3, ids, &published), RC_OK);
	assert_int_equal(published, 3);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[2], 3);
	assert_int_equal(history_publish(h, again, 3, ids, &published), RC_OK);
	assert_int_equal(published, 1);
	assert_int_equal(ids[0], 2);
	assert_int_equal(ids[1], 4);
	assert_int_equal(ids[2], 4);
	assert_int_equal(seen.n, 4);
	assert_memory_equal(seen.evs[3]->json, "{\"type\":\"y\"}", 12);
	assert_int_equal(seen.evs[3]->rseq, 3); /* room r: a, c, y */
	/* all known: nothing published, nothing sent */
	assert_int_equal(history_publish(h, first, 2, ids, &published), RC_OK);
	assert_int_equal(published, 0);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 2);
	assert_int_equal(seen.n, 4);
	history_stats(h, &st);
	assert_int_equal(st.last_gseq, 4);
	assert_int_equal(st.keys.keys, 3);
	assert_int_equal(st.keys.hits, 4);
	/* refused whole: k9 is not remembered, so the retry publishes */
	history_set_max_rooms(h, 1); /* room r only: q's event was a duplicate */
	assert_int_equal(history_publish(h, bad, 1, ids, &published), RC_ETOOBIG);
	history_set_max_rooms(h, 0);
	assert_int_equal(history_publish(h, bad, 1, ids, &published), RC_OK);
	assert_int_equal(published, 1);
	assert_int_equal(ids[0], 5);
	/* window 0: keys are ignored */
	assert_int_equal(history_set_idempotency(h, 0, 10), RC_OK);
	assert_int_equal(history_publish(h, bad, 1, ids, &published), RC_OK);
	assert_int_equal(ids[0], 6);
	assert_int_equal(history_publish(h, again + 1, 2, ids, &published), RC_OK);
	assert_int_equal(ids[0], 7);
	assert_int_equal(ids[1], 8);
	seen_fini(&seen);
	history_free(h);
}

/*
 * Recovery remembers the keys of the log's event records and the
 * checkpoint's key records still within the window, with their gseqs; keys
 * past the window are not known, and the max count holds.
 */
static void test_idempotency_restore(void **state)
{
	struct history *h = history_new(EPOCH, 100, NO_LIMIT);
	uint64_t now = now_ms(), ids[4];
	const struct seg_record recs[] = {
		{ .type = SEG_REC_KEY, .gseq = 5, .time_ms = now, .key = "ck", .key_len = 2 },
		{ .type = SEG_REC_EVENT,
		  .gseq = 10,
		  .rseq = 1,
		  .time_ms = now - 1000,
		  .room = "r",
		  .room_len = 1,
		  .key = "r1",
		  .key_len = 2,
		  .json = "{\"type\":\"a\"}",
		  .json_len = 12 },
		{ .type = SEG_REC_EVENT,
		  .gseq = 11,
		  .rseq = 2,
		  .time_ms = now - 120000,
		  .room = "r",
		  .room_len = 1,
		  .key = "old",
		  .key_len = 3,
		  .json = "{\"type\":\"a\"}",
		  .json_len = 12 },
		{ .type = SEG_REC_EVENT,
		  .gseq = 12,
		  .rseq = 3,
		  .time_ms = now,
		  .room = "r",
		  .room_len = 1,
		  .json = "{\"type\":\"a\"}",
		  .json_len = 12 },
	};
	const struct hinput in[4] = { KEYED("r", "a", "ck"), KEYED("r", "a", "r1"), KEYED("r", "a", "old"),
				      KEYED("r", "a", "nw") };
	struct history_stats st;
	size_t published;

	(void)state;
	assert_int_equal(history_set_idempotency(h, 60000, 100), RC_OK);
	for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++)
		assert_int_equal(history_restore(h, &recs[i]), RC_OK);
	history_restore_next(h, 13);
	history_stats(h, &st);
	assert_int_equal(st.keys.keys, 2);
	assert_int_equal(st.events, 3); /* the key record is no event */
	assert_int_equal(history_publish(h, in, 4, ids, &published), RC_OK);
	assert_int_equal(ids[0], 5);
	assert_int_equal(ids[1], 10);
	assert_int_equal(ids[2], 13); /* past the window: published */
	assert_int_equal(ids[3], 14);
	assert_int_equal(published, 2);
	history_free(h);

	/* at most max keys: the oldest go */
	h = history_new(EPOCH, 100, NO_LIMIT);
	assert_int_equal(history_set_idempotency(h, 60000, 1), RC_OK);
	for (size_t i = 0; i < 2; i++)
		assert_int_equal(history_restore(h, &recs[i]), RC_OK);
	history_restore_next(h, 11);
	assert_int_equal(history_publish(h, in, 2, ids, &published), RC_OK);
	assert_int_equal(ids[0], 11);
	assert_int_equal(ids[1], 10);
	history_free(h);
}

/* An event read from the replicated log (--store nats): its gseq, rseq and time are the log's. */
static int follow1(struct history *h, uint64_t gseq, const char *room, uint64_t rseq, bool *applied)
{
	static const char json[] = "{\"type\":\"t\"}";
	struct seg_record r = {
		.type = SEG_REC_EVENT, .gseq = gseq, .rseq = rseq, .time_ms = 1700000000000ull + gseq,
		.room = room, .room_len = (uint16_t)(room ? strlen(room) : 0),
		.json = json, .json_len = (uint32_t)strlen(json),
	};
	return history_follow(h, &r, applied);
}

static void test_follow(void **state)
{
	struct history *h = history_new(EPOCH, 3, NO_LIMIT);
	struct seen seen = { .n = 0 };
	struct history_stats st;
	const char *a[] = { "a", NULL };
	bool applied = false;
	(void)state;

	history_set_sink(h, seen_sink, &seen);
	/* the log's first retained event need not be gseq 1 */
	assert_int_equal(follow1(h, 10, "a", 4, &applied), RC_OK);
	assert_true(applied);
	assert_int_equal(follow1(h, 11, NULL, 7, &applied), RC_OK);
	assert_int_equal(follow1(h, 12, "a", 5, &applied), RC_OK);
	/* read again (a consumer that started over): ignored, not sent twice */
	assert_int_equal(follow1(h, 11, NULL, 7, &applied), RC_OK);
	assert_false(applied);
	assert_int_equal(seen.n, 3);
	assert_int_equal(seen.evs[0]->gseq, 10);
	assert_int_equal(seen.evs[0]->rseq, 4);
	assert_int_equal(seen.evs[1]->rseq, 7);
	assert_null(seen.evs[1]->room);
	assert_int_equal(seen.evs[2]->rseq, 5);
	assert_int_equal(seen.evs[2]->time_ms, 1700000000012ull);
	assert_replay(h, a, false, 9, NO_LIMIT, (const uint64_t[]){ 10, 12 }, 2, false);
	/* the ring's bound holds: a fourth event evicts the first */
	assert_int_equal(follow1(h, 13, "b", 1, &applied), RC_OK);
	history_stats(h, &st);
	assert_int_equal(st.first_gseq, 11);
	assert_int_equal(st.last_gseq, 13);
	/* a hole (messages deleted from the middle of the log): what was retained goes, the history goes on after it */
	assert_int_equal(follow1(h, 20, "a", 6, &applied), RC_OK);
	assert_true(applied);
	history_stats(h, &st);
	assert_int_equal(st.first_gseq, 20);
	assert_int_equal(st.last_gseq, 20);
	assert_int_equal(st.events, 1);
	assert_int_equal(replay_rc(h, 12), RC_EEVICTED);
	assert_replay(h, a, false, 19, NO_LIMIT, (const uint64_t[]){ 20 }, 1, false);
	assert_int_equal(seen.n, 5);
	seen_fini(&seen);
	history_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_sequencing),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_evict_by_count),
		cmocka_unit_test(test_evict_by_bytes),
		cmocka_unit_test(test_replay_boundaries),
		cmocka_unit_test(test_limit_more),
		cmocka_unit_test(test_merge_rooms),
		cmocka_unit_test(test_merge_many),
		cmocka_unit_test(test_rewind_last),
		cmocka_unit_test(test_rewind_since),
		cmocka_unit_test(test_newest_first),
		cmocka_unit_test(test_newest_first_evicted),
		cmocka_unit_test(test_max_bytes),
		cmocka_unit_test(test_result_outlives_eviction),
		cmocka_unit_test(test_sink_refs_outlive_history),
		cmocka_unit_test(test_room_cost),
		cmocka_unit_test(test_room_index_shrinks),
		cmocka_unit_test(test_max_rooms),
		cmocka_unit_test(test_idempotent_publish),
		cmocka_unit_test(test_idempotency_restore),
		cmocka_unit_test(test_follow),
	};

	return cmocka_run_group_tests_name("history", tests, NULL, NULL);
}
