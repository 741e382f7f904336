#include "link_client.h"

#include <nng/nng.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "link_frame.h"
#include "list.h"
#include "log.h"
#include "timer.h"

#define LINK_RETRY_MIN_MS 100
#define LINK_RETRY_MAX_MS 1000
#define LINK_READ_MIN (64 * 1024) /* the read buffer's size, and the room a read is given at least */

enum link_state {
	LINK_DOWN,       /* waiting for the retry timer (or stopped) */
	LINK_RESOLVING,  /* uv_getaddrinfo in flight */
	LINK_CONNECTING, /* uv_tcp_connect in flight */
	LINK_HELLO,      /* connected, the broker's hello not read yet */
	LINK_UP,
	LINK_CLOSING, /* uv_close called on the connection */
};

struct gw_link_call {
	struct gw_list node;     /* l->calls, oldest first */
	struct gw_tq_entry wait; /* its deadline on l->deadlines */
	struct gw_link *l;
	struct gw_link_call *next_free;
	uint32_t id;
	uint64_t gen; /* its frame is still in l->next (not handed to the kernel) while this equals l->gen */
	gw_api_cb cb;
	void *arg;
	bool active;
};

struct gw_link {
	uv_loop_t *loop;
	struct gw_link_config cfg;
	char *host, *port;
	struct sockaddr_storage addr; /* a literal address, resolved once */
	bool literal;
	enum link_state state;
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_getaddrinfo_t gai;
	uv_timer_t retry;
	uint64_t backoff_ms;
	bool tcp_open, retry_open, resolving, stopping, failing_logged;
	uint64_t connects;

	/* reading: whole frames are taken from rbuf[0..rlen) */
	uint8_t *rbuf;
	size_t rlen, rcap;
	const char *why; /* set by a frame callback that ends the connection */

	/* writing: out is in uv_write; frames that come meanwhile gather in next */
	uv_write_t wreq;
	struct rc_buf out, next;
	bool writing;
	uint64_t gen;

	struct gw_list calls; /* in flight */
	struct gw_tq deadlines;
	struct gw_link_call *free_calls;
	uint32_t next_id;
};

static void link_dial(struct gw_link *l);

/* "tcp://host:port" or "tcp://[v6]:port" into l->host and l->port (a host, and a port other than 0). */
static int link_parse_url(struct gw_link *l, const char *url)
{
	char host[256], port[8];

	if (rc_link_url_split(url, host, sizeof(host), port, sizeof(port)) != RC_OK || host[0] == '\0' ||
	    atoi(port) == 0)
		return RC_EINVAL;
	l->host = strdup(host);
	l->port = strdup(port);
	if (l->host == NULL || l->port == NULL)
		return RC_ENOMEM;
	l->literal = uv_ip4_addr(l->host, atoi(l->port), (struct sockaddr_in *)&l->addr) == 0 ||
		     uv_ip6_addr(l->host, atoi(l->port), (struct sockaddr_in6 *)&l->addr) == 0;
	return RC_OK;
}

static void link_maybe_free(struct gw_link *l)
{
	if (!l->stopping || l->tcp_open || l->retry_open || l->resolving)
		return;
	while (l->free_calls != NULL) {
		struct gw_link_call *c = l->free_calls;
		l->free_calls = c->next_free;
		free(c);
	}
	rc_buf_fini(&l->out);
	rc_buf_fini(&l->next);
	free(l->rbuf);
	free(l->host);
	free(l->port);
	free(l);
}

static void link_recycle(struct gw_link *l, struct gw_link_call *c)
{
	c->active = false;
	c->next_free = l->free_calls;
	l->free_calls = c;
}

/* Whether c's request may have reached the broker: its bytes were handed to the kernel. */
static bool link_call_sent(const struct gw_link *l, const struct gw_link_call *c)
{
	return c->gen == 0 || c->gen != l->gen;
}

/* Ends c with err: off the lists, its callback, recycled. */
static void link_call_end(struct gw_link *l, struct gw_link_call *c, int err)
{
	bool sent = link_call_sent(l, c);

	gw_list_remove(&c->node);
	gw_tq_remove(&c->wait);
	c->cb(c->arg, err, sent, NULL, 0);
	link_recycle(l, c);
}

