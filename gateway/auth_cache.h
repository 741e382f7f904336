/*
 * auth_cache.h - the answers of the --auth url application, kept for
 * --auth-cache-ms (at most --auth-cache-entries of them per loop).
 *
 * An answer is kept under the credential that earned it: a SHA-256 of the
 * client's method, Cookie and Authorization, and, unless the answer named
 * the rooms itself (a grant in its body), the rooms asked for. So an answer
 * without a grant is reused only for the same rooms, and one with a grant
 * for any rooms (the grant is then checked against them). A digest rather
 * than the headers themselves keeps an entry small whatever the cookie's
 * size, and a cryptographic one means no client can make its credential
 * look like another's.
 *
 * Every entry lives the same time, so the entries in insertion order are in
 * expiry order: a lookup drops the expired ones from the head, and a full
 * cache drops its oldest. Allows, 401s and 403s are kept; unavailable
 * answers never are. Loop thread only (one cache per loop).
 */
#ifndef GW_AUTH_CACHE_H
#define GW_AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth_url_http.h"

struct rc_grant;
struct gw_auth_cache;

struct gw_auth_cache_key {
	unsigned char d[32];
};

/*
 * The key of a check: method, cookie and authorization, and with with_rooms
 * the rooms (nrooms 0: the firehose). Fields are length-prefixed, so no two
 * different inputs share their bytes.
 */
void gw_auth_cache_key(struct gw_auth_cache_key *k, const struct gw_authurl_ask *ask, bool with_rooms);

/* A cache of at most max entries, each kept ttl_ms. RC_OK or RC_ENOMEM. */
int gw_auth_cache_new(size_t max, uint64_t ttl_ms, struct gw_auth_cache **out);

/* Frees the cache and every grant it holds (NULL: nothing). */
void gw_auth_cache_free(struct gw_auth_cache *c);

/* A kept answer; valid until the next put or lookup. */
struct gw_auth_cached {
	enum gw_authurl_verdict verdict;
	const struct rc_grant *grant; /* NULL: no grant (what was asked is allowed) */
	const char *challenge;        /* a 401's WWW-Authenticate, "" when none */
};

/* Whether key is kept and younger than the ttl at now (ms); *out when it is. */
bool gw_auth_cache_get(struct gw_auth_cache *c, const struct gw_auth_cache_key *key, uint64_t now,
		       struct gw_auth_cached *out);

/*
 * Keeps an answer under key from now (replacing one kept under it). Takes
 * ownership of grant (freed at once when the entry cannot be made);
 * challenge is copied. An unavailable verdict is not kept.
 */
void gw_auth_cache_put(struct gw_auth_cache *c, const struct gw_auth_cache_key *key, uint64_t now,
		       enum gw_authurl_verdict verdict, struct rc_grant *grant, const char *challenge);

/* Entries kept (expired ones included until a lookup drops them). */
size_t gw_auth_cache_count(const struct gw_auth_cache *c);

#endif
