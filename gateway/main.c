/*
 * roomcast-gateway: streams the broker's events to HTTP clients as SSE.
 *
 * One libuv loop does all the HTTP work; nng's threads receive bus frames and
 * api replies and hand them to the loop through inboxes. --workers N runs N
 * such loops, each a whole gateway on its own thread (workers.h). See
 * docs/ARCHITECTURE.md.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <pthread.h>
#include <unistd.h>

#include "api_client.h"
#include "auth.h"
#include "auth_url.h"
#include "broker_stats.h"
#include "bus_client.h"
#include "conn.h"
#include "error.h"
#include "event.h"
#include "frame.h"
#include "gateway.h"
#include "jwt.h"
#include "log.h"
#include "options.h"
#include "publish.h"
#include "repair.h"
#include "router.h"
#include "sender.h"
#include "sse.h"
#include "stream.h"
#include "timed_call.h"
#include "workers.h"

#define GW_SEND_BATCH 256 /* sends per io_uring_enter */

static void gw_accept_cb(uv_stream_t *server, int status)
{
	struct gw *gw = server->data;

	if (status < 0) {
		/* out of descriptors (libuv closed the connection): count it, log it at most once a second */
		uint64_t now = uv_now(gw->loop);
		gw->m.accept_failures++;
		if (now - gw->accept_logged >= 1000 || gw->accept_logged == 0) {
			gw->accept_logged = now;
			rc_log_warn("accept failed", "err=\"%s\" failures=%" PRIu64 " max_conns=%" PRId64, uv_strerror(status),
				    gw->m.accept_failures, gw->opt.max_conns);
		}
		return;
	}
	gw_conn_accept(gw);
}

static void gw_stop_timeout_cb(uv_timer_t *t)
{
	/* whatever is still open after the grace period does not hold the exit */
	uv_stop(t->loop);
}

/* Starts closing the gateway (SIGTERM): stops accepting, closes streams. */
static void gw_stop(struct gw *gw)
{
	struct gw_list *pos, *tmp;

	if (gw->stopping)
		return;
	gw->stopping = true;
	uv_close((uv_handle_t *)&gw->listener, NULL);
	gw_list_each_safe(pos, tmp, &gw->conns)
		gw_conn_close(gw_container_of(pos, struct gw_conn, node));
	/*
	 * The publisher before the bus and the api: the queued POSTs are
	 * answered at once instead of each being sent to a link or an api that
	 * refuses it; the batch in flight outlives the publisher and is
	 * answered when the link (gw_loop_bus_stop) or the api calls back.
	 */
	gw_publisher_fini(gw);
	gw_loop_bus_stop(gw);
	gw_api_stop(gw->api);
	gw_broker_poll_stop(gw->broker_poll);
	gw_authurl_loop_stop(gw); /* after the connections: the checks' requests have no client left */
	gw_auth_loop_stop(gw);
	gw_timer_close(&gw->timer);
	uv_close((uv_handle_t *)&gw->delay_timer, NULL);
	uv_close((uv_handle_t *)&gw->flusher, NULL);
	uv_close((uv_handle_t *)&gw->preflusher, NULL);
	uv_close((uv_handle_t *)&gw->sigterm, NULL);
	uv_close((uv_handle_t *)&gw->sigint, NULL);
	uv_close((uv_handle_t *)&gw->snapshot, NULL);
	uv_timer_start(&gw->stop_timer, gw_stop_timeout_cb, (uint64_t)gw->opt.shutdown_ms, 0);
	uv_unref((uv_handle_t *)&gw->stop_timer);
}

/* Closes the worker's nng sockets (through rc_timed_call: see timed_call.h). */
static void gw_close_nng(void *arg)
{
	struct gw *gw = arg;

	gw_bus_free(gw->bus);
	gw_api_free(gw->api);
	gw_broker_poll_free(gw->broker_poll);
}

static void gw_signal_cb(uv_signal_t *h, int signum)
{
	struct gw *gw = h->data;

	rc_log_info("stopping", "signal=%d worker=%u streams=%" PRIu64, signum, gw->worker, gw->m.streams_open);
	gw_stop(gw);
}

