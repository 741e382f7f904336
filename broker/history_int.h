/*
 * history_int.h - what history.c (the sequencer, the ring, the rooms,
 * eviction, restore and follow) and history_replay.c (the read side) share,
 * private to them: the history's state and the rooms' indexes. Nothing
 * outside those two includes it; the broker's interface is history.h.
 */
#ifndef RC_HISTORY_INT_H
#define RC_HISTORY_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "history.h"
#include "strmap.h"

/*
 * A room: its sequence and the gseqs of its retained events, oldest first.
 * The index is sized by what the room holds: it grows by doubling, halves
 * when eviction leaves it a quarter full, and is freed when the room holds
 * nothing (the room itself stays: its rseq must go on).
 */
struct hroom {
	uint64_t rseq;
	uint64_t *gs; /* circular, capacity a power of two; NULL when cap is 0 */
	uint32_t head, len, cap;
	uint32_t pending; /* events of the publish in progress not yet stored (reserved in cap) */
};

struct history {
	pthread_rwlock_t lock; /* guards everything below */
	uint64_t epoch;
	size_t max_events, max_bytes;
	size_t max_rooms;		/* 0: no limit */
	struct hevent **ring;		/* slot gseq % max_events */
	uint64_t first_gseq, last_gseq; /* retained: first..last, empty when first > last */
	size_t bytes;
	struct rc_strmap rooms; /* name -> struct hroom *; rooms live as long as the history */
	struct hroom global;
	size_t room_bytes; /* the rooms' entries, names, structs and indexes (not the map's buckets) */
	history_sink_fn sink;
	void *sink_arg;
	uint64_t max_age_ms; /* 0: none */
	struct store *store; /* NULL: memory only */
	struct idem *keys;   /* idempotency keys of the window */
};

/* The i-th retained gseq of r's index, oldest first. */
static inline uint64_t hroom_at(const struct hroom *r, size_t i)
{
	return r->gs[(r->head + i) & (r->cap - 1)];
}

/* The room's entry (&h->global for NULL), NULL when it does not exist. Caller holds the lock. */
struct hroom *history_room(struct history *h, const char *room, size_t len);

#endif
