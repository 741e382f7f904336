#include "publish.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_client.h"
#include "auth.h"
#include "auth_url.h"
#include "buf.h"
#include "conn.h"
#include "error.h"
#include "bus_client.h"
#include "event.h"
#include "frame.h"
#include "gateway.h"
#include "grant.h"
#include "id.h"
#include "json.h"
#include "link_client.h"
#include "proto_limits.h"
#include "response.h"

/*
 * POSTs are coalesced: while one broker request is in flight, newly checked
 * POSTs queue up, and the next request carries all of them (up to the broker's
 * RC_PUBLISH_MAX_EVENTS events and RC_PUBLISH_BATCH_BYTES per publish). One request in flight at a time keeps the order
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
 *
 * A broker that hangs holds nothing for long: each POST waits at most
 * --publish-timeout-ms from its arrival. One that is still queued then is
 * answered 503 (it never left: nothing published); the request in flight is
 * given what is left of its oldest POST's time, and ends 504 (sent, outcome
 * unknown). The bytes of events queued or in flight are bounded by
 * --publish-queue-bytes: a POST past it is answered 503 overloaded at once.
 *
 * With several --broker-api addresses the api client sends a request whose
 * broker failed again to another (api_client.h), so a publish must be safe
 * to repeat: every event that comes without an idempotency key gets one
 * here, "gw-<16 hex digits>-<n>": a random 64-bit id drawn when the loop
 * starts and a counter. The brokers then publish it once however often it
 * is sent (PROTOCOL.md, "Several brokers").
 *
 * With --broker-link the publish request goes over the loop's link
 * (link_client.h) instead of the nng api: the same request, answered the
 * same ways (the bus ACKS block, or the broker's reply), with the same
 * outcomes for the POSTs; the op "acks" still goes over the nng api.
 */

/* A checked POST waiting for the broker. */
struct pub_call {
	struct pub_call *next;
	struct gw *gw;
	struct gw_slot *slot;
	bool array; /* answer {"ids":[…]} rather than {"id":…} */
	bool close;
	bool solo;  /* send alone: it failed inside a batch */
	struct gw_tq_entry wait; /* on p->waiting while queued */
	uint64_t arrived;        /* loop time it was queued */
	size_t nevents;
	size_t len;    /* of events: compact events joined by commas */
	char events[]; /* NUL-terminated */
};

/* The gateway's publish queue (one per gateway loop). */
struct gw_publisher {
	struct gw *gw;
	struct pub_call *head, *tail;
	struct pub_batch *in_flight; /* the broker request out, or NULL */
	uint64_t last_sent;          /* loop time of the last broker request (ms) */
	uv_timer_t linger;           /* active while a POST lingers */
	struct gw_tq waiting;        /* queued POSTs, by arrival: --publish-timeout-ms */
	size_t bytes;                /* of the events queued or in flight */
	uint64_t key_id, key_seq;    /* the keys this loop gives events (several brokers) */
	uint64_t ack_seq;	     /* the last ack token's request number (key_id-ack_seq) */
	uv_timer_t ask;		     /* runs while a publish answered on the bus is in flight */
	struct pub_ask *asking;	     /* the op "acks" in flight, or NULL */
	int open_handles;	     /* linger and ask: freed when both are closed */
};

/*
 * How long a publish waits for its answer on the bus before the broker is
 * asked for it (op "acks"), and how often again: the bus message that
 * carried it may have been lost (the inbox full, nng dropping under load);
 * the events come back by replay, the answer only this way.
 */
#define PUBLISH_ACK_ASK_MS 300

/* An op "acks" in flight: the api call owns it; p is NULL once the publisher is gone. */
struct pub_ask {
	struct gw_publisher *p;
	uint64_t token;
};

/*
 * A broker request carrying several POSTs. The api call owns it until its
 * callback; p is NULL once the publisher is gone (gw_publisher_fini), and the
 * POSTs are then answered without it.
 */
