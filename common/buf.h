/*
 * buf.h - a growable byte buffer for building replies and frames.
 *
 * Appends never fail silently: on allocation failure the buffer remembers it
 * (rc_buf.err) and ignores further appends, so a builder can append freely and
 * check once at the end. Not thread-safe; one owner at a time.
 */
#ifndef RC_BUF_H
#define RC_BUF_H

#include <stddef.h>
#include <stdint.h>

struct rc_buf {
	char *data;
	size_t len, cap;
	int err; /* RC_ENOMEM once an append failed */
};

void rc_buf_init(struct rc_buf *b);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void rc_buf_fini(struct rc_buf *b);
/* Makes room for n more bytes; returns 0 or RC_ENOMEM. */
int rc_buf_reserve(struct rc_buf *b, size_t n);
void rc_buf_append(struct rc_buf *b, const void *p, size_t n);
void rc_buf_puts(struct rc_buf *b, const char *s);
void rc_buf_printf(struct rc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Appends s as a JSON string literal, quotes included. Any bytes: each byte
 * that is not part of a well-formed UTF-8 character becomes \ufffd, so the
 * literal is always valid UTF-8.
 */
void rc_buf_json_str(struct rc_buf *b, const char *s, size_t n);
/* Hands the storage to the caller (NUL-terminated) and empties the buffer. */
char *rc_buf_take(struct rc_buf *b, size_t *len);

#endif
