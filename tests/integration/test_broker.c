/*
 * test_broker.c - the broker api end to end: a real roomcast-broker on fresh
 * 127.0.0.1 ports, driven over nng REQ sockets (SPEC: "Publish over nng").
 *
 *   - publish with a raw REQ socket and with nngcat;
 *   - 8 concurrent publishers x 10,000 events: gseq 1..80000 without holes and
 *     every room's rseq without holes, checked by replay (authoritative) and
 *     against what the bus delivered to a subscriber, with small flushes sent
 *     whole (the default) and with every flush room by room;
 *   - replay after an id, for rooms and the firehose, paged, in json and frame
 *     format, and its errors (history_unavailable, epoch_mismatch, invalid_id);
 *   - 1,000 random byte strings and 1,000 mutated requests each get a reply,
 *     and the broker keeps serving;
 *   - memory: 100,000 new rooms cost what they hold, and --max-rooms refuses
 *     the room beyond; 16 clients replaying a 60 MB history at once get
 *     answers of at most --replay-max-bytes and the broker stays bounded;
 *     a bus subscriber that reads nothing costs the broker a bounded amount.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <pthread.h>

#include "broker_fixture.h"
#include "buf.h"
#include "error.h"
#include "frame.h"
#include "id.h"
#include "proc.h"

#define LOAD_PUBLISHERS 8
#define LOAD_EVENTS 10000 /* per publisher */
#define LOAD_BATCH 100
#define LOAD_BATCHES (LOAD_EVENTS / LOAD_BATCH)
#define LOAD_TOTAL (LOAD_PUBLISHERS * LOAD_EVENTS)
#define LOAD_ROOMS 5 /* plus the global events, index LOAD_ROOMS */

static const char *const known_codes[] = {
	"bad_request",	  "invalid_field",	 "invalid_event", "too_large",	    "unknown_op", "invalid_id",
	"epoch_mismatch", "history_unavailable", "shutting_down", "too_many_rooms", "busy",	    NULL,
};

static struct broker_fixture *start_broker(void **state, const char *const *args)
{
	struct broker_fixture *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->proc.stdin_fd = -1;
	*state = b;
	if (broker_fixture_start(b, args, NULL) != 0)
		fail_msg("the broker did not start");
	return b;
}

static int setup(void **state)
{
	start_broker(state, NULL);
	return 0;
}

static int teardown(void **state)
{
	struct broker_fixture *b = *state;

	if (b != NULL) {
		/* a clean stop is part of every test: the broker must exit 0 */
		int st = broker_fixture_stop(b, BROKER_STOP_TIMEOUT_MS);
		broker_fixture_kill(b);
		proc_kill_all(); /* anything else a failed test left behind */
		free(b);
		*state = NULL;
		if (st != 0) {
			print_error("broker exit status %d\n", st);
			return -1;
		}
	}
	return 0;
}

static struct json_object *call_ok(nng_socket s, const char *req)
{
	struct json_object *r = api_call(s, req);

	if (!api_reply_ok(r))
		fail_msg("request %.200s failed: %s", req, r ? json_object_to_json_string(r) : "(no reply)");
	return r;
}

static void assert_code(nng_socket s, const char *req, const char *code)
{
	struct json_object *r = api_call(s, req);
	const char *c = api_reply_code(r);

	if (r == NULL || api_reply_ok(r) || c == NULL || strcmp(c, code) != 0)
		fail_msg("request %.200s: want error %s, got %s", req, code,
			 r ? json_object_to_json_string(r) : "(no reply)");
	json_object_put(r);
}

static uint64_t id_gseq(struct broker_fixture *b, struct json_object *id)
{
	uint64_t g = broker_fixture_gseq(b, json_object_get_string(id));

	if (g == UINT64_MAX)
		fail_msg("not an id of epoch %s: %s", b->epoch, json_object_get_string(id));
	return g;
}

/* Publishes the events (a JSON array text); returns the first gseq; checks the ids are consecutive. */
static uint64_t publish(struct broker_fixture *b, nng_socket s, const char *events, size_t n)
{
	struct rc_buf req;
	struct json_object *r, *ids;
	uint64_t first;

	rc_buf_init(&req);
	rc_buf_printf(&req, "{\"op\":\"publish\",\"events\":%s}", events);
	r = call_ok(s, req.data);
	rc_buf_fini(&req);
	ids = json_get(r, "ids");
	assert_non_null(ids);
	assert_int_equal(json_object_array_length(ids), n);
	first = id_gseq(b, json_object_array_get_idx(ids, 0));
	for (size_t i = 1; i < n; i++)
		assert_int_equal(id_gseq(b, json_object_array_get_idx(ids, i)), first + i);
	json_object_put(r);
	return first;
}

static uint64_t broker_gseq(nng_socket s)
{
	struct json_object *r = call_ok(s, "{\"op\":\"stats\"}");
	uint64_t g = (uint64_t)json_object_get_int64(json_get(r, "gseq"));

	json_object_put(r);
	return g;
}

/* ---- 2. publish over a raw REQ socket and with nngcat ---- */

static void test_publish_raw_req(void **state)
{
	struct broker_fixture *b = *state;
	nng_socket s;
	struct json_object *r, *ev;
	char want[128];
	size_t len;
	char *raw;

	assert_int_equal(api_open(&s, b->api_url, API_TIMEOUT_MS), 0);
	raw = api_call_raw(
		s,
		"{\"op\":\"publish\",\"events\":[{\"type\":\"message.created\",\"room_id\":\"room-1\","
		"\"message\":{\"text\":\"hi\"}}]}",
		strlen("{\"op\":\"publish\",\"events\":[{\"type\":\"message.created\",\"room_id\":\"room-1\","
		       "\"message\":{\"text\":\"hi\"}}]}"),
		&len, NULL);
	assert_non_null(raw);
	snprintf(want, sizeof(want), "{\"ok\":true,\"ids\":[\"%s-1\"]}", b->epoch);
	assert_string_equal(raw, want);
	free(raw);
	assert_int_equal(publish(b, s,
				 "[{\"type\":\"a\",\"room_id\":\"room-1\"},{\"type\":\"user.created\"},"
				 "{\"type\":\"c\",\"room_id\":\"room-2\"}]",
				 3),
			 2);
	/* the payload comes back exactly as published */
	r = call_ok(s, "{\"op\":\"replay\",\"rooms\":[\"room-1\"],\"global\":false}");
	assert_int_equal(json_object_array_length(json_get(r, "events")), 2);
	ev = json_object_array_get_idx(json_get(r, "events"), 0);
	assert_string_equal(json_object_to_json_string_ext(json_get(ev, "event"), JSON_C_TO_STRING_PLAIN),
			    "{\"type\":\"message.created\",\"room_id\":\"room-1\",\"message\":{\"text\":\"hi\"}}");
	assert_int_equal(json_object_get_int64(json_get(ev, "rseq")), 1);
	json_object_put(r);
	assert_int_equal(broker_gseq(s), 4);
	rc_nng_close_within(s, NNG_CLOSE_MS);
}

