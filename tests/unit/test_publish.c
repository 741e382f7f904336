/*
 * test_publish.c - POST /api/v1/events through the real router and publisher
 * (gateway/publish.c) on a real loop (gw_fixture), with the test as the
 * broker api: what a POST sends to the broker (the compact events, exactly as
 * published), the answer built from the broker's ids, POSTs that arrive while
 * a request is in flight going together in the next one and answered each
 * with its own ids in order, a batch the broker refuses for one POST sent
 * again one by one so only that POST fails, a broker that does not answer
 * (504: the requests went out; test_publish.py has the 503 of those that
 * never left), the bytes held for the
 * broker bounded (503 overloaded), and what is refused before the broker is
 * asked (400, 401, 415).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conn.h"
#include "gw_fixture.h"

static void tune_default(struct gw_options *o)
{
	(void)o;
}

static void (*tune)(struct gw_options *) = tune_default;

static int setup(void **state)
{
	struct gwf *f = calloc(1, sizeof(*f));
	struct gw_options o;

	assert_non_null(f);
	gwf_options(&o);
	tune(&o);
	gwf_start(f, &o);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct gwf *f = *state;

	gwf_stop(f);
	free(f);
	tune = tune_default;
	return 0;
}

/* POSTs the gateway holds for the broker's answer (their connections' slots). */
static unsigned waiting(struct gwf *f)
{
	struct gw_list *pos, *tmp;
	unsigned n = 0;

	gw_list_each_safe(pos, tmp, &f->gw.conns)
		n += gw_container_of(pos, struct gw_conn, node)->nslots;
	return n;
}

static struct gwf_client *post(struct gwf *f, const char *body, const char *extra)
{
	struct gwf_client *c = gwf_connect(f, 0);
	char req[4096];

	snprintf(req, sizeof(req),
		 "POST /api/v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n%sContent-Length: %zu\r\n\r\n%s",
		 extra ? extra : "", strlen(body), body);
	gwf_send(c, req);
	return c;
}

/* The body of c's (first) answer once it came whole; its status in *status. */
static const char *answer(struct gwf *f, struct gwf_client *c, int *status)
{
	const char *body;

	GWF_WAIT(f, (body = strstr(c->in, "\r\n\r\n")) != NULL && strchr(body + 4, '\n') != NULL);
	assert_int_equal(sscanf(c->in, "HTTP/1.1 %d", status), 1);
	return body + 4;
}

static void test_post_sends_the_events_exactly(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = post(f, "{ \"type\" : \"m\", \"room_id\":\"r\", \"n\": 123456789012345678901234567890 ,\"f\":1.0e+2}",
				    NULL);
	const char *req = gwf_api_request(f), *body;
	int status;

	assert_string_equal(req, "{\"op\":\"publish\",\"events\":[{\"type\":\"m\",\"room_id\":\"r\","
				 "\"n\":123456789012345678901234567890,\"f\":1.0e+2}]}");
	gwf_api_reply(f, "{\"ok\":true,\"ids\":[\"6f1c2a9e-7\"]}", 32);
	body = answer(f, c, &status);
	assert_int_equal(status, 201);
	assert_string_equal(body, "{\"id\":\"6f1c2a9e-7\"}\n");
}

static void test_posts_in_flight_go_together(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *a = post(f, "{\"type\":\"a\"}", NULL), *b, *c;
	const char *req;
	int status;

	req = gwf_api_request(f);
	assert_string_equal(req, "{\"op\":\"publish\",\"events\":[{\"type\":\"a\"}]}");
	/* while a's request is out, b and c queue, then leave together */
	b = post(f, "[{\"type\":\"b1\"},{\"type\":\"b2\"}]", NULL);
	c = post(f, "{\"type\":\"c\"}", NULL);
	GWF_WAIT(f, waiting(f) == 3);
	gwf_api_reply(f, "{\"ok\":true,\"ids\":[\"e-1\"]}", 25);
	req = gwf_api_request(f);
	assert_string_equal(req, "{\"op\":\"publish\",\"events\":[{\"type\":\"b1\"},{\"type\":\"b2\"},{\"type\":\"c\"}]}");
	gwf_api_reply(f, "{\"ok\":true,\"ids\":[\"e-2\",\"e-3\",\"e-4\"]}", 37);
	assert_string_equal(answer(f, a, &status), "{\"id\":\"e-1\"}\n");
	assert_string_equal(answer(f, b, &status), "{\"ids\":[\"e-2\",\"e-3\"]}\n");
	assert_int_equal(status, 201);
	assert_string_equal(answer(f, c, &status), "{\"id\":\"e-4\"}\n");
}

