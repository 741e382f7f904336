/*
 * test_link_client.c - the gateway's link to the broker (gateway/link_client.c)
 * on a real loop, against a link server written here on the same loop
 * (127.0.0.1 port 0): up only after the hello; bus frames handed on whole and
 * in order; a call answered by the 'R' of its id; a cancelled call ends at
 * once and its late reply is ignored; a deadline; a bad first frame closes
 * and dials again; a lost connection fails the calls (sent or not, as their
 * bytes had left); stop fails the calls and frees everything (the loop
 * closes clean). The loop runs until a condition holds, bounded in turns;
 * nothing here asserts how long anything took.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "link_client.h"
#include "link_frame.h"
#include "timer.h"

#define MAX_CALLS 16
#define MAX_MSGS 16

struct done {
	int n;     /* callbacks run */
	int err;
	bool sent;
	char reply[64];
};

struct fx {
	uv_loop_t loop;
	struct gw_timer timer;
	uv_tcp_t server;
	uv_tcp_t *peer; /* the accepted connection (the latest) */
	bool peer_open, peer_eof;
	int accepts;
	char url[64];
	uint8_t *in; /* what the server read */
	size_t inlen, incap;
	nng_msg *msgs[MAX_MSGS];
	int nmsgs;
	struct gw_link *link;
	struct done d[MAX_CALLS];
	const uint8_t *greeting; /* sent to each accepted connection */
	size_t greeting_len;
	bool no_read; /* the server never reads */
};

static void on_msg(void *arg, unsigned src, nng_msg *msg)
{
	struct fx *f = arg;

	assert_int_equal(src, 0);
	assert_true(f->nmsgs < MAX_MSGS);
	f->msgs[f->nmsgs++] = msg;
}

static void on_done(void *arg, int err, bool sent, const char *reply, size_t len)
{
	struct done *d = arg;

	d->n++;
	d->err = err;
	d->sent = sent;
	if (reply != NULL) {
		assert_true(len < sizeof(d->reply));
		memcpy(d->reply, reply, len);
		d->reply[len] = '\0';
	}
}

static void peer_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct fx *f = h->data;

	if (f->incap - f->inlen < suggested) {
		f->incap = f->inlen + suggested;
		f->in = realloc(f->in, f->incap);
		assert_non_null(f->in);
	}
	*buf = uv_buf_init((char *)f->in + f->inlen, (unsigned)(f->incap - f->inlen));
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct fx *f = s->data;

	(void)buf;
	if (n < 0)
		f->peer_eof = true;
	else
		f->inlen += (size_t)n;
}

static void peer_closed(uv_handle_t *h)
{
	free(h);
}

/* Writes raw bytes to the link client (a blocking write is fine: small). */
static void peer_send(struct fx *f, const void *p, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);

	assert_true(f->peer_open);
	assert_int_equal(uv_try_write((uv_stream_t *)f->peer, &b, 1), (int)len);
}

static void peer_frame(struct fx *f, uint8_t kind, uint32_t id, const char *payload, size_t len)
{
	uint8_t buf[RC_LINK_HDR_SIZE + 256];

	assert_true(len <= 256);
	rc_link_hdr_put(buf, kind, id, (uint32_t)len);
	memcpy(buf + RC_LINK_HDR_SIZE, payload, len);
	peer_send(f, buf, RC_LINK_HDR_SIZE + len);
}

static void peer_hello(struct fx *f)
{
	peer_frame(f, RC_LINK_KIND_HELLO, 0, RC_LINK_HELLO, RC_LINK_HELLO_LEN);
}

static void peer_close(struct fx *f)
{
	if (f->peer_open)
		uv_close((uv_handle_t *)f->peer, peer_closed);
	f->peer_open = false;
}

static void on_accept(uv_stream_t *s, int status)
{
	struct fx *f = s->data;

	assert_int_equal(status, 0);
	peer_close(f); /* the previous one, closed by the client by now */
	f->peer = malloc(sizeof(*f->peer));
	assert_non_null(f->peer);
	uv_tcp_init(&f->loop, f->peer);
	f->peer->data = f;
	assert_int_equal(uv_accept(s, (uv_stream_t *)f->peer), 0);
	f->peer_open = true;
	f->peer_eof = false;
	f->inlen = 0;
	f->accepts++;
	if (!f->no_read)
		uv_read_start((uv_stream_t *)f->peer, peer_alloc, peer_read);
	if (f->greeting_len > 0)
		peer_send(f, f->greeting, f->greeting_len);
}

