/*
 * sse.h - Server-Sent Events framing, per SPEC (Subscribe).
 * Pure functions; any thread.
 */
#ifndef RC_SSE_H
#define RC_SSE_H

#include <stddef.h>

/* The bytes every stream starts with. */
#define RC_SSE_PREAMBLE ": connected\nretry: 3000\n\n"
/* The heartbeat comment. */
#define RC_SSE_PING ": ping\n\n"

/* Bytes rc_sse_format_event writes for an id and a payload of these lengths. */
static inline size_t rc_sse_event_size(size_t id_len, size_t json_len)
{
	return 4 + id_len + 1 + 6 + json_len + 2; /* "id: " id "\n" "data: " json "\n\n" */
}

/*
 * Writes "id: <id>\ndata: <json>\n\n" into buf, which must hold
 * rc_sse_event_size(id_len, json_len) bytes; returns the bytes written.
 * json must be one line (compact serialization never has a raw newline).
 */
size_t rc_sse_format_event(char *buf, const char *id, size_t id_len, const char *json, size_t json_len);

#endif
