#include "response.h"

#include <string.h>

#include "sse.h"

const char *gw_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	}
	return "Unknown";
}

/* The status line and the headers every response has; content_length < 0: none. */
static void response_head(struct rc_buf *b, const struct gw_response *r, long long content_length)
{
	rc_buf_printf(b, "HTTP/1.1 %d %s\r\n", r->status, gw_status_text(r->status));
	if (r->content_type != NULL)
		rc_buf_printf(b, "Content-Type: %s\r\n", r->content_type);
	if (content_length >= 0)
		rc_buf_printf(b, "Content-Length: %lld\r\n", content_length);
	if (r->cors_origin != NULL)
		rc_buf_printf(b, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", r->cors_origin);
	if (r->extra != NULL)
		rc_buf_puts(b, r->extra);
	rc_buf_puts(b, r->close ? "Connection: close\r\n\r\n" : "\r\n");
}

/* The buffer as a chunk (and the buffer released); NULL when either ran out of memory. */
static struct gw_chunk *response_chunk(struct rc_buf *b)
{
	struct gw_chunk *ch = b->err ? NULL : gw_chunk_dup(b->data, b->len);

	rc_buf_fini(b);
	return ch;
}

struct gw_chunk *gw_response_new(const struct gw_response *r, const char *body, size_t len)
{
	struct rc_buf b;

	rc_buf_init(&b);
	response_head(&b, r, (long long)len);
	rc_buf_append(&b, body, len);
	return response_chunk(&b);
}

void gw_response_error_json(struct rc_buf *b, const char *code, const char *message)
{
	rc_buf_puts(b, "{\"error\":{\"code\":");
	rc_buf_json_str(b, code, strlen(code));
	rc_buf_puts(b, ",\"message\":");
	rc_buf_json_str(b, message, strlen(message));
	rc_buf_puts(b, "}}\n");
}

struct gw_chunk *gw_response_stream_head(const char *cors_origin)
{
	const struct gw_response r = {
		.status = 200,
		.content_type = "text/event-stream; charset=utf-8",
		.extra = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n",
		.cors_origin = cors_origin,
		.close = true,
	};
	struct rc_buf b;

	rc_buf_init(&b);
	response_head(&b, &r, -1);
	rc_buf_puts(&b, RC_SSE_PREAMBLE);
	return response_chunk(&b);
}
