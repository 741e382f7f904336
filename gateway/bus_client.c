#include "bus_client.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "error.h"
#include "frame.h"
#include "inbox.h"
#include "list.h"
#include "log.h"
#include "options.h"

struct bus_item {
	struct gw_inbox_item item;
	nng_msg *msg;
};

/* One broker's bus: its socket, receive loop and inbox. */
struct bus_src {
	struct gw_bus *bus;
	unsigned index;
	nng_socket sock;
	nng_aio *aio;
	atomic_int pipes;
	atomic_uint_fast64_t dropped;
	struct gw_inbox inbox;
};

struct gw_bus {
	struct gw_bus_config cfg;
	unsigned n;
	struct bus_src *src[GW_BROKERS_MAX];
};

static void bus_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct bus_src *s = arg;
	(void)p;
	if (ev == NNG_PIPE_EV_ADD_POST)
		atomic_fetch_add(&s->pipes, 1);
	else if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&s->pipes, 1);
}

/* nng thread: hand the frame to the loop and receive the next one at once. */
static void bus_recv_cb(void *arg)
{
	struct bus_src *s = arg;
	struct bus_item *it;
	nng_msg *msg;
	int rv = nng_aio_result(s->aio);

	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	if (rv == 0) {
		msg = nng_aio_get_msg(s->aio);
		it = malloc(sizeof(*it));
		if (it == NULL) {
			nng_msg_free(msg);
			atomic_fetch_add(&s->dropped, 1);
		} else {
			it->msg = msg;
			if (!gw_inbox_push(&s->inbox, &it->item)) {
				nng_msg_free(msg);
				free(it);
				atomic_fetch_add(&s->dropped, 1);
			}
		}
	}
	nng_recv_aio(s->sock, s->aio);
}

/* Loop thread. */
static void bus_frame(struct gw_inbox *ib, struct gw_inbox_item *item)
{
	struct bus_src *s = ib->arg;
	struct bus_item *it = (struct bus_item *)item;
	nng_msg *msg = it->msg;

	free(it);
	s->bus->cfg.fn(s->bus->cfg.arg, s->index, msg);
}

static void bus_topic(struct bus_src *s, const char *topic, size_t len, bool on)
{
	int rv = nng_socket_set(s->sock, on ? NNG_OPT_SUB_SUBSCRIBE : NNG_OPT_SUB_UNSUBSCRIBE, topic, len);

	if (rv != 0 && !(rv == NNG_ENOENT && !on))
		rc_log_error("bus subscription failed", "broker=%u topic_len=%zu on=%d err=\"%s\"", s->index, len, on,
			     nng_strerror(rv));
}

void gw_bus_room(struct gw_bus *b, const char *room, size_t len, bool on)
{
	char topic[RC_BUS_TOPIC_MAX];
	size_t tlen;

	if (b == NULL || len == 0 || len > RC_BUS_TOPIC_MAX - 2)
		return;
	tlen = rc_bus_topic(topic, room, len);
	for (unsigned i = 0; i < b->n; i++)
		bus_topic(b->src[i], topic, tlen, on);
}

void gw_bus_all(struct gw_bus *b, bool on)
{
	for (unsigned i = 0; b != NULL && i < b->n; i++)
		bus_topic(b->src[i], "", 0, on);
}

static void bus_src_closed(uv_handle_t *h)
{
	free(gw_container_of((uv_async_t *)h, struct bus_src, inbox.async));
}

/* Closes what bus_src_start set up of s and frees it (once its handle is closed). */
static void bus_src_abort(struct bus_src *s)
{
	nng_close(s->sock);
	nng_aio_free(s->aio);
	gw_inbox_close(&s->inbox, bus_src_closed);
}

