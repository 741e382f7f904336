/*
 * ackmem.h - the broker's memory of the publishes it answered on the bus.
 *
 * A publish with an "ack" token is answered in the index of the flush that
 * carries its events (docs/PROTOCOL.md, "Acknowledgements"). A gateway that
 * loses that message (its inbox full, nng dropping under load) gets the
 * events back by replay, but not the answer: it asks for it with the api op
 * "acks", answered from here.
 *
 * The table keeps the most recent acknowledgements, the record as it went
 * on the bus (frame.h, rc_ack_put) and the epoch of its ids, within
 * max_bytes: beyond, the oldest are forgotten (counted). A token is put once
 * (a gateway never sends one twice); a second put of a known token is
 * ignored.
 *
 * Thread-safe: the api workers put and get at once.
 */
#ifndef RC_ACKMEM_H
#define RC_ACKMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ackmem;

/* A table of at most max_bytes (0: nothing is remembered). NULL: out of memory. */
struct ackmem *ackmem_new(size_t max_bytes);
void ackmem_free(struct ackmem *m); /* NULL ok */

/*
 * Remembers the acknowledgement of request (gw, req): its n (>= 1) ids
 * gseqs[] in epoch; forgets the oldest ones past the bound. One larger than
 * the whole bound is not kept. RC_ENOMEM.
 */
int ackmem_put(struct ackmem *m, uint64_t gw, uint64_t req, uint64_t epoch, const uint64_t *gseqs, uint32_t n);

/*
 * Copies the record of (gw, req) (rc_ack_put's bytes) into buf (cap >=
 * rc_ack_size(RC_PUBLISH_MAX_EVENTS) holds any) and its epoch into *epoch;
 * returns its size, or 0 when the token is unknown (not published yet, never
 * here, or forgotten) or its record does not fit cap.
 */
size_t ackmem_get(struct ackmem *m, uint64_t gw, uint64_t req, uint8_t *buf, size_t cap, uint64_t *epoch);

struct ackmem_stats {
	uint64_t entries, bytes; /* held now: bytes as counted against the bound (entries and records) */
	uint64_t limit;		 /* the bound (--ack-memory-bytes) */
	uint64_t forgotten;	 /* acknowledgements forgotten for room (the oldest, past the bound) */
	uint64_t hits, misses;	 /* ackmem_get that found / did not find its token */
};
void ackmem_stats(struct ackmem *m, struct ackmem_stats *st);

#endif
