/*
 * hub.h - which streams want which events, and the fan-out of bus flushes.
 *
 * The hub decides what the gateway subscribes to on the bus: a room's topic
 * from its first stream here to its last, or everything while a firehose
 * stream is open or more than --bus-max-rooms rooms are (nng matches topics
 * one by one; beyond that, the hash lookup here is cheaper).
 *
 * The assembler hands it each flush's wanted events in gseq order. For each
 * flush the hub frames every event once as SSE text into one chunk per room (and one
 * for firehose streams), then hands each stream a reference to the byte
 * ranges it wants: runs of consecutive events of one room become one range,
 * and consecutive ranges of one chunk merge in the stream's queue. A stream's
 * events therefore stay in gseq order even when it follows several rooms.
 *
 * The hub also keeps the bus position: the current epoch and the last gseq up
 * to which every wanted event was delivered.
 * Loop thread only.
 */
#ifndef GW_HUB_H
#define GW_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "list.h"
#include "outq.h"
#include "strmap.h"

struct gw;
struct gw_stream;

/* A room with streams on this gateway. */
struct gw_room {
	struct gw_list members; /* struct gw_member.node */
	uint32_t nmembers;
	const char *name; /* the map entry's key */
	uint16_t name_len;
	/* scratch of the frame being delivered */
	struct gw_chunk *slab;
	uint32_t slab_bytes;
	struct gw_room *dead_next; /* on hub->dead */
	bool dead;
};

/*
 * One stream's membership in one room. The memberships (struct gw_stream's
 * members[] and hub_node) are the hub's records, embedded in the stream so
 * that a stream is one allocation: only the hub writes them (gw_hub_add,
 * gw_hub_remove); the stream reads its rooms' names from them.
 */
struct gw_member {
	struct gw_list node;
	struct gw_room *room;
	struct gw_stream *stream;
};

/* One event of a frame, framed as SSE text (scratch of gw_hub_deliver). */
struct gw_framed {
	struct gw_room *room; /* NULL: global, or a room without streams here */
	bool global;
	uint64_t gseq;
	const char *json; /* borrowed from the frame */
	uint32_t json_len;
	struct gw_chunk *chunk; /* the room's (or global) slab, NULL when nobody here wants it */
	uint32_t off, len;      /* in chunk */
	uint32_t fire_off;      /* in the firehose slab */
};

/* A run of events handed to one stream: scratch[first..last] in one chunk. */
struct gw_run {
	const struct gw_framed *ev; /* first event */
	size_t n;
	struct gw_chunk *chunk;
	bool fire; /* chunk is the firehose slab: offsets are fire_off */
};

struct gw_hub {
	struct gw *gw;
	struct rc_strmap rooms;      /* name -> struct gw_room * */
	struct gw_list room_streams; /* streams with a room filter (they get global events) */
	struct gw_list firehose;     /* streams without a filter (they get everything) */
	uint32_t nfirehose;
	/* the position: read by others, changed only through the functions below */
	uint64_t epoch;     /* 0 until the first frame */
	uint64_t last_gseq; /* last gseq delivered in order */
	struct gw_framed *scratch;
	size_t scratch_cap;
	bool delivering;        /* rooms emptied now are freed after the delivery */
	struct gw_room *dead;   /* those rooms */
	bool bus_all;           /* subscribed to every room, not room by room */
	uint64_t sub_gen;       /* counts rooms (or the firehose) becoming wanted */
};

void gw_hub_init(struct gw_hub *hub, struct gw *gw);
void gw_hub_fini(struct gw_hub *hub);

/*
 * Adds a stream that follows rooms[0..s->nrooms) (none: firehose): sets up
 * its memberships (s->members, s->hub_node). Returns 0, or RC_ENOMEM with the
 * stream in no room.
 */
int gw_hub_add(struct gw_hub *hub, struct gw_stream *s, const char *const *rooms, const size_t *lens);
/* Removes a stream (safe during a delivery). */
void gw_hub_remove(struct gw_hub *hub, struct gw_stream *s);

/*
 * Frames the events of a checked frame that come after hub->last_gseq and
 * delivers them to the streams that want them (skipping events at or below
 * each stream's last gseq); hub->last_gseq moves to the last event.
 * Out of memory, a stream that misses one of them gets stream.reset
 * (gap_unrecoverable) with the id of the last event and goes on live after
 * it: nothing is skipped silently. Returns how many events were new.
 */
size_t gw_hub_deliver(struct gw_hub *hub, struct rc_frame_reader *r);

/* Whether this gateway wants a room's events (room_len 0: global events). */
bool gw_hub_wants(const struct gw_hub *hub, const char *room, size_t room_len);

/* Every wanted event up to gseq has been delivered. */
static inline void gw_hub_advance(struct gw_hub *hub, uint64_t gseq)
{
	if (gseq > hub->last_gseq)
		hub->last_gseq = gseq;
}

/*
 * The first bus frame: the gateway is at (epoch, gseq), where streams start;
 * the resumes that waited for it start now.
 */
void gw_hub_start(struct gw_hub *hub, uint64_t epoch, uint64_t gseq);

/*
 * The broker restarted without its history (a new epoch): the position is
 * (epoch, 0) and every stream gets stream.reset epoch_changed.
 */
void gw_hub_restart(struct gw_hub *hub, uint64_t epoch);

/*
 * The events up to gseq cannot be delivered (a bus gap that could not be
 * repaired): the position moves to gseq (never back) and every stream gets
 * stream.reset gap_unrecoverable with the id there, going on live after it.
 * Returns the position.
 */
uint64_t gw_hub_skip(struct gw_hub *hub, uint64_t gseq);

struct rc_buf;
/* Appends the rooms with streams here as JSON strings separated by commas. */
void gw_hub_room_names(const struct gw_hub *hub, struct rc_buf *b);

#endif
