/*
 * link.h - the broker side of the link: plain TCP connections from gateway
 * loops that carry their publishes ('Q' frames, answered inline) and every
 * bus message ('B' frames), instead of two nng messages per publish
 * (common/link_frame.h; docs/PROTOCOL.md, "The link").
 *
 * One link thread (epoll) accepts, sends each connection the 'H' frame
 * first, reads 'Q' frames and handles each with ops_handle() without
 * waiting: a publish answered on the bus gets no 'R' frame, anything else
 * gets one with the request's id. The bus hands every message it gives nng
 * to link_bus_send(), in the same order, from the thread that sends it.
 *
 * Nothing here blocks: the sockets are non-blocking, and every connection
 * has a mutex and an output buffer. A frame is written at once when nothing
 * waits before it, the rest goes in the buffer (the link thread writes it
 * when the socket takes more). A bus message for a connection whose buffer
 * holds more than buffer_bytes is dropped whole for it (never part of a
 * frame): the gateway sees the hole in the sequence and repairs by replay,
 * as with nng's drops. Replies are never dropped: a connection whose buffer
 * passes buffer_bytes is not read until it drains.
 */
#ifndef RC_LINK_H
#define RC_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"

struct link;

struct link_config {
	const char *url;	  /* tcp://host:port (port 0: any; link_url() says which) */
	size_t max_request_bytes; /* largest 'Q' payload; a larger frame closes the connection */
	size_t buffer_bytes;	  /* per connection: beyond, bus messages are dropped for it */
	int max_conns;		  /* beyond, a new connection is accepted and closed at once */
};

struct link_stats {
	uint64_t connections;	       /* open now */
	uint64_t bus_messages_dropped; /* bus messages not sent to a connection over buffer_bytes */
	uint64_t requests;	       /* 'Q' frames handled */
};

/* Binds and listens (no thread yet). Returns 0, RC_EINVAL (bad url), RC_EIO or RC_ENOMEM. */
int link_open(const struct link_config *cfg, struct link **out);

/* The address bound: cfg->url with the port picked. */
const char *link_url(const struct link *l);

/*
 * Starts the link thread, which handles requests with br (br->bus set: a
 * new connection asks the bus for a tick, so the gateway learns the epoch
 * and position at once). Returns 0 or RC_EIO. Main thread.
 */
int link_start(struct link *l, struct broker *br);

/*
 * Sends data[0..len) (one bus message, exactly the nng message's bytes) as
 * a 'B' frame to every connection. arg is the struct link (NULL: nothing).
 * Called by the bus for every message, from the thread sending it, in nng's
 * order; never blocks on the network.
 */
void link_bus_send(void *arg, const void *data, size_t len);

/*
 * Stops accepting and reading requests, and waits until the link thread
 * handles none any more (it goes on writing what is queued). Before
 * bus_stop(), so the final flush still reaches the gateways. NULL ok.
 */
void link_quiesce(struct link *l);

/* Stops the thread, closes every connection and frees l. After bus_stop(). NULL ok. */
void link_free(struct link *l);

/* Any thread. */
void link_stats(struct link *l, struct link_stats *st);

#endif
