#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "gateway.h"
#include "log.h"
#include "router.h"
#include "sender.h"
#include "stream.h"

#define CONN_MAX_SLOTS 64 /* pipelined responses waiting; more pauses reading */
#define CONN_MAX_BUFS 64  /* buffers per uv_write */

static struct gw_conn *conn_of_parser(http_parser *p)
{
	return gw_container_of(p, struct gw_conn, parser);
}

const char *gw_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	}
	return "Unknown";
}

static void req_free(struct gw_req *r)
{
	if (r == NULL)
		return;
	rc_buf_fini(&r->url);
	rc_buf_fini(&r->body);
	rc_buf_fini(&r->last_event_id);
	rc_buf_fini(&r->authorization);
	rc_buf_fini(&r->content_type);
	rc_buf_fini(&r->origin);
	free(r);
}

/* Puts c on a timeout queue (header_q or idle_q) with a deadline after ms. */
static void conn_timeout(struct gw_conn *c, struct gw_list *q, int64_t ms)
{
	gw_list_remove(&c->tq_node);
	c->tq = NULL;
	if (ms <= 0)
		return;
	c->tq = q;
	c->deadline = uv_now(c->gw->loop) + (uint64_t)ms;
	gw_list_insert_tail(q, &c->tq_node);
	gw_timer_arm(c->gw, c->deadline);
}

/* ---- parser callbacks: copy what the router needs, enforce the limits ---- */

static int on_message_begin(http_parser *p)
{
	struct gw_conn *c = conn_of_parser(p);

	req_free(c->req);
	c->req = calloc(1, sizeof(*c->req));
	if (c->req == NULL)
		return -1;
	/* a request has begun: the request deadline applies (not the keep-alive one) */
	if (c->tq != &c->gw->header_q)
		conn_timeout(c, &c->gw->header_q, c->gw->opt.header_timeout_ms);
	return 0;
}

static int header_bytes(struct gw_conn *c, size_t n)
{
	c->req->header_bytes += n;
	if (c->req->header_bytes > (size_t)c->gw->opt.max_header_bytes) {
		c->req->error_status = 431;
		return -1;
	}
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct gw_conn *c = conn_of_parser(p);

	if (header_bytes(c, n) != 0)
		return -1;
	rc_buf_append(&c->req->url, at, n);
	return c->req->url.err ? -1 : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct gw_conn *c = conn_of_parser(p);
	struct gw_req *r = c->req;

	if (header_bytes(c, n) != 0)
		return -1;
	if (r->in_value) {
		r->in_value = false;
		r->field_len = 0;
	}
	/* names longer than the field buffer are not ones we read */
	if (r->field_len + n < sizeof(r->field)) {
		memcpy(r->field + r->field_len, at, n);
		r->field_len += (uint8_t)n;
	} else {
		r->field_len = sizeof(r->field) - 1;
		r->field[0] = '\0';
	}
	return 0;
}

static struct rc_buf *header_target(struct gw_req *r)
{
	static const struct {
		const char *name;
		size_t off;
	} wanted[] = {
		{ "last-event-id", offsetof(struct gw_req, last_event_id) },
		{ "authorization", offsetof(struct gw_req, authorization) },
		{ "content-type", offsetof(struct gw_req, content_type) },
		{ "origin", offsetof(struct gw_req, origin) },
	};

	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		if (strlen(wanted[i].name) == r->field_len && strncasecmp(r->field, wanted[i].name, r->field_len) == 0)
			return (struct rc_buf *)((char *)r + wanted[i].off);
	return NULL;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct gw_conn *c = conn_of_parser(p);
	struct gw_req *r = c->req;

	if (header_bytes(c, n) != 0)
		return -1;
	if (!r->in_value) {
		r->in_value = true;
		r->cur = header_target(r);
		if (r->cur != NULL)
			r->cur->len = 0; /* a repeated header: the last one wins */
	}
	if (r->cur != NULL)
		rc_buf_append(r->cur, at, n);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct gw_conn *c = conn_of_parser(p);

