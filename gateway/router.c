#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_client.h"
#include "auth.h"
#include "auth_url.h"
#include "broker_stats.h"
#include "bus_client.h"
#include "conn.h"
#include "error.h"
#include "event.h"
#include "gateway.h"
#include "grant.h"
#include "publish.h"
#include "query.h"
#include "rewind.h"
#include "room_events.h"
#include "static.h"
#include "stream.h"
#include "workers.h"

static bool path_is(const char *path, size_t len, const char *want)
{
	return strlen(want) == len && memcmp(path, want, len) == 0;
}

static void route_stream_allowed(struct gw_conn *c, struct gw_req *req, const struct rc_grant *g);

/*
 * Collects room_id values (repeated or comma-separated) and last_event_id.
 * allowed: --auth url said yes already (url_grant: its grant, NULL: all that
 * was asked); the query is read again the same way.
 */
static void route_stream(struct gw_conn *c, struct gw_req *req, const char *query, size_t qlen, bool allowed,
			 const struct rc_grant *url_grant)
{
	struct gw *gw = c->gw;
	size_t max = (size_t)gw->opt.max_rooms_per_stream;
	struct rc_buf key, val, names, lei;
	size_t *offs = calloc(max + 1, sizeof(size_t)), *lens = calloc(max + 1, sizeof(size_t));
	const char **rooms = calloc(max + 1, sizeof(char *));
	struct gw_stream_req sr = { 0 };
	struct rc_grant *grant = NULL;
	struct rc_grant_stamp stamp;
	struct gw_query q;
	struct gw_stream *s;
	size_t n = 0;
	int rv;

	rc_buf_init(&key);
	rc_buf_init(&val);
	rc_buf_init(&names);
	rc_buf_init(&lei);
	if (offs == NULL || lens == NULL || rooms == NULL) {
		gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
		goto out;
	}
	gw_query_init(&q, query, qlen);
	while ((rv = gw_query_next(&q, &key, &val)) == 1) {
		/* by length too: a decoded %00 must not make "room_id%00x" a room_id */
		if (key.len == strlen("last_event_id") && strcmp(key.data, "last_event_id") == 0) {
			lei.len = 0;
			rc_buf_append(&lei, val.data, val.len);
			continue;
		}
		if (key.len == strlen("rewind") && strcmp(key.data, "rewind") == 0) {
			char why[128];
			if (gw_rewind_parse(val.data, val.len, (uint32_t)gw->opt.max_rewind, &sr.rewind, why,
					    sizeof(why)) != RC_OK) {
				gw_conn_error(c, 400, "invalid_parameter", why, NULL);
				goto out;
			}
			continue;
		}
		if (key.len != strlen("room_id") || strcmp(key.data, "room_id") != 0)
			continue; /* unknown parameters are ignored, as other SSE servers do */
		for (const char *p = val.data, *end = val.data + val.len; p <= end;) {
			const char *comma = memchr(p, ',', (size_t)(end - p));
			size_t len = (size_t)((comma ? comma : end) - p);
			bool dup = false;
			if (!rc_room_valid(p, len)) {
				gw_conn_error(c, 400, "invalid_room_id",
					      "room_id must be 1-128 bytes of [A-Za-z0-9._:@-], separated by commas", NULL);
				goto out;
			}
			for (size_t i = 0; i < n; i++)
				dup |= lens[i] == len && memcmp(names.data + offs[i], p, len) == 0;
			if (!dup) {
				if (n == max) {
					char msg[96];
					snprintf(msg, sizeof(msg), "room_id: at most %zu rooms per stream", max);
					gw_conn_error(c, 400, "too_many_rooms", msg, NULL);
					goto out;
				}
				offs[n] = names.len;
				lens[n++] = len;
				rc_buf_append(&names, p, len);
			}
			if (comma == NULL)
				break;
			p = comma + 1;
		}
	}
	if (rv != 0) {
		gw_conn_error(c, 400, "bad_query", "the query string has bad percent-encoding", NULL);
		goto out;
	}
	if (n == 0 && gw->opt.no_firehose) {
		gw_conn_error(c, 403, "firehose_disabled",
			      "this gateway needs a room_id filter (it runs with --no-firehose)", NULL);
		goto out;
	}
	if (names.err || lei.err) {
		gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		rooms[i] = names.data + offs[i];
	if (gw->opt.jwt != NULL) {
		/*
		 * The stream's block, taken before the verification's temporaries
		 * and given back right before gw_stream_open asks for the same
		 * size: malloc hands it back (tcache is LIFO), so the long-lived
		 * stream does not land among the holes those temporaries leave
		 * (that fragmentation cost 0.35 KiB per stream).
		 */
		void *spot = malloc(gw_stream_size(n, true));
		/* an empty asm that uses spot: else the compiler drops a malloc whose block is only freed */
		__asm__ volatile("" : : "r"(spot) : "memory");
		bool ok = gw_auth_request(c, req, query, qlen, true, &grant);
		free(spot);
		if (!ok)
			goto out;
	} else if (gw->opt.authurl != NULL && !allowed) {
		/* the application decides; a cached yes goes on at once, else the request waits for it */
		if (gw_authurl_check(c, req, GW_AUTHURL_STREAM, rooms, lens, n, route_stream_allowed, &url_grant) !=
		    GW_AUTHURL_GO)
			goto out;
	}
	if (grant != NULL) {
		if (!gw_auth_rooms(c, grant, rooms, lens, n))
			goto out;
		rc_grant_stamp(grant, &stamp);
		sr.stamp = &stamp;
	} else if (url_grant != NULL) {
		/* the application's answer named the rooms: each asked must be among them */
		if (!gw_auth_rooms(c, url_grant, rooms, lens, n))
			goto out;
		if (url_grant->sub_hash != 0) {
			/* it named a subject: roomcast revoke --sub finds the stream (no expiry) */
			if (gw_auth_revoked(c, url_grant))
				goto out;
			rc_grant_stamp(url_grant, &stamp);
			sr.stamp = &stamp;
		}
	}
	sr.rooms = rooms;
	sr.room_lens = lens;
	sr.nrooms = n;
	/* the header wins over the query parameter */
	if (req->last_event_id.len > 0) {
		sr.last_event_id = req->last_event_id.data;
		sr.last_event_id_len = req->last_event_id.len;
	} else if (lei.len > 0) {
		sr.last_event_id = lei.data;
		sr.last_event_id_len = lei.len;
	}
	if (gw_stream_open(gw, c, &sr, &s) != RC_OK)
		gw_conn_error(c, 503, "out_of_memory", "the gateway could not open the stream", NULL);
out:
	rc_grant_free(grant);
	rc_buf_fini(&key);
	rc_buf_fini(&val);
	rc_buf_fini(&names);
	rc_buf_fini(&lei);
	free(offs);
	free(lens);
	free(rooms);
}

/* The path and query of req's target. */
static void route_split(const struct gw_req *req, const char **url, size_t *plen, const char **query, size_t *qlen)
{
	const char *u = req->url.data ? req->url.data : "";
	const char *qmark = memchr(u, '?', req->url.len);

	*url = u;
	*plen = qmark ? (size_t)(qmark - u) : req->url.len;
	*query = qmark ? qmark + 1 : "";
	*qlen = qmark ? req->url.len - *plen - 1 : 0;
}

/* --auth url allowed a held stream request: it opens now. */
static void route_stream_allowed(struct gw_conn *c, struct gw_req *req, const struct rc_grant *g)
{
	const char *url, *query;
	size_t plen, qlen;

	route_split(req, &url, &plen, &query, &qlen);
	route_stream(c, req, query, qlen, true, g);
}

static void route_preflight(struct gw_conn *c)
{
	static const char hdrs[] =
		"Allow: GET, POST, OPTIONS\r\n"
		"Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
		"Access-Control-Allow-Headers: Content-Type, Authorization, Last-Event-ID, Idempotency-Key\r\n"
		"Access-Control-Max-Age: 600\r\n";
	gw_conn_respond(c, 204, NULL, hdrs, "", 0, false);
}

static void route_metrics(struct gw_conn *c)
{
	struct gw_metrics total; /* with --workers, every loop's counters */
	struct rc_buf b;

	gw_loop_sample(c->gw); /* counted on nng's threads */
	gw_workers_sum(c->gw->workers, c->gw->worker, &c->gw->m, &total);
	rc_buf_init(&b);
	gw_metrics_render(&total, &b);
	gw_broker_stats_render(c->gw->broker_stats, uv_hrtime(), &b);
	gw_conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.data ? b.data : "", b.len, false);
	rc_buf_fini(&b);
}

