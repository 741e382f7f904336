/*
 * assembler.h - the gateway's side of the flush assembler (common/flush.h):
 * the bus client's messages go in, each flush comes out to the repair stage
 * (repair.h) with its first gseq and whether every frame of a room the hub
 * wants arrived; the counts go to the gateway's bus metrics, corrupt
 * messages to the log.
 * Loop thread only.
 */
#ifndef GW_ASSEMBLER_H
#define GW_ASSEMBLER_H

#include <nng/nng.h>

struct gw;
struct gw_repair;
struct gw_assembler;

struct gw_assembler *gw_assembler_new(struct gw *gw, struct gw_repair *rp);
/* Frees the frames it holds. NULL ok. */
void gw_assembler_free(struct gw_assembler *a);

/* The bus client's message callback (arg is the assembler); takes msg. */
void gw_assembler_msg(void *arg, nng_msg *msg);

#endif
