/*
 * merge.h - several brokers' buses into one sequence for the repair stage.
 *
 * With --broker-bus A,B every broker of one stream publishes every event
 * with the same epoch and gseq, each on its own bus and in its own flushes.
 * Each bus (source) has its own assembler (assembler.h); the merge takes
 * their flushes and hands the repair stage (repair.h) each gseq once, in
 * order:
 * - a complete flush that continues what was taken goes on at once, the
 *   first bus to bring it wins; what was taken already is dropped;
 * - a flush after a hole, or one missing a wanted frame, is held while a
 *   connected bus that has not reached the hole yet may still bring it (it
 *   lags); once one does, the held flushes follow without a replay. When no
 *   connected bus can (each has passed the hole, or stopped), or after
 *   --bus-gap-wait-ms, the held flushes go to the repair stage as they are,
 *   and it replays the hole as with one bus;
 * - epochs: the brokers of one stream share it. A bus on another epoch is
 *   ignored while another connected bus, heard from within the last
 *   GW_MERGE_SILENT_MS, is on the epoch followed; once none is, the new
 *   epoch is followed (the repair stage resets every stream with
 *   epoch_changed, as when a lone broker restarts without history).
 * With one bus every flush goes straight on, as before.
 * The state is per loop (a few words per bus and the held flushes, bounded
 * by --repair-max-bytes); streams are unchanged.
 * Loop thread only.
 */
#ifndef GW_MERGE_H
#define GW_MERGE_H

#include <nng/nng.h>
#include <stddef.h>
#include <stdint.h>

struct gw;
struct gw_repair;
struct gw_merge;

/* A bus silent for longer is not waited for, and does not keep its epoch followed. */
#define GW_MERGE_SILENT_MS 5000

/*
 * A merge of nsrc buses (one assembler each) into rp. wait_ms: how long a
 * hole waits for another bus (0: not at all); max_held_bytes bounds the
 * flushes held meanwhile (past it they go to the repair stage). NULL: out
 * of memory.
 */
struct gw_merge *gw_merge_new(struct gw *gw, struct gw_repair *rp, unsigned nsrc, uint64_t wait_ms,
			      size_t max_held_bytes);
/* Frees the assemblers and what is held. NULL ok. */
void gw_merge_free(struct gw_merge *m);

/* A bus message of source src (the bus client's index); takes msg. */
void gw_merge_msg(struct gw_merge *m, unsigned src, nng_msg *msg);

/* The last gseq source src's flushes reached, in its latest epoch (0: none yet). */
uint64_t gw_merge_source_last(const struct gw_merge *m, unsigned src);

#endif
