#include "idem.h"

#include <stdlib.h>

#include "error.h"
#include "strmap.h"

/* A remembered key; the map entry holds its name and points back here. */
struct idem_key {
	struct idem_key *next; /* the next younger key */
	uint64_t gseq, time_ms;
	struct rc_strmap_entry *e;
};

struct idem {
	uint64_t window_ms;
	size_t max_keys;
	struct rc_strmap map;	      /* key -> struct idem_key * */
	struct idem_key *head, *tail; /* oldest first */
	uint64_t bytes;		      /* entries and names */
	uint64_t hits, evicted, expired;
};

static uint64_t idem_key_cost(size_t len)
{
	return sizeof(struct idem_key) + sizeof(struct rc_strmap_entry) + len + 1;
}

struct idem *idem_new(uint64_t window_ms, size_t max_keys)
{
	struct idem *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->window_ms = window_ms;
	t->max_keys = max_keys ? max_keys : 1;
	rc_strmap_init(&t->map);
	return t;
}

void idem_free(struct idem *t)
{
	if (t == NULL)
		return;
	while (t->head != NULL) {
		struct idem_key *k = t->head;
		t->head = k->next;
		free(k);
	}
	rc_strmap_fini(&t->map);
	free(t);
}

uint64_t idem_window_ms(const struct idem *t)
{
	return t->window_ms;
}

/* Forgets the oldest key. */
static void idem_drop_oldest(struct idem *t)
{
	struct idem_key *k = t->head;

	t->head = k->next;
	if (t->head == NULL)
		t->tail = NULL;
	t->bytes -= idem_key_cost(k->e->key_len);
	rc_strmap_del(&t->map, k->e->key, k->e->key_len);
	free(k);
}

/* True when a key published at time_ms is past its window at now_ms. */
static bool idem_past(const struct idem *t, uint64_t time_ms, uint64_t now_ms)
{
	return time_ms + t->window_ms <= now_ms;
}

void idem_expire(struct idem *t, uint64_t now_ms)
{
	/* the FIFO is in publish order: a clock set back keeps keys longer, never drops a younger one first */
	while (t->head != NULL && idem_past(t, t->head->time_ms, now_ms)) {
		idem_drop_oldest(t);
		t->expired++;
	}
}

bool idem_get(const struct idem *t, const char *key, size_t len, uint64_t now_ms, uint64_t *gseq)
{
	struct rc_strmap_entry *e = rc_strmap_get(&t->map, key, len);
	const struct idem_key *k = e != NULL ? e->value : NULL;

	if (k == NULL || idem_past(t, k->time_ms, now_ms))
		return false;
	*gseq = k->gseq;
	return true;
}

int idem_put(struct idem *t, const char *key, size_t len, uint64_t gseq, uint64_t time_ms, uint64_t now_ms)
{
	struct rc_strmap_entry *e;
	struct idem_key *k;
	int added = 0;

	if (t->window_ms == 0 || idem_past(t, time_ms, now_ms))
		return RC_OK;
	e = rc_strmap_get(&t->map, key, len);
	if (e != NULL)
		return RC_OK; /* the first id stays (a key seen again on recovery, in the checkpoint and the log) */
	k = malloc(sizeof(*k));
	if (k == NULL)
		return RC_ENOMEM;
	e = rc_strmap_upsert(&t->map, key, len, &added);
	if (e == NULL) {
		free(k);
		return RC_ENOMEM;
	}
	k->next = NULL;
	k->gseq = gseq;
	k->time_ms = time_ms;
	k->e = e;
	e->value = k;
	if (t->tail != NULL)
		t->tail->next = k;
	else
		t->head = k;
	t->tail = k;
	t->bytes += idem_key_cost(len);
	while (t->map.count > t->max_keys) {
		idem_drop_oldest(t);
		t->evicted++;
	}
	return RC_OK;
}

void idem_each(const struct idem *t, uint64_t before_gseq,
	       void (*fn)(void *arg, const char *key, size_t len, uint64_t gseq, uint64_t time_ms), void *arg)
{
	for (const struct idem_key *k = t->head; k != NULL; k = k->next)
		if (k->gseq < before_gseq)
			fn(arg, k->e->key, k->e->key_len, k->gseq, k->time_ms);
}

void idem_hit(struct idem *t)
{
	t->hits++;
}

void idem_stats(const struct idem *t, struct idem_stats *st)
{
	st->keys = t->map.count;
	st->bytes = t->bytes + t->map.nbuckets * sizeof(*t->map.buckets);
	st->hits = t->hits;
	st->evicted = t->evicted;
	st->expired = t->expired;
}
