#include "publisher.h"

#include <errno.h>
#include <http_parser.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "histogram.h"
#include "target.h"

#define PUB_READ_BYTES 65536
#define PUB_PACE_MS 1
#define PUB_PUMP_MAX 100000 /* events queued per pump call, at most */
#define PUB_HEAD_BYTES 1024 /* request line and headers, path included */
#define PUB_BODY_MIN 512    /* body without padding, room names included */
#define PUB_RETRY_MS 50     /* reconnect delay after an error */
#define PUB_STATUS_MAX 600

struct pub_entry {
	uint32_t room;
	uint64_t seq;
	int64_t ts;       /* wall time stamped into the event */
	uint64_t sent_ns; /* monotonic time of the last send, for response latency */
};

enum pub_conn_state {
	PC_IDLE,       /* no socket (before the first connect, or waiting to reconnect) */
	PC_CONNECTING,
	PC_READY,
	PC_CLOSING,    /* close pending */
	PC_DEAD,       /* out of reconnects */
};

struct pub;

struct pub_conn {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_write_t write_req;
	uv_timer_t retry;
	http_parser http;
	struct pub *p;
	struct pub_entry *ring; /* unanswered requests, oldest first; depth slots */
	uint32_t head;
	uint32_t count;
	char *stage; /* requests queued while a write is in flight */
	char *wbuf;  /* the write in flight */
	size_t stage_len;
	bool writing;
	bool retry_now; /* the last close was a clean keep-alive end */
	enum pub_conn_state state;
};

struct pub_stats {
	uint64_t sent, acked, errors, resent, reconnects, conn_errors, unanswered;
	uint64_t status[PUB_STATUS_MAX];
	struct rb_hist latency_ns;
};

struct pub {
	const struct rb_pub_opts *o;
	uv_loop_t loop;
	uv_timer_t pace;
	uv_timer_t drain;
	uv_timer_t setup;
	struct pub_conn *conns;
	char *read_buf;
	char host[32];
	char auth[600];
	size_t req_max;
	size_t stage_cap;
	bool path_has_room;
	uint64_t next; /* index of the next event */
	uint64_t t0;
	uint64_t t_stop;
	uint64_t t_end;
	uint64_t last_progress;
	uint32_t ready_conns;
	uint32_t reconnects_left;
	int setup_error;
	bool sending;
	bool stopped; /* sending is over */
	bool finishing;
	struct pub_stats st;
};

static void pub_conn_open(struct pub_conn *c);
static void pub_pump(struct pub *p);
static void pub_finish(struct pub *p);

static void pub_handle_closed(uv_handle_t *h)
{
	(void)h;
}

/*
 * Writes the POST request for e into buf (cap bytes). Returns its length, or
 * 0 if it does not fit (cap is sized so it always does).
 */
static size_t pub_format(const struct pub *p, const struct pub_entry *e, char *buf, size_t cap)
{
	const struct rb_pub_opts *o = p->o;
	char room[RB_ROOM_NAME_MAX], path[PUB_HEAD_BYTES / 2], body[PUB_BODY_MIN];
	int blen, hlen;
	size_t pad, total;

	if (rb_room_name(o->room_prefix, e->room, room, sizeof(room)) < 0 ||
	    rb_template_expand(o->url_template, room, path, sizeof(path)) < 0)
		return 0;
	blen = snprintf(body, sizeof(body),
			"{\"type\":\"%s\",\"room_id\":\"%s\",\"room\":\"%s\",\"seq\":%llu,\"ts\":%lld,"
			"\"pad\":\"",
			o->type, room, room, (unsigned long long)e->seq, (long long)e->ts);
	if (blen < 0 || (size_t)blen >= sizeof(body))
		return 0;
	pad = (size_t)blen + 2 < o->event_bytes ? o->event_bytes - (size_t)blen - 2 : 0;
	hlen = snprintf(buf, cap,
			"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s"
			"Content-Length: %zu\r\n\r\n",
			path, p->host, p->auth, (size_t)blen + pad + 2);
	if (hlen < 0)
		return 0;
	total = (size_t)hlen + (size_t)blen + pad + 2;
	if (total > cap)
		return 0;
	memcpy(buf + hlen, body, (size_t)blen);
	memset(buf + hlen + blen, 'x', pad);
	memcpy(buf + hlen + blen + pad, "\"}", 2);
	return total;
}

