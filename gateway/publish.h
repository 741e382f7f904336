/*
 * publish.h - POST /api/v1/events: checks the body, forwards it to the broker
 * api without blocking the loop, and answers 201 with the ids once the broker
 * has accepted (400/401/413/415/503 per SPEC; 504 publish_outcome_unknown
 * when the request went out but no answer came). Loop thread only.
 */
#ifndef GW_PUBLISH_H
#define GW_PUBLISH_H

struct gw_conn;
struct gw_req;

struct gw;

/* Sets up / tears down the gateway's publish queue (fini answers what is queued with 503). */
int gw_publisher_init(struct gw *gw);
void gw_publisher_fini(struct gw *gw);

/* Handles POST /api/v1/events on c. */
void gw_publish(struct gw_conn *c, struct gw_req *req);

#endif
