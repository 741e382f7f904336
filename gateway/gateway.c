/*
 * gateway.c - the gateway's options and their defaults (gateway.h). The
 * flags that set them are main.c's table; the defaults are here so that
 * everything that sets up a gateway loop (main.c, the unit tests' fixture)
 * starts from the same values.
 */
#include "gateway.h"

#include "proto_limits.h"

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
		.publish_linger_ms = 0,
		.publish_queue_bytes = 16 * 1024 * 1024,
		.static_max_bytes = 4 * 1024 * 1024,
		.bus_recvbuf = 8192,
		.bus_max_rooms = 256,
		.repair_max_bytes = 64 * 1024 * 1024,
		.shutdown_ms = 3000,
		.workers = 1,
		.auth = "none",
		.jwt_alg = "HS256",
		.jwt_leeway_s = 30,
		.log_level = RC_LOG_INFO,
	};
}