/* Runs nngcat --req against the api; returns its stdout (caller frees). */
static char *run_nngcat(struct broker_fixture *b, const char *nngcat, const char *const *args, const char *stdin_data)
{
	const char *argv[16];
	size_t n = 0;
	struct proc p;
	struct proc_spec spec = { .path = nngcat, .argv = argv, .stdin_data = stdin_data };
	int st;

	argv[n++] = "--req";
	argv[n++] = "--connect";
	argv[n++] = b->api_url;
	argv[n++] = "--format";
	argv[n++] = "ascii";
	argv[n++] = "--recv-timeout";
	argv[n++] = "10";
	for (; *args != NULL; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if (stdin_data != NULL)
		spec.stdin_len = strlen(stdin_data);
	assert_int_equal(proc_spawn(&p, &spec), 0);
	st = proc_wait(&p, 15000);
	proc_kill(&p);
	if (st != 0) {
		char *err = proc_stderr(&p);
		fail_msg("nngcat exited with %d: %s", st, err);
	}
	return proc_stdout(&p);
}

static void test_publish_nngcat(void **state)
{
	static const char *const pub[] = {
		"--data", "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":\"n\"},{\"type\":\"g\"}]}", NULL
	};
	static const char *const from_stdin[] = { "--file", "-", NULL };
	struct broker_fixture *b = *state;
	char *nngcat = proc_which("nngcat");
	char want[128], *out;

	if (nngcat == NULL) {
		print_message("nngcat is not on PATH (Debian: nng-utils); skipped\n");
		skip();
	}
	out = run_nngcat(b, nngcat, pub, NULL);
	snprintf(want, sizeof(want), "\"ids\":[\"%s-1\",\"%s-2\"]", b->epoch, b->epoch);
	if (strstr(out, "\"ok\":true") == NULL || strstr(out, want) == NULL)
		fail_msg("nngcat publish printed: %s", out);
	free(out);
	/* a request file ending in a newline is fine too */
	out = run_nngcat(b, nngcat, from_stdin, "{\"op\":\"stats\"}\n");
	if (strstr(out, "\"ok\":true") == NULL || strstr(out, "\"gseq\":2") == NULL)
		fail_msg("nngcat stats printed: %s", out);
	free(out);
	out = run_nngcat(b, nngcat, from_stdin, "{\"op\":\"publish\",\"events\":[{\"room_id\":\"n\"}]}");
	if (strstr(out, "\"ok\":false") == NULL || strstr(out, "events[0].type missing") == NULL)
		fail_msg("nngcat bad publish printed: %s", out);
	free(out);
	free(nngcat);
}

/* ---- 3. concurrent publishers ---- */

struct publisher {
	const struct broker_fixture *b;
	int t;
	uint64_t first[LOAD_BATCHES]; /* gseq of each batch's first event */
	char err[512];		      /* set on failure (cmocka asserts are for the main thread) */
};

static int load_room(int t, int n)
{
	return n % 10 == 9 ? LOAD_ROOMS : (t * 7 + n) % LOAD_ROOMS;
}

static void *publisher_run(void *arg)
{
	struct publisher *p = arg;
	struct rc_buf req;
	nng_socket s;
	int rv;

	if ((rv = api_open(&s, p->b->api_url, API_TIMEOUT_MS)) != 0) {
		snprintf(p->err, sizeof(p->err), "api_open: %s", nng_strerror(rv));
		return NULL;
	}
	rc_buf_init(&req);
	for (int k = 0; k < LOAD_BATCHES && p->err[0] == '\0'; k++) {
		struct json_object *r, *ids;

		req.len = 0;
		rc_buf_puts(&req, "{\"op\":\"publish\",\"events\":[");
		for (int i = 0; i < LOAD_BATCH; i++) {
			int n = k * LOAD_BATCH + i, room = load_room(p->t, n);
			rc_buf_printf(&req, "%s{\"type\":\"load\",", i ? "," : "");
			if (room < LOAD_ROOMS)
				rc_buf_printf(&req, "\"room_id\":\"room-%d\",", room);
			rc_buf_printf(&req, "\"t\":%d,\"k\":%d,\"i\":%d}", p->t, k, i);
		}
		rc_buf_puts(&req, "]}");
		r = api_call(s, req.data);
		ids = json_get(r, "ids");
		if (!api_reply_ok(r) || ids == NULL || json_object_array_length(ids) != LOAD_BATCH) {
			snprintf(p->err, sizeof(p->err), "publisher %d batch %d: %.300s", p->t, k,
				 r ? json_object_to_json_string(r) : "no reply");
		} else {
			for (int i = 0; i < LOAD_BATCH && p->err[0] == '\0'; i++) {
				uint64_t g = broker_fixture_gseq(
					p->b, json_object_get_string(json_object_array_get_idx(ids, i)));
				if (i == 0)
					p->first[k] = g;
				/* a batch is atomic: consecutive ids; a publisher's batches go forward */
				if (g != p->first[k] + (uint64_t)i || (k > 0 && i == 0 && g <= p->first[k - 1]))
					snprintf(p->err, sizeof(p->err), "publisher %d batch %d: id %d is gseq %llu",
						 p->t, k, i, (unsigned long long)g);
			}
		}
		json_object_put(r);
	}
	rc_buf_fini(&req);
	rc_nng_close_within(s, NNG_CLOSE_MS);
	return NULL;
}

/* What is known of one event: from replay, and (maybe) from the bus. */
struct load_event {
	uint64_t rseq, bus_rseq;
	int room, bus_room; /* 0..LOAD_ROOMS; -1 unknown */
};

struct bus_reader {
	const struct broker_fixture *b;
	nng_socket sub;
	struct load_event *evs; /* indexed by gseq */
	atomic_bool stop, ready, failed;
	_Atomic uint64_t last_gseq;
	uint64_t received, frames, whole, ticks; /* read after the join */
	uint64_t flush_last;              /* the last gseq of the last flush's index */
	char err[256];			  /* read after the join, or once failed is set */
};

static int room_index(const char *room, size_t len)
{
	if (len == 0)
		return LOAD_ROOMS;
	if (len == 6 && memcmp(room, "room-", 5) == 0 && room[5] >= '0' && room[5] < '0' + LOAD_ROOMS)
		return room[5] - '0';
	return -1;
}

/*
 * The events of one bus frame (a room's, room_len 0: global; or a whole flush,
 * whole: any room) after the last flush: never reordered or repeated (messages
 * may be lost: SUB drops when full).
 */
static void bus_reader_events(struct bus_reader *r, struct rc_frame_reader *fr, bool whole, const char *room,
			      uint16_t room_len)
{
	struct rc_frame_event ev;
	uint64_t prev = r->flush_last;

	r->frames++;
	while (rc_frame_reader_next(fr, &ev)) {
		if (ev.gseq <= prev || ev.gseq > LOAD_TOTAL || r->evs[ev.gseq].bus_rseq != 0) {
			snprintf(r->err, sizeof(r->err), "bus gseq %llu after %llu", (unsigned long long)ev.gseq,
				 (unsigned long long)prev);
			return;
		}
		if (!whole &&
		    (ev.room_len != room_len || (ev.room_len > 0 && memcmp(ev.room, room, ev.room_len) != 0))) {
			snprintf(r->err, sizeof(r->err), "event %llu not in its frame's room",
				 (unsigned long long)ev.gseq);
			return;
		}
		prev = ev.gseq;
		if (ev.gseq > r->last_gseq)
			r->last_gseq = ev.gseq;
		r->evs[ev.gseq].bus_rseq = ev.rseq;
		r->evs[ev.gseq].bus_room = room_index(ev.room, ev.room_len);
		r->received++;
	}
}

static void *bus_reader_run(void *arg)
{
	struct bus_reader *r = arg;

	while (!atomic_load(&r->stop) && !atomic_load(&r->failed)) {
		struct rc_bus_msg bm;
		struct rc_frame_reader fr;
		nng_msg *msg;
		int rv = nng_recvmsg(r->sub, &msg, 0);

		if (rv == NNG_ETIMEDOUT)
			continue;
		if (rv != 0) {
			snprintf(r->err, sizeof(r->err), "bus recv: %s", nng_strerror(rv));
			atomic_store(&r->failed, true);
			break;
		}
		if ((rv = rc_bus_msg_parse(&bm, nng_msg_body(msg), nng_msg_len(msg))) != RC_OK) {
			snprintf(r->err, sizeof(r->err), "bus topic rejected: %s", rc_strerror(rv));
		} else if (bm.index) {
			struct rc_index_reader ir;
			if ((rv = rc_index_reader_init(&ir, bm.body, bm.body_len)) != RC_OK)
				snprintf(r->err, sizeof(r->err), "bus index rejected: %s", rc_strerror(rv));
			else if (ir.hdr.epoch != r->b->epoch_value)
				snprintf(r->err, sizeof(r->err), "bus index of epoch %llx", (unsigned long long)ir.hdr.epoch);
			else if (ir.first_gseq <= r->flush_last && !(ir.hdr.flags & RC_FRAME_TICK))
				snprintf(r->err, sizeof(r->err), "flush %llu..%llu after %llu",
					 (unsigned long long)ir.first_gseq, (unsigned long long)ir.hdr.last_gseq,
					 (unsigned long long)r->flush_last);
			else if (ir.hdr.flags & RC_FRAME_TICK)
				r->ticks++;
			else {
				if (ir.hdr.flags & RC_FRAME_WHOLE) {
					r->whole++;
					bus_reader_events(r, &ir.whole, true, NULL, 0);
				}
				r->flush_last = ir.hdr.last_gseq;
			}
		} else if ((rv = rc_frame_reader_init(&fr, bm.body, bm.body_len)) != RC_OK) {
			snprintf(r->err, sizeof(r->err), "bus frame rejected: %s", rc_strerror(rv));
		} else if (fr.hdr.epoch != r->b->epoch_value) {
			snprintf(r->err, sizeof(r->err), "bus frame of epoch %llx", (unsigned long long)fr.hdr.epoch);
		} else {
			bus_reader_events(r, &fr, false, bm.room, bm.room_len);
		}
		if (r->err[0] != '\0')
			atomic_store(&r->failed, true);
		atomic_store(&r->ready, true);
		nng_msg_free(msg);
	}
	return NULL;
}

/* Replays everything (firehose, pages of 10000) into evs; checks gseq, rseq and each event's publisher. */
static void verify_by_replay(struct broker_fixture *b, nng_socket s, const struct publisher *pubs,
			     struct load_event *evs)
{
	uint64_t next = 1, rseq[LOAD_ROOMS + 1] = { 0 };
	char req[128];

	for (int page = 0; next <= LOAD_TOTAL; page++) {
		struct json_object *r, *events;
		bool more;

		assert_true(page < 2 * LOAD_TOTAL / 10000);
		snprintf(req, sizeof(req), "{\"op\":\"replay\",\"after\":\"%s-%llu\",\"limit\":10000}", b->epoch,
			 (unsigned long long)(next - 1));
		r = call_ok(s, req);
		events = json_get(r, "events");
		more = json_object_get_boolean(json_get(r, "more"));
		assert_true(json_object_array_length(events) > 0);
		for (size_t i = 0; i < json_object_array_length(events); i++) {
			struct json_object *e = json_object_array_get_idx(events, i), *ev = json_get(e, "event");
			struct json_object *room = json_get(ev, "room_id");
			uint64_t g = id_gseq(b, json_get(e, "id")),
				 rs = (uint64_t)json_object_get_int64(json_get(e, "rseq"));
			int t = json_object_get_int(json_get(ev, "t")), k = json_object_get_int(json_get(ev, "k"));
			int n = json_object_get_int(json_get(ev, "i")), ri;

			if (g != next)
				fail_msg("replay: gseq %llu where %llu was due", (unsigned long long)g,
					 (unsigned long long)next);
			assert_true(t >= 0 && t < LOAD_PUBLISHERS && k >= 0 && k < LOAD_BATCHES && n >= 0 &&
				    n < LOAD_BATCH);
			/* the event sits where its publisher was told it would */
			assert_int_equal(g, pubs[t].first[k] + (uint64_t)n);
			ri = room_index(room ? json_object_get_string(room) : "",
					room ? (size_t)json_object_get_string_len(room) : 0);
			assert_int_equal(ri, load_room(t, k * LOAD_BATCH + n));
			if (rs != rseq[ri] + 1)
				fail_msg("replay: room %d rseq %llu after %llu at gseq %llu", ri,
					 (unsigned long long)rs, (unsigned long long)rseq[ri], (unsigned long long)g);
			rseq[ri] = rs;
			evs[g].rseq = rs;
			evs[g].room = ri;
			next++;
		}
		assert_int_equal(more, next <= LOAD_TOTAL);
		json_object_put(r);
	}
	/* every event was counted once in its room */
	uint64_t sum = 0;
	for (int i = 0; i <= LOAD_ROOMS; i++)
		sum += rseq[i];
	assert_int_equal(sum, LOAD_TOTAL);
	assert_int_equal(rseq[LOAD_ROOMS], LOAD_TOTAL / 10);

	/* a room's own index agrees with the firehose */
	struct json_object *r =
		call_ok(s, "{\"op\":\"replay\",\"rooms\":[\"room-2\"],\"global\":false,\"limit\":10000}");
	struct json_object *events = json_get(r, "events");
	uint64_t want = 0;
	for (uint64_t g = 1; g <= LOAD_TOTAL && want < 10000; g++) {
		if (evs[g].room != 2)
			continue;
		struct json_object *e = json_object_array_get_idx(events, (size_t)want);
		assert_non_null(e);
		assert_int_equal(id_gseq(b, json_get(e, "id")), g);
		assert_int_equal(json_object_get_int64(json_get(e, "rseq")), ++want);
	}
	assert_int_equal(json_object_array_length(events), want);
	json_object_put(r);
}

/* whole_bytes: the broker's --bus-whole-bytes ("0": every flush room by room) */
static void concurrent_publishers(void **state, const char *whole_bytes)
{
	struct broker_fixture *b;
	struct publisher *pubs = calloc(LOAD_PUBLISHERS, sizeof(*pubs));
	struct bus_reader *br = calloc(1, sizeof(*br));
	pthread_t threads[LOAD_PUBLISHERS], reader;
	nng_socket s;
	int64_t deadline;
	const char *const args[] = {
		"--bus-tick-ms", "20", "--history-events", "100000", "--bus-whole-bytes", whole_bytes, NULL,
	};

	assert_non_null(pubs);
	assert_non_null(br);
	b = start_broker(state, args);
	br->b = b;
	br->evs = calloc(LOAD_TOTAL + 1, sizeof(*br->evs));
	assert_non_null(br->evs);

	/* a subscriber on the bus, ready once the first idle tick arrived */
	assert_int_equal(nng_sub0_open(&br->sub), 0);
	assert_int_equal(nng_socket_set(br->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
	nng_socket_set_int(br->sub, NNG_OPT_RECVBUF, 8192);
	nng_socket_set_size(br->sub, NNG_OPT_RECVMAXSZ, 0);
	nng_socket_set_ms(br->sub, NNG_OPT_RECVTIMEO, 100);
	assert_int_equal(nng_dial(br->sub, b->bus_url, NULL, NNG_FLAG_NONBLOCK), 0);
	assert_int_equal(pthread_create(&reader, NULL, bus_reader_run, br), 0);
	deadline = proc_now_ms() + 10000;
	while (!atomic_load(&br->ready) && proc_now_ms() < deadline && !atomic_load(&br->failed))
		proc_poll_pause(5);
	if (!atomic_load(&br->ready)) {
		atomic_store(&br->stop, true);
		pthread_join(reader, NULL);
		fail_msg("no tick from the bus within 10 s: %s", br->err);
	}

	int64_t t0 = proc_now_ms();
	for (int t = 0; t < LOAD_PUBLISHERS; t++) {
		pubs[t].b = b;
		pubs[t].t = t;
		assert_int_equal(pthread_create(&threads[t], NULL, publisher_run, &pubs[t]), 0);
	}
	for (int t = 0; t < LOAD_PUBLISHERS; t++)
		pthread_join(threads[t], NULL);
	int64_t t1 = proc_now_ms();
	for (int t = 0; t < LOAD_PUBLISHERS; t++)
		if (pubs[t].err[0] != '\0') {
			atomic_store(&br->stop, true);
			pthread_join(reader, NULL);
			fail_msg("%s", pubs[t].err);
		}

	assert_int_equal(api_open(&s, b->api_url, API_TIMEOUT_MS), 0);
	assert_int_equal(broker_gseq(s), LOAD_TOTAL);
	verify_by_replay(b, s, pubs, br->evs);

	/* the broker sent every event on the bus (what reached us may be less) */
	deadline = proc_now_ms() + 10000;
	for (;;) {
		struct json_object *r = call_ok(s, "{\"op\":\"stats\"}");
		struct json_object *bus = json_get(r, "bus");
		int64_t sent = json_object_get_int64(json_get(bus, "events"));

		assert_int_equal(json_object_get_int64(json_get(bus, "send_errors")), 0);
		assert_int_equal(json_object_get_int64(json_get(json_get(r, "history"), "events")), LOAD_TOTAL);
		json_object_put(r);
		if (sent == LOAD_TOTAL)
			break;
		assert_true(sent < LOAD_TOTAL);
		if (proc_now_ms() > deadline)
			fail_msg("the bus sent %lld of %d events", (long long)sent, LOAD_TOTAL);
		proc_poll_pause(10);
	}
	deadline = proc_now_ms() + 3000;
	while (atomic_load(&br->last_gseq) < LOAD_TOTAL && proc_now_ms() < deadline && !atomic_load(&br->failed))
		proc_poll_pause(10);
	atomic_store(&br->stop, true);
	pthread_join(reader, NULL);
	rc_nng_close_within(br->sub, NNG_CLOSE_MS);
	if (br->err[0] != '\0')
		fail_msg("%s", br->err);
	/* what the bus delivered agrees with the history */
	assert_true(br->received > 0);
	for (uint64_t g = 1; g <= LOAD_TOTAL; g++) {
		if (br->evs[g].bus_rseq == 0)
			continue;
		assert_int_equal(br->evs[g].bus_rseq, br->evs[g].rseq);
		assert_int_equal(br->evs[g].bus_room, br->evs[g].room);
	}
	/* small flushes went whole (one message each), unless that is off */
	if (strcmp(whole_bytes, "0") == 0)
		assert_int_equal(br->whole, 0);
	else
		assert_true(br->whole > 0);
	print_message("%d events in %lld ms; the bus delivered %llu of them in %llu frames (%llu whole flushes)\n",
		      LOAD_TOTAL, (long long)(t1 - t0), (unsigned long long)br->received,
		      (unsigned long long)br->frames, (unsigned long long)br->whole);
	rc_nng_close_within(s, NNG_CLOSE_MS);
	free(br->evs);
	free(br);
	free(pubs);
}

static void test_concurrent_publishers(void **state)
{
	concurrent_publishers(state, "16384");
}

static void test_concurrent_publishers_room_frames(void **state)
{
	concurrent_publishers(state, "0");
}

/* ---- 4. replay ---- */

/* Room of event n (1-based) in the replay tests: "a", "b", or global (NULL). */
static const char *replay_room(uint64_t n)
{
	return n % 3 == 0 ? NULL : n % 3 == 1 ? "a" : "b";
}

static bool replay_match(uint64_t n, bool want_a, bool want_b, bool global)
{
	const char *r = replay_room(n);

	return r == NULL ? global : r[0] == 'a' ? want_a : want_b;
}

/* Publishes events n = from..to with replay_room(n). */
static void replay_publish(struct broker_fixture *b, nng_socket s, uint64_t from, uint64_t to)
{
	struct rc_buf ev;

	rc_buf_init(&ev);
	rc_buf_puts(&ev, "[");
	for (uint64_t n = from; n <= to; n++) {
		const char *room = replay_room(n);
		rc_buf_printf(&ev, "%s{\"type\":\"r\",\"n\":%llu", n > from ? "," : "", (unsigned long long)n);
		if (room != NULL)
			rc_buf_printf(&ev, ",\"room_id\":\"%s\"", room);
		rc_buf_puts(&ev, "}");
	}
	rc_buf_puts(&ev, "]");
	assert_int_equal(publish(b, s, ev.data, (size_t)(to - from + 1)), from);
	rc_buf_fini(&ev);
}

/*
 * Replays with the given selection (rooms_json: a JSON array text or NULL for
 * the firehose) after gseq `after`, following `more` in pages of `limit`, and
 * checks exactly the matching events in from..to come back, in order.
 */
static void replay_check(struct broker_fixture *b, nng_socket s, const char *rooms_json, bool global, uint64_t after,
			 int limit, uint64_t to, bool want_a, bool want_b)
{
	uint64_t next = after + 1, pages = 0;
	bool more = true;
	char req[256];

	while (more) {
		struct json_object *r, *events;

		assert_true(pages++ < 200);
		snprintf(req, sizeof(req), "{\"op\":\"replay\",%s%s%s\"global\":%s,\"after\":\"%s-%llu\",\"limit\":%d}",
			 rooms_json ? "\"rooms\":" : "", rooms_json ? rooms_json : "", rooms_json ? "," : "",
			 global ? "true" : "false", b->epoch, (unsigned long long)after, limit);
		r = call_ok(s, req);
		events = json_get(r, "events");
		more = json_object_get_boolean(json_get(r, "more"));
		assert_true(json_object_array_length(events) <= (size_t)limit);
		if (more)
			assert_int_equal(json_object_array_length(events), limit);
		for (size_t i = 0; i < json_object_array_length(events); i++) {
			struct json_object *e = json_object_array_get_idx(events, i);
			uint64_t g = id_gseq(b, json_get(e, "id"));

			while (next <= to && !(rooms_json == NULL || replay_match(next, want_a, want_b, global)))
				next++;
			if (g != next)
				fail_msg("%s: got gseq %llu, want %llu", req, (unsigned long long)g,
					 (unsigned long long)next);
			assert_int_equal(json_object_get_int64(json_get(json_get(e, "event"), "n")), g);
			after = g;
			next++;
		}
		json_object_put(r);
	}
	/* nothing matching was left out at the end */
	while (next <= to && !(rooms_json == NULL || replay_match(next, want_a, want_b, global)))
		next++;
	assert_true(next > to);
}

/* The same with format "frame", following RC_FRAME_MORE. */
static void replay_check_frames(struct broker_fixture *b, nng_socket s, uint64_t after, int limit, uint64_t to)
{
	uint64_t next = after + 1;
	bool more = true;
	char req[256];

	for (int pages = 0; more; pages++) {
		struct rc_frame_reader fr;
		struct rc_frame_event ev;
		size_t len;
		char *raw;

		assert_true(pages < 200);
		snprintf(req, sizeof(req),
			 "{\"op\":\"replay\",\"format\":\"frame\",\"rooms\":[\"b\"],\"after\":\"%s-%llu\","
			 "\"limit\":%d}",
			 b->epoch, (unsigned long long)after, limit);
		raw = api_call_raw(s, req, strlen(req), &len, NULL);
		assert_non_null(raw);
		assert_int_equal(rc_frame_reader_init(&fr, raw, len), RC_OK);
		assert_int_equal(fr.hdr.epoch, b->epoch_value);
		assert_true(fr.hdr.flags & RC_FRAME_REPLAY);
		more = (fr.hdr.flags & RC_FRAME_MORE) != 0;
		while (rc_frame_reader_next(&fr, &ev)) {
			while (next <= to && !replay_match(next, false, true, true))
				next++;
			assert_int_equal(ev.gseq, next);
			assert_int_equal(ev.room_len, replay_room(next) ? 1 : 0);
			after = ev.gseq;
			next++;
		}
		free(raw);
	}
	while (next <= to && !replay_match(next, false, true, true))
		next++;
	assert_true(next > to);
}

static void test_replay(void **state)
{
	static const char *const args[] = { "--history-events", "100", NULL };
	struct broker_fixture *b = start_broker(state, args);
	nng_socket s;
	char req[256];

	assert_int_equal(api_open(&s, b->api_url, API_TIMEOUT_MS), 0);
	replay_publish(b, s, 1, 60);
	replay_check(b, s, "[\"a\"]", true, 10, 1000, 60, true, false);
	replay_check(b, s, "[\"a\"]", false, 10, 1000, 60, true, false);
	replay_check(b, s, "[\"a\",\"b\"]", false, 0, 1000, 60, true, true);
	replay_check(b, s, "[\"b\",\"a\",\"b\"]", true, 33, 1000, 60, true, true);
	replay_check(b, s, NULL, true, 0, 1000, 60, true, true);
	replay_check(b, s, NULL, true, 59, 1000, 60, true, true);
	replay_check(b, s, NULL, true, 60, 1000, 60, true, true);
	/* paging */
	replay_check(b, s, "[\"b\"]", true, 0, 7, 60, false, true);
	replay_check(b, s, "[\"a\"]", false, 5, 1, 60, true, false);
	replay_check(b, s, NULL, true, 0, 9, 60, true, true);
	replay_check(b, s, "[]", true, 0, 4, 60, false, false);
	replay_check_frames(b, s, 0, 6, 60);

	/* 120 events in a history of 100: 21..120 retained */
	replay_publish(b, s, 61, 120);
	replay_check(b, s, NULL, true, 20, 33, 120, true, true);
	replay_check(b, s, "[\"a\"]", true, 20, 1000, 120, true, false);
	replay_check(b, s, NULL, true, 120, 10, 120, true, true);
	static const uint64_t gone[] = { 0, 1, 19 };
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		snprintf(req, sizeof(req), "{\"op\":\"replay\",\"after\":\"%s-%llu\"}", b->epoch,
			 (unsigned long long)gone[i]);
		assert_code(s, req, "history_unavailable");
		snprintf(req, sizeof(req), "{\"op\":\"replay\",\"rooms\":[\"a\"],\"after\":\"%s-%llu\"}", b->epoch,
			 (unsigned long long)gone[i]);
		assert_code(s, req, "history_unavailable");
	}
	snprintf(req, sizeof(req), "{\"op\":\"replay\",\"after\":\"%s-121\"}", b->epoch);
	assert_code(s, req, "history_unavailable");
	/* no after: everything retained */
	struct json_object *r = call_ok(s, "{\"op\":\"replay\"}");
	assert_int_equal(json_object_array_length(json_get(r, "events")), 100);
	assert_int_equal(id_gseq(b, json_get(json_object_array_get_idx(json_get(r, "events"), 0), "id")), 21);
	json_object_put(r);
	/* another epoch */
	snprintf(req, sizeof(req), "{\"op\":\"replay\",\"after\":\"%llx-50\"}",
		 (unsigned long long)(b->epoch_value + 1));
	assert_code(s, req, "epoch_mismatch");
	/* not ids */
	static const char *const bad[] = { "\"nope\"", "\"\"",	   "\"-5\"",   "5",	  "null",
					   "\"E-\"",   "\"E-01\"", "\"E-5x\"", "\"E-+5\"" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char val[64];
		const char *e = strstr(bad[i], "E-");

		if (e != NULL)
			snprintf(val, sizeof(val), "\"%s%s", b->epoch, e + 1);
		else
			snprintf(val, sizeof(val), "%s", bad[i]);
		snprintf(req, sizeof(req), "{\"op\":\"replay\",\"after\":%s}", val);
		if (strcmp(bad[i], "null") == 0) {
			/* null is "absent": all retained */
			json_object_put(call_ok(s, req));
			continue;
		}
		assert_code(s, req, "invalid_id");
	}
	rc_nng_close_within(s, NNG_CLOSE_MS);
}

/* ---- 5. garbage on the api ---- */

static uint64_t rng_next(uint64_t *x)
{
	/* xorshift64*: fixed seed, same bytes on every run */
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545f4914f6cdd1dull;
}

static bool known_code(const char *c)
{
	for (size_t i = 0; c != NULL && known_codes[i] != NULL; i++)
		if (strcmp(c, known_codes[i]) == 0)
			return true;
	return false;
}

/* Sends req[0..len); checks the reply is one JSON object with a boolean ok (and a known code when false). */
static bool fuzz_call(nng_socket s, const uint8_t *req, size_t len, size_t iter)
{
	struct json_tokener *tok;
	struct json_object *r, *ok;
	size_t rlen;
	int err = 0;
	char *raw = api_call_raw(s, req, len, &rlen, &err);
	bool is_ok;

	if (raw == NULL)
		fail_msg("request %zu (%zu bytes): no reply: %s", iter, len, nng_strerror(err));
	if (rlen >= 4 && memcmp(raw, "RCF1", 4) == 0) {
		/* a replay that asked for "format":"frame" */
		struct rc_frame_reader fr;
		if (rc_frame_reader_init(&fr, raw, rlen) != RC_OK || !(fr.hdr.flags & RC_FRAME_REPLAY))
			fail_msg("request %zu: a corrupt frame reply", iter);
		free(raw);
		return true;
	}
	tok = json_tokener_new();
	r = json_tokener_parse_ex(tok, raw, (int)rlen);
	ok = json_get(r, "ok");
	if (r == NULL || json_tokener_get_parse_end(tok) != rlen || ok == NULL ||
	    !json_object_is_type(ok, json_type_boolean))
		fail_msg("request %zu: the reply is not an api reply: %.300s", iter, raw);
	is_ok = json_object_get_boolean(ok);
	if (!is_ok && !known_code(api_reply_code(r)))
		fail_msg("request %zu: error without a known code: %.300s", iter, raw);
	if (!is_ok && json_object_get_string_len(json_get(json_get(r, "error"), "message")) == 0)
		fail_msg("request %zu: error without a message: %.300s", iter, raw);
	json_object_put(r);
	json_tokener_free(tok);
	free(raw);
	return is_ok;
}

static void test_garbage(void **state)
{
	static const char *const seeds[] = {
		"{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":\"r\",\"x\":[1,{\"y\":null}]},{\"type\":"
		"\"g\"}]}",
		"{\"op\":\"replay\",\"rooms\":[\"r\",\"s\"],\"global\":false,\"after\":\"abc-1\",\"limit\":5,"
		"\"format\":\"frame\"}",
		"{\"op\":\"replay\",\"format\":\"json\"}",
		"{\"op\":\"stats\"}",
		"{\"op\":\"ping\"}",
	};
	static const uint8_t specials[] = { '{', '}', '[', ']', '"', ',', ':', '\\', '0', ' ', 0x00, 0xff };
	struct broker_fixture *b = *state;
	uint8_t *buf = malloc(8192);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t oks = 0;
	nng_socket s;

	assert_non_null(buf);
	assert_int_equal(api_open(&s, b->api_url, API_TIMEOUT_MS), 0);
	for (size_t i = 0; i < 1000; i++) {
		size_t len = (size_t)(rng_next(&x) % 4097);
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rng_next(&x);
		if (fuzz_call(s, buf, len, i))
			fail_msg("random request %zu (%zu bytes) was accepted", i, len);
	}
	/* valid requests with a few bytes changed, inserted, removed or cut */
	for (size_t i = 0; i < 1000; i++) {
		const char *seed = seeds[rng_next(&x) % (sizeof(seeds) / sizeof(seeds[0]))];
		size_t len = strlen(seed), edits = 1 + rng_next(&x) % 4;

		memcpy(buf, seed, len);
		for (size_t e = 0; e < edits && len > 0; e++) {
			size_t at = (size_t)(rng_next(&x) % len);
			switch (rng_next(&x) % 5) {
			case 0: buf[at] = (uint8_t)rng_next(&x); break;
			case 1: buf[at] = specials[rng_next(&x) % sizeof(specials)]; break;
			case 2:
				memmove(buf + at + 1, buf + at, len - at);
				buf[at] = (uint8_t)rng_next(&x);
				len++;
				break;
			case 3:
				memmove(buf + at, buf + at + 1, len - at - 1);
				len--;
				break;
			default: len = at; break;
			}
		}
		oks += fuzz_call(s, buf, len, 1000 + i);
	}
	print_message("%zu of 1000 mutated requests were still valid\n", oks);
	/* still serving */
	publish(b, s, "[{\"type\":\"after.fuzz\",\"room_id\":\"r\"}]", 1);
	struct json_object *r = call_ok(s, "{\"op\":\"stats\"}");
	assert_true(json_object_get_int64(json_get(r, "errors")) >= 1000);
	assert_true(json_object_get_int64(json_get(r, "requests")) >= 2001);
	json_object_put(r);
	rc_nng_close_within(s, NNG_CLOSE_MS);
	free(buf);
}

/* ---- 7. memory under load ---- */

/* ASan's shadow memory and quarantine make the resident set meaningless: measured, not checked. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_CHECKED false
#else
#define RSS_CHECKED true
#endif

/* A field of the broker's /proc status in kB ("VmRSS:", "VmHWM:"), 0 when unknown. */
static size_t broker_status_kb(const struct broker_fixture *b, const char *field)
{
	char path[64], *status, *p;
	size_t kb = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)b->proc.pid);
	status = proc_read_file(path, NULL);
	if (status != NULL && (p = strstr(status, field)) != NULL)
		kb = (size_t)strtoull(p + strlen(field), NULL, 10);
	free(status);
	return kb;
}