static int parse_listen(const char *s, struct sockaddr_storage *ss)
{
	char host[128];
	const char *colon = strrchr(s, ':');
	long port;
	char *end;
	size_t hl;

	if (colon == NULL)
		return RC_EINVAL;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535 || colon == s)
		return RC_EINVAL;
	hl = (size_t)(colon - s);
	if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return RC_EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
		return RC_OK;
	if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
		return RC_OK;
	return RC_EINVAL;
}

/* Descriptors kept for what is not a client: listeners, nng, io_uring, the loop's own, files, 503 answers. */
#define GW_FD_RESERVE 128

/*
 * Many idle streams need many descriptors: takes what the hard limit allows.
 * --max-conns 0 (the default) becomes that limit less GW_FD_RESERVE, so that
 * a client past it gets the 503 of --max-conns, not a reset from an accept
 * that found no descriptor; a larger --max-conns is kept, with a warning.
 */
static void fit_fd_limit(struct gw_options *o)
{
	struct rlimit rl;
	int64_t fit = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				getrlimit(RLIMIT_NOFILE, &rl);
		}
		fit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 10000000 ? 10000000 : (int64_t)rl.rlim_cur;
		fit = fit > GW_FD_RESERVE + 1 ? fit - GW_FD_RESERVE : 1;
	}
	if (o->max_conns == 0)
		o->max_conns = fit > 0 ? fit : 100000;
	else if (fit > 0 && o->max_conns > fit)
		rc_log_warn("--max-conns is above what the descriptor limit allows; clients past it get resets, not 503",
			    "max_conns=%" PRId64 " fits=%" PRId64, o->max_conns, fit);
}

/* A loop of the gateway and what its thread needs around it. */
struct gw_worker {
	struct gw gw;
	uv_loop_t loop;
	bool closed;              /* its nng sockets closed in time (read after the join) */
	int listen_fd;
	pthread_t thread;
	enum { WORKER_STARTING, WORKER_RUNNING, WORKER_FAILED } state;
};

/* main waits on it for each worker to be up (or not) before the next one */
static pthread_mutex_t start_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;

static void worker_started(struct gw_worker *w, bool ok)
{
	pthread_mutex_lock(&start_mtx);
	w->state = ok ? WORKER_RUNNING : WORKER_FAILED;
	pthread_cond_broadcast(&start_cv);
	pthread_mutex_unlock(&start_mtx);
}

static void gw_snapshot_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;

	gw_loop_sample(gw);
	gw_workers_publish(gw->workers, gw->worker, &gw->m);
}

/* Sets up the loop and everything on it; false: the worker cannot run. */
static bool gw_setup(struct gw_worker *w)
{
	struct gw *gw = &w->gw;
	const struct gw_options *o = &gw->opt;
	int rv;

	if (uv_loop_init(&w->loop) != 0)
		return false;
	if (gw_loop_init(gw, &w->loop) != RC_OK)
		return false;
	gw->on_request = gw_route;
	gw->on_expect = gw_route_expect;
	uv_timer_init(gw->loop, &gw->stop_timer);
	uv_timer_init(gw->loop, &gw->snapshot);
	gw->snapshot.data = gw;

	/* on this thread: the ring takes submissions from its creator only */
	if (!o->no_io_uring && gw_sender_new(GW_SEND_BATCH, &gw->sender) != RC_OK && gw->worker == 0)
		rc_log_info("io_uring is not available; writing with write(2)", NULL);

	uv_tcp_init(gw->loop, &gw->listener);
	gw->listener.data = gw;
	if ((rv = uv_tcp_open(&gw->listener, w->listen_fd)) != 0 ||
	    (rv = uv_listen((uv_stream_t *)&gw->listener, 4096, gw_accept_cb)) != 0) {
		rc_log_error("cannot listen", "addr=%s worker=%u err=\"%s\"", o->listen, gw->worker, uv_strerror(rv));
		return false;
	}
	if (gw_api_start(gw->loop, o->broker_api, &gw->api) != RC_OK)
		return false;
	gw_api_set_retry_ms(gw->api, (int)o->api_retry_ms);
	if (gw_publisher_init(gw) != RC_OK)
		return false;
	if (gw_auth_loop_start(gw) != RC_OK || gw_authurl_loop_start(gw) != RC_OK || gw_loop_bus_start(gw) != RC_OK)
		return false;
	/* one loop asks each broker for its figures; every loop's /metrics shows them */
	if (gw->worker == 0 && gw->broker_stats != NULL &&
	    gw_broker_poll_start(gw->loop, o->broker_api, gw->broker_stats, o->broker_stats_ms, &gw->broker_poll) !=
		    RC_OK)
		return false;
	/* libuv hands a signal to the handles of every loop */
	uv_signal_init(gw->loop, &gw->sigterm);
	uv_signal_init(gw->loop, &gw->sigint);
	gw->sigterm.data = gw->sigint.data = gw;
	uv_signal_start(&gw->sigterm, gw_signal_cb, SIGTERM);
	uv_signal_start(&gw->sigint, gw_signal_cb, SIGINT);
	if (gw->workers != NULL)
		uv_timer_start(&gw->snapshot, gw_snapshot_cb, GW_WORKERS_SNAPSHOT_MS, GW_WORKERS_SNAPSHOT_MS);
	return true;
}

