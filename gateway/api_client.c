#include "api_client.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "error.h"
#include "inbox.h"
#include "list.h"
#include "log.h"

enum call_state { CALL_SEND, CALL_RECV };

struct gw_api_call {
	struct gw_inbox_item item; /* first: the inbox hands it back */
	struct gw_api *api;
	struct gw_api_call *next_free;
	nng_ctx ctx;
	nng_aio *aio;
	enum call_state state;
	int err;
	nng_msg *reply;
	gw_api_cb cb;
	void *cb_arg;
	nng_time deadline; /* the answer's, once sent (nng_clock); 0: timeout_ms again from the send */
	bool in_flight; /* loop thread: called, its callback not yet run */
	bool queued;	/* its completion is in the inbox (written by nng, read by gw_api_stop) */
};

struct gw_api {
	nng_socket sock;
	atomic_int pipes;
	struct gw_inbox inbox;
	struct gw_api_call *free_calls; /* loop thread only */
	struct gw_api_call **all;       /* every call ever made, for stop */
	size_t nall, capall;
	bool stopping;
};

static void api_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct gw_api *a = arg;
	(void)p;
	if (ev == NNG_PIPE_EV_ADD_POST)
		atomic_fetch_add(&a->pipes, 1);
	else if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&a->pipes, 1);
}

static int api_error(int nng_err)
{
	switch (nng_err) {
	case 0: return RC_OK;
	case NNG_ETIMEDOUT: return RC_ETIMEDOUT;
	case NNG_ECANCELED: /* gw_api_stop */
	case NNG_ECLOSED: return RC_ECLOSED;
	case NNG_ENOMEM: return RC_ENOMEM;
	}
	return RC_EIO; /* NNG_ECONNRESET: the connection was lost after the send; and the like */
}

/*
 * nng thread: the send finished, or the reply came (or failed). The send
 * aio of a REQ context completes once the request is handed to a connection
 * (nng 1.5 req0_run_send_queue), so CALL_RECV is "sent": a failure after it
 * leaves the broker's outcome unknown, a failure before it means the broker
 * never saw the request.
 */
static void api_aio_cb(void *arg)
{
	struct gw_api_call *c = arg;
	int rv = nng_aio_result(c->aio);

	if (c->state == CALL_SEND && rv == 0) {
		nng_time now = nng_clock();
		c->state = CALL_RECV;
		/* nng times each operation alone: the answer gets what is left */
		if (c->deadline != 0)
			nng_aio_set_timeout(c->aio, c->deadline > now ? (nng_duration)(c->deadline - now) : 1);
		nng_ctx_recv(c->ctx, c->aio);
		return;
	}
	if (c->state == CALL_SEND)
		nng_msg_free(nng_aio_get_msg(c->aio));
	c->reply = rv == 0 ? nng_aio_get_msg(c->aio) : NULL;
	c->err = api_error(rv);
	c->queued = true;
	gw_inbox_push(&c->api->inbox, &c->item);
}

/* Loop thread: runs the callback and recycles the call. */
static void api_done(struct gw_inbox *ib, struct gw_inbox_item *item)
{
	struct gw_api_call *c = (struct gw_api_call *)item;
	struct gw_api *a = ib->arg;

	if (c->reply != NULL)
		c->cb(c->cb_arg, RC_OK, true, nng_msg_body(c->reply), nng_msg_len(c->reply));
	else
		c->cb(c->cb_arg, c->err, c->state == CALL_RECV, NULL, 0);
	nng_msg_free(c->reply);
	c->reply = NULL;
	c->in_flight = false;
	c->next_free = a->free_calls;
	a->free_calls = c;
}

static void api_closed(uv_handle_t *h)
{
	free(gw_container_of((uv_async_t *)h, struct gw_api, inbox.async));
}

