/*
 * auth_url_http.h - the wire of --auth url: the application's URL, the
 * request the gateway sends it, and the answer read back.
 *
 * No sockets and no loop here (auth_url.c does the I/O), so each part can be
 * tested alone: gw_authurl_parse reads an http:// URL, gw_authurl_request
 * writes the HTTP/1.1 request for one check, gw_authurl_resp reads the answer
 * with http-parser under a head and a body limit, and gw_authurl_verdict
 * turns its status and body into allow (with an optional grant), 401, 403 or
 * unavailable. What the application receives and must answer is documented
 * for users in docs/PROTOCOL.md ("--auth url"). Any thread (no shared state).
 */
#ifndef GW_AUTH_URL_HTTP_H
#define GW_AUTH_URL_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct rc_grant;

/* Longest --auth-url accepted (bytes). */
#define GW_AUTHURL_URL_MAX 2048

/* Longest WWW-Authenticate of a 401 passed on to the client (longer: the gateway's own). */
#define GW_AUTHURL_CHALLENGE_MAX 256

/* The application's URL: http://host[:port][/path][?query], parsed. */
struct gw_authurl_target {
	char host[256];      /* a name or an IP literal, without brackets */
	char host_header[264]; /* what Host says: host, [v6] or with :port when not 80 */
	char target[GW_AUTHURL_URL_MAX]; /* the request target: path and query ("/" when none) */
	uint16_t port;
};

/*
 * Parses url (http:// only: no https, no user:password@, no #fragment).
 * RC_OK with *t filled, or RC_EINVAL with the reason in why.
 */
int gw_authurl_parse(const char *url, struct gw_authurl_target *t, char *why, size_t whylen);

/* What one check asks the application about. */
struct gw_authurl_ask {
	const char *method; /* the client's: "GET" or "POST" */
	const char *uri;    /* the client's request target, as sent */
	size_t uri_len;
	const char *cookie, *authorization; /* the client's headers (len 0: absent) */
	size_t cookie_len, authorization_len;
	const char *const *rooms; /* the rooms asked for (a stream, a history); none: see firehose */
	const size_t *room_lens;
	size_t nrooms;
	bool firehose; /* a stream without room_id */
};

/*
 * Appends to out the request for ask: GET t->target, Host, X-Original-Method,
 * X-Original-URI, X-Roomcast-Rooms (comma-separated) or X-Roomcast-Firehose:
 * true, the client's Cookie and Authorization when it sent them, and
 * Connection: close. The values come from a request http-parser accepted
 * (no CR or LF) and from valid room ids. out->err on out of memory.
 */
void gw_authurl_request(struct rc_buf *out, const struct gw_authurl_target *t, const struct gw_authurl_ask *ask);

/* The application's answer being read. */
struct gw_authurl_resp {
	http_parser http;
	size_t max_head, max_body, head_bytes;
	int status;
	struct rc_buf body;
	char challenge[GW_AUTHURL_CHALLENGE_MAX + 1]; /* WWW-Authenticate, "" when absent or too long */
	size_t challenge_len;
	int error; /* set by a callback: RC_ETOOBIG, RC_ENOMEM */
	bool complete;
	/* header state */
	char field[24];
	uint8_t field_len;
	bool in_value, want_value, value_too_long;
};

/* Prepares r for one answer: at most max_head bytes of status line and headers, max_body of body. */
void gw_authurl_resp_init(struct gw_authurl_resp *r, size_t max_head, size_t max_body);

/* Frees what r holds. */
void gw_authurl_resp_fini(struct gw_authurl_resp *r);

/*
 * Feeds data[0..len) of the answer; len 0 says the peer closed. Returns 1
 * once the answer is whole (r->status, r->body, r->challenge), 0 for more,
 * RC_ETOOBIG past a limit, RC_EPROTO for what is not an HTTP/1.x answer (or
 * one cut short by the close), RC_ENOMEM.
 */
int gw_authurl_resp_feed(struct gw_authurl_resp *r, const char *data, size_t len);

enum gw_authurl_verdict {
	GW_AUTHURL_ALLOW,        /* 2xx */
	GW_AUTHURL_UNAUTHORIZED, /* 401 */
	GW_AUTHURL_FORBIDDEN,    /* 403 */
	GW_AUTHURL_UNAVAILABLE,  /* anything else, or a 2xx body that is not what PROTOCOL.md says */
};

/*
 * What an answer says. A 2xx with an empty (or blank) body allows what was
 * asked (*g NULL); a 2xx with a JSON object {"read":[...], "publish":[...],
 * "firehose":bool, "sub":"..."} allows what that grants (*g, the caller's to
 * free; common/grant.h semantics: a list absent grants nothing of it;
 * "sub" gives the streams a subject that `roomcast revoke --sub` matches).
 * why says what was wrong with an unavailable one (out of memory included).
 */
enum gw_authurl_verdict gw_authurl_verdict(int status, const char *body, size_t len, struct rc_grant **g,
					   char *why, size_t whylen);

/* The exp given to the grant of a body: never reached (url streams have no expiry). */
#define GW_AUTHURL_NO_EXPIRY (INT64_C(1) << 52)

#endif