	c->req->method = (enum http_method)p->method;
	c->req->keep_alive = http_should_keep_alive(p);
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > (uint64_t)c->gw->opt.max_body_bytes) {
		c->req->error_status = 413;
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct gw_conn *c = conn_of_parser(p);

	if (c->req->body.len + n > (size_t)c->gw->opt.max_body_bytes) {
		c->req->error_status = 413;
		return -1;
	}
	rc_buf_append(&c->req->body, at, n);
	return c->req->body.err ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
	/* stop here: the request is handled outside the parser */
	http_parser_pause(p, 1);
	return 0;
}

/* read-only, so the loops of several workers share it */
static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- writing ---- */

static void conn_write_cb(uv_write_t *wr, int status);
static void conn_write_idle(struct gw_conn *c);

static void conn_flush(struct gw_conn *c)
{
	uv_buf_t bufs[CONN_MAX_BUFS];
	unsigned n;
	int rv;

	if (c->writing || c->closing)
		return;
	/* write synchronously while the socket takes it: no request, no poll change */
	while ((n = gw_outq_take(&c->out, bufs, CONN_MAX_BUFS)) > 0) {
		size_t want = 0;
		for (unsigned i = 0; i < n; i++)
			want += bufs[i].len;
		c->out.busy = 0; /* the entries are consumed below, not by a write callback */
		rv = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
		if (rv == UV_EAGAIN)
			break;
		if (rv < 0) {
			gw_conn_close(c);
			return;
		}
		c->gw->m.bytes_delivered += (size_t)rv;
		gw_outq_consume(&c->out, (size_t)rv);
		if ((size_t)rv < want)
			break; /* the socket is full: the rest goes through uv_write */
	}
	if (c->out.count == 0) {
		conn_write_idle(c);
		return;
	}
	n = gw_outq_take(&c->out, bufs, CONN_MAX_BUFS);
	rv = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, conn_write_cb);
	if (rv != 0) {
		gw_outq_done(&c->out);
		gw_conn_close(c);
		return;
	}
	c->writing = true;
}

static void conn_after_response(struct gw_conn *c);

/* Everything queued is written: close, fetch more replay, or wait for a request. */
static void conn_write_idle(struct gw_conn *c)
{
	gw_outq_trim(&c->out);
	if (c->close_after_write) {
		gw_conn_close(c);
		return;
	}
	if (c->stream != NULL)
		gw_stream_drained(c->stream);
	else
		conn_after_response(c);
}

static void conn_write_cb(uv_write_t *wr, int status)
{
	struct gw_conn *c = gw_container_of(wr, struct gw_conn, wreq);
	size_t before = c->out.bytes;

	c->writing = false;
	gw_outq_done(&c->out);
	if (status < 0) {
		gw_conn_close(c);
		return;
	}
	c->gw->m.bytes_delivered += before - c->out.bytes;
	if (c->out.count > 0)
		conn_flush(c);
	else
		conn_write_idle(c);
}

/* Appends output to c's queue; nothing more. */
static int conn_push(struct gw_conn *c, struct gw_chunk *chunk, uint32_t off, uint32_t len)
{
	return c->closing ? RC_ECLOSED : gw_outq_push(&c->out, chunk, off, len);
}

int gw_conn_send(struct gw_conn *c, struct gw_chunk *chunk, uint32_t off, uint32_t len)
{
	int rv = conn_push(c, chunk, off, len);

	if (rv != RC_OK)
		return rv;
	if (c->delayed) {
		/* what waited goes now, with this */
		gw_list_remove(&c->flush_node);
		c->delayed = false;
	}
	if (!c->writing && !gw_list_linked(&c->flush_node))
		gw_list_insert_tail(&c->gw->flush_q, &c->flush_node);
	return RC_OK;
}

