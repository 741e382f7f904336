/*
 * rewind.h - the request parameters that ask for history: a stream's
 * `rewind=N` or `rewind=<duration>`, and the history API's `before`, `after`,
 * `limit` and `order`. Pure functions: each error names the parameter.
 */
#ifndef GW_REWIND_H
#define GW_REWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"

/* A stream's rewind: the last `count` events, or those of the last `ms` (count then bounds them). */
struct gw_rewind {
	uint32_t count; /* 0 with ms 0: no rewind */
	uint64_t ms;
};

/*
 * Parses s[0..len): a count 0-max ("50"), or a duration with unit s, m or h
 * ("30s", "5m", "1h"; 1 s to 1000 h), which gives count = max. Returns 0 or
 * RC_EINVAL with why (naming rewind) set.
 */
int gw_rewind_parse(const char *s, size_t len, uint32_t max, struct gw_rewind *out, char *why, size_t whylen);

/* A history page: at most one of before/after is a cursor; ids are kept as given (the broker checks the epoch). */
struct gw_hparams {
	char before[RC_ID_MAX], after[RC_ID_MAX]; /* event ids, "" when absent */
	uint32_t limit;
	bool newest_first;
	bool order_set;
};

void gw_hparams_init(struct gw_hparams *p);

/*
 * Takes one query parameter (other keys are ignored). Returns 0 or
 * RC_EINVAL with why (naming the parameter) set.
 */
int gw_hparams_set(struct gw_hparams *p, const char *key, size_t klen, const char *val, size_t vlen, char *why,
		   size_t whylen);

/* After the last parameter: without `order`, oldest first when only `after` is given, else newest first. */
void gw_hparams_finish(struct gw_hparams *p);

#endif
