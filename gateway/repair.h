/*
 * repair.h - keeps the bus sequence whole before events reach the hub.
 *
 * nng PUB/SUB drops whole frames when a subscriber falls behind. The gateway
 * receives every event, so a jump in gseq (or an idle tick announcing a gseq
 * it never saw) means frames were lost. Then newer frames are held, the
 * missing range is fetched from the broker with replay, delivered in order,
 * and the held frames released. If the repair fails (history evicted, broker
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

/* The bus client's frame callback (arg is the gw_repair). */
void gw_repair_frame(void *arg, struct rc_frame_reader *r);

#endif
