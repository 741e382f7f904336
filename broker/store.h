/*
 * store.h - the broker's durable history (--store file): an append-only log
 * of fixed-size segment files in --data-dir, plus the epoch and a checkpoint
 * of the rooms' sequences.
 *
 *   DIR/lock                  flock'ed while a broker runs on DIR
 *   DIR/epoch                 the epoch, 16 hex digits (written once, atomically)
 *   DIR/<first gseq>.seg      segments (segment.h), named by their first gseq
 *   DIR/rooms                 each room's rseq, written before old segments are
 *                             deleted (so a room whose events all went keeps its rseq)
 *
 * store_append() is called under the history's write lock, in gseq order: it
 * writes the records (a short write is cut off again, so a failed append
 * leaves nothing behind) and rolls to a new segment when the current one is
 * full. store_sync() waits until what was appended so far is on disk, with
 * one fdatasync for every caller waiting at the time (group commit).
 *
 * Thread-safe as described: append/trim under the caller's lock, sync and
 * stats from any thread.
 */
#ifndef RC_STORE_H
#define RC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "segment.h"

enum store_fsync {
	STORE_FSYNC_NONE,     /* never: a process crash loses nothing, a power loss what the OS had not written */
	STORE_FSYNC_INTERVAL, /* every interval_ms: a power loss loses at most that much */
	STORE_FSYNC_ALWAYS,   /* before a publish is answered (group commit) */
};

struct store_config {
	const char *dir;
	enum store_fsync fsync;
	int interval_ms;
	size_t segment_bytes;
	bool repair; /* cut the log at a bad record instead of refusing to start */
};

/* What recovery found, for the log and stats. */
struct store_recovery {
	uint64_t events, rooms; /* event and room records read */
	uint64_t next_gseq;	/* the gseq the next publish gets */
	uint64_t cut_bytes;	/* bytes of a torn tail cut off (or dropped by --repair) */
	bool repaired;		/* --repair dropped records: the caller must start a new epoch */
	bool fresh;		/* the data dir held no log: a new epoch was written */
	double ms;		/* how long recovery took */
};

/* Receives each record at recovery: rooms checkpoint first, then the log's events in gseq order. */
typedef int (*store_record_fn)(void *arg, const struct seg_record *r);

struct store;

/*
 * Opens cfg->dir (created if missing): takes its lock, reads or writes the
 * epoch (new_epoch when there is none, or after a repair), scans every
 * segment, cuts a torn tail and hands every record to fn. Returns RC_EPROTO
 * (corruption without --repair; the message names file and offset), RC_EIO
 * or RC_ENOMEM, with the reason logged.
 */
int store_open(const struct store_config *cfg, uint64_t new_epoch, store_record_fn fn, void *arg, struct store **out,
	       struct store_recovery *rec);
void store_close(struct store *s);

uint64_t store_epoch(const struct store *s);
enum store_fsync store_fsync_mode(const struct store *s);

/*
 * Appends len bytes of encoded event records whose first gseq is
 * first_gseq. Caller holds the history's write lock. RC_EIO (disk full, I/O
 * error: nothing was appended).
 */
int store_append(struct store *s, const uint8_t *buf, size_t len, uint64_t first_gseq);

/* Waits until everything appended before the call is on disk. RC_EIO when fdatasync failed. */
int store_sync(struct store *s);

/* True when segments wholly before first_gseq can go (caller then writes the rooms with store_trim). */
bool store_trim_due(const struct store *s, uint64_t first_gseq);

/*
 * Writes the rooms checkpoint (rooms: encoded SEG_REC_ROOM records) and
 * deletes the segments wholly before first_gseq (never the last). Caller holds
 * the history's write lock. A failed checkpoint keeps the segments.
 */
void store_trim(struct store *s, uint64_t first_gseq, const uint8_t *rooms, size_t len);

struct store_stats {
	uint64_t bytes, segments, first_gseq; /* first_gseq: of the oldest segment */
	uint64_t fsyncs, fsync_us_total, fsync_us_max, fsync_us_last;
	uint64_t write_errors, fsync_errors;
	double recovery_ms;
};
void store_stats(struct store *s, struct store_stats *st);

/* Parses none|interval|always; false when it is none of them. */
bool store_fsync_parse(const char *s, enum store_fsync *out);
const char *store_fsync_name(enum store_fsync f);

#endif