/* Queues e's request on c's stage. */
static void pub_conn_stage(struct pub_conn *c, const struct pub_entry *e)
{
	size_t n = pub_format(c->p, e, c->stage + c->stage_len, c->p->stage_cap - c->stage_len);

	c->stage_len += n;
}

static void pub_conn_reset(struct pub_conn *c, bool error);

static void pub_conn_flush(struct pub_conn *c);

static void pub_conn_written(uv_write_t *req, int status)
{
	struct pub_conn *c = req->data;

	c->writing = false;
	if (c->state != PC_READY)
		return;
	if (status < 0) {
		pub_conn_reset(c, true);
		return;
	}
	pub_conn_flush(c);
}

/*
 * Starts writing c's stage unless a write is already in flight: one write at
 * a time, the stage and the write buffer swap roles.
 */
static void pub_conn_flush(struct pub_conn *c)
{
	char *t = c->wbuf;
	uv_buf_t buf;

	if (c->state != PC_READY || c->writing || c->stage_len == 0)
		return;
	c->wbuf = c->stage;
	c->stage = t;
	buf = uv_buf_init(c->wbuf, (unsigned)c->stage_len);
	c->stage_len = 0;
	c->writing = true;
	if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, pub_conn_written) < 0) {
		c->writing = false;
		pub_conn_reset(c, true);
	}
}

static void pub_conn_retry(uv_timer_t *t)
{
	pub_conn_open(t->data);
}

static void pub_conn_closed(uv_handle_t *h)
{
	struct pub_conn *c = h->data;
	struct pub *p = c->p;

	c->writing = false;
	c->stage_len = 0;
	if (p->finishing) {
		c->state = PC_IDLE;
		return;
	}
	if (p->reconnects_left == 0) {
		c->state = PC_DEAD;
		fprintf(stderr, "level=warn msg=\"publisher connection given up\" conn=%u\n",
			(unsigned)(c - p->conns));
		return;
	}
	p->reconnects_left--;
	p->st.reconnects++;
	c->state = PC_IDLE;
	uv_timer_start(&c->retry, pub_conn_retry, c->retry_now ? 0 : PUB_RETRY_MS, 0);
}

/*
 * Drops c's socket; its unanswered requests stay in the ring and are sent
 * again once it has reconnected. error: not a clean keep-alive end.
 */
static void pub_conn_reset(struct pub_conn *c, bool error)
{
	if (c->state != PC_CONNECTING && c->state != PC_READY)
		return;
	if (error)
		c->p->st.conn_errors++;
	c->retry_now = !error;
	c->state = PC_CLOSING;
	uv_close((uv_handle_t *)&c->tcp, pub_conn_closed);
}

static int pub_conn_on_response(http_parser *hp)
{
	struct pub_conn *c = hp->data;
	struct pub *p = c->p;
	struct pub_entry *e;
	unsigned code = hp->status_code;

	if (c->count == 0) {
		pub_conn_reset(c, true); /* an answer nobody asked for */
		return -1;
	}
	e = &c->ring[c->head];
	c->head = (c->head + 1) % p->o->depth;
	c->count--;
	p->st.status[code < PUB_STATUS_MAX ? code : 0]++;
	if (code >= 200 && code < 300)
		p->st.acked++;
	else
		p->st.errors++;
	rb_hist_record(&p->st.latency_ns, rb_mono_ns() - e->sent_ns);
	if (!http_should_keep_alive(hp)) {
		pub_conn_reset(c, false);
		return -1;
	}
	return 0;
}

static const http_parser_settings pub_http = {
	.on_message_complete = pub_conn_on_response,
};

static void pub_conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct pub_conn *c = h->data;

	(void)hint;
	buf->base = c->p->read_buf;
	buf->len = PUB_READ_BYTES;
}

