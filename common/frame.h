/*
 * frame.h - the bus frame: how the broker sends events to the gateways.
 *
 * One nng message carries one frame; one frame carries any number of events in
 * gseq order (the broker coalesces whatever queued up while it was sending).
 * The layout is in docs/PROTOCOL.md. All integers are little-endian.
 *
 *   header  "RCF1" | u8 version | u8 flags | u16 0 | u64 epoch | u64 last_gseq
 *           | u32 count                                           (28 bytes)
 *   event   u64 gseq | u64 rseq | u16 room_len | u32 json_len | room | json
 *
 * On the bus every message starts with a topic, so that a SUB socket can
 * subscribe to the rooms it needs (nng matches topics as prefixes):
 *
 *   "r" room NUL  frame   the events of one room in one flush
 *   "g" NUL       frame   the global events of one flush
 *   "i" NUL       index   the end of a flush
 *
 * A flush is a run of consecutive gseqs (first..last) the broker sent
 * together: one frame per room that has events in it, then its index. Every
 * frame of a flush has last_gseq = the flush's last. The index lists how many
 * events each room (room_len 0: global) had, so a subscriber knows when it
 * has all the frames it wants and can merge them back into gseq order:
 *
 *   index   header (flags RC_FRAME_INDEX, count = entries, last_gseq)
 *           | u64 first_gseq | entries: u32 events | u16 room_len | room
 *
 * An index with no entries and RC_FRAME_TICK is the broker's idle tick
 * (first_gseq = last_gseq + 1): it tells subscribers the epoch and the last
 * gseq, so a dropped last flush is noticed.
 * A small flush travels whole in one message instead: an index with
 * RC_FRAME_WHOLE and no entries, followed by one frame holding every event
 * first..last in gseq order. Every subscriber receives it (topic "i"), each
 * takes the events of its own rooms; one message per flush instead of one
 * per room plus the index, because on the bus a message costs far more than
 * its bytes.
 * Replies to replay (format "frame") are a bare frame, without a topic.
 * Pure functions; any thread.
 */
#ifndef RC_FRAME_H
#define RC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto_limits.h"

#define RC_FRAME_HDR_SIZE 28
#define RC_FRAME_EVENT_HDR_SIZE 22
#define RC_FRAME_VERSION 1
#define RC_FRAME_TICK 0x01   /* idle tick: no events, last_gseq is the broker's */
#define RC_FRAME_REPLAY 0x02 /* a replay reply, not live traffic */
#define RC_FRAME_MORE 0x04   /* replay cut by its limit: ask again after the last event */
#define RC_FRAME_INDEX 0x08  /* an index: the end of a flush */
#define RC_FRAME_WHOLE 0x10  /* an index followed by every event of its flush (one frame) */
#define RC_FRAME_ACKS 0x20   /* an index ending with publish acknowledgements (rc_index_acks) */
#define RC_INDEX_HDR_SIZE (RC_FRAME_HDR_SIZE + 8)
#define RC_INDEX_ENTRY_HDR_SIZE 6
#define RC_BUS_TOPIC_MAX (2 + RC_ROOM_MAX) /* "r" + room + NUL */

struct rc_frame_hdr {
	uint64_t epoch;
	uint64_t last_gseq; /* gseq of the last event, or the broker's last gseq for a tick */
	uint32_t count;
	uint8_t flags;
};

struct rc_frame_event {
	uint64_t gseq;
	uint64_t rseq;
	const char *room; /* room_len == 0: a global event */
	uint16_t room_len;
	const char *json;
	uint32_t json_len;
};

/* Bytes one event takes in a frame. */
static inline size_t rc_frame_event_size(size_t room_len, size_t json_len)
{
	return RC_FRAME_EVENT_HDR_SIZE + room_len + json_len;
}

/* Writes the header into buf (RC_FRAME_HDR_SIZE bytes). */
void rc_frame_put_header(uint8_t *buf, const struct rc_frame_hdr *hdr);

/* Writes one event at buf; returns the bytes written (rc_frame_event_size). */
size_t rc_frame_put_event(uint8_t *buf, const struct rc_frame_event *ev);

/* Writes the header of a data frame or an index (RC_FRAME_INDEX: also first_gseq). */
void rc_index_put_header(uint8_t *buf, const struct rc_frame_hdr *hdr, uint64_t first_gseq);

/* One entry of an index: a room (room_len 0: global) and its events in the flush. */
struct rc_index_entry {
	const char *room;
	uint16_t room_len;
	uint32_t events;
};

static inline size_t rc_index_entry_size(size_t room_len)
{
	return RC_INDEX_ENTRY_HDR_SIZE + room_len;
}

size_t rc_index_put_entry(uint8_t *buf, const struct rc_index_entry *e);

/* Writes the topic for a room's events (room_len 0: global) into buf; returns its length with the NUL. */
size_t rc_bus_topic(char *buf, const char *room, size_t room_len);

