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

#define REPAIR_PAGE_EVENTS 10000

/* A frame that arrived while a gap was being repaired. */
struct held_frame {
	struct held_frame *next;
	size_t len;
	uint8_t data[];
};

/* A replay in flight; outlives the repair state if the gateway stops. */
struct repair_call {
	struct gw_repair *rp; /* NULL when abandoned */
};

struct gw_repair {
	struct gw *gw;
	size_t max_held_bytes;
	bool repairing;
	struct held_frame *held, *held_tail;
	size_t held_bytes;
	uint64_t target; /* the gap is repaired once last_gseq reaches this */
	struct repair_call *call;
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

static uint64_t frame_first_gseq(const struct rc_frame_reader *r)
{
	struct rc_frame_reader copy = *r;
	struct rc_frame_event ev;

	return rc_frame_reader_next(&copy, &ev) ? ev.gseq : r->hdr.last_gseq + 1;
}

static bool repair_hold(struct gw_repair *rp, const struct rc_frame_reader *r)
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
static void repair_release(struct gw_repair *rp);

/* Every stream gets stream.reset (gap_unrecoverable) and goes on after `resume`. */
static void repair_reset_all(struct gw_repair *rp, uint64_t resume, const char *why)
{
	struct gw_hub *hub = &rp->gw->hub;
	char id[RC_ID_MAX];

	if (resume < hub->last_gseq)
		resume = hub->last_gseq;
	rc_id_format(id, hub->epoch, resume);
	rc_log_warn("bus gap could not be repaired; streams reset", "why=\"%s\" resume_after=%s", why, id);
	hub->last_gseq = resume;
	gw_hub_reset_all(hub, "gap_unrecoverable", hub->epoch, resume);
}

/* The gap cannot be filled: reset every stream, then deliver what was held after the gap. */
static void repair_give_up(struct gw_repair *rp, const char *why)
{
	uint64_t resume = rp->target;

	if (rp->held != NULL) {
		struct rc_frame_reader r;
		if (rc_frame_reader_init(&r, rp->held->data, rp->held->len) == RC_OK)
			resume = frame_first_gseq(&r) - 1;
	}
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

/* Delivers the held frames in order; a new gap among them starts another repair. */
static void repair_release(struct gw_repair *rp)
{
	struct gw_hub *hub = &rp->gw->hub;

	while (rp->held != NULL) {
		struct held_frame *h = rp->held;
		struct rc_frame_reader r;

		if (rc_frame_reader_init(&r, h->data, h->len) == RC_OK) {
			if (r.hdr.count > 0 && frame_first_gseq(&r) > hub->last_gseq + 1) {
				rp->target = frame_first_gseq(&r) - 1;
				rp->repairing = true;
				rp->gw->m.gaps_detected++;
				repair_fetch(rp);
				return;
			}
			gw_hub_deliver(hub, &r);
		}
		rp->held = h->next;
		rp->held_bytes -= h->len;
		free(h);
	}
	rp->held_tail = NULL;
	rp->repairing = false;
}

static void repair_done(void *arg, int err, const char *reply, size_t len)
{
	struct repair_call *call = arg;
	struct gw_repair *rp = call->rp;
	struct rc_frame_reader r;
	struct gw_hub *hub;

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
	rp->gw->m.events_repaired += gw_hub_deliver(hub, &r);
	if (hub->last_gseq < rp->target && (r.hdr.flags & RC_FRAME_MORE)) {
		repair_fetch(rp);
		return;
	}
	if (hub->last_gseq < rp->target) {
		repair_give_up(rp, "replay ended before the gap was filled");
		return;
	}
	rp->repairing = false;
	repair_release(rp);
}

static void repair_fetch(struct gw_repair *rp)
{
	struct gw *gw = rp->gw;
	struct repair_call *call = malloc(sizeof(*call));
	char after[RC_ID_MAX], req[160];
	int n;

	if (call == NULL) {
		repair_give_up(rp, "out of memory");
		return;
	}
	rc_id_format(after, gw->hub.epoch, gw->hub.last_gseq);
	n = snprintf(req, sizeof(req), "{\"op\":\"replay\",\"after\":\"%s\",\"limit\":%d,\"format\":\"frame\"}", after,
		     REPAIR_PAGE_EVENTS);
	call->rp = rp;
	gw->m.replays++;
	if (gw_api_call(gw->api, req, (size_t)n, (int)gw->opt.publish_timeout_ms, repair_done, call) != RC_OK) {
		free(call);
		repair_give_up(rp, "broker api unreachable");
		return;
	}
	rp->call = call;
}

static void repair_start(struct gw_repair *rp, uint64_t target)
{
	rp->gw->m.gaps_detected++;
	rp->target = target;
	rp->repairing = true;
	rc_log_debug("bus gap; repairing by replay", "after=%" PRIu64 " upto=%" PRIu64, rp->gw->hub.last_gseq, target);
	repair_fetch(rp);
}

void gw_repair_frame(void *arg, struct rc_frame_reader *r)
{
	struct gw_repair *rp = arg;
	struct gw *gw = rp->gw;
	struct gw_hub *hub = &gw->hub;
	uint64_t first;

	if (hub->epoch == 0) {
		/* the first frame: streams start from here */
		hub->epoch = r->hdr.epoch;
		hub->last_gseq = r->hdr.count ? frame_first_gseq(r) - 1 : r->hdr.last_gseq;
		/* resumes that waited for this start now: they replay up to at least here */
		gw_hub_bus_known(hub);
	} else if (r->hdr.epoch != hub->epoch) {
		char e[RC_ID_MAX];
		rc_epoch_format(e, r->hdr.epoch);
		rc_log_warn("the broker's epoch changed (restart without history); streams reset", "epoch=%s", e);
		if (rp->call != NULL)
			rp->call->rp = NULL;
		rp->call = NULL;
		rp->repairing = false;
		repair_drop_held(rp);
		hub->epoch = r->hdr.epoch;
		hub->last_gseq = 0;
		gw_hub_reset_all(hub, "epoch_changed", hub->epoch, 0);
	}
	if (r->hdr.flags & RC_FRAME_TICK) {
		gw->m.bus_ticks++;
		if (!rp->repairing && r->hdr.last_gseq > hub->last_gseq)
			repair_start(rp, r->hdr.last_gseq);
		return;
	}
	gw->m.bus_frames++;
	gw->m.bus_events += r->hdr.count;
	if (r->hdr.count == 0)
		return;
	first = frame_first_gseq(r);
	if (rp->repairing) {
		if (!repair_hold(rp, r))
			repair_abandon(rp, first - 1, "too many events held while repairing");
		else
			return;
	} else if (first > hub->last_gseq + 1) {
		if (repair_hold(rp, r)) {
			repair_start(rp, first - 1);
			return;
		}
		repair_abandon(rp, first - 1, "cannot hold the frame");
	}
	gw_hub_deliver(hub, r);
}
