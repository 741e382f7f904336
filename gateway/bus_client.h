/*
 * bus_client.h - the gateway's subscription to the broker's bus (nng SUB).
 *
 * An aio receive loop on nng's threads hands each frame to the loop through a
 * bounded inbox; the loop checks the frame and passes it to the sequencer.
 * Frames that arrive while the inbox is full are dropped and counted, the
 * same as nng drops them when a subscriber falls behind: the sequencer sees
 * the hole in the gseq sequence and repairs it.
 */
#ifndef GW_BUS_CLIENT_H
#define GW_BUS_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "frame.h"

struct gw_bus;

/* Called on the loop thread with each checked frame. */
typedef void (*gw_bus_frame_fn)(void *arg, struct rc_frame_reader *r);

struct gw_bus_config {
	const char *url;
	int recvbuf;      /* nng SUB receive queue (messages) */
	size_t inbox_max; /* frames waiting for the loop */
	gw_bus_frame_fn fn;
	void *arg;
	uint64_t *bad_frames; /* counter, loop thread */
};

int gw_bus_start(uv_loop_t *loop, const struct gw_bus_config *cfg, struct gw_bus **out);
/* True while connected to the broker's bus. Any thread. */
bool gw_bus_connected(struct gw_bus *b);
/* Frames dropped because the loop was behind. Any thread. */
uint64_t gw_bus_dropped(struct gw_bus *b);
/* Loop thread: stops receiving and closes the loop's handle. The socket stays open. NULL ok. */
void gw_bus_stop(struct gw_bus *b);

/*
 * After the loop has ended, any thread: closes the socket and frees b. NULL ok.
 * nng 1.5.2's nng_close can block for ever (main.c calls this with a deadline).
 */
void gw_bus_free(struct gw_bus *b);

#endif
