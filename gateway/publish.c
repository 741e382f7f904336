#include "publish.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_client.h"
#include "buf.h"
#include "conn.h"
#include "error.h"
#include "event.h"
#include "gateway.h"

#define PUBLISH_MAX_EVENTS 1000

/*
 * POSTs are coalesced: while one broker request is in flight, newly checked
 * POSTs queue up, and the next request carries all of them (up to the broker's
 * 1000 events per publish). One request in flight at a time keeps the order
 * of POSTs, also of POSTs pipelined on one connection, and a burst of small
 * POSTs costs one broker round trip instead of one each.
 *
 * Under a steady stream of POSTs that each arrive alone (nothing in flight,
 * nothing queued), that coalescing never happens, and every POST pays a
 * broker round trip of its own. So a POST that finds the publisher idle
 * waits up to --publish-linger-ms for others when the previous request went
 * out no longer than that ago (publishes are flowing); after a quiet spell it
 * goes at once. POSTs that queued behind a request in flight never wait more.
 * Off by default: a publisher that waits for each answer before its next POST
 * would wait the linger every time (measured in docs/BENCHMARKS.md).
 */
#define BATCH_MAX_BYTES (4 * 1024 * 1024)

/* A checked POST waiting for the broker. */
struct pub_call {
	struct pub_call *next;
	struct gw *gw;
	struct gw_slot *slot;
	bool array; /* answer {"ids":[…]} rather than {"id":…} */
	bool close;
	bool solo;  /* send alone: it failed inside a batch */
	size_t nevents;
	size_t len;    /* of events: compact events joined by commas */
	char events[]; /* NUL-terminated */
};

/* The gateway's publish queue (one per gateway loop). */
struct gw_publisher {
	struct pub_call *head, *tail;
	bool in_flight;
	uint64_t last_sent; /* loop time of the last broker request (ms) */
	uv_timer_t linger;  /* active while a POST lingers */
};

/* A broker request carrying several POSTs. */
struct pub_batch {
	struct gw *gw;
	size_t n;
	struct pub_call *calls[];
};

static void publish_count(struct gw *gw, int status)
{
	gw->m.publish_by_status[status / 100]++;
}

static void publish_answer(struct pub_call *pc, int status, const char *body, size_t len)
{
	struct rc_buf b;
	struct gw_chunk *ch;
	bool close = pc->close || status == 503;

	rc_buf_init(&b);
	rc_buf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n", status,
		      gw_status_text(status), len + 1);
	if (pc->gw->opt.cors_origin != NULL)
		rc_buf_printf(&b, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", pc->gw->opt.cors_origin);
	rc_buf_puts(&b, close ? "Connection: close\r\n\r\n" : "\r\n");
	rc_buf_append(&b, body, len);
	rc_buf_append(&b, "\n", 1);
	ch = b.err ? NULL : gw_chunk_dup(b.data, b.len);
	rc_buf_fini(&b);
	gw_metrics_http(&pc->gw->m, status);
	publish_count(pc->gw, status);
	if (ch == NULL) {
		/* nothing to send: close rather than leave the client hanging */
		ch = gw_chunk_dup("", 0);
		close = true;
	}
	gw_slot_fill(pc->slot, ch, close);
	free(pc);
}

static void publish_error(struct pub_call *pc, int status, const char *code, const char *message)
{
	struct rc_buf b;

	rc_buf_init(&b);
	rc_buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", code);
	rc_buf_json_str(&b, message, strlen(message));
	rc_buf_puts(&b, "}}");
	publish_answer(pc, status, b.data ? b.data : "", b.len);
	rc_buf_fini(&b);
}

/* Answers pc with its slice of the ids array. */
static void publish_ok(struct pub_call *pc, struct json_object *ids, size_t first)
{
	struct rc_buf b;

	pc->gw->m.publish_events += pc->nevents;
	rc_buf_init(&b);
	rc_buf_puts(&b, pc->array ? "{\"ids\":[" : "{\"id\":");
	for (size_t i = 0; i < pc->nevents; i++) {
		const char *id = json_object_get_string(json_object_array_get_idx(ids, first + i));
		if (i)
			rc_buf_append(&b, ",", 1);
		rc_buf_json_str(&b, id ? id : "", id ? strlen(id) : 0);
	}
	rc_buf_puts(&b, pc->array ? "]}" : "}");
	publish_answer(pc, 201, b.data ? b.data : "", b.len);
	rc_buf_fini(&b);
}

