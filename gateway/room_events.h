/*
 * room_events.h - the history API: GET /api/v1/rooms/{room_id}/events pages
 * through a room's retained events as JSON, served by the broker's replay.
 * Loop thread only.
 */
#ifndef GW_ROOM_EVENTS_H
#define GW_ROOM_EVENTS_H

#include <stddef.h>

struct gw_conn;
struct gw_req;

/*
 * Answers GET for room[0..room_len) (as the path gave it: checked here) with
 * query[0..qlen): {"events":[{"id":…,"event":{…}},…],"next":<id or null>}.
 * 400 invalid_parameter names a bad before/after/limit/order; with --auth
 * jwt, 401 without a valid token and 404 for a room the token does not
 * grant (as for a room id that is not one), never saying whether it exists.
 * The answer comes later (a response slot), or at once on an error.
 */
void gw_room_events(struct gw_conn *c, struct gw_req *req, const char *room, size_t room_len, const char *query,
		    size_t qlen);

#endif