/* The worker's thread: set up, run until stopped, close what the loop held. */
static void *gw_worker_main(void *arg)
{
	struct gw_worker *w = arg;
	struct gw *gw = &w->gw;
	char bound[GW_LISTEN_NAME_MAX];
	int rv;

	if (!gw_setup(w)) {
		/* the process exits: what was set up is left to it */
		worker_started(w, false);
		return NULL;
	}
	/* the address bound, not the one configured: with port 0, the port picked */
	gw_listen_name(w->listen_fd, bound, sizeof(bound));
	rc_log_info("gateway ready",
		    "listen=%s worker=%u broker_bus=%s broker_api=%s broker_link=%s heartbeat_ms=%" PRId64
		    " max_conns=%" PRId64 " io_uring=%s",
		    bound, gw->worker, gw->opt.broker_link ? "-" : gw->opt.broker_bus, gw->opt.broker_api,
		    gw->opt.broker_link ? gw->opt.broker_link : "-", gw->opt.heartbeat_ms, gw->opt.max_conns,
		    gw->sender ? "true" : "false");
	worker_started(w, true);
	uv_run(gw->loop, UV_RUN_DEFAULT);

	uv_close((uv_handle_t *)&gw->stop_timer, NULL);
	uv_run(gw->loop, UV_RUN_NOWAIT);
	w->closed = rc_timed_call(gw_close_nng, gw, 1000);
	if (!w->closed) {
		rc_log_warn("an nng socket did not close in time (nng 1.5.2); exiting anyway", "worker=%u", gw->worker);
		return NULL; /* the close still running uses gw */
	}
	gw_hub_fini(&gw->hub);
	gw_auth_loop_fini(gw);
	gw_authurl_loop_fini(gw);
	gw_sender_free(gw->sender);
	gw_chunk_unref(gw->ping);
	free(gw->readbuf);
	rv = uv_loop_close(gw->loop);
	rc_log_info("gateway stopped", "worker=%u clean=%s", gw->worker, rv == 0 ? "true" : "false");
	return NULL;
}

/*
 * Starts the workers one after the other, each once the previous one is up,
 * and waits for them all to stop. A worker that cannot start stops the others
 * (SIGTERM: every running loop has its handler by then).
 */
