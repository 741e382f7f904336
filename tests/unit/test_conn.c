/*
 * test_conn.c - one HTTP connection of the gateway (gateway/conn.c, request.c,
 * output.c) on a real loop with real sockets (gw_fixture), with the test's own
 * on_request and on_expect instead of the router: what a request hands over
 * (method, url, the headers read, the body), answers in request order when one
 * is known later (a slot), the keep-alive and Connection: close, malformed
 * and oversized requests (400, 431, 413) and the request and idle timeouts,
 * Expect: 100-continue both ways, a client that pipelines and does not read
 * its answers (reading pauses past --max-response-buffer), an upgraded
 * connection telling its owner when its output drained and when it closed,
 * and a request held aside (gw_conn_hold, as --auth url does): what waits
 * behind it, its release answered or upgraded, a client that leaves first.
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
#include "outq.h"

/* What the test's on_request saw, and how it answers. */
static struct seen {
	int n;
	char url[256], body[256], host[64], last_event_id[64], authorization[64], content_type[64];
	enum http_method method;
	bool keep_alive;
	enum { ANSWER, SLOT, UPGRADE, HOLD } how;
	struct gw_slot *slot;
	struct gw_hold hold;
	int released;
	struct gw_conn *upgraded;
	int drained, closed, expects;
	bool refuse_expect;
} seen;

static void copy(char *dst, size_t cap, const struct rc_buf *b)
{
	size_t n = b->len < cap - 1 ? b->len : cap - 1;
	memcpy(dst, b->data ? b->data : "", n);
	dst[n] = '\0';
}

static void owner_drained(void *owner)
{
	(void)owner;
	seen.drained++;
}

static void owner_closed(void *owner)
{
	assert_ptr_equal(owner, &seen);
	seen.closed++;
}

static const struct gw_conn_owner_ops owner_ops = { .drained = owner_drained, .closed = owner_closed };

static void on_request(struct gw_conn *c, struct gw_req *req)
{
	char body[300];

	seen.n++;
	seen.method = req->method;
	seen.keep_alive = req->keep_alive;
	copy(seen.url, sizeof(seen.url), &req->url);
	copy(seen.body, sizeof(seen.body), &req->body);
	copy(seen.host, sizeof(seen.host), &req->host);
	copy(seen.last_event_id, sizeof(seen.last_event_id), &req->last_event_id);
	copy(seen.authorization, sizeof(seen.authorization), &req->authorization);
	copy(seen.content_type, sizeof(seen.content_type), &req->content_type);
	switch (seen.how) {
	case SLOT:
		seen.slot = gw_conn_slot(c);
		assert_non_null(seen.slot);
		seen.how = ANSWER; /* the next ones are answered at once */
		return;
	case HOLD:
		gw_conn_hold(c, &seen.hold);
		assert_null(c->req);
		assert_ptr_equal(seen.hold.req, req);
		seen.how = ANSWER;
		return;
	case UPGRADE: {
		struct gw_chunk *ch = gw_chunk_dup("stream:", 7);
		gw_conn_upgrade(c, &owner_ops, &seen);
		seen.upgraded = c;
		assert_int_equal(gw_conn_send(c, ch, 0, ch->len), 0);
		gw_chunk_unref(ch);
		return;
	}
	case ANSWER:
		if (strcmp(seen.url, "/big") == 0) {
			static char big[64 * 1024];
			memset(big, 'b', sizeof(big));
			gw_conn_respond(c, 200, "text/plain", NULL, big, sizeof(big), false);
			return;
		}
		snprintf(body, sizeof(body), "%s", seen.url);
		gw_conn_respond(c, 200, "text/plain", NULL, body, strlen(body), false);
		return;
	}
}

static bool on_expect(struct gw_conn *c, const struct gw_req *req)
{
	(void)req;
	seen.expects++;
	if (seen.refuse_expect) {
		gw_conn_error(c, 401, "unauthorized", "no", NULL);
		return false;
	}
	return true;
}

