#include "flush.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"

struct pending {
	nng_msg *msg;
	struct rc_frame_reader r; /* checked; positioned before the first event */
	const char *room;         /* from the topic; room_len 0: global */
	uint16_t room_len;
};

struct rc_flush_asm {
	struct rc_flush_cfg cfg;
	struct rc_flush_counts *counts;
	struct rc_flush_counts own; /* when the owner keeps no counters */
	struct pending *pending;    /* in arrival order */
	size_t npending, cap;
	struct rc_frame_reader *mine; /* scratch: the wanted frames of the flush (cap entries) */
	struct rc_buf merged;
};

struct rc_flush_asm *rc_flush_asm_new(const struct rc_flush_cfg *cfg)
{
	struct rc_flush_asm *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->cfg = *cfg;
	if (a->cfg.max_pending == 0)
		a->cfg.max_pending = RC_FLUSH_MAX_PENDING;
	a->counts = cfg->counts != NULL ? cfg->counts : &a->own;
	rc_buf_init(&a->merged);
	return a;
}

static void flush_drop(struct rc_flush_asm *a, size_t i)
{
	nng_msg_free(a->pending[i].msg);
	memmove(a->pending + i, a->pending + i + 1, (a->npending - i - 1) * sizeof(*a->pending));
	a->npending--;
}

void rc_flush_asm_free(struct rc_flush_asm *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->npending; i++)
		nng_msg_free(a->pending[i].msg);
	free(a->pending);
	free(a->mine);
	rc_buf_fini(&a->merged);
	free(a);
}

static void flush_bad(struct rc_flush_asm *a, nng_msg *msg, int err, const char *what)
{
	a->counts->bad++;
	if (a->cfg.bad != NULL)
		a->cfg.bad(a->cfg.arg, err, what, nng_msg_len(msg));
	nng_msg_free(msg);
}

/* Every event of the frame is in the topic's room: the counts are checked per room. */
static bool flush_frame_in_room(const struct rc_frame_reader *r, const struct rc_bus_msg *bm)
{
	struct rc_frame_reader copy = *r;
	struct rc_frame_event ev;

	while (rc_frame_reader_next(&copy, &ev))
		if (ev.room_len != bm->room_len || (ev.room_len != 0 && memcmp(ev.room, bm->room, ev.room_len) != 0))
			return false;
	return true;
}

static void flush_frame(struct rc_flush_asm *a, nng_msg *msg, const struct rc_bus_msg *bm)
{
	struct pending p = { .msg = msg, .room = bm->room, .room_len = bm->room_len };
	int rv = rc_frame_reader_init(&p.r, bm->body, bm->body_len);

	if (rv == RC_OK && ((p.r.hdr.flags & (RC_FRAME_TICK | RC_FRAME_INDEX)) || !flush_frame_in_room(&p.r, bm)))
		rv = RC_EPROTO;
	if (rv != RC_OK) {
		flush_bad(a, msg, rv, "frame");
		return;
	}
	a->counts->frames++;
	a->counts->events += p.r.hdr.count;
	if (a->npending == a->cfg.max_pending)
		flush_drop(a, 0); /* its index never came: its flush was handed over incomplete, or not at all */
	if (a->npending == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 16;
		struct pending *np = realloc(a->pending, ncap * sizeof(*np));
		struct rc_frame_reader *nm = np ? realloc(a->mine, ncap * sizeof(*nm)) : NULL;
		if (np != NULL)
			a->pending = np;
		if (nm == NULL) {
			nng_msg_free(msg); /* the index shows it missing */
			return;
		}
		a->mine = nm;
		a->cap = ncap;
	}
	a->pending[a->npending++] = p;
}

/* The flush of index hdr was handed over: its frames and older are done, newer ones wait. */
static void flush_done(struct rc_flush_asm *a, nng_msg *msg, const struct rc_frame_hdr *hdr)
{
	size_t keep = 0;

	for (size_t i = 0; i < a->npending; i++) {
		struct pending *p = &a->pending[i];
		if (p->r.hdr.epoch == hdr->epoch && p->r.hdr.last_gseq > hdr->last_gseq)
			a->pending[keep++] = *p;
		else
			nng_msg_free(p->msg);
	}
	a->npending = keep;
	nng_msg_free(msg);
}

static void flush_index(struct rc_flush_asm *a, nng_msg *msg, const struct rc_bus_msg *bm)
{
	struct rc_index_reader ir;
	struct rc_index_entry e;
	struct rc_frame_reader r;
	uint64_t expected = 0, received = 0;
	size_t nmine = 0;
	uint8_t empty[RC_FRAME_HDR_SIZE];
	int rv = rc_index_reader_init(&ir, bm->body, bm->body_len);

	if (rv != RC_OK) {
		flush_bad(a, msg, rv, "index");
		return;
	}
	if (ir.hdr.flags & RC_FRAME_TICK)
		a->counts->ticks++;
	if (ir.hdr.flags & RC_FRAME_WHOLE) {
		/* the whole flush in one message: complete by construction; the subscriber skips rooms it has not */
		a->counts->frames++;
		a->counts->events += ir.whole.hdr.count;
		a->cfg.done(a->cfg.arg, &ir.whole, ir.first_gseq, true);
		flush_done(a, msg, &ir.hdr);
		return;
	}
	while (rc_index_reader_next(&ir, &e))
		if (a->cfg.wants(a->cfg.arg, e.room, e.room_len))
			expected += e.events;
	/* this flush's frames have its last gseq; older ones lost their index */
	for (size_t i = 0; i < a->npending; i++) {
		struct pending *p = &a->pending[i];
		if (p->r.hdr.epoch == ir.hdr.epoch && p->r.hdr.last_gseq == ir.hdr.last_gseq &&
		    a->cfg.wants(a->cfg.arg, p->room, p->room_len)) {
			received += p->r.hdr.count;
			a->mine[nmine++] = p->r;
		}
	}
	a->merged.len = 0;
	if (nmine == 1) {
		r = a->mine[0];
	} else {
		struct rc_frame_hdr hdr = { .epoch = ir.hdr.epoch, .last_gseq = ir.hdr.last_gseq };
		const void *buf = empty;
		size_t len = sizeof(empty);
		if (nmine == 0) {
			hdr.flags = ir.hdr.flags & RC_FRAME_TICK;
			rc_frame_put_header(empty, &hdr);
		} else if (rc_frame_merge(&a->merged, hdr, a->mine, nmine) == RC_OK) {
			buf = a->merged.data;
			len = a->merged.len;
		} else {
			/* hand over nothing of it: incomplete, the subscriber replays or skips the whole flush */
			received = 0;
			rc_frame_put_header(empty, &hdr);
		}
		rc_frame_reader_init(&r, buf, len);
	}
	a->cfg.done(a->cfg.arg, &r, ir.first_gseq, received == expected);
	flush_done(a, msg, &ir.hdr);
}

void rc_flush_asm_msg(struct rc_flush_asm *a, nng_msg *msg)
{
	struct rc_bus_msg bm;
	int rv = rc_bus_msg_parse(&bm, nng_msg_body(msg), nng_msg_len(msg));

	if (rv != RC_OK)
		flush_bad(a, msg, rv, "topic");
	else if (bm.index)
		flush_index(a, msg, &bm);
	else
		flush_frame(a, msg, &bm);
}
