#include "auth_url.h"

#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth.h"
#include "auth_cache.h"
#include "buf.h"
#include "conn.h"
#include "error.h"
#include "gateway.h"
#include "grant.h"
#include "list.h"
#include "log.h"
#include "request.h"
#include "timer.h"

/* A loop's checks in flight and its cache (gw->authurl). */
struct gw_authurl {
	struct gw *gw;
	struct gw_list checks;       /* struct check.node */
	struct gw_tq deadline;       /* --auth-timeout-ms from each check's start */
	struct gw_auth_cache *cache; /* NULL: --auth-cache-ms 0 */
	uint64_t logged;             /* loop time of the last 'unavailable' line */
	uint64_t quiet;              /* unavailable answers not logged since */
};

/* One question to the application: a connection of its own, and the client's request put aside. */
struct check {
	struct gw_authurl *a;
	struct gw_hold hold;
	struct gw_list node;      /* a->checks while in flight */
	struct gw_tq_entry wait;  /* on a->deadline while in flight */
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	struct rc_buf out;        /* the request; kept until the close */
	struct gw_authurl_resp resp;
	enum gw_authurl_kind kind;
	gw_authurl_fn fn;
	struct gw_auth_cache_key key_rooms, key_cred;
	bool done;                /* answered (or given up): the rest is closing */
	/* the verdict, for the release */
	enum gw_authurl_verdict verdict;
	struct rc_grant *grant;
	const char *why;          /* unavailable: what went wrong (static or in why_buf) */
	char why_buf[160];
	size_t rooms_len;
	char rooms[];             /* the rooms asked, comma-separated (403 messages) */
};

/* ---- configuration ---- */

int gw_authurl_config_new(const struct gw_options *o, struct gw_authurl_config **out)
{
	struct gw_authurl_config *cfg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
	char why[320], port[8], host[64];
	int rv;

	*out = NULL;
	if (o->auth_url == NULL || *o->auth_url == '\0') {
		fprintf(stderr, "roomcast-gateway: --auth url needs --auth-url http://host[:port]/path\n");
		return RC_EINVAL;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL)
		return RC_ENOMEM;
	if (gw_authurl_parse(o->auth_url, &cfg->target, why, sizeof(why)) != RC_OK) {
		fprintf(stderr, "roomcast-gateway: --auth-url: %s\n", why);
		free(cfg);
		return RC_EINVAL;
	}
	snprintf(port, sizeof(port), "%u", (unsigned)cfg->target.port);
	if ((rv = getaddrinfo(cfg->target.host, port, &hints, &res)) != 0 || res == NULL) {
		fprintf(stderr, "roomcast-gateway: --auth-url: cannot resolve '%s': %s\n", cfg->target.host,
			gai_strerror(rv));
		free(cfg);
		return RC_EINVAL;
	}
	memcpy(&cfg->addr, res->ai_addr, res->ai_addrlen);
	if (res->ai_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, host, sizeof(host));
		snprintf(cfg->addr_name, sizeof(cfg->addr_name), "[%s]:%s", host, port);
	} else {
		uv_ip4_name((struct sockaddr_in *)res->ai_addr, host, sizeof(host));
		snprintf(cfg->addr_name, sizeof(cfg->addr_name), "%s:%s", host, port);
	}
	freeaddrinfo(res);
	rc_log_info("authorization by the application's URL",
		    "auth=url url=\"%s\" addr=%s timeout_ms=%" PRId64 " cache_ms=%" PRId64 " publish=%s", o->auth_url,
		    cfg->addr_name, o->auth_timeout_ms, o->auth_cache_ms, o->auth_publish ? "checked" : "publish-token");
	*out = cfg;
	return RC_OK;
}

void gw_authurl_config_free(struct gw_authurl_config *cfg)
{
	free(cfg);
}

/* ---- answering ---- */

/* 503 auth_unavailable; logged (at most one line a second per loop, with how many were not). */
static void check_unavailable(struct gw_conn *c, const struct check *k)
{
	struct gw_authurl *a = k->a;
	uint64_t now = uv_now(a->gw->loop);

	if (a->logged == 0 || now - a->logged >= 1000) {
		rc_log_warn("the auth url did not decide; answered 503", "url=%s why=\"%s\" not_logged=%" PRIu64,
			    a->gw->opt.authurl->addr_name, k->why, a->quiet);
		a->logged = now;
		a->quiet = 0;
	} else {
		a->quiet++;
	}
	if (c == NULL)
		return;
	if (k->kind == GW_AUTHURL_PUBLISH)
		c->gw->m.publish_by_status[5]++;
	gw_conn_error(c, 503, "auth_unavailable",
		      k->why == NULL || strstr(k->why, "did not answer") == NULL
			      ? "the application's auth endpoint could not decide (--auth-url); try again"
			      : "the application's auth endpoint did not answer in time (--auth-timeout-ms); try again",
		      "Retry-After: 1\r\n");
}