static void publisher_send(struct gw *gw);

/* Puts calls back at the head of the queue, in order, to be sent one by one. */
static void publisher_requeue_solo(struct gw_publisher *p, struct pub_batch *batch)
{
	for (size_t i = batch->n; i-- > 0;) {
		struct pub_call *pc = batch->calls[i];
		pc->solo = true;
		pc->next = p->head;
		p->head = pc;
		if (p->tail == NULL)
			p->tail = pc;
	}
}

/* Loop thread: the broker answered a batch (or did not). */
static void publish_done(void *arg, int err, const char *reply, size_t len)
{
	struct pub_batch *batch = arg;
	struct gw *gw = batch->gw;
	struct json_object *obj = NULL, *ok, *ids, *e, *code = NULL, *msg = NULL;
	struct json_tokener *tok;
	size_t first = 0;

	gw->publisher->in_flight = false;
	if (err != RC_OK) {
		const char *m = err == RC_ETIMEDOUT ? "the broker did not answer in time; the events may be published"
						    : "the broker is unreachable; nothing was published";
		for (size_t i = 0; i < batch->n; i++)
			publish_error(batch->calls[i], 503, "broker_unavailable", m);
		goto out;
	}
	tok = json_tokener_new();
	if (tok != NULL) {
		obj = json_tokener_parse_ex(tok, reply, (int)len);
		json_tokener_free(tok);
	}
	if (obj != NULL && json_object_object_get_ex(obj, "ok", &ok) && json_object_get_boolean(ok) &&
	    json_object_object_get_ex(obj, "ids", &ids)) {
		for (size_t i = 0; i < batch->n; i++) {
			size_t n = batch->calls[i]->nevents;
			publish_ok(batch->calls[i], ids, first); /* frees the call */
			first += n;
		}
		goto out;
	}
	if (obj != NULL && json_object_object_get_ex(obj, "error", &e)) {
		json_object_object_get_ex(e, "code", &code);
		json_object_object_get_ex(e, "message", &msg);
	}
	{
		const char *c = code ? json_object_get_string(code) : "broker_error";
		const char *m = msg ? json_object_get_string(msg) : "the broker refused the events";
		bool fatal = strcmp(c, "shutting_down") == 0 || strcmp(c, "internal") == 0 || code == NULL;
		bool room_limit = strcmp(c, "too_many_rooms") == 0; /* the broker's state, not the POST's fault */
		if (!fatal && batch->n > 1) {
			/* one POST spoiled the batch: send each alone so only it fails */
			publisher_requeue_solo(gw->publisher, batch);
			goto out;
		}
		for (size_t i = 0; i < batch->n; i++)
			publish_error(batch->calls[i],
				      strcmp(c, "too_large") == 0 ? 413
				      : fatal || room_limit	  ? 503
								  : 400,
				      code ? c : "broker_error", m);
	}
out:
	json_object_put(obj);
	free(batch);
	publisher_send(gw); /* what queued meanwhile has waited a round trip already */
}