/* Fails every call in flight (a callback may start another: the link refuses it by now). */
static void link_fail_calls(struct gw_link *l, int err)
{
	struct gw_list *n;

	while ((n = gw_list_first(&l->calls)) != NULL)
		link_call_end(l, gw_container_of(n, struct gw_link_call, node), err);
}

static void link_retry_cb(uv_timer_t *t)
{
	link_dial(t->data);
}

/* The connection is gone (or never came): dial again after the backoff. */
static void link_retry_later(struct gw_link *l)
{
	l->state = LINK_DOWN;
	if (l->stopping)
		return;
	uv_timer_start(&l->retry, link_retry_cb, l->backoff_ms, 0);
	l->backoff_ms = l->backoff_ms * 2 > LINK_RETRY_MAX_MS ? LINK_RETRY_MAX_MS : l->backoff_ms * 2;
}

static void link_closed(uv_handle_t *h)
{
	struct gw_link *l = h->data;

	l->tcp_open = false;
	l->writing = false;
	l->gen++;
	rc_buf_fini(&l->out);
	rc_buf_fini(&l->next);
	l->rlen = 0;
	if (l->rcap > LINK_READ_MIN) {
		free(l->rbuf);
		l->rbuf = NULL;
		l->rcap = 0;
	}
	link_retry_later(l);
	link_maybe_free(l);
}

/* Closes the connection (once) and fails the calls in flight: RC_EIO. */
static void link_down(struct gw_link *l, const char *why)
{
	bool was_up = l->state == LINK_UP;

	if (l->state != LINK_CONNECTING && l->state != LINK_HELLO && l->state != LINK_UP)
		return;
	l->state = LINK_CLOSING;
	uv_close((uv_handle_t *)&l->tcp, link_closed);
	if (was_up)
		rc_log_warn("broker link lost", "url=tcp://%s:%s why=\"%s\" calls_failed=%s", l->host, l->port, why,
			    gw_list_empty(&l->calls) ? "false" : "true");
	else if (why != NULL)
		rc_log_error(why, "url=tcp://%s:%s", l->host, l->port);
	link_fail_calls(l, RC_EIO);
}

static void link_written(uv_write_t *req, int status)
{
	struct gw_link *l = req->data;
	struct rc_buf tmp;
	uv_buf_t b;

	if (l->state == LINK_CLOSING || status == UV_ECANCELED)
		return; /* link_closed resets the buffers */
	if (status < 0) {
		link_down(l, uv_strerror(status));
		return;
	}
	l->out.len = 0;
	if (l->next.len == 0) {
		l->writing = false;
		return;
	}
	tmp = l->out;
	l->out = l->next;
	l->next = tmp;
	l->gen++; /* what was in next is handed over now */
	b = uv_buf_init(l->out.data, (unsigned)l->out.len);
	if ((status = uv_write(&l->wreq, (uv_stream_t *)&l->tcp, &b, 1, link_written)) != 0)
		link_down(l, uv_strerror(status));
}

/*
 * Writes one frame: at once while nothing is queued (one writev), what the
 * kernel did not take through uv_write; behind a write in progress, into
 * next. *gen: 0 when handed to the kernel now, else l->gen. Returns 0,
 * RC_ENOMEM (nothing of it written) or RC_EIO (the connection failed: the
 * caller closes it; a partial frame never reaches the broker's handler).
 */
