/*
 * gateway.c - the gateway's options and their defaults (gateway.h). The
 * flags that set them are main.c's table; the defaults are here so that
 * everything that sets up a gateway loop (main.c, the unit tests' fixture)
 * starts from the same values.
 */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "auth.h"
#include "bus_client.h"
#include "link_client.h"
#include "error.h"
#include "frame.h"
#include "merge.h"
#include "options.h"
#include "proto_limits.h"
#include "repair.h"
#include "sse.h"
#include "stream.h"

void gw_options_defaults(struct gw_options *o)
{
	*o = (struct gw_options){
		.listen = "127.0.0.1:8080",
		.broker_bus = "tcp://127.0.0.1:7410",
		.broker_api = "tcp://127.0.0.1:7411",
		.heartbeat_ms = 15000,
		.max_client_buffer = 1024 * 1024,
		.max_response_buffer = 256 * 1024,
		.max_rooms_per_stream = 64,
		.max_rewind = RC_REWIND_DEFAULT,
		.max_event_bytes = RC_MAX_EVENT_BYTES_DEFAULT,
		.max_body_bytes = 1024 * 1024,
		.max_conns = 0,
		.max_header_bytes = 16384,
		.header_timeout_ms = 10000,
		.idle_timeout_ms = 60000,
		.publish_timeout_ms = 5000,
		.api_retry_ms = 1000,
		.publish_linger_ms = 0,
		.publish_queue_bytes = 16 * 1024 * 1024,
		.static_max_bytes = 4 * 1024 * 1024,
		.bus_recvbuf = 8192,
		.bus_max_rooms = 256,
		.repair_max_bytes = 64 * 1024 * 1024,
		.bus_gap_wait_ms = 250,
		.shutdown_ms = 3000,
		.workers = 1,
		.broker_stats_ms = 5000,
		.auth = "none",
		.jwt_alg = "HS256",
		.jwt_leeway_s = 30,
		.auth_timeout_ms = 2000,
		.auth_cache_ms = 0,
		.auth_cache_entries = 10000,
		.auth_max_head_bytes = 8192,
		.auth_max_body_bytes = 16384,
		.log_level = RC_LOG_INFO,
	};
}

/*
 * Output is queued during a loop turn and written once at its end. Two
 * handles do it: the check handle after the I/O callbacks of the turn, and
 * the prepare handle before the loop blocks, for what the timers (heartbeats,
 * timeouts) and deferred callbacks queued at the turn's start: without it,
 * their output would wait for the next wake-up, a whole heartbeat later on an
 * idle gateway.
 */
static void gw_flush_after_io(uv_check_t *h)
{
	gw_conn_flush_all(h->data);
}

static void gw_flush_before_poll(uv_prepare_t *h)
{
	gw_conn_flush_all(h->data);
}

int gw_loop_init(struct gw *gw, uv_loop_t *loop)
{
	gw->loop = loop;
	gw->m.workers = 1;
	gw_list_init(&gw->conns);
	gw_list_init(&gw->flush_q);
	gw_list_init(&gw->delay_q);
	gw_hub_init(&gw->hub, gw);
	gw->readbuf = malloc(GW_READBUF_SIZE);
	gw->ping = gw_chunk_dup(RC_SSE_PING, sizeof(RC_SSE_PING) - 1);
	if (gw->readbuf == NULL || gw->ping == NULL)
		return RC_ENOMEM;
	gw_timer_init(&gw->timer, gw->loop);
	gw_conn_timers_init(gw);
	gw_stream_timers_init(gw);
	uv_timer_init(gw->loop, &gw->delay_timer);
	uv_check_init(gw->loop, &gw->flusher);
	gw->flusher.data = gw;
	uv_check_start(&gw->flusher, gw_flush_after_io);
	uv_prepare_init(gw->loop, &gw->preflusher);
	gw->preflusher.data = gw;
	uv_prepare_start(&gw->preflusher, gw_flush_before_poll);
	return RC_OK;
}