struct pub_batch {
	struct gw_publisher *p;
	struct gw_api_call *call; /* for gw_api_cancel once acknowledged on the bus */
	struct gw_link_call *lcall; /* the same over --broker-link */
	uint64_t token;		  /* with ack: the request number of its ack token */
	bool ack;		  /* the broker was asked to answer on the bus */
	bool acked;		  /* answered from the bus: the api's callback only frees it */
	size_t n;
	struct pub_call *calls[];
};

static void publish_count(struct gw *gw, int status)
{
	gw->m.publish_by_status[status / 100]++;
}

/* Answers pc with a JSON body (b, which ends in a newline; b.err: out of memory) and frees pc. */
static void publish_answer(struct pub_call *pc, int status, const struct rc_buf *b)
{
	bool close = pc->close || status == 503;
	struct gw_publisher *p = pc->gw->publisher;
	const struct gw_response r = {
		.status = status,
		.content_type = "application/json",
		.extra = status == 503 ? "Retry-After: 1\r\n" : NULL,
		.cors_origin = pc->gw->opt.cors_origin,
		.close = close,
	};
	struct gw_chunk *ch = b->err ? NULL : gw_response_new(&r, b->data ? b->data : "", b->len);

	gw_tq_remove(&pc->wait);
	if (p != NULL)
		p->bytes -= pc->len;
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
	gw_response_error_json(&b, code, message);
	publish_answer(pc, status, &b);
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
	rc_buf_puts(&b, pc->array ? "]}\n" : "}\n");
	publish_answer(pc, 201, &b);
	rc_buf_fini(&b);
}

/* Answers pc with its slice of an acknowledgement's ids (from first on). */
static void publish_ok_ack(struct pub_call *pc, uint64_t epoch, const struct rc_ack *a, uint32_t first)
{
	char id[RC_ID_MAX];
	size_t plen = rc_id_prefix(id, epoch), len;
	struct rc_buf b;

	pc->gw->m.publish_events += pc->nevents;
	rc_buf_init(&b);
	rc_buf_puts(&b, pc->array ? "{\"ids\":[" : "{\"id\":");
	for (size_t i = 0; i < pc->nevents; i++) {
		len = rc_id_format_gseq(id, plen, rc_ack_gseq(a, first + (uint32_t)i));
		rc_buf_append(&b, i ? ",\"" : "\"", i ? 2 : 1);
		rc_buf_append(&b, id, len);
		rc_buf_append(&b, "\"", 1);
	}
	rc_buf_puts(&b, pc->array ? "]}\n" : "}\n");
	publish_answer(pc, 201, &b);
	rc_buf_fini(&b);
}

static void publisher_send(struct gw_publisher *p);

/* The broker request of batch is answered another way (the bus): its call ends (a link call's at once). */
static void publish_cancel(struct pub_batch *batch)
{
	if (batch->lcall != NULL)
		gw_link_cancel(batch->lcall);
	else
		gw_api_cancel(batch->call);
}

/* The broker is reachable for a publish: the link when configured, else the nng api. */
static bool publish_broker_up(struct gw *gw)
{
	return gw->link != NULL ? gw_link_connected(gw->link) : gw_api_connected(gw->api);
}

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

/*
 * Answers the POSTs of a batch whose broker request failed with err: 503
 * when the request never left the gateway (nothing published, safe to
 * retry), 504 publish_outcome_unknown when it did (the broker may have
 * published it: the lost connection, the timeout or the stop came after).
 */
static void publish_failed(struct pub_batch *batch, int err, bool sent)
{
	int status = 503;
	const char *code = "broker_unavailable", *m;

	if (sent) {
		status = 504;
		code = "publish_outcome_unknown";
		if (err == RC_ETIMEDOUT)
			m = "the broker did not answer in time; the events may have been published";
		else if (err == RC_ECLOSED)
			m = "the gateway stopped before the broker answered; the events may have been published";
		else
			m = "the broker connection was lost before the answer; the events may have been published";
	} else if (err == RC_ENOMEM) {
		code = "out_of_memory";
		m = "the gateway is out of memory; nothing was published";
	} else {
		if (err == RC_ETIMEDOUT)
			m = "the broker could not take the request in time; nothing was published";
		else if (err == RC_ECLOSED)
			m = "the gateway is stopping; nothing was published";
		else
			m = "the broker is unreachable; nothing was published";
	}
	for (size_t i = 0; i < batch->n; i++)
		publish_error(batch->calls[i], status, code, m);
}