/* True when nothing is left unanswered on any live connection. */
static bool pub_drained(const struct pub *p)
{
	for (uint32_t i = 0; i < p->o->conns; i++) {
		if (p->conns[i].count > 0 && p->conns[i].state != PC_DEAD)
			return false;
	}
	return true;
}

static void pub_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct pub_conn *c = s->data;
	struct pub *p = c->p;

	if (c->state != PC_READY || nread == 0)
		return;
	if (nread < 0) {
		pub_conn_reset(c, nread != UV_EOF || c->count > 0);
		return;
	}
	http_parser_execute(&c->http, &pub_http, buf->base, (size_t)nread);
	if (c->state == PC_READY && HTTP_PARSER_ERRNO(&c->http) != HPE_OK)
		pub_conn_reset(c, true);
	if (p->stopped && pub_drained(p))
		pub_finish(p);
	else
		pub_pump(p);
}

static void pub_start(struct pub *p)
{
	p->sending = true;
	p->t0 = p->last_progress = rb_mono_ns();
	uv_timer_stop(&p->setup);
	pub_pump(p);
}

static void pub_conn_connected(uv_connect_t *req, int status)
{
	struct pub_conn *c = req->data;
	struct pub *p = c->p;
	uint64_t now = rb_mono_ns();

	if (c->state != PC_CONNECTING || p->finishing)
		return;
	if (status < 0) {
		if (!p->sending && !p->stopped) {
			p->setup_error = status;
			pub_finish(p);
			return;
		}
		pub_conn_reset(c, true);
		return;
	}
	c->state = PC_READY;
	if (uv_read_start((uv_stream_t *)&c->tcp, pub_conn_alloc, pub_conn_read) < 0) {
		pub_conn_reset(c, true);
		return;
	}
	if (!p->sending && !p->stopped) {
		if (++p->ready_conns == p->o->conns)
			pub_start(p);
		return;
	}
	/* Reconnected: send every unanswered request again, in order. */
	for (uint32_t k = 0; k < c->count; k++) {
		struct pub_entry *e = &c->ring[(c->head + k) % p->o->depth];

		e->sent_ns = now;
		pub_conn_stage(c, e);
		p->st.resent++;
	}
	pub_conn_flush(c);
	pub_pump(p);
}

static void pub_conn_open(struct pub_conn *c)
{
	struct pub *p = c->p;
	int r;

	http_parser_init(&c->http, HTTP_RESPONSE);
	c->http.data = c;
	r = uv_tcp_init(&p->loop, &c->tcp);
	if (r < 0) {
		c->state = PC_DEAD;
		return;
	}
	c->tcp.data = c;
	c->state = PC_CONNECTING;
	(void)uv_tcp_nodelay(&c->tcp, 1);
	r = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->o->target,
			   pub_conn_connected);
	if (r < 0) {
		/* Report it through the callback path so setup and reconnect agree. */
		c->state = PC_CLOSING;
		c->retry_now = false;
		p->st.conn_errors++;
		if (!p->sending && !p->stopped)
			p->setup_error = r;
		uv_close((uv_handle_t *)&c->tcp, pub_conn_closed);
		if (p->setup_error)
			pub_finish(p);
	}
}

static void pub_on_drain_timeout(uv_timer_t *t)
{
	pub_finish(t->data);
}

/* Stops sending; the run ends when every answer is in or drain_ms has passed. */
static void pub_stop_sending(struct pub *p)
{
	if (p->stopped)
		return;
	p->sending = false;
	p->stopped = true;
	p->t_stop = rb_mono_ns();
	uv_timer_stop(&p->pace);
	if (pub_drained(p))
		pub_finish(p);
	else
		uv_timer_start(&p->drain, pub_on_drain_timeout, p->o->drain_ms, 0);
}