static void conn_delay_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;
	struct gw_list *pos, *tmp;

	gw_list_each_safe(pos, tmp, &gw->delay_q)
	{
		struct gw_conn *c = gw_container_of(pos, struct gw_conn, flush_node);
		gw_list_remove(&c->flush_node);
		c->delayed = false;
		gw_list_insert_tail(&gw->flush_q, &c->flush_node);
	}
	/* now: the loop's check handle would wait for the next I/O */
	gw_conn_flush_all(gw);
}

int gw_conn_send_later(struct gw_conn *c, struct gw_chunk *chunk, uint32_t off, uint32_t len, uint64_t last)
{
	struct gw *gw = c->gw;
	uint64_t delay = (uint64_t)gw->opt.write_delay_ms;
	int rv;

	/* the first output after a quiet spell goes at once; only a busy stream waits */
	if (delay == 0 || (!c->delayed && uv_now(gw->loop) >= last + delay))
		return gw_conn_send(c, chunk, off, len);
	rv = conn_push(c, chunk, off, len);
	if (rv != RC_OK)
		return rv;
	if (!c->writing && !gw_list_linked(&c->flush_node)) {
		gw_list_insert_tail(&gw->delay_q, &c->flush_node);
		c->delayed = true;
		/* one timer for every held stream: the first one starts it */
		if (!uv_is_active((uv_handle_t *)&gw->delay_timer)) {
			gw->delay_timer.data = gw;
			uv_timer_start(&gw->delay_timer, conn_delay_cb, delay, 0);
		}
	}
	return RC_OK;
}

/* A batched send finished (sender.c): the same steps as after uv_try_write. */
static void conn_sent(void *arg, void *cookie, int res)
{
	struct gw_conn *c = cookie;

	(void)arg;
	if (c->closing)
		return;
	if (res < 0 && res != -EAGAIN) {
		gw_conn_close(c);
		return;
	}
	if (res > 0) {
		c->gw->m.bytes_delivered += (size_t)res;
		gw_outq_consume(&c->out, (size_t)res);
	}
	/* the rest (a full socket goes to uv_write), or idle when nothing is left */
	conn_flush(c);
}

/* Every connection with output: one sendmsg each, all in one io_uring_enter per batch. */
static void conn_flush_batched(struct gw *gw)
{
	while (!gw_list_empty(&gw->flush_q) && gw->sender != NULL) {
		struct gw_list *pos, *tmp;

		gw_list_each_safe(pos, tmp, &gw->flush_q)
		{
			struct gw_conn *c = gw_container_of(pos, struct gw_conn, flush_node);
			uv_buf_t bufs[GW_SENDER_MAX_BUFS];
			uv_os_fd_t fd;
			unsigned n;

			if (c->writing || c->closing || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 ||
			    (n = gw_outq_take(&c->out, bufs, GW_SENDER_MAX_BUFS)) == 0) {
				gw_list_remove(&c->flush_node);
				conn_flush(c);
				continue;
			}
			c->out.busy = 0; /* consumed by conn_sent, not by a write callback */
			if (!gw_sender_add(gw->sender, fd, bufs, n, c))
				break; /* the batch is full: the rest in the next one */
			gw_list_remove(&c->flush_node);
		}
		if (gw_sender_run(gw->sender, conn_sent, gw) != RC_OK) {
			rc_log_error("io_uring sends failed; writing with write(2) from now on", NULL);
			gw_sender_free(gw->sender);
			gw->sender = NULL;
		}
	}
}

void gw_conn_flush_all(struct gw *gw)
{
	struct gw_list *pos, *tmp;

	if (gw->sender != NULL)
		conn_flush_batched(gw);
	gw_list_each_safe(pos, tmp, &gw->flush_q)
	{
		struct gw_conn *c = gw_container_of(pos, struct gw_conn, flush_node);
		gw_list_remove(&c->flush_node);
		conn_flush(c);
	}
}

/* ---- responses in request order ---- */

static void conn_queue_response(struct gw_conn *c, struct gw_chunk *resp, bool close)
{
	if (close)
		c->close_after_write = true;
	if (gw_conn_send(c, resp, 0, resp->len) != RC_OK)
		gw_conn_close(c);
	gw_chunk_unref(resp);
}