/* The broker's resident set (VmRSS) in bytes, 0 when unknown. */
static size_t broker_rss(const struct broker_fixture *b)
{
	return broker_status_kb(b, "VmRSS:") * 1024;
}

#define ROOMS_N 100000
/* a room and its one event; before rooms' indexes were sized by what they hold: ~4.3 KB */
#define ROOM_RSS_MAX 1024

/*
 * 100,000 events into 100,000 new rooms, 1,000 per publish: the broker grows
 * by what the rooms and their events cost, and the room past --max-rooms is
 * refused (too_many_rooms) while the rooms it has go on.
 */
static void test_room_memory(void **state)
{
	static const char *const args[] = { "--max-rooms", "100000", NULL };
	struct broker_fixture *b = start_broker(state, args);
	struct json_object *r;
	struct rc_buf ev;
	size_t rss0, rss1, room_bytes;
	nng_socket s;

	assert_int_equal(api_open(&s, b->api_url, API_TIMEOUT_MS), 0);
	publish(b, s, "[{\"type\":\"warm\"}]", 1);
	rss0 = broker_rss(b);
	for (size_t k = 0; k < ROOMS_N / 1000; k++) {
		rc_buf_init(&ev);
		rc_buf_puts(&ev, "[");
		for (size_t i = 0; i < 1000; i++)
			rc_buf_printf(&ev, "%s{\"type\":\"t\",\"room_id\":\"room-%06zu\"}", i ? "," : "", k * 1000 + i);
		rc_buf_puts(&ev, "]");
		publish(b, s, ev.data, 1000);
		rc_buf_fini(&ev);
	}
	rss1 = broker_rss(b);
	r = call_ok(s, "{\"op\":\"stats\"}");
	assert_int_equal(json_object_get_int64(json_get(r, "rooms")), ROOMS_N);
	room_bytes = (size_t)json_object_get_int64(json_get(r, "room_bytes"));
	json_object_put(r);
	print_message("%d rooms of one event: the broker grew by %zu bytes a room (rooms and events; "
		      "stats room_bytes: %zu a room)\n",
		      ROOMS_N, rss1 > rss0 ? (rss1 - rss0) / ROOMS_N : 0, room_bytes / ROOMS_N);
	if (RSS_CHECKED && rss0 > 0 && rss1 > rss0 && (rss1 - rss0) / ROOMS_N > ROOM_RSS_MAX)
		fail_msg("the broker grew by %zu bytes a room, want <= %d", (rss1 - rss0) / ROOMS_N, ROOM_RSS_MAX);
	/* one room more: refused whole, known rooms go on */
	assert_code(s,
		    "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"room_id\":\"room-000001\"},"
		    "{\"type\":\"t\",\"room_id\":\"one-more\"}]}",
		    "too_many_rooms");
	publish(b, s, "[{\"type\":\"t\",\"room_id\":\"room-000001\"},{\"type\":\"t\"}]", 2);
	rc_nng_close_within(s, NNG_CLOSE_MS);
}

