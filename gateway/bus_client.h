/*
 * bus_client.h - the gateway's subscription to the broker's bus (nng SUB).
 *
 * An aio receive loop on nng's threads hands each message to the loop through
 * a bounded inbox; the loop passes it to the assembler (assembler.h).
 * Messages that arrive while the inbox is full are dropped and counted, the
 * same as nng drops them when a subscriber falls behind: the assembler sees a
 * count missing from a flush's index, or a missing index, and the gap is
 * repaired.
 *
 * The socket always subscribes to the index and to global events; rooms are
 * subscribed and unsubscribed by the hub as streams come and go (nng matches
 * topics in the SUB process, before anything reaches the loop).
 */
#ifndef GW_BUS_CLIENT_H
#define GW_BUS_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <nng/nng.h>
#include <stddef.h>
#include <uv.h>

struct gw_bus;

/* Called on the loop thread with each message; the callee owns msg. */
typedef void (*gw_bus_msg_fn)(void *arg, nng_msg *msg);

struct gw_bus_config {
	const char *url;
	int recvbuf;      /* nng SUB receive queue (messages) */
	size_t inbox_max; /* messages waiting for the loop */
	gw_bus_msg_fn fn;
	void *arg;
};

int gw_bus_start(uv_loop_t *loop, const struct gw_bus_config *cfg, struct gw_bus **out);
/* True while connected to the broker's bus. Any thread. */
bool gw_bus_connected(struct gw_bus *b);
/* Messages dropped before the loop took them (the inbox full, or no memory). Any thread; NULL: 0. */
uint64_t gw_bus_dropped(struct gw_bus *b);
/* Subscribes to (on) or unsubscribes from (off) one room's events. Any thread. */
void gw_bus_room(struct gw_bus *b, const char *room, size_t len, bool on);
/* Subscribes to (on) or unsubscribes from (off) every room's events. Any thread. */
void gw_bus_all(struct gw_bus *b, bool on);

/* Loop thread: stops receiving and closes the loop's handle. The socket stays open. NULL ok. */
void gw_bus_stop(struct gw_bus *b);

/*
 * After the loop has ended, any thread: closes the socket and frees b. NULL ok.
 * nng 1.5.2's nng_close can block for ever (main.c calls this with a deadline).
 */
void gw_bus_free(struct gw_bus *b);

#endif
