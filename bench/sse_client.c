#include "sse_client.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* linux/in.h; not in every libc header */
#endif

static void sse_client_closed(uv_handle_t *h)
{
	struct rb_sse_client *c = h->data;

	c->state = RB_SSE_CLOSED;
	if (c->sh->on_closed)
		c->sh->on_closed(c->sh->owner, c);
}

/* Ends c once: accounts why, closes the handle, tells the owner. */
static void sse_client_end(struct rb_sse_client *c, enum rb_sse_end why)
{
	struct rb_sub_stats *st = c->sh->stats;
	bool was_open = c->state == RB_SSE_OPEN;

	if (!rb_sse_client_active(c))
		return;
	switch (why) {
	case RB_SSE_END_CONNECT_FAILED:
		st->connect_failed++;
		break;
	case RB_SSE_END_DROPPED:
		st->dropped++;
		break;
	case RB_SSE_END_TIMEOUT:
		st->connect_timeouts++;
		break;
	case RB_SSE_END_HTTP_ERROR:
		st->http_errors++;
		break;
	case RB_SSE_END_SERVER_CLOSED:
		st->closed_by_server++;
		break;
	case RB_SSE_END_PROTOCOL:
		st->protocol_errors++;
		break;
	case RB_SSE_END_COMPLETE:
		st->complete++;
		break;
	case RB_SSE_END_STOPPED:
		if (was_open)
			st->open_at_end++;
		break;
	}
	if (why == RB_SSE_END_COMPLETE) {
		c->state = RB_SSE_DONE; /* closed by rb_sse_client_stop, at the end of the run */
		uv_read_stop((uv_stream_t *)&c->tcp);
	} else {
		c->state = RB_SSE_CLOSING;
		uv_close((uv_handle_t *)&c->tcp, sse_client_closed);
	}
	c->sh->on_end(c->sh->owner, c, why, was_open);
}

/* Checks one complete event against the stream's sequence state. */
static void sse_client_event(struct rb_sse_client *c)
{
	struct rb_sub_stats *st = c->sh->stats;
	const struct rb_fields *f = &c->ev;
	uint64_t *slot;

	c->events++;
	st->events++;
	if (f->is_reset)
		st->resets++;
	if (f->has_ts) {
		int64_t lat = rb_wall_ns() - f->ts;

		if (lat < 0) {
			st->negative_latency++;
			lat = 0;
		}
		rb_hist_record(&st->latency_ns, (uint64_t)lat);
	}
	if (!f->has_ts || !f->has_seq || !f->has_room || f->room >= c->sh->rooms) {
		st->events_unparsed++;
		return;
	}
	if (c->room != RB_SSE_ALL_ROOMS && f->room != c->room) {
		st->other_room++;
		return;
	}
	slot = c->room == RB_SSE_ALL_ROOMS ? &c->room_seq[f->room] : &c->own_seq;
	if (*slot == 0) {
		if (f->seq > 1)
			st->late_start++;
	} else if (f->seq <= *slot) {
		st->dups++;
		return;
	} else if (f->seq > *slot + 1) {
		st->gaps++;
		st->missing += f->seq - *slot - 1;
	}
	*slot = f->seq;
}

static void sse_client_on_field(void *ctx, enum rb_sse_field field, const char *v, size_t len)
{
	struct rb_sse_client *c = ctx;
	struct rb_sub_stats *st = c->sh->stats;

	switch (field) {
	case RB_SSE_DATA:
		c->ev_has_data = true;
		rb_scan_fields(v, len, c->sh->room_prefix, c->sh->room_prefix_len, &c->ev);
		break;
	case RB_SSE_COMMENT:
		st->comments++;
		if (len == 4 && memcmp(v, "ping", 4) == 0)
			st->pings++;
		break;
	default:
		break;
	}
}

static void sse_client_on_dispatch(void *ctx)
{
	struct rb_sse_client *c = ctx;

	if (!c->ev_has_data)
		return;
	sse_client_event(c);
	rb_fields_clear(&c->ev);
	c->ev_has_data = false;
	if (c->sh->expect && c->events >= c->sh->expect)
		sse_client_end(c, RB_SSE_END_COMPLETE);
}

static const struct rb_sse_handler sse_client_handler = {
	.on_field = sse_client_on_field,
	.on_dispatch = sse_client_on_dispatch,
};

static int sse_client_on_headers(http_parser *p)
{
	struct rb_sse_client *c = p->data;
	struct rb_sub_stats *st = c->sh->stats;
	unsigned code = p->status_code;

	st->status[code < RB_STATUS_MAX ? code : 0]++;
	if (code != 200) {
		sse_client_end(c, RB_SSE_END_HTTP_ERROR);
		return -1;
	}
	c->state = RB_SSE_OPEN;
	st->connected++;
	rb_hist_record(&st->connect_ns, rb_mono_ns() - c->started_ns);
	c->sh->on_open(c->sh->owner, c);
	return 0;
}