static struct gw_chunk *build_response(struct gw *gw, int status, const char *content_type, const char *extra,
				       const char *body, size_t body_len, bool close, bool cors)
{
	struct rc_buf b;
	struct gw_chunk *ch;

	rc_buf_init(&b);
	rc_buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, gw_status_text(status));
	if (content_type != NULL)
		rc_buf_printf(&b, "Content-Type: %s\r\n", content_type);
	rc_buf_printf(&b, "Content-Length: %zu\r\n", body_len);
	if (gw->opt.cors_origin != NULL && cors)
		rc_buf_printf(&b, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", gw->opt.cors_origin);
	if (extra != NULL)
		rc_buf_puts(&b, extra);
	rc_buf_puts(&b, close ? "Connection: close\r\n\r\n" : "\r\n");
	rc_buf_append(&b, body, body_len);
	if (b.err) {
		rc_buf_fini(&b);
		return NULL;
	}
	ch = gw_chunk_dup(b.data, b.len);
	rc_buf_fini(&b);
	gw_metrics_http(&gw->m, status);
	return ch;
}

void gw_conn_respond(struct gw_conn *c, int status, const char *content_type, const char *extra_headers,
		     const char *body, size_t body_len, bool close)
{
	struct gw_req *req = c->req;
	struct gw_chunk *resp;

	if (c->closing)
		return;
	if (req != NULL && !req->keep_alive)
		close = true;
	if (c->gw->stopping)
		close = true;
	resp = build_response(c->gw, status, content_type, extra_headers, body, body_len, close, req != NULL);
	if (resp == NULL) {
		gw_conn_close(c);
		return;
	}
	if (c->nslots > 0) {
		struct gw_slot *s = gw_conn_slot(c);
		if (s == NULL) {
			gw_chunk_unref(resp);
			gw_conn_close(c);
			return;
		}
		gw_slot_fill(s, resp, close);
		return;
	}
	conn_queue_response(c, resp, close);
}

void gw_conn_error(struct gw_conn *c, int status, const char *code, const char *message, const char *extra_headers)
{
	struct rc_buf b;

	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"error\":{\"code\":\"");
	rc_buf_puts(&b, code);
	rc_buf_puts(&b, "\",\"message\":");
	rc_buf_json_str(&b, message, strlen(message));
	rc_buf_puts(&b, "}}\n");
	gw_conn_respond(c, status, "application/json", extra_headers, b.data ? b.data : "", b.len,
			status == 400 || status == 413 || status == 431 || status == 408 || status == 503);
	rc_buf_fini(&b);
}

void gw_slot_respond(struct gw *gw, struct gw_slot *slot, int status, const char *content_type,
		     const char *extra_headers, const char *body, size_t body_len, bool close)
{
	struct gw_chunk *resp;

	if (gw->stopping)
		close = true;
	resp = build_response(gw, status, content_type, extra_headers, body, body_len, close, true);
	if (resp == NULL && slot->conn != NULL)
		gw_conn_close(slot->conn); /* out of memory: the slot is orphaned, and the fill frees it */
	gw_slot_fill(slot, resp, close);
}

struct gw_slot *gw_conn_slot(struct gw_conn *c)
{
	struct gw_slot *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->conn = c;
	if (c->slots_tail)
		c->slots_tail->next = s;
	else
		c->slots = s;
	c->slots_tail = s;
	c->nslots++;
	return s;
}

static void conn_resume(struct gw_conn *c);

void gw_slot_fill(struct gw_slot *slot, struct gw_chunk *resp, bool close_after)
{
	struct gw_conn *c = slot->conn;

	if (c == NULL) {
		/* the client went away while the broker answered */
		gw_chunk_unref(resp);
		free(slot);
		return;
	}
	slot->resp = resp;
	slot->close_after = close_after;
	slot->done = true;
	while (c->slots != NULL && c->slots->done) {
		struct gw_slot *s = c->slots;
		c->slots = s->next;
		if (c->slots == NULL)
			c->slots_tail = NULL;
		c->nslots--;
		conn_queue_response(c, s->resp, s->close_after);
		free(s);
	}
	if (c->nslots == 0 && c->deferred != NULL && !c->closing)
		conn_resume(c);
}