/* A bus message of source src: the control topic (revocations) to auth.c, the rest to the merge. */
static void gw_bus_msg(void *arg, unsigned src, nng_msg *msg)
{
	struct gw *gw = arg;
	const char *body = nng_msg_body(msg);
	size_t len = nng_msg_len(msg);

	if (len >= RC_BUS_TOPIC_CONTROL_LEN && memcmp(body, RC_BUS_TOPIC_CONTROL, RC_BUS_TOPIC_CONTROL_LEN) == 0) {
		gw_auth_control(gw, body + RC_BUS_TOPIC_CONTROL_LEN, len - RC_BUS_TOPIC_CONTROL_LEN);
		nng_msg_free(msg);
		return;
	}
	gw_merge_msg(gw->merge, src, msg);
}

int gw_loop_bus_start(struct gw *gw)
{
	const struct gw_options *o = &gw->opt;
	struct gw_bus_config bc = {
		.url = o->broker_bus,
		.recvbuf = (int)o->bus_recvbuf,
		.inbox_max = (size_t)o->bus_recvbuf,
		.fn = gw_bus_msg,
		.arg = gw,
	};
	char *urls[GW_BROKERS_MAX];
	int n = o->broker_link != NULL ? 1 : rc_opt_list(o->broker_bus, urls, GW_BROKERS_MAX);

	if (n < 0)
		return n;
	if (o->broker_link == NULL)
		rc_opt_list_free(urls, n);
	gw->repair = gw_repair_new(gw, (size_t)o->repair_max_bytes);
	if (gw->repair == NULL)
		return RC_ENOMEM;
	gw->merge = gw_merge_new(gw, gw->repair, (unsigned)n, (uint64_t)o->bus_gap_wait_ms, (size_t)o->repair_max_bytes);
	if (gw->merge == NULL)
		return RC_ENOMEM;
	if (o->broker_link != NULL) {
		/* the bus comes over the link, one source, everything (no topics: the assembler skips other rooms) */
		struct gw_link_config lc = {
			.url = o->broker_link,
			.timer = &gw->timer,
			.fn = gw_bus_msg,
			.arg = gw,
		};
		return gw_link_start(gw->loop, &lc, &gw->link);
	}
	return gw_bus_start(gw->loop, &bc, &gw->bus);
}

bool gw_loop_bus_connected(const struct gw *gw, unsigned src)
{
	if (gw->link != NULL)
		return src == 0 && gw_link_connected(gw->link);
	return gw_bus_source_connected(gw->bus, src);
}

bool gw_loop_bus_any(const struct gw *gw)
{
	return gw->link != NULL ? gw_link_connected(gw->link) : gw_bus_connected(gw->bus);
}

void gw_loop_bus_stop(struct gw *gw)
{
	gw_bus_stop(gw->bus);
	gw_link_stop(gw->link); /* fails its publishes in flight (RC_ECLOSED); frees itself once closed */
	gw->link = NULL;
	gw_merge_free(gw->merge);
	gw->merge = NULL;
	gw_repair_free(gw->repair);
	gw->repair = NULL;
}

_Static_assert(GW_METRICS_BROKERS == GW_BROKERS_MAX, "a metric per broker address");

void gw_loop_sample(struct gw *gw)
{
	struct gw_metrics *m = &gw->m;

	m->bus_dropped = gw_bus_dropped(gw->bus);
	m->brokers_bus = gw_bus_sources(gw->bus);
	m->brokers_api = gw_api_brokers(gw->api);
	for (unsigned i = 0; i < GW_BROKERS_MAX; i++) {
		m->broker_bus_connected[i] = gw_bus_source_connected(gw->bus, i);
		m->broker_bus_dropped[i] = gw_bus_source_dropped(gw->bus, i);
		m->broker_api_connected[i] = gw_api_broker_connected(gw->api, i);
	}
	m->api_retries = gw_api_retries(gw->api);
	if (gw->link != NULL) {
		/* the link is the loop's one bus source */
		m->brokers_bus = 1;
		m->broker_bus_connected[0] = gw_link_connected(gw->link);
		m->link_connected = gw_link_connected(gw->link);
		m->link_connects = gw_link_connects(gw->link);
	}
}
