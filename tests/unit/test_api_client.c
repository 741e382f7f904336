/*
 * test_api_client.c - a gateway with several brokers' apis (--broker-api
 * A,B; gateway/api_client.c, publish.c): a publish whose broker fails after
 * the request went out (its connection lost, or no answer in half the time
 * left) is sent again, byte for byte, to another broker within
 * --publish-timeout-ms, and the client gets 201, not 504; the events
 * without an idempotency key get one from the gateway ("gw-<id>-<n>", each
 * its own) so that the resend cannot publish them twice, those with a key
 * keep it; a resume's replay (a read) is sent again too; with one broker
 * nothing changes: no key is added and a lost connection is 504.
 *
 * On a real gateway loop (gw_fixture.h) whose real api client dials REP
 * sockets the test holds, one per broker; closing one is that broker dying.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_client.h"
#include "error.h"
#include "frame.h"
#include "gw_fixture.h"
#include "hub.h"
#include "log.h"

static struct gwf fx;
static bool rep_closed[GWF_MAX_APIS];

static int setup_with(void **state, unsigned napis, int64_t publish_timeout_ms)
{
	struct gw_options o;

	memset(rep_closed, 0, sizeof(rep_closed));
	gwf_options(&o);
	o.publish_timeout_ms = publish_timeout_ms;
	gwf_start_apis(&fx, &o, napis);
	*state = &fx;
	return 0;
}

static int setup_two(void **state)
{
	return setup_with(state, 2, 20000);
}

/* A broker that does not answer is given up after half of the 2 s left. */
static int setup_two_short(void **state)
{
	return setup_with(state, 2, 2000);
}

static int setup_one(void **state)
{
	return setup_with(state, 1, 20000);
}

static int teardown(void **state)
{
	gwf_stop(*state);
	return 0;
}

static struct gwf_client *post(const char *body, const char *extra)
{
	struct gwf_client *c = gwf_connect(&fx, 0);
	char req[4096];

	snprintf(req, sizeof(req),
		 "POST /api/v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n%sContent-Length: "
		 "%zu\r\n\r\n%s",
		 extra ? extra : "", strlen(body), body);
	gwf_send(c, req);
	return c;
}

/* The body of c's answer once it came whole; its status in *status. */
static const char *answer(struct gwf_client *c, int *status)
{
	const char *body;

	GWF_WAIT(&fx, (body = strstr(c->in, "\r\n\r\n")) != NULL && strchr(body + 4, '\n') != NULL);
	assert_int_equal(sscanf(c->in, "HTTP/1.1 %d", status), 1);
	return body + 4;
}

/* The next request any broker still up received (which: its index), NUL-terminated (static). */
static const char *request_any(unsigned *which)
{
	static char req[65536];
	uint64_t deadline = gwf_deadline();

	for (;;) {
		for (unsigned i = 0; i < fx.napis; i++) {
			nng_msg *m;
			if (rep_closed[i] || nng_recvmsg(fx.reps[i], &m, NNG_FLAG_NONBLOCK) != 0)
				continue;
			assert_true(nng_msg_len(m) < sizeof(req));
			memcpy(req, nng_msg_body(m), nng_msg_len(m));
			req[nng_msg_len(m)] = '\0';
			nng_msg_free(m);
			*which = i;
			return req;
		}
		if (!gwf_turn(&fx, deadline))
			fail_msg("no broker got a request");
	}
}

/* Broker i dies: its socket closes, and with it its connection to the gateway. */
static void broker_dies(unsigned i)
{
	nng_close(fx.reps[i]);
	rep_closed[i] = true;
	GWF_WAIT(&fx, !gw_api_broker_connected(fx.gw.api, i));
}

static void reply(unsigned i, const char *text)
{
	gwf_api_reply_on(&fx, i, text, strlen(text));
}

static void assert_has(const char *text, const char *needle)
{
	if (strstr(text, needle) == NULL)
		fail_msg("no %s in: %s", needle, text);
}

/* The key the gateway gave the event at *p in a request ("key":"gw-...); *p moves past it. */
static void gateway_key(const char **p, char *key, size_t cap)
{
	const char *k = strstr(*p, "\"key\":\"gw-"), *end;

	if (k == NULL)
		fail_msg("no gateway key in: %s", *p);
	k += 7;
	end = strchr(k, '"');
	assert_non_null(end);
	assert_true((size_t)(end - k) < cap);
	memcpy(key, k, (size_t)(end - k));
	key[end - k] = '\0';
	/* gw-<16 hex>-<n> */
	assert_true(strlen(key) > 20 && key[19] == '-');
	*p = end;
}