/* Queues every event that is due and fits, then flushes the connections. */
static void pub_pump(struct pub *p)
{
	const struct rb_pub_opts *o = p->o;
	uint64_t now, limit = o->count ? o->count : UINT64_MAX;
	double elapsed;
	bool over;
	uint32_t n;

	if (!p->sending || p->finishing)
		return;
	now = rb_mono_ns();
	elapsed = (double)(now - p->t0) / 1e9;
	over = elapsed >= o->duration_s;
	if (o->rate > 0) {
		/* Event k is due at k / rate; the window holds ceil(rate * duration) of them. */
		double window = ceil(o->rate * o->duration_s);
		double due = over ? window : floor(o->rate * elapsed) + 1.0;

		if (due > window)
			due = window;
		if (due < (double)limit)
			limit = (uint64_t)due;
	} else if (over) {
		limit = p->next;
	}
	for (n = 0; n < PUB_PUMP_MAX && p->next < limit; n++) {
		uint32_t room = (uint32_t)(p->next % o->rooms);
		struct pub_conn *c = &p->conns[room % o->conns];
		struct pub_entry *e;

		/* Head-of-line wait keeps each room's events in seq order. */
		if (c->state != PC_READY || c->count >= o->depth)
			break;
		e = &c->ring[(c->head + c->count) % o->depth];
		e->room = room;
		e->seq = p->next / o->rooms + 1;
		e->ts = rb_wall_ns();
		e->sent_ns = now;
		c->count++;
		pub_conn_stage(c, e);
		p->st.sent++;
		p->next++;
	}
	for (uint32_t i = 0; i < o->conns; i++)
		pub_conn_flush(&p->conns[i]);
	if (over || (o->count && p->next >= o->count))
		pub_stop_sending(p);
}

static void pub_on_pace(uv_timer_t *t)
{
	struct pub *p = t->data;
	uint64_t now = rb_mono_ns();

	pub_pump(p);
	if (p->o->verbose && p->sending && now - p->last_progress >= 1000000000u) {
		p->last_progress = now;
		fprintf(stderr, "level=info msg=progress t=%.1f sent=%llu acked=%llu errors=%llu\n",
			(double)(now - p->t0) / 1e9, (unsigned long long)p->st.sent,
			(unsigned long long)p->st.acked, (unsigned long long)p->st.errors);
	}
}

static void pub_on_setup_timeout(uv_timer_t *t)
{
	struct pub *p = t->data;

	p->setup_error = UV_ETIMEDOUT;
	pub_finish(p);
}

/* Ends the run: closes every handle; the loop then runs dry. */
static void pub_finish(struct pub *p)
{
	if (p->finishing)
		return;
	p->finishing = true;
	p->t_end = rb_mono_ns();
	if (!p->stopped)
		p->t_stop = p->t_end;
	for (uint32_t i = 0; i < p->o->conns; i++) {
		struct pub_conn *c = &p->conns[i];

		p->st.unanswered += c->count;
		if (c->state == PC_CONNECTING || c->state == PC_READY) {
			c->state = PC_CLOSING;
			uv_close((uv_handle_t *)&c->tcp, pub_conn_closed);
		}
		uv_close((uv_handle_t *)&c->retry, pub_handle_closed);
	}
	uv_close((uv_handle_t *)&p->pace, pub_handle_closed);
	uv_close((uv_handle_t *)&p->drain, pub_handle_closed);
	uv_close((uv_handle_t *)&p->setup, pub_handle_closed);
}