/* Resets the broker's VmHWM to its current resident set (Linux clear_refs 5). */
static bool reset_peak_rss(const struct broker_fixture *b)
{
	char path[64];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)b->proc.pid);
	f = fopen(path, "w");
	if (f == NULL)
		return false;
	ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok;
}

#define REPLAY_CLIENTS 16
#define REPLAY_ROUNDS 3
#define REPLAY_EVENT_PAD 6000
#define REPLAY_EVENTS 10000 /* ~60 MB of history */
#define REPLAY_CAP (4 << 20) /* the default --replay-max-bytes */
/* peak growth while 16 clients replay: answers of 60 MB each grew the broker by ~1 GB before the cap */
#define REPLAY_RSS_MAX (256u << 20)

struct replayer {
	const char *url;
	size_t pages, busy, max_len;
	char err[256];
};

static void *replayer_run(void *arg)
{
	static const char req[] = "{\"op\":\"replay\",\"limit\":10000,\"max_bytes\":1000000000,\"format\":\"frame\"}";
	struct replayer *r = arg;
	nng_socket s;

	if (api_open(&s, r->url, API_TIMEOUT_MS) != 0) {
		snprintf(r->err, sizeof(r->err), "cannot open the api socket");
		return NULL;
	}
	while (r->pages < REPLAY_ROUNDS && r->err[0] == '\0') {
		struct rc_frame_reader fr;
		size_t len;
		int err = 0;
		char *raw = api_call_raw(s, req, sizeof(req) - 1, &len, &err);

		if (raw == NULL) {
			snprintf(r->err, sizeof(r->err), "no reply: %s", nng_strerror(err));
		} else if (len >= 4 && memcmp(raw, "RCF1", 4) == 0) {
			if (rc_frame_reader_init(&fr, raw, len) != RC_OK || !(fr.hdr.flags & RC_FRAME_MORE) ||
			    fr.hdr.count == 0)
				snprintf(r->err, sizeof(r->err), "a bad replay frame (%zu bytes)", len);
			r->max_len = len > r->max_len ? len : r->max_len;
			r->pages++;
		} else if (strstr(raw, "\"busy\"") != NULL) {
			r->busy++; /* asked again */
		} else {
			snprintf(r->err, sizeof(r->err), "%.200s", raw);
		}
		free(raw);
	}
	rc_nng_close_within(s, NNG_CLOSE_MS);
	return NULL;
}