/* Sends the queued POSTs as one broker request, unless one is in flight. */
static void publisher_send(struct gw *gw)
{
	struct gw_publisher *p = gw->publisher;
	struct pub_batch *batch;
	struct rc_buf req;
	size_t n = 0, events = 0, bytes = 0;

	if (p->in_flight || p->head == NULL)
		return;
	uv_timer_stop(&p->linger);
	for (struct pub_call *pc = p->head; pc != NULL; pc = pc->next) {
		if (n > 0 && (pc->solo || p->head->solo || events + pc->nevents > PUBLISH_MAX_EVENTS ||
			      bytes + pc->len > BATCH_MAX_BYTES))
			break;
		n++;
		events += pc->nevents;
		bytes += pc->len + 1;
	}
	batch = malloc(sizeof(*batch) + n * sizeof(batch->calls[0]));
	rc_buf_init(&req);
	if (batch != NULL && rc_buf_reserve(&req, bytes + 64) == RC_OK) {
		batch->gw = gw;
		batch->n = n;
		rc_buf_puts(&req, "{\"op\":\"publish\",\"events\":[");
		for (size_t i = 0; i < n; i++) {
			struct pub_call *pc = p->head;
			p->head = pc->next;
			batch->calls[i] = pc;
			if (i)
				rc_buf_append(&req, ",", 1);
			rc_buf_append(&req, pc->events, pc->len);
		}
		if (p->head == NULL)
			p->tail = NULL;
		rc_buf_puts(&req, "]}");
	}
	if (batch == NULL || req.err) {
		/* out of memory: fail what is queued rather than hang */
		free(batch);
		rc_buf_fini(&req);
		while (p->head != NULL) {
			struct pub_call *pc = p->head;
			p->head = pc->next;
			publish_error(pc, 503, "out_of_memory", "the gateway is out of memory");
		}
		p->tail = NULL;
		return;
	}
	p->in_flight = true;
	p->last_sent = uv_now(gw->loop);
	if (gw_api_call(gw->api, req.data, req.len, (int)gw->opt.publish_timeout_ms, publish_done, batch) != RC_OK)
		publish_done(batch, RC_EIO, NULL, 0);
	rc_buf_fini(&req);
}

static void publisher_linger_cb(uv_timer_t *t)
{
	publisher_send(t->data);
}

/* A POST was queued: send now, or linger for company (see the top of the file). */
static void publisher_kick(struct gw *gw)
{
	struct gw_publisher *p = gw->publisher;
	uint64_t linger = (uint64_t)gw->opt.publish_linger_ms;

	if (p->in_flight || uv_is_active((uv_handle_t *)&p->linger))
		return; /* it goes with the next request */
	if (linger > 0 && p->last_sent != 0 && uv_now(gw->loop) - p->last_sent <= linger) {
		uv_timer_start(&p->linger, publisher_linger_cb, linger, 0);
		return;
	}
	publisher_send(gw);
}

int gw_publisher_init(struct gw *gw)
{
	struct gw_publisher *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return RC_ENOMEM;
	uv_timer_init(gw->loop, &p->linger);
	p->linger.data = gw;
	gw->publisher = p;
	return RC_OK;
}

static void publisher_closed(uv_handle_t *h)
{
	free(gw_container_of((uv_timer_t *)h, struct gw_publisher, linger));
}

void gw_publisher_fini(struct gw *gw)
{
	struct gw_publisher *p = gw->publisher;

	if (p == NULL)
		return;
	while (p->head != NULL) {
		struct pub_call *pc = p->head;
		p->head = pc->next;
		publish_error(pc, 503, "broker_unavailable", "the gateway is stopping; nothing was published");
	}
	uv_close((uv_handle_t *)&p->linger, publisher_closed);
	gw->publisher = NULL;
}

static bool token_ok(const struct gw *gw, const struct gw_req *req)
{
	const char *want = gw->opt.publish_token;
	size_t wl, gl;
	unsigned char diff = 0;

	if (want == NULL || *want == '\0')
		return true;
	if (req->authorization.len < 7 || strncasecmp(req->authorization.data, "Bearer ", 7) != 0)
		return false;
	wl = strlen(want);
	gl = req->authorization.len - 7;
	/* compare every byte, so the time taken does not tell how much matched */
	for (size_t i = 0; i < wl; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? req->authorization.data[7 + i] : 0);
	return diff == 0 && gl == wl;
}

static bool content_type_ok(const struct gw_req *req)
{
	const char *ct = req->content_type.data;
	size_t n = req->content_type.len;

	if (n == 0)
		return true; /* no type given: try JSON */
	if (n >= 16 && strncasecmp(ct, "application/json", 16) == 0 && (n == 16 || ct[16] == ';' || ct[16] == ' '))
		return true;
	return false;
}

