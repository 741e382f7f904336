#include "ackmem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"

/* One acknowledgement: on its hash chain and in the FIFO, oldest first. */
struct ack_entry {
	struct ack_entry *chain, *next;
	uint64_t epoch;
	size_t len;    /* of rec */
	uint8_t rec[]; /* rc_ack_put's record: gw, req, n, the ids */
};

struct ackmem {
	pthread_mutex_t lock;
	size_t max_bytes, bytes;
	struct ack_entry **buckets;
	size_t mask; /* buckets - 1 (a power of two) */
	struct ack_entry *head, *tail;
	uint64_t entries, forgotten, hits, misses;
};

/* What one entry costs against the bound. */
static size_t ackmem_cost(size_t len)
{
	return sizeof(struct ack_entry) + len;
}

static size_t ackmem_bucket(const struct ackmem *m, uint64_t gw, uint64_t req)
{
	uint64_t h = (gw ^ (req * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;

	return (size_t)(h >> 32 ^ h) & m->mask;
}

static bool ackmem_is(const struct ack_entry *e, uint64_t gw, uint64_t req)
{
	struct rc_ack_reader r = { e->rec, e->rec + e->len };
	struct rc_ack a;

	return rc_ack_next(&r, &a) && a.gw == gw && a.req == req;
}

struct ackmem *ackmem_new(size_t max_bytes)
{
	struct ackmem *m = calloc(1, sizeof(*m));
	size_t n = 64;

	if (m == NULL)
		return NULL;
	/* about one bucket per smallest entry that fits: chains stay short when the table is full */
	while (n < max_bytes / ackmem_cost(rc_ack_size(1)) && n < ((size_t)1 << 24))
		n <<= 1;
	m->buckets = calloc(n, sizeof(m->buckets[0]));
	if (m->buckets == NULL) {
		free(m);
		return NULL;
	}
	m->mask = n - 1;
	m->max_bytes = max_bytes;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

void ackmem_free(struct ackmem *m)
{
	if (m == NULL)
		return;
	while (m->head != NULL) {
		struct ack_entry *e = m->head;
		m->head = e->next;
		free(e);
	}
	free(m->buckets);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* Forgets the oldest entry. Under the lock. */
static void ackmem_drop_oldest(struct ackmem *m)
{
	struct ack_entry *e = m->head, **pp;
	struct rc_ack_reader r = { e->rec, e->rec + e->len };
	struct rc_ack a;

	rc_ack_next(&r, &a);
	for (pp = &m->buckets[ackmem_bucket(m, a.gw, a.req)]; *pp != e; pp = &(*pp)->chain)
		;
	*pp = e->chain;
	m->head = e->next;
	if (m->head == NULL)
		m->tail = NULL;
	m->bytes -= ackmem_cost(e->len);
	m->entries--;
	m->forgotten++;
	free(e);
}

int ackmem_put(struct ackmem *m, uint64_t gw, uint64_t req, uint64_t epoch, const uint64_t *gseqs, uint32_t n)
{
	size_t len = rc_ack_size(n), b;
	struct ack_entry *e;

	if (n == 0 || ackmem_cost(len) > m->max_bytes)
		return RC_OK;
	e = malloc(sizeof(*e) + len);
	if (e == NULL)
		return RC_ENOMEM;
	e->epoch = epoch;
	e->len = rc_ack_put(e->rec, gw, req, gseqs, n);
	e->next = NULL;
	pthread_mutex_lock(&m->lock);
	b = ackmem_bucket(m, gw, req);
	for (struct ack_entry *o = m->buckets[b]; o != NULL; o = o->chain) {
		if (ackmem_is(o, gw, req)) {
			pthread_mutex_unlock(&m->lock);
			free(e);
			return RC_OK;
		}
	}
	while (m->bytes + ackmem_cost(len) > m->max_bytes)
		ackmem_drop_oldest(m);
	b = ackmem_bucket(m, gw, req);
	e->chain = m->buckets[b];
	m->buckets[b] = e;
	if (m->tail != NULL)
		m->tail->next = e;
	else
		m->head = e;
	m->tail = e;
	m->bytes += ackmem_cost(len);
	m->entries++;
	pthread_mutex_unlock(&m->lock);
	return RC_OK;
}

size_t ackmem_get(struct ackmem *m, uint64_t gw, uint64_t req, uint8_t *buf, size_t cap, uint64_t *epoch)
{
	size_t len = 0;

	pthread_mutex_lock(&m->lock);
	for (struct ack_entry *e = m->buckets[ackmem_bucket(m, gw, req)]; e != NULL; e = e->chain) {
		if (ackmem_is(e, gw, req)) {
			if (e->len <= cap) {
				memcpy(buf, e->rec, e->len);
				*epoch = e->epoch;
				len = e->len;
			}
			break;
		}
	}
	if (len)
		m->hits++;
	else
		m->misses++;
	pthread_mutex_unlock(&m->lock);
	return len;
}

void ackmem_stats(struct ackmem *m, struct ackmem_stats *st)
{
	pthread_mutex_lock(&m->lock);
	st->entries = m->entries;
	st->bytes = m->bytes;
	st->limit = m->max_bytes;
	st->forgotten = m->forgotten;
	st->hits = m->hits;
	st->misses = m->misses;
	pthread_mutex_unlock(&m->lock);
}