/*
 * 16 clients each ask 3 times for the whole history of 60 MB at once: each
 * answer holds at most --replay-max-bytes with MORE set, at most
 * --max-replays answers are built at once (the others wait their turn), and
 * the broker's peak resident set grows by a bounded amount.
 */
static void test_replay_memory(void **state)
{
	struct broker_fixture *b = start_broker(state, NULL);
	struct replayer rs[REPLAY_CLIENTS];
	pthread_t threads[REPLAY_CLIENTS];
	size_t rss0, peak, busy = 0, max_len = 0;
	struct rc_buf ev;
	bool peak_reset;
	nng_socket s;

	assert_int_equal(api_open(&s, b->api_url, API_TIMEOUT_MS), 0);
	rc_buf_init(&ev);
	for (int k = 0; k < REPLAY_EVENTS / 100; k++) {
		ev.len = 0;
		rc_buf_puts(&ev, "[");
		for (int i = 0; i < 100; i++)
			rc_buf_printf(&ev, "%s{\"type\":\"t\",\"room_id\":\"r%d\",\"pad\":\"%0*d\"}", i ? "," : "",
				      i % 10, REPLAY_EVENT_PAD, k);
		rc_buf_puts(&ev, "]");
		publish(b, s, ev.data, 100);
	}
	rc_buf_fini(&ev);
	rc_nng_close_within(s, NNG_CLOSE_MS);
	peak_reset = reset_peak_rss(b);
	rss0 = broker_rss(b);
	memset(rs, 0, sizeof(rs));
	for (int t = 0; t < REPLAY_CLIENTS; t++) {
		rs[t].url = b->api_url;
		assert_int_equal(pthread_create(&threads[t], NULL, replayer_run, &rs[t]), 0);
	}
	for (int t = 0; t < REPLAY_CLIENTS; t++) {
		pthread_join(threads[t], NULL);
		if (rs[t].err[0] != '\0')
			fail_msg("replay client %d: %s", t, rs[t].err);
		busy += rs[t].busy;
		max_len = rs[t].max_len > max_len ? rs[t].max_len : max_len;
	}
	peak = broker_status_kb(b, peak_reset ? "VmHWM:" : "VmRSS:") * 1024;
	print_message("%d clients x %d replays of a 60 MB history: answers of at most %zu bytes, %zu busy answers, "
		      "the broker's %s grew by %zu MB\n",
		      REPLAY_CLIENTS, REPLAY_ROUNDS, max_len, busy, peak_reset ? "peak" : "resident set",
		      peak > rss0 ? (peak - rss0) >> 20 : 0);
	if (max_len > REPLAY_CAP + 128)
		fail_msg("a replay answer of %zu bytes, the cap is %d", max_len, REPLAY_CAP);
	if (RSS_CHECKED && rss0 > 0 && peak > rss0 && peak - rss0 > REPLAY_RSS_MAX)
		fail_msg("the broker grew by %zu MB during the replays, want <= %u", (peak - rss0) >> 20,
			 REPLAY_RSS_MAX >> 20);
}

