/*
 * strmap.h - a hash map from byte-string keys to pointers.
 *
 * Keys are copied into the entry; values are the caller's. Chained buckets,
 * grown by doubling when the load passes 1. Not thread-safe.
 */
#ifndef RC_STRMAP_H
#define RC_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct rc_strmap_entry {
	struct rc_strmap_entry *next;
	void *value;
	uint32_t hash;
	uint16_t key_len;
	char key[]; /* NUL-terminated copy */
};

struct rc_strmap {
	struct rc_strmap_entry **buckets;
	size_t nbuckets, count;
};

void rc_strmap_init(struct rc_strmap *m);
/* Frees the entries (not the values). */
void rc_strmap_fini(struct rc_strmap *m);
/* Returns the entry for key, or NULL. */
struct rc_strmap_entry *rc_strmap_get(const struct rc_strmap *m, const char *key, size_t len);
/*
 * Returns the entry for key, adding one with value NULL when absent
 * (*added set to 1). key_len must be < 65536. NULL on allocation failure.
 */
struct rc_strmap_entry *rc_strmap_upsert(struct rc_strmap *m, const char *key, size_t len, int *added);
/* Removes and frees the entry for key, if any. */
void rc_strmap_del(struct rc_strmap *m, const char *key, size_t len);
/* Calls fn for every entry; fn must not add or remove entries. */
void rc_strmap_each(const struct rc_strmap *m, void (*fn)(struct rc_strmap_entry *e, void *arg), void *arg);

#endif
