/*
 * response.h - the gateway's HTTP responses, built in one place: the status
 * line, Content-Type and Content-Length, the CORS headers, extra header lines
 * and Connection: close; the JSON error body every error answer carries; and
 * the head of an SSE stream. Each response is one refcounted chunk, ready to
 * queue on a connection. Pure functions: any thread.
 */
#ifndef GW_RESPONSE_H
#define GW_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "outq.h"

struct gw_response {
	int status;
	const char *content_type; /* NULL: no Content-Type */
	const char *extra;        /* header lines, each ending in "\r\n"; NULL: none */
	const char *cors_origin;  /* Access-Control-Allow-Origin (with Vary: Origin); NULL: none */
	bool close;               /* Connection: close */
};

/* The response r with body[0..len) (Content-Length len); NULL when out of memory. */
struct gw_chunk *gw_response_new(const struct gw_response *r, const char *body, size_t len);

/* Appends {"error":{"code":code,"message":message}} and a newline: the body of every error. */
void gw_response_error_json(struct rc_buf *b, const char *code, const char *message);

/*
 * The head of an SSE stream: 200, text/event-stream, no caching, no proxy
 * buffering (X-Accel-Buffering), the CORS headers when cors_origin is set,
 * Connection: close, then the SSE preamble. NULL when out of memory.
 */
struct gw_chunk *gw_response_stream_head(const char *cors_origin);

/* Text of a status code ("Not Found"). */
const char *gw_status_text(int status);

#endif
