#include "api.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>
#include <stdbool.h>
#include <stdlib.h>

#include "error.h"
#include "listener.h"
#include "log.h"
#include "ops.h"

/* How often a replay that waits for a --max-replays slot looks again. */
#define API_REPLAY_POLL_MS 2

enum worker_state { WORKER_RECV, WORKER_WAIT, WORKER_SEND };

struct api_worker {
	struct api *api;
	nng_aio *aio;
	nng_ctx ctx;
	enum worker_state state;
	nng_msg *req;	     /* WORKER_WAIT: the request, handled again when a replay slot may be free */
	nng_time wait_until; /* until then a replay waits for a slot; then it is answered busy */
	bool holds_replay;   /* WORKER_SEND: the reply holds a replay slot (ops_replay_done once sent) */
	struct rc_buf reply; /* kept between requests to avoid reallocating */
};

struct api {
	struct broker *br;
	nng_socket sock;
	char *url; /* the address bound (listener_url) */
	int nworkers;
	int replay_wait_ms;
	struct api_worker *workers;
};

static void api_worker_release(struct api_worker *w)
{
	if (w->holds_replay)
		ops_replay_done(w->api->br);
	w->holds_replay = false;
}

/* Handles w->req: sends the reply, or waits a little for a replay slot. */
static void api_worker_handle(struct api_worker *w)
{
	nng_msg *msg = w->req;
	bool may_wait = nng_clock() < w->wait_until;
	enum ops_outcome out = ops_handle(w->api->br, nng_msg_body(msg), nng_msg_len(msg), may_wait, &w->reply);

	if (out == OPS_WAIT) {
		w->state = WORKER_WAIT;
		nng_sleep_aio(API_REPLAY_POLL_MS, w->aio);
		return;
	}
	w->req = NULL;
	if (out == OPS_DONE_BUS) {
		/* answered on the bus: a REP context may take the next request without replying */
		nng_msg_free(msg);
		w->state = WORKER_RECV;
		nng_ctx_recv(w->ctx, w->aio);
		return;
	}
	w->holds_replay = out == OPS_DONE_REPLAY;
	if (w->reply.err) {
		rc_buf_fini(&w->reply);
		rc_buf_puts(&w->reply, "{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
	}
	nng_msg_clear(msg);
	if (nng_msg_append(msg, w->reply.data, w->reply.len) != 0) {
		nng_msg_free(msg);
		api_worker_release(w);
		w->state = WORKER_RECV;
		nng_ctx_recv(w->ctx, w->aio);
		return;
	}
	/* a huge reply buffer is not kept for the next request */
	if (w->reply.cap > (1u << 20))
		rc_buf_fini(&w->reply);
	nng_aio_set_msg(w->aio, msg);
	w->state = WORKER_SEND;
	nng_ctx_send(w->ctx, w->aio);
}

static void api_worker_cb(void *arg)
{
	struct api_worker *w = arg;
	int rv = nng_aio_result(w->aio);

	switch (w->state) {
	case WORKER_RECV:
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			return;
		if (rv != 0) {
			nng_ctx_recv(w->ctx, w->aio);
			return;
		}
		w->req = nng_aio_get_msg(w->aio);
		w->wait_until = nng_clock() + (nng_time)w->api->replay_wait_ms;
		api_worker_handle(w);
		return;
	case WORKER_WAIT:
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
			nng_msg_free(w->req);
			w->req = NULL;
			return;
		}
		api_worker_handle(w); /* the sleep is over */
		return;
	case WORKER_SEND:
		/* handed to the connection (or dropped): the answer no longer counts toward --max-replays */
		api_worker_release(w);
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(w->aio));
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
				return;
		}
		w->state = WORKER_RECV;
		nng_ctx_recv(w->ctx, w->aio);
		return;
	}
}

int api_start(const struct api_config *cfg, struct broker *br, struct api **out)
{
	struct api *a = calloc(1, sizeof(*a));
	int rv;

	if (a == NULL)
		return RC_ENOMEM;
	a->br = br;
	a->nworkers = cfg->workers > 0 ? cfg->workers : 1;
	a->replay_wait_ms = cfg->replay_wait_ms;
	a->workers = calloc((size_t)a->nworkers, sizeof(*a->workers));
	if (a->workers == NULL) {
		free(a);
		return RC_ENOMEM;
	}
	if ((rv = nng_rep0_open(&a->sock)) != 0) {
		rc_log_error("cannot open the api socket", "err=\"%s\"", nng_strerror(rv));
		goto out_free;
	}
	nng_socket_set_size(a->sock, NNG_OPT_RECVMAXSZ, cfg->max_request_bytes);
	for (int i = 0; i < a->nworkers; i++) {
		struct api_worker *w = &a->workers[i];
		w->api = a;
		rc_buf_init(&w->reply);
		if ((rv = nng_aio_alloc(&w->aio, api_worker_cb, w)) != 0 || (rv = nng_ctx_open(&w->ctx, a->sock)) != 0) {
			rc_log_error("cannot create an api context", "err=\"%s\"", nng_strerror(rv));
			goto out_close;
		}
	}
	if ((rv = listener_start(a->sock, cfg->url, &a->url)) != 0) {
		rc_log_error("cannot listen on the api address", "url=%s err=\"%s\"", cfg->url, nng_strerror(rv));
		goto out_close;
	}
	for (int i = 0; i < a->nworkers; i++) {
		a->workers[i].state = WORKER_RECV;
		nng_ctx_recv(a->workers[i].ctx, a->workers[i].aio);
	}
	*out = a;
	return RC_OK;

out_close:
	api_stop(a);
	return RC_EIO;
out_free:
	free(a->workers);
	free(a);
	return RC_EIO;
}

const char *api_url(const struct api *a)
{
	return a->url;
}

void api_stop(struct api *a)
{
	if (a == NULL)
		return;
	/* stop the aios first, so no callback runs while the socket goes away */
	for (int i = 0; i < a->nworkers; i++)
		if (a->workers[i].aio != NULL)
			nng_aio_stop(a->workers[i].aio);
	nng_close(a->sock);
	for (int i = 0; i < a->nworkers; i++) {
		struct api_worker *w = &a->workers[i];
		if (w->aio != NULL) {
			nng_ctx_close(w->ctx);
			nng_aio_free(w->aio);
		}
		if (w->req != NULL)
			nng_msg_free(w->req); /* a request that waited for a replay slot */
		rc_buf_fini(&w->reply);
	}
	free(a->workers);
	free(a->url);
	free(a);
}
