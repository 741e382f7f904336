/*
 * broker_stats.h - the brokers' storage figures on the gateway's /metrics.
 *
 * The broker serves no HTTP; its figures reach Prometheus through the
 * gateways. The first loop of a gateway asks each --broker-api address on
 * its own (a REQ socket per address, not the shared api socket, which
 * would take whichever broker nng picks) for its stats (the op `roomcast
 * stats` uses) every --broker-stats-ms and keeps each broker's last answer
 * in a gw_broker_stats that every loop's /metrics reads: the history's
 * size, the store's bytes, segments, oldest gseq, fsyncs and their seconds,
 * errors and recovery time, the store kind, and how old the answer is,
 * every line labelled broker="<index of the address in the list>".
 * Nothing is shown of a broker before it first answered.
 */
#ifndef GW_BROKER_STATS_H
#define GW_BROKER_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

/* Brokers a gw_broker_stats keeps answers of (GW_BROKERS_MAX: the --broker-api list's longest). */
#define GW_BROKER_STATS_MAX 8

/* What /metrics shows of one stats answer. */
struct gw_broker_figures {
	char epoch[17]; /* hex, as in the ids */
	uint64_t last_gseq, history_events, history_bytes;
	bool file; /* a "store" object: --store file; else the history is in memory only */
	char fsync[16];
	uint64_t store_bytes, segments, oldest_gseq;
	uint64_t fsyncs, fsync_us_total, fsync_us_max, fsync_us_last, write_errors, fsync_errors;
	double recovery_ms;
	bool nats; /* a "nats" object: --store nats (a JetStream stream holds the history) */
	bool nats_connected;
	uint64_t nats_replicas, nats_disconnects, nats_reconnects, nats_fence_retries, nats_failed, nats_unknown;
	uint64_t nats_follow_seq, nats_resends;
	bool acks; /* an "ack_memory" object: the publishes answered on the bus it remembers (ackmem) */
	uint64_t ack_entries, ack_bytes, ack_limit, ack_forgotten, ack_hits, ack_misses;
};

/*
 * Reads a stats answer (reply[0..len), JSON). RC_EPROTO when it is not a
 * successful answer with every figure (f is then unspecified).
 */
int gw_broker_figures_parse(const char *reply, size_t len, struct gw_broker_figures *f);

/* Each broker's last answer, shared by a gateway's loops. Any thread. */
struct gw_broker_stats;

int gw_broker_stats_new(struct gw_broker_stats **out);
void gw_broker_stats_free(struct gw_broker_stats *bs); /* NULL ok */

/*
 * Keeps f as broker's last answer (broker: its index in the --broker-api
 * list, below GW_BROKER_STATS_MAX; else ignored), received at now_ns
 * (uv_hrtime's clock).
 */
void gw_broker_stats_put(struct gw_broker_stats *bs, unsigned broker, const struct gw_broker_figures *f,
			 uint64_t now_ns);

/*
 * Appends the roomcast_broker_* metrics of every broker's last answer, with
 * its age at now_ns, to out: each metric described once, then a sample per
 * broker that has it, labelled broker="<index>" (first); nothing of a
 * broker that never answered, nothing at all when bs is NULL.
 */
void gw_broker_stats_render(struct gw_broker_stats *bs, uint64_t now_ns, struct rc_buf *out);

/*
 * Asks each broker of urls (the --broker-api value: one address or a
 * comma-separated list) for its stats on a REQ socket of its own, with nng
 * aio (nothing blocks the loop): the first time soon after the start, then
 * every interval_ms; after a failure (no answer in 2 s, not connected)
 * again within a second. Each broker's answer is kept under its index in
 * the list. Loop thread. Returns 0, RC_EINVAL (a bad list or address),
 * RC_EIO or RC_ENOMEM.
 */
struct gw_broker_poll;
int gw_broker_poll_start(uv_loop_t *loop, const char *urls, struct gw_broker_stats *bs, int64_t interval_ms,
			 struct gw_broker_poll **out);

/* Loop thread: stops asking (questions in flight are dropped) and closes the loop's handles. NULL ok. */
void gw_broker_poll_stop(struct gw_broker_poll *p);

/*
 * After the loop has ended (gw_broker_poll_stop first), any thread: closes
 * the sockets and frees p. NULL ok. nng 1.5.2's nng_close can block for
 * ever (main.c calls this with a deadline, as gw_api_free).
 */
void gw_broker_poll_free(struct gw_broker_poll *p);

#endif
