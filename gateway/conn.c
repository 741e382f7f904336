#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "gateway.h"
#include "log.h"
#include "response.h"

#define CONN_MAX_SLOTS 64 /* pipelined responses waiting; more pauses reading */

/* Puts c on a timeout queue (header_q or idle_q), off the other. */
static void conn_timeout(struct gw_conn *c, struct gw_tq *q)
{
	gw_tq_push(q, &c->tq);
	c->on_header_q = q == &c->gw->header_q;
}

/* Takes c off its timeout queue. */
static void conn_untimed(struct gw_conn *c)
{
	gw_tq_remove(&c->tq);
	c->on_header_q = false;
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

/* The response, counted in the metrics; NULL when out of memory. */
static struct gw_chunk *conn_response(struct gw *gw, int status, const char *content_type, const char *extra,
				      const char *body, size_t body_len, bool close, bool cors)
{
	const struct gw_response r = {
		.status = status,
		.content_type = content_type,
		.extra = extra,
		.cors_origin = cors ? gw->opt.cors_origin : NULL,
		.close = close,
	};

	gw_metrics_http(&gw->m, status);
	return gw_response_new(&r, body, body_len);
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
	resp = conn_response(c->gw, status, content_type, extra_headers, body, body_len, close, req != NULL);
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
	gw_response_error_json(&b, code, message);
	gw_conn_respond(c, status, "application/json", extra_headers, b.data ? b.data : "", b.len,
			status == 400 || status == 413 || status == 431 || status == 408 || status == 503);
	rc_buf_fini(&b);
}

void gw_conn_upgrade(struct gw_conn *c, const struct gw_conn_owner_ops *ops, void *owner)
{
	conn_untimed(c);
	c->owner_ops = ops;
	c->owner = owner;
}

void gw_slot_respond(struct gw *gw, struct gw_slot *slot, int status, const char *content_type,
		     const char *extra_headers, const char *body, size_t body_len, bool close)
{
	struct gw_chunk *resp;

	if (gw->stopping)
		close = true;
	resp = conn_response(gw, status, content_type, extra_headers, body, body_len, close, true);
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
	if (c->nslots == 0 && c->deferred != NULL && !c->closing && c->hold == NULL)
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
	if (c->owner_ops == NULL && c->nslots == 0 && c->req == NULL && !gw_req_parser_busy(&c->parser) &&
	    c->deferred == NULL && c->hold == NULL && !c->closing)
		conn_timeout(c, &c->gw->idle_q);
}

void gw_conn_written(struct gw_conn *c)
{
	if (c->close_after_write) {
		gw_conn_close(c);
		return;
	}
	if (c->owner_ops != NULL)
		c->owner_ops->drained(c->owner);
	else if (c->deferred != NULL && c->nslots == 0 && c->hold == NULL)
		conn_resume(c); /* the answers it waited behind were read */
	else
		conn_after_response(c);
}


static void conn_dispatch(struct gw_conn *c, struct gw_req *req)
{
	conn_untimed(c);
	c->req = req;
	c->gw->on_request(c, req);
	/* NULL when the handler held it, or when a close freed it */
	req = c->req;
	c->req = NULL;
	gw_req_free(req);
}

/* Whether the client has more answers unread than --max-response-buffer: its next request waits. */
static bool conn_backlogged(const struct gw_conn *c)
{
	return c->out.bytes > (size_t)c->gw->opt.max_response_buffer;
}

static bool conn_must_wait(const struct gw_conn *c, const struct gw_req *req)
{
	/* only a POST may be answered out of turn: the rest waits for earlier answers; all wait for a held one */
	return c->hold != NULL || c->nslots >= CONN_MAX_SLOTS || (c->nslots > 0 && req->method != HTTP_POST) ||
	       conn_backlogged(c);
}

/*
 * A request's head asked to be told before its body is sent (Expect:
 * 100-continue): the owner's on_expect refuses it with a final answer (then
 * the body is never read: the connection closes after it), or 100 Continue
 * goes out. Behind answers not known yet, nothing is said (a 100 must not
 * overtake them): the client sends its body after its own wait. Returns
 * false when parsing must stop.
 */
static bool conn_expect(struct gw_conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct gw_chunk *ch;

	if (c->nslots > 0 || c->hold != NULL)
		return true;
	if (c->gw->on_expect != NULL) {
		bool go;
		c->req = c->parser.req;
		go = c->gw->on_expect(c, c->req);
		c->req = NULL;
		if (!go) {
			gw_req_parser_fini(&c->parser);
			c->close_after_write = true;
			conn_read_stop(c);
			return false;
		}
	}
	ch = gw_chunk_dup(cont, sizeof(cont) - 1);
	if (ch == NULL || gw_conn_send(c, ch, 0, ch->len) != RC_OK) {
		gw_chunk_unref(ch);
		gw_conn_close(c);
		return false;
	}
	gw_chunk_unref(ch);
	return true;
}

/* Parses data; handles each complete request; keeps what follows a deferred one. */
static void conn_process(struct gw_conn *c, const char *data, size_t len)
{
	while (len > 0 && !c->closing && c->owner_ops == NULL) {
		const struct gw_req_limits lim = {
			.max_header_bytes = (size_t)c->gw->opt.max_header_bytes,
			.max_body_bytes = (size_t)c->gw->opt.max_body_bytes,
		};
		struct gw_req *req = NULL;
		const char *why = NULL;
		int status = 0;
		size_t n;
		enum gw_req_result res = gw_req_parse(&c->parser, &lim, data, len, &n, &req, &status, &why);

		data += n;
		len -= n;
		if (res == GW_REQ_MORE) {
			/* a request has begun: the request deadline applies (not the keep-alive one) */
			if (gw_req_parser_busy(&c->parser) && !c->on_header_q)
				conn_timeout(c, &c->gw->header_q);
			return;
		}
		if (res == GW_REQ_HEAD) {
			if (!conn_expect(c))
				return;
			continue;
		}
		if (res == GW_REQ_BAD) {
			char msg[160];
			snprintf(msg, sizeof(msg), "malformed HTTP request: %s", why);
			if (status == 431)
				gw_conn_error(c, 431, "headers_too_large", "request headers are larger than the limit", NULL);
			else if (status == 413)
				gw_conn_error(c, 413, "body_too_large", "request body is larger than --max-body-bytes", NULL);
			else
				gw_conn_error(c, 400, "bad_request", msg, NULL);
			conn_read_stop(c);
			return;
		}
		if (conn_must_wait(c, req)) {
			/*
			 * Received whole: the request deadline no longer applies, its
			 * turn comes with the answers before it. A client that does not
			 * read those answers is closed after --idle-timeout-ms.
			 */
			if (conn_backlogged(c))
				conn_timeout(c, &c->gw->idle_q);
			else
				conn_untimed(c);
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

void gw_conn_hold(struct gw_conn *c, struct gw_hold *h)
{
	h->conn = c;
	h->req = c->req;
	c->req = NULL;
	c->hold = h;
}

void gw_conn_release(struct gw_hold *h, gw_held_fn fn, void *arg)
{
	struct gw_conn *c = h->conn;
	struct gw_req *req = h->req;

	h->conn = NULL;
	h->req = NULL;
	if (c == NULL) {
		gw_req_free(req); /* the client went away meanwhile */
		return;
	}
	c->hold = NULL;
	c->req = req;
	if (fn != NULL)
		fn(c, req, arg);
	req = c->req;
	c->req = NULL;
	gw_req_free(req);
	if (c->closing || c->hold != NULL)
		return;
	if (c->owner_ops != NULL) {
		/* a stream now: what was pipelined behind it is not read, as behind any stream */
		gw_req_free(c->deferred);
		c->deferred = NULL;
		free(c->stash);
		c->stash = NULL;
		c->stash_len = 0;
		conn_read_start(c); /* it watches for EOF */
		return;
	}
	if (c->deferred != NULL) {
		if (c->nslots == 0)
			conn_resume(c);
		return; /* else the answers before it resume it */
	}
	if (!c->close_after_write)
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
	if (c->owner_ops != NULL || c->close_after_write)
		return; /* a stream ignores input; it only watches for EOF */
	conn_process(c, buf->base, (size_t)nread);
	if (!c->closing && c->owner_ops == NULL && c->out.count == 0 && !gw_req_parser_busy(&c->parser))
		conn_after_response(c);
}

static void conn_close_cb(uv_handle_t *h)
{
	struct gw_conn *c = gw_container_of((uv_tcp_t *)h, struct gw_conn, tcp);

	if (c->owner_ops != NULL)
		c->owner_ops->closed(c->owner);
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
	conn_untimed(c);
	gw_list_remove(&c->flush_node);
	c->delayed = false;
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
	if (c->hold != NULL) {
		c->hold->conn = NULL; /* the holder keeps the request until it releases it */
		c->hold = NULL;
	}
	gw_req_parser_fini(&c->parser);
	gw_req_free(c->req);
	gw_req_free(c->deferred);
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
	gw_tq_entry_init(&c->tq);
	gw_list_init(&c->flush_node);
	gw_outq_init(&c->out);
	if (uv_accept((uv_stream_t *)&gw->listener, (uv_stream_t *)&c->tcp) != 0) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
		return;
	}
	gw_list_insert_tail(&gw->conns, &c->node);
	gw->m.conns_accepted++;
	gw_req_parser_init(&c->parser);
	uv_tcp_nodelay(&c->tcp, 1);
	if (gw->m.conns_open > (uint64_t)gw->opt.max_conns) {
		gw->m.conns_rejected++;
		gw_conn_error(c, 503, "too_many_connections", "the gateway is at --max-conns; try another gateway",
			      "Retry-After: 1\r\n");
		return;
	}
	conn_timeout(c, &gw->header_q);
	conn_read_start(c);
}

/* A request was not received within --header-timeout-ms: 408 when it had begun, else close. */
static void conn_header_expired(struct gw_tq *q, struct gw_tq_entry *e)
{
	struct gw_conn *c = gw_container_of(e, struct gw_conn, tq);

	(void)q;
	c->on_header_q = false;
	if (gw_req_parser_busy(&c->parser)) {
		gw_req_parser_fini(&c->parser);
		gw_conn_error(c, 408, "request_timeout", "the request was not received in time", NULL);
		conn_read_stop(c);
	} else {
		gw_conn_close(c);
	}
}

/* A keep-alive connection was idle for --idle-timeout-ms. */
static void conn_idle_expired(struct gw_tq *q, struct gw_tq_entry *e)
{
	(void)q;
	gw_conn_close(gw_container_of(e, struct gw_conn, tq));
}

void gw_conn_timers_init(struct gw *gw)
{
	gw_tq_init(&gw->header_q, &gw->timer, (uint64_t)gw->opt.header_timeout_ms, conn_header_expired, gw);
	gw_tq_init(&gw->idle_q, &gw->timer, (uint64_t)gw->opt.idle_timeout_ms, conn_idle_expired, gw);
}
