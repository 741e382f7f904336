#include "api.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdlib.h>

#include "error.h"
#include "listener.h"
#include "log.h"
#include "ops.h"

enum worker_state { WORKER_RECV, WORKER_SEND };

struct api_worker {
	struct api *api;
	nng_aio *aio;
	nng_ctx ctx;
	enum worker_state state;
	struct rc_buf reply; /* kept between requests to avoid reallocating */
};

struct api {
	struct broker *br;
	nng_socket sock;
	char *url; /* the address bound (listener_url) */
	int nworkers;
	struct api_worker *workers;
};

static void api_worker_cb(void *arg)
{
	struct api_worker *w = arg;
	nng_msg *msg;
	int rv = nng_aio_result(w->aio);

	switch (w->state) {
	case WORKER_RECV:
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			return;
		if (rv != 0) {
			nng_ctx_recv(w->ctx, w->aio);
			return;
		}
		msg = nng_aio_get_msg(w->aio);
		ops_handle(w->api->br, nng_msg_body(msg), nng_msg_len(msg), &w->reply);
		if (w->reply.err) {
			rc_buf_fini(&w->reply);
			rc_buf_puts(&w->reply,
				    "{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
		}
		nng_msg_clear(msg);
		if (nng_msg_append(msg, w->reply.data, w->reply.len) != 0) {
			nng_msg_free(msg);
			nng_ctx_recv(w->ctx, w->aio);
			return;
		}
		/* a huge reply buffer is not kept for the next request */
		if (w->reply.cap > (1u << 20))
			rc_buf_fini(&w->reply);
		nng_aio_set_msg(w->aio, msg);
		w->state = WORKER_SEND;
		nng_ctx_send(w->ctx, w->aio);
		return;
	case WORKER_SEND:
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
		rc_buf_fini(&w->reply);
	}
	free(a->workers);
	free(a->url);
	free(a);
}