#define SLOW_PUBLISHES 2500
#define SLOW_BATCH 100
#define SLOW_PAD 1000 /* ~250 MB published in all */
/* what the broker may grow by while a subscriber reads nothing (it grew by all it published before) */
#define SLOW_RSS_MAX (128u << 20)

/* Reads exactly n bytes (SO_RCVTIMEO bounds each wait); false on EOF, error or timeout. */
static bool read_full(int fd, void *buf, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

/*
 * A bus subscriber over raw TCP that does the SP handshake (as a SUB), reads
 * the tick the broker sends to a new subscriber (so its pipe is up), and then
 * never reads again. Returns the fd, or -1.
 */
static int slow_subscriber(int port)
{
	static const uint8_t sp_sub[8] = { 0x00, 'S', 'P', 0x00, 0x00, 0x21, 0x00, 0x00 };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 10 };
	int fd = socket(AF_INET, SOCK_STREAM, 0), small = 4096;
	uint8_t hdr[8], len[8], body[256];
	uint64_t n = 0;

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || send(fd, sp_sub, 8, 0) != 8 ||
	    !read_full(fd, hdr, 8) || hdr[1] != 'S' || !read_full(fd, len, 8))
		goto fail;
	for (int i = 0; i < 8; i++)
		n = n << 8 | len[i];
	if (n > sizeof(body) || !read_full(fd, body, (size_t)n))
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/*
 * A bus subscriber that stops reading while ~250 MB of events are published:
 * what the broker queues for it is bounded in bytes (nng drops the oldest
 * messages for it), and the broker goes on serving.
 */
