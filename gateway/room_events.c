#include "room_events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "auth.h"
#include "auth_url.h"
#include "buf.h"
#include "conn.h"
#include "error.h"
#include "event.h"
#include "frame.h"
#include "gateway.h"
#include "grant.h"
#include "id.h"
#include "query.h"
#include "response.h"
#include "rewind.h"

#define ROOM_EVENTS_NOT_FOUND "no such room, or the credential does not grant it"

/* A history request in flight; its slot outlives the connection if the client leaves. */
struct room_call {
	struct gw *gw;
	struct gw_slot *slot;
	bool newest_first;
	bool close;
};

static void room_events_error(struct room_call *rc, int status, const char *code, const char *message)
{
	struct rc_buf b;

	rc_buf_init(&b);
	gw_response_error_json(&b, code, message);
	gw_slot_respond(rc->gw, rc->slot, status, "application/json", status == 503 ? "Retry-After: 1\r\n" : NULL,
			b.data ? b.data : "", b.len, rc->close || status == 503);
	rc_buf_fini(&b);
}

/* The broker's error answer: its code and message, or a default. */
static void room_events_refused(struct room_call *rc, const char *reply, size_t len)
{
	static const char hu[] = "\"history_unavailable\"", em[] = "\"epoch_mismatch\"";
	bool gone = false;

	for (size_t i = 0; i + sizeof(em) - 1 <= len && !gone; i++)
		gone = (i + sizeof(hu) - 1 <= len && memcmp(reply + i, hu, sizeof(hu) - 1) == 0) ||
		       memcmp(reply + i, em, sizeof(em) - 1) == 0;
	if (gone)
		room_events_error(rc, 410, "history_unavailable",
				  "the events at this cursor are no longer retained, or it is from another epoch");
	else
		room_events_error(rc, 503, "broker_unavailable", "the broker could not answer; ask again");
}

/* Loop thread: the broker answered (or did not). */
static void room_events_done(void *arg, int err, bool sent, const char *reply, size_t len)
{
	struct room_call *rc = arg;
	struct rc_frame_reader r;
	struct rc_frame_event ev;
	struct rc_frame_event *evs = NULL;
	struct rc_buf b;
	size_t n = 0;
	char id[RC_ID_MAX];

	(void)sent; /* a replay only reads */
	if (err != RC_OK) {
		room_events_error(rc, 503, "broker_unavailable", "the broker is unreachable; ask again");
		goto out;
	}
	if (len < 4 || memcmp(reply, "RCF1", 4) != 0 || rc_frame_reader_init(&r, reply, len) != RC_OK) {
		room_events_refused(rc, reply, len);
		goto out;
	}
	evs = calloc(r.hdr.count ? r.hdr.count : 1, sizeof(*evs));
	if (evs == NULL) {
		room_events_error(rc, 503, "out_of_memory", "the gateway is out of memory");
		goto out;
	}
	while (n < r.hdr.count && rc_frame_reader_next(&r, &evs[n]))
		n++;
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"events\":[");
	/* the frame is oldest first: newest first reads it backwards */
	for (size_t i = 0; i < n; i++) {
		ev = evs[rc->newest_first ? n - 1 - i : i];
		rc_id_format(id, r.hdr.epoch, ev.gseq);
		rc_buf_puts(&b, i ? ",{\"id\":\"" : "{\"id\":\"");
		rc_buf_puts(&b, id);
		rc_buf_puts(&b, "\",\"event\":");
		rc_buf_append(&b, ev.json, ev.json_len);
		rc_buf_append(&b, "}", 1);
	}
	rc_buf_puts(&b, "],\"next\":");
	if ((r.hdr.flags & RC_FRAME_MORE) && n > 0) {
		/* the last event of the page: the next page is before (newest first) or after it */
		rc_id_format(id, r.hdr.epoch, evs[rc->newest_first ? 0 : n - 1].gseq);
		rc_buf_printf(&b, "\"%s\"}\n", id);
	} else {
		rc_buf_puts(&b, "null}\n");
	}
	if (b.err) {
		room_events_error(rc, 503, "out_of_memory", "the gateway is out of memory");
	} else {
		gw_slot_respond(rc->gw, rc->slot, 200, "application/json", "Cache-Control: no-store\r\n", b.data,
				b.len, rc->close);
	}
	rc_buf_fini(&b);
out:
	free(evs);
	free(rc);
}

