/*
 * request.h - an HTTP/1.1 request, parsed with http-parser.
 *
 * Each connection embeds a parser. Only what the router needs (the url, a
 * few headers, the body) is copied out of the shared read buffer into a
 * request object, which the connection hands on and frees once it is
 * handled. The limits hold while parsing: a request line and headers over
 * max_header_bytes end the request with 431, a body over max_body_bytes with
 * 413 (as soon as Content-Length says so). The parser stops after each whole
 * request, so that it is handled before the bytes after it are parsed.
 * Knows nothing of connections. Loop thread only.
 */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* A whole request. */
struct gw_req {
	enum http_method method;
	bool keep_alive;
	struct rc_buf url;
	struct rc_buf body;
	struct rc_buf last_event_id, authorization, content_type, origin, expect, host, cookie;
	struct rc_buf idempotency_key; /* POST: the event's idempotency key */
	bool expect_continue; /* Expect: 100-continue with a body to come */
	size_t header_bytes;
	int error_status; /* a limit was hit while parsing: 413 or 431 */
	/* header parsing state */
	struct rc_buf *cur; /* the header value being read, NULL when ignored */
	char field[32];
	uint8_t field_len;
	bool in_value;
};

struct gw_req_limits {
	size_t max_header_bytes, max_body_bytes;
};

struct gw_req_parser {
	http_parser http;
	struct gw_req *req; /* the request being parsed; NULL between requests */
	bool head_paused;   /* GW_REQ_HEAD was returned for req */
};

enum gw_req_result {
	GW_REQ_MORE, /* everything consumed; no whole request yet */
	GW_REQ_DONE, /* a whole request */
	GW_REQ_HEAD, /* the head of a request that waits to be told to send its body (Expect: 100-continue) */
	GW_REQ_BAD,  /* malformed, or over a limit: answer and stop reading */
};

void gw_req_parser_init(struct gw_req_parser *p);

/* Frees the request being parsed, if any. */
void gw_req_parser_fini(struct gw_req_parser *p);

/* Whether a request has begun (some of it arrived) and is not whole yet. */
static inline bool gw_req_parser_busy(const struct gw_req_parser *p)
{
	return p->req != NULL;
}

/*
 * Parses data[0..len) up to the end of one request; *used: the bytes
 * consumed. GW_REQ_DONE: *out is the request, the caller's to free with
 * gw_req_free. GW_REQ_HEAD (once per such request): the head of a request
 * sent with Expect: 100-continue, in p->req (still the parser's); the caller
 * answers 100 Continue or a final error, then parses on. GW_REQ_BAD: *status
 * is 400, 413 or 431 and *why says what was wrong (a static string); the
 * parser is done with this connection.
 */
enum gw_req_result gw_req_parse(struct gw_req_parser *p, const struct gw_req_limits *lim, const char *data,
				size_t len, size_t *used, struct gw_req **out, int *status, const char **why);

/* Frees a request (NULL: nothing). */
void gw_req_free(struct gw_req *r);

#endif