static void route_readyz(struct gw_conn *c)
{
	struct gw *gw = c->gw;
	/* a bus counts once its first message told where the sequence is: streams start there; one broker of several is enough */
	bool bus = gw_loop_bus_any(gw) && gw->hub.epoch != 0, api = gw_api_connected(gw->api);
	char body[128];
	int n = snprintf(body, sizeof(body), "{\"ready\":%s,\"broker_bus\":%s,\"broker_api\":%s}\n",
			 bus && api ? "true" : "false", bus ? "true" : "false", api ? "true" : "false");

	gw_conn_respond(c, bus && api ? 200 : 503, "application/json", NULL, body, (size_t)n, false);
}

/* One entry of --allowed-hosts against a Host header whose name is host[0..name_len). */
static bool host_entry_matches(const char *e, size_t n, const char *host, size_t len, size_t name_len)
{
	if (n == 0)
		return false;
	if (n > 2 && e[0] == '*' && e[1] == '.') /* *.example.com: any subdomain, any port */
		return name_len > n - 1 && strncasecmp(host + name_len - (n - 1), e + 1, n - 1) == 0;
	if (e[n - 1] != ']' && memchr(e, ':', n) != NULL && e[0] != '[') /* name:port: exactly */
		return n == len && strncasecmp(e, host, n) == 0;
	if (e[0] == '[' && memchr(e, ']', n) != NULL && e[n - 1] != ']') /* [v6]:port: exactly */
		return n == len && strncasecmp(e, host, n) == 0;
	return n == name_len && strncasecmp(e, host, n) == 0; /* a name: any port */
}

