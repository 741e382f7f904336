#include "gw_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/protocol/reqrep0/rep.h>

#include "api_client.h"
#include "bus_client.h"
#include "conn.h"
#include "error.h"
#include "event.h"
#include "frame.h"
#include "hub.h"
#include "id.h"
#include "publish.h"
#include "router.h"
#include "sse.h"
#include "stream.h"

#define GWF_TURN_MS    5
#define GWF_DEADLINE_S 20

void gwf_options(struct gw_options *o)
{
	gw_options_defaults(o);
	o->listen = "127.0.0.1:0";
	o->broker_bus = "inproc://unused";
	o->broker_api = "inproc://unused";
	o->heartbeat_ms = 0;
	o->max_conns = 100000;
	o->no_io_uring = true;
	o->log_level = RC_LOG_ERROR;
}

static void gwf_accept_cb(uv_stream_t *server, int status)
{
	if (status == 0)
		gw_conn_accept(server->data);
}

static void gwf_guard_cb(uv_timer_t *t)
{
	(void)t; /* only ends the turn's wait */
}

void gwf_start(struct gwf *f, const struct gw_options *o)
{
	gwf_start_apis(f, o, 1);
}

void gwf_start_apis(struct gwf *f, const struct gw_options *o, unsigned napis)
{
	static unsigned n_api;
	struct gw *gw = &f->gw;
	struct sockaddr_in addr;
	char url[GWF_MAX_APIS * 64];
	size_t off = 0;

	memset(f, 0, sizeof(*f));
	signal(SIGPIPE, SIG_IGN); /* as main.c: a write to a client gone is an error, not a signal */
	if (o != NULL)
		gw->opt = *o;
	else
		gwf_options(&gw->opt);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(gw_loop_init(gw, &f->loop), RC_OK);
	gw->on_request = gw_route;
	gw->on_expect = gw_route_expect;
	uv_timer_init(gw->loop, &f->guard);

	uv_tcp_init(gw->loop, &gw->listener);
	gw->listener.data = gw;
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
	assert_int_equal(uv_tcp_bind(&gw->listener, (const struct sockaddr *)&addr, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&gw->listener, 128, gwf_accept_cb), 0);

	/* the broker api's side first, so that the client's dial finds it */
	assert_true(napis >= 1 && napis <= GWF_MAX_APIS);
	for (unsigned i = 0; i < napis; i++) {
		char one[64];
		snprintf(one, sizeof(one), "inproc://gwf-api-%d-%u", (int)getpid(), n_api++);
		assert_int_equal(nng_rep0_open(&f->reps[i]), 0);
		assert_int_equal(nng_listen(f->reps[i], one, NULL, 0), 0);
		off += (size_t)snprintf(url + off, sizeof(url) - off, "%s%s", i ? "," : "", one);
	}
	f->napis = napis;
	f->rep = f->reps[0];
	assert_int_equal(gw_api_start(gw->loop, url, &gw->api), RC_OK);
	assert_int_equal(gw_publisher_init(gw), RC_OK);
	/* the api dials in the background: a POST before it is connected would get 503 */
	for (unsigned i = 0; i < napis; i++)
		GWF_WAIT(f, gw_api_broker_connected(gw->api, i));
}

void gwf_api_stop(struct gwf *f)
{
	if (!f->api_stopped)
		gw_api_stop(f->gw.api);
	f->api_stopped = true;
}

