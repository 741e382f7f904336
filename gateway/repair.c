#include "repair.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "buf.h"
#include "error.h"
#include "gateway.h"
#include "id.h"
#include "log.h"
#include "proto_limits.h"

/* Refetches when streams keep joining new rooms during a repair, before giving up. */
#define REPAIR_MAX_REFETCH 16

/* A flush that arrived while a gap was being repaired. */
struct held_frame {
	struct held_frame *next;
	size_t len;
	uint64_t first, last; /* the flush's gseqs */
	bool complete;        /* every wanted frame of it arrived */
	uint8_t data[];
};

/* A replay in flight; outlives the repair state if the gateway stops. */
struct repair_call {
	struct gw_repair *rp; /* NULL when abandoned */
	uint64_t sub_gen;     /* the hub's rooms when it was asked */
};

struct gw_repair {
	struct gw *gw;
	size_t max_held_bytes;
	bool repairing;
	struct held_frame *held, *held_tail;
	size_t held_bytes;
	uint64_t target; /* the gap is repaired once last_gseq reaches this */
	struct repair_call *call;
	unsigned refetches;
};

struct gw_repair *gw_repair_new(struct gw *gw, size_t max_held_bytes)
{
	struct gw_repair *rp = calloc(1, sizeof(*rp));

	if (rp != NULL) {
		rp->gw = gw;
		rp->max_held_bytes = max_held_bytes;
	}
	return rp;
}

static void repair_drop_held(struct gw_repair *rp)
{
	while (rp->held != NULL) {
		struct held_frame *h = rp->held;
		rp->held = h->next;
		free(h);
	}
	rp->held_tail = NULL;
	rp->held_bytes = 0;
}

void gw_repair_free(struct gw_repair *rp)
{
	if (rp == NULL)
		return;
	if (rp->call != NULL)
		rp->call->rp = NULL;
	repair_drop_held(rp);
	free(rp);
}

static bool repair_hold(struct gw_repair *rp, const struct rc_frame_reader *r, uint64_t first, bool complete)
{
	size_t len = (size_t)(r->end - r->p) + RC_FRAME_HDR_SIZE;
	struct held_frame *h;

	if (rp->held_bytes + len > rp->max_held_bytes)
		return false;
	h = malloc(sizeof(*h) + len);
	if (h == NULL)
		return false;
	/* the reader sits right after the header: the whole frame starts before it */
	memcpy(h->data, r->p - RC_FRAME_HDR_SIZE, len);
	h->len = len;
	h->first = first;
	h->last = r->hdr.last_gseq;
	h->complete = complete;
	h->next = NULL;
	if (rp->held_tail)
		rp->held_tail->next = h;
	else
		rp->held = h;
	rp->held_tail = h;
	rp->held_bytes += len;
	return true;
}

static void repair_fetch(struct gw_repair *rp);
static void repair_start(struct gw_repair *rp);
static void repair_release(struct gw_repair *rp);

/* Every stream gets stream.reset (gap_unrecoverable) and goes on after `resume`. */
static void repair_reset_all(struct gw_repair *rp, uint64_t resume, const char *why)
{
	struct gw_hub *hub = &rp->gw->hub;
	char id[RC_ID_MAX];

	resume = gw_hub_skip(hub, resume);
	rc_id_format(id, hub->epoch, resume);
	rc_log_warn("bus gap could not be repaired; streams reset", "why=\"%s\" resume_after=%s", why, id);
}

/* The gap cannot be filled: reset every stream, then deliver what was held after the gap. */
static void repair_give_up(struct gw_repair *rp, const char *why)
{
	uint64_t resume = rp->target;

	/* streams go on with the first held flush, or after it when it lacks events too */
	if (rp->held != NULL)
		resume = rp->held->complete ? rp->held->first - 1 : rp->held->last;

	repair_reset_all(rp, resume, why);
	rp->repairing = false;
	repair_release(rp);
}

/* Drops the repair and what it held; streams are reset and go on after `resume`. */
static void repair_abandon(struct gw_repair *rp, uint64_t resume, const char *why)
{
	if (rp->call != NULL)
		rp->call->rp = NULL;
	rp->call = NULL;
	rp->repairing = false;
	repair_drop_held(rp);
	repair_reset_all(rp, resume, why);
}

/* Whether a flush leaves a hole after what was delivered; sets the repair's target. */
static bool repair_needed(struct gw_repair *rp, uint64_t first, uint64_t last, bool complete)
{
	uint64_t pos = rp->gw->hub.last_gseq;

	if (first <= pos + 1 && (complete || last <= pos))
		return false;
	/* a complete flush waits for the hole before it; an incomplete one is replayed too */
	rp->target = complete ? first - 1 : last;
	return true;
}

/* Delivers a complete flush: its wanted events, then everything up to its last gseq is known. */
static void repair_deliver(struct gw_hub *hub, struct rc_frame_reader *r)
{
	gw_hub_deliver(hub, r);
	gw_hub_advance(hub, r->hdr.last_gseq);
}

/* Delivers the held flushes in order; a new hole among them starts another repair. */
static void repair_release(struct gw_repair *rp)
{
	struct gw_hub *hub = &rp->gw->hub;

	while (rp->held != NULL) {
		struct held_frame *h = rp->held;
		struct rc_frame_reader r;

		if (rc_frame_reader_init(&r, h->data, h->len) == RC_OK) {
			if (repair_needed(rp, h->first, r.hdr.last_gseq, h->complete)) {
				repair_start(rp);
				return;
			}
			/* an incomplete flush the replay already covered adds nothing */
			if (h->complete)
				repair_deliver(hub, &r);
		}
		rp->held = h->next;
		rp->held_bytes -= h->len;
		free(h);
	}
	rp->held_tail = NULL;
	rp->repairing = false;
}

