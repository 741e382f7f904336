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
#include "options.h"
#include "bus_client.h" /* GW_BROKERS_MAX */

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
	nng_msg *req;      /* several brokers: the request, to send again when its broker fails; else NULL */
	nng_time end;      /* with req: no attempt after this */
	bool sent;      /* an attempt was handed to a connection (written by nng's threads until queued) */
	bool in_flight; /* loop thread: called, its callback not yet run */
	bool queued;	/* its completion is in the inbox (written by nng, read by gw_api_stop) */
	atomic_bool cancel; /* gw_api_cancel: stop waiting for the answer, send no more */
};

struct gw_api {
	nng_socket sock;
	atomic_int pipes;
	unsigned n;                        /* broker addresses dialed */
	nng_dialer dialers[GW_BROKERS_MAX];
	atomic_int pipes_by[GW_BROKERS_MAX]; /* connections up, per address */
	atomic_uint_fast64_t retries;
	struct gw_inbox inbox;
	struct gw_api_call *free_calls; /* loop thread only */
	struct gw_api_call **all;       /* every call ever made, for stop */
	size_t nall, capall;
	bool stopping;
};

static void api_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct gw_api *a = arg;
	int d = nng_dialer_id(nng_pipe_dialer(p)), by = -1, add = ev == NNG_PIPE_EV_ADD_POST ? 1 : -1;

	if (ev != NNG_PIPE_EV_ADD_POST && ev != NNG_PIPE_EV_REM_POST)
		return;
	for (unsigned i = 0; i < a->n; i++)
		if (nng_dialer_id(a->dialers[i]) == d)
			by = (int)i;
	atomic_fetch_add(&a->pipes, add);
	if (by >= 0)
		atomic_fetch_add(&a->pipes_by[by], add);
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

/* Connections up now (any thread). */
static int api_pipes(struct gw_api *a)
{
	return atomic_load(&a->pipes);
}

/*
 * nng thread: with several brokers, a call that failed (its connection
 * lost, its time for this attempt passed, or no connection took it) is
 * sent again while time is left; nng hands it to a connection that is up,
 * the failed one being gone. False: the call ends now.
 */
