/*
 * gateway.h - the gateway's context: options, counters and the loop's state.
 *
 * Everything here belongs to the loop thread. The only ways in from other
 * threads are the inboxes of the bus client and the publisher (uv_async_send).
 * With --workers N there are N of these, one per loop thread, sharing only
 * the options' strings and the metrics copies of workers.c.
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "conn.h"
#include "hub.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "timer.h"

struct gw_api;
struct gw_link;
struct gw_publisher;
struct gw_bus;
struct gw_repair;
struct gw_merge;
struct gw_sender;
struct gw_workers;
struct gw_auth;
struct gw_broker_stats;
struct gw_broker_poll;
struct gw_authurl;
struct gw_authurl_config;
struct rc_jwt;

struct gw_options {
	const char *listen, *broker_bus, *broker_api;
	const char *broker_link; /* --broker-link: the bus and the publishes over one TCP link (NULL: nng) */
	const char *publish_token, *cors_origin, *static_dir, *allowed_hosts;
	int64_t heartbeat_ms, max_client_buffer, max_response_buffer, max_rooms_per_stream, max_event_bytes, max_body_bytes;
	int64_t max_conns, max_header_bytes, header_timeout_ms, idle_timeout_ms, publish_timeout_ms, publish_linger_ms;
	int64_t api_retry_ms; /* several --broker-api: a first attempt's cap while another broker is up (0: half) */
	int64_t publish_queue_bytes, max_rewind;
	int64_t write_delay_ms, static_max_bytes;
	int64_t bus_recvbuf, bus_max_rooms, repair_max_bytes, shutdown_ms, workers, bus_gap_wait_ms;
	int64_t broker_stats_ms; /* the first loop asks the broker for its stats this often (0: never) */
	bool no_firehose, no_io_uring;
	bool publish_ack_on_api; /* brokers answer publishes with an api reply, not on the bus */
	/* --auth jwt: the verifier all workers share (auth.h), NULL with --auth none */
	const char *auth, *jwt_alg, *jwt_secret_file, *jwt_keys_file, *jwt_audience, *jwt_issuer, *auth_cookie;
	int64_t jwt_leeway_s;
	bool auth_query_param;
	struct rc_jwt *jwt;
	/* --auth url: the application's URL, parsed and resolved once (auth_url.h), NULL otherwise */
	const char *auth_url;
	int64_t auth_timeout_ms, auth_cache_ms, auth_cache_entries, auth_max_head_bytes, auth_max_body_bytes;
	bool auth_publish;
	struct gw_authurl_config *authurl;
	enum rc_log_level log_level;
	bool log_time;
};

/* o = the defaults of every option (--max-conns 0: fitted to the descriptor limit at start). */
void gw_options_defaults(struct gw_options *o);

/*
 * Sets up what every gateway loop has on loop (gw->opt set): the lists, the
 * hub, the shared read buffer and ping chunk, the timer with the
 * connections' and streams' queues, the write delay's timer, and the
 * handles that write queued output around each poll. The caller sets
 * on_request/on_expect and adds the listener, the bus and the api. Returns
 * 0 or RC_ENOMEM (what was set up is left to the caller's exit).
 */
int gw_loop_init(struct gw *gw, uv_loop_t *loop);

/*
 * Sets up a loop's bus side (after gw_loop_init and the api): the repair
 * stage, the merge of the --broker-bus addresses with an assembler each,
 * and the bus client dialing them all; control messages (revocations) go
 * to auth.c. Returns 0 or an RC_ error (what was set up is left to
 * gw_loop_bus_stop).
 */
int gw_loop_bus_start(struct gw *gw);

/* Loop thread: stops the bus client and frees the merge and the repair stage. The sockets close in gw_bus_free. */
void gw_loop_bus_stop(struct gw *gw);

/*
 * Whether the loop's bus source src is connected: with --broker-link the
 * link (once the broker's hello came; one source), else that --broker-bus
 * address's SUB socket. Loop thread.
 */
bool gw_loop_bus_connected(const struct gw *gw, unsigned src);
/* The same for any source: the bus counts as up. */
bool gw_loop_bus_any(const struct gw *gw);

/* Loop thread: copies what nng's threads count (bus drops, connections, api retries) into gw->m. */
void gw_loop_sample(struct gw *gw);

struct gw {
	uv_loop_t *loop;
	struct gw_options opt;
	struct gw_metrics m;
	struct gw_hub hub;
	struct gw_bus *bus;
	struct gw_merge *merge;         /* the brokers' buses into one sequence, flushes put back together */
	struct gw_repair *repair;       /* keeps the bus sequence whole */
	struct gw_api *api;
	struct gw_link *link; /* --broker-link: the bus and the publishes; NULL without */
	struct gw_publisher *publisher;
	struct gw_sender *sender; /* batched writes through io_uring; NULL: write(2) */
	struct gw_auth *auth;     /* --auth jwt|url: the expiry heap and revocations (auth.h); NULL: none */
	struct gw_broker_stats *broker_stats; /* each broker's last stats answer, shared by the loops; NULL: none */
	struct gw_broker_poll *broker_poll;   /* the first loop's questions for it (--broker-stats-ms) */
	struct gw_authurl *authurl; /* --auth url: the checks in flight and the cache (auth_url.h); NULL: none */

	uv_tcp_t listener;
	gw_request_fn on_request; /* what connections hand their requests to (the router) */
	gw_expect_fn on_expect;   /* what they ask before an Expect: 100-continue body (the router) */
	struct gw_list conns;    /* every open connection */
	struct gw_timer timer;   /* the one timer: the queues below */
	struct gw_tq header_q;   /* connections reading a request (conn.c) */
	struct gw_tq idle_q;     /* keep-alive connections between requests (conn.c) */
	struct gw_tq hb_q;       /* streams, least recently written first (stream.c) */
	struct gw_list flush_q;  /* connections with output to write this loop turn */
	struct gw_list delay_q;  /* streams whose live events wait for delay_timer (--write-delay-ms) */
	uv_timer_t delay_timer;  /* writes delay_q */
	uv_check_t flusher;      /* writes what the loop turn's I/O callbacks queued */
	uv_prepare_t preflusher; /* writes what its timers queued, before the loop blocks */
	uv_signal_t sigterm, sigint;
	struct gw_workers *workers; /* NULL with one loop */
	unsigned worker;            /* this loop's index in workers */
	uv_timer_t snapshot;        /* copies m to workers every GW_WORKERS_SNAPSHOT_MS */
	uv_timer_t stop_timer;
	bool stopping;
	uint64_t accept_logged; /* loop time of the last 'accept failed' line */
	char *readbuf;           /* shared by every read: reads never overlap */
	struct gw_chunk *ping;   /* ": ping\n\n", shared by every stream */
};

#endif