/* Reads the query into p; false after answering 400. */
static bool room_events_params(struct gw_conn *c, const char *query, size_t qlen, struct gw_hparams *p)
{
	struct rc_buf key, val;
	struct gw_query q;
	char why[128];
	bool ok = true;
	int rv;

	rc_buf_init(&key);
	rc_buf_init(&val);
	gw_hparams_init(p);
	gw_query_init(&q, query, qlen);
	while (ok && (rv = gw_query_next(&q, &key, &val)) == 1) {
		if (gw_hparams_set(p, key.data, key.len, val.data, val.len, why, sizeof(why)) != RC_OK) {
			gw_conn_error(c, 400, "invalid_parameter", why, NULL);
			ok = false;
		}
	}
	if (ok && rv != 0) {
		gw_conn_error(c, 400, "bad_query", "the query string has bad percent-encoding", NULL);
		ok = false;
	}
	gw_hparams_finish(p);
	rc_buf_fini(&key);
	rc_buf_fini(&val);
	return ok;
}

static void room_events_allowed(struct gw_conn *c, struct gw_req *req, const struct rc_grant *g);

/* allowed: --auth url said yes already (url_grant: its grant, NULL: the room asked). */
static void room_events_run(struct gw_conn *c, struct gw_req *req, const char *room, size_t room_len,
			    const char *query, size_t qlen, bool allowed, const struct rc_grant *url_grant)
{
	struct gw *gw = c->gw;
	struct rc_grant *grant = NULL;
	struct room_call *rc = NULL;
	struct gw_hparams p;
	struct rc_buf b;
	int rv;

	rc_buf_init(&b);
	if (!room_events_params(c, query, qlen, &p))
		goto out;
	if (gw->opt.jwt != NULL) {
		if (!gw_auth_request(c, req, query, qlen, true, &grant))
			goto out;
		if (!rc_room_valid(room, room_len) || !rc_grant_can_read(grant, room, room_len)) {
			/* the same answer for a room that is not granted and one that is not a room */
			gw->m.auth_forbidden++;
			gw_conn_error(c, 404, "not_found", ROOM_EVENTS_NOT_FOUND, NULL);
			goto out;
		}
	} else if (!rc_room_valid(room, room_len)) {
		gw_conn_error(c, 404, "not_found", ROOM_EVENTS_NOT_FOUND, NULL);
		goto out;
	} else if (gw->opt.authurl != NULL) {
		if (!allowed && gw_authurl_check(c, req, GW_AUTHURL_HISTORY, &room, &room_len, 1, room_events_allowed,
						 &url_grant) != GW_AUTHURL_GO)
			goto out;
		if (url_grant != NULL && !rc_grant_can_read(url_grant, room, room_len)) {
			gw->m.auth_forbidden++;
			gw_conn_error(c, 404, "not_found", ROOM_EVENTS_NOT_FOUND, NULL);
			goto out;
		}
	}
	rc_buf_puts(&b, "{\"op\":\"replay\",\"rooms\":[");
	rc_buf_json_str(&b, room, room_len);
	rc_buf_printf(&b, "],\"global\":false,\"limit\":%" PRIu32 ",\"max_bytes\":%" PRId64 ",\"format\":\"frame\"",
		      p.limit, gw->opt.max_response_buffer);
	if (p.before[0] != '\0')
		rc_buf_printf(&b, ",\"before\":\"%s\"", p.before);
	if (p.after[0] != '\0')
		rc_buf_printf(&b, ",\"after\":\"%s\"", p.after);
	rc_buf_printf(&b, ",\"order\":\"%s\"}", p.newest_first ? "desc" : "asc");
	rc = calloc(1, sizeof(*rc));
	if (b.err || rc == NULL) {
		gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
		goto out;
	}
	rc->gw = gw;
	rc->newest_first = p.newest_first;
	rc->close = !req->keep_alive;
	rc->slot = gw_conn_slot(c);
	if (rc->slot == NULL) {
		gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
		goto out;
	}
	rv = gw_api_call(gw->api, b.data, b.len, (int)gw->opt.publish_timeout_ms, room_events_done, rc);
	if (rv != RC_OK)
		room_events_done(rc, rv, false, NULL, 0);
	rc = NULL; /* answered, or the callback frees it */
out:
	free(rc);
	rc_grant_free(grant);
	rc_buf_fini(&b);
}

void gw_room_events(struct gw_conn *c, struct gw_req *req, const char *room, size_t room_len, const char *query,
		    size_t qlen)
{
	room_events_run(c, req, room, room_len, query, qlen, false, NULL);
}

/* --auth url allowed a held history request: its room and query are where the router found them. */
static void room_events_allowed(struct gw_conn *c, struct gw_req *req, const struct rc_grant *g)
{
	const char *url = req->url.data ? req->url.data : "";
	const char *qmark = memchr(url, '?', req->url.len);
	size_t plen = qmark ? (size_t)(qmark - url) : req->url.len;

	/* the router matched /api/v1/rooms/{room_id}/events: 14 bytes before the room, 7 after */
	room_events_run(c, req, url + 14, plen - 21, qmark ? qmark + 1 : "", qmark ? req->url.len - plen - 1 : 0, true,
			g);
}
