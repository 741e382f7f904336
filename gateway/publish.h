/*
 * publish.h - POST /api/v1/events: checks the body, forwards it to the broker
 * api without blocking the loop, and answers 201 with the ids once the broker
 * has accepted (400/401/413/415/503 per SPEC). Loop thread only.
 */
#ifndef GW_PUBLISH_H
#define GW_PUBLISH_H

struct gw_conn;
struct gw_req;

void gw_publish(struct gw_conn *c, struct gw_req *req);

#endif
