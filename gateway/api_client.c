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

#include <pthread.h>

/* CALL_IDLE: not in nng's hands (free, or its completion queued for the loop) */
enum call_state { CALL_IDLE, CALL_SEND, CALL_RECV };

/* A broker whose last attempt went unanswered is passed over for this long (or until it answers). */
#define API_SUSPECT_MS 5000
/* Several brokers and none connected: a request waits this long on one broker's socket, then tries the next. */
#define API_POLL_MS 200

/*
 * With several brokers, a call's attempt (state, broker, lost, attempt,
 * polling) changes only under gw_api.mtx: the send's and the receive's
 * completions (api_aio_cb), a new attempt (api_attempt) and the loss of a
 * broker's last connection (api_pipe_cb) are ordered, so that a call pending
 * on a broker whose connection goes is moved exactly once, whatever its step.
 */
struct gw_api_call {
	struct gw_inbox_item item; /* first: the inbox hands it back */
	struct gw_api *api;
	struct gw_api_call *next_free;
	nng_ctx ctx[GW_BROKERS_MAX]; /* one per broker's socket */
	nng_aio *aio;
	int state;	  /* enum call_state */
	int broker;	  /* the broker of the attempt under way */
	unsigned attempt; /* attempts sent before this one */
	bool polling;	  /* this attempt waits for a connection: its time-out is no failure of the broker */
	bool lost;	  /* api_pipe_cb: its broker's last connection went during this attempt: go to another */
	int err;
	nng_msg *reply;
	gw_api_cb cb;
	void *cb_arg;
	nng_time deadline;  /* the answer's, once sent (nng_clock); 0: timeout_ms again from the send */
	nng_msg *req;	    /* several brokers: the request, to send again when its broker fails; else NULL */
	nng_time end;	    /* with req: no attempt after this */
	bool sent;	    /* an attempt was handed to a connection (written by nng's threads until queued) */
	bool in_flight;	    /* loop thread: called, its callback not yet run */
	bool queued;	    /* its completion is in the inbox (written by nng, read by gw_api_stop) */
	atomic_bool cancel; /* gw_api_cancel: stop waiting for the answer, send no more */
};

struct gw_api {
	unsigned n; /* broker addresses: one REQ socket each */
	nng_socket socks[GW_BROKERS_MAX];
	nng_dialer dialers[GW_BROKERS_MAX];
	atomic_int pipes;
	atomic_int pipes_by[GW_BROKERS_MAX];	      /* connections up, per address */
	atomic_uint_fast64_t suspect[GW_BROKERS_MAX]; /* nng_clock of its last unanswered attempt; 0: none */
	atomic_uint rr;				      /* round-robin over the brokers */
	int retry_ms;				      /* a first attempt's cap while another broker is up; 0: half */
	atomic_uint_fast64_t retries;
	atomic_bool stopping;
	struct gw_inbox inbox;
	struct gw_api_call *free_calls; /* loop thread only */
	/* all, nall (grown on the loop thread, walked by the pipe callback); each call's attempt */
	pthread_mutex_t mtx;
	struct gw_api_call **all; /* every call ever made, for stop */
	size_t nall, capall;
};

static int api_broker_of(struct gw_api *a, nng_pipe p)
{
	int id = nng_socket_id(nng_pipe_socket(p));

	for (unsigned i = 0; i < a->n; i++)
		if (nng_socket_id(a->socks[i]) == id)
			return (int)i;
	return -1;
}

/*
 * nng thread. A broker's last connection went: nng 1.5.2's REQ would keep
 * the requests not yet handed to it queued for the same broker's next
 * connection (and those handed to it fail only once their receive starts).
 * With several brokers every call pending on its socket, waiting to be sent
 * or waiting for the answer, is marked lost and cancelled: api_aio_cb sends
 * it to another broker. Under mtx, so that a call is never between two steps
 * (its send done, its receive not started) when it is swept.
 */