/*
 * Whether host[0..len) (a Host header: name, name:port or [v6]:port) is one
 * of --allowed-hosts: comma-separated names, each matching any port, or
 * name:port matching that port only, or *.suffix matching any subdomain.
 * Names compare without case.
 */
static bool host_listed(const char *list, const char *host, size_t len)
{
	const char *colon = NULL;
	size_t name_len;

	/* the port starts at the last ':' unless that is inside [v6] */
	for (size_t i = len; i-- > 0;) {
		if (host[i] == ']')
			break;
		if (host[i] == ':') {
			colon = host + i;
			break;
		}
	}
	name_len = colon ? (size_t)(colon - host) : len;
	for (const char *p = list; *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		while (n > 0 && *p == ' ') {
			p++;
			n--;
		}
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (host_entry_matches(p, n, host, len, name_len))
			return true;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return false;
}

/* --allowed-hosts: false (and answered 403) when the request names another host. */
static bool route_host_ok(struct gw_conn *c, const struct gw_req *req)
{
	const char *list = c->gw->opt.allowed_hosts;

	if (list == NULL || (req->host.len > 0 && host_listed(list, req->host.data, req->host.len)))
		return true;
	c->gw->m.hosts_refused++;
	gw_conn_error(c, 403, "host_not_allowed", "the Host header names a host this gateway does not serve (--allowed-hosts)",
		      NULL);
	return false;
}

bool gw_route_expect(struct gw_conn *c, const struct gw_req *req)
{
	const char *url = req->url.data ? req->url.data : "";
	const char *qmark = memchr(url, '?', req->url.len);
	size_t plen = qmark ? (size_t)(qmark - url) : req->url.len;

	if (!route_host_ok(c, req))
		return false;

	/* a publish that would be refused is refused before its body comes; the rest are read */
	if (req->method == HTTP_POST && (path_is(url, plen, "/api/v1/events") || path_is(url, plen, "/api/v1/im/events")))
		return gw_publish_admit(c, req);
	return true;
}

void gw_route(struct gw_conn *c, struct gw_req *req)
{
	const char *url, *query;
	size_t plen, qlen;
	enum http_method m = req->method;

	route_split(req, &url, &plen, &query, &qlen);

	/* probes name the address they reach, whatever the browsers' hosts are */
	if (!path_is(url, plen, "/healthz") && !path_is(url, plen, "/readyz") && !route_host_ok(c, req))
		return;
	if (path_is(url, plen, "/api/v1/events") || path_is(url, plen, "/api/v1/im/events")) {
		if (m == HTTP_GET)
			route_stream(c, req, query, qlen, false, NULL);
		else if (m == HTTP_POST)
			gw_publish(c, req);
		else if (m == HTTP_OPTIONS)
			route_preflight(c);
		else
			gw_conn_error(c, 405, "method_not_allowed", "use GET to subscribe or POST to publish",
				      "Allow: GET, POST, OPTIONS\r\n");
		return;
	}
	/* /api/v1/rooms/{room_id}/events: a room's history */
	if (plen > 21 && memcmp(url, "/api/v1/rooms/", 14) == 0 && memcmp(url + plen - 7, "/events", 7) == 0) {
		if (m == HTTP_GET)
			gw_room_events(c, req, url + 14, plen - 21, query, qlen);
		else if (m == HTTP_OPTIONS)
			route_preflight(c);
		else
			gw_conn_error(c, 405, "method_not_allowed", "use GET", "Allow: GET, OPTIONS\r\n");
		return;
	}
	if (m == HTTP_OPTIONS) {
		route_preflight(c);
		return;
	}
	if (path_is(url, plen, "/healthz") || path_is(url, plen, "/readyz") || path_is(url, plen, "/metrics")) {
		if (m != HTTP_GET)
			gw_conn_error(c, 405, "method_not_allowed", "use GET", "Allow: GET\r\n");
		else if (url[1] == 'h')
			gw_conn_respond(c, 200, "application/json", NULL, "{\"status\":\"ok\"}\n", 16, false);
		else if (url[1] == 'r')
			route_readyz(c);
		else
			route_metrics(c);
		return;
	}
	if (m == HTTP_GET && c->gw->opt.static_dir != NULL) {
		gw_static_get(c, req, url, plen);
		return;
	}
	gw_conn_error(c, 404, "not_found", "no such path; streams are at /api/v1/events", NULL);
}
