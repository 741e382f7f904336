/*
 * history.h - the broker's sequencer and in-memory event history.
 *
 * history_publish() assigns gseq (global, no holes) and rseq (per room, no
 * holes; global events form their own sequence) to a batch of events, stores
 * them, and hands them, in gseq order, to a sink (the bus) while still holding
 * the history's write lock, so the bus sees exactly the sequencer's order.
 * The history keeps the newest events within max_events and max_bytes; each
 * room has an index so a replay of a few rooms does not scan everything,
 * sized by the events the room holds (none when it holds none).
 *
 * An event may carry an idempotency key: a key published within the
 * window (history_set_idempotency) is answered with the gseq it was
 * published as, and the event is not published again (idem.h holds the
 * keys, under the history's lock). Keys go to the log with their events
 * and, once those segments are deleted, to the rooms checkpoint, so a
 * restart on the same --data-dir knows them for the rest of their window.
 *
 * Thread-safe: any thread may call any function (a rwlock guards the state).
 */
#ifndef RC_HISTORY_H
#define RC_HISTORY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "idem.h"
#include "strmap.h"

struct hroom;
struct seg_record;
struct store;

/*
 * The events of one publish share one allocation (a slab); it is freed when
 * the last of its events loses its last reference.
 */
struct hslab {
	atomic_uint live; /* events of the slab still referenced */
};

/* One stored event. Immutable after publish; released when the last ref goes. */
struct hevent {
	atomic_uint ref;
	struct hslab *slab;
	uint64_t gseq, rseq;
	uint64_t time_ms; /* wall clock at publish (for --history-max-age) */
	const char *room; /* NULL for a global event; lives as long as the history */
	uint16_t room_len;
	uint32_t json_len;
	char json[];
};

void hevent_ref(struct hevent *ev);
void hevent_unref(struct hevent *ev);

/* Writes ev as a frame event at buf (rc_frame_event_size bytes); returns the bytes written. */
size_t hevent_put_frame(uint8_t *buf, const struct hevent *ev);

/* An event to publish: room may be NULL (global), key too (no idempotency key). Borrowed for the call. */
struct hinput {
	const char *room;
	size_t room_len;
	const char *json;
	size_t json_len;
	const char *key; /* 1-RC_KEY_MAX bytes (event.h checks them) */
	size_t key_len;
};

/* Receives the events of one publish, in gseq order, each with a new reference it must release. */
typedef void (*history_sink_fn)(void *arg, struct hevent *const *evs, size_t n);

struct history;

/* Creates a history for epoch; returns NULL on allocation failure. */
struct history *history_new(uint64_t epoch, size_t max_events, size_t max_bytes);
/* Frees the history; events still referenced elsewhere stay alive. NULL ok. */
void history_free(struct history *h);

uint64_t history_epoch(const struct history *h);
/* Sets the epoch (recovery, before publishing starts: the store's). */
void history_set_epoch(struct history *h, uint64_t epoch);

/*
 * Bounds the rooms the history keeps (0, the default: no bound). Rooms are
 * never forgotten once an event was published in them (their rseq must go on
 * for the epoch), so a publish that would create a room beyond the bound is
 * refused whole (RC_ETOOBIG).
 */
void history_set_max_rooms(struct history *h, size_t max_rooms);

/*
 * Drops events older than max_age_ms (0: no age limit) on each publish and
 * on history_expire().
 */
void history_set_max_age(struct history *h, uint64_t max_age_ms);

/*
 * Keys are remembered window_ms (0: keys are ignored), at most max_keys
 * (the oldest goes first). Called before recovery and publishing; the
 * default is HISTORY_IDEM_WINDOW_MS and HISTORY_IDEM_MAX_KEYS. RC_ENOMEM
 * leaves the table as it was.
 */
int history_set_idempotency(struct history *h, uint64_t window_ms, size_t max_keys);
#define HISTORY_IDEM_WINDOW_MS (2 * 60 * 1000)
#define HISTORY_IDEM_MAX_KEYS  100000

/* Drops the events older than the max age (and the keys past their window) at now_ms (wall clock). */
void history_expire(struct history *h, uint64_t now_ms);

/*
 * Makes publishes durable in s (called once before publishing starts): each
 * is appended to the log before its gseqs are taken (a failed append
 * publishes nothing: RC_EIO), and old segments go with the events they hold.
 */
