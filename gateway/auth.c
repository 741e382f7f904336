#include "auth.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "conn.h"
#include "error.h"
#include "gateway.h"
#include "grant.h"
#include "jwt.h"
#include "log.h"
#include "query.h"
#include "request.h"
#include "stream.h"

/* A revocation a loop remembers: tokens with this sub (or jti) hash are refused until `until`. */
struct auth_revoked {
	uint64_t hash;
	int64_t until;
	bool jti;
};

/* A loop's state (gw->auth). */
struct gw_auth {
	struct gw *gw;
	struct gw_stream **heap; /* by stamp.exp, smallest first */
	uint32_t n, cap;
	struct auth_revoked *revoked;
	size_t nrevoked;
	uv_timer_t sweep;
	uv_signal_t sighup;
	bool sighup_on;
};

static const char auth_challenge[] = "WWW-Authenticate: Bearer realm=\"roomcast\"\r\n";
static const char auth_challenge_bad[] = "WWW-Authenticate: Bearer realm=\"roomcast\", error=\"invalid_token\"\r\n";

int gw_auth_new(const struct gw_options *o, struct rc_jwt **out)
{
	struct rc_jwt_config cfg = { 0 };
	char msg[512];
	int rv;

	*out = NULL;
	if (o->auth == NULL || strcmp(o->auth, "none") == 0)
		return RC_OK;
	if (strcmp(o->auth, "url") == 0)
		return RC_OK; /* no verifier: the application decides (auth_url.h, gw_authurl_config_new) */
	if (strcmp(o->auth, "jwt") != 0) {
		fprintf(stderr, "roomcast-gateway: --auth: expected none, jwt or url, got '%s'\n", o->auth);
		return RC_EINVAL;
	}
	if (rc_jwt_algs_parse(o->jwt_alg, &cfg.algs, msg, sizeof(msg)) != RC_OK) {
		fprintf(stderr, "roomcast-gateway: --jwt-alg: %s\n", msg);
		return RC_EINVAL;
	}
	cfg.secret_file = o->jwt_secret_file;
	cfg.keys_file = o->jwt_keys_file;
	cfg.leeway_s = o->jwt_leeway_s;
	cfg.audience = o->jwt_audience;
	cfg.issuer = o->jwt_issuer;
	if ((rv = rc_jwt_new(&cfg, out, msg, sizeof(msg))) != RC_OK) {
		fprintf(stderr, "roomcast-gateway: --auth jwt: %s\n", msg);
		return rv;
	}
	rc_log_info("token verification on", "auth=jwt keys=\"%s\" leeway_s=%" PRId64, msg, o->jwt_leeway_s);
	/*
	 * Before any client: the first verification starts OpenSSL (its tables,
	 * and ~2 MB of its code paged in). Paid here, it is neither the first
	 * client's latency nor counted in the memory of the first streams.
	 */
	unsigned keys;
	if (rc_jwt_warm_up(*out, (int64_t)time(NULL), &keys, msg, sizeof(msg)) != RC_OK)
		rc_log_warn("token verification warm-up failed", "err=\"%s\"", msg);
	return RC_OK;
}

/* ---- the expiry heap ---- */

static void heap_set(struct gw_auth *a, uint32_t i, struct gw_stream *s)
{
	a->heap[i] = s;
	gw_stream_token(s)->slot = i + 1;
}

static void heap_up(struct gw_auth *a, uint32_t i)
{
	struct gw_stream *s = a->heap[i];

	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (gw_stream_token(a->heap[p])->exp <= gw_stream_token(s)->exp)
			break;
		heap_set(a, i, a->heap[p]);
		i = p;
	}
	heap_set(a, i, s);
}

static void heap_down(struct gw_auth *a, uint32_t i)
{
	struct gw_stream *s = a->heap[i];

	for (;;) {
		uint32_t l = 2 * i + 1, m = l;
		if (l >= a->n)
			break;
		if (l + 1 < a->n && gw_stream_token(a->heap[l + 1])->exp < gw_stream_token(a->heap[l])->exp)
			m = l + 1;
		if (gw_stream_token(a->heap[m])->exp >= gw_stream_token(s)->exp)
			break;
		heap_set(a, i, a->heap[m]);
		i = m;
	}
	heap_set(a, i, s);
}