/* Loop thread: the broker answered a batch (or did not), also after gw_publisher_fini. */
static void publish_done(void *arg, int err, bool sent, const char *reply, size_t len)
{
	struct pub_batch *batch = arg;
	struct gw_publisher *p = batch->p;
	struct json_object *obj = NULL, *ok, *ids, *e, *code = NULL, *msg = NULL;
	struct json_tokener *tok;
	size_t first = 0;

	if (batch->acked) {
		/* answered from the bus (gw_publish_ack); this is the cancelled call, or a reply that crossed it */
		free(batch);
		return;
	}
	if (p != NULL)
		p->in_flight = NULL;
	if (err != RC_OK) {
		publish_failed(batch, err, sent);
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
		/* --store nats: the broker does not know whether JetStream stored them (504, as a lost answer) */
		bool unknown = strcmp(c, "publish_outcome_unknown") == 0;
		bool fatal = strcmp(c, "shutting_down") == 0 || strcmp(c, "internal") == 0 ||
			     strcmp(c, "storage_unavailable") == 0 || unknown || code == NULL;
		bool room_limit = strcmp(c, "too_many_rooms") == 0; /* the broker's state, not the POST's fault */
		if (!fatal && batch->n > 1 && p != NULL) {
			/* one POST spoiled the batch: send each alone so only it fails */
			publisher_requeue_solo(p, batch);
			goto out;
		}
		if (!fatal && batch->n > 1) {
			/* the broker published none of them, and the gateway is stopping */
			for (size_t i = 0; i < batch->n; i++)
				publish_error(batch->calls[i], 503, "broker_unavailable",
					      "the gateway is stopping; nothing was published");
			goto out;
		}
		for (size_t i = 0; i < batch->n; i++)
			publish_error(batch->calls[i],
				      unknown			  ? 504
				      : strcmp(c, "too_large") == 0 ? 413
				      : fatal || room_limit	  ? 503
								  : 400,
				      code ? c : "broker_error", m);
	}
out:
	json_object_put(obj);
	free(batch);
	if (p != NULL)
		publisher_send(p); /* what queued meanwhile has waited a round trip already */
}

/* Takes pc off the queue (wherever it is) and answers it: its time ran out before it was sent. */
static void publisher_expire(struct gw_publisher *p, struct pub_call *pc)
{
	struct pub_call **pp = &p->head, *prev = NULL;

	while (*pp != NULL && *pp != pc) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp == NULL)
		return;
	*pp = pc->next;
	if (p->tail == pc)
		p->tail = prev;
	publish_error(pc, 503, "broker_unavailable",
		      "the broker did not take the request within --publish-timeout-ms; nothing was published");
}

/* A queued POST's --publish-timeout-ms passed. */
static void publisher_waited(struct gw_tq *q, struct gw_tq_entry *e)
{
	publisher_expire(q->data, gw_container_of(e, struct pub_call, wait));
}

/*
 * Whether the next broker request asks for its answer on the bus
 * (docs/PROTOCOL.md, "Acknowledgements"): unless --publish-ack-on-api, and
 * only while every broker's bus is connected, so that the bus of whichever
 * broker takes the request brings the answer. The api call still waits for
 * a reply (a broker that cannot answer on the bus, a refusal, a lost
 * connection, the timeout), as without.
 */
static bool publisher_bus_ack(const struct gw_publisher *p)
{
	const struct gw *gw = p->gw;
	unsigned n = gw->link != NULL ? 1 : gw_bus_sources(gw->bus);

	if (gw->opt.publish_ack_on_api || n == 0)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (!gw_loop_bus_connected(gw, i))
			return false;
	return true;
}