static void test_refused_batch_is_sent_again_one_by_one(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *a = post(f, "{\"type\":\"a\"}", NULL), *b, *c;
	static const char refused[] = "{\"ok\":false,\"error\":{\"code\":\"invalid_event\",\"message\":\"events[1]: no\"}}";
	int status;

	gwf_api_request(f);
	b = post(f, "{\"type\":\"b\"}", NULL);
	c = post(f, "{\"type\":\"c\"}", NULL);
	GWF_WAIT(f, waiting(f) == 3);
	gwf_api_reply(f, "{\"ok\":true,\"ids\":[\"e-1\"]}", 25);
	assert_string_equal(gwf_api_request(f), "{\"op\":\"publish\",\"events\":[{\"type\":\"b\"},{\"type\":\"c\"}]}");
	gwf_api_reply(f, refused, sizeof(refused) - 1);
	/* each alone: b is refused, c goes through */
	assert_string_equal(gwf_api_request(f), "{\"op\":\"publish\",\"events\":[{\"type\":\"b\"}]}");
	gwf_api_reply(f, refused, sizeof(refused) - 1);
	assert_string_equal(gwf_api_request(f), "{\"op\":\"publish\",\"events\":[{\"type\":\"c\"}]}");
	gwf_api_reply(f, "{\"ok\":true,\"ids\":[\"e-2\"]}", 25);
	answer(f, a, &status);
	assert_int_equal(status, 201);
	assert_non_null(strstr(answer(f, b, &status), "invalid_event"));
	assert_int_equal(status, 400);
	assert_string_equal(answer(f, c, &status), "{\"id\":\"e-2\"}\n");
}

static void short_timeout(struct gw_options *o)
{
	o->publish_timeout_ms = 100;
}

static void test_unanswered_broker(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *a = post(f, "{\"type\":\"a\"}", NULL), *b;
	const char *body;
	int status;

	gwf_api_request(f); /* taken, never answered */
	b = post(f, "{\"type\":\"b\"}", NULL);
	/* a's request went out: the broker may have published it */
	assert_non_null(strstr(answer(f, a, &status), "publish_outcome_unknown"));
	assert_int_equal(status, 504);
	/*
	 * b waited behind a, and had what was left of its own time to be sent
	 * and answered: 504 if nng took it to the broker, 503 if not; either
	 * way it is answered, and the code says which
	 */
	body = answer(f, b, &status);
	if (status == 504)
		assert_non_null(strstr(body, "publish_outcome_unknown"));
	else
		assert_non_null(strstr(body, "broker_unavailable"));
	assert_true(status == 503 || status == 504);
}

static void small_queue(struct gw_options *o)
{
	o->publish_queue_bytes = 1024;
}

static void test_bytes_for_the_broker_are_bounded(void **state)
{
	struct gwf *f = *state;
	char big[700];
	struct gwf_client *a, *b;
	int status;

	snprintf(big, sizeof(big), "{\"type\":\"x\",\"pad\":\"%0600d\"}", 0);
	a = post(f, big, NULL);
	gwf_api_request(f); /* in flight: its 600 bytes count */
	b = post(f, big, NULL);
	assert_non_null(strstr(answer(f, b, &status), "\"overloaded\""));
	assert_int_equal(status, 503);
	gwf_api_reply(f, "{\"ok\":true,\"ids\":[\"e-1\"]}", 25);
	answer(f, a, &status);
	assert_int_equal(status, 201);
}

static void test_refused_before_the_broker(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *bad = post(f, "{\"type\":\"a\",\"x\":\"\xff\"}", NULL);
	struct gwf_client *ctype = gwf_connect(f, 0);
	int status;

	assert_non_null(strstr(answer(f, bad, &status), "x: invalid UTF-8"));
	assert_int_equal(status, 400);
	gwf_send(ctype, "POST /api/v1/events HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n{\"type\":\"a\"}");
	answer(f, ctype, &status);
	assert_int_equal(status, 415);
	/* nothing reached the broker */
	assert_int_equal(f->gw.m.publish_events, 0);
}

static void with_token(struct gw_options *o)
{
	o->publish_token = "sekret";
}

static void test_token(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *no = post(f, "{\"type\":\"a\"}", "Authorization: Bearer wrong\r\n");
	struct gwf_client *yes = post(f, "{\"type\":\"a\"}", "Authorization: Bearer sekret\r\n");
	int status;

	assert_non_null(strstr(answer(f, no, &status), "unauthorized"));
	assert_int_equal(status, 401);
	gwf_api_request(f);
	gwf_api_reply(f, "{\"ok\":true,\"ids\":[\"e-1\"]}", 25);
	answer(f, yes, &status);
	assert_int_equal(status, 201);
}

static int setup_short(void **state)
{
	tune = short_timeout;
	return setup(state);
}

static int setup_queue(void **state)
{
	tune = small_queue;
	return setup(state);
}

static int setup_token(void **state)
{
	tune = with_token;
	return setup(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_post_sends_the_events_exactly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_posts_in_flight_go_together, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_batch_is_sent_again_one_by_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unanswered_broker, setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_bytes_for_the_broker_are_bounded, setup_queue, teardown),
		cmocka_unit_test_setup_teardown(test_refused_before_the_broker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token, setup_token, teardown),
	};
	return cmocka_run_group_tests_name("publish", tests, NULL, NULL);
}