int gw_auth_track(struct gw *gw, struct gw_stream *s)
{
	struct gw_auth *a = gw->auth;

	if (a == NULL)
		return RC_OK;
	if (a->n == a->cap) {
		uint32_t cap = a->cap ? a->cap * 2 : 64;
		struct gw_stream **h = realloc(a->heap, cap * sizeof(*h));
		if (h == NULL)
			return RC_ENOMEM;
		a->heap = h;
		a->cap = cap;
	}
	a->heap[a->n++] = s;
	heap_up(a, a->n - 1);
	return RC_OK;
}

void gw_auth_untrack(struct gw *gw, struct gw_stream *s)
{
	struct gw_auth *a = gw->auth;
	uint32_t i;

	if (a == NULL || gw_stream_token(s) == NULL || gw_stream_token(s)->slot == 0)
		return;
	i = gw_stream_token(s)->slot - 1;
	gw_stream_token(s)->slot = 0;
	if (i == --a->n)
		return;
	struct gw_stream *m = a->heap[a->n];
	heap_set(a, i, m);
	heap_up(a, i);
	heap_down(a, gw_stream_token(m)->slot - 1);
}

/* ---- the loop's handles ---- */

static void auth_reload(struct gw *gw, const char *why)
{
	char msg[512];

	if (rc_jwt_reload(gw->opt.jwt, msg, sizeof(msg)) == RC_OK)
		rc_log_info("keys reloaded", "why=%s keys=\"%s\"", why, msg);
	else
		rc_log_error("keys not reloaded; the old keys stay", "why=%s err=\"%s\"", why, msg);
}

/*
 * Every GW_AUTH_SWEEP_MS: ends the streams whose token expired (valid while
 * now < exp + leeway, as the verifier says), and on worker 0 reloads the
 * keys if their file changed.
 */
static void auth_sweep_cb(uv_timer_t *t)
{
	struct gw_auth *a = t->data;
	struct gw *gw = a->gw;
	int64_t now = (int64_t)time(NULL);

	while (a->n > 0 && gw_stream_token(a->heap[0])->exp + gw->opt.jwt_leeway_s <= now) {
		struct gw_stream *s = a->heap[0];
		gw_auth_untrack(gw, s);
		gw->m.streams_expired++;
		gw_stream_end(s, "stream.expired");
	}
	/* forget revocations past their time */
	for (size_t i = 0; i < a->nrevoked;)
		if (a->revoked[i].until <= now)
			a->revoked[i] = a->revoked[--a->nrevoked];
		else
			i++;
	if (gw->worker == 0 && gw->opt.jwt != NULL && rc_jwt_keys_changed(gw->opt.jwt))
		auth_reload(gw, "file_changed");
}

static void auth_sighup_cb(uv_signal_t *h, int signum)
{
	struct gw_auth *a = h->data;

	(void)signum;
	auth_reload(a->gw, "sighup");
}

int gw_auth_loop_start(struct gw *gw)
{
	struct gw_auth *a;

	if (gw->opt.jwt == NULL && gw->opt.authurl == NULL)
		return RC_OK;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return RC_ENOMEM;
	a->gw = gw;
	gw->auth = a;
	uv_timer_init(gw->loop, &a->sweep);
	a->sweep.data = a;
	uv_timer_start(&a->sweep, auth_sweep_cb, GW_AUTH_SWEEP_MS, GW_AUTH_SWEEP_MS);
	uv_unref((uv_handle_t *)&a->sweep);
	/* libuv hands a signal to every loop's handle: one reload of the shared verifier is enough */
	if (gw->worker == 0 && gw->opt.jwt != NULL) {
		uv_signal_init(gw->loop, &a->sighup);
		a->sighup.data = a;
		uv_signal_start(&a->sighup, auth_sighup_cb, SIGHUP);
		uv_unref((uv_handle_t *)&a->sighup);
		a->sighup_on = true;
	}
	return RC_OK;
}

void gw_auth_loop_stop(struct gw *gw)
{
	struct gw_auth *a = gw->auth;

	if (a == NULL)
		return;
	uv_close((uv_handle_t *)&a->sweep, NULL);
	if (a->sighup_on)
		uv_close((uv_handle_t *)&a->sighup, NULL);
}

void gw_auth_loop_fini(struct gw *gw)
{
	struct gw_auth *a = gw->auth;

	if (a == NULL)
		return;
	free(a->heap);
	free(a->revoked);
	free(a);
	gw->auth = NULL;
}

/* ---- requests ---- */

