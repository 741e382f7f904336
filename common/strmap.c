#include "strmap.h"

#include <stdlib.h>
#include <string.h>

static uint32_t strmap_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

void rc_strmap_init(struct rc_strmap *m)
{
	memset(m, 0, sizeof(*m));
}

void rc_strmap_fini(struct rc_strmap *m)
{
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct rc_strmap_entry *e = m->buckets[i], *n;
		for (; e; e = n) {
			n = e->next;
			free(e);
		}
	}
	free(m->buckets);
	rc_strmap_init(m);
}

struct rc_strmap_entry *rc_strmap_get(const struct rc_strmap *m, const char *key, size_t len)
{
	uint32_t h;

	if (m->nbuckets == 0)
		return NULL;
	h = strmap_hash(key, len);
	for (struct rc_strmap_entry *e = m->buckets[h & (m->nbuckets - 1)]; e; e = e->next)
		if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
			return e;
	return NULL;
}

static int strmap_grow(struct rc_strmap *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
	struct rc_strmap_entry **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return -1;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct rc_strmap_entry *e = m->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
	return 0;
}

struct rc_strmap_entry *rc_strmap_upsert(struct rc_strmap *m, const char *key, size_t len, int *added)
{
	struct rc_strmap_entry *e = rc_strmap_get(m, key, len);
	size_t slot;

	*added = 0;
	if (e != NULL)
		return e;
	if (len > UINT16_MAX)
		return NULL;
	if (m->count >= m->nbuckets && strmap_grow(m) != 0 && m->nbuckets == 0)
		return NULL;
	e = malloc(sizeof(*e) + len + 1);
	if (e == NULL)
		return NULL;
	e->hash = strmap_hash(key, len);
	e->key_len = (uint16_t)len;
	e->value = NULL;
	memcpy(e->key, key, len);
	e->key[len] = '\0';
	slot = e->hash & (m->nbuckets - 1);
	e->next = m->buckets[slot];
	m->buckets[slot] = e;
	m->count++;
	*added = 1;
	return e;
}

void rc_strmap_del(struct rc_strmap *m, const char *key, size_t len)
{
	uint32_t h;
	struct rc_strmap_entry **pp;

	if (m->nbuckets == 0)
		return;
	h = strmap_hash(key, len);
	for (pp = &m->buckets[h & (m->nbuckets - 1)]; *pp; pp = &(*pp)->next) {
		struct rc_strmap_entry *e = *pp;
		if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0) {
			*pp = e->next;
			free(e);
			m->count--;
			return;
		}
	}
}

void rc_strmap_each(const struct rc_strmap *m, void (*fn)(struct rc_strmap_entry *e, void *arg), void *arg)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct rc_strmap_entry *e = m->buckets[i]; e; e = e->next)
			fn(e, arg);
}
