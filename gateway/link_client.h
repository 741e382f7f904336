/*
 * link_client.h - a gateway loop's link to the broker (--broker-link).
 *
 * One TCP connection per gateway loop, on the loop itself (uv_tcp), to the
 * broker's --link address; frames are common/link_frame.h's. It carries the
 * two messages of the publish path without nng's threads: the loop's
 * publish requests ('Q', answered by an 'R' or by the bus ACKS block) and
 * every bus message of the broker ('B', handed to the same consumer as the
 * nng bus, source 0, on the loop: no inbox, no wake-up). The other api ops
 * (replay, acks, stats) stay on the nng api (api_client.h).
 *
 * The connection is up once the broker's first frame, the hello ('H',
 * RC_LINK_HELLO), came; anything else first, a bad or oversize frame, or a
 * frame a broker never sends ('Q') closes it ("not a roomcast link" or the
 * reason, logged), and it is dialed again 100 ms later, the wait doubling
 * to 1 s while it fails. Bus messages lost meanwhile show as a hole in the
 * flush sequence, which the repair stage fills by replay.
 *
 * Calls: gw_link_call writes the request at once (one write(2) while
 * nothing is queued); its callback (api_client.h's gw_api_cb) runs with the
 * 'R' of the same id, or RC_ETIMEDOUT (a deadline on the loop's timer
 * queues, no timer per call), or RC_EIO when the connection is lost (sent:
 * whether its bytes had been handed to the kernel), or RC_ECLOSED
 * (gw_link_stop). gw_link_cancel ends a call at once (its callback runs
 * then, without a syscall).
 *
 * Loop thread only.
 */
#ifndef GW_LINK_CLIENT_H
#define GW_LINK_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api_client.h" /* gw_api_cb */
#include "bus_client.h" /* gw_bus_msg_fn */

struct gw_timer;
struct gw_link;
struct gw_link_call;

/* The largest frame payload taken from the broker (a bus message); a longer frame closes the connection. */
#define GW_LINK_MAX_FRAME (64u * 1024 * 1024)

struct gw_link_config {
	const char *url;        /* tcp://host:port (a name is resolved at each connect) */
	uint32_t max_frame;     /* 0: GW_LINK_MAX_FRAME */
	struct gw_timer *timer; /* the loop's: call deadlines */
	gw_bus_msg_fn fn;       /* each bus message, source 0; the callee owns msg */
	void *arg;
};

/* Starts dialing cfg->url. Returns 0, RC_EINVAL (not tcp://host:port) or RC_ENOMEM. */
int gw_link_start(uv_loop_t *loop, const struct gw_link_config *cfg, struct gw_link **out);

/* True while the connection is up (the hello came). NULL: false. */
bool gw_link_connected(const struct gw_link *l);
/* Connections that reached the hello since the start. NULL: 0. */
uint64_t gw_link_connects(const struct gw_link *l);

/*
 * Sends req[0..len) as a request frame; cb runs exactly once, later (or in
 * gw_link_cancel), with the reply or a failure (see the top). Returns 0 or
 * an error, cb not called: RC_EIO while the link is down (nothing sent),
 * RC_ECLOSED after gw_link_stop, RC_ENOMEM, RC_ETOOBIG (len past 4 GiB).
 * *call (may be NULL) names the call for gw_link_cancel until cb has run.
 */
int gw_link_call(struct gw_link *l, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg,
		 struct gw_link_call **call);

/*
 * The caller has its answer another way (a publish acknowledged on the
 * bus): the call stops waiting; its cb runs now with RC_ECLOSED, sent true.
 * A reply that comes later is ignored. NULL ok.
 */
void gw_link_cancel(struct gw_link_call *c);

/*
 * Fails the calls in flight with RC_ECLOSED (their callbacks run now),
 * stops reading and closes the connection; l is freed once its handles are
 * closed (the loop runs their callbacks). NULL ok.
 */
void gw_link_stop(struct gw_link *l);

#endif