/* The value of cookie name in a Cookie header (name=value; ...); false when absent. */
static bool auth_cookie(const char *h, size_t hl, const char *name, const char **v, size_t *vl)
{
	size_t nl = strlen(name);
	const char *p = h, *end = h + hl;

	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p)), *e = semi ? semi : end;
		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
			const char *s = p + nl + 1, *t = e;
			while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
				t--;
			if (t - s >= 2 && *s == '"' && t[-1] == '"') {
				s++;
				t--;
			}
			*v = s;
			*vl = (size_t)(t - s);
			return true;
		}
		p = e + 1;
	}
	return false;
}

/* 401 unauthorized; bad: a token was given (error="invalid_token"). */
static void auth_refuse(struct gw_conn *c, bool bad, const char *message)
{
	c->gw->m.auth_refused++;
	gw_conn_error(c, 401, "unauthorized", message, bad ? auth_challenge_bad : auth_challenge);
}

bool gw_auth_request(struct gw_conn *c, const struct gw_req *req, const char *query, size_t qlen, bool ambient,
		     struct rc_grant **g)
{
	const struct gw_options *o = &c->gw->opt;
	const char *tok = NULL;
	size_t tl = 0;
	struct rc_buf key, val;
	enum rc_jwt_reason reason = RC_JWT_OK;
	bool ok = false;
	int rv;

	*g = NULL;
	rc_buf_init(&key);
	rc_buf_init(&val);
	if (req->authorization.len > 0) {
		/* the header wins, and a bad one is not rescued by a cookie */
		if (req->authorization.len < 7 || strncasecmp(req->authorization.data, "Bearer ", 7) != 0) {
			auth_refuse(c, true, "Authorization must be 'Bearer <token>'");
			goto out;
		}
		tok = req->authorization.data + 7;
		tl = req->authorization.len - 7;
	} else if (!ambient) {
	} else if (o->auth_cookie != NULL && req->cookie.len > 0 &&
		   auth_cookie(req->cookie.data, req->cookie.len, o->auth_cookie, &tok, &tl)) {
	} else if (ambient && o->auth_query_param) {
		struct gw_query q;
		gw_query_init(&q, query, qlen);
		while ((rv = gw_query_next(&q, &key, &val)) == 1)
			if (key.len == strlen("access_token") && strcmp(key.data, "access_token") == 0) {
				tok = val.data ? val.data : "";
				tl = val.len;
				break;
			}
	}
	if (tok == NULL) {
		auth_refuse(c, false,
			    ambient ? "this gateway needs a token (Authorization: Bearer, or its cookie)"
				    : "POST needs Authorization: Bearer <token>");
		goto out;
	}
	rv = rc_jwt_verify(o->jwt, tok, tl, (int64_t)time(NULL), g, &reason);
	if (rv == RC_ENOMEM) {
		gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
		goto out;
	}
	if (rv != RC_OK) {
		rc_log_debug("token refused", "reason=%s", rc_jwt_reason_name(reason));
		auth_refuse(c, true, "the token is missing, malformed, expired or not signed by a known key");
		goto out;
	}
	if (gw_auth_revoked(c, *g)) {
		rc_grant_free(*g);
		*g = NULL;
		goto out;
	}
	ok = true;
out:
	rc_buf_fini(&key);
	rc_buf_fini(&val);
	return ok;
}

bool gw_auth_revoked(struct gw_conn *c, const struct rc_grant *g)
{
	struct gw_auth *a = c->gw->auth;
	int64_t now = (int64_t)time(NULL);

	if (a == NULL)
		return false;
	for (size_t i = 0; i < a->nrevoked; i++) {
		const struct auth_revoked *r = &a->revoked[i];
		if (r->until > now && (r->jti ? g->jti_hash != 0 && g->jti_hash == r->hash : g->sub_hash == r->hash)) {
			auth_refuse(c, true, "the token was revoked");
			return true;
		}
	}
	return false;
}

bool gw_auth_rooms(struct gw_conn *c, const struct rc_grant *g, const char *const *rooms, const size_t *lens,
		   size_t nrooms)
{
	char msg[256];

	if (nrooms == 0 && !rc_grant_can_firehose(g)) {
		c->gw->m.auth_forbidden++;
		gw_conn_error(c, 403, "forbidden", "the credential does not grant the firehose: name rooms with room_id",
			      NULL);
		return false;
	}
	for (size_t i = 0; i < nrooms; i++)
		if (!rc_grant_can_read(g, rooms[i], lens[i])) {
			/* the room is one the client named: a valid room id, safe to echo */
			snprintf(msg, sizeof(msg), "the credential does not grant room '%.*s'", (int)lens[i], rooms[i]);
			c->gw->m.auth_forbidden++;
			gw_conn_error(c, 403, "forbidden", msg, NULL);
			return false;
		}
	return true;
}