void gw_publish_ack(struct gw *gw, uint64_t epoch, const struct rc_ack *a)
{
	struct gw_publisher *p = gw->publisher;
	struct pub_batch *batch = p != NULL ? p->in_flight : NULL;
	uint32_t first = 0;
	size_t events = 0;

	if (batch == NULL || !batch->ack || a->gw != p->key_id || a->req != batch->token)
		return;
	for (size_t i = 0; i < batch->n; i++)
		events += batch->calls[i]->nevents;
	if (events != a->n)
		return; /* not a sane answer: the api's reply or the timeout decides */
	batch->acked = true;
	p->in_flight = NULL;
	for (size_t i = 0; i < batch->n; i++) {
		uint32_t n = (uint32_t)batch->calls[i]->nevents;
		publish_ok_ack(batch->calls[i], epoch, a, first); /* frees the call */
		first += n;
	}
	publish_cancel(batch); /* its callback frees the batch */
	publisher_send(p);
}

/* Loop thread: the broker's answer to an op "acks" (or none: the timer asks again). */
static void publisher_asked(void *arg, int err, bool sent, const char *reply, size_t len)
{
	struct pub_ask *q = arg;
	struct gw_publisher *p = q->p;
	struct pub_batch *batch = p != NULL ? p->in_flight : NULL;
	struct json_object *obj = NULL, *acks, *ids;
	struct json_tokener *tok;
	char token[48];
	size_t events = 0, first = 0;

	(void)sent;
	if (p != NULL)
		p->asking = NULL;
	/* the bus or the api answered meanwhile, or the publish failed: nothing to do */
	if (err != RC_OK || batch == NULL || !batch->ack || batch->token != q->token)
		goto out;
	tok = json_tokener_new();
	if (tok != NULL) {
		obj = json_tokener_parse_ex(tok, reply, (int)len);
		json_tokener_free(tok);
	}
	snprintf(token, sizeof(token), "%016" PRIx64 "-%" PRIu64, p->key_id, q->token);
	/* unknown (not published yet, or forgotten): the bus, the api or the timeout decides */
	if (obj == NULL || !json_object_object_get_ex(obj, "acks", &acks) ||
	    !json_object_object_get_ex(acks, token, &ids) || !json_object_is_type(ids, json_type_array))
		goto out;
	for (size_t i = 0; i < batch->n; i++)
		events += batch->calls[i]->nevents;
	if (events != json_object_array_length(ids))
		goto out; /* not a sane answer */
	batch->acked = true;
	p->in_flight = NULL;
	p->gw->m.publish_acks_asked++;
	for (size_t i = 0; i < batch->n; i++) {
		size_t n = batch->calls[i]->nevents;
		publish_ok(batch->calls[i], ids, first); /* frees the call */
		first += n;
	}
	publish_cancel(batch); /* its callback frees the batch */
	publisher_send(p);
out:
	json_object_put(obj);
	free(q);
}

/*
 * The publish in flight has waited PUBLISH_ACK_ASK_MS (more) for its answer
 * on the bus: ask the broker whether it published it. The first answer wins
 * (the bus, this, or the api's reply); the others are ignored.
 */
static void publisher_ask_cb(uv_timer_t *t)
{
	struct gw_publisher *p = gw_container_of(t, struct gw_publisher, ask);
	struct pub_batch *batch = p->in_flight;
	struct pub_ask *q;
	char req[96];
	int n;

	if (batch == NULL || !batch->ack) {
		uv_timer_stop(t);
		return;
	}
	if (p->asking != NULL || (q = malloc(sizeof(*q))) == NULL)
		return; /* asked already: the next tick asks again */
	q->p = p;
	q->token = batch->token;
	n = snprintf(req, sizeof(req), "{\"op\":\"acks\",\"tokens\":[\"%016" PRIx64 "-%" PRIu64 "\"]}", p->key_id,
		     batch->token);
	p->asking = q;
	if (gw_api_call(p->gw->api, req, (size_t)n, PUBLISH_ACK_ASK_MS, publisher_asked, q) != RC_OK) {
		p->asking = NULL;
		free(q);
	}
}

