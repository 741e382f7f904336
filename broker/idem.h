/*
 * idem.h - the broker's idempotency key table: which gseq each key of the
 * last --idempotency-window was published as.
 *
 * Keys are remembered in the order they were published (a FIFO): a key
 * leaves when its window has passed (idem_expire) or, beyond max_keys,
 * when it is the oldest (counted as evicted: a retry with it then publishes
 * again). A key already known is never overwritten: the first id stays.
 *
 * Not thread-safe: the history calls it under its write lock.
 */
#ifndef RC_IDEM_H
#define RC_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idem;

/* A table remembering keys for window_ms (0: none are remembered), at most max_keys (>= 1). NULL: out of memory. */
struct idem *idem_new(uint64_t window_ms, size_t max_keys);
void idem_free(struct idem *t); /* NULL ok */

uint64_t idem_window_ms(const struct idem *t);

/* Forgets the keys published at or before now_ms - window. */
void idem_expire(struct idem *t, uint64_t now_ms);

/* True with *gseq when key[0..len) was published within the window at now_ms. */
bool idem_get(const struct idem *t, const char *key, size_t len, uint64_t now_ms, uint64_t *gseq);

/*
 * Remembers key[0..len) (1-RC_KEY_MAX bytes) as published at time_ms as
 * gseq, unless it is known already or its window has passed at now_ms;
 * forgets the oldest key when the table is full. RC_ENOMEM.
 */
int idem_put(struct idem *t, const char *key, size_t len, uint64_t gseq, uint64_t time_ms, uint64_t now_ms);

/* Calls fn for each key, oldest first, whose gseq is below before_gseq; fn must not change the table. */
void idem_each(const struct idem *t, uint64_t before_gseq,
	       void (*fn)(void *arg, const char *key, size_t len, uint64_t gseq, uint64_t time_ms), void *arg);

struct idem_stats {
	uint64_t keys, bytes; /* bytes: what the keys cost (entries, names, buckets; malloc's overhead not counted) */
	uint64_t hits;	      /* publishes answered with a known key's id */
	uint64_t evicted;     /* keys forgotten within their window (the table was full) */
	uint64_t expired;     /* keys forgotten at the end of their window */
};
void idem_stats(const struct idem *t, struct idem_stats *st);

/* Counts a publish answered from the table. */
void idem_hit(struct idem *t);

#endif