/* Checks one event; on failure answers and returns false. */
static bool publish_check(struct gw_conn *c, struct json_object *ev, size_t i, bool array, struct rc_buf *out)
{
	struct rc_event_view v;
	char why[256], msg[300];
	int rv = rc_event_check(ev, (size_t)c->gw->opt.max_event_bytes, &v, why, sizeof(why));

	if (rv != RC_OK) {
		if (array)
			snprintf(msg, sizeof(msg), "events[%zu].%s", i, why);
		else
			snprintf(msg, sizeof(msg), "%s", why);
		publish_count(c->gw, rv == RC_ETOOBIG ? 413 : 400);
		gw_conn_error(c, rv == RC_ETOOBIG ? 413 : 400, rv == RC_ETOOBIG ? "event_too_large" : "invalid_event",
			      msg, NULL);
		return false;
	}
	if (i > 0)
		rc_buf_append(out, ",", 1);
	rc_buf_append(out, v.json, v.json_len);
	return true;
}

void gw_publish(struct gw_conn *c, struct gw_req *req)
{
	struct gw *gw = c->gw;
	struct gw_publisher *p = gw->publisher;
	struct json_tokener *tok = NULL;
	struct json_object *body = NULL;
	struct pub_call *pc = NULL;
	struct rc_buf out;
	bool array;
	size_t n;

	rc_buf_init(&out);
	if (!token_ok(gw, req)) {
		publish_count(gw, 401);
		gw_conn_error(c, 401, "unauthorized", "POST needs Authorization: Bearer <publish token>",
			      "WWW-Authenticate: Bearer\r\n");
		goto out;
	}
	if (!content_type_ok(req)) {
		publish_count(gw, 415);
		gw_conn_error(c, 415, "unsupported_media_type", "Content-Type must be application/json", NULL);
		goto out;
	}
	tok = json_tokener_new_ex(64);
	if (tok == NULL)
		goto out_nomem;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	body = json_tokener_parse_ex(tok, req->body.data ? req->body.data : "", (int)req->body.len);
	if (body == NULL || json_tokener_get_parse_end(tok) != req->body.len) {
		char msg[160];
		snprintf(msg, sizeof(msg), "body is not valid JSON: %s",
			 body != NULL ? "trailing bytes after the value"
			 : json_tokener_get_error(tok) == json_tokener_continue ? "unexpected end of input"
										: json_tokener_error_desc(json_tokener_get_error(tok)));
		publish_count(gw, 400);
		gw_conn_error(c, 400, "invalid_json", msg, NULL);
		goto out;
	}
	array = json_object_is_type(body, json_type_array);
	n = array ? json_object_array_length(body) : 1;
	if (array && (n == 0 || n > PUBLISH_MAX_EVENTS)) {
		publish_count(gw, 400);
		gw_conn_error(c, 400, "invalid_event", "body: an array must hold 1-1000 events", NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (!publish_check(c, array ? json_object_array_get_idx(body, i) : body, i, array, &out))
			goto out;
	if (!gw_api_connected(gw->api)) {
		publish_count(gw, 503);
		gw_conn_error(c, 503, "broker_unavailable", "the broker is unreachable; nothing was published",
			      "Retry-After: 1\r\n");
		goto out;
	}
	pc = calloc(1, sizeof(*pc) + out.len + 1);
	if (out.err || pc == NULL)
		goto out_nomem;
	pc->gw = gw;
	pc->array = array;
	pc->close = !req->keep_alive || gw->stopping;
	pc->nevents = n;
	pc->len = out.len;
	memcpy(pc->events, out.data, out.len);
	pc->slot = gw_conn_slot(c);
	if (pc->slot == NULL)
		goto out_nomem;
	if (p->tail)
		p->tail->next = pc;
	else
		p->head = pc;
	p->tail = pc;
	pc = NULL; /* the queue owns it */
	publisher_kick(gw);
	goto out;

out_nomem:
	publish_count(gw, 503);
	gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
out:
	free(pc);
	json_object_put(body);
	if (tok != NULL)
		json_tokener_free(tok);
	rc_buf_fini(&out);
}