/*
 * Answers a refusal: 401 (the application's WWW-Authenticate passed on, or
 * the gateway's), 403 naming the rooms asked, or for a history 404.
 */
static void answer_refusal(struct gw_conn *c, enum gw_authurl_kind kind, enum gw_authurl_verdict v,
			   const char *challenge, const char *rooms, size_t rooms_len)
{
	struct gw *gw = c->gw;
	char hdr[GW_AUTHURL_CHALLENGE_MAX + 32], msg[256];

	if (v == GW_AUTHURL_UNAUTHORIZED) {
		gw->m.auth_refused++;
		if (kind == GW_AUTHURL_PUBLISH)
			gw->m.publish_by_status[4]++;
		snprintf(hdr, sizeof(hdr), "WWW-Authenticate: %s\r\n",
			 challenge != NULL && *challenge != '\0' ? challenge : "Bearer realm=\"roomcast\"");
		gw_conn_error(c, 401, "unauthorized",
			      "the application (--auth-url) did not accept the request's credentials", hdr);
		return;
	}
	gw->m.auth_forbidden++;
	if (kind == GW_AUTHURL_HISTORY) {
		gw_conn_error(c, 404, "not_found", "no such room, or the application does not allow it", NULL);
		return;
	}
	if (kind == GW_AUTHURL_PUBLISH) {
		gw->m.publish_by_status[4]++;
		gw_conn_error(c, 403, "forbidden", "the application (--auth-url) does not allow this publish", NULL);
		return;
	}
	if (rooms_len == 0)
		snprintf(msg, sizeof(msg), "the application (--auth-url) does not allow the firehose");
	else if (rooms_len <= 160)
		snprintf(msg, sizeof(msg), "the application (--auth-url) does not allow room(s) '%.*s'", (int)rooms_len,
			 rooms);
	else
		snprintf(msg, sizeof(msg), "the application (--auth-url) does not allow room(s) '%.160s...'", rooms);
	gw_conn_error(c, 403, "forbidden", msg, NULL);
}

/* The held request comes back (the client is still there). */
static void check_released(struct gw_conn *c, struct gw_req *req, void *arg)
{
	struct check *k = arg;

	if (k->verdict == GW_AUTHURL_ALLOW)
		k->fn(c, req, k->grant);
	else if (k->verdict == GW_AUTHURL_UNAVAILABLE)
		check_unavailable(c, k);
	else
		answer_refusal(c, k->kind, k->verdict, k->resp.challenge, k->rooms, k->rooms_len);
}

static void check_closed(uv_handle_t *h)
{
	struct check *k = gw_container_of((uv_tcp_t *)h, struct check, tcp);

	rc_buf_fini(&k->out);
	gw_authurl_resp_fini(&k->resp);
	free(k);
}

/*
 * The check has its verdict (k->verdict, k->grant, k->why): closes the
 * socket, hands the request back (or frees it when the client left), keeps
 * the answer in the cache. Once only; k is freed by the close callback.
 */
static void check_finish(struct check *k)
{
	struct gw_authurl *a = k->a;
	struct gw *gw = a->gw;

	if (k->done)
		return;
	k->done = true;
	gw_tq_remove(&k->wait);
	gw_list_remove(&k->node);
	uv_close((uv_handle_t *)&k->tcp, check_closed);
	if (k->verdict == GW_AUTHURL_UNAVAILABLE) {
		gw->m.auth_url_unavailable++;
		if (k->hold.conn == NULL)
			check_unavailable(NULL, k); /* logged all the same */
	}
	gw_conn_release(&k->hold, check_released, k);
	if (a->cache != NULL && k->verdict != GW_AUTHURL_UNAVAILABLE) {
		/* an answer with a grant holds for the credential, whatever the rooms */
		gw_auth_cache_put(a->cache, k->grant != NULL ? &k->key_cred : &k->key_rooms, uv_now(gw->loop),
				  k->verdict, k->grant, k->resp.challenge);
		k->grant = NULL;
	}
	rc_grant_free(k->grant);
	k->grant = NULL;
}

static void check_fail(struct check *k, const char *why, int err)
{
	if (k->done)
		return;
	k->verdict = GW_AUTHURL_UNAVAILABLE;
	if (err != 0) {
		snprintf(k->why_buf, sizeof(k->why_buf), "%s: %s", why, uv_strerror(err));
		k->why = k->why_buf;
	} else {
		k->why = why;
	}
	check_finish(k);
}

