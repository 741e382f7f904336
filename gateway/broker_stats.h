/*
 * broker_stats.h - the broker's storage figures on the gateway's /metrics.
 *
 * The broker serves no HTTP; its figures reach Prometheus through the
 * gateways. The first loop of a gateway asks the broker api for its stats
 * (the op `roomcast stats` uses) every --broker-stats-ms and keeps the last
 * answer in a gw_broker_stats that every loop's /metrics reads: the history's
 * size, the store's bytes, segments, oldest gseq, fsyncs and their seconds,
 * errors and recovery time, the store kind, and how old the answer is.
 * Nothing is shown before the broker first answered.
 */
#ifndef GW_BROKER_STATS_H
#define GW_BROKER_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

struct gw_api;

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

/* The last answer, shared by a gateway's loops. Any thread. */
struct gw_broker_stats;

int gw_broker_stats_new(struct gw_broker_stats **out);
void gw_broker_stats_free(struct gw_broker_stats *bs); /* NULL ok */

/* Keeps f as the last answer, received at now_ns (uv_hrtime's clock). */
void gw_broker_stats_put(struct gw_broker_stats *bs, const struct gw_broker_figures *f, uint64_t now_ns);

/*
 * Appends the roomcast_broker_* metrics of the last answer, with its age at
 * now_ns, to out; nothing when there was none yet or bs is NULL.
 */
void gw_broker_stats_render(struct gw_broker_stats *bs, uint64_t now_ns, struct rc_buf *out);

/*
 * Asks the broker over api for its stats: the first time soon after the
 * start, then every interval_ms; after a failure (no answer, not
 * connected) again within a second. Loop thread. Returns 0 or RC_ENOMEM.
 */
struct gw_broker_poll;
int gw_broker_poll_start(uv_loop_t *loop, struct gw_api *api, struct gw_broker_stats *bs, int64_t interval_ms,
			 struct gw_broker_poll **out);

/*
 * Loop thread, after gw_api_stop (which has called back any request in
 * flight): stops asking; p is freed once its timer has closed. NULL ok.
 */
void gw_broker_poll_stop(struct gw_broker_poll *p);

#endif
