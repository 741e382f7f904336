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

struct bus_item {
	struct gw_inbox_item item;
	nng_msg *msg;
};

struct gw_bus {
	struct gw_bus_config cfg;
	nng_socket sock;
	nng_aio *aio;
	atomic_int pipes;
	atomic_uint_fast64_t dropped;
	struct gw_inbox inbox;
};

static void bus_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct gw_bus *b = arg;
	(void)p;
	if (ev == NNG_PIPE_EV_ADD_POST)
		atomic_fetch_add(&b->pipes, 1);
	else if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&b->pipes, 1);
}

/* nng thread: hand the frame to the loop and receive the next one at once. */
static void bus_recv_cb(void *arg)
{
	struct gw_bus *b = arg;
	struct bus_item *it;
	nng_msg *msg;
	int rv = nng_aio_result(b->aio);

	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	if (rv == 0) {
		msg = nng_aio_get_msg(b->aio);
		it = malloc(sizeof(*it));
		if (it == NULL) {
			nng_msg_free(msg);
			atomic_fetch_add(&b->dropped, 1);
		} else {
			it->msg = msg;
			if (!gw_inbox_push(&b->inbox, &it->item)) {
				nng_msg_free(msg);
				free(it);
				atomic_fetch_add(&b->dropped, 1);
			}
		}
	}
	nng_recv_aio(b->sock, b->aio);
}

/* Loop thread. */
static void bus_frame(struct gw_inbox *ib, struct gw_inbox_item *item)
{
	struct gw_bus *b = ib->arg;
	struct bus_item *it = (struct bus_item *)item;
	nng_msg *msg = it->msg;

	free(it);
	b->cfg.fn(b->cfg.arg, msg);
}

static void bus_topic(struct gw_bus *b, const char *topic, size_t len, bool on)
{
	int rv = nng_socket_set(b->sock, on ? NNG_OPT_SUB_SUBSCRIBE : NNG_OPT_SUB_UNSUBSCRIBE, topic, len);

	if (rv != 0 && !(rv == NNG_ENOENT && !on))
		rc_log_error("bus subscription failed", "topic_len=%zu on=%d err=\"%s\"", len, on, nng_strerror(rv));
}

void gw_bus_room(struct gw_bus *b, const char *room, size_t len, bool on)
{
	char topic[RC_BUS_TOPIC_MAX];

	if (b != NULL && len > 0 && len <= RC_BUS_TOPIC_MAX - 2)
		bus_topic(b, topic, rc_bus_topic(topic, room, len), on);
}

void gw_bus_all(struct gw_bus *b, bool on)
{
	if (b != NULL)
		bus_topic(b, "", 0, on);
}

static void bus_closed(uv_handle_t *h)
{
	free(gw_container_of((uv_async_t *)h, struct gw_bus, inbox.async));
}

int gw_bus_start(uv_loop_t *loop, const struct gw_bus_config *cfg, struct gw_bus **out)
{
	struct gw_bus *b = calloc(1, sizeof(*b));
	int rv;

	if (b == NULL)
		return RC_ENOMEM;
	b->cfg = *cfg;
	if ((rv = nng_sub0_open(&b->sock)) != 0) {
		free(b);
		return RC_EIO;
	}
	/* the index and global events always; rooms as streams come (gw_bus_room) */
	bus_topic(b, RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN, true);
	bus_topic(b, "g", 2, true);
	bus_topic(b, RC_BUS_TOPIC_CONTROL, RC_BUS_TOPIC_CONTROL_LEN, true);
	nng_socket_set_int(b->sock, NNG_OPT_RECVBUF, cfg->recvbuf);
	nng_socket_set_size(b->sock, NNG_OPT_RECVMAXSZ, 0);
	nng_socket_set_ms(b->sock, NNG_OPT_RECONNMINT, 100);
	nng_socket_set_ms(b->sock, NNG_OPT_RECONNMAXT, 1000);
	nng_pipe_notify(b->sock, NNG_PIPE_EV_ADD_POST, bus_pipe_cb, b);
	nng_pipe_notify(b->sock, NNG_PIPE_EV_REM_POST, bus_pipe_cb, b);
	if (gw_inbox_init(loop, &b->inbox, cfg->inbox_max, bus_frame, b) != 0) {
		nng_close(b->sock);
		free(b);
		return RC_EIO;
	}
	if ((rv = nng_aio_alloc(&b->aio, bus_recv_cb, b)) != 0 ||
	    (rv = nng_dial(b->sock, cfg->url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		rc_log_error("cannot subscribe to the bus", "url=%s err=\"%s\"", cfg->url, nng_strerror(rv));
		nng_aio_free(b->aio);
		nng_close(b->sock);
		gw_inbox_close(&b->inbox, bus_closed);
		return RC_EIO;
	}
	nng_recv_aio(b->sock, b->aio);
	*out = b;
	return RC_OK;
}

bool gw_bus_connected(struct gw_bus *b)
{
	return b != NULL && atomic_load(&b->pipes) > 0;
}

uint64_t gw_bus_dropped(struct gw_bus *b)
{
	return b != NULL ? atomic_load(&b->dropped) : 0;
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
	if (b == NULL)
		return;
	nng_aio_stop(b->aio);
	b->inbox.fn = bus_discard;
	gw_inbox_drain(&b->inbox);
	gw_inbox_close(&b->inbox, NULL);
}

void gw_bus_free(struct gw_bus *b)
{
	if (b == NULL)
		return;
	nng_close(b->sock);
	nng_aio_free(b->aio);
	gw_inbox_drain(&b->inbox); /* what arrived between stop and close */
	pthread_mutex_destroy(&b->inbox.mtx);
	free(b);
}