/* A POST in flight when its broker's connection drops: sent again to the other broker, same bytes; 201. */
static void test_publish_retried_when_the_connection_drops(void **state)
{
	struct gwf_client *c = post("{\"type\":\"m\",\"room_id\":\"r\"}", NULL);
	unsigned first, second;
	char req1[4096], key[128];
	const char *req, *p, *body;
	int status;

	(void)state;
	req = request_any(&first);
	assert_true(strlen(req) < sizeof(req1));
	strcpy(req1, req);
	p = req1;
	gateway_key(&p, key, sizeof(key));
	assert_has(req1, "{\"op\":\"publish\",\"events\":[{\"type\":\"m\",\"room_id\":\"r\",\"key\":\"gw-");
	broker_dies(first);
	req = request_any(&second);
	assert_int_not_equal(second, first);
	assert_string_equal(req, req1); /* the same key: the brokers publish it once */
	reply(second, "{\"ok\":true,\"ids\":[\"6f1c2a9e-7\"]}");
	body = answer(c, &status);
	assert_int_equal(status, 201);
	assert_string_equal(body, "{\"id\":\"6f1c2a9e-7\"}\n");
	assert_int_equal(gw_api_retries(fx.gw.api), 1);
}

/* A broker that takes the request and never answers: after half the time left it goes again; 201. */
static void test_publish_retried_when_the_broker_hangs(void **state)
{
	struct gwf_client *c = post("{\"type\":\"m\"}", "Idempotency-Key: k-1\r\n");
	unsigned first, second;
	char req1[4096];
	const char *req, *body;
	int status;

	(void)state;
	req = request_any(&first);
	strcpy(req1, req);
	assert_string_equal(req1, "{\"op\":\"publish\",\"events\":[{\"type\":\"m\",\"key\":\"k-1\"}]}");
	/* no answer: the same request again, on the connection nng has ready first: the other broker's */
	req = request_any(&second);
	assert_int_not_equal(second, first);
	assert_string_equal(req, req1);
	reply(second, "{\"ok\":true,\"ids\":[\"6f1c2a9e-8\"]}");
	body = answer(c, &status);
	assert_int_equal(status, 201);
	assert_string_equal(body, "{\"id\":\"6f1c2a9e-8\"}\n");
}

/* Keys: the client's are kept, each event without one gets its own. */
static void test_keys_for_events_without(void **state)
{
	struct gwf_client *c = post("[{\"type\":\"a\"},{\"type\":\"b\",\"key\":\"mine\"},{\"type\":\"c\"}]", NULL);
	unsigned which;
	char k1[128], k2[128];
	const char *req, *p, *body;
	int status;

	(void)state;
	req = request_any(&which);
	p = req;
	gateway_key(&p, k1, sizeof(k1));
	assert_has(p, "{\"type\":\"b\",\"key\":\"mine\"}");
	gateway_key(&p, k2, sizeof(k2));
	assert_string_not_equal(k1, k2);
	assert_memory_equal(k1, k2, 19); /* one gateway loop: the same id, another count */
	reply(which, "{\"ok\":true,\"ids\":[\"e-1\",\"e-2\",\"e-3\"]}");
	body = answer(c, &status);
	assert_int_equal(status, 201);
	assert_string_equal(body, "{\"ids\":[\"e-1\",\"e-2\",\"e-3\"]}\n");
}

/* A resume's replay whose broker dies is asked of the other broker. */
static void test_replay_retried(void **state)
{
	static const struct gwf_ev evs[] = { { 6, "a", NULL }, { 9, "a", NULL } };
	struct gwf_client *s;
	unsigned first, second;
	char req1[4096];
	uint8_t buf[1024];
	size_t len;
	const char *req;

	(void)state;
	gw_hub_start(&fx.gw.hub, GWF_EPOCH, 10); /* as the first bus flush would */
	s = gwf_stream(&fx, "room_id=a", "6f1c2a9e-5");
	req = request_any(&first);
	strcpy(req1, req);
	assert_has(req1, "\"op\":\"replay\"");
	broker_dies(first);
	req = request_any(&second);
	assert_string_equal(req, req1);
	len = gwf_frame(buf, sizeof(buf), GWF_EPOCH, 10, RC_FRAME_REPLAY, evs, 2);
	gwf_api_reply_on(&fx, second, buf, len);
	gwf_take(&fx, s, gwf_event_text(6, NULL));
	gwf_take(&fx, s, gwf_event_text(9, NULL));
}