static void api_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct gw_api *a = arg;
	int by = api_broker_of(a, p), add = ev == NNG_PIPE_EV_ADD_POST ? 1 : -1;

	if ((ev != NNG_PIPE_EV_ADD_POST && ev != NNG_PIPE_EV_REM_POST) || by < 0)
		return;
	pthread_mutex_lock(&a->mtx);
	atomic_fetch_add(&a->pipes, add);
	if (atomic_fetch_add(&a->pipes_by[by], add) + add <= 0 && add < 0 && a->n > 1)
		for (size_t i = 0; i < a->nall; i++) {
			struct gw_api_call *c = a->all[i];
			if (c->state != CALL_IDLE && c->broker == by) {
				c->lost = true;
				/* runs req0's cancel now; api_aio_cb later, on another thread, once mtx is free */
				nng_aio_cancel(c->aio);
			}
		}
	pthread_mutex_unlock(&a->mtx);
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

static bool api_suspect(struct gw_api *a, unsigned i, nng_time now)
{
	nng_time t = (nng_time)atomic_load(&a->suspect[i]);
	return t != 0 && now < t + API_SUSPECT_MS;
}

/*
 * Any thread: the broker for an attempt, round-robin over those with a
 * connection up, passing over `skip` (the broker whose attempt failed, or
 * -1) and the suspect ones while another is up. None up: any but `skip`.
 */
static unsigned api_choose(struct gw_api *a, int skip)
{
	unsigned start = atomic_fetch_add(&a->rr, 1), i;
	nng_time now = nng_clock();
	int up = -1;

	for (unsigned k = 0; k < a->n; k++) {
		i = (start + k) % a->n;
		if ((int)i == skip || atomic_load(&a->pipes_by[i]) <= 0)
			continue;
		if (!api_suspect(a, i, now))
			return i;
		if (up < 0)
			up = (int)i;
	}
	if (up >= 0)
		return (unsigned)up;
	if (skip >= 0 && atomic_load(&a->pipes_by[skip]) > 0)
		return (unsigned)skip;
	i = start % a->n;
	return (int)i == skip ? (i + 1) % a->n : i;
}

/* True while a broker other than b has a connection up. */
static bool api_other_up(struct gw_api *a, unsigned b)
{
	for (unsigned i = 0; i < a->n; i++)
		if (i != b && atomic_load(&a->pipes_by[i]) > 0)
			return true;
	return false;
}

/*
 * Several brokers, mtx held: sends msg (taking it) to broker b, within what
 * is left of the call's time. nng completes the send later on its threads,
 * never in this call.
 */
static void api_attempt(struct gw_api_call *c, unsigned b, nng_msg *msg)
{
	nng_time now = nng_clock();
	nng_duration left = c->end > now ? (nng_duration)(c->end - now) : 1;

	c->polling = atomic_load(&c->api->pipes_by[b]) <= 0;
	c->broker = (int)b;
	c->state = CALL_SEND;
	c->lost = false;
	nng_aio_set_timeout(c->aio, c->polling && left > API_POLL_MS ? API_POLL_MS : left);
	nng_aio_set_msg(c->aio, msg);
	nng_ctx_send(c->ctx[b], c->aio);
}

/*
 * nng thread, mtx held: with several brokers, a call that failed (its
 * connection lost, its time for this attempt passed, or no connection took
 * it) is sent again while time is left, to another broker when one is up.
 * False: the call ends now.
 */
static bool api_retry(struct gw_api_call *c, int rv)
{
	nng_time now = nng_clock();
	nng_msg *msg;

	if (c->req == NULL || rv == NNG_ECLOSED || rv == NNG_ECANCELED || rv == NNG_ENOMEM || now + 1 >= c->end ||
	    atomic_load(&c->cancel) || atomic_load(&c->api->stopping))
		return false;
	if (nng_msg_dup(&msg, c->req) != 0)
		return false;
	if (!c->polling) {
		atomic_fetch_add(&c->api->retries, 1);
		c->attempt++;
	}
	api_attempt(c, api_choose(c->api, c->broker), msg);
	return true;
}