void history_set_store(struct history *h, struct store *s);

/*
 * Recovery, before publishing starts: a room record sets a room's rseq; an
 * event record is stored as published (its gseq must follow the last); the
 * key of an event or key record still within the window is remembered. Rooms
 * are restored whatever max_rooms says. Returns 0 or RC_ENOMEM (a store_record_fn).
 */
int history_restore(void *h, const struct seg_record *r);

/*
 * Appends an event read from a replicated log (--store nats) with the gseq,
 * rseq and time the log gave it, as a publish would store it (the bounds
 * evict, the sink gets it under the lock). An event at or below the last
 * gseq was read already and is ignored. After a hole (the log lost events
 * in the middle) the retained events are dropped and the history goes on
 * from rec. *applied: rec was stored. Returns 0 or RC_ENOMEM. Any thread.
 */
int history_follow(struct history *h, const struct seg_record *rec, bool *applied);

/* After recovery: the next publish gets gseq next_gseq (when no restored event says more). */
void history_restore_next(struct history *h, uint64_t next_gseq);

/* Sets where published events go (before publishing starts, or while a log is followed: under the lock). */
void history_set_sink(struct history *h, history_sink_fn fn, void *arg);

/*
 * Publishes n events atomically: writes each one's gseq to gseqs[i] (n
 * slots). An event whose key is known (published within the window, or
 * earlier in this batch) gets that gseq and is not published again; the
 * others get consecutive gseqs, in order. *published (may be NULL): how
 * many were published. Returns 0, RC_ETOOBIG (a new room beyond max_rooms),
 * RC_EIO (the store could not write) or RC_ENOMEM; on an error nothing was
 * published.
 */
int history_publish(struct history *h, const struct hinput *in, size_t n, uint64_t *gseqs, size_t *published);

/* A replay request: rooms == NULL means every event (the firehose). */
struct history_query {
	const char *const *rooms;
	const size_t *room_lens;
	size_t nrooms;
	bool with_global; /* include global events (ignored for the firehose) */
	uint64_t after;	  /* gseq: events with a greater gseq are returned */
	bool oldest;	  /* ignore after: start at the oldest retained event */
	uint64_t before;  /* gseq: only events with a smaller gseq (0: no bound) */
	bool newest_first; /* walk back from before (or the newest event) toward after */
	/*
	 * Rewind: start at the last `last` matching events (0: not asked), or at
	 * the first event published at or after since_ms (wall clock, 0: not
	 * asked); when both are given, the later start wins. Both are resolved
	 * under the lock into a greater `after` (never a smaller one), so the
	 * next page goes on from the last id with `after` alone.
	 */
	size_t last;
	uint64_t since_ms;
	size_t limit;
	size_t max_bytes; /* stop before the events' json passes this (0: no limit; at least one event) */
	/*
	 * The server's cap on the answer: stop before the events' answer size
	 * (json + room + HISTORY_ANSWER_OVERHEAD each, which covers how ops
	 * encodes an event in JSON or as a frame) passes this (0: none; at least
	 * one event).
	 */
	size_t max_answer_bytes;
};

#define HISTORY_ANSWER_OVERHEAD 80

struct history_result {
	struct hevent **events; /* references the caller releases with history_result_fini */
	size_t count;
	bool more;	     /* limit, max_bytes or max_answer_bytes cut the result */
	uint64_t last_gseq;  /* the broker's last gseq at the time of the query */
	uint64_t first_gseq; /* oldest gseq still retained (last_gseq + 1 when empty) */
};

/*
 * Returns the events matching q in gseq order (newest first with
 * q->newest_first). RC_EEVICTED when events after q->after are no longer
 * retained (oldest first only: newest first stops at the oldest retained);
 * RC_ERANGE when q->after is beyond the last gseq; RC_ENOMEM.
 */
int history_replay(struct history *h, const struct history_query *q, struct history_result *res);
void history_result_fini(struct history_result *res);

struct history_stats {
	uint64_t last_gseq, first_gseq;
	size_t events, bytes, rooms;
	size_t room_bytes; /* what the rooms cost: table, names and per-room indexes (malloc's overhead not counted) */
	struct idem_stats keys;
	uint64_t idem_window_ms;
};
void history_stats(struct history *h, struct history_stats *st);

#endif
