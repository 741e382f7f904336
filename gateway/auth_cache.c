#include "auth_cache.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "grant.h"
#include "list.h"

/* One kept answer: on its bucket's chain and on the cache's list in insertion order. */
struct cache_entry {
	struct cache_entry *chain;
	struct gw_list node;
	struct gw_auth_cache_key key;
	uint64_t born; /* ms */
	enum gw_authurl_verdict verdict;
	struct rc_grant *grant;
	char *challenge; /* NULL: none */
};

struct gw_auth_cache {
	struct cache_entry **buckets; /* allocated at the first put */
	size_t nbuckets;              /* a power of two */
	size_t n, max;
	uint64_t ttl_ms;
	struct gw_list order; /* oldest first */
};

/* Feeds a number (8 bytes, little-endian) to the digest. */
static void key_number(EVP_MD_CTX *ctx, uint64_t v)
{
	unsigned char n[8];

	for (int i = 0; i < 8; i++)
		n[i] = (unsigned char)(v >> (8 * i));
	EVP_DigestUpdate(ctx, n, sizeof(n));
}

/* Feeds one length-prefixed field to the digest. */
static void key_field(EVP_MD_CTX *ctx, const void *p, size_t len)
{
	key_number(ctx, len);
	if (len > 0)
		EVP_DigestUpdate(ctx, p, len);
}

void gw_auth_cache_key(struct gw_auth_cache_key *k, const struct gw_authurl_ask *ask, bool with_rooms)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;
	unsigned char tag = with_rooms ? (ask->nrooms > 0 ? 'R' : ask->firehose ? 'F' : 'N') : 'C';

	memset(k, 0, sizeof(*k));
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		/* no digest, no key: an all-zero key that no put will ever match (see put) */
		EVP_MD_CTX_free(ctx);
		return;
	}
	key_field(ctx, &tag, 1);
	key_field(ctx, ask->method, strlen(ask->method));
	key_field(ctx, ask->cookie, ask->cookie_len);
	key_field(ctx, ask->authorization, ask->authorization_len);
	if (with_rooms) {
		key_number(ctx, ask->nrooms);
		for (size_t i = 0; i < ask->nrooms; i++)
			key_field(ctx, ask->rooms[i], ask->room_lens[i]);
	}
	if (EVP_DigestFinal_ex(ctx, k->d, &len) != 1 || len != sizeof(k->d))
		memset(k, 0, sizeof(*k));
	EVP_MD_CTX_free(ctx);
}

/* The all-zero key says the digest failed: never stored, never found. */
static bool key_usable(const struct gw_auth_cache_key *k)
{
	static const struct gw_auth_cache_key zero;

	return memcmp(k, &zero, sizeof(zero)) != 0;
}

int gw_auth_cache_new(size_t max, uint64_t ttl_ms, struct gw_auth_cache **out)
{
	struct gw_auth_cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (c == NULL)
		return RC_ENOMEM;
	c->max = max ? max : 1;
	c->ttl_ms = ttl_ms;
	gw_list_init(&c->order);
	*out = c;
	return RC_OK;
}

static size_t cache_bucket(const struct gw_auth_cache *c, const struct gw_auth_cache_key *k)
{
	uint64_t h;

	memcpy(&h, k->d, sizeof(h)); /* a SHA-256: any 8 bytes are uniform */
	return (size_t)(h & (c->nbuckets - 1));
}

/* Unlinks e from its chain and the list, and frees it. */
static void cache_drop(struct gw_auth_cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = &c->buckets[cache_bucket(c, &e->key)];

	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	gw_list_remove(&e->node);
	rc_grant_free(e->grant);
	free(e->challenge);
	free(e);
	c->n--;
}

/* Drops the entries born ttl or more before now (they are at the head). */
static void cache_expire(struct gw_auth_cache *c, uint64_t now)
{
	struct gw_list *first;

	while ((first = gw_list_first(&c->order)) != NULL) {
		struct cache_entry *e = gw_container_of(first, struct cache_entry, node);
		if (now - e->born < c->ttl_ms && now >= e->born)
			break;
		cache_drop(c, e);
	}
}

static struct cache_entry *cache_find(struct gw_auth_cache *c, const struct gw_auth_cache_key *k)
{
	if (c->buckets == NULL)
		return NULL;
	for (struct cache_entry *e = c->buckets[cache_bucket(c, k)]; e != NULL; e = e->chain)
		if (memcmp(e->key.d, k->d, sizeof(k->d)) == 0)
			return e;
	return NULL;
}

bool gw_auth_cache_get(struct gw_auth_cache *c, const struct gw_auth_cache_key *key, uint64_t now,
		       struct gw_auth_cached *out)
{
	struct cache_entry *e;

	if (c->buckets == NULL || !key_usable(key))
		return false;
	cache_expire(c, now);
	e = cache_find(c, key);
	if (e == NULL)
		return false;
	out->verdict = e->verdict;
	out->grant = e->grant;
	out->challenge = e->challenge ? e->challenge : "";
	return true;
}

void gw_auth_cache_put(struct gw_auth_cache *c, const struct gw_auth_cache_key *key, uint64_t now,
		       enum gw_authurl_verdict verdict, struct rc_grant *grant, const char *challenge)
{
	struct cache_entry *e, *old;
	size_t b;

	if (verdict == GW_AUTHURL_UNAVAILABLE || !key_usable(key) || c->ttl_ms == 0)
		goto out_free;
	if (c->buckets == NULL) {
		size_t nb = 16;
		while (nb < c->max && nb < ((size_t)1 << 20))
			nb *= 2;
		c->buckets = calloc(nb, sizeof(*c->buckets));
		if (c->buckets == NULL)
			goto out_free;
		c->nbuckets = nb;
	}
	cache_expire(c, now);
	if ((old = cache_find(c, key)) != NULL)
		cache_drop(c, old);
	while (c->n >= c->max)
		cache_drop(c, gw_container_of(gw_list_first(&c->order), struct cache_entry, node));
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		goto out_free;
	if (challenge != NULL && *challenge != '\0' && (e->challenge = strdup(challenge)) == NULL) {
		free(e);
		goto out_free;
	}
	e->key = *key;
	e->born = now;
	e->verdict = verdict;
	e->grant = grant;
	b = cache_bucket(c, key);
	e->chain = c->buckets[b];
	c->buckets[b] = e;
	gw_list_insert_tail(&c->order, &e->node);
	c->n++;
	return;

out_free:
	rc_grant_free(grant);
}

size_t gw_auth_cache_count(const struct gw_auth_cache *c)
{
	return c->n;
}

void gw_auth_cache_free(struct gw_auth_cache *c)
{
	if (c == NULL)
		return;
	while (c->n > 0)
		cache_drop(c, gw_container_of(gw_list_first(&c->order), struct cache_entry, node));
	free(c->buckets);
	free(c);
}
