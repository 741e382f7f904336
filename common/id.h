/*
 * id.h - public event ids: "<epoch hex>-<gseq decimal>", e.g. "6f1c2a9e-1042".
 *
 * The epoch is lower-case hex without leading zeros, the gseq decimal without
 * leading zeros ("0" alone means "before the first event"). Formatting and
 * parsing are exact inverses, so an id string compares equal to its re-format.
 * Pure functions; callable from any thread.
 */
#ifndef RC_ID_H
#define RC_ID_H

#include <stddef.h>
#include <stdint.h>

/* Enough for 16 hex digits, '-', 20 decimal digits and a NUL. */
#define RC_ID_MAX 40

struct rc_id {
	uint64_t epoch;
	uint64_t gseq;
};

/* Writes the id of (epoch, gseq) into buf, NUL-terminated; returns its length. */
size_t rc_id_format(char buf[RC_ID_MAX], uint64_t epoch, uint64_t gseq);

/*
 * Parses exactly len bytes of s. Rejects empty parts, signs, spaces, upper-case
 * hex, leading zeros, overflow, an epoch of 0 and trailing bytes.
 * Returns 0 or RC_EINVAL / RC_ERANGE.
 */
int rc_id_parse(const char *s, size_t len, struct rc_id *out);

/* Formats only the epoch (lower-case hex); returns its length. */
size_t rc_epoch_format(char buf[RC_ID_MAX], uint64_t epoch);

#endif
