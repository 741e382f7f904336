/*
 * roomcast-broker: orders every event, keeps the history, publishes on the bus.
 *
 * Threads: main (signals), the bus sender (bus.c), the link thread (link.c,
 * with --link), and nng's task threads that run the api workers (api.c). See
 * docs/ARCHITECTURE.md.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ackmem.h"
#include "api.h"
#include "broker.h"
#include "bus.h"
#include "error.h"
#include "event.h"
#include "history.h"
#include "id.h"
#include "link.h"
#include "log.h"
#include "natsmap.h"
#include "nstore.h"
#include "options.h"
#include "store.h"

struct broker_options {
	const char *bus, *api, *link;
	int64_t link_buffer_bytes, link_max_conns;
	int64_t history_events, history_bytes, max_event_bytes, max_rooms;
	int64_t replay_max_bytes, max_replays, replay_wait_ms;
	int64_t api_workers, api_max_bytes, bus_sendbuf, bus_buffer_bytes, bus_frame_bytes, bus_whole_bytes,
		bus_tick_ms, ack_memory_bytes;
	const char *store, *data_dir, *fsync, *history_max_age, *idempotency_window;
	const char *nats_url, *nats_stream;
	int64_t nats_replicas, nats_timeout_ms, nats_connect_wait_ms, nats_reconnect_wait_ms;
	int64_t fsync_interval_ms, segment_bytes, idempotency_max_keys;
	bool repair;
	enum rc_log_level log_level;
	bool log_time;
};

/* Parses a duration like 90, 90s, 15m, 1h, 2d or 500ms (a bare number: seconds) into ms; false when it is not one. */
static bool parse_duration_ms(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1000;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mul = 3600 * 1000;
	else if (strcmp(end, "d") == 0)
		mul = 86400 * 1000;
	else
		return false;
	if (v > UINT64_MAX / mul)
		return false;
	*out = v * mul;
	return true;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t new_epoch(void)
{
	uint32_t e = 0;

	/* random per start: a restarted broker without storage has a new history */
	while (e == 0) {
		if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e))
			e = (uint32_t)time(NULL) ^ (uint32_t)getpid();
	}
	return e;
}

#define STOP_DEADLINE_MS 4500

