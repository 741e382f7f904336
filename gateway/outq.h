/*
 * outq.h - refcounted output chunks and a per-connection queue of chunk ranges.
 *
 * An event is framed once per gateway into a chunk; every client's queue holds
 * a reference and a byte range, never a copy. Consecutive ranges of the same
 * chunk merge into one entry, so a client of one room gets a whole bus frame's
 * worth of its events as one iovec. Loop thread only (plain refcounts).
 */
#ifndef GW_OUTQ_H
#define GW_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gw_chunk {
	uint32_t ref;
	uint32_t len; /* bytes written so far */
	uint32_t cap;
	char data[];
};

/* A chunk with room for cap bytes and one reference; NULL when out of memory. */
struct gw_chunk *gw_chunk_new(size_t cap);
/* A chunk holding a copy of p[0..n). */
struct gw_chunk *gw_chunk_dup(const void *p, size_t n);
static inline void gw_chunk_ref(struct gw_chunk *c)
{
	c->ref++;
}
void gw_chunk_unref(struct gw_chunk *c);

struct gw_outq_ent {
	struct gw_chunk *chunk;
	uint32_t off, len;
};

struct gw_outq {
	struct gw_outq_ent *ents; /* ring */
	uint32_t head, count, cap;
	uint32_t busy;            /* entries at the head handed to a write in flight */
	size_t bytes;             /* unsent bytes queued, busy entries included */
};

void gw_outq_init(struct gw_outq *q);
/* Drops every reference and frees the ring. */
void gw_outq_fini(struct gw_outq *q);

/* Queues chunk[off, off+len), taking a new reference. Returns 0 or RC_ENOMEM. */
int gw_outq_push(struct gw_outq *q, struct gw_chunk *chunk, uint32_t off, uint32_t len);

/* Fills up to max bufs from the entries after the busy ones, marks them busy; returns how many. */
unsigned gw_outq_take(struct gw_outq *q, uv_buf_t *bufs, unsigned max);

/* Drops the first n bytes of the queue (written without a request); nothing may be busy. */
void gw_outq_consume(struct gw_outq *q, size_t n);

/* Releases the busy entries (their write finished). */
void gw_outq_done(struct gw_outq *q);

/* Frees the ring when the queue is empty and the ring is large. */
void gw_outq_trim(struct gw_outq *q);

#endif