/* One broker: no key added, and a lost connection after the send is 504, never a resend. */
static void test_one_broker_unchanged(void **state)
{
	struct gwf_client *c = post("{\"type\":\"m\"}", NULL);
	unsigned which;
	const char *req, *body;
	int status;

	(void)state;
	req = request_any(&which);
	assert_string_equal(req, "{\"op\":\"publish\",\"events\":[{\"type\":\"m\"}]}");
	broker_dies(0);
	body = answer(c, &status);
	assert_int_equal(status, 504);
	assert_has(body, "publish_outcome_unknown");
	assert_int_equal(gw_api_retries(fx.gw.api), 0);
}

/* What one direct api call got. */
struct got {
	bool done;
	int err;
	char reply[256];
};

static void got_cb(void *arg, int err, bool sent, const char *reply, size_t len)
{
	struct got *g = arg;

	(void)sent;
	g->done = true;
	g->err = err;
	if (reply != NULL && len < sizeof(g->reply)) {
		memcpy(g->reply, reply, len);
		g->reply[len] = '\0';
	}
}

#define QUEUED_CALLS 8

/*
 * Calls pending on a broker when its connection drops, whatever their step:
 * taken by it and waiting for the answer, handed to the connection, or still
 * waiting to be sent behind those (nng 1.5.2 would keep these for the next
 * connection to the same broker, until their time runs out): every one goes
 * to the other broker at once and gets its own answer.
 */
static void test_calls_queued_on_a_lost_broker_move(void **state)
{
	struct got got[QUEUED_CALLS];
	char req[QUEUED_CALLS][32];
	unsigned answered = 0;

	(void)state;
	memset(got, 0, sizeof(got));
	/* round-robin: half of them to each broker; neither answers yet, so each one's calls pile up */
	for (unsigned i = 0; i < QUEUED_CALLS; i++) {
		snprintf(req[i], sizeof(req[i]), "{\"op\":\"get\",\"n\":%u}", i);
		assert_int_equal(gw_api_call(fx.gw.api, req[i], strlen(req[i]), 60000, got_cb, &got[i]), RC_OK);
	}
	broker_dies(0);
	/* broker 1 answers each request with its own text, one at a time (REP) */
	while (answered < QUEUED_CALLS) {
		nng_msg *m;
		uint64_t deadline = gwf_deadline();
		while (nng_recvmsg(fx.reps[1], &m, NNG_FLAG_NONBLOCK) != 0) {
			bool all = true;
			for (unsigned i = 0; i < QUEUED_CALLS; i++)
				all = all && got[i].done;
			if (all)
				fail_msg("every call ended, %u requests answered", answered);
			if (!gwf_turn(&fx, deadline))
				fail_msg("broker 1 got %u of the %d requests", answered, QUEUED_CALLS);
		}
		assert_int_equal(nng_sendmsg(fx.reps[1], m, 0), 0);
		answered++;
	}
	for (unsigned i = 0; i < QUEUED_CALLS; i++) {
		GWF_WAIT(&fx, got[i].done);
		assert_int_equal(got[i].err, RC_OK);
		assert_string_equal(got[i].reply, req[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_publish_retried_when_the_connection_drops, setup_two, teardown),
		cmocka_unit_test_setup_teardown(test_publish_retried_when_the_broker_hangs, setup_two_short, teardown),
		cmocka_unit_test_setup_teardown(test_keys_for_events_without, setup_two, teardown),
		cmocka_unit_test_setup_teardown(test_replay_retried, setup_two, teardown),
		cmocka_unit_test_setup_teardown(test_calls_queued_on_a_lost_broker_move, setup_two, teardown),
		cmocka_unit_test_setup_teardown(test_one_broker_unchanged, setup_one, teardown),
	};

	rc_log_set_level(RC_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