static void pub_print(const struct pub *p, FILE *out)
{
	const struct rb_pub_opts *o = p->o;
	double send_s = p->t0 ? (double)(p->t_stop - p->t0) / 1e9 : 0.0;
	double elapsed = p->t0 ? (double)(p->t_end - p->t0) / 1e9 : 0.0;
	bool first = true;

	fprintf(out, "{\"mode\":\"publish\"");
	if (p->setup_error)
		fprintf(out, ",\"error\":\"%s\"", uv_strerror(p->setup_error));
	fprintf(out,
		",\"conns\":%u,\"rooms\":%u,\"depth\":%u,\"rate_target\":%.1f,\"event_bytes\":%u,"
		"\"elapsed_s\":%.3f,\"send_s\":%.3f,\"sent\":%llu,\"acked\":%llu,\"errors\":%llu,"
		"\"rate_achieved\":%.1f,\"resent\":%llu,\"reconnects\":%llu,\"conn_errors\":%llu,"
		"\"unanswered\":%llu,\"status\":{",
		o->conns, o->rooms, o->depth, o->rate, o->event_bytes, elapsed, send_s,
		(unsigned long long)p->st.sent, (unsigned long long)p->st.acked,
		(unsigned long long)p->st.errors, send_s > 0 ? (double)p->st.acked / send_s : 0.0,
		(unsigned long long)p->st.resent, (unsigned long long)p->st.reconnects,
		(unsigned long long)p->st.conn_errors, (unsigned long long)p->st.unanswered);
	for (unsigned i = 0; i < PUB_STATUS_MAX; i++) {
		if (p->st.status[i] == 0)
			continue;
		fprintf(out, "%s\"%u\":%llu", first ? "" : ",", i,
			(unsigned long long)p->st.status[i]);
		first = false;
	}
	fputs("},\"latency_us\":", out);
	rb_hist_print_json(out, &p->st.latency_ns, 1000.0);
	fputs("}\n", out);
	fflush(out);
}

static void pub_free(struct pub *p)
{
	if (p->conns) {
		for (uint32_t i = 0; i < p->o->conns; i++) {
			free(p->conns[i].ring);
			free(p->conns[i].stage);
			free(p->conns[i].wbuf);
		}
	}
	free(p->conns);
	free(p->read_buf);
	free(p);
}

int rb_pub_run(const struct rb_pub_opts *o, FILE *out)
{
	struct pub *p;
	int r;

	if (o->conns == 0 || o->rooms == 0 || o->depth == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->o = o;
	p->reconnects_left = o->max_reconnects;
	rb_hist_init(&p->st.latency_ns);
	rb_target_format(&o->target, p->host, sizeof(p->host));
	if (o->token && snprintf(p->auth, sizeof(p->auth), "Authorization: Bearer %s\r\n",
				 o->token) >= (int)sizeof(p->auth)) {
		r = -EINVAL;
		goto out_free;
	}
	p->req_max = PUB_HEAD_BYTES + strlen(p->auth) + PUB_BODY_MIN + o->event_bytes;
	p->stage_cap = p->req_max * o->depth;
	p->read_buf = malloc(PUB_READ_BYTES);
	p->conns = calloc(o->conns, sizeof(*p->conns));
	if (p->read_buf == NULL || p->conns == NULL)
		goto out_nomem;
	for (uint32_t i = 0; i < o->conns; i++) {
		struct pub_conn *c = &p->conns[i];

		c->p = p;
		c->ring = calloc(o->depth, sizeof(*c->ring));
		c->stage = malloc(p->stage_cap);
		c->wbuf = malloc(p->stage_cap);
		if (c->ring == NULL || c->stage == NULL || c->wbuf == NULL)
			goto out_nomem;
	}

	r = uv_loop_init(&p->loop);
	if (r < 0)
		goto out_free;
	uv_timer_init(&p->loop, &p->pace);
	uv_timer_init(&p->loop, &p->drain);
	uv_timer_init(&p->loop, &p->setup);
	p->pace.data = p->drain.data = p->setup.data = p;
	uv_timer_start(&p->pace, pub_on_pace, PUB_PACE_MS, PUB_PACE_MS);
	uv_timer_start(&p->setup, pub_on_setup_timeout, o->connect_timeout_ms, 0);
	for (uint32_t i = 0; i < o->conns; i++) {
		struct pub_conn *c = &p->conns[i];

		uv_timer_init(&p->loop, &c->retry);
		c->retry.data = c;
		c->connect_req.data = c;
		c->write_req.data = c;
	}
	for (uint32_t i = 0; i < o->conns && !p->finishing; i++)
		pub_conn_open(&p->conns[i]);
	uv_run(&p->loop, UV_RUN_DEFAULT);
	uv_loop_close(&p->loop);
	pub_print(p, out);
	if (p->setup_error)
		r = p->setup_error;
	else
		r = p->st.acked > 0 ? 0 : -EIO;
	goto out_free;
out_nomem:
	r = -ENOMEM;
out_free:
	pub_free(p);
	return r;
}
