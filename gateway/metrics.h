/*
 * metrics.h - the gateway's counters and their Prometheus text rendering.
 * Loop thread only; with --workers, workers.c adds the loops' copies up.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdint.h>

#include "buf.h"
#include "flush.h"

/* Broker addresses counted one by one (bus_client.h's GW_BROKERS_MAX). */
#define GW_METRICS_BROKERS 8

/* Every member is a uint64_t, an array of them or a struct of them (gw_metrics_add relies on it). */
struct gw_metrics {
	uint64_t workers; /* gauge: 1 per loop, so the sum over workers is their number */
	uint64_t conns_open, streams_open, firehose_open;
	uint64_t conns_accepted, conns_rejected, accept_failures, hosts_refused;
	uint64_t events_delivered, bytes_delivered, heartbeats;
	uint64_t slow_closes;
	uint64_t auth_refused, auth_forbidden, streams_expired, streams_revoked; /* --auth jwt|url */
	uint64_t auth_url_requests, auth_url_cache_hits, auth_url_unavailable;   /* --auth url */
	struct rc_flush_counts bus; /* counted by the assembler */
	uint64_t bus_dropped; /* the bus client's count (gw_bus_dropped), copied in when the counters are read */
	uint64_t bus_rooms_subscribed, bus_subscribed_all; /* gauges */
	uint64_t gaps_detected, events_repaired, replays;
	/* several --broker-bus addresses (merge.c) */
	uint64_t bus_merge_duplicates;    /* flushes taken already from another bus */
	uint64_t bus_merge_filled;        /* held flushes released because another bus filled the hole */
	uint64_t bus_merge_gaps;          /* holes no other bus filled: left to the repair */
	uint64_t bus_merge_epoch_ignored; /* flushes of an epoch other than the one followed */
	/* per loop, copied in when the counters are read (gw_loop_sample); summed over workers */
	uint64_t brokers_bus, brokers_api; /* addresses (the sum: workers x addresses) */
	uint64_t broker_bus_connected[GW_METRICS_BROKERS], broker_bus_dropped[GW_METRICS_BROKERS];
	uint64_t broker_api_connected[GW_METRICS_BROKERS];
	uint64_t api_retries; /* api requests sent again to another broker */
	uint64_t link_connected, link_connects; /* --broker-link: loops whose link is up; hellos received */
	uint64_t resets_history_unavailable, resets_epoch_changed, resets_gap_unrecoverable;
	uint64_t publish_by_status[6]; /* 1xx..5xx by status/100, index 0 unused */
	uint64_t publish_events;
	uint64_t publish_acks_asked; /* broker requests answered by the op "acks": their bus answer was lost */
	uint64_t http_by_status[600];
};

/* Counts one HTTP response with this status. */
static inline void gw_metrics_http(struct gw_metrics *m, int status)
{
	if (status >= 100 && status < 600)
		m->http_by_status[status]++;
}

/* dst += src, member by member (gauges too: a worker's share adds up). */
void gw_metrics_add(struct gw_metrics *dst, const struct gw_metrics *src);

/* Appends the Prometheus text exposition of m to out. */
void gw_metrics_render(const struct gw_metrics *m, struct rc_buf *out);

#endif