/* Runs the loop until *flag holds (at most many turns: a hang fails). */
#define RUN_UNTIL(f, cond)                                                                                     \
	do {                                                                                                   \
		int turns_ = 0;                                                                                \
		while (!(cond)) {                                                                              \
			assert_true(++turns_ < 100000);                                                        \
			uv_run(&(f)->loop, UV_RUN_ONCE);                                                       \
		}                                                                                              \
	} while (0)

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct sockaddr_in sa;
	struct sockaddr_storage bound;
	int len = sizeof(bound);

	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	gw_timer_init(&f->timer, &f->loop);
	uv_tcp_init(&f->loop, &f->server);
	f->server.data = f;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_bind(&f->server, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f->server, 16, on_accept), 0);
	uv_tcp_getsockname(&f->server, (struct sockaddr *)&bound, &len);
	snprintf(f->url, sizeof(f->url), "tcp://127.0.0.1:%d", ntohs(((struct sockaddr_in *)&bound)->sin_port));
	*state = f;
	return 0;
}

static void start_link(struct fx *f)
{
	struct gw_link_config c = { .url = f->url, .timer = &f->timer, .fn = on_msg, .arg = f };

	assert_int_equal(gw_link_start(&f->loop, &c, &f->link), RC_OK);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	gw_link_stop(f->link);
	peer_close(f);
	uv_close((uv_handle_t *)&f->server, NULL);
	gw_timer_close(&f->timer);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle closed: the link freed itself */
	for (int i = 0; i < f->nmsgs; i++)
		nng_msg_free(f->msgs[i]);
	free(f->in);
	free(f);
	return 0;
}

/* Connected and greeted: the link is up. */
static void up(struct fx *f)
{
	start_link(f);
	RUN_UNTIL(f, f->peer_open);
	assert_false(gw_link_connected(f->link));
	assert_int_equal(gw_link_call(f->link, "x", 1, 1000, on_done, &f->d[0], NULL), RC_EIO); /* not before the hello */
	peer_hello(f);
	RUN_UNTIL(f, gw_link_connected(f->link));
	assert_int_equal(gw_link_connects(f->link), 1);
}

