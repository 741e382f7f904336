/*
 * repair.h - keeps the bus sequence whole before events reach the hub.
 *
 * nng PUB/SUB drops whole messages when a subscriber falls behind. The
 * assembler hands over each flush with its first gseq and whether every frame
 * this gateway wants arrived. A flush that starts after a hole (a lost index,
 * or an idle tick announcing a gseq never seen) or is incomplete means events
 * were lost. Then newer flushes are held, the missing range is fetched from
 * the broker with replay (only the rooms with streams here), delivered in
 * order, and the held flushes released. hub->last_gseq is the position: every
 * wanted event up to it has been delivered. If the repair fails (history evicted, broker
 * unreachable, too much held) every stream gets stream.reset with
 * gap_unrecoverable and the gateway continues live. A new epoch (the broker
 * restarted) resets every stream with epoch_changed.
 * Loop thread only.
 */
#ifndef GW_REPAIR_H
#define GW_REPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct gw;
struct gw_repair;

struct gw_repair *gw_repair_new(struct gw *gw, size_t max_held_bytes);
/* Frees held frames; a replay in flight finds it gone. NULL ok. */
void gw_repair_free(struct gw_repair *rp);

/*
 * A flush from the assembler: r holds its wanted events in gseq order and
 * r->hdr.last_gseq its last gseq; first is its first gseq; complete is false
 * when a wanted frame of it is missing.
 */
void gw_repair_flush(struct gw_repair *rp, struct rc_frame_reader *r, uint64_t first, bool complete);

#endif