static void *stop_watchdog_main(void *arg)
{
	struct timespec ts = { .tv_sec = (intptr_t)arg / 1000, .tv_nsec = (long)((intptr_t)arg % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	rc_log_warn("stop did not finish in time (nng_close hang); exiting", NULL);
	_exit(0);
	return NULL;
}

static void stop_watchdog(int ms)
{
	pthread_t th;

	if (pthread_create(&th, NULL, stop_watchdog_main, (void *)(intptr_t)ms) == 0)
		pthread_detach(th);
}

int main(int argc, char **argv)
{
	struct broker_options o = {
		.bus = "tcp://127.0.0.1:7410",
		.api = "tcp://127.0.0.1:7411",
		.link_buffer_bytes = 64 * 1024 * 1024,
		.link_max_conns = 1024,
		.history_events = 100000,
		.history_bytes = 256 * 1024 * 1024,
		.max_event_bytes = RC_MAX_EVENT_BYTES_DEFAULT,
		.max_rooms = 1000000,
		.replay_max_bytes = 4 * 1024 * 1024,
		.max_replays = 4,
		.replay_wait_ms = 1000,
		.api_workers = 16,
		.api_max_bytes = RC_API_MAX_BYTES_DEFAULT,
		.bus_sendbuf = 8192,
		.bus_buffer_bytes = 64 * 1024 * 1024,
		.bus_frame_bytes = 64 * 1024,
		.bus_whole_bytes = 16 * 1024,
		.bus_tick_ms = 1000,
		.ack_memory_bytes = 4 * 1024 * 1024,
		.log_level = RC_LOG_INFO,
		.fsync = "interval",
		.fsync_interval_ms = 1000,
		.segment_bytes = 64 * 1024 * 1024,
		.history_max_age = "0",
		.idempotency_window = "2m",
		.idempotency_max_keys = HISTORY_IDEM_MAX_KEYS,
		.nats_url = "nats://127.0.0.1:4222",
		.nats_stream = "roomcast",
		.nats_replicas = 1,
		.nats_timeout_ms = 5000,
		.nats_connect_wait_ms = 30000,
		.nats_reconnect_wait_ms = 2000,
	};
	const struct rc_opt table[] = {
		{ "bus", RC_OPT_STR, &o.bus, 0, 0, "nng address the event bus (PUB) listens on" },
		{ "api", RC_OPT_STR, &o.api, 0, 0,
		  "nng address the api (REP: publish, replay, stats, ping) listens on" },
		{ "link", RC_OPT_STR, &o.link, 0, 0,
		  "tcp://host:port gateways connect to with --broker-link: their publishes and the bus over plain "
		  "TCP, without nng (default: none; not with --store nats or --fsync always)" },
		{ "link-buffer-bytes", RC_OPT_SIZE, &o.link_buffer_bytes, 65536, INT64_MAX,
		  "what a link connection's output buffer may hold; beyond, bus messages are dropped for it (the "
		  "gateway repairs by replay) and its requests wait" },
		{ "link-max-conns", RC_OPT_INT, &o.link_max_conns, 1, 1000000,
		  "link connections at once; one more is accepted and closed at once" },
		{ "history-events", RC_OPT_INT, &o.history_events, 1, 100000000, "events kept in memory for replay" },
		{ "history-bytes", RC_OPT_SIZE, &o.history_bytes, 4096, INT64_MAX, "bytes of events kept for replay" },
		{ "max-rooms", RC_OPT_INT, &o.max_rooms, 1, INT64_MAX,
		  "rooms the broker keeps (never forgotten in an epoch: ~150 bytes each); a publish that would add one "
		  "more is refused (too_many_rooms)" },
		{ "max-event-bytes", RC_OPT_SIZE, &o.max_event_bytes, RC_MAX_EVENT_BYTES_MIN, RC_MAX_EVENT_BYTES_MAX,
		  "largest serialized event accepted" },
		{ "api-workers", RC_OPT_INT, &o.api_workers, 1, 256, "api requests handled concurrently" },
		{ "api-max-bytes", RC_OPT_SIZE, &o.api_max_bytes, 1024, 1024 * 1024 * 1024,
		  "largest api request; a larger one drops the connection" },
		{ "replay-max-bytes", RC_OPT_SIZE, &o.replay_max_bytes, 4096, 1024 * 1024 * 1024,
		  "largest replay answer (events' JSON + ~80 bytes each, whatever the request asks; at least one "
		  "event); \"more\" says to ask for the next page" },
		{ "max-replays", RC_OPT_INT, &o.max_replays, 1, 256,
		  "replay answers built or being handed over at once; one more waits (--replay-wait-ms), then gets "
		  "busy" },
		{ "replay-wait-ms", RC_OPT_INT, &o.replay_wait_ms, 0, 60000,
		  "how long a replay waits for one of --max-replays before it is answered busy" },
		{ "bus-sendbuf", RC_OPT_INT, &o.bus_sendbuf, 1, 8192,
		  "messages queued per gateway (a frame per room per flush) before the bus drops the oldest for it; "
		  "fewer when --bus-buffer-bytes holds fewer of the largest" },
		{ "bus-buffer-bytes", RC_OPT_SIZE, &o.bus_buffer_bytes, 0, INT64_MAX,
		  "what the messages queued for gateways that fall behind may take in all (0: only --bus-sendbuf "
		  "bounds them), plus one message per gateway" },
		{ "bus-frame-bytes", RC_OPT_SIZE, &o.bus_frame_bytes, 1024, 64 * 1024 * 1024,
		  "largest flush of events on the bus (events are batched up to this size)" },
		{ "bus-whole-bytes", RC_OPT_SIZE, &o.bus_whole_bytes, 0, 64 * 1024 * 1024,
		  "a flush of at most this many bytes of events goes to every gateway as one message (0: never); "
		  "larger ones go room by room" },
		{ "bus-tick-ms", RC_OPT_INT, &o.bus_tick_ms, 10, 60000, "idle tick interval on the bus" },
		{ "ack-memory-bytes", RC_OPT_SIZE, &o.ack_memory_bytes, 0, 1024 * 1024 * 1024,
		  "the latest publishes answered on the bus, kept for a gateway that lost the answer (op acks); "
		  "beyond, the oldest are forgotten and such a POST gets 504 at --publish-timeout-ms (0: none kept)" },
		{ "store", RC_OPT_STR, &o.store, 0, 0,
		  "memory (history lost on restart: a new epoch), file (history, epoch and sequences in --data-dir) or "
		  "nats (a NATS JetStream stream holds them, replicated: --nats-url); default: file when --data-dir is "
		  "set, else memory" },
		{ "nats-url", RC_OPT_STR, &o.nats_url, 0, 0,
		  "--store nats: the NATS servers, comma-separated (nats://host:4222,nats://host2:4222)" },
		{ "nats-stream", RC_OPT_STR, &o.nats_stream, 0, 0,
		  "--store nats: the JetStream stream (created if absent, checked if present); its subjects are "
		  "<stream>.>" },
		{ "nats-replicas", RC_OPT_INT, &o.nats_replicas, 1, 5,
		  "--store nats: the stream's replicas when it is created (an existing stream must have as many)" },
		{ "nats-timeout-ms", RC_OPT_INT, &o.nats_timeout_ms, 100, 600000,
		  "--store nats: how long a publish waits for JetStream's acknowledgement (then: "
		  "publish_outcome_unknown)" },
		{ "nats-connect-wait-ms", RC_OPT_INT, &o.nats_connect_wait_ms, 0, 3600000,
		  "--store nats: how long start waits for NATS, the stream and its follower's consumer before it gives up (exit 1)" },
		{ "nats-reconnect-wait-ms", RC_OPT_INT, &o.nats_reconnect_wait_ms, 0, 600000,
		  "--store nats: a publish made within this long of losing the NATS connection waits for it to come "
		  "back (a node restarted or stopped: the broker moves to another at once), then storage_unavailable; "
		  "0: refused at once" },
		{ "data-dir", RC_OPT_STR, &o.data_dir, 0, 0,
		  "directory of the durable history (implies --store file)" },
		{ "fsync", RC_OPT_STR, &o.fsync, 0, 0,
		  "none, interval or always: when the log is flushed to disk (a crash of the process loses nothing "
		  "acknowledged with any; a power loss up to --fsync-interval-ms with interval, nothing with always)" },
		{ "fsync-interval-ms", RC_OPT_INT, &o.fsync_interval_ms, 10, 60000,
		  "flush period with --fsync interval" },
		{ "segment-bytes", RC_OPT_SIZE, &o.segment_bytes, 4096, 1024 * 1024 * 1024,
		  "size of one log segment file (old segments are deleted whole)" },
		{ "history-max-age", RC_OPT_STR, &o.history_max_age, 0, 0,
		  "events older than this are dropped from the history (e.g. 90s, 15m, 1h, 2d; 0: no age limit)" },
		{ "idempotency-window", RC_OPT_STR, &o.idempotency_window, 0, 0,
		  "an event's idempotency key is remembered this long: the same key again gets the original id and "
		  "publishes nothing (e.g. 2m, 1h; 0: keys are ignored)" },
		{ "idempotency-max-keys", RC_OPT_INT, &o.idempotency_max_keys, 1, 100000000,
		  "keys remembered at most; beyond, the oldest is forgotten before its window ends" },
		{ "repair", RC_OPT_BOOL, &o.repair, 0, 0,
		  "start even if the log is corrupt in the middle: cut it at the bad record, log what was dropped and "
		  "start a new epoch" },
		{ "log-level", RC_OPT_LOG, &o.log_level, 0, 0, "debug, info, warn or error" },
		{ "log-time", RC_OPT_BOOL, &o.log_time, 0, 0,
		  "start every log line with time=<UTC, milliseconds> (for logs written to a file)" },
		{ NULL, 0, NULL, 0, 0, NULL },
	};
	struct rc_opts_result res;
	struct store_config sc = { 0 };
	struct store_recovery rec;
	uint64_t max_age_ms = 0, idem_window_ms = 0;
	struct broker br = { 0 };
	struct bus *bus = NULL;
	struct api *api = NULL;
	struct link *link = NULL;
	sigset_t sigs;
	int sig = 0, rc = 1;
	char epoch[RC_ID_MAX];

	if ((rc = rc_opts_main("roomcast-broker", "usage: roomcast-broker [options]", table, argc, argv, 0, &res)) !=
	    -1)
		return rc;
	rc_opts_result_fini(&res);
	rc = 1;
	rc_log_set_level(o.log_level);
	rc_log_set_time(o.log_time);

	/* signals are taken by sigwait in this thread; every other thread inherits the mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	br.max_event_bytes = (size_t)o.max_event_bytes;
	br.replay_max_bytes = (size_t)o.replay_max_bytes;
	br.max_replays = (int)o.max_replays;
	if (o.store == NULL)
		o.store = o.data_dir != NULL ? "file" : "memory";
	if (strcmp(o.store, "memory") != 0 && strcmp(o.store, "file") != 0 && strcmp(o.store, "nats") != 0) {
		fprintf(stderr, "roomcast-broker: --store must be memory, file or nats, not '%s'\n", o.store);
		return 2;
	}
	if (strcmp(o.store, "nats") == 0 && o.data_dir != NULL) {
		fprintf(stderr, "roomcast-broker: --data-dir goes with --store file, not nats\n");
		return 2;
	}
	if (strcmp(o.store, "nats") == 0 && !natsmap_stream_valid(o.nats_stream)) {
		fprintf(stderr, "roomcast-broker: --nats-stream must be 1-%d bytes of [A-Za-z0-9_-], not '%s'\n",
			NATSMAP_STREAM_MAX, o.nats_stream);
		return 2;
	}
	if (strcmp(o.store, "nats") == 0 && (o.nats_url == NULL || strspn(o.nats_url, " ,") == strlen(o.nats_url))) {
		fprintf(stderr, "roomcast-broker: --store nats needs --nats-url\n");
		return 2;
	}
	if (strcmp(o.store, "file") == 0 && (o.data_dir == NULL || *o.data_dir == '\0')) {
		fprintf(stderr, "roomcast-broker: --store file needs --data-dir\n");
		return 2;
	}
	if (strcmp(o.store, "memory") == 0 && o.data_dir != NULL) {
		fprintf(stderr, "roomcast-broker: --data-dir needs --store file\n");
		return 2;
	}
	if (!store_fsync_parse(o.fsync, &sc.fsync)) {
		fprintf(stderr, "roomcast-broker: --fsync must be none, interval or always, not '%s'\n", o.fsync);
		return 2;
	}
	if (!parse_duration_ms(o.history_max_age, &max_age_ms)) {
		fprintf(stderr,
			"roomcast-broker: --history-max-age must be a duration like 90s, 15m, 1h or 0, not '%s'\n",
			o.history_max_age);
		return 2;
	}
	if (!parse_duration_ms(o.idempotency_window, &idem_window_ms)) {
		fprintf(stderr,
			"roomcast-broker: --idempotency-window must be a duration like 2m, 90s, 1h or 0, not '%s'\n",
			o.idempotency_window);
		return 2;
	}
	if (o.link != NULL && *o.link != '\0' && strcmp(o.store, "nats") == 0) {
		fprintf(stderr, "roomcast-broker: --link cannot go with --store nats: a publish waits for JetStream, "
				"and the link thread must never wait\n");
		return 1;
	}
	if (o.link != NULL && *o.link != '\0' && strcmp(o.store, "file") == 0 && sc.fsync == STORE_FSYNC_ALWAYS) {
		fprintf(stderr, "roomcast-broker: --link cannot go with --fsync always: a publish waits for the "
				"fdatasync, and the link thread must never wait\n");
		return 1;
	}
	signal(SIGXFSZ,
	       SIG_IGN); /* a file-size limit: the write fails with EFBIG, the publish with storage_unavailable */
	br.hist = history_new(new_epoch(), (size_t)o.history_events, (size_t)o.history_bytes);
	if (br.hist == NULL) {
		rc_log_error("cannot allocate the history", "events=%" PRId64, o.history_events);
		return 1;
	}
	history_set_max_age(br.hist, max_age_ms);
	/* before recovery: it remembers the keys of the log still within the window (nats: the stream does) */
	if (history_set_idempotency(br.hist, strcmp(o.store, "nats") == 0 ? 0 : idem_window_ms,
				    (size_t)o.idempotency_max_keys) != RC_OK) {
		rc_log_error("cannot allocate the idempotency key table", NULL);
		history_free(br.hist);
		return 1;
	}
	if (strcmp(o.store, "file") == 0) {
		sc.dir = o.data_dir;
		sc.interval_ms = (int)o.fsync_interval_ms;
		sc.segment_bytes = (size_t)o.segment_bytes;
		sc.repair = o.repair;
		if (store_open(&sc, history_epoch(br.hist), history_restore, br.hist, &br.store, &rec) != RC_OK) {
			history_free(br.hist);
			return 1;
		}
		history_restore_next(br.hist, rec.next_gseq);
		history_set_epoch(br.hist, store_epoch(br.store));
		history_set_store(br.hist, br.store);
		if (rec.repaired)
			rc_log_warn("--repair: the log was cut; a new epoch starts", "dropped_bytes=%" PRIu64,
				    rec.cut_bytes);
		rc_log_info("history recovered",
			    "data_dir=%s events=%" PRIu64 " rooms_checkpointed=%" PRIu64 " next_gseq=%" PRIu64
			    " cut_bytes=%" PRIu64 " fresh=%d recovery_ms=%.1f fsync=%s",
			    o.data_dir, rec.events, rec.rooms, rec.next_gseq, rec.cut_bytes, rec.fresh, rec.ms,
			    store_fsync_name(sc.fsync));
	}
	if (strcmp(o.store, "nats") == 0) {
		struct nstore_config nc = {
			.urls = o.nats_url,
			.stream = o.nats_stream,
			.replicas = (int)o.nats_replicas,
			.max_msgs = o.history_events,
			.max_bytes = o.history_bytes,
			.max_age_ms = max_age_ms,
			.dup_window_ms = idem_window_ms,
			.timeout_ms = (int)o.nats_timeout_ms,
			.connect_wait_ms = (int)o.nats_connect_wait_ms,
			.reconnect_wait_ms = (int)o.nats_reconnect_wait_ms,
			.history_events = (size_t)o.history_events,
			.max_rooms = (size_t)o.max_rooms,
		};
		struct nstore_recovery nr;
		if (nstore_open(&nc, br.hist, &br.nats, &nr) != RC_OK) {
			history_free(br.hist);
			return 1;
		}
		rc_log_info("history recovered",
			    "store=nats stream=%s events=%" PRIu64 " first_seq=%" PRIu64 " last_seq=%" PRIu64
			    " created=%d updated=%d recovery_ms=%.1f",
			    o.nats_stream, nr.events, nr.first_seq, nr.last_seq, nr.created, nr.updated, nr.ms);
	}
	struct bus_config bc = {
		.url = o.bus,
		.epoch = history_epoch(br.hist),
		.max_frame_bytes = (size_t)o.bus_frame_bytes,
		.whole_bytes = (size_t)o.bus_whole_bytes,
		.max_event_bytes = (size_t)o.max_event_bytes,
		.tick_ms = (int)o.bus_tick_ms,
		.sendbuf = (int)o.bus_sendbuf,
		.buffer_bytes = (size_t)o.bus_buffer_bytes,
	};
	if (o.link != NULL && *o.link != '\0') {
		struct link_config lc = {
			.url = o.link,
			.max_request_bytes = (size_t)o.api_max_bytes,
			.buffer_bytes = (size_t)o.link_buffer_bytes,
			.max_conns = (int)o.link_max_conns,
		};
		if (link_open(&lc, &link) != RC_OK)
			goto out;
		bc.tap = link_bus_send;
		bc.tap_arg = link;
	}
	if (bus_start(&bc, &bus) != RC_OK)
		goto out;
	br.bus = bus;
	history_set_max_rooms(br.hist, (size_t)o.max_rooms);
	history_set_sink(br.hist, bus_sink, bus);
	struct api_config ac = {
		.url = o.api,
		.workers = (int)o.api_workers,
		.max_request_bytes = (size_t)o.api_max_bytes,
		.replay_wait_ms = (int)o.replay_wait_ms,
	};
	br.acks = ackmem_new((size_t)o.ack_memory_bytes);
	if (br.acks == NULL || api_start(&ac, &br, &api) != RC_OK)
		goto out;
	br.link = link;
	if (link != NULL && link_start(link, &br) != RC_OK)
		goto out;

	rc_epoch_format(epoch, history_epoch(br.hist));
	rc_log_info("broker ready",
		    "epoch=%s bus=%s api=%s%s%s history_events=%" PRId64 " history_bytes=%" PRId64
		    " bus_queue=%d bus_message_max=%zu store=%s",
		    epoch, bus_url(bus), api_url(api), link != NULL ? " link=" : "", link != NULL ? link_url(link) : "",
		    o.history_events, o.history_bytes, bus_queue_len(&bc),
		    bus_max_message_bytes(&bc), o.store);
	for (;;) {
		struct timespec tick = { 1, 0 };
		sig = sigtimedwait(&sigs, NULL, &tick);
		if (sig > 0)
			break;
		/* --history-max-age and the keys' window go on without publishes */
		if (max_age_ms != 0 || idem_window_ms != 0)
			history_expire(br.hist, wall_ms());
	}
	rc_log_info("stopping", "signal=%d", sig);
	atomic_store(&br.stopping, true);
	rc = 0;
	/*
	 * nng 1.5.2 can block for ever in nng_close (fixed upstream later): if the
	 * stop below hangs, this watchdog ends the process in time, with exit 0
	 * since the events were already flushed or never accepted.
	 */
	stop_watchdog(STOP_DEADLINE_MS);
out:
	/* no new publishes: stop the api, then flush and close the bus */
	api_stop(api);
	link_quiesce(link);    /* no more requests; the final flush below still goes to the link */
	nstore_close(br.nats); /* the follower stops feeding the bus */
	bus_stop(bus);
	link_free(link);
	history_free(br.hist);
	store_close(br.store);
	ackmem_free(br.acks);
	if (rc == 0)
		rc_log_info("broker stopped", NULL);
	return rc;
}