/* The request frame at off in what the server read: its id and payload. */
static size_t read_request(struct fx *f, size_t off, uint32_t *id, const char **payload, uint32_t *len)
{
	const uint8_t *h = f->in + off;

	assert_true(f->inlen - off >= RC_LINK_HDR_SIZE);
	*len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
	assert_int_equal(h[4], RC_LINK_KIND_REQUEST);
	*id = (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 | (uint32_t)h[11] << 24;
	*payload = (const char *)h + RC_LINK_HDR_SIZE;
	return off + RC_LINK_HDR_SIZE + *len;
}

static void test_bus_frames_and_a_call(void **state)
{
	struct fx *f = *state;
	struct gw_link_call *call;
	const char *p;
	uint32_t id, len;

	up(f);
	peer_frame(f, RC_LINK_KIND_BUS, 0, "i\0one", 5);
	peer_frame(f, RC_LINK_KIND_BUS, 0, "g\0two!", 6);
	RUN_UNTIL(f, f->nmsgs == 2);
	assert_int_equal(nng_msg_len(f->msgs[0]), 5);
	assert_memory_equal(nng_msg_body(f->msgs[0]), "i\0one", 5);
	assert_int_equal(nng_msg_len(f->msgs[1]), 6);
	assert_memory_equal(nng_msg_body(f->msgs[1]), "g\0two!", 6);

	assert_int_equal(gw_link_call(f->link, "{\"op\":\"publish\"}", 16, 5000, on_done, &f->d[0], &call), RC_OK);
	RUN_UNTIL(f, f->inlen >= RC_LINK_HDR_SIZE + 16);
	read_request(f, 0, &id, &p, &len);
	assert_int_equal(len, 16);
	assert_memory_equal(p, "{\"op\":\"publish\"}", 16);
	assert_int_not_equal(id, 0);
	peer_frame(f, RC_LINK_KIND_REPLY, id + 1, "{\"other\":1}", 11); /* no such call: ignored */
	peer_frame(f, RC_LINK_KIND_REPLY, id, "{\"ok\":true}", 11);
	RUN_UNTIL(f, f->d[0].n == 1);
	assert_int_equal(f->d[0].err, RC_OK);
	assert_true(f->d[0].sent);
	assert_string_equal(f->d[0].reply, "{\"ok\":true}");
	assert_true(gw_link_connected(f->link));
}

static void peer_wrote(uv_write_t *w, int status)
{
	assert_int_equal(status, 0);
	*(bool *)w->data = true;
}

/* A bus message far larger than the read buffer comes whole (the buffer grows to it, then shrinks back). */
static void test_large_bus_frame(void **state)
{
	struct fx *f = *state;
	size_t big = 3u * 1024 * 1024 + 5;
	uint8_t *buf = malloc(RC_LINK_HDR_SIZE + big);
	uv_write_t w;
	uv_buf_t b;
	bool wrote = false;

	assert_non_null(buf);
	up(f);
	rc_link_hdr_put(buf, RC_LINK_KIND_BUS, 0, (uint32_t)big);
	for (size_t i = 0; i < big; i++)
		buf[RC_LINK_HDR_SIZE + i] = (uint8_t)(i * 7);
	b = uv_buf_init((char *)buf, (unsigned)(RC_LINK_HDR_SIZE + big));
	w.data = &wrote;
	assert_int_equal(uv_write(&w, (uv_stream_t *)f->peer, &b, 1, peer_wrote), 0);
	RUN_UNTIL(f, f->nmsgs == 1 && wrote);
	assert_int_equal(nng_msg_len(f->msgs[0]), big);
	assert_memory_equal(nng_msg_body(f->msgs[0]), buf + RC_LINK_HDR_SIZE, big);
	peer_frame(f, RC_LINK_KIND_BUS, 0, "i\0", 2);
	RUN_UNTIL(f, f->nmsgs == 2);
	assert_int_equal(nng_msg_len(f->msgs[1]), 2);
	assert_true(gw_link_connected(f->link));
	free(buf);
}

static void test_cancel_runs_the_callback_now(void **state)
{
	struct fx *f = *state;
	struct gw_link_call *call;
	const char *p;
	uint32_t id, len;

	up(f);
	assert_int_equal(gw_link_call(f->link, "q", 1, 5000, on_done, &f->d[0], &call), RC_OK);
	gw_link_cancel(call);
	assert_int_equal(f->d[0].n, 1);
	assert_int_equal(f->d[0].err, RC_ECLOSED);
	assert_true(f->d[0].sent);
	/* its reply comes anyway: ignored; a later call is answered as usual */
	RUN_UNTIL(f, f->inlen >= RC_LINK_HDR_SIZE + 1);
	read_request(f, 0, &id, &p, &len);
	peer_frame(f, RC_LINK_KIND_REPLY, id, "{}", 2);
	assert_int_equal(gw_link_call(f->link, "r", 1, 5000, on_done, &f->d[1], NULL), RC_OK);
	RUN_UNTIL(f, f->inlen >= 2 * (RC_LINK_HDR_SIZE + 1));
	read_request(f, RC_LINK_HDR_SIZE + 1, &id, &p, &len);
	peer_frame(f, RC_LINK_KIND_REPLY, id, "{\"2\":2}", 7);
	RUN_UNTIL(f, f->d[1].n == 1);
	assert_int_equal(f->d[0].n, 1);
	assert_string_equal(f->d[1].reply, "{\"2\":2}");
}

static void test_deadline(void **state)
{
	struct fx *f = *state;

	up(f);
	assert_int_equal(gw_link_call(f->link, "slow", 4, 20, on_done, &f->d[0], NULL), RC_OK);
	assert_int_equal(gw_link_call(f->link, "fast", 4, 1, on_done, &f->d[1], NULL), RC_OK);
	RUN_UNTIL(f, f->d[0].n == 1);
	assert_int_equal(f->d[1].n, 1); /* the shorter deadline, pushed later, ended first */
	assert_int_equal(f->d[0].err, RC_ETIMEDOUT);
	assert_int_equal(f->d[1].err, RC_ETIMEDOUT);
	assert_true(f->d[0].sent);
	assert_true(gw_link_connected(f->link)); /* a timeout is no reason to drop the link */
}

static void test_bad_first_frame_closes_and_dials_again(void **state)
{
	struct fx *f = *state;
	static uint8_t bad[RC_LINK_HDR_SIZE + 2];

	rc_link_hdr_put(bad, RC_LINK_KIND_BUS, 0, 2);
	memcpy(bad + RC_LINK_HDR_SIZE, "i", 2);
	f->greeting = bad;
	f->greeting_len = sizeof(bad);
	start_link(f);
	RUN_UNTIL(f, f->accepts == 2);
	assert_false(gw_link_connected(f->link));
	assert_int_equal(f->nmsgs, 0); /* nothing before a hello is taken as bus */
	assert_int_equal(gw_link_connects(f->link), 0);
}

static void test_oversize_frame_closes(void **state)
{
	struct fx *f = *state;
	uint8_t hdr[RC_LINK_HDR_SIZE];

	up(f);
	rc_link_hdr_put(hdr, RC_LINK_KIND_BUS, 0, GW_LINK_MAX_FRAME + 1);
	peer_send(f, hdr, sizeof(hdr));
	RUN_UNTIL(f, !gw_link_connected(f->link));
	RUN_UNTIL(f, f->peer_eof);
	/* dialed again, and up after its hello */
	RUN_UNTIL(f, f->accepts == 2 && f->peer_open && !f->peer_eof);
	peer_hello(f);
	RUN_UNTIL(f, gw_link_connected(f->link));
	assert_int_equal(gw_link_connects(f->link), 2);
}

static void test_lost_connection_fails_calls(void **state)
{
	struct fx *f = *state;
	size_t big = 16u * 1024 * 1024;
	char *req = malloc(big);

	assert_non_null(req);
	memset(req, 'x', big);
	f->no_read = true; /* the requests pile up: the kernel's buffers, then the link's */
	up(f);
	assert_int_equal(gw_link_call(f->link, req, big, 60000, on_done, &f->d[0], NULL), RC_OK);
	assert_int_equal(gw_link_call(f->link, req, big, 60000, on_done, &f->d[1], NULL), RC_OK);
	free(req);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	peer_close(f); /* unread data: a reset */
	RUN_UNTIL(f, f->d[0].n == 1 && f->d[1].n == 1);
	assert_int_equal(f->d[0].err, RC_EIO);
	assert_true(f->d[0].sent);   /* partly written: the broker may have it */
	assert_int_equal(f->d[1].err, RC_EIO);
	assert_false(f->d[1].sent);  /* never left the link's buffer */
	assert_false(gw_link_connected(f->link));
	assert_int_equal(gw_link_call(f->link, "x", 1, 1000, on_done, &f->d[2], NULL), RC_EIO);
}

static void test_stop_fails_calls(void **state)
{
	struct fx *f = *state;

	up(f);
	assert_int_equal(gw_link_call(f->link, "q", 1, 5000, on_done, &f->d[0], NULL), RC_OK);
	gw_link_stop(f->link);
	assert_int_equal(f->d[0].n, 1);
	assert_int_equal(f->d[0].err, RC_ECLOSED);
	f->link = NULL; /* it frees itself once its handles are closed (teardown runs the loop) */
}

static void test_bad_url(void **state)
{
	struct fx *f = *state;
	const char *bad[] = { "127.0.0.1:1", "tcp://127.0.0.1", "tcp://:1", "tcp://h:x", "tcp://h:70000", "tcp://[::1]1" };
	struct gw_link *l;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gw_link_config c = { .url = bad[i], .timer = &f->timer, .fn = on_msg, .arg = f };
		assert_int_equal(gw_link_start(&f->loop, &c, &l), RC_EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bus_frames_and_a_call, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_bus_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_runs_the_callback_now, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_first_frame_closes_and_dials_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize_frame_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_connection_fails_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_fails_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_url, setup, teardown),
	};
	return cmocka_run_group_tests_name("link_client", tests, NULL, NULL);
}
