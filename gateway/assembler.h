/*
 * assembler.h - the gateway's side of the flush assembler (common/flush.h):
 * one broker's bus messages go in, each flush comes out to the done
 * callback (the bus merge, merge.h) with its first gseq and whether every
 * frame of a room the hub wants arrived; the counts go to the gateway's bus
 * metrics, corrupt messages to the log. One per broker address: the
 * messages of two brokers never meet in one assembler.
 * Loop thread only.
 */
#ifndef GW_ASSEMBLER_H
#define GW_ASSEMBLER_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stdint.h>

#include "frame.h"

struct gw;
struct gw_assembler;

/* A flush put back together: as common/flush.h's done (r borrowed until it returns). */
typedef void (*gw_assembler_fn)(void *arg, struct rc_frame_reader *r, uint64_t first, bool complete);

/* Returns a new assembler for gw's hub calling done(arg, ...), or NULL (out of memory). */
struct gw_assembler *gw_assembler_new(struct gw *gw, gw_assembler_fn done, void *arg);
/* Frees the frames it holds. NULL ok. */
void gw_assembler_free(struct gw_assembler *a);

/* Takes one bus message of its broker (ownership passes). */
void gw_assembler_msg(struct gw_assembler *a, nng_msg *msg);

#endif
