#include "merge.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "assembler.h"
#include "bus_client.h"
#include "error.h"
#include "frame.h"
#include "gateway.h"
#include "id.h"
#include "log.h"
#include "repair.h"

/* A flush that waits for a hole before it (or for a complete copy of itself) to be filled by another bus. */
struct merge_held {
	struct merge_held *next;
	unsigned src;
	uint64_t first, last;
	bool complete;
	size_t len;
	uint8_t data[]; /* the frame: header and the wanted events */
};

/* One broker's bus. */
struct merge_src {
	struct gw_merge *m;
	unsigned index;
	struct gw_assembler *as;
	uint64_t epoch; /* of its latest flush; 0: none yet */
	uint64_t last;	/* the last gseq its flushes reached in that epoch */
	uint64_t heard; /* loop time of its latest flush */
};

struct gw_merge {
	struct gw *gw;
	struct gw_repair *rp;
	uint64_t epoch; /* the epoch followed; 0 until a flush was taken */
	uint64_t taken; /* every gseq up to this was handed to the repair stage */
	bool started;	/* taken holds (a flush of epoch was taken) */
	uint64_t wait_ms;
	struct merge_held *held; /* by first gseq, complete before incomplete */
	size_t held_bytes, max_held_bytes;
	struct gw_tq wait_q; /* --bus-gap-wait-ms */
	struct gw_tq_entry wait;
	unsigned n;
	struct merge_src src[];
};

static uint64_t merge_now(const struct gw_merge *m)
{
	return gw_timer_now(&m->gw->timer);
}

/* Hands a flush to the repair stage: it is taken. */
static void merge_forward(struct gw_merge *m, struct rc_frame_reader *r, uint64_t first, bool complete)
{
	if (!m->started || r->hdr.epoch != m->epoch || r->hdr.last_gseq > m->taken)
		m->taken = r->hdr.last_gseq;
	m->epoch = r->hdr.epoch;
	m->started = true;
	gw_repair_flush(m->rp, r, first, complete);
}

static void merge_unhold(struct gw_merge *m, struct merge_held *h)
{
	m->held = h->next;
	m->held_bytes -= h->len;
	free(h);
}

/* Hands the held flush h to the repair stage (unless taken already) and frees it. */
static void merge_forward_held(struct gw_merge *m, struct merge_held *h)
{
	struct rc_frame_reader r;

	if (h->last > m->taken && rc_frame_reader_init(&r, h->data, h->len) == RC_OK)
		merge_forward(m, &r, h->first, h->complete);
	merge_unhold(m, h);
}

/* Nothing will fill the hole in time: everything held goes to the repair stage, in order. */
static void merge_give_up(struct gw_merge *m)
{
	gw_tq_remove(&m->wait);
	if (m->held == NULL)
		return;
	m->gw->m.bus_merge_gaps++;
	while (m->held != NULL)
		merge_forward_held(m, m->held);
}

static void merge_drop_held(struct gw_merge *m)
{
	gw_tq_remove(&m->wait);
	while (m->held != NULL)
		merge_unhold(m, m->held);
}

/* Whether bus s may still bring the gseq after what was taken: connected, behind it, on the epoch, not silent. */
static bool merge_may_fill(const struct gw_merge *m, const struct merge_src *s, uint64_t now)
{
	if (!gw_loop_bus_connected(m->gw, s->index))
		return false;
	if (s->epoch == 0)
		return true; /* connected, nothing heard yet: a broker starting */
	return s->epoch == m->epoch && s->last <= m->taken && now - s->heard <= GW_MERGE_SILENT_MS;
}

/* After a change: held flushes that continue what was taken go on; a hole nobody can fill goes to the repair. */
static void merge_settle(struct gw_merge *m)
{
	uint64_t now;

	while (m->held != NULL) {
		struct merge_held *h = m->held;
		if (h->last <= m->taken) {
			merge_unhold(m, h); /* another bus brought it */
		} else if (h->complete && h->first <= m->taken + 1) {
			m->gw->m.bus_merge_filled++;
			merge_forward_held(m, h);
		} else {
			break;
		}
	}
	if (m->held == NULL) {
		gw_tq_remove(&m->wait);
		return;
	}
	now = merge_now(m);
	for (unsigned i = 0; i < m->n; i++)
		if (merge_may_fill(m, &m->src[i], now)) {
			if (!gw_tq_queued(&m->wait))
				gw_tq_push(&m->wait_q, &m->wait);
			return;
		}
	merge_give_up(m);
}

static void merge_waited(struct gw_tq *q, struct gw_tq_entry *e)
{
	struct gw_merge *m = q->data;
	char id[RC_ID_MAX];

	(void)e;
	rc_id_format(id, m->epoch, m->taken);
	rc_log_debug("no other bus filled the hole in --bus-gap-wait-ms; repairing it by replay", "after=%s", id);
	merge_give_up(m);
}

