/*
 * auth_url.h - --auth url: the application's URL decides who may read a
 * room (and, with --auth-publish, who may publish), the nchan / nginx
 * auth_request way.
 *
 * Before a stream opens (and before a history page or a checked POST), the
 * request is put aside (gw_conn_hold) and the gateway sends the application
 * a GET with the client's Cookie and Authorization, its method, URI and
 * rooms (auth_url_http.h). A 2xx allows, its body may narrow the rooms (a
 * grant, common/grant.h); a 401 or 403 is passed on; any other answer, a
 * refused connection, an answer over the limits or none within
 * --auth-timeout-ms refuses with 503 auth_unavailable. Never anonymous.
 *
 * Each check is one TCP connection of its own (Connection: close) on the
 * loop: connect, write, read with http-parser, all non-blocking, bounded by
 * one deadline queue entry (gw_tq) covering connect and answer. A client
 * that leaves meanwhile leaves the check running to its end (at most the
 * timeout); the answer then finds no connection and frees the request.
 * Answers are cached per credential (auth_cache.h) for --auth-cache-ms.
 *
 * The host of --auth-url is resolved once, at start (main thread). Every
 * loop has its own checks and cache (gw->authurl); the parsed URL and
 * address are shared, read-only. Loop thread only, except
 * gw_authurl_config_new/free (main, before and after the workers).
 */
#ifndef GW_AUTH_URL_H
#define GW_AUTH_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "auth_url_http.h"

struct gw;
struct gw_conn;
struct gw_req;
struct gw_options;
struct rc_grant;

/* The application's URL and its address, shared by the loops (read-only). */
struct gw_authurl_config {
	struct gw_authurl_target target;
	struct sockaddr_storage addr;
	char addr_name[80]; /* for the logs: ip:port */
};

/*
 * Parses --auth-url (http:// only) and resolves its host (blocking: main
 * thread, at start). RC_OK with *out, or an error printed on stderr.
 */
int gw_authurl_config_new(const struct gw_options *o, struct gw_authurl_config **out);

/* Frees a config (NULL: nothing). */
void gw_authurl_config_free(struct gw_authurl_config *cfg);

/* Per loop: the checks' queue and the cache. Nothing without --auth url. RC_OK or RC_ENOMEM. */
int gw_authurl_loop_start(struct gw *gw);

/*
 * The loop stops (gw_stop, after its connections were closed): every check
 * in flight ends (its socket closes, its request is freed).
 */
void gw_authurl_loop_stop(struct gw *gw);

/* Frees what the loop held (after its loop ended). */
void gw_authurl_loop_fini(struct gw *gw);

/* What is being authorized: it decides what a refusal looks like. */
enum gw_authurl_kind {
	GW_AUTHURL_STREAM,  /* 403 forbidden naming the rooms */
	GW_AUTHURL_HISTORY, /* a refused room is 404 not_found, as with --auth jwt */
	GW_AUTHURL_PUBLISH, /* 403 forbidden; no rooms are sent */
};

enum gw_authurl_result {
	GW_AUTHURL_GO,   /* allowed now (a cached answer): *g as below, valid until the caller returns */
	GW_AUTHURL_WAIT, /* the request is held: fn gets it if the application allows it */
	GW_AUTHURL_DONE, /* refused (or out of memory) and answered */
};

/*
 * Called with a request the application allowed: g the grant of its
 * answer's body (NULL: what was asked is allowed). g is valid during the
 * call only. The handler then goes on as it would have, without asking again.
 */
typedef void (*gw_authurl_fn)(struct gw_conn *c, struct gw_req *req, const struct rc_grant *g);

/*
 * Asks whether c's current request req (during on_request) may have rooms
 * (nrooms 0: the firehose for a stream, none for a POST). GO with *g (NULL:
 * all that was asked), WAIT: req was put aside (the caller returns without
 * touching it; fn gets it later, unless it was refused, answered, or the
 * client left), DONE: answered.
 */
enum gw_authurl_result gw_authurl_check(struct gw_conn *c, struct gw_req *req, enum gw_authurl_kind kind,
					const char *const *rooms, const size_t *lens, size_t nrooms, gw_authurl_fn fn,
					const struct rc_grant **g);

#endif