static int link_send(struct gw_link *l, uint8_t kind, uint32_t id, const char *p, size_t len, uint64_t *gen)
{
	uint8_t hdr[RC_LINK_HDR_SIZE];
	uv_buf_t b[2];
	int n;

	rc_link_hdr_put(hdr, kind, id, (uint32_t)len);
	if (l->writing) {
		if (rc_buf_reserve(&l->next, sizeof(hdr) + len) != RC_OK)
			return RC_ENOMEM;
		rc_buf_append(&l->next, hdr, sizeof(hdr));
		rc_buf_append(&l->next, p, len);
		*gen = l->gen;
		return RC_OK;
	}
	b[0] = uv_buf_init((char *)hdr, sizeof(hdr));
	b[1] = uv_buf_init((char *)p, (unsigned)len);
	n = uv_try_write((uv_stream_t *)&l->tcp, b, 2);
	if (n < 0 && n != UV_EAGAIN)
		return RC_EIO;
	*gen = 0;
	if (n < 0)
		n = 0;
	if ((size_t)n == sizeof(hdr) + len)
		return RC_OK;
	rc_buf_fini(&l->out);
	if ((size_t)n < sizeof(hdr)) {
		rc_buf_append(&l->out, hdr + n, sizeof(hdr) - (size_t)n);
		rc_buf_append(&l->out, p, len);
	} else {
		rc_buf_append(&l->out, p + ((size_t)n - sizeof(hdr)), len - ((size_t)n - sizeof(hdr)));
	}
	if (l->out.err)
		return n > 0 ? RC_EIO : RC_ENOMEM;
	b[0] = uv_buf_init(l->out.data, (unsigned)l->out.len);
	if (uv_write(&l->wreq, (uv_stream_t *)&l->tcp, b, 1, link_written) != 0)
		return RC_EIO;
	l->writing = true;
	return RC_OK;
}

/* One whole frame from the broker. Non-zero: stop reading (l->why says why, or the connection closed). */
static int link_frame(void *arg, const struct rc_link_frame *f)
{
	struct gw_link *l = arg;
	struct gw_list *n;
	nng_msg *msg;

	if (l->state == LINK_HELLO) {
		if (f->kind != RC_LINK_KIND_HELLO || f->len != RC_LINK_HELLO_LEN ||
		    memcmp(f->payload, RC_LINK_HELLO, RC_LINK_HELLO_LEN) != 0) {
			l->why = "not a roomcast link";
			return RC_EPROTO;
		}
		l->state = LINK_UP;
		l->connects++;
		l->backoff_ms = LINK_RETRY_MIN_MS;
		l->failing_logged = false;
		rc_log_info("broker link up", "url=tcp://%s:%s", l->host, l->port);
		return 0;
	}
	switch (f->kind) {
	case RC_LINK_KIND_BUS:
		if (nng_msg_alloc(&msg, f->len) != 0)
			return 0; /* dropped: a hole the repair stage fills, as when nng drops */
		memcpy(nng_msg_body(msg), f->payload, f->len);
		l->cfg.fn(l->cfg.arg, 0, msg);
		break;
	case RC_LINK_KIND_REPLY:
		for (n = l->calls.next; n != &l->calls; n = n->next) {
			struct gw_link_call *c = gw_container_of(n, struct gw_link_call, node);
			if (c->id != f->id)
				continue;
			gw_list_remove(&c->node);
			gw_tq_remove(&c->wait);
			c->cb(c->arg, RC_OK, true, (const char *)f->payload, f->len);
			link_recycle(l, c);
			break;
		}
		/* none: the call timed out or was answered on the bus (cancelled) */
		break;
	default:
		l->why = "unexpected link frame from the broker";
		return RC_EPROTO;
	}
	return l->state == LINK_UP ? 0 : 1;
}

static void link_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct gw_link *l = h->data;
	size_t want = l->rlen + LINK_READ_MIN, max = (size_t)l->cfg.max_frame + RC_LINK_HDR_SIZE;

	(void)suggested;
	if (l->rlen >= RC_LINK_HDR_SIZE) {
		/* a frame started: room for all of it (a longer one than max is refused by the parse) */
		size_t flen = (size_t)l->rbuf[0] | (size_t)l->rbuf[1] << 8 | (size_t)l->rbuf[2] << 16 |
			      (size_t)l->rbuf[3] << 24;
		if (flen + RC_LINK_HDR_SIZE > want && flen <= l->cfg.max_frame)
			want = flen + RC_LINK_HDR_SIZE;
	}
	if (want > max)
		want = max > l->rlen ? max : l->rlen + 1;
	if (l->rcap < want) {
		size_t cap = l->rcap * 2 > want ? l->rcap * 2 : want;
		uint8_t *p;
		if (cap > max && max > l->rlen)
			cap = max;
		p = realloc(l->rbuf, cap);
		if (p == NULL) {
			*buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: the connection closes */
			return;
		}
		l->rbuf = p;
		l->rcap = cap;
	}
	*buf = uv_buf_init((char *)l->rbuf + l->rlen, (unsigned)(l->rcap - l->rlen));
}