/* Keeps a copy of the flush r (its wanted events) in gseq order; false: over max_held_bytes or out of memory. */
static bool merge_hold(struct gw_merge *m, unsigned src, const struct rc_frame_reader *r, uint64_t first, bool complete)
{
	size_t len = (size_t)(r->end - r->p) + RC_FRAME_HDR_SIZE;
	struct merge_held *h, **pp = &m->held;

	if (m->held_bytes + len > m->max_held_bytes || (h = malloc(sizeof(*h) + len)) == NULL)
		return false;
	/* the reader sits right after the header: the frame starts before it */
	memcpy(h->data, r->p - RC_FRAME_HDR_SIZE, len);
	h->len = len;
	h->src = src;
	h->first = first;
	h->last = r->hdr.last_gseq;
	h->complete = complete;
	while (*pp != NULL && ((*pp)->first < first || ((*pp)->first == first && (*pp)->complete >= complete)))
		pp = &(*pp)->next;
	h->next = *pp;
	*pp = h;
	m->held_bytes += len;
	return true;
}

/* Whether a bus other than s serves the epoch followed now. */
static bool merge_epoch_served(const struct gw_merge *m, const struct merge_src *s, uint64_t now)
{
	for (unsigned i = 0; i < m->n; i++) {
		const struct merge_src *t = &m->src[i];
		if (t != s && t->epoch == m->epoch && gw_loop_bus_connected(m->gw, i) &&
		    now - t->heard <= GW_MERGE_SILENT_MS)
			return true;
	}
	return false;
}

/* A flush of source arg (the assembler's callback). */
static void merge_flush(void *arg, struct rc_frame_reader *r, uint64_t first, bool complete)
{
	struct merge_src *s = arg;
	struct gw_merge *m = s->m;
	uint64_t epoch = r->hdr.epoch, last = r->hdr.last_gseq, now = merge_now(m);
	char e[RC_ID_MAX];

	if (m->n == 1) {
		s->epoch = epoch;
		s->last = last;
		merge_forward(m, r, first, complete);
		return;
	}
	s->heard = now;
	if (s->epoch != epoch) {
		if (s->epoch != 0) {
			rc_epoch_format(e, epoch);
			rc_log_info("a broker's bus is on another epoch", "broker=%u epoch=%s", s->index, e);
		}
		s->epoch = epoch;
		s->last = 0;
	}
	if (last > s->last)
		s->last = last;
	if (m->started && epoch != m->epoch) {
		if (merge_epoch_served(m, s, now)) {
			m->gw->m.bus_merge_epoch_ignored++;
			merge_settle(m); /* s is no longer one that may fill a hole */
			return;
		}
		rc_epoch_format(e, epoch);
		rc_log_warn("no bus serves the epoch followed any more; following the new one", "broker=%u epoch=%s",
			    s->index, e);
		merge_drop_held(m);
		m->started = false;
	}
	if (!m->started || (complete && first <= m->taken + 1 && last > m->taken)) {
		merge_forward(m, r, first, complete);
	} else if (last <= m->taken) {
		if (!(r->hdr.flags & RC_FRAME_TICK))
			m->gw->m.bus_merge_duplicates++; /* taken from another bus already */
	} else if (m->wait_ms == 0 || !merge_hold(m, s->index, r, first, complete)) {
		/* a hole before it, or incomplete, and no waiting for another bus */
		merge_give_up(m);
		merge_forward(m, r, first, complete);
	}
	merge_settle(m);
}

struct gw_merge *gw_merge_new(struct gw *gw, struct gw_repair *rp, unsigned nsrc, uint64_t wait_ms,
			      size_t max_held_bytes)
{
	struct gw_merge *m = calloc(1, sizeof(*m) + nsrc * sizeof(m->src[0]));

	if (m == NULL)
		return NULL;
	m->gw = gw;
	m->rp = rp;
	m->n = nsrc;
	m->wait_ms = wait_ms;
	m->max_held_bytes = max_held_bytes;
	gw_tq_init(&m->wait_q, &gw->timer, wait_ms, merge_waited, m);
	gw_tq_entry_init(&m->wait);
	for (unsigned i = 0; i < nsrc; i++) {
		m->src[i].m = m;
		m->src[i].index = i;
		if ((m->src[i].as = gw_assembler_new(gw, merge_flush, &m->src[i])) == NULL) {
			gw_merge_free(m);
			return NULL;
		}
	}
	return m;
}

void gw_merge_free(struct gw_merge *m)
{
	if (m == NULL)
		return;
	merge_drop_held(m);
	gw_tq_fini(&m->wait_q);
	for (unsigned i = 0; i < m->n; i++)
		gw_assembler_free(m->src[i].as);
	free(m);
}

void gw_merge_msg(struct gw_merge *m, unsigned src, nng_msg *msg)
{
	if (src >= m->n) {
		nng_msg_free(msg);
		return;
	}
	gw_assembler_msg(m->src[src].as, msg);
}

uint64_t gw_merge_source_last(const struct gw_merge *m, unsigned src)
{
	return m != NULL && src < m->n ? m->src[src].last : 0;
}
