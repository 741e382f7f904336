/*
 * query.h - URL query strings: iteration over key=value pairs with
 * percent-decoding. Pure functions.
 */
#ifndef GW_QUERY_H
#define GW_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct gw_query {
	const char *p, *end;
};

/* Starts iterating over s[0..len) (the part after '?', without it). */
void gw_query_init(struct gw_query *q, const char *s, size_t len);

/*
 * Decodes the next pair into key and val (emptied first; '+' is a space).
 * Returns 1 for a pair, 0 at the end, RC_EINVAL for bad percent-encoding.
 */
int gw_query_next(struct gw_query *q, struct rc_buf *key, struct rc_buf *val);

/* Appends the percent-decoded s[0..n) to out; returns 0 or RC_EINVAL. */
int gw_pct_decode(const char *s, size_t n, bool plus_is_space, struct rc_buf *out);

#endif
