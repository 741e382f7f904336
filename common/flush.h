/*
 * flush.h - puts the broker's flushes back together from the bus.
 *
 * The broker sends each flush as one frame per room, then an index with every
 * room's event count (frame.h). A subscriber takes only the rooms it wants
 * (its SUB topics), so it receives a subset of the frames. The assembler keeps
 * the frames of the flush in progress; when the index arrives it checks that
 * every frame the subscriber wants is there (the counts of the wanted rooms
 * add up), merges them into one frame in gseq order, and hands it to the
 * subscriber's done callback with the flush's first gseq and whether it is
 * complete. A frame lost by nng (or filtered before its room was subscribed)
 * makes the flush incomplete; a lost index makes the next flush start after
 * a hole (its first gseq says so): the subscriber decides what to do (the
 * gateway replays the range, `roomcast tail` prints what came).
 *
 * Used by the gateway (gateway/assembler.c) and `roomcast tail`. No I/O, no
 * allocation per event: the frames are kept as the nng messages they came in,
 * a flush of one frame is handed over as it is, merges reuse one buffer.
 * Not thread-safe: one owner thread.
 */
#ifndef RC_FLUSH_H
#define RC_FLUSH_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Frames waiting for their index by default; beyond, the oldest go (their index never came). */
#define RC_FLUSH_MAX_PENDING 4096

/* What an assembler received; the bus counters of its owner. */
struct rc_flush_counts {
	uint64_t frames; /* frames of events, a whole flush counting one */
	uint64_t events; /* the events in them */
	uint64_t ticks;  /* idle ticks */
	uint64_t bad;    /* corrupt messages dropped */
};

struct rc_flush_cfg {
	/* Whether the subscriber takes room's events (room_len 0: global events). Required. */
	bool (*wants)(void *arg, const char *room, size_t room_len);
	/*
	 * A flush ended (its index came). r reads its events in gseq order: the
	 * wanted rooms' (and of a flush sent whole, every room's: the callee
	 * skips the others), r->hdr the flush's epoch and last gseq, and
	 * RC_FRAME_TICK for an idle tick (no events, first = last + 1). first is
	 * the flush's first gseq; complete is false when a wanted frame is
	 * missing (then r may hold part of the flush, or nothing). r borrows the
	 * assembler's memory until the call returns. Called from inside
	 * rc_flush_asm_msg, which done must not re-enter nor free the
	 * assembler. Required.
	 */
	void (*done)(void *arg, struct rc_frame_reader *r, uint64_t first, bool complete);
	/* Optional: a corrupt message was dropped; what is "topic", "frame" or "index", err RC_EPROTO or RC_ETRUNC. */
	void (*bad)(void *arg, int err, const char *what, size_t len);
	void *arg;                      /* passed to the callbacks */
	struct rc_flush_counts *counts; /* optional: counted here (else inside the assembler) */
	size_t max_pending;             /* 0: RC_FLUSH_MAX_PENDING */
};

struct rc_flush_asm;

/* Returns a new assembler calling cfg's callbacks (cfg is copied), or NULL (out of memory). */
struct rc_flush_asm *rc_flush_asm_new(const struct rc_flush_cfg *cfg);

/* Frees the assembler and the frames it holds. NULL ok. */
void rc_flush_asm_free(struct rc_flush_asm *a);

/*
 * Takes one bus message (topic and body, as received; ownership passes to the
 * assembler, which frees it). A frame waits for its index; an index ends its
 * flush (done is called, the flush's frames and older ones are freed, newer
 * ones keep waiting); a corrupt message is counted, reported to bad, freed.
 * A frame that cannot be kept (out of memory) is freed: its flush is then
 * incomplete.
 */
void rc_flush_asm_msg(struct rc_flush_asm *a, nng_msg *msg);

#endif