static int bus_src_start(uv_loop_t *loop, struct gw_bus *b, unsigned index, const char *url)
{
	struct bus_src *s = calloc(1, sizeof(*s));
	int rv;

	if (s == NULL)
		return RC_ENOMEM;
	s->bus = b;
	s->index = index;
	if (nng_sub0_open(&s->sock) != 0) {
		free(s);
		return RC_EIO;
	}
	/* the index and global events always; rooms as streams come (gw_bus_room) */
	bus_topic(s, RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN, true);
	bus_topic(s, "g", 2, true);
	bus_topic(s, RC_BUS_TOPIC_CONTROL, RC_BUS_TOPIC_CONTROL_LEN, true);
	nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, b->cfg.recvbuf);
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, 0);
	nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, 100);
	nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, 1000);
	nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, bus_pipe_cb, s);
	nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, bus_pipe_cb, s);
	if (gw_inbox_init(loop, &s->inbox, b->cfg.inbox_max, bus_frame, s) != 0) {
		nng_close(s->sock);
		free(s);
		return RC_EIO;
	}
	if ((rv = nng_aio_alloc(&s->aio, bus_recv_cb, s)) != 0 ||
	    (rv = nng_dial(s->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		rc_log_error("cannot subscribe to the bus", "url=%s err=\"%s\"", url, nng_strerror(rv));
		bus_src_abort(s);
		return RC_EIO;
	}
	nng_recv_aio(s->sock, s->aio);
	b->src[b->n++] = s;
	return RC_OK;
}

int gw_bus_start(uv_loop_t *loop, const struct gw_bus_config *cfg, struct gw_bus **out)
{
	struct gw_bus *b = calloc(1, sizeof(*b));
	char *urls[GW_BROKERS_MAX];
	int n, rv = RC_OK;

	if (b == NULL)
		return RC_ENOMEM;
	b->cfg = *cfg;
	n = rc_opt_list(cfg->url, urls, GW_BROKERS_MAX);
	if (n < 0) {
		rc_log_error("bad --broker-bus list", "value=\"%s\" max=%d", cfg->url, GW_BROKERS_MAX);
		free(b);
		return n;
	}
	for (int i = 0; i < n && rv == RC_OK; i++)
		rv = bus_src_start(loop, b, (unsigned)i, urls[i]);
	rc_opt_list_free(urls, n);
	if (rv != RC_OK) {
		for (unsigned i = 0; i < b->n; i++) {
			nng_aio_stop(b->src[i]->aio);
			bus_src_abort(b->src[i]);
		}
		free(b);
		return rv;
	}
	b->cfg.url = NULL; /* the caller's string: not kept */
	*out = b;
	return RC_OK;
}

unsigned gw_bus_sources(const struct gw_bus *b)
{
	return b != NULL ? b->n : 0;
}

bool gw_bus_source_connected(struct gw_bus *b, unsigned src)
{
	return b != NULL && src < b->n && atomic_load(&b->src[src]->pipes) > 0;
}

bool gw_bus_connected(struct gw_bus *b)
{
	for (unsigned i = 0; b != NULL && i < b->n; i++)
		if (gw_bus_source_connected(b, i))
			return true;
	return false;
}

uint64_t gw_bus_source_dropped(struct gw_bus *b, unsigned src)
{
	return b != NULL && src < b->n ? atomic_load(&b->src[src]->dropped) : 0;
}

uint64_t gw_bus_dropped(struct gw_bus *b)
{
	uint64_t n = 0;

	for (unsigned i = 0; b != NULL && i < b->n; i++)
		n += gw_bus_source_dropped(b, i);
	return n;
}

static void bus_discard(struct gw_inbox *ib, struct gw_inbox_item *item)
{
	struct bus_item *it = (struct bus_item *)item;
	(void)ib;
	nng_msg_free(it->msg);
	free(it);
}

void gw_bus_stop(struct gw_bus *b)
{
	for (unsigned i = 0; b != NULL && i < b->n; i++) {
		struct bus_src *s = b->src[i];
		nng_aio_stop(s->aio);
		s->inbox.fn = bus_discard;
		gw_inbox_drain(&s->inbox);
		gw_inbox_close(&s->inbox, NULL);
	}
}

void gw_bus_free(struct gw_bus *b)
{
	if (b == NULL)
		return;
	for (unsigned i = 0; i < b->n; i++) {
		struct bus_src *s = b->src[i];
		nng_close(s->sock);
		nng_aio_free(s->aio);
		gw_inbox_drain(&s->inbox); /* what arrived between stop and close */
		pthread_mutex_destroy(&s->inbox.mtx);
		free(s);
	}
	free(b);
}