/* ---- the connection to the application ---- */

static void check_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct check *k = gw_container_of((uv_tcp_t *)h, struct check, tcp);

	(void)suggested;
	/* the loop's read buffer: reads never overlap, and the parser copies what it keeps */
	*buf = uv_buf_init(k->a->gw->readbuf, GW_READBUF_SIZE);
}

static void check_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct check *k = gw_container_of((uv_tcp_t *)s, struct check, tcp);
	int rv;

	if (k->done || nread == 0)
		return;
	if (nread < 0 && nread != UV_EOF) {
		check_fail(k, "reading the answer", (int)nread);
		return;
	}
	rv = gw_authurl_resp_feed(&k->resp, nread > 0 ? buf->base : "", nread > 0 ? (size_t)nread : 0);
	if (rv == 0)
		return;
	if (rv < 0) {
		check_fail(k,
			   rv == RC_ETOOBIG ? "the answer is over --auth-max-head-bytes or --auth-max-body-bytes"
			   : rv == RC_ENOMEM ? "out of memory"
					     : "the answer is not HTTP/1.x, or was cut short",
			   0);
		return;
	}
	k->verdict = gw_authurl_verdict(k->resp.status, k->resp.body.data ? k->resp.body.data : "", k->resp.body.len,
					&k->grant, k->why_buf, sizeof(k->why_buf));
	k->why = k->why_buf;
	check_finish(k);
}

static void check_written(uv_write_t *w, int status)
{
	struct check *k = gw_container_of(w, struct check, write);

	if (status < 0)
		check_fail(k, "sending the request", status);
}

static void check_connected(uv_connect_t *req, int status)
{
	struct check *k = gw_container_of(req, struct check, connect);
	uv_buf_t b;
	int rv;

	if (k->done)
		return;
	if (status < 0) {
		check_fail(k, "connecting", status);
		return;
	}
	b = uv_buf_init(k->out.data, (unsigned)k->out.len);
	if ((rv = uv_read_start((uv_stream_t *)&k->tcp, check_alloc, check_read)) != 0 ||
	    (rv = uv_write(&k->write, (uv_stream_t *)&k->tcp, &b, 1, check_written)) != 0)
		check_fail(k, "sending the request", rv);
}

/* --auth-timeout-ms passed since the check began. */
static void check_expired(struct gw_tq *q, struct gw_tq_entry *e)
{
	(void)q;
	check_fail(gw_container_of(e, struct check, wait), "did not answer within --auth-timeout-ms", 0);
}

/* ---- the loop ---- */

int gw_authurl_loop_start(struct gw *gw)
{
	struct gw_authurl *a;

	if (gw->opt.authurl == NULL)
		return RC_OK;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return RC_ENOMEM;
	a->gw = gw;
	gw_list_init(&a->checks);
	if (gw->opt.auth_cache_ms > 0 &&
	    gw_auth_cache_new((size_t)gw->opt.auth_cache_entries, (uint64_t)gw->opt.auth_cache_ms, &a->cache) != RC_OK) {
		free(a);
		return RC_ENOMEM;
	}
	gw_tq_init(&a->deadline, &gw->timer, (uint64_t)gw->opt.auth_timeout_ms, check_expired, a);
	gw->authurl = a;
	return RC_OK;
}

void gw_authurl_loop_stop(struct gw *gw)
{
	struct gw_authurl *a = gw->authurl;
	struct gw_list *pos, *tmp;

	if (a == NULL)
		return;
	gw_list_each_safe(pos, tmp, &a->checks)
		check_fail(gw_container_of(pos, struct check, node), "the gateway is stopping", 0);
	gw_tq_fini(&a->deadline);
}

void gw_authurl_loop_fini(struct gw *gw)
{
	struct gw_authurl *a = gw->authurl;

	if (a == NULL)
		return;
	gw_auth_cache_free(a->cache);
	free(a);
	gw->authurl = NULL;
}

/* ---- a check ---- */

/* A cached answer applied now: GO with *g, or DONE after answering the refusal. */
static enum gw_authurl_result check_cached(struct gw_conn *c, enum gw_authurl_kind kind,
					   const struct gw_auth_cached *hit, const char *const *rooms,
					   const size_t *lens, size_t nrooms, const struct rc_grant **g)
{
	struct rc_buf list;

	c->gw->m.auth_url_cache_hits++;
	if (hit->verdict == GW_AUTHURL_ALLOW) {
		*g = hit->grant;
		return GW_AUTHURL_GO;
	}
	rc_buf_init(&list);
	for (size_t i = 0; i < nrooms; i++) {
		if (i)
			rc_buf_append(&list, ",", 1);
		rc_buf_append(&list, rooms[i], lens[i]);
	}
	answer_refusal(c, kind, hit->verdict, hit->challenge, list.data ? list.data : "", list.err ? 0 : list.len);
	rc_buf_fini(&list);
	return GW_AUTHURL_DONE;
}

