#include "metrics.h"

#include <inttypes.h>
#include <string.h>

_Static_assert(sizeof(struct gw_metrics) % sizeof(uint64_t) == 0, "struct gw_metrics holds only uint64_t");

static void metric(struct rc_buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
	rc_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

void gw_metrics_add(struct gw_metrics *dst, const struct gw_metrics *src)
{
	unsigned char *d = (unsigned char *)dst;
	const unsigned char *s = (const unsigned char *)src;

	for (size_t off = 0; off < sizeof(*dst); off += sizeof(uint64_t)) {
		uint64_t a, b;
		memcpy(&a, d + off, sizeof(a));
		memcpy(&b, s + off, sizeof(b));
		a += b;
		memcpy(d + off, &a, sizeof(a));
	}
}

/* One line per broker address: name{broker="i"} v[i], i < n. */
static void metric_by_broker(struct rc_buf *out, const char *name, const char *type, const char *help,
			     const uint64_t *v, uint64_t n)
{
	rc_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (uint64_t i = 0; i < n; i++)
		rc_buf_printf(out, "%s{broker=\"%" PRIu64 "\"} %" PRIu64 "\n", name, i, v[i]);
}

static void metrics_brokers(const struct gw_metrics *m, struct rc_buf *out)
{
	/* each loop counts its addresses: the sum is workers x their number */
	uint64_t loops = m->workers ? m->workers : 1, nbus = m->brokers_bus / loops, napi = m->brokers_api / loops;

	if (nbus > GW_METRICS_BROKERS)
		nbus = GW_METRICS_BROKERS;
	if (napi > GW_METRICS_BROKERS)
		napi = GW_METRICS_BROKERS;
	metric_by_broker(out, "roomcast_gateway_bus_connected", "gauge",
			 "Loops (--workers) connected to each --broker-bus address, by its index in the list.",
			 m->broker_bus_connected, nbus);
	metric_by_broker(out, "roomcast_gateway_bus_dropped_total", "counter",
			 "roomcast_bus_dropped_total by --broker-bus address.", m->broker_bus_dropped, nbus);
	metric_by_broker(out, "roomcast_gateway_api_connected", "gauge",
			 "Loops (--workers) connected to each --broker-api address, by its index in the list.",
			 m->broker_api_connected, napi);
	metric(out, "roomcast_gateway_api_retries_total", "counter",
	       "Broker api requests sent again after their broker failed (several --broker-api).", m->api_retries);
	metric(out, "roomcast_gateway_link_connected", "gauge",
	       "Loops (--workers) whose --broker-link connection is up (the broker's hello received).",
	       m->link_connected);
	metric(out, "roomcast_gateway_link_connects_total", "counter",
	       "--broker-link connections that reached the broker's hello, reconnections included.", m->link_connects);
}

void gw_metrics_render(const struct gw_metrics *m, struct rc_buf *out)
{
	metric(out, "roomcast_gateway_workers", "gauge", "Event loops (--workers) serving this gateway.", m->workers);
	metric(out, "roomcast_connections_open", "gauge", "Open HTTP connections.", m->conns_open);
	metric(out, "roomcast_streams_open", "gauge", "Open SSE streams.", m->streams_open);
	metric(out, "roomcast_firehose_streams_open", "gauge", "Open SSE streams without a room filter.",
	       m->firehose_open);
	metric(out, "roomcast_connections_accepted_total", "counter", "Connections accepted.", m->conns_accepted);
	metric(out, "roomcast_connections_rejected_total", "counter", "Connections refused over --max-conns.",
	       m->conns_rejected);
	metric(out, "roomcast_accept_failures_total", "counter",
	       "Connections the kernel had but the gateway could not accept (out of descriptors).", m->accept_failures);
	metric(out, "roomcast_hosts_refused_total", "counter", "Requests refused for a Host not in --allowed-hosts.",
	       m->hosts_refused);
	metric(out, "roomcast_events_delivered_total", "counter", "Events queued to streams (one per stream).",
	       m->events_delivered);
	metric(out, "roomcast_bytes_delivered_total", "counter", "Bytes written to clients.", m->bytes_delivered);
	metric(out, "roomcast_heartbeats_sent_total", "counter", "': ping' comments sent to idle streams.",
	       m->heartbeats);
	metric(out, "roomcast_slow_client_closes_total", "counter",
	       "Streams closed because their unsent output passed --max-client-buffer.", m->slow_closes);
	metric(out, "roomcast_auth_refused_total", "counter",
	       "Requests answered 401 with --auth jwt (no token, a bad, expired or revoked one) or url (the application's 401).",
	       m->auth_refused);
	metric(out, "roomcast_auth_forbidden_total", "counter",
	       "Requests answered 403 with --auth jwt or url (a room or the firehose not granted).", m->auth_forbidden);
	metric(out, "roomcast_auth_url_requests_total", "counter",
	       "Checks sent to the application's --auth-url (cache misses).", m->auth_url_requests);
	metric(out, "roomcast_auth_url_cache_hits_total", "counter",
	       "Checks answered from the --auth-cache-ms cache.", m->auth_url_cache_hits);
	metric(out, "roomcast_auth_url_unavailable_total", "counter",
	       "Checks that ended without a decision (an answer other than 2xx/401/403, over the limits, a connection error or --auth-timeout-ms): 503 auth_unavailable.",
	       m->auth_url_unavailable);
	metric(out, "roomcast_streams_expired_total", "counter", "Streams ended with stream.expired (their token expired).",
	       m->streams_expired);
	metric(out, "roomcast_streams_revoked_total", "counter",
	       "Streams ended with stream.revoked (roomcast revoke of their sub or jti).", m->streams_revoked);
	metric(out, "roomcast_bus_frames_received_total", "counter",
	       "Bus frames of events received from the broker (a small flush: one, whole; a larger one: one per room).",
	       m->bus.frames);
	metric(out, "roomcast_bus_events_received_total", "counter",
	       "Events received from the broker (every room of a whole flush; of a larger one, the subscribed rooms and global events).",
	       m->bus.events);
	metric(out, "roomcast_bus_bad_frames_total", "counter", "Bus messages rejected as corrupt.", m->bus.bad);
	metric(out, "roomcast_bus_dropped_total", "counter",
	       "Bus messages dropped because the loop was behind (its inbox of --bus-recvbuf messages was full); "
	       "the gap is repaired by replay.",
	       m->bus_dropped);
	metric(out, "roomcast_bus_ticks_received_total", "counter", "Idle ticks received from the broker.",
	       m->bus.ticks);
	metric(out, "roomcast_bus_rooms_subscribed", "gauge", "Rooms subscribed one by one on the bus.",
	       m->bus_rooms_subscribed);
	metric(out, "roomcast_bus_subscribed_all", "gauge",
	       "1 while the gateway takes every room's events (a firehose stream, or over --bus-max-rooms).",
	       m->bus_subscribed_all);
	metric(out, "roomcast_gaps_detected_total", "counter", "Jumps in the bus sequence (dropped frames).",
	       m->gaps_detected);
	metric(out, "roomcast_events_repaired_total", "counter", "Events fetched by replay to fill bus gaps.",
	       m->events_repaired);
	metric(out, "roomcast_replays_total", "counter", "Replay requests sent to the broker.", m->replays);
	metric(out, "roomcast_bus_merge_duplicates_total", "counter",
	       "Flushes dropped because another broker's bus brought their events first (several --broker-bus).",
	       m->bus_merge_duplicates);
	metric(out, "roomcast_bus_merge_filled_total", "counter",
	       "Flushes after a hole in one bus that another bus filled (no replay needed).", m->bus_merge_filled);
	metric(out, "roomcast_bus_merge_gaps_total", "counter",
	       "Holes in one bus that no other bus filled in --bus-gap-wait-ms: left to the repair by replay.",
	       m->bus_merge_gaps);
	metric(out, "roomcast_bus_merge_epoch_ignored_total", "counter",
	       "Flushes ignored because their bus was on another epoch than the one followed.",
	       m->bus_merge_epoch_ignored);
	metrics_brokers(m, out);
	rc_buf_puts(out, "# HELP roomcast_stream_resets_total stream.reset messages sent, by reason.\n"
			 "# TYPE roomcast_stream_resets_total counter\n");
	rc_buf_printf(out, "roomcast_stream_resets_total{reason=\"history_unavailable\"} %" PRIu64 "\n",
		      m->resets_history_unavailable);
	rc_buf_printf(out, "roomcast_stream_resets_total{reason=\"epoch_changed\"} %" PRIu64 "\n",
		      m->resets_epoch_changed);
	rc_buf_printf(out, "roomcast_stream_resets_total{reason=\"gap_unrecoverable\"} %" PRIu64 "\n",
		      m->resets_gap_unrecoverable);
	metric(out, "roomcast_published_events_total", "counter", "Events accepted by the broker via HTTP.",
	       m->publish_events);
	metric(out, "roomcast_publish_acks_asked_total", "counter",
	       "Broker publish requests whose answer on the bus was lost, answered by asking the broker (op acks).",
	       m->publish_acks_asked);
	rc_buf_puts(out, "# HELP roomcast_publish_requests_total HTTP publish requests, by status class.\n"
			 "# TYPE roomcast_publish_requests_total counter\n");
	for (int i = 1; i < 6; i++)
		rc_buf_printf(out, "roomcast_publish_requests_total{status=\"%dxx\"} %" PRIu64 "\n", i,
			      m->publish_by_status[i]);
	rc_buf_puts(out, "# HELP roomcast_http_responses_total HTTP responses, by status.\n"
			 "# TYPE roomcast_http_responses_total counter\n");
	for (int s = 100; s < 600; s++)
		if (m->http_by_status[s])
			rc_buf_printf(out, "roomcast_http_responses_total{status=\"%d\"} %" PRIu64 "\n", s,
				      m->http_by_status[s]);
}
