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

/*
 * The fast path for many ids of one epoch (a flush framed for SSE): write the
 * prefix once, then each id's gseq after it. The bytes are rc_id_format's;
 * no stdio, no allocation.
 *
 *   char id[RC_ID_MAX];
 *   size_t plen = rc_id_prefix(id, epoch);
 *   for each event: len = rc_id_format_gseq(id, plen, gseq);  (id holds the id)
 */

/* Writes "<epoch hex>-" into buf (not NUL-terminated); returns its length. */
size_t rc_id_prefix(char buf[RC_ID_MAX], uint64_t epoch);

/* Decimal digits of gseq (1 for 0): an id is its prefix's length plus this. */
size_t rc_id_gseq_len(uint64_t gseq);

/*
 * Writes gseq in decimal at buf + prefix_len, NUL-terminated, leaving the
 * prefix_len bytes before it (rc_id_prefix's) alone; returns the id's length,
 * prefix_len + rc_id_gseq_len(gseq).
 */
size_t rc_id_format_gseq(char buf[RC_ID_MAX], size_t prefix_len, uint64_t gseq);

#endif