static int sse_client_on_body(http_parser *p, const char *at, size_t len)
{
	struct rb_sse_client *c = p->data;

	c->sh->stats->bytes += len;
	rb_sse_parser_feed(&c->sse, at, len, &sse_client_handler, c);
	c->sh->stats->oversize_lines += c->sse.oversize_lines;
	c->sse.oversize_lines = 0;
	return c->state == RB_SSE_OPEN ? 0 : -1;
}

static int sse_client_on_complete(http_parser *p)
{
	sse_client_end(p->data, RB_SSE_END_SERVER_CLOSED);
	return -1;
}

static const http_parser_settings sse_client_http = {
	.on_headers_complete = sse_client_on_headers,
	.on_body = sse_client_on_body,
	.on_message_complete = sse_client_on_complete,
};

static void sse_client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct rb_sse_client *c = h->data;

	(void)hint;
	buf->base = c->sh->read_buf;
	buf->len = c->sh->read_cap;
}

static void sse_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct rb_sse_client *c = s->data;

	if (!rb_sse_client_active(c) || nread == 0)
		return;
	if (nread < 0) {
		sse_client_end(c, c->state == RB_SSE_OPEN ? RB_SSE_END_SERVER_CLOSED
							  : RB_SSE_END_DROPPED);
		return;
	}
	http_parser_execute(&c->http, &sse_client_http, buf->base, (size_t)nread);
	if (rb_sse_client_active(c) && HTTP_PARSER_ERRNO(&c->http) != HPE_OK)
		sse_client_end(c, RB_SSE_END_PROTOCOL);
}

static void sse_client_written(uv_write_t *req, int status)
{
	struct rb_sse_client *c = req->data;

	if (status < 0 && rb_sse_client_active(c))
		sse_client_end(c, c->state == RB_SSE_OPEN ? RB_SSE_END_SERVER_CLOSED
							  : RB_SSE_END_DROPPED);
}

static void sse_client_connected(uv_connect_t *req, int status)
{
	struct rb_sse_client *c = req->data;

	if (c->state != RB_SSE_CONNECTING)
		return;
	if (status < 0)
		goto out_fail;
	c->state = RB_SSE_WAITING;
	if (uv_read_start((uv_stream_t *)&c->tcp, sse_client_alloc, sse_client_read) < 0)
		goto out_fail;
	if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, c->request, 1, sse_client_written) < 0)
		goto out_fail;
	return;
out_fail:
	sse_client_end(c, RB_SSE_END_CONNECT_FAILED);
}

int rb_sse_client_start(struct rb_sse_client *c, struct rb_sse_shared *sh,
			const struct sockaddr_in *src, uint32_t room, uint64_t *room_seq,
			const uv_buf_t *request, char *line_buf, size_t line_cap)
{
	int one = 1, fd, r;

	memset(c, 0, sizeof(*c));
	c->sh = sh;
	c->room = room;
	c->room_seq = room_seq;
	c->request = request;
	c->started_ns = rb_mono_ns();
	rb_sse_parser_init(&c->sse, line_buf, line_cap);
	http_parser_init(&c->http, HTTP_RESPONSE);
	c->http.data = c;
	c->connect_req.data = c;
	c->write_req.data = c;
	sh->stats->started++;

	r = uv_tcp_init(sh->loop, &c->tcp);
	if (r < 0) {
		/* No handle to close: end without one. */
		sh->stats->connect_failed++;
		c->state = RB_SSE_CLOSED;
		sh->on_end(sh->owner, c, RB_SSE_END_CONNECT_FAILED, false);
		return r;
	}
	c->tcp.data = c;
	c->state = RB_SSE_CONNECTING;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		goto out_end;
	}
	/* Leave the port choice to connect(): the 4-tuple, not the source port, must be unique. */
	(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)src, sizeof(*src)) < 0) {
		r = -errno;
		close(fd);
		goto out_end;
	}
	r = uv_tcp_open(&c->tcp, fd);
	if (r < 0) {
		close(fd);
		goto out_end;
	}
	(void)uv_tcp_nodelay(&c->tcp, 1);
	r = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&sh->target,
			   sse_client_connected);
	if (r < 0)
		goto out_end;
	return 0;
out_end:
	sse_client_end(c, RB_SSE_END_CONNECT_FAILED);
	return r;
}

void rb_sse_client_check_timeout(struct rb_sse_client *c, uint64_t started_before_ns)
{
	if ((c->state == RB_SSE_CONNECTING || c->state == RB_SSE_WAITING) &&
	    c->started_ns < started_before_ns)
		sse_client_end(c, RB_SSE_END_TIMEOUT);
}

void rb_sse_client_stop(struct rb_sse_client *c)
{
	if (c->state == RB_SSE_DONE) {
		c->state = RB_SSE_CLOSING;
		uv_close((uv_handle_t *)&c->tcp, sse_client_closed);
		return;
	}
	sse_client_end(c, RB_SSE_END_STOPPED);
}