static void repair_done(void *arg, int err, bool sent, const char *reply, size_t len)
{
	struct repair_call *call = arg;
	struct gw_repair *rp = call->rp;
	uint64_t sub_gen = call->sub_gen;
	struct rc_frame_reader r;
	struct gw_hub *hub;

	(void)sent; /* a replay only reads */
	free(call);
	if (rp == NULL)
		return;
	rp->call = NULL;
	hub = &rp->gw->hub;
	if (err != RC_OK) {
		repair_give_up(rp, err == RC_ETIMEDOUT ? "replay timed out" : "broker unreachable");
		return;
	}
	if (len < 4 || memcmp(reply, "RCF1", 4) != 0 || rc_frame_reader_init(&r, reply, len) != RC_OK) {
		repair_give_up(rp, "history no longer has the missing events");
		return;
	}
	if (r.hdr.epoch != hub->epoch) {
		repair_give_up(rp, "epoch changed during the repair");
		return;
	}
	if (sub_gen != hub->sub_gen) {
		/*
		 * A stream joined a room the replay did not ask for: it starts at
		 * hub->last_gseq, so the position must not move past events of that
		 * room. Ask again with the rooms wanted now.
		 */
		if (++rp->refetches > REPAIR_MAX_REFETCH) {
			repair_give_up(rp, "rooms kept changing during the repair");
			return;
		}
		repair_fetch(rp);
		return;
	}
	rp->refetches = 0;
	rp->gw->m.events_repaired += gw_hub_deliver(hub, &r);
	if (r.hdr.flags & RC_FRAME_MORE) {
		if (hub->last_gseq < rp->target) {
			repair_fetch(rp);
			return;
		}
	} else {
		/* every wanted event up to the broker's last gseq at the time of the reply */
		gw_hub_advance(hub, r.hdr.last_gseq);
	}
	if (hub->last_gseq < rp->target) {
		repair_give_up(rp, "replay ended before the gap was filled");
		return;
	}
	rp->repairing = false;
	repair_release(rp);
}

/* Appends the replay request for what this gateway wants after hub->last_gseq. */
static void repair_request(struct gw *gw, struct rc_buf *b)
{
	struct gw_hub *hub = &gw->hub;
	char after[RC_ID_MAX];

	rc_id_format(after, hub->epoch, hub->last_gseq);
	rc_buf_printf(b, "{\"op\":\"replay\",\"after\":\"%s\",\"limit\":%d,\"format\":\"frame\"", after,
		      RC_REPAIR_PAGE_EVENTS);
	/* the firehose, or more rooms than one replay takes: every event, the hub picks */
	if (hub->nfirehose == 0 && hub->rooms.count <= RC_REPLAY_MAX_ROOMS) {
		rc_buf_puts(b, ",\"rooms\":[");
		gw_hub_room_names(hub, b);
		rc_buf_puts(b, "]");
	}
	rc_buf_puts(b, "}");
}

static void repair_fetch(struct gw_repair *rp)
{
	struct gw *gw = rp->gw;
	struct repair_call *call = malloc(sizeof(*call));
	struct rc_buf req;
	int rv;

	if (call == NULL) {
		repair_give_up(rp, "out of memory");
		return;
	}
	rc_buf_init(&req);
	repair_request(gw, &req);
	call->rp = rp;
	call->sub_gen = gw->hub.sub_gen;
	gw->m.replays++;
	rv = req.err ? RC_ENOMEM
		     : gw_api_call_wait(gw->api, req.data, req.len, (int)gw->opt.publish_timeout_ms, repair_done, call);
	rc_buf_fini(&req);
	if (rv != RC_OK) {
		free(call);
		repair_give_up(rp, "broker api unreachable");
		return;
	}
	rp->call = call;
}

static void repair_start(struct gw_repair *rp)
{
	rp->gw->m.gaps_detected++;
	rp->repairing = true;
	rp->refetches = 0;
	rc_log_debug("bus gap; repairing by replay", "after=%" PRIu64 " upto=%" PRIu64, rp->gw->hub.last_gseq,
		     rp->target);
	repair_fetch(rp);
}

void gw_repair_flush(struct gw_repair *rp, struct rc_frame_reader *r, uint64_t first, bool complete)
{
	struct gw *gw = rp->gw;
	struct gw_hub *hub = &gw->hub;

	if (hub->epoch == 0) {
		/* the first flush: streams start from here */
		gw_hub_start(hub, r->hdr.epoch, first - 1);
	} else if (r->hdr.epoch != hub->epoch) {
		char e[RC_ID_MAX];
		rc_epoch_format(e, r->hdr.epoch);
		rc_log_warn("the broker's epoch changed (restart without history); streams reset", "epoch=%s", e);
		if (rp->call != NULL)
			rp->call->rp = NULL;
		rp->call = NULL;
		rp->repairing = false;
		repair_drop_held(rp);
		gw_hub_restart(hub, r->hdr.epoch);
	}
	if (rp->repairing) {
		if (repair_hold(rp, r, first, complete))
			return;
		repair_abandon(rp, complete ? first - 1 : r->hdr.last_gseq, "too many events held while repairing");
	} else if (repair_needed(rp, first, r->hdr.last_gseq, complete)) {
		/* an incomplete flush is replayed whole; a complete one after a hole waits for it */
		if (!complete || repair_hold(rp, r, first, complete)) {
			repair_start(rp);
			return;
		}
		repair_abandon(rp, first - 1, "cannot hold the flush");
	}
	if (complete)
		repair_deliver(hub, r);
}