/* nng thread: how long the attempt just sent waits for its answer. */
static nng_duration api_answer_time(struct gw_api_call *c)
{
	nng_time now = nng_clock();

	if (c->req != NULL) {
		nng_duration left = c->end > now ? (nng_duration)(c->end - now) : 1, half = left / 2;
		int cap = c->api->retry_ms;
		/* another broker up: a first attempt gets --api-retry-ms, a later one half of what is left, the last
		 * all */
		if (!api_other_up(c->api, (unsigned)c->broker) || left < 2)
			return left;
		if (c->attempt == 0 && cap > 0)
			return cap < left ? cap : left;
		return half >= cap ? half : left;
	}
	/* nng times each operation alone: the answer gets what is left */
	return c->deadline > now ? (nng_duration)(c->deadline - now) : 1;
}

/*
 * nng thread: the send finished, or the reply came (or failed). The send
 * aio of a REQ context completes once the request is handed to a connection
 * (nng 1.5 req0_run_send_queue), so CALL_RECV is "sent": a failure after it
 * leaves the broker's outcome unknown, a failure before it means the broker
 * never saw the request. The receive starts only once the send is done:
 * nng 1.5.2 cannot cancel a receive whose send is pending. Under mtx (see
 * struct gw_api_call): the call's next step, or its end, is decided in one
 * piece with respect to api_pipe_cb and gw_api_cancel.
 */
static void api_aio_cb(void *arg)
{
	struct gw_api_call *c = arg;
	struct gw_api *a = c->api;
	int rv = nng_aio_result(c->aio), b;

	pthread_mutex_lock(&a->mtx);
	b = c->broker;
	if (c->state == CALL_SEND) {
		nng_msg_free(nng_aio_get_msg(c->aio)); /* not sent: nng gave it back; sent: NULL */
		nng_aio_set_msg(c->aio, NULL);
		if (rv == 0) {
			c->sent = true;
			if (atomic_load(&c->cancel))
				rv = NNG_ECANCELED; /* answered already (gw_api_cancel): no receive */
			else if (c->lost)
				rv = NNG_ECONNRESET; /* handed to a connection that went since: go elsewhere now */
		}
		if (rv == 0) {
			c->state = CALL_RECV;
			if (c->req != NULL || c->deadline != 0)
				nng_aio_set_timeout(c->aio, api_answer_time(c));
			/* a gw_api_cancel or a lost connection from now on cancels this receive: both take mtx */
			nng_ctx_recv(c->ctx[b], c->aio);
			pthread_mutex_unlock(&a->mtx);
			return;
		}
	} else if (c->req != NULL && c->state == CALL_RECV) {
		if (rv == 0)
			atomic_store(&a->suspect[b], 0);
		else if (rv == NNG_ETIMEDOUT)
			atomic_store(&a->suspect[b], (uint_fast64_t)nng_clock());
	}
	if (rv == NNG_ECANCELED && c->lost && !atomic_load(&c->cancel))
		rv = NNG_ECONNRESET; /* api_pipe_cb: its connection went */
	if (rv != 0 && api_retry(c, rv)) {
		pthread_mutex_unlock(&a->mtx);
		return;
	}
	c->reply = rv == 0 ? nng_aio_get_msg(c->aio) : NULL;
	c->err = api_error(rv);
	c->state = CALL_IDLE; /* api_pipe_cb: nothing left to move */
	c->queued = true;
	pthread_mutex_unlock(&a->mtx);
	gw_inbox_push(&a->inbox, &c->item);
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
	pthread_mutex_init(&a->mtx, NULL);
	if (gw_inbox_init(loop, &a->inbox, 0, api_done, a) != 0) {
		rc_opt_list_free(urls, n);
		pthread_mutex_destroy(&a->mtx);
		free(a);
		return RC_EIO;
	}
	/* a socket per broker: the gateway, not nng, chooses the broker of each attempt (api_choose) */
	for (int i = 0; i < n && rv == 0; i++) {
		nng_socket s;
		if ((rv = nng_req0_open(&s)) != 0) {
			rc_log_error("api socket", "err=\"%s\"", nng_strerror(rv));
			break;
		}
		a->socks[a->n++] = s;
		/* a publish is never re-sent behind the caller's back */
		nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
		nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 100);
		nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 1000);
		nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 0);
		nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, api_pipe_cb, a);
		nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, api_pipe_cb, a);
		if ((rv = nng_dialer_create(&a->dialers[i], s, urls[i])) == 0)
			rv = nng_dialer_start(a->dialers[i], NNG_FLAG_NONBLOCK);
		if (rv != 0)
			rc_log_error("bad --broker-api address", "url=%s err=\"%s\"", urls[i], nng_strerror(rv));
	}
	rc_opt_list_free(urls, n);
	if (rv != 0) {
		for (unsigned i = 0; i < a->n; i++)
			nng_close(a->socks[i]);
		pthread_mutex_destroy(&a->mtx);
		gw_inbox_close(&a->inbox, api_closed);
		return RC_EIO;
	}
	*out = a;
	return RC_OK;
}