static void link_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct gw_link *l = s->data;
	ssize_t took;

	(void)buf;
	if (nread == 0)
		return;
	if (nread < 0) {
		link_down(l, nread == UV_EOF ? "the broker closed the link" : uv_strerror((int)nread));
		return;
	}
	l->rlen += (size_t)nread;
	l->why = NULL;
	took = rc_link_parse(l->rbuf, l->rlen, l->cfg.max_frame, link_frame, l);
	if (l->state != LINK_UP && l->state != LINK_HELLO)
		return; /* closed by a callback */
	if (took < 0 && l->state == LINK_HELLO)
		l->why = "not a roomcast link";
	if (took < 0) {
		link_down(l, l->why != NULL	      ? l->why
			     : took == RC_ETOOBIG ? "link frame too large"
						  : "bad link frame header");
		return;
	}
	if (took > 0) {
		memmove(l->rbuf, l->rbuf + took, l->rlen - (size_t)took);
		l->rlen -= (size_t)took;
	}
	if (l->rlen == 0 && l->rcap > 16 * LINK_READ_MIN) {
		/* a large frame's room is not kept */
		free(l->rbuf);
		l->rbuf = NULL;
		l->rcap = 0;
	}
}

/* The connection could not be made: close the handle (logged once while it fails); link_closed dials again. */
static void link_unreachable(struct gw_link *l, int err)
{
	if (!l->failing_logged)
		rc_log_warn("broker link unreachable; retrying", "url=tcp://%s:%s err=\"%s\"", l->host, l->port,
			    uv_strerror(err));
	l->failing_logged = true;
	l->state = LINK_CLOSING;
	uv_close((uv_handle_t *)&l->tcp, link_closed);
}

static void link_connected(uv_connect_t *req, int status)
{
	struct gw_link *l = req->data;

	if (l->state != LINK_CONNECTING)
		return; /* closing (stopped) */
	if (status == 0)
		status = uv_read_start((uv_stream_t *)&l->tcp, link_alloc, link_read);
	if (status != 0) {
		link_unreachable(l, status);
		return;
	}
	l->state = LINK_HELLO;
}

static void link_connect(struct gw_link *l, const struct sockaddr *sa)
{
	int rv;

	uv_tcp_init(l->loop, &l->tcp);
	l->tcp.data = l;
	l->tcp_open = true;
	uv_tcp_nodelay(&l->tcp, 1);
	l->creq.data = l;
	l->state = LINK_CONNECTING;
	if ((rv = uv_tcp_connect(&l->creq, &l->tcp, sa, link_connected)) != 0)
		link_unreachable(l, rv);
}

static void link_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct gw_link *l = req->data;

	l->resolving = false;
	if (l->stopping || status != 0) {
		if (status != 0 && !l->stopping && !l->failing_logged) {
			rc_log_warn("broker link address not resolved; retrying", "url=tcp://%s:%s err=\"%s\"", l->host,
				    l->port, uv_strerror(status));
			l->failing_logged = true;
		}
		uv_freeaddrinfo(res);
		link_retry_later(l);
		link_maybe_free(l);
		return;
	}
	link_connect(l, res->ai_addr);
	uv_freeaddrinfo(res);
}

static void link_dial(struct gw_link *l)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };

	if (l->stopping)
		return;
	if (l->literal) {
		link_connect(l, (const struct sockaddr *)&l->addr);
		return;
	}
	l->gai.data = l;
	l->state = LINK_RESOLVING;
	if (uv_getaddrinfo(l->loop, &l->gai, link_resolved, l->host, l->port, &hints) != 0) {
		link_retry_later(l);
		return;
	}
	l->resolving = true;
}

static void link_expired(struct gw_tq *q, struct gw_tq_entry *e)
{
	link_call_end(q->data, gw_container_of(e, struct gw_link_call, wait), RC_ETIMEDOUT);
}

