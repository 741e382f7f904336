/*
 * grant.h - the roomcast claims of a verified token, and what they grant.
 *
 * A token's payload (SPEC "Authorization") carries the standard claims and
 * one private claim:
 *
 *   "roomcast": {"read": ["lobby", "team-42:*"], "publish": ["lobby"], "firehose": false}
 *
 * Each entry of read/publish is an exact room id (1-128 bytes of
 * [A-Za-z0-9._:@-]) or a prefix pattern: such a prefix (0-128 bytes)
 * followed by one '*' at the end ("team-42:*" covers every room whose id
 * starts with "team-42:"; "*" alone covers every room). Global events (no
 * room_id) are covered by any grant for reading (SPEC: `read` covers global
 * events); publishing one needs the reserved entry "$global" in publish ('$'
 * is never part of a room id, and "*" covers rooms only). "firehose": true
 * allows the stream without a room list (every event), and so reading every
 * room. An entry that is none of these makes the whole token invalid: a typo
 * must not silently grant less, or more.
 *
 * A grant is one immutable allocation: built once per verified token, read
 * from any thread, freed with rc_grant_free. What a long-lived stream keeps
 * is smaller still: its rooms were checked when it opened, so it needs only
 * an rc_grant_stamp (expiry and the hashes that revocation matches).
 */
#ifndef RC_GRANT_H
#define RC_GRANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

/* The publish entry that allows global events (events without room_id). */
#define RC_GRANT_GLOBAL "$global"

/* Most entries in read or publish (a token is at most 8 KiB anyway). */
#define RC_GRANT_PATTERNS_MAX 1024

/* Longest sub and jti (bytes). */
#define RC_GRANT_ID_MAX 255

/* One entry of read or publish. */
struct rc_grant_pattern {
	const char *s; /* NUL-terminated, without the trailing '*' */
	uint16_t len;  /* strlen(s) */
	bool prefix;   /* the entry ended in '*': s is a prefix */
};

struct rc_grant {
	const char *sub;	     /* the token's subject; never NULL */
	const char *jti;	     /* the token's id, or NULL when it has none */
	int64_t exp;		     /* expiry, unix seconds */
	uint64_t sub_hash, jti_hash; /* rc_grant_id_hash of sub and jti (0: no jti) */
	bool firehose;		     /* "firehose": true */
	bool publish_global;	     /* publish holds RC_GRANT_GLOBAL */
	uint16_t n_read, n_publish;
	const struct rc_grant_pattern *read, *publish; /* publish without RC_GRANT_GLOBAL */
};

/*
 * What a stream keeps of its grant (24 bytes): when it expires, and whom a
 * revocation by subject or by token id has to match.
 */
struct rc_grant_stamp {
	int64_t exp;
	uint64_t sub_hash;
	uint64_t jti_hash; /* 0: the token had no jti, no revocation by id matches */
};

/*
 * Builds the grant of a token's claims (a JSON object): `sub` (required,
 * a string of 1-255 bytes), `jti` (optional, the same), `exp` (required, a
 * NumericDate) and `roomcast` (optional: without it the token grants
 * nothing; unknown members inside it are ignored). The checks of time,
 * audience and issuer are the verifier's (jwt.h), not done here.
 * Returns RC_OK with *out set (caller frees), RC_EINVAL with a reason in why
 * that names the claim ("roomcast.read[2] is not a room id or prefix
 * pattern"), or RC_ENOMEM.
 */
int rc_grant_parse(struct json_object *claims, struct rc_grant **out, char *why, size_t whylen);

/* Frees g (NULL is a no-op). */
void rc_grant_free(struct rc_grant *g);

/*
 * True when s[0..len) is a valid entry of read (publish: also "$global").
 * For tools that build claims (roomcast token).
 */
bool rc_grant_entry_valid(const char *s, size_t len, bool publish);

/* May a stream carry room[0..len)'s events? len 0 is a global event: always. */
bool rc_grant_can_read(const struct rc_grant *g, const char *room, size_t len);

/* May this token publish to room[0..len)? len 0 is a global event: needs "$global". */
bool rc_grant_can_publish(const struct rc_grant *g, const char *room, size_t len);

/* May this token open the firehose (a stream without a room list)? */
bool rc_grant_can_firehose(const struct rc_grant *g);

/* Fills *out from g. */
void rc_grant_stamp(const struct rc_grant *g, struct rc_grant_stamp *out);

/*
 * A 64-bit hash of an id (a sub or a jti), never 0: a revocation hashes the
 * id it names and compares with the stamps. FNV-1a: a collision can only
 * close a stream that then reconnects with its token, never open one.
 */
uint64_t rc_grant_id_hash(const char *s, size_t len);

/*
 * Reads the NumericDate claim name of claims (a JSON number of seconds; a
 * fraction is dropped). Returns RC_OK, RC_ENOTFOUND when it is absent, or
 * RC_EINVAL when it is not a number from 0 to 2^53.
 */
int rc_claims_numeric_date(struct json_object *claims, const char *name, int64_t *out);

#endif
