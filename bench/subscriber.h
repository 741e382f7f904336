/*
 * subscriber.h - one process's share of the SSE subscribers.
 *
 * Opens opts->conns streams, paced by a connect rate and a cap on connects in
 * flight, keeps them for the duration (or until each has received --expect
 * events), then closes everything and returns the measurements. Stream i of
 * the whole run (first_index + local index) asks for room i % rooms and binds
 * to source address 127.0.0.(1 + i % source_ips).
 *
 * Threads: rb_sub_run runs its own libuv loop on the calling thread and
 * returns when the run is over; one call per process at a time.
 */
#ifndef RB_SUBSCRIBER_H
#define RB_SUBSCRIBER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "sub_stats.h"

struct rb_sub_opts {
	struct sockaddr_in target;
	const char *url_template; /* checked by rb_template_check */
	const char *room_prefix;  /* checked by rb_room_prefix_check */
	uint32_t conns;           /* streams in this process */
	uint32_t first_index;     /* run-wide index of this process's first stream */
	uint32_t rooms;
	uint32_t source_ips;
	double connect_rate;      /* connects started per second; 0 = unpaced */
	uint32_t connect_concurrency; /* connects without a response head, at most */
	uint32_t connect_timeout_ms;
	double duration_s;
	uint64_t expect;          /* events per stream; 0 = run for the duration */
	uint32_t line_bytes;      /* per-stream buffer for split SSE lines */
	unsigned proc;            /* process number, for log lines */
	bool verbose;             /* progress lines on stderr every second */
};

/*
 * Called once when every stream has been set up or has failed (or, if that
 * never happens, when the run ends). Runs on the loop thread; must not block.
 */
typedef void (*rb_sub_ready_fn)(void *arg);

/*
 * Runs the subscribers and adds what they measured into stats (initialized by
 * the caller). Returns 0, or a negative errno when the run could not be set
 * up (memory, event loop, a request that does not fit).
 */
int rb_sub_run(const struct rb_sub_opts *opts, struct rb_sub_stats *stats, rb_sub_ready_fn ready,
	       void *ready_arg);

#endif