enum gw_authurl_result gw_authurl_check(struct gw_conn *c, struct gw_req *req, enum gw_authurl_kind kind,
					const char *const *rooms, const size_t *lens, size_t nrooms, gw_authurl_fn fn,
					const struct rc_grant **g)
{
	struct gw *gw = c->gw;
	struct gw_authurl *a = gw->authurl;
	const struct gw_authurl_ask ask = {
		.method = http_method_str(req->method),
		.uri = req->url.data ? req->url.data : "",
		.uri_len = req->url.len,
		.cookie = req->cookie.data,
		.cookie_len = req->cookie.len,
		.authorization = req->authorization.data,
		.authorization_len = req->authorization.len,
		.rooms = rooms,
		.room_lens = lens,
		.nrooms = nrooms,
		.firehose = kind == GW_AUTHURL_STREAM && nrooms == 0,
	};
	struct gw_auth_cache_key kc, kr;
	struct gw_auth_cached hit;
	struct check *k;
	size_t rl = 0;
	int rv;

	*g = NULL;
	if (a == NULL) { /* the loop is stopping */
		gw_conn_error(c, 503, "auth_unavailable", "the gateway is stopping", NULL);
		return GW_AUTHURL_DONE;
	}
	gw_auth_cache_key(&kc, &ask, false);
	gw_auth_cache_key(&kr, &ask, true);
	if (a->cache != NULL) {
		uint64_t now = uv_now(gw->loop);
		if (gw_auth_cache_get(a->cache, &kc, now, &hit) || gw_auth_cache_get(a->cache, &kr, now, &hit))
			return check_cached(c, kind, &hit, rooms, lens, nrooms, g);
	}
	for (size_t i = 0; i < nrooms; i++)
		rl += lens[i] + 1;
	k = calloc(1, sizeof(*k) + rl + 1);
	if (k == NULL) {
		gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
		return GW_AUTHURL_DONE;
	}
	for (size_t i = 0; i < nrooms; i++) {
		if (i)
			k->rooms[k->rooms_len++] = ',';
		memcpy(k->rooms + k->rooms_len, rooms[i], lens[i]);
		k->rooms_len += lens[i];
	}
	k->a = a;
	k->kind = kind;
	k->fn = fn;
	k->key_cred = kc;
	k->key_rooms = kr;
	gw_list_init(&k->node);
	gw_tq_entry_init(&k->wait);
	rc_buf_init(&k->out);
	gw_authurl_resp_init(&k->resp, (size_t)gw->opt.auth_max_head_bytes, (size_t)gw->opt.auth_max_body_bytes);
	gw_authurl_request(&k->out, &gw->opt.authurl->target, &ask);
	if (k->out.err) {
		rc_buf_fini(&k->out);
		free(k);
		gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
		return GW_AUTHURL_DONE;
	}
	if ((rv = uv_tcp_init(gw->loop, &k->tcp)) != 0) {
		rc_buf_fini(&k->out);
		free(k);
		gw->m.auth_url_unavailable++;
		gw_conn_error(c, 503, "auth_unavailable", "the gateway could not open a socket for --auth-url",
			      "Retry-After: 1\r\n");
		return GW_AUTHURL_DONE;
	}
	uv_tcp_nodelay(&k->tcp, 1);
	gw->m.auth_url_requests++;
	rv = uv_tcp_connect(&k->connect, &k->tcp, (const struct sockaddr *)&gw->opt.authurl->addr, check_connected);
	if (rv != 0) {
		/* nothing is in flight: answered here, the request stays the connection's */
		snprintf(k->why_buf, sizeof(k->why_buf), "connecting: %s", uv_strerror(rv));
		k->why = k->why_buf;
		k->done = true;
		gw->m.auth_url_unavailable++;
		check_unavailable(c, k);
		uv_close((uv_handle_t *)&k->tcp, check_closed);
		return GW_AUTHURL_DONE;
	}
	gw_list_insert_tail(&a->checks, &k->node);
	gw_tq_push(&a->deadline, &k->wait);
	gw_conn_hold(c, &k->hold);
	return GW_AUTHURL_WAIT;
}
