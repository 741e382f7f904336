/*
 * sse_parser.h - incremental Server-Sent Events line parser.
 *
 * Feeds arbitrary fragments of an event-stream body and reports each field
 * line and each blank line (event dispatch) through callbacks. Complete lines
 * are reported straight from the caller's fragment; only a line split across
 * fragments is copied, into a fixed buffer the caller provides, so parsing
 * never allocates. A split line longer than that buffer is truncated to its
 * first bytes (counted in oversize_lines), which still lets a scanner find
 * fields near the start of a large JSON payload. Line ends: "\n" and "\r\n".
 * Not thread-safe; one parser per connection.
 */
#ifndef RB_SSE_PARSER_H
#define RB_SSE_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rb_sse_field {
	RB_SSE_DATA,
	RB_SSE_ID,
	RB_SSE_EVENT,
	RB_SSE_RETRY,
	RB_SSE_COMMENT, /* value is the text after ':' and one optional space */
	RB_SSE_OTHER,
};

struct rb_sse_handler {
	/* A field line; value points into parser or caller memory, valid only during the call. */
	void (*on_field)(void *ctx, enum rb_sse_field field, const char *value, size_t len);
	/* A blank line: the end of an event (or of a comment block). */
	void (*on_dispatch)(void *ctx);
};

struct rb_sse_parser {
	char *line; /* caller's buffer for a line split across fragments */
	size_t cap;
	size_t len;
	bool truncated; /* current partial line overflowed cap */
	uint64_t oversize_lines;
};

/* Sets p up over buf (cap bytes, owned by the caller and outliving p). */
void rb_sse_parser_init(struct rb_sse_parser *p, char *buf, size_t cap);

/* Parses len bytes of body; calls h's callbacks with ctx for every complete line. */
void rb_sse_parser_feed(struct rb_sse_parser *p, const char *data, size_t len,
			const struct rb_sse_handler *h, void *ctx);

#endif