/* ---- reading and dispatch ---- */

static void conn_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct gw_conn *c = gw_container_of((uv_tcp_t *)h, struct gw_conn, tcp);
	(void)suggested;
	*buf = uv_buf_init(c->gw->readbuf, GW_READBUF_SIZE);
}

static void conn_read_start(struct gw_conn *c)
{
	if (!c->reading && !c->closing && uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) == 0)
		c->reading = true;
}

static void conn_read_stop(struct gw_conn *c)
{
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

/* The connection is idle between requests: the keep-alive deadline applies. */
static void conn_after_response(struct gw_conn *c)
{
	if (c->stream == NULL && c->nslots == 0 && c->req == NULL && c->deferred == NULL && !c->closing)
		conn_timeout(c, &c->gw->idle_q, c->gw->opt.idle_timeout_ms);
}

static void conn_dispatch(struct gw_conn *c, struct gw_req *req)
{
	gw_list_remove(&c->tq_node);
	c->tq = NULL;
	c->req = req;
	gw_route(c, req);
	c->req = NULL;
	req_free(req);
}

static bool conn_must_wait(const struct gw_conn *c, const struct gw_req *req)
{
	/* only a POST may be answered out of turn: the rest waits for earlier answers */
	return c->nslots >= CONN_MAX_SLOTS || (c->nslots > 0 && req->method != HTTP_POST);
}

/* Parses data; handles each complete request; keeps what follows a deferred one. */
static void conn_process(struct gw_conn *c, const char *data, size_t len)
{
	while (len > 0 && !c->closing && c->stream == NULL) {
		size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
		struct gw_req *req;

		data += n;
		len -= n;
		if (e == HPE_OK)
			return; /* consumed everything; waiting for more */
		if (e != HPE_PAUSED) {
			int status = c->req && c->req->error_status ? c->req->error_status : 400;
			char msg[160];
			snprintf(msg, sizeof(msg), "malformed HTTP request: %s", http_errno_description(e));
			req_free(c->req);
			c->req = NULL;
			if (status == 431)
				gw_conn_error(c, 431, "headers_too_large", "request headers are larger than the limit", NULL);
			else if (status == 413)
				gw_conn_error(c, 413, "body_too_large", "request body is larger than --max-body-bytes", NULL);
			else
				gw_conn_error(c, 400, "bad_request", msg, NULL);
			conn_read_stop(c);
			return;
		}
		http_parser_pause(&c->parser, 0);
		req = c->req;
		c->req = NULL;
		if (conn_must_wait(c, req)) {
			/* received whole: the request deadline no longer applies, its turn comes with the answers before it */
			gw_list_remove(&c->tq_node);
			c->tq = NULL;
			c->deferred = req;
			free(c->stash);
			c->stash = NULL;
			c->stash_len = 0;
			if (len > 0) {
				c->stash = malloc(len);
				if (c->stash == NULL) {
					gw_conn_close(c);
					return;
				}
				memcpy(c->stash, data, len);
				c->stash_len = len;
			}
			conn_read_stop(c);
			return;
		}
		conn_dispatch(c, req);
	}
}

/* Earlier responses went out: handle the deferred request and the input after it. */
static void conn_resume(struct gw_conn *c)
{
	struct gw_req *req = c->deferred;
	char *stash = c->stash;
	size_t len = c->stash_len;

	c->deferred = NULL;
	c->stash = NULL;
	c->stash_len = 0;
	conn_dispatch(c, req);
	if (stash != NULL) {
		conn_process(c, stash, len);
		free(stash);
	}
	if (c->deferred == NULL && !c->closing && !c->close_after_write)
		conn_read_start(c);
	if (c->out.count == 0)
		conn_after_response(c);
}

static void conn_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct gw_conn *c = gw_container_of((uv_tcp_t *)h, struct gw_conn, tcp);

	if (nread < 0) {
		/* EOF or error: a stream's client went away, or the client is done */
		gw_conn_close(c);
		return;
	}
	if (nread == 0 || c->closing)
		return;
	if (c->stream != NULL || c->close_after_write)
		return; /* a stream ignores input; it only watches for EOF */
	conn_process(c, buf->base, (size_t)nread);
	if (!c->closing && c->stream == NULL && c->out.count == 0 && c->req == NULL)
		conn_after_response(c);
}