void gw_api_set_retry_ms(struct gw_api *a, int ms)
{
	if (a != NULL)
		a->retry_ms = ms > 0 ? ms : 0;
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

static void api_call_free(struct gw_api_call *c, unsigned nctx)
{
	for (unsigned i = 0; i < nctx; i++)
		nng_ctx_close(c->ctx[i]);
	nng_aio_free(c->aio);
	free(c);
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
		pthread_mutex_lock(&a->mtx);
		struct gw_api_call **all = realloc(a->all, cap * sizeof(*all));
		if (all != NULL) {
			a->all = all;
			a->capall = cap;
		}
		pthread_mutex_unlock(&a->mtx);
		if (all == NULL)
			return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->api = a;
	if (nng_aio_alloc(&c->aio, api_aio_cb, c) != 0) {
		free(c);
		return NULL;
	}
	for (unsigned i = 0; i < a->n; i++)
		if (nng_ctx_open(&c->ctx[i], a->socks[i]) != 0) {
			api_call_free(c, i);
			return NULL;
		}
	pthread_mutex_lock(&a->mtx);
	a->all[a->nall++] = c;
	pthread_mutex_unlock(&a->mtx);
	return c;
}

static int api_call(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg, bool wait,
		    struct gw_api_call **out)
{
	struct gw_api_call *c;
	nng_msg *msg;

	if (atomic_load(&a->stopping))
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
	c->attempt = 0;
	c->in_flight = true;
	c->queued = false;
	atomic_store(&c->cancel, false);
	if (out != NULL)
		*out = c;
	c->deadline = wait ? 0 : nng_clock() + (nng_time)timeout_ms;
	pthread_mutex_lock(&a->mtx);
	if (a->n > 1) {
		api_attempt(c, api_choose(a, -1), msg);
	} else {
		c->polling = false;
		c->lost = false;
		c->broker = 0;
		c->state = CALL_SEND;
		nng_aio_set_timeout(c->aio, timeout_ms);
		nng_aio_set_msg(c->aio, msg);
		nng_ctx_send(c->ctx[0], c->aio);
	}
	pthread_mutex_unlock(&a->mtx);
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
	pthread_mutex_lock(&c->api->mtx);
	atomic_store(&c->cancel, true);
	nng_aio_cancel(c->aio);
	pthread_mutex_unlock(&c->api->mtx);
}

int gw_api_call_wait(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg)
{
	return api_call(a, req, len, timeout_ms, cb, arg, true, NULL);
}

void gw_api_stop(struct gw_api *a)
{
	if (a == NULL)
		return;
	atomic_store(&a->stopping, true);
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
			/* a re-send dropped the same way still holds its request */
			nng_msg_free(nng_aio_get_msg(c->aio));
			nng_aio_set_msg(c->aio, NULL);
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
	for (unsigned i = 0; i < a->n; i++)
		nng_close(a->socks[i]);
	for (size_t i = 0; i < a->nall; i++) {
		nng_aio_free(a->all[i]->aio);
		free(a->all[i]);
	}
	free(a->all);
	pthread_mutex_destroy(&a->mtx);
	pthread_mutex_destroy(&a->inbox.mtx);
	free(a);
}