void gwf_stop(struct gwf *f)
{
	struct gw *gw = &f->gw;
	struct gw_list *pos, *tmp;

	for (size_t i = 0; i < f->nclients; i++) {
		gwf_close(&f->clients[i]);
		free(f->clients[i].in);
	}
	f->nclients = 0;
	/* as gw_stop: the connections, then the api (the replays out fail), then the handles */
	gw_list_each_safe(pos, tmp, &gw->conns)
		gw_conn_close(gw_container_of(pos, struct gw_conn, node));
	uv_close((uv_handle_t *)&gw->listener, NULL);
	gw_loop_bus_stop(gw);
	gw_publisher_fini(gw);
	gwf_api_stop(f);
	gw_timer_close(&gw->timer);
	uv_close((uv_handle_t *)&gw->delay_timer, NULL);
	uv_close((uv_handle_t *)&f->guard, NULL);
	uv_close((uv_handle_t *)&gw->flusher, NULL);
	uv_close((uv_handle_t *)&gw->preflusher, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(gw->m.streams_open, 0);
	assert_int_equal(gw->m.conns_open, 0);
	gw_api_free(gw->api);
	gw_bus_free(gw->bus);
	for (unsigned i = 0; i < f->napis; i++)
		nng_close(f->reps[i]);
	gw_hub_fini(&gw->hub);
	gw_chunk_unref(gw->ping);
	free(gw->readbuf);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

uint64_t gwf_deadline(void)
{
	return uv_hrtime() + (uint64_t)GWF_DEADLINE_S * 1000000000u;
}

static void gwf_read(struct gwf_client *c)
{
	while (c->fd >= 0 && !c->eof && !c->paused) {
		ssize_t n;
		if (c->cap - c->len < 4096 + 1) {
			size_t cap = c->cap ? c->cap * 2 : 16384;
			char *in = realloc(c->in, cap);
			assert_non_null(in);
			c->in = in;
			c->cap = cap;
		}
		n = recv(c->fd, c->in + c->len, c->cap - c->len - 1, MSG_DONTWAIT);
		if (n > 0) {
			c->len += (size_t)n;
			c->in[c->len] = '\0';
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		c->eof = true; /* 0, or a reset: the gateway closed it */
	}
}

static void gwf_read_all(struct gwf *f)
{
	for (size_t i = 0; i < f->nclients; i++)
		gwf_read(&f->clients[i]);
}

void gwf_poll(struct gwf *f)
{
	uv_run(&f->loop, UV_RUN_NOWAIT);
	gwf_read_all(f);
}

bool gwf_turn(struct gwf *f, uint64_t deadline)
{
	/*
	 * Repeating: started from the loop's cached time, a one-shot guard may
	 * fire before the poll and leave it waiting for I/O with no deadline.
	 */
	uv_update_time(&f->loop);
	uv_timer_start(&f->guard, gwf_guard_cb, GWF_TURN_MS, GWF_TURN_MS);
	uv_run(&f->loop, UV_RUN_ONCE);
	uv_timer_stop(&f->guard);
	gwf_read_all(f);
	return uv_hrtime() < deadline;
}

struct gwf_client *gwf_connect(struct gwf *f, int rcvbuf)
{
	struct gwf_client *c;
	struct sockaddr_in addr;
	int namelen = sizeof(addr);
	uint64_t accepted = f->gw.m.conns_accepted;

	assert_true(f->nclients < GWF_MAX_CLIENTS);
	c = &f->clients[f->nclients++];
	memset(c, 0, sizeof(*c));
	c->in = calloc(1, 1);
	c->cap = 1;
	assert_non_null(c->in);
	assert_int_equal(uv_tcp_getsockname(&f->gw.listener, (struct sockaddr *)&addr, &namelen), 0);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	if (rcvbuf > 0)
		assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	/* the kernel completes it from the listen backlog: no loop turn needed */
	assert_int_equal(connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
	GWF_WAIT(f, f->gw.m.conns_accepted > accepted);
	return c;
}

void gwf_send(struct gwf_client *c, const char *text)
{
	size_t len = strlen(text), off = 0;

	while (off < len) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		assert_true(n > 0);
		off += (size_t)n;
	}
}

struct gwf_client *gwf_stream(struct gwf *f, const char *query, const char *last_event_id)
{
	struct gwf_client *c = gwf_connect(f, f->stream_rcvbuf);
	uint64_t open = f->gw.m.streams_open;
	char req[1024];
	const char *body = NULL;

	snprintf(req, sizeof(req), "GET /api/v1/events%s%s HTTP/1.1\r\nHost: test\r\n%s%s%s\r\n", query ? "?" : "",
		 query ? query : "", last_event_id ? "Last-Event-ID: " : "", last_event_id ? last_event_id : "",
		 last_event_id ? "\r\n" : "");
	gwf_send(c, req);
	GWF_WAIT(f, f->gw.m.streams_open > open && (body = strstr(c->in, "\r\n\r\n")) != NULL &&
			    strlen(body + 4) >= strlen(RC_SSE_PREAMBLE));
	if (strncmp(c->in, "HTTP/1.1 200 ", 13) != 0)
		fail_msg("the stream was answered: %s", c->in);
	body += 4;
	assert_memory_equal(body, RC_SSE_PREAMBLE, strlen(RC_SSE_PREAMBLE));
	c->seen = (size_t)(body - c->in) + strlen(RC_SSE_PREAMBLE);
	return c;
}

void gwf_close(struct gwf_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

bool gwf_has(const struct gwf_client *c, const char *needle)
{
	return strstr(gwf_rest(c), needle) != NULL;
}

void gwf_take(struct gwf *f, struct gwf_client *c, const char *want)
{
	size_t n = strlen(want);

	GWF_WAIT(f, c->len - c->seen >= n || c->eof);
	if (c->len - c->seen < n || memcmp(gwf_rest(c), want, n) != 0)
		fail_msg("wanted:\n%s\ngot:\n%s%s", want, gwf_rest(c), c->eof ? "\n(EOF)" : "");
	c->seen += n;
}

size_t gwf_take_pings(struct gwf_client *c)
{
	size_t n = 0, len = strlen(RC_SSE_PING);

	while (c->len - c->seen >= len && memcmp(gwf_rest(c), RC_SSE_PING, len) == 0) {
		c->seen += len;
		n++;
	}
	return n;
}

void gwf_wait_eof(struct gwf *f, struct gwf_client *c)
{
	c->paused = false;
	GWF_WAIT(f, c->eof);
}

size_t gwf_frame(uint8_t *buf, size_t cap, uint64_t epoch, uint64_t last, uint8_t flags, const struct gwf_ev *evs,
		 size_t n)
{
	struct rc_frame_hdr hdr = { .epoch = epoch, .last_gseq = last, .count = (uint32_t)n, .flags = flags };
	size_t len = RC_FRAME_HDR_SIZE;

	assert_true(cap >= len);
	rc_frame_put_header(buf, &hdr);
	for (size_t i = 0; i < n; i++) {
		char json[32];
		struct rc_frame_event ev = {
			.gseq = evs[i].gseq,
			.rseq = 1,
			.room = evs[i].room,
			.room_len = (uint16_t)(evs[i].room ? strlen(evs[i].room) : 0),
			.json = evs[i].json ? evs[i].json : json,
		};
		if (evs[i].json == NULL)
			snprintf(json, sizeof(json), "{\"n\":%llu}", (unsigned long long)evs[i].gseq);
		ev.json_len = (uint32_t)strlen(ev.json);
		assert_true(len + rc_frame_event_size(ev.room_len, ev.json_len) <= cap);
		len += rc_frame_put_event(buf + len, &ev);
	}
	return len;
}

size_t gwf_deliver(struct gwf *f, const struct gwf_ev *evs, size_t n)
{
	static uint8_t buf[1 << 20]; /* not allocated: a test may make every allocation fail */
	struct rc_frame_reader r;
	size_t len = gwf_frame(buf, sizeof(buf), GWF_EPOCH, evs[n - 1].gseq, 0, evs, n);

	assert_int_equal(rc_frame_reader_init(&r, buf, len), RC_OK);
	return gw_hub_deliver(&f->gw.hub, &r);
}

const char *gwf_event_text(uint64_t gseq, const char *json)
{
	static char text[8192];
	char id[RC_ID_MAX], def[32];

	rc_id_format(id, GWF_EPOCH, gseq);
	snprintf(def, sizeof(def), "{\"n\":%llu}", (unsigned long long)gseq);
	snprintf(text, sizeof(text), "id: %s\ndata: %s\n\n", id, json ? json : def);
	return text;
}

const char *gwf_reset_text(const char *reason, uint64_t epoch, uint64_t gseq)
{
	static char text[256];
	char id[RC_ID_MAX];

	rc_id_format(id, epoch, gseq);
	snprintf(text, sizeof(text), "id: %s\ndata: {\"type\":\"stream.reset\",\"reason\":\"%s\"}\n\n", id, reason);
	return text;
}

const char *gwf_api_request(struct gwf *f)
{
	return gwf_api_request_on(f, 0);
}

const char *gwf_api_request_on(struct gwf *f, unsigned i)
{
	static char req[65536];
	nng_msg *msg = NULL;
	uint64_t deadline = gwf_deadline();

	while (nng_recvmsg(f->reps[i], &msg, NNG_FLAG_NONBLOCK) != 0)
		if (!gwf_turn(f, deadline))
			fail_msg("the broker api got no request");
	assert_true(nng_msg_len(msg) < sizeof(req));
	memcpy(req, nng_msg_body(msg), nng_msg_len(msg));
	req[nng_msg_len(msg)] = '\0';
	nng_msg_free(msg);
	return req;
}

void gwf_api_reply(struct gwf *f, const void *data, size_t len)
{
	gwf_api_reply_on(f, 0, data, len);
}

void gwf_api_reply_on(struct gwf *f, unsigned i, const void *data, size_t len)
{
	assert_int_equal(nng_send(f->reps[i], (void *)data, len, 0), 0);
}
