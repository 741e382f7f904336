/*
 * bus_client.h - the gateway's subscription to the brokers' buses (nng SUB).
 *
 * One SUB socket per broker address (--broker-bus takes a list: the brokers
 * of one stream each publish every event, docs/ARCHITECTURE.md), so that the
 * messages of two brokers never mix in one flush assembler. Each socket has
 * its aio receive loop on nng's threads, which hands each message to the
 * loop through the socket's own bounded inbox, tagged with the index of its
 * address (its source); the loop passes it on (merge.h).
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

/* Most broker addresses in --broker-bus (and --broker-api). */
#define GW_BROKERS_MAX 8

/* Called on the loop thread with each message of source src (its address's index); the callee owns msg. */
typedef void (*gw_bus_msg_fn)(void *arg, unsigned src, nng_msg *msg);

struct gw_bus_config {
	const char *url;  /* one address, or several separated by commas (at most GW_BROKERS_MAX) */
	int recvbuf;      /* nng SUB receive queue (messages), per address */
	size_t inbox_max; /* messages waiting for the loop, per address */
	gw_bus_msg_fn fn;
	void *arg;
};

/* Loop thread: dials every address (reconnecting by itself). Returns 0, RC_EINVAL (a bad list), RC_EIO or RC_ENOMEM. */
int gw_bus_start(uv_loop_t *loop, const struct gw_bus_config *cfg, struct gw_bus **out);
/* The number of addresses (sources). NULL: 0. Any thread. */
unsigned gw_bus_sources(const struct gw_bus *b);
/* True while connected to at least one broker's bus. Any thread. */
bool gw_bus_connected(struct gw_bus *b);
/* True while connected to source src's bus. Any thread; NULL or src out of range: false. */
bool gw_bus_source_connected(struct gw_bus *b, unsigned src);
/* Messages dropped before the loop took them (an inbox full, or no memory), every source. Any thread; NULL: 0. */
uint64_t gw_bus_dropped(struct gw_bus *b);
/* The same for source src alone. */
uint64_t gw_bus_source_dropped(struct gw_bus *b, unsigned src);
/* Subscribes to (on) or unsubscribes from (off) one room's events, on every source. Any thread. */
void gw_bus_room(struct gw_bus *b, const char *room, size_t len, bool on);
/* Subscribes to (on) or unsubscribes from (off) every room's events, on every source. Any thread. */
void gw_bus_all(struct gw_bus *b, bool on);

/* Loop thread: stops receiving and closes the loop's handles. The sockets stay open. NULL ok. */
void gw_bus_stop(struct gw_bus *b);

/*
 * After the loop has ended, any thread: closes the sockets and frees b. NULL ok.
 * nng 1.5.2's nng_close can block for ever (main.c calls this with a deadline).
 */
void gw_bus_free(struct gw_bus *b);

#endif
