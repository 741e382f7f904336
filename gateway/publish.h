/*
 * publish.h - POST /api/v1/events: checks the body, forwards it to the broker
 * api without blocking the loop, and answers 201 with the ids once the broker
 * has accepted (400/401/413/415/503 per SPEC; 504 publish_outcome_unknown
 * when the request went out but no answer came). Loop thread only.
 */
#ifndef GW_PUBLISH_H
#define GW_PUBLISH_H

#include <stdbool.h>
#include <stdint.h>

struct gw_conn;
struct rc_ack;
struct gw_req;

struct gw;

/* Sets up the gateway's publish queue (gw->publisher). Returns 0 or RC_ENOMEM. */
int gw_publisher_init(struct gw *gw);

/*
 * Tears it down: the queued POSTs are answered 503 (not sent), later ones
 * too. The POSTs of the broker request in flight are answered when the api
 * calls back, at the latest in gw_api_stop, which may come before or after
 * this. NULL publisher ok.
 */
void gw_publisher_fini(struct gw *gw);

/* Handles POST /api/v1/events on c. */
void gw_publish(struct gw_conn *c, struct gw_req *req);

/*
 * The checks a publish passes before its body matters: the token (401) and
 * the Content-Type (415). false: refused, and answered.
 */
bool gw_publish_admit(struct gw_conn *c, const struct gw_req *req);

/*
 * An acknowledgement read from a bus index of the given epoch (frame.h):
 * when it names this loop's broker request in flight, its POSTs are
 * answered 201 with its ids, and the api call stops waiting for a reply.
 * Others are ignored (another gateway's, or one answered already).
 */
void gw_publish_ack(struct gw *gw, uint64_t epoch, const struct rc_ack *a);

#endif