bool gw_auth_can_publish(const struct rc_grant *g, const char *room, size_t len)
{
	return rc_grant_can_publish(g, room, len);
}

/* ---- revocation ---- */

static void auth_remember(struct gw_auth *a, uint64_t hash, bool jti, int64_t until)
{
	if (a->nrevoked == GW_AUTH_REVOKED_MAX) {
		memmove(a->revoked, a->revoked + 1, (a->nrevoked - 1) * sizeof(*a->revoked));
		a->nrevoked--;
	}
	if (a->revoked == NULL) {
		a->revoked = calloc(GW_AUTH_REVOKED_MAX, sizeof(*a->revoked));
		if (a->revoked == NULL)
			return;
	}
	a->revoked[a->nrevoked++] = (struct auth_revoked){ hash, until, jti };
}

static bool auth_matches(const struct gw_stream *s, uint64_t hash, bool jti)
{
	if (gw_stream_token(s) == NULL)
		return false;
	return jti ? gw_stream_token(s)->jti_hash == hash : gw_stream_token(s)->sub_hash == hash;
}

/* Ends the loop's streams whose stamp matches; returns how many. */
static size_t auth_end_matching(struct gw *gw, uint64_t hash, bool jti)
{
	struct gw_auth *a = gw->auth;
	struct gw_stream **match;
	size_t n = 0, k = 0;

	for (uint32_t i = 0; i < a->n; i++)
		n += auth_matches(a->heap[i], hash, jti);
	if (n == 0)
		return 0;
	/* the matches first: taking one off the heap reorders it */
	match = malloc(n * sizeof(*match));
	if (match == NULL) {
		/* out of memory: one at a time, scanning again after each */
		for (uint32_t i = 0; i < a->n;) {
			if (auth_matches(a->heap[i], hash, jti)) {
				struct gw_stream *s = a->heap[i];
				gw_auth_untrack(gw, s);
				gw_stream_end(s, "stream.revoked");
				i = 0;
			} else {
				i++;
			}
		}
		return n;
	}
	for (uint32_t i = 0; i < a->n; i++)
		if (auth_matches(a->heap[i], hash, jti))
			match[k++] = a->heap[i];
	for (size_t i = 0; i < k; i++) {
		gw_auth_untrack(gw, match[i]);
		gw_stream_end(match[i], "stream.revoked");
	}
	free(match);
	return n;
}

void gw_auth_control(struct gw *gw, const char *body, size_t len)
{
	struct gw_auth *a = gw->auth;
	struct json_tokener *tok;
	struct json_object *obj = NULL, *op, *id, *until;
	bool jti;
	uint64_t hash;
	int64_t u;
	size_t closed = 0;

	if (a == NULL)
		return; /* --auth none: no stream has a token */
	tok = json_tokener_new();
	if (tok != NULL && len < 4096)
		obj = json_tokener_parse_ex(tok, body, (int)len);
	if (tok != NULL)
		json_tokener_free(tok);
	if (obj == NULL || !json_object_object_get_ex(obj, "op", &op) ||
	    strcmp(json_object_get_string(op), "revoke") != 0) {
		rc_log_warn("ignored a control message", "bytes=%zu", len);
		json_object_put(obj);
		return;
	}
	jti = json_object_object_get_ex(obj, "jti", &id);
	if ((!jti && !json_object_object_get_ex(obj, "sub", &id)) || !json_object_is_type(id, json_type_string) ||
	    json_object_get_string_len(id) == 0) {
		rc_log_warn("ignored a revocation without sub or jti", NULL);
		json_object_put(obj);
		return;
	}
	hash = rc_grant_id_hash(json_object_get_string(id), (size_t)json_object_get_string_len(id));
	u = json_object_object_get_ex(obj, "until", &until) ? json_object_get_int64(until) : 0;
	closed = auth_end_matching(gw, hash, jti);
	if (u > (int64_t)time(NULL))
		auth_remember(a, hash, jti, u);
	gw->m.streams_revoked += closed;
	rc_log_info("revoked", "%s=\"%s\" streams=%zu worker=%u", jti ? "jti" : "sub", json_object_get_string(id),
		    closed, gw->worker);
	json_object_put(obj);
}