static void conn_close_cb(uv_handle_t *h)
{
	struct gw_conn *c = gw_container_of((uv_tcp_t *)h, struct gw_conn, tcp);

	gw_outq_fini(&c->out);
	c->gw->m.conns_open--;
	free(c);
}

void gw_conn_close(struct gw_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	gw_list_remove(&c->node);
	gw_list_remove(&c->tq_node);
	gw_list_remove(&c->flush_node);
	c->delayed = false;
	if (c->stream != NULL) {
		gw_stream_free(c->stream);
		c->stream = NULL;
	}
	/* answers still coming from the broker find their slot orphaned */
	for (struct gw_slot *s = c->slots, *next; s != NULL; s = next) {
		next = s->next;
		if (s->done) {
			gw_chunk_unref(s->resp);
			free(s);
		} else {
			s->conn = NULL;
			s->next = NULL;
		}
	}
	c->slots = c->slots_tail = NULL;
	c->nslots = 0;
	req_free(c->req);
	req_free(c->deferred);
	c->req = c->deferred = NULL;
	free(c->stash);
	c->stash = NULL;
	uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

void gw_conn_accept(struct gw *gw)
{
	struct gw_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return;
	if (uv_tcp_init(gw->loop, &c->tcp) != 0) {
		free(c);
		return;
	}
	c->gw = gw;
	gw->m.conns_open++;
	gw_list_init(&c->node);
	gw_list_init(&c->tq_node);
	gw_list_init(&c->flush_node);
	gw_outq_init(&c->out);
	if (uv_accept((uv_stream_t *)&gw->listener, (uv_stream_t *)&c->tcp) != 0) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
		return;
	}
	gw_list_insert_tail(&gw->conns, &c->node);
	gw->m.conns_accepted++;
	http_parser_init(&c->parser, HTTP_REQUEST);
	uv_tcp_nodelay(&c->tcp, 1);
	if (gw->m.conns_open > (uint64_t)gw->opt.max_conns) {
		gw->m.conns_rejected++;
		gw_conn_error(c, 503, "too_many_connections", "the gateway is at --max-conns; try another gateway",
			      "Retry-After: 1\r\n");
		return;
	}
	conn_timeout(c, &gw->header_q, gw->opt.header_timeout_ms);
	conn_read_start(c);
}

static uint64_t expire_queue(struct gw_list *q, uint64_t now, bool is_request)
{
	struct gw_list *n;

	while ((n = gw_list_first(q)) != NULL) {
		struct gw_conn *c = gw_container_of(n, struct gw_conn, tq_node);
		if (c->deadline > now)
			return c->deadline;
		gw_list_remove(&c->tq_node);
		c->tq = NULL;
		if (is_request && c->req != NULL) {
			req_free(c->req);
			c->req = NULL;
			gw_conn_error(c, 408, "request_timeout", "the request was not received in time", NULL);
			conn_read_stop(c);
		} else {
			gw_conn_close(c);
		}
	}
	return 0;
}

uint64_t gw_conn_expire(struct gw *gw, uint64_t now)
{
	uint64_t a = expire_queue(&gw->header_q, now, true);
	uint64_t b = expire_queue(&gw->idle_q, now, false);
	return a == 0 ? b : b == 0 ? a : (a < b ? a : b);
}