/* The topic of the index, with its NUL. */
#define RC_BUS_TOPIC_INDEX "i"
#define RC_BUS_TOPIC_INDEX_LEN 2
/* Control messages (JSON: revocations, docs/PROTOCOL.md); every gateway subscribes to it. */
#define RC_BUS_TOPIC_CONTROL "c"
#define RC_BUS_TOPIC_CONTROL_LEN 2

/* A bus message split at its topic. */
struct rc_bus_msg {
	bool index;       /* an index (else a frame of events) */
	const char *room; /* a frame's room from its topic (room_len 0: global) */
	uint16_t room_len;
	const uint8_t *body; /* the frame or index after the topic */
	size_t body_len;
};

/* Splits a bus message. Returns 0 or RC_EPROTO (no valid topic). */
int rc_bus_msg_parse(struct rc_bus_msg *m, const void *buf, size_t len);

/* Iterates over the events of a received frame. Borrows the frame bytes. */
struct rc_frame_reader {
	struct rc_frame_hdr hdr;
	const uint8_t *p, *end;
	uint32_t left;
};

/*
 * Checks a whole frame before anything is delivered: magic, version, that the
 * events exactly fill len, gseq strictly increasing up to last_gseq, valid room
 * ids. Returns 0 and positions r before the first event, or RC_ETRUNC (frame
 * ends early) / RC_EPROTO (anything else wrong). A rejected frame delivers
 * nothing.
 */
int rc_frame_reader_init(struct rc_frame_reader *r, const void *buf, size_t len);

/* Returns 1 and fills ev with the next event, or 0 at the end. */
int rc_frame_reader_next(struct rc_frame_reader *r, struct rc_frame_event *ev);

/* Iterates over the entries of a received index. */
struct rc_index_reader {
	struct rc_frame_hdr hdr;
	uint64_t first_gseq;
	const uint8_t *p, *end;
	uint32_t left;
	struct rc_frame_reader whole; /* RC_FRAME_WHOLE: the flush's events, checked */
};

/*
 * Checks a whole index: magic, version, RC_FRAME_INDEX, entries exactly fill
 * len, valid room ids, first_gseq <= last_gseq + 1, and a tick has no entries.
 * With RC_FRAME_WHOLE: no entries, not a tick, and what follows the header is
 * a live frame of the same epoch and last_gseq holding exactly the events
 * first_gseq..last_gseq (r->whole, positioned before the first).
 * Returns 0, RC_ETRUNC or RC_EPROTO.
 */
int rc_index_reader_init(struct rc_index_reader *r, const void *buf, size_t len);
int rc_index_reader_next(struct rc_index_reader *r, struct rc_index_entry *e);

/*
 * Publish acknowledgements on the bus (docs/PROTOCOL.md, "Acknowledgements"):
 * a gateway that sent a publish with an "ack" token learns its ids from the
 * index of a flush instead of from an api reply. An index with RC_FRAME_ACKS
 * (a flush's, or a tick's when the events went earlier) ends with a block:
 *
 *   records | u32 bytes of the records
 *   record  u64 gateway | u64 request | u32 n | n x u64 gseq   (n >= 1)
 *
 * rc_index_reader_init reads such an index as if the block were not there.
 */
#define RC_ACK_HDR_SIZE 20

static inline size_t rc_ack_size(uint32_t n)
{
	return RC_ACK_HDR_SIZE + 8 * (size_t)n;
}

/* Writes one record (rc_ack_size(n) bytes) at buf; returns its size. */
size_t rc_ack_put(uint8_t *buf, uint64_t gw, uint64_t req, const uint64_t *gseqs, uint32_t n);

struct rc_ack {
	uint64_t gw, req;
	uint32_t n;
	const uint8_t *gseqs; /* n little-endian u64: rc_ack_gseq */
};

struct rc_ack_reader {
	const uint8_t *p, *end;
};

/*
 * Splits the block off the index body buf[0..*len): *len becomes the index's
 * own length and r iterates over the records (none without RC_FRAME_ACKS).
 * Checks only the block: the index itself is rc_index_reader_init's. Returns
 * 0, RC_ETRUNC or RC_EPROTO (the block does not fit, or records do not fill it).
 */
int rc_index_acks(const void *buf, size_t *len, struct rc_ack_reader *r);
int rc_ack_next(struct rc_ack_reader *r, struct rc_ack *a);
uint64_t rc_ack_gseq(const struct rc_ack *a, uint32_t i);

struct rc_buf;

/*
 * Merges the events of the checked frames fr[0..n) (gseq strictly increasing
 * within each, no gseq in two frames) into one frame appended to out, in gseq
 * order, with header hdr (its count is set here). The readers are consumed.
 * Returns 0, RC_ENOMEM, or RC_EPROTO if two frames share a gseq.
 */
int rc_frame_merge(struct rc_buf *out, struct rc_frame_hdr hdr, struct rc_frame_reader *fr, size_t n);

#endif
