/*
 * api.h - the broker api: an nng REP socket served by several contexts.
 *
 * Each context is a small state machine (receive, handle, send) driven by its
 * aio callback on nng's task threads, so `workers` requests are handled
 * concurrently. Handlers never block on the network. A replay that finds
 * br->max_replays answers in flight keeps its context and looks again every
 * few milliseconds (an nng sleep, not a blocked thread) up to replay_wait_ms,
 * then is answered `busy`; an answer counts as in flight until its context's
 * send completes.
 */
#ifndef RC_API_H
#define RC_API_H

#include <stddef.h>

#include "broker.h"

struct api;

struct api_config {
	const char *url;
	int workers;              /* concurrent contexts */
	size_t max_request_bytes; /* larger requests drop the connection (nng) */
	int replay_wait_ms;       /* a replay beyond br->max_replays waits this long for a slot, then gets busy */
};

/* Listens and starts the workers. Returns 0, RC_EIO or RC_ENOMEM. */
int api_start(const struct api_config *cfg, struct broker *br, struct api **out);

/* The address the api listens on: cfg->url with the port bound (tcp://127.0.0.1:0 -> the port picked). */
const char *api_url(const struct api *a);

/* Stops the workers, closes the socket and frees a. NULL ok. */
void api_stop(struct api *a);

#endif
