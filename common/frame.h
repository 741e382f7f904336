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
 * A frame with count 0 and RC_FRAME_TICK is the broker's idle tick: it tells
 * the gateways the epoch and the last gseq, so a dropped last frame is noticed.
 * Pure functions; any thread.
 */
#ifndef RC_FRAME_H
#define RC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define RC_FRAME_HDR_SIZE 28
#define RC_FRAME_EVENT_HDR_SIZE 22
#define RC_FRAME_VERSION 1
#define RC_FRAME_TICK 0x01   /* idle tick: no events, last_gseq is the broker's */
#define RC_FRAME_REPLAY 0x02 /* a replay reply, not live traffic */
#define RC_FRAME_MORE 0x04   /* replay cut by its limit: ask again after the last event */

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

#endif
