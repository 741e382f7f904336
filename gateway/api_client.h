/*
 * api_client.h - the gateway's client of the broker api (nng REQ).
 *
 * --broker-api takes one address or several (the brokers of one stream,
 * comma-separated), a REQ socket each. With several, the gateway chooses
 * the broker of each attempt: round-robin over those with a connection
 * up, passing over a suspect one (its last attempt went unanswered in the
 * last 5 s; cleared when it answers) while another is up. A call whose
 * broker fails (its last connection lost: every call pending on that
 * broker, waiting to be sent or for its answer, moves at once; or no answer
 * in time while another broker is up) is sent again, within its timeout,
 * to another broker when one is up: a first attempt waits
 * gw_api_set_retry_ms's time for its answer, a later one half of what is
 * left, the last all of it. Every
 * request the gateway sends must then be safe to repeat. Reads are; a
 * publish is when each of its events carries an idempotency key
 * (publish.c gives one to every event that has none when gw_api_brokers()
 * > 1). With one address a call is never sent again.
 * Calls run on nng contexts with aio: nothing blocks the loop. A call's
 * completion is handed back to the loop through an inbox and its callback
 * runs on the loop thread. When no connection to the broker is up, a call
 * fails at once (RC_EIO) instead of waiting for its timeout.
 */
#ifndef GW_API_CLIENT_H
#define GW_API_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gw_api;
struct gw_api_call;

/*
 * Called on the loop thread with a call's outcome: err is 0 with the reply
 * bytes (valid during the call), or RC_ETIMEDOUT (timeout_ms passed),
 * RC_EIO (broker unreachable, or the connection to it was lost), RC_ECLOSED
 * (gw_api_stop) or RC_ENOMEM. sent tells whether the request had left the
 * gateway (nng handed it to the connection to the broker) when it failed:
 * false, the broker never saw it; true, the broker may have acted on it
 * although no answer came. True whenever err is 0.
 */
typedef void (*gw_api_cb)(void *arg, int err, bool sent, const char *reply, size_t len);

/* Dials url, one address or a comma-separated list (reconnecting by itself). Returns 0, RC_EINVAL, RC_EIO or RC_ENOMEM. */
int gw_api_start(uv_loop_t *loop, const char *url, struct gw_api **out);

/*
 * Several brokers, before any call: a first attempt waits ms for its answer
 * while another broker is up, then goes to another (0, the default: half of
 * the time left, like later attempts). Loop thread.
 */
void gw_api_set_retry_ms(struct gw_api *a, int ms);

/* True while a connection to a broker api is up. Any thread. */
bool gw_api_connected(struct gw_api *a);
/* The number of broker addresses. NULL: 0. Any thread. */
unsigned gw_api_brokers(const struct gw_api *a);
/* True while a connection to address i is up. Any thread. */
bool gw_api_broker_connected(struct gw_api *a, unsigned i);
/* Calls sent again after their broker failed. Any thread. */
uint64_t gw_api_retries(struct gw_api *a);

/*
 * Sends req[0..len); cb runs exactly once, later, on the loop thread. The
 * request is sent and answered within timeout_ms in all (else RC_ETIMEDOUT);
 * with one broker address it is never re-sent (several: see the top). Returns 0 or an error (cb not called):
 * RC_EIO at once while the broker api is unreachable, RC_ECLOSED after
 * gw_api_stop, RC_ENOMEM.
 */
int gw_api_call(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg);
/* gw_api_call, and *call names it for gw_api_cancel (valid until cb has run). */
int gw_api_call_h(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg,
		  struct gw_api_call **call);
/*
 * Loop thread: the caller has its answer another way (a publish acknowledged
 * on the bus): the call stops waiting for the api's and is not sent again;
 * its cb still runs once, later (RC_ECLOSED, or the reply if it came first).
 */
void gw_api_cancel(struct gw_api_call *c);
/*
 * The same, but while the broker is unreachable the request waits (up to
 * timeout_ms) for it, and then up to timeout_ms for the answer.
 */
int gw_api_call_wait(struct gw_api *a, const char *req, size_t len, int timeout_ms, gw_api_cb cb, void *arg);

/*
 * Loop thread: fails the calls in flight with RC_ECLOSED (their callbacks run
 * now) and closes the loop's handle. NULL ok.
 */
void gw_api_stop(struct gw_api *a);

/*
 * After the loop has ended, any thread: closes the socket and frees a. NULL ok.
 * nng 1.5.2's nng_close can block for ever (main.c calls this with a deadline).
 */
void gw_api_free(struct gw_api *a);

#endif