static void test_bus_slow_subscriber(void **state)
{
	static const char *const args[] = { "--history-bytes", "8m", NULL };
	struct broker_fixture *b = start_broker(state, args);
	struct json_object *r;
	struct rc_buf ev;
	size_t rss0, rss1;
	nng_socket s;
	int fd;

	fd = slow_subscriber(b->bus_port);
	if (fd < 0)
		fail_msg("the raw bus subscriber could not connect");
	assert_int_equal(api_open(&s, b->api_url, API_TIMEOUT_MS), 0);
	rss0 = broker_rss(b);
	rc_buf_init(&ev);
	for (int k = 0; k < SLOW_PUBLISHES; k++) {
		ev.len = 0;
		rc_buf_puts(&ev, "[");
		for (int i = 0; i < SLOW_BATCH; i++)
			rc_buf_printf(&ev, "%s{\"type\":\"t\",\"room_id\":\"r%d\",\"pad\":\"%0*d\"}", i ? "," : "", k % 3,
				      SLOW_PAD, i);
		rc_buf_puts(&ev, "]");
		publish(b, s, ev.data, SLOW_BATCH);
	}
	rc_buf_fini(&ev);
	rss1 = broker_rss(b);
	r = call_ok(s, "{\"op\":\"stats\"}");
	print_message("~%d MB published with a bus subscriber that reads nothing: the broker grew by %zu MB "
		      "(bus messages %" PRId64 ")\n",
		      SLOW_PUBLISHES * SLOW_BATCH * SLOW_PAD >> 20, rss1 > rss0 ? (rss1 - rss0) >> 20 : 0,
		      json_object_get_int64(json_get(json_get(r, "bus"), "frames")));
	json_object_put(r);
	close(fd);
	rc_nng_close_within(s, NNG_CLOSE_MS);
	if (RSS_CHECKED && rss0 > 0 && rss1 > rss0 && rss1 - rss0 > SLOW_RSS_MAX)
		fail_msg("the broker grew by %zu MB, want <= %u", (rss1 - rss0) >> 20, SLOW_RSS_MAX >> 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_publish_raw_req, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_nngcat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_publishers, NULL, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_publishers_room_frames, NULL, teardown),
		cmocka_unit_test_setup_teardown(test_replay, NULL, teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_room_memory, NULL, teardown),
		cmocka_unit_test_setup_teardown(test_replay_memory, NULL, teardown),
		cmocka_unit_test_setup_teardown(test_bus_slow_subscriber, NULL, teardown),
	};

	if (proc_init() != 0) {
		fprintf(stderr, "cannot create a temporary directory\n");
		return 1;
	}
	return cmocka_run_group_tests_name("integration_broker", tests, NULL, NULL);
}
