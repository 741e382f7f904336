/*
 * publisher.h - the HTTP event publisher of the bench.
 *
 * Keeps `conns` keep-alive HTTP/1.1 connections and POSTs events over rooms
 * round-robin: event i goes to room i % rooms with per-room "seq" i / rooms + 1
 * and "ts" = CLOCK_REALTIME ns when it is queued. A room always uses the same
 * connection (room % conns) and requests on a connection are pipelined in
 * order, so the server sees each room's events in seq order; when that
 * connection is full (depth requests unanswered) or reconnecting, sending
 * waits for it. Paced by a token bucket (rate events/s in total) or, with
 * rate 0, as fast as the pipelines allow. A connection the server closes
 * (e.g. "Connection: close" after N keep-alive requests) is reopened and its
 * unanswered requests are sent again, so none is silently lost.
 *
 * Threads: rb_pub_run runs its own libuv loop on the calling thread.
 */
#ifndef RB_PUBLISHER_H
#define RB_PUBLISHER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct rb_pub_opts {
	struct sockaddr_in target;
	const char *url_template; /* "%s" = room in the path (nchan), else room_id in the body */
	const char *room_prefix;
	const char *type;         /* the event "type" */
	const char *token;        /* bearer token, or NULL */
	uint32_t conns;
	uint32_t rooms;
	uint32_t depth;           /* unanswered requests per connection, at most */
	double rate;              /* events per second in total; 0 = as fast as possible */
	double duration_s;        /* stop sending after this long */
	uint64_t count;           /* stop sending after this many events; 0 = no limit */
	uint32_t event_bytes;     /* body size to pad up to */
	uint32_t connect_timeout_ms;
	uint32_t drain_ms;        /* wait this long for answers after the last send */
	uint32_t max_reconnects;  /* over the whole run */
	bool verbose;
};

/*
 * Runs the publisher and writes one JSON line of results to out. Returns 0
 * when at least one event was accepted (2xx), -ECONNREFUSED (or another
 * negative errno) when the connections could not be set up, -EIO when none
 * was accepted.
 */
int rb_pub_run(const struct rb_pub_opts *opts, FILE *out);

#endif