static bool api_retry(struct gw_api_call *c, int rv)
{
	nng_time now = nng_clock();
	nng_msg *msg;

	if (c->req == NULL || rv == NNG_ECLOSED || rv == NNG_ECANCELED || rv == NNG_ENOMEM || now + 1 >= c->end ||
	    atomic_load(&c->cancel))
		return false;
	if (nng_msg_dup(&msg, c->req) != 0)
		return false;
	atomic_fetch_add(&c->api->retries, 1);
	c->state = CALL_SEND;
	nng_aio_set_timeout(c->aio, (nng_duration)(c->end - now));
	nng_aio_set_msg(c->aio, msg);
	nng_ctx_send(c->ctx, c->aio);
	return true;
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

	bool consumed = false; /* the request went: nng owns it */

	if (c->state == CALL_SEND && rv == 0 && atomic_load(&c->cancel)) {
		/* answered already (gw_api_cancel came before this callback): no receive */
		c->sent = true;
		consumed = true;
		rv = NNG_ECANCELED;
	} else if (c->state == CALL_SEND && rv == 0) {
		nng_time now = nng_clock();
		c->state = CALL_RECV;
		c->sent = true;
		if (c->req != NULL) {
			/* while another broker is up, the answer gets half of what is left: the other half is a retry's */
			nng_duration left = c->end > now ? (nng_duration)(c->end - now) : 1;
			nng_aio_set_timeout(c->aio, api_pipes(c->api) > 1 && left > 1 ? left / 2 : left);
		} else if (c->deadline != 0) {
			/* nng times each operation alone: the answer gets what is left */
			nng_aio_set_timeout(c->aio, c->deadline > now ? (nng_duration)(c->deadline - now) : 1);
		}
		nng_ctx_recv(c->ctx, c->aio);
		/* a gw_api_cancel that came between the check above and the receive: cancel it here */
		if (atomic_load(&c->cancel))
			nng_aio_cancel(c->aio);
		return;
	}
	if (c->state == CALL_SEND && !consumed)
		nng_msg_free(nng_aio_get_msg(c->aio));
	if (rv != 0 && api_retry(c, rv))
		return;
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
		c->cb(c->cb_arg, c->err, c->sent, NULL, 0);
	nng_msg_free(c->reply);
	c->reply = NULL;
	nng_msg_free(c->req);
	c->req = NULL;
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
	char *urls[GW_BROKERS_MAX];
	int n, rv = 0;

	if (a == NULL)
		return RC_ENOMEM;
	if ((n = rc_opt_list(url, urls, GW_BROKERS_MAX)) < 0) {
		rc_log_error("bad --broker-api list", "value=\"%s\" max=%d", url, GW_BROKERS_MAX);
		free(a);
		return n;
	}
	if ((rv = nng_req0_open(&a->sock)) != 0) {
		rc_opt_list_free(urls, n);
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
		rc_opt_list_free(urls, n);
		nng_close(a->sock);
		free(a);
		return RC_EIO;
	}
	/* one socket dialing every broker: nng spreads requests over the connections up */
	for (int i = 0; i < n && rv == 0; i++) {
		/* created before it starts, so that the pipe callback finds its index */
		if ((rv = nng_dialer_create(&a->dialers[i], a->sock, urls[i])) == 0) {
			a->n++;
			rv = nng_dialer_start(a->dialers[i], NNG_FLAG_NONBLOCK);
		}
		if (rv != 0)
			rc_log_error("bad --broker-api address", "url=%s err=\"%s\"", urls[i], nng_strerror(rv));
	}
	rc_opt_list_free(urls, n);
	if (rv != 0) {
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

unsigned gw_api_brokers(const struct gw_api *a)
{
	return a != NULL ? a->n : 0;
}

bool gw_api_broker_connected(struct gw_api *a, unsigned i)
{
	return a != NULL && i < a->n && atomic_load(&a->pipes_by[i]) > 0;
}

uint64_t gw_api_retries(struct gw_api *a)
{
	return a != NULL ? atomic_load(&a->retries) : 0;
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

static int api_call(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg, bool wait,
		    struct gw_api_call **out)
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
	c->req = NULL;
	if (a->n > 1 && nng_msg_dup(&c->req, msg) != 0)
		c->req = NULL; /* out of memory: this call is not sent again */
	/* waiting for a connection may take timeout_ms, and the answer as long again */
	c->end = nng_clock() + (nng_time)timeout_ms * (wait ? 2 : 1);
	c->sent = false;
	c->cb = cb;
	c->cb_arg = arg;
	c->state = CALL_SEND;
	c->in_flight = true;
	c->queued = false;
	atomic_store(&c->cancel, false);
	if (out != NULL)
		*out = c;
	c->deadline = wait ? 0 : nng_clock() + (nng_time)timeout_ms;
	nng_aio_set_timeout(c->aio, timeout_ms);
	nng_aio_set_msg(c->aio, msg);
	nng_ctx_send(c->ctx, c->aio);
	return RC_OK;
}

int gw_api_call(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg)
{
	return api_call(a, req, len, timeout_ms, cb, arg, false, NULL);
}

int gw_api_call_h(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg,
		  struct gw_api_call **call)
{
	return api_call(a, req, len, timeout_ms, cb, arg, false, call);
}

void gw_api_cancel(struct gw_api_call *c)
{
	if (c == NULL || !c->in_flight)
		return; /* its callback has run: nothing to stop */
	atomic_store(&c->cancel, true);
	nng_aio_cancel(c->aio);
}

int gw_api_call_wait(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg)
{
	return api_call(a, req, len, timeout_ms, cb, arg, true, NULL);
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