int gw_api_start(uv_loop_t *loop, const char *url, struct gw_api **out)
{
	struct gw_api *a = calloc(1, sizeof(*a));
	int rv;

	if (a == NULL)
		return RC_ENOMEM;
	if ((rv = nng_req0_open(&a->sock)) != 0) {
		free(a);
		return RC_EIO;
	}
	/* a publish is never re-sent behind the caller's back */
	nng_socket_set_ms(a->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_ms(a->sock, NNG_OPT_RECONNMINT, 100);
	nng_socket_set_ms(a->sock, NNG_OPT_RECONNMAXT, 1000);
	nng_socket_set_size(a->sock, NNG_OPT_RECVMAXSZ, 0);
	nng_pipe_notify(a->sock, NNG_PIPE_EV_ADD_POST, api_pipe_cb, a);
	nng_pipe_notify(a->sock, NNG_PIPE_EV_REM_POST, api_pipe_cb, a);
	if (gw_inbox_init(loop, &a->inbox, 0, api_done, a) != 0) {
		nng_close(a->sock);
		free(a);
		return RC_EIO;
	}
	if ((rv = nng_dial(a->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		rc_log_error("bad --broker-api address", "url=%s err=\"%s\"", url, nng_strerror(rv));
		nng_close(a->sock);
		gw_inbox_close(&a->inbox, api_closed);
		return RC_EIO;
	}
	*out = a;
	return RC_OK;
}

bool gw_api_connected(struct gw_api *a)
{
	return a != NULL && atomic_load(&a->pipes) > 0;
}

static struct gw_api_call *api_call_get(struct gw_api *a)
{
	struct gw_api_call *c = a->free_calls;

	if (c != NULL) {
		a->free_calls = c->next_free;
		return c;
	}
	if (a->nall == a->capall) {
		size_t cap = a->capall ? a->capall * 2 : 16;
		struct gw_api_call **all = realloc(a->all, cap * sizeof(*all));
		if (all == NULL)
			return NULL;
		a->all = all;
		a->capall = cap;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->api = a;
	if (nng_aio_alloc(&c->aio, api_aio_cb, c) != 0) {
		free(c);
		return NULL;
	}
	if (nng_ctx_open(&c->ctx, a->sock) != 0) {
		nng_aio_free(c->aio);
		free(c);
		return NULL;
	}
	a->all[a->nall++] = c;
	return c;
}

static int api_call(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg,
		    bool wait)
{
	struct gw_api_call *c;
	nng_msg *msg;

	if (a->stopping)
		return RC_ECLOSED;
	if (!wait && !gw_api_connected(a))
		return RC_EIO;
	c = api_call_get(a);
	if (c == NULL)
		return RC_ENOMEM;
	if (nng_msg_alloc(&msg, 0) != 0 || nng_msg_append(msg, req, len) != 0) {
		c->next_free = a->free_calls;
		a->free_calls = c;
		return RC_ENOMEM;
	}
	c->cb = cb;
	c->cb_arg = arg;
	c->state = CALL_SEND;
	c->in_flight = true;
	c->queued = false;
	c->deadline = wait ? 0 : nng_clock() + (nng_time)timeout_ms;
	nng_aio_set_timeout(c->aio, timeout_ms);
	nng_aio_set_msg(c->aio, msg);
	nng_ctx_send(c->ctx, c->aio);
	return RC_OK;
}

int gw_api_call(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg)
{
	return api_call(a, req, len, timeout_ms, cb, arg, false);
}

int gw_api_call_wait(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg)
{
	return api_call(a, req, len, timeout_ms, cb, arg, true);
}

void gw_api_stop(struct gw_api *a)
{
	if (a == NULL)
		return;
	a->stopping = true;
	/* stopping an aio runs its callback, which queues the failure */
	for (size_t i = 0; i < a->nall; i++)
		nng_aio_stop(a->all[i]->aio);
	/*
	 * Except for a stop that comes while the callback of a finished send
	 * starts the receive: nng 1.5.2 then drops the receive without calling
	 * back (nni_aio_begin on a stopped aio). The callbacks are over now.
	 */
	for (size_t i = 0; i < a->nall; i++) {
		struct gw_api_call *c = a->all[i];
		if (c->in_flight && !c->queued) {
			c->reply = NULL;
			c->err = RC_ECLOSED;
			c->queued = true;
			gw_inbox_push(&a->inbox, &c->item);
		}
	}
	gw_inbox_drain(&a->inbox);
	gw_inbox_close(&a->inbox, NULL);
}

void gw_api_free(struct gw_api *a)
{
	if (a == NULL)
		return;
	nng_close(a->sock);
	for (size_t i = 0; i < a->nall; i++) {
		nng_aio_free(a->all[i]->aio);
		free(a->all[i]);
	}
	free(a->all);
	pthread_mutex_destroy(&a->inbox.mtx);
	free(a);
}