static int setup_opts(void **state, void (*tune)(struct gw_options *))
{
	struct gwf *f = calloc(1, sizeof(*f));
	struct gw_options o;

	assert_non_null(f);
	gwf_options(&o);
	if (tune != NULL)
		tune(&o);
	gwf_start(f, &o);
	f->gw.on_request = on_request;
	f->gw.on_expect = on_expect;
	memset(&seen, 0, sizeof(seen));
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_opts(state, NULL);
}

static void short_timeouts(struct gw_options *o)
{
	o->header_timeout_ms = 30;
	o->idle_timeout_ms = 30;
}

static int setup_timeouts(void **state)
{
	return setup_opts(state, short_timeouts);
}

static void small_limits(struct gw_options *o)
{
	o->max_header_bytes = 256;
	o->max_body_bytes = 64;
	o->max_response_buffer = 4096;
}

static int setup_small(void **state)
{
	return setup_opts(state, small_limits);
}

static int teardown(void **state)
{
	struct gwf *f = *state;

	gwf_stop(f);
	free(f);
	return 0;
}

/* Counts the whole responses (status lines) in what c got. */
static int responses(const struct gwf_client *c)
{
	int n = 0;
	for (const char *p = c->in; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
		n++;
	return n;
}

static void test_request_handed_over(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_connect(f, 0);

	gwf_send(c, "POST /x?y=1 HTTP/1.1\r\nHost: h.example\r\nLast-Event-ID: 6f1c2a9e-7\r\n"
		    "authorization: Bearer t\r\nContent-Type: application/json\r\nX-Other: ignored\r\n"
		    "Content-Length: 11\r\n\r\n{\"type\":1}\n");
	GWF_WAIT(f, responses(c) == 1 && strstr(c->in, "/x?y=1") != NULL);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.method, HTTP_POST);
	assert_true(seen.keep_alive);
	assert_string_equal(seen.url, "/x?y=1");
	assert_string_equal(seen.body, "{\"type\":1}\n");
	assert_string_equal(seen.host, "h.example");
	assert_string_equal(seen.last_event_id, "6f1c2a9e-7");
	assert_string_equal(seen.authorization, "Bearer t");
	assert_string_equal(seen.content_type, "application/json");
	assert_string_equal(c->in, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n/x?y=1");
	/* keep-alive: the same connection takes the next request */
	gwf_send(c, "GET /again HTTP/1.1\r\n\r\n");
	GWF_WAIT(f, responses(c) == 2);
	assert_false(c->eof);
	/* Connection: close: answered, then closed */
	gwf_send(c, "GET /last HTTP/1.1\r\nConnection: close\r\n\r\n");
	gwf_wait_eof(f, c);
	assert_non_null(strstr(c->in, "Connection: close\r\n\r\n/last"));
}

static void test_answers_in_request_order(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_connect(f, 0);
	struct gw_chunk *later;

	/* the first request's answer comes later (a POST waiting for the broker) */
	seen.how = SLOT;
	gwf_send(c, "POST /first HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST /second HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
		    "GET /third HTTP/1.1\r\n\r\n");
	GWF_WAIT(f, seen.n == 2);
	/* the second POST was answered, but it waits behind the first; the GET waits to be handled */
	gwf_poll(f);
	assert_int_equal(c->len, 0);
	later = gw_chunk_dup("HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nfirst", 48);
	gw_slot_fill(seen.slot, later, false);
	GWF_WAIT(f, responses(c) == 3);
	assert_int_equal(seen.n, 3);
	{
		const char *a = strstr(c->in, "first"), *b = strstr(c->in, "/second"), *d = strstr(c->in, "/third");
		assert_non_null(a);
		assert_non_null(b);
		assert_non_null(d);
		assert_true(a < b && b < d);
	}
}

static void test_bad_requests(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *bad = gwf_connect(f, 0), *big = gwf_connect(f, 0), *body = gwf_connect(f, 0);
	char head[400];

	gwf_send(bad, "GET / HTTP/1.1\r\nBad Header\r\n\r\n");
	gwf_wait_eof(f, bad);
	assert_true(strncmp(bad->in, "HTTP/1.1 400 ", 13) == 0);
	assert_non_null(strstr(bad->in, "\"bad_request\""));

	memset(head, 'a', sizeof(head));
	memcpy(head, "GET /", 5);
	memcpy(head + sizeof(head) - 16, " HTTP/1.1\r\n\r\n", 14);
	gwf_send(big, head);
	gwf_wait_eof(f, big);
	assert_true(strncmp(big->in, "HTTP/1.1 431 ", 13) == 0);

	gwf_send(body, "POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n");
	gwf_wait_eof(f, body);
	assert_true(strncmp(body->in, "HTTP/1.1 413 ", 13) == 0);
	assert_int_equal(seen.n, 0);
}

static void test_timeouts(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *half = gwf_connect(f, 0), *idle = gwf_connect(f, 0);

	gwf_send(half, "GET / HTTP/1.1\r\n");
	gwf_send(idle, "GET /idle HTTP/1.1\r\n\r\n");
	gwf_wait_eof(f, half);
	assert_true(strncmp(half->in, "HTTP/1.1 408 ", 13) == 0);
	/* answered, then closed after --idle-timeout-ms without a next request */
	gwf_wait_eof(f, idle);
	assert_int_equal(responses(idle), 1);
	assert_true(strncmp(idle->in, "HTTP/1.1 200 ", 13) == 0);
}

static void test_expect_continue(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *go = gwf_connect(f, 0), *no = gwf_connect(f, 0);

	gwf_send(go, "POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
	GWF_WAIT(f, strstr(go->in, "\r\n\r\n") != NULL);
	assert_string_equal(go->in, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_int_equal(seen.n, 0);
	gwf_send(go, "{}");
	GWF_WAIT(f, responses(go) == 2);
	assert_string_equal(seen.body, "{}");

	seen.refuse_expect = true;
	gwf_send(no, "POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
	gwf_wait_eof(f, no);
	assert_true(strncmp(no->in, "HTTP/1.1 401 ", 13) == 0);
	assert_int_equal(seen.expects, 2);
	assert_int_equal(seen.n, 1);
}

static void test_unread_answers_pause_reading(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_connect(f, 2048);
	static char many[200 * 21 + 1];
	size_t per;
	int handled;

	/* 200 pipelined requests for 64 KiB answers (12.8 MB) from a client that reads nothing */
	for (int i = 0; i < 200; i++)
		memcpy(many + i * 21, "GET /big HTTP/1.1\r\n\r\n", 21);
	c->paused = true;
	gwf_send(c, many);
	/* answers fill --max-response-buffer and the sockets' buffers, then the rest waits: no more are handled */
	handled = -1;
	for (int i = 0, still = 0; i < 5000 && still < 50; i++) {
		gwf_poll(f);
		still = seen.n == handled ? still + 1 : 0;
		handled = seen.n;
	}
	assert_true(handled < 200);
	/* the client reads: every request is answered (the answers are all the same size) */
	c->paused = false;
	GWF_WAIT(f, strstr(c->in, "\r\n\r\n") != NULL);
	per = (size_t)(strstr(c->in, "\r\n\r\n") + 4 - c->in) + 64 * 1024;
	GWF_WAIT(f, c->len >= 200 * per);
	assert_int_equal(c->len, 200 * per);
	assert_int_equal(responses(c), 200);
	assert_int_equal(seen.n, 200);
}

static void test_upgrade_owner_callbacks(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_connect(f, 0);

	seen.how = UPGRADE;
	gwf_send(c, "GET /s HTTP/1.1\r\n\r\n");
	GWF_WAIT(f, strcmp(c->in, "stream:") == 0 && seen.drained > 0);
	/* no more requests are read on it; what comes is ignored */
	gwf_send(c, "GET /ignored HTTP/1.1\r\n\r\n");
	for (int i = 0; i < 10; i++)
		gwf_poll(f);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.closed, 0);
	/* the client leaves: closed once, from the close callback */
	gwf_close(c);
	GWF_WAIT(f, seen.closed == 1);
	for (int i = 0; i < 5; i++)
		gwf_poll(f);
	assert_int_equal(seen.closed, 1);
	assert_int_equal(f->gw.m.conns_open, 0);
}

/* A held request comes back: answered with its url and "released", or upgraded (arg non-NULL). */
static void on_released(struct gw_conn *c, struct gw_req *req, void *arg)
{
	char body[300];

	seen.released++;
	assert_ptr_equal(c->req, req);
	if (arg != NULL) {
		struct gw_chunk *ch = gw_chunk_dup("stream:", 7);
		gw_conn_upgrade(c, &owner_ops, &seen);
		assert_int_equal(gw_conn_send(c, ch, 0, ch->len), 0);
		gw_chunk_unref(ch);
		return;
	}
	snprintf(body, sizeof(body), "%.*s released", (int)req->url.len, req->url.data);
	gw_conn_respond(c, 200, "text/plain", NULL, body, strlen(body), false);
}

static void test_hold_then_release(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_connect(f, 0);

	seen.how = HOLD;
	gwf_send(c, "POST /first HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST /second HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
		    "GET /third HTTP/1.1\r\n\r\n");
	GWF_WAIT(f, seen.n == 1 && seen.hold.conn != NULL);
	/* everything waits behind a held request, a POST too */
	for (int i = 0; i < 10; i++)
		gwf_poll(f);
	assert_int_equal(seen.n, 1);
	assert_int_equal(c->len, 0);
	gw_conn_release(&seen.hold, on_released, NULL);
	assert_null(seen.hold.req);
	GWF_WAIT(f, responses(c) == 3);
	assert_int_equal(seen.released, 1);
	{
		const char *a = strstr(c->in, "/first released"), *b = strstr(c->in, "/second"), *d = strstr(c->in, "/third");
		assert_non_null(a);
		assert_non_null(b);
		assert_non_null(d);
		assert_true(a < b && b < d);
	}
	/* the connection goes on as before */
	gwf_send(c, "GET /after HTTP/1.1\r\n\r\n");
	GWF_WAIT(f, responses(c) == 4);
}

static void test_hold_client_leaves(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_connect(f, 0);

	seen.how = HOLD;
	gwf_send(c, "GET /s HTTP/1.1\r\n\r\n");
	GWF_WAIT(f, seen.n == 1 && seen.hold.conn != NULL);
	gwf_close(c);
	GWF_WAIT(f, seen.hold.conn == NULL && f->gw.m.conns_open == 0);
	/* the request is still the holder's; the release frees it without calling back */
	assert_non_null(seen.hold.req);
	gw_conn_release(&seen.hold, on_released, NULL);
	assert_int_equal(seen.released, 0);
	assert_null(seen.hold.req);
}

static void test_hold_released_into_a_stream(void **state)
{
	struct gwf *f = *state;
	struct gwf_client *c = gwf_connect(f, 0);

	seen.how = HOLD;
	gwf_send(c, "GET /s HTTP/1.1\r\n\r\nGET /behind HTTP/1.1\r\n\r\n");
	GWF_WAIT(f, seen.n == 1 && seen.hold.conn != NULL);
	for (int i = 0; i < 5; i++)
		gwf_poll(f);
	gw_conn_release(&seen.hold, on_released, &seen);
	GWF_WAIT(f, strcmp(c->in, "stream:") == 0 && seen.drained > 0);
	/* what was pipelined behind it is never handled, and the stream still sees its client leave */
	for (int i = 0; i < 10; i++)
		gwf_poll(f);
	assert_int_equal(seen.n, 1);
	gwf_close(c);
	GWF_WAIT(f, seen.closed == 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_request_handed_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answers_in_request_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_timeouts, setup_timeouts, teardown),
		cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unread_answers_pause_reading, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_owner_callbacks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_then_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_client_leaves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_released_into_a_stream, setup, teardown),
	};
	return cmocka_run_group_tests_name("conn", tests, NULL, NULL);
}
