#include "outq.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

#define OUTQ_MIN_CAP 8
#define OUTQ_KEEP_CAP 32

struct gw_chunk *gw_chunk_new(size_t cap)
{
	struct gw_chunk *c;

	if (cap > UINT32_MAX)
		return NULL;
	c = malloc(sizeof(*c) + cap);
	if (c == NULL)
		return NULL;
	c->ref = 1;
	c->len = 0;
	c->cap = (uint32_t)cap;
	return c;
}

struct gw_chunk *gw_chunk_dup(const void *p, size_t n)
{
	struct gw_chunk *c = gw_chunk_new(n);

	if (c != NULL) {
		memcpy(c->data, p, n);
		c->len = (uint32_t)n;
	}
	return c;
}

void gw_chunk_unref(struct gw_chunk *c)
{
	if (c != NULL && --c->ref == 0)
		free(c);
}

void gw_outq_init(struct gw_outq *q)
{
	memset(q, 0, sizeof(*q));
}

void gw_outq_fini(struct gw_outq *q)
{
	for (uint32_t i = 0; i < q->count; i++)
		gw_chunk_unref(q->ents[(q->head + i) & (q->cap - 1)].chunk);
	free(q->ents);
	gw_outq_init(q);
}

static int outq_grow(struct gw_outq *q)
{
	uint32_t cap = q->cap ? q->cap * 2 : OUTQ_MIN_CAP;
	struct gw_outq_ent *e = malloc(cap * sizeof(*e));

	if (e == NULL)
		return RC_ENOMEM;
	for (uint32_t i = 0; i < q->count; i++)
		e[i] = q->ents[(q->head + i) & (q->cap - 1)];
	free(q->ents);
	q->ents = e;
	q->cap = cap;
	q->head = 0;
	return RC_OK;
}

int gw_outq_push(struct gw_outq *q, struct gw_chunk *chunk, uint32_t off, uint32_t len)
{
	struct gw_outq_ent *tail;

	if (len == 0)
		return RC_OK;
	/* extend the last entry when it is not part of a write in flight */
	if (q->count > q->busy) {
		tail = &q->ents[(q->head + q->count - 1) & (q->cap - 1)];
		if (tail->chunk == chunk && tail->off + tail->len == off) {
			tail->len += len;
			q->bytes += len;
			return RC_OK;
		}
	}
	if (q->count == q->cap && outq_grow(q) != RC_OK)
		return RC_ENOMEM;
	tail = &q->ents[(q->head + q->count) & (q->cap - 1)];
	tail->chunk = chunk;
	tail->off = off;
	tail->len = len;
	gw_chunk_ref(chunk);
	q->count++;
	q->bytes += len;
	return RC_OK;
}

unsigned gw_outq_take(struct gw_outq *q, uv_buf_t *bufs, unsigned max)
{
	unsigned n = 0;

	while (n < max && q->busy < q->count) {
		struct gw_outq_ent *e = &q->ents[(q->head + q->busy) & (q->cap - 1)];
		bufs[n++] = uv_buf_init(e->chunk->data + e->off, e->len);
		q->busy++;
	}
	return n;
}

void gw_outq_consume(struct gw_outq *q, size_t n)
{
	while (n > 0 && q->count > 0) {
		struct gw_outq_ent *e = &q->ents[q->head];
		if (n < e->len) {
			e->off += (uint32_t)n;
			e->len -= (uint32_t)n;
			q->bytes -= n;
			return;
		}
		n -= e->len;
		q->bytes -= e->len;
		gw_chunk_unref(e->chunk);
		q->head = (q->head + 1) & (q->cap - 1);
		q->count--;
	}
}

void gw_outq_done(struct gw_outq *q)
{
	for (; q->busy > 0; q->busy--) {
		struct gw_outq_ent *e = &q->ents[q->head];
		q->bytes -= e->len;
		gw_chunk_unref(e->chunk);
		q->head = (q->head + 1) & (q->cap - 1);
		q->count--;
	}
}

void gw_outq_trim(struct gw_outq *q)
{
	if (q->count == 0 && q->cap > OUTQ_KEEP_CAP) {
		free(q->ents);
		q->ents = NULL;
		q->cap = 0;
		q->head = 0;
	}
}