static void link_retry_closed(uv_handle_t *h)
{
	struct gw_link *l = h->data;

	l->retry_open = false;
	link_maybe_free(l);
}

int gw_link_start(uv_loop_t *loop, const struct gw_link_config *cfg, struct gw_link **out)
{
	struct gw_link *l = calloc(1, sizeof(*l));
	int rv;

	if (l == NULL)
		return RC_ENOMEM;
	if ((rv = link_parse_url(l, cfg->url)) != RC_OK) {
		if (rv == RC_EINVAL)
			rc_log_error("bad --broker-link address (expected tcp://host:port)", "value=\"%s\"",
				     cfg->url ? cfg->url : "");
		free(l->host);
		free(l->port);
		free(l);
		return rv;
	}
	l->loop = loop;
	l->cfg = *cfg;
	l->cfg.url = NULL; /* the caller's string: not kept */
	if (l->cfg.max_frame == 0)
		l->cfg.max_frame = GW_LINK_MAX_FRAME;
	l->backoff_ms = LINK_RETRY_MIN_MS;
	l->gen = 1;
	rc_buf_init(&l->out);
	rc_buf_init(&l->next);
	l->wreq.data = l;
	gw_list_init(&l->calls);
	/* every call has its own deadline (gw_tq_push_at): the queue's own timeout is not used */
	gw_tq_init(&l->deadlines, cfg->timer, 1, link_expired, l);
	uv_timer_init(loop, &l->retry);
	l->retry.data = l;
	l->retry_open = true;
	link_dial(l);
	*out = l;
	return RC_OK;
}

bool gw_link_connected(const struct gw_link *l)
{
	return l != NULL && l->state == LINK_UP;
}

uint64_t gw_link_connects(const struct gw_link *l)
{
	return l != NULL ? l->connects : 0;
}

int gw_link_call(struct gw_link *l, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg,
		 struct gw_link_call **call)
{
	struct gw_link_call *c;
	int rv;

	if (l->stopping)
		return RC_ECLOSED;
	if (l->state != LINK_UP)
		return RC_EIO;
	if (len > UINT32_MAX)
		return RC_ETOOBIG;
	c = l->free_calls;
	if (c != NULL)
		l->free_calls = c->next_free;
	else if ((c = calloc(1, sizeof(*c))) == NULL)
		return RC_ENOMEM;
	c->l = l;
	gw_list_init(&c->node);
	gw_tq_entry_init(&c->wait);
	if (++l->next_id == 0)
		l->next_id = 1;
	c->id = l->next_id;
	rv = link_send(l, RC_LINK_KIND_REQUEST, c->id, req, len, &c->gen);
	if (rv != RC_OK) {
		link_recycle(l, c);
		if (rv == RC_EIO)
			link_down(l, "write failed");
		return rv;
	}
	c->cb = cb;
	c->arg = arg;
	c->active = true;
	gw_list_insert_tail(&l->calls, &c->node);
	gw_tq_push_at(&l->deadlines, &c->wait, gw_timer_now(l->cfg.timer) + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1));
	if (call != NULL)
		*call = c;
	return RC_OK;
}

void gw_link_cancel(struct gw_link_call *c)
{
	if (c == NULL || !c->active)
		return;
	gw_list_remove(&c->node);
	gw_tq_remove(&c->wait);
	c->cb(c->arg, RC_ECLOSED, true, NULL, 0);
	link_recycle(c->l, c);
}

void gw_link_stop(struct gw_link *l)
{
	if (l == NULL || l->stopping)
		return;
	l->stopping = true;
	link_fail_calls(l, RC_ECLOSED);
	gw_tq_fini(&l->deadlines);
	uv_timer_stop(&l->retry);
	uv_close((uv_handle_t *)&l->retry, link_retry_closed);
	if (l->state == LINK_CONNECTING || l->state == LINK_HELLO || l->state == LINK_UP) {
		l->state = LINK_CLOSING;
		uv_close((uv_handle_t *)&l->tcp, link_closed);
	}
	if (l->resolving)
		uv_cancel((uv_req_t *)&l->gai);
	link_maybe_free(l);
}