/* Sends the queued POSTs as one broker request, unless one is in flight. */
static void publisher_send(struct gw_publisher *p)
{
	struct gw *gw = p->gw;
	struct pub_batch *batch;
	struct rc_buf req;
	size_t n = 0, events = 0, bytes = 0;
	uint64_t left;
	int rv;

	if (p->in_flight)
		return;
	uv_timer_stop(&p->linger);
	/* POSTs whose time ran out while they waited (the timer may not have seen them yet) never leave */
	while (p->head != NULL && uv_now(gw->loop) >= p->head->arrived + (uint64_t)gw->opt.publish_timeout_ms)
		publisher_expire(p, p->head);
	if (p->head == NULL)
		return;
	for (struct pub_call *pc = p->head; pc != NULL; pc = pc->next) {
		if (n > 0 && (pc->solo || p->head->solo || events + pc->nevents > RC_PUBLISH_MAX_EVENTS ||
			      bytes + pc->len > RC_PUBLISH_BATCH_BYTES))
			break;
		n++;
		events += pc->nevents;
		bytes += pc->len + 1;
	}
	batch = malloc(sizeof(*batch) + n * sizeof(batch->calls[0]));
	rc_buf_init(&req);
	if (batch != NULL && rc_buf_reserve(&req, bytes + 96) == RC_OK) {
		batch->p = p;
		batch->n = n;
		batch->call = NULL;
		batch->lcall = NULL;
		batch->acked = false;
		batch->ack = publisher_bus_ack(p);
		batch->token = batch->ack ? ++p->ack_seq : 0;
		if (batch->ack)
			rc_buf_printf(&req, "{\"op\":\"publish\",\"ack\":\"%016" PRIx64 "-%" PRIu64 "\",\"events\":[",
				      p->key_id, batch->token);
		else
			rc_buf_puts(&req, "{\"op\":\"publish\",\"events\":[");
		for (size_t i = 0; i < n; i++) {
			struct pub_call *pc = p->head;
			p->head = pc->next;
			gw_tq_remove(&pc->wait);
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
	p->in_flight = batch;
	p->last_sent = uv_now(gw->loop);
	if (batch->ack)
		uv_timer_start(&p->ask, publisher_ask_cb, PUBLISH_ACK_ASK_MS, PUBLISH_ACK_ASK_MS);
	/* the oldest POST's time left: none waits longer than the timeout from its arrival */
	left = batch->calls[0]->arrived + (uint64_t)gw->opt.publish_timeout_ms - p->last_sent;
	if (gw->link != NULL)
		rv = gw_link_call(gw->link, req.data, req.len, (int)left, publish_done, batch, &batch->lcall);
	else
		rv = gw_api_call_h(gw->api, req.data, req.len, (int)left, publish_done, batch, &batch->call);
	rc_buf_fini(&req);
	if (rv != RC_OK)
		publish_done(batch, rv, false, NULL, 0);
}

static void publisher_linger_cb(uv_timer_t *t)
{
	publisher_send(gw_container_of(t, struct gw_publisher, linger));
}

/* A POST was queued: send now, or linger for company (see the top of the file). */
static void publisher_kick(struct gw *gw)
{
	struct gw_publisher *p = gw->publisher;
	uint64_t linger = (uint64_t)gw->opt.publish_linger_ms;

	if (p->in_flight != NULL || uv_is_active((uv_handle_t *)&p->linger))
		return; /* it goes with the next request */
	if (linger > 0 && p->last_sent != 0 && uv_now(gw->loop) - p->last_sent <= linger) {
		uv_timer_start(&p->linger, publisher_linger_cb, linger, 0);
		return;
	}
	publisher_send(p);
}

int gw_publisher_init(struct gw *gw)
{
	struct gw_publisher *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return RC_ENOMEM;
	p->gw = gw;
	if (getrandom(&p->key_id, sizeof(p->key_id), 0) != (ssize_t)sizeof(p->key_id))
		p->key_id = (uint64_t)time(NULL) << 32 ^ (uint64_t)getpid() << 16 ^ (uint64_t)(uintptr_t)p;
	uv_timer_init(gw->loop, &p->linger);
	uv_timer_init(gw->loop, &p->ask);
	p->open_handles = 2;
	gw_tq_init(&p->waiting, &gw->timer, (uint64_t)gw->opt.publish_timeout_ms, publisher_waited, p);
	gw->publisher = p;
	return RC_OK;
}

static void publisher_closed(uv_handle_t *h)
{
	struct gw_publisher *p = h->data;

	if (--p->open_handles == 0)
		free(p);
}

void gw_publisher_fini(struct gw *gw)
{
	struct gw_publisher *p = gw->publisher;

	if (p == NULL)
		return;
	gw->publisher = NULL; /* a POST that comes now (an answer below resuming its connection) gets 503 */
	gw_tq_fini(&p->waiting);
	while (p->head != NULL) {
		struct pub_call *pc = p->head;
		p->head = pc->next;
		publish_error(pc, 503, "broker_unavailable", "the gateway is stopping; nothing was published");
	}
	p->tail = NULL;
	/* the batch in flight stays with the api, which calls back at the latest in gw_api_stop */
	if (p->in_flight != NULL)
		p->in_flight->p = NULL;
	if (p->asking != NULL)
		p->asking->p = NULL;
	p->linger.data = p->ask.data = p;
	uv_close((uv_handle_t *)&p->linger, publisher_closed);
	uv_close((uv_handle_t *)&p->ask, publisher_closed);
}

/* --auth url --auth-publish: a POST without the service token asks the application. */
static bool publish_asks_url(const struct gw *gw)
{
	return gw->opt.authurl != NULL && gw->opt.auth_publish;
}

static bool token_ok(const struct gw *gw, const struct gw_req *req)
{
	const char *want = gw->opt.publish_token;
	size_t wl, gl;
	unsigned char diff = 0;

	if (want == NULL || *want == '\0')
		return gw->opt.jwt == NULL && !publish_asks_url(gw);
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

/* With a grant (--auth jwt, or the body of --auth url's answer): false after answering 403 naming the room. */
static bool publish_granted(struct gw_conn *c, const struct rc_grant *g, const struct rc_event_view *v)
{
	char msg[200];

	if (g == NULL || gw_auth_can_publish(g, v->room, v->room_len))
		return true;
	if (v->room_len == 0)
		snprintf(msg, sizeof(msg), "the credential does not grant publishing global events (\"%s\")", RC_GRANT_GLOBAL);
	else
		snprintf(msg, sizeof(msg), "the credential does not grant publishing to room '%.*s'", (int)v->room_len, v->room);
	publish_count(c->gw, 403);
	c->gw->m.auth_forbidden++;
	gw_conn_error(c, 403, "forbidden", msg, NULL);
	return false;
}

/*
 * Gives the event just read (the last bytes of out, its compact text
 * without its key) its idempotency key back as a last member, for the
 * broker, which takes it out again.
 */
static void publish_put_key(struct rc_buf *out, const char *key, size_t len)
{
	if (len == 0 || out->err || out->len == 0)
		return;
	out->len--; /* the event's closing brace */
	rc_buf_puts(out, ",\"key\":");
	rc_buf_json_str(out, key, len);
	rc_buf_append(out, "}", 1);
}

/*
 * With several brokers, the key of an event that has none (see the top of
 * the file) into buf (RC_KEY_MAX); returns its length, 0 when none is given
 * (one broker, or the gateway stopping).
 */
static size_t publish_gen_key(struct gw *gw, char *buf)
{
	struct gw_publisher *p = gw->publisher;

	if (p == NULL || gw_api_brokers(gw->api) < 2)
		return 0;
	return (size_t)snprintf(buf, RC_KEY_MAX, "gw-%016" PRIx64 "-%" PRIu64, p->key_id, ++p->key_seq);
}

/* The Idempotency-Key header's value without surrounding blanks (len 0: none). */
static const char *publish_header_key(const struct gw_req *req, size_t *len)
{
	const char *k = req->idempotency_key.data;
	size_t n = req->idempotency_key.len;

	while (n > 0 && (*k == ' ' || *k == '\t')) {
		k++;
		n--;
	}
	while (n > 0 && (k[n - 1] == ' ' || k[n - 1] == '\t'))
		n--;
	*len = n;
	return k;
}

/*
 * Reads the body, one event or an array of 1-1000, in one pass: each event
 * is checked (and, with a grant g, its room against the publish grant) and
 * its compact text (as published, whitespace outside strings dropped, its
 * idempotency key, from its `key` field or the Idempotency-Key header, as a
 * last member) appended to out, joined by commas. On failure answers the
 * request and returns false.
 */
static bool publish_read(struct gw_conn *c, const struct gw_req *req, const struct rc_grant *g, struct rc_buf *out,
			 bool *array, size_t *n)
{
	size_t max = (size_t)c->gw->opt.max_event_bytes, hkey_len;
	const char *hkey = publish_header_key(req, &hkey_len);
	char gkey[RC_KEY_MAX];
	struct rc_event_view v;
	struct rc_json j;
	char why[256], msg[300];
	int rv = RC_OK;

	rc_json_init(&j, req->body.data ? req->body.data : "", req->body.len, NULL);
	*n = 0;
	*array = rc_json_peek(&j) == RC_JSON_ARRAY;
	if (hkey_len > 0 && (*array || !rc_key_valid(hkey, hkey_len))) {
		if (*array)
			snprintf(msg, sizeof(msg),
				 "Idempotency-Key is for a single-event POST: in an array, give each "
				 "event its own key field");
		else
			snprintf(msg, sizeof(msg),
				 "Idempotency-Key must be 1-%d bytes of printable ASCII without space", RC_KEY_MAX);
		publish_count(c->gw, 400);
		gw_conn_error(c, 400, "invalid_event", msg, NULL);
		return false;
	}
	if (!*array) {
		rv = rc_event_read(&j, out, max, &v, why, sizeof(why));
		*n = 1;
		if (rv == RC_OK && !publish_granted(c, g, &v))
			return false;
		if (rv == RC_OK && hkey_len > 0 && v.key_len > 0) {
			rv = RC_EINVAL;
			snprintf(why, sizeof(why),
				 "key: give the idempotency key as the Idempotency-Key header or as "
				 "the event's key field, not both");
		}
		if (rv == RC_OK && hkey_len == 0 && v.key_len == 0)
			publish_put_key(out, gkey, publish_gen_key(c->gw, gkey));
		else if (rv == RC_OK)
			publish_put_key(out, hkey_len > 0 ? hkey : v.key, hkey_len > 0 ? hkey_len : v.key_len);
	} else {
		j.root = "events"; /* errors name events[i] */
		rc_json_begin(&j);
		while (rv == RC_OK && rc_json_next(&j)) {
			if (*n == RC_PUBLISH_MAX_EVENTS)
				break;
			if (*n > 0)
				rc_buf_append(out, ",", 1);
			rv = rc_event_read(&j, out, max, &v, why, sizeof(why));
			if (rv == RC_OK && v.key_len == 0)
				publish_put_key(out, gkey, publish_gen_key(c->gw, gkey));
			else if (rv == RC_OK)
				publish_put_key(out, v.key, v.key_len);
			(*n)++;
			if (rv == RC_OK && !publish_granted(c, g, &v))
				return false;
		}
		if (rv == RC_OK && !rc_json_failed(&j) && (*n == 0 || j.depth > 0)) {
			snprintf(msg, sizeof(msg), "body: an array must hold 1-%d events", RC_PUBLISH_MAX_EVENTS);
			publish_count(c->gw, 400);
			gw_conn_error(c, 400, "invalid_event", msg, NULL);
			return false;
		}
	}
	if (rv == RC_OK && !rc_json_end(&j)) {
		rv = RC_EPROTO;
		rc_json_error(&j, why, sizeof(why));
	}
	switch (rv) {
	case RC_OK: return true;
	case RC_EPROTO:
		snprintf(msg, sizeof(msg), "body is not valid JSON: %s", why);
		publish_count(c->gw, 400);
		gw_conn_error(c, 400, "invalid_json", msg, NULL);
		break;
	case RC_ETOOBIG:
		publish_count(c->gw, 413);
		gw_conn_error(c, 413, "event_too_large", why, NULL);
		break;
	case RC_ENOMEM:
		publish_count(c->gw, 503);
		gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
		break;
	default:
		publish_count(c->gw, 400);
		gw_conn_error(c, 400, "invalid_event", why, NULL);
		break;
	}
	return false;
}

/*
 * Who publishes: the service --publish-token (*g NULL), or with --auth jwt a
 * token from the Authorization header (*g its grant, the caller's to free).
 * With --auth url --auth-publish, a POST without the service token is let
 * through here (*ask_url): the application is asked once its body is in.
 * False after answering 401 (or 415).
 */
static bool publish_admit(struct gw_conn *c, const struct gw_req *req, struct rc_grant **g, bool *ask_url)
{
	struct gw *gw = c->gw;

	*g = NULL;
	*ask_url = false;
	if (gw->opt.jwt != NULL && !token_ok(gw, req)) {
		if (!gw_auth_request(c, req, "", 0, false, g)) {
			publish_count(gw, 401);
			return false;
		}
	} else if (publish_asks_url(gw) && !token_ok(gw, req)) {
		*ask_url = true;
	} else if (!token_ok(gw, req)) {
		publish_count(gw, 401);
		gw_conn_error(c, 401, "unauthorized", "POST needs Authorization: Bearer <publish token>",
			      "WWW-Authenticate: Bearer\r\n");
		return false;
	}
	if (!content_type_ok(req)) {
		publish_count(gw, 415);
		gw_conn_error(c, 415, "unsupported_media_type", "Content-Type must be application/json", NULL);
		rc_grant_free(*g);
		*g = NULL;
		return false;
	}
	return true;
}

bool gw_publish_admit(struct gw_conn *c, const struct gw_req *req)
{
	struct rc_grant *g;
	bool ask_url;
	bool ok = publish_admit(c, req, &g, &ask_url);

	rc_grant_free(g);
	return ok;
}

static void publish_run(struct gw_conn *c, struct gw_req *req, bool allowed, const struct rc_grant *url_grant);

/* --auth url allowed a held POST: it goes on with the answer's grant (NULL: any room). */
static void publish_allowed(struct gw_conn *c, struct gw_req *req, const struct rc_grant *g)
{
	publish_run(c, req, true, g);
}

void gw_publish(struct gw_conn *c, struct gw_req *req)
{
	publish_run(c, req, false, NULL);
}

static void publish_run(struct gw_conn *c, struct gw_req *req, bool allowed, const struct rc_grant *url_grant)
{
	struct gw *gw = c->gw;
	struct gw_publisher *p = gw->publisher;
	struct pub_call *pc = NULL;
	struct rc_grant *g = NULL;
	struct rc_buf out;
	bool array, ask_url = false;
	size_t n;

	rc_buf_init(&out);
	if (!allowed && !publish_admit(c, req, &g, &ask_url))
		goto out;
	/* the application is asked after the 415 check (an answer it cannot change) */
	if (ask_url && gw_authurl_check(c, req, GW_AUTHURL_PUBLISH, NULL, NULL, 0, publish_allowed, &url_grant) !=
			       GW_AUTHURL_GO)
		goto out;
	if (!publish_read(c, req, g != NULL ? g : url_grant, &out, &array, &n))
		goto out;
	if (p == NULL) {
		publish_count(gw, 503);
		gw_conn_error(c, 503, "broker_unavailable", "the gateway is stopping; nothing was published", NULL);
		goto out;
	}
	if (!publish_broker_up(gw)) {
		publish_count(gw, 503);
		gw_conn_error(c, 503, "broker_unavailable", "the broker is unreachable; nothing was published",
			      "Retry-After: 1\r\n");
		goto out;
	}
	if (p->bytes + out.len > (size_t)gw->opt.publish_queue_bytes) {
		publish_count(gw, 503);
		gw_conn_error(c, 503, "overloaded",
			      "the gateway holds --publish-queue-bytes of events for the broker already; nothing was published",
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
	p->bytes += pc->len;
	pc->arrived = uv_now(gw->loop);
	gw_tq_entry_init(&pc->wait);
	gw_tq_push(&p->waiting, &pc->wait);
	pc = NULL; /* the queue owns it */
	publisher_kick(gw);
	goto out;

out_nomem:
	publish_count(gw, 503);
	gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
out:
	rc_grant_free(g);
	free(pc);
	rc_buf_fini(&out);
}