static int gw_run_workers(const struct gw_options *o, const struct sockaddr *addr)
{
	/* reachable for the whole process: a close that hangs may still use one */
	static struct gw_worker *workers;
	static struct gw_workers *shared;
	static struct gw_broker_stats *broker_stats;
	unsigned n = (unsigned)o->workers, started = 0, running = 0;
	int fds[GW_WORKERS_MAX], err = 0;
	bool failed = false;

	if (gw_listen_sockets(addr, n, fds, &err) != RC_OK) {
		rc_log_error("cannot listen", "addr=%s err=\"%s\"", o->listen, strerror(err));
		return 1;
	}
	workers = calloc(n, sizeof(*workers));
	if (workers == NULL || (n > 1 && gw_workers_new(n, &shared) != RC_OK) ||
	    (o->broker_stats_ms > 0 && gw_broker_stats_new(&broker_stats) != RC_OK)) {
		rc_log_error("out of memory", NULL);
		return 1;
	}
	for (unsigned i = 0; i < n && !failed; i++) {
		struct gw_worker *w = &workers[i];
		w->gw.opt = *o;
		/* the connection limit is the process's: each loop takes its share */
		w->gw.opt.max_conns = (o->max_conns + (int64_t)n - 1) / (int64_t)n;
		w->gw.workers = shared;
		w->gw.broker_stats = broker_stats;
		w->gw.worker = i;
		w->listen_fd = fds[i];
		w->state = WORKER_STARTING;
		if (pthread_create(&w->thread, NULL, gw_worker_main, w) != 0) {
			rc_log_error("cannot start a worker thread", "worker=%u", i);
			failed = true;
			break;
		}
		started++;
		pthread_mutex_lock(&start_mtx);
		while (w->state == WORKER_STARTING)
			pthread_cond_wait(&start_cv, &start_mtx);
		failed = w->state == WORKER_FAILED;
		running += !failed;
		pthread_mutex_unlock(&start_mtx);
	}
	if (failed && running > 0)
		kill(getpid(), SIGTERM);
	for (unsigned i = 0; i < started; i++)
		pthread_join(workers[i].thread, NULL);
	if (failed)
		return 1;
	for (unsigned i = 0; i < n; i++)
		if (!workers[i].closed)
			return 0; /* a close hangs in nng: leave everything to the exit */
	gw_workers_free(shared);
	gw_broker_stats_free(broker_stats);
	free(workers);
	return 0;
}

