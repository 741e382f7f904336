/*
 * router.h - maps a parsed request to its handler: streams and publishing on
 * /api/v1/events (alias /api/v1/im/events), /healthz, /readyz, /metrics, CORS
 * preflight, static files, and JSON errors for everything else.
 * Loop thread only.
 */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include <stdbool.h>

struct gw_conn;
struct gw_req;

/* Handles req on c: answers it, starts a stream, or forwards a publish. */
void gw_route(struct gw_conn *c, struct gw_req *req);

/* Before the body of a request sent with Expect: 100-continue: see gw_expect_fn. */
bool gw_route_expect(struct gw_conn *c, const struct gw_req *req);

#endif
