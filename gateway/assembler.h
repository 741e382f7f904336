/*
 * assembler.h - puts the broker's flushes back together from the bus.
 *
 * The broker sends each flush as one frame per room, then an index with every
 * room's event count (common/frame.h). The gateway subscribes only to the
 * rooms it serves, so it receives a subset of the frames. The assembler keeps
 * the frames of the flush in progress; when the index arrives it checks that
 * every frame this gateway wants is there (the counts of the wanted rooms add
 * up), merges them into one frame in gseq order, and hands it to the repair
 * stage with the flush's first gseq and whether it is complete. A frame lost
 * by nng (or filtered before its room was subscribed) makes the flush
 * incomplete, a lost index makes the next flush start after a hole: either
 * way the repair stage replays the range.
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