int main(int argc, char **argv)
{
	static struct gw_options opt;
	struct gw_options *o = &opt;
	gw_options_defaults(o);
	const struct rc_opt table[] = {
		{ "listen", RC_OPT_STR, &o->listen, 0, 0, "HTTP address, host:port" },
		{ "broker-bus", RC_OPT_STR, &o->broker_bus, 0, 0,
		  "the broker's bus (nng PUB) address; several brokers of one stream: their addresses, comma-separated "
		  "(at most 8): each event is taken once from whichever bus brings it first" },
		{ "broker-api", RC_OPT_STR, &o->broker_api, 0, 0,
		  "the broker's api (nng REP) address; several brokers: comma-separated (at most 8): requests spread "
		  "over them, and one whose broker fails is sent again to another within --publish-timeout-ms (a "
		  "POST's events get a gateway idempotency key when they have none)" },
		{ "broker-link", RC_OPT_STR, &o->broker_link, 0, 0,
		  "the broker's --link address (tcp://host:port): each loop takes the bus and sends its publishes over "
		  "one TCP connection instead of nng (--broker-bus is then not dialed; one --broker-api address, for "
		  "the other requests). Default: off" },
		{ "heartbeat-ms", RC_OPT_INT, &o->heartbeat_ms, 0, 86400000,
		  "': ping' after this long without a byte on a stream (0 = off)" },
		{ "max-client-buffer", RC_OPT_SIZE, &o->max_client_buffer, 4096, INT32_MAX,
		  "unsent bytes a stream may queue before it is closed" },
		{ "max-response-buffer", RC_OPT_SIZE, &o->max_response_buffer, 4096, INT32_MAX,
		  "unsent answers on a connection past which its next pipelined request waits (reading pauses); unread "
		  "for --idle-timeout-ms: closed" },
		{ "max-rooms-per-stream", RC_OPT_INT, &o->max_rooms_per_stream, 1, RC_REPLAY_MAX_ROOMS,
		  "room_id values per stream" },
		{ "max-rewind", RC_OPT_INT, &o->max_rewind, 0, RC_REWIND_MAX,
		  "events a stream's rewind=N may ask for (and the most a rewind=<duration> gives)" },
		{ "no-firehose", RC_OPT_BOOL, &o->no_firehose, 0, 0, "refuse streams without room_id (403)" },
		{ "no-io-uring", RC_OPT_BOOL, &o->no_io_uring, 0, 0,
		  "write with write(2) per connection instead of batches through io_uring" },
		{ "max-event-bytes", RC_OPT_SIZE, &o->max_event_bytes, RC_MAX_EVENT_BYTES_MIN, RC_MAX_EVENT_BYTES_MAX,
		  "largest serialized event accepted by POST" },
		{ "max-body-bytes", RC_OPT_SIZE, &o->max_body_bytes, 64, 64 * 1024 * 1024,
		  "largest request body (413)" },
		{ "max-conns", RC_OPT_INT, &o->max_conns, 0, 10000000,
		  "open connections; beyond: 503 and close (0: the descriptor limit less 128)" },
		{ "max-header-bytes", RC_OPT_SIZE, &o->max_header_bytes, 256, 1024 * 1024,
		  "request line and headers (431)" },
		{ "header-timeout-ms", RC_OPT_INT, &o->header_timeout_ms, 1, 3600000,
		  "time to receive a whole request (408)" },
		{ "idle-timeout-ms", RC_OPT_INT, &o->idle_timeout_ms, 1, 86400000,
		  "keep-alive connection idle between requests" },
		{ "publish-timeout-ms", RC_OPT_INT, &o->publish_timeout_ms, 1, 600000,
		  "wait for the broker on POST and replay (POST: 503 if the request was not sent, 504 if it was)" },
		{ "api-retry-ms", RC_OPT_INT, &o->api_retry_ms, 0, 600000,
		  "several --broker-api: a request's first attempt waits this long for its broker's answer while another "
		  "broker is up, then goes to another (later attempts: half of what is left of --publish-timeout-ms, the "
		  "last all of it; 0: half of it from the first)" },
		{ "publish-queue-bytes", RC_OPT_SIZE, &o->publish_queue_bytes, 1024, INT64_MAX,
		  "bytes of events a gateway holds for the broker (queued or in flight); a POST past it: 503 "
		  "overloaded" },
		{ "publish-linger-ms", RC_OPT_INT, &o->publish_linger_ms, 0, 1000,
		  "while POSTs flow, one that finds no broker request in flight waits this long for others (0: never; "
		  "costs publishers that wait for each answer)" },
		{ "publish-ack-on-api", RC_OPT_BOOL, &o->publish_ack_on_api, 0, 0,
		  "have publishes answered by an api reply rather than in the bus flush that carries their events (one "
		  "more message per publish)" },
		{ "write-delay-ms", RC_OPT_INT, &o->write_delay_ms, 0, 1000,
		  "a live event less than this long after its stream's last output waits up to this long, so that "
		  "those that follow go in the same send (0: at once; less CPU at high rates per room, more latency)" },
		{ "auth", RC_OPT_STR, &o->auth, 0, 0,
		  "who may read a room: none (anyone), jwt (a token granting each room) or url (the application's "
		  "--auth-url decides; docs/PROTOCOL.md)" },
		{ "auth-url", RC_OPT_STR, &o->auth_url, 0, 0,
		  "--auth url: http://host[:port]/path asked before each stream (no https: keep it on loopback or a "
		  "private network, or behind a local TLS sidecar); resolved once at start" },
		{ "auth-timeout-ms", RC_OPT_INT, &o->auth_timeout_ms, 1, 60000,
		  "--auth url: connect and answer within this, else 503 auth_unavailable" },
		{ "auth-cache-ms", RC_OPT_INT, &o->auth_cache_ms, 0, 86400000,
		  "--auth url: keep the application's answers (2xx, 401, 403) per credential this long (0: ask every "
		  "time)" },
		{ "auth-cache-entries", RC_OPT_INT, &o->auth_cache_entries, 1, 10000000,
		  "--auth url: answers kept per worker; beyond, the oldest goes" },
		{ "auth-max-head-bytes", RC_OPT_SIZE, &o->auth_max_head_bytes, 256, 1024 * 1024,
		  "--auth url: the application's status line and headers; larger: 503 auth_unavailable" },
		{ "auth-max-body-bytes", RC_OPT_SIZE, &o->auth_max_body_bytes, 0, 16 * 1024 * 1024,
		  "--auth url: the application's answer body; larger: 503 auth_unavailable" },
		{ "auth-publish", RC_OPT_BOOL, &o->auth_publish, 0, 0,
		  "--auth url: ask the application for POST too (else POST needs --publish-token, as with --auth "
		  "none)" },
		{ "jwt-alg", RC_OPT_STR, &o->jwt_alg, 0, 0,
		  "--auth jwt: the algorithms accepted, comma-separated (HS256, RS256, ES256, ...; never none)" },
		{ "jwt-secret-file", RC_OPT_STR, &o->jwt_secret_file, 0, 0,
		  "--auth jwt: the HMAC secret (32-4096 bytes); reloaded on SIGHUP and when it changes" },
		{ "jwt-keys-file", RC_OPT_STR, &o->jwt_keys_file, 0, 0,
		  "--auth jwt: a JWKS file (keys chosen by kid); reloaded on SIGHUP and when it changes" },
		{ "jwt-leeway-s", RC_OPT_INT, &o->jwt_leeway_s, 0, RC_JWT_LEEWAY_MAX_S,
		  "--auth jwt: clock skew allowed on exp and nbf (an open stream ends at exp plus this)" },
		{ "jwt-audience", RC_OPT_STR, &o->jwt_audience, 0, 0,
		  "--auth jwt: aud must contain this (default: not checked)" },
		{ "jwt-issuer", RC_OPT_STR, &o->jwt_issuer, 0, 0,
		  "--auth jwt: iss must be this (default: not checked)" },
		{ "auth-cookie", RC_OPT_STR, &o->auth_cookie, 0, 0,
		  "--auth jwt: also take the token from this cookie (browsers' EventSource); the Authorization header "
		  "wins" },
		{ "auth-query-param", RC_OPT_BOOL, &o->auth_query_param, 0, 0,
		  "--auth jwt: also take the token from ?access_token= (it ends up in proxy and access logs)" },
		{ "publish-token", RC_OPT_STR, &o->publish_token, 0, 0, "POST needs 'Authorization: Bearer TOKEN'" },
		{ "allowed-hosts", RC_OPT_STR, &o->allowed_hosts, 0, 0,
		  "Host header values served, comma-separated (name: any port; name:port; *.domain); others get 403 "
		  "(default: any; set it where browsers reach the gateway: a DNS-rebinding page could read the "
		  "firehose and /metrics)" },
		{ "cors-origin", RC_OPT_STR, &o->cors_origin, 0, 0, "Access-Control-Allow-Origin value (e.g. *)" },
		{ "static-dir", RC_OPT_STR, &o->static_dir, 0, 0, "serve files from this directory (the demo page)" },
		{ "static-max-bytes", RC_OPT_SIZE, &o->static_max_bytes, 0, INT32_MAX,
		  "largest file --static-dir serves (read whole into memory; larger: 404)" },
		{ "bus-recvbuf", RC_OPT_INT, &o->bus_recvbuf, 1, 65536, "bus messages queued in nng before it drops" },
		{ "bus-max-rooms", RC_OPT_INT, &o->bus_max_rooms, 0, 1000000,
		  "rooms subscribed one by one on the bus; beyond, every event is taken and filtered here (0: no "
		  "limit)" },
		{ "bus-gap-wait-ms", RC_OPT_INT, &o->bus_gap_wait_ms, 0, 60000,
		  "with several --broker-bus addresses: how long a hole in one bus waits for another bus to bring the "
		  "events before they are replayed (0: replay at once)" },
		{ "repair-max-bytes", RC_OPT_SIZE, &o->repair_max_bytes, 1024, INT64_MAX,
		  "bus bytes held while a gap is repaired" },
		{ "workers", RC_OPT_INT, &o->workers, 1, GW_WORKERS_MAX,
		  "event loops, each on a thread with its own listening socket (SO_REUSEPORT)" },
		{ "broker-stats-ms", RC_OPT_INT, &o->broker_stats_ms, 0, 3600000,
		  "ask the broker for its stats this often, for the roomcast_broker_* figures of /metrics (0: never)" },
		{ "shutdown-ms", RC_OPT_INT, &o->shutdown_ms, 1, 60000, "longest graceful stop" },
		{ "log-level", RC_OPT_LOG, &o->log_level, 0, 0, "debug, info, warn or error" },
		{ "log-time", RC_OPT_BOOL, &o->log_time, 0, 0,
		  "start every log line with time=<UTC, milliseconds> (for logs written to a file)" },
		{ NULL, 0, NULL, 0, 0, NULL },
	};
	struct rc_opts_result res;
	struct sockaddr_storage addr;
	int rc;

	if ((rc = rc_opts_main("roomcast-gateway", "usage: roomcast-gateway [options]", table, argc, argv, 0, &res)) != -1)
		return rc;
	rc_opts_result_fini(&res);
	if (parse_listen(o->listen, &addr) != RC_OK) {
		fprintf(stderr, "roomcast-gateway: --listen: expected host:port, got '%s' (see --help)\n", o->listen);
		return 2;
	}
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "--broker-api" : "--broker-bus", *v = i ? o->broker_api : o->broker_bus;
		char *urls[GW_BROKERS_MAX];
		int n = rc_opt_list(v, urls, GW_BROKERS_MAX);
		if (n < 0) {
			fprintf(stderr, "roomcast-gateway: %s: expected 1-%d addresses separated by commas, got '%s' (see --help)\n",
				name, GW_BROKERS_MAX, v);
			return 2;
		}
		rc_opt_list_free(urls, n);
	}
	if (o->broker_link != NULL && *o->broker_link == '\0')
		o->broker_link = NULL;
	if (o->broker_link != NULL) {
		char *urls[GW_BROKERS_MAX];
		int n = rc_opt_list(o->broker_api, urls, GW_BROKERS_MAX);
		rc_opt_list_free(urls, n);
		if (n != 1) {
			fprintf(stderr, "roomcast-gateway: --broker-link takes one broker: give one --broker-api address, "
					"not %d (see --help)\n", n);
			return 2;
		}
		if (strncmp(o->broker_link, "tcp://", 6) != 0 || strchr(o->broker_link, ',') != NULL) {
			fprintf(stderr, "roomcast-gateway: --broker-link: expected tcp://host:port, got '%s' (see --help)\n",
				o->broker_link);
			return 2;
		}
	}
	if (o->publish_token != NULL && *o->publish_token == '\0')
		o->publish_token = NULL;
	if (o->cors_origin != NULL && *o->cors_origin == '\0')
		o->cors_origin = NULL;
	if (o->static_dir != NULL && *o->static_dir == '\0')
		o->static_dir = NULL;
	if (o->allowed_hosts != NULL && *o->allowed_hosts == '\0')
		o->allowed_hosts = NULL;
	/* empty (an unset compose variable): not given */
	const char **unset_if_empty[] = { &o->auth_cookie, &o->jwt_secret_file, &o->jwt_keys_file, &o->jwt_audience,
					  &o->jwt_issuer, &o->auth_url };
	for (size_t i = 0; i < sizeof(unset_if_empty) / sizeof(unset_if_empty[0]); i++)
		if (*unset_if_empty[i] != NULL && **unset_if_empty[i] == '\0')
			*unset_if_empty[i] = NULL;
	rc_log_set_level(o->log_level);
	rc_log_set_time(o->log_time);
	signal(SIGPIPE, SIG_IGN);
	if (gw_auth_new(o, &o->jwt) != RC_OK)
		return 2;
	if (o->auth != NULL && strcmp(o->auth, "url") == 0 && gw_authurl_config_new(o, &o->authurl) != RC_OK)
		return 2;
	fit_fd_limit(o);
	rc = gw_run_workers(o, (struct sockaddr *)&addr);
	rc_jwt_free(o->jwt);
	gw_authurl_config_free(o->authurl);
	return rc;
}
