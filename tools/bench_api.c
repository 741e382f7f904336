/*
 * roomcast-bench-api: publish throughput of the broker over its nng api.
 *
 *   roomcast-bench-api --batch 100 --events 1000000 --conns 4
 *
 * Each of --conns threads has its own REQ socket and sends publish requests of
 * --batch events (--event-bytes each, rooms round-robin over --rooms) one
 * after the other until --events are accepted or --seconds pass. Prints one
 * JSON line: events accepted per second and request latency percentiles.
 */
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "options.h"
#include "proto_limits.h"
#include "timed_call.h"

struct bench {
	const char *api;
	int64_t batch, events, conns, event_bytes, rooms, seconds;
	enum rc_log_level log_level;
	atomic_int_fast64_t sent, failed;
	double deadline;
};

struct worker {
	struct bench *b;
	pthread_t thread;
	int id;
	double *lat; /* request latencies, seconds */
	size_t nlat, caplat;
	int err;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void build_request(struct bench *b, int worker, struct rc_buf *req)
{
	char pad[65536];
	size_t padlen = b->event_bytes > 80 ? (size_t)b->event_bytes - 80 : 1;

	if (padlen >= sizeof(pad))
		padlen = sizeof(pad) - 1;
	memset(pad, 'x', padlen);
	pad[padlen] = '\0';
	rc_buf_puts(req, "{\"op\":\"publish\",\"events\":[");
	for (int64_t i = 0; i < b->batch; i++)
		rc_buf_printf(req, "%s{\"type\":\"bench.event\",\"room_id\":\"bench-%" PRId64 "\",\"w\":%d,\"pad\":\"%s\"}",
			      i ? "," : "", (i + worker) % b->rooms, worker, pad);
	rc_buf_puts(req, "]}");
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	struct rc_buf req;
	nng_socket sock;

	rc_buf_init(&req);
	build_request(b, w->id, &req);
	if (nng_req0_open(&sock) != 0 || nng_dial(sock, b->api, NULL, 0) != 0) {
		w->err = 1;
		rc_buf_fini(&req);
		return NULL;
	}
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 10000);
	while (atomic_load(&b->sent) < b->events && now_s() < b->deadline) {
		char *reply = NULL;
		size_t len = 0;
		double t0 = now_s();

		if (nng_send(sock, req.data, req.len, 0) != 0 || nng_recv(sock, &reply, &len, NNG_FLAG_ALLOC) != 0) {
			atomic_fetch_add(&b->failed, 1);
			continue;
		}
		if (len > 10 && memcmp(reply, "{\"ok\":true", 10) == 0)
			atomic_fetch_add(&b->sent, b->batch);
		else
			atomic_fetch_add(&b->failed, 1);
		nng_free(reply, len);
		if (w->nlat == w->caplat) {
			size_t cap = w->caplat ? w->caplat * 2 : 4096;
			double *p = realloc(w->lat, cap * sizeof(*p));
			if (p == NULL)
				break;
			w->lat = p;
			w->caplat = cap;
		}
		w->lat[w->nlat++] = now_s() - t0;
	}
	rc_nng_close_within(sock, 1000);
	rc_buf_fini(&req);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct bench b = {
		.api = "tcp://127.0.0.1:7411",
		.batch = 100,
		.events = 1000000,
		.conns = 4,
		.event_bytes = 256,
		.rooms = 100,
		.seconds = 30,
		.log_level = RC_LOG_WARN,
	};
	const struct rc_opt table[] = {
		{ "broker-api", RC_OPT_STR, &b.api, 0, 0, "the broker's api address" },
		{ "batch", RC_OPT_INT, &b.batch, 1, RC_PUBLISH_MAX_EVENTS, "events per publish request" },
		{ "events", RC_OPT_INT, &b.events, 1, INT64_MAX, "stop after this many events" },
		{ "conns", RC_OPT_INT, &b.conns, 1, 256, "concurrent publishers (threads, one socket each)" },
		{ "event-bytes", RC_OPT_INT, &b.event_bytes, 64, 60000, "approximate size of each event" },
		{ "rooms", RC_OPT_INT, &b.rooms, 1, 1000000, "rooms the events go to, round-robin" },
		{ "seconds", RC_OPT_INT, &b.seconds, 1, 3600, "stop after this long" },
		{ "log-level", RC_OPT_LOG, &b.log_level, 0, 0, "debug, info, warn or error" },
		{ NULL, 0, NULL, 0, 0, NULL },
	};
	struct rc_opts_result res;
	struct worker *ws;
	double t0, elapsed, *all;
	size_t nall = 0;
	int rc;

	if ((rc = rc_opts_main("roomcast-bench-api", "usage: roomcast-bench-api [options]", table, argc, argv, 0, &res)) != -1)
		return rc;
	rc_opts_result_fini(&res);
	ws = calloc((size_t)b.conns, sizeof(*ws));
	if (ws == NULL)
		return 1;
	t0 = now_s();
	b.deadline = t0 + (double)b.seconds;
	for (int i = 0; i < b.conns; i++) {
		ws[i].b = &b;
		ws[i].id = i;
		pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
	}
	for (int i = 0; i < b.conns; i++) {
		pthread_join(ws[i].thread, NULL);
		nall += ws[i].nlat;
	}
	elapsed = now_s() - t0;
	all = malloc((nall ? nall : 1) * sizeof(*all));
	nall = 0;
	for (int i = 0; i < b.conns; i++) {
		if (ws[i].err) {
			fprintf(stderr, "roomcast-bench-api: cannot connect to %s\n", b.api);
			return 1;
		}
		memcpy(all + nall, ws[i].lat, ws[i].nlat * sizeof(*all));
		nall += ws[i].nlat;
		free(ws[i].lat);
	}
	qsort(all, nall, sizeof(*all), cmp_double);
	printf("{\"batch\":%" PRId64 ",\"conns\":%" PRId64 ",\"event_bytes\":%" PRId64 ",\"events\":%" PRId64
	       ",\"failed_requests\":%" PRId64 ",\"seconds\":%.3f,\"events_per_s\":%.0f,"
	       "\"request_p50_ms\":%.3f,\"request_p99_ms\":%.3f}\n",
	       b.batch, b.conns, b.event_bytes, (int64_t)atomic_load(&b.sent), (int64_t)atomic_load(&b.failed),
	       elapsed, (double)atomic_load(&b.sent) / elapsed, nall ? all[nall / 2] * 1e3 : 0.0,
	       nall ? all[(size_t)((double)nall * 0.99)] * 1e3 : 0.0);
	free(all);
	free(ws);
	return 0;
}
