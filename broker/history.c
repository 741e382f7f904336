#include "history.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "error.h"
#include "event.h"
#include "frame.h"
#include "history_int.h"
#include "segment.h"
#include "store.h"

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void hevent_ref(struct hevent *ev)
{
	atomic_fetch_add_explicit(&ev->ref, 1, memory_order_relaxed);
}

void hevent_unref(struct hevent *ev)
{
	if (ev != NULL && atomic_fetch_sub_explicit(&ev->ref, 1, memory_order_acq_rel) == 1 &&
	    atomic_fetch_sub_explicit(&ev->slab->live, 1, memory_order_acq_rel) == 1)
		free(ev->slab);
}

size_t hevent_put_frame(uint8_t *buf, const struct hevent *ev)
{
	struct rc_frame_event fe = { ev->gseq, ev->rseq, ev->room, ev->room_len, ev->json, ev->json_len };

	return rc_frame_put_event(buf, &fe);
}

static size_t hevent_size(size_t json_len)
{
	/* keeps the next event of the slab aligned */
	return (sizeof(struct hevent) + json_len + 1 + 7) & ~(size_t)7;
}

static size_t hevent_cost(const struct hevent *ev)
{
	return hevent_size(ev->json_len) + sizeof(uint64_t);
}

/* Gives r's index cap slots (a power of two, >= r->len; 0: none). RC_ENOMEM leaves r as it was. */
static int hroom_resize(struct history *h, struct hroom *r, size_t cap)
{
	uint64_t *gs = NULL;

	if (cap > 0) {
		gs = malloc(cap * sizeof(*gs));
		if (gs == NULL)
			return RC_ENOMEM;
		for (size_t i = 0; i < r->len; i++)
			gs[i] = hroom_at(r, i);
	}
	free(r->gs);
	h->room_bytes = h->room_bytes - r->cap * sizeof(*gs) + cap * sizeof(*gs);
	r->gs = gs;
	r->cap = (uint32_t)cap;
	r->head = 0;
	return RC_OK;
}

/* Makes room in r's index for need gseqs in all. */
static int hroom_reserve(struct history *h, struct hroom *r, size_t need)
{
	size_t cap = r->cap ? r->cap : 1;

	if (need <= r->cap)
		return RC_OK;
	while (cap < need)
		cap *= 2;
	if (cap > UINT32_MAX / 2)
		return RC_ENOMEM;
	return hroom_resize(h, r, cap);
}

/* After an eviction: an index a quarter full halves, an empty one goes (never below what a publish reserved). */
static void hroom_trim(struct history *h, struct hroom *r)
{
	size_t need = (size_t)r->len + r->pending;

	if (need == 0)
		hroom_resize(h, r, 0);
	else if (need <= r->cap / 4)
		hroom_resize(h, r, r->cap / 2); /* out of memory: it stays as it is */
}

struct history *history_new(uint64_t epoch, size_t max_events, size_t max_bytes)
{
	struct history *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	if (max_events == 0)
		max_events = 1;
	h->ring = calloc(max_events, sizeof(*h->ring));
	h->keys = idem_new(HISTORY_IDEM_WINDOW_MS, HISTORY_IDEM_MAX_KEYS);
	if (h->ring == NULL || h->keys == NULL) {
		free(h->ring);
		idem_free(h->keys);
		free(h);
		return NULL;
	}
	pthread_rwlock_init(&h->lock, NULL);
	h->epoch = epoch;
	h->max_events = max_events;
	h->max_bytes = max_bytes;
	h->first_gseq = 1;
	h->last_gseq = 0;
	rc_strmap_init(&h->rooms);
	return h;
}

int history_set_idempotency(struct history *h, uint64_t window_ms, size_t max_keys)
{
	struct idem *t = idem_new(window_ms, max_keys);

	if (t == NULL)
		return RC_ENOMEM;
	pthread_rwlock_wrlock(&h->lock);
	idem_free(h->keys);
	h->keys = t;
	pthread_rwlock_unlock(&h->lock);
	return RC_OK;
}

void history_set_max_rooms(struct history *h, size_t max_rooms)
{
	pthread_rwlock_wrlock(&h->lock);
	h->max_rooms = max_rooms;
	pthread_rwlock_unlock(&h->lock);
}

static void history_free_room(struct rc_strmap_entry *e, void *arg)
{
	struct hroom *r = e->value;
	(void)arg;
	if (r != NULL)
		free(r->gs);
	free(r);
}

void history_free(struct history *h)
{
	if (h == NULL)
		return;
	for (uint64_t g = h->first_gseq; g <= h->last_gseq; g++)
		hevent_unref(h->ring[g % h->max_events]);
	free(h->ring);
	rc_strmap_each(&h->rooms, history_free_room, NULL);
	rc_strmap_fini(&h->rooms);
	free(h->global.gs);
	idem_free(h->keys);
	pthread_rwlock_destroy(&h->lock);
	free(h);
}

uint64_t history_epoch(const struct history *h)
{
	return h->epoch;
}

void history_set_epoch(struct history *h, uint64_t epoch)
{
	h->epoch = epoch;
}

void history_set_store(struct history *h, struct store *s)
{
	h->store = s;
}

void history_set_max_age(struct history *h, uint64_t max_age_ms)
{
	pthread_rwlock_wrlock(&h->lock);
	h->max_age_ms = max_age_ms;
	pthread_rwlock_unlock(&h->lock);
}

void history_set_sink(struct history *h, history_sink_fn fn, void *arg)
{
	pthread_rwlock_wrlock(&h->lock);
	h->sink = fn;
	h->sink_arg = arg;
	pthread_rwlock_unlock(&h->lock);
}

struct hroom *history_room(struct history *h, const char *room, size_t len)
{
	struct rc_strmap_entry *e;

	if (room == NULL)
		return &h->global;
	e = rc_strmap_get(&h->rooms, room, len);
	return e ? e->value : NULL;
}

/*
 * Finds or creates the room; *name is set to the name kept in the map entry.
 * RC_ETOOBIG when it would be a room beyond max_rooms; RC_ENOMEM.
 */
static int history_room_upsert(struct history *h, const char *room, size_t len, struct hroom **out, const char **name)
{
	struct rc_strmap_entry *e;
	int added;

	if (room == NULL) {
		*name = NULL;
		*out = &h->global;
		return RC_OK;
	}
	e = rc_strmap_get(&h->rooms, room, len);
	if (e == NULL && h->max_rooms != 0 && h->rooms.count >= h->max_rooms)
		return RC_ETOOBIG;
	if (e == NULL) {
		e = rc_strmap_upsert(&h->rooms, room, len, &added);
		if (e == NULL)
			return RC_ENOMEM;
		e->value = calloc(1, sizeof(struct hroom));
		if (e->value == NULL) {
			rc_strmap_del(&h->rooms, room, len);
			return RC_ENOMEM;
		}
		h->room_bytes += sizeof(*e) + len + 1 + sizeof(struct hroom);
	}
	*name = e->key;
	*out = e->value;
	return RC_OK;
}

/* Forgets the room named room if nothing was ever published in it (a failed publish created it). */
static void history_room_drop_unused(struct history *h, const char *room, size_t len)
{
	struct rc_strmap_entry *e = room != NULL ? rc_strmap_get(&h->rooms, room, len) : NULL;
	struct hroom *r = e != NULL ? e->value : NULL;

	if (r == NULL || r->rseq != 0)
		return;
	hroom_resize(h, r, 0);
	h->room_bytes -= sizeof(*e) + len + 1 + sizeof(struct hroom);
	free(r);
	rc_strmap_del(&h->rooms, room, len);
}

/* Drops the oldest retained event. Caller holds the write lock. */
static void history_evict_one(struct history *h)
{
	struct hevent *ev = h->ring[h->first_gseq % h->max_events];
	struct hroom *r = history_room(h, ev->room, ev->room_len);

	/* the oldest event overall is the oldest of its room */
	r->head = (r->head + 1) & (r->cap - 1);
	r->len--;
	hroom_trim(h, r);
	h->bytes -= hevent_cost(ev);
	h->ring[h->first_gseq % h->max_events] = NULL;
	h->first_gseq++;
	hevent_unref(ev);
}

/* True when the oldest retained event is past the max age at now. Caller holds the lock. */
static bool history_oldest_expired(const struct history *h, uint64_t now)
{
	return h->max_age_ms != 0 && h->first_gseq <= h->last_gseq &&
	       h->ring[h->first_gseq % h->max_events]->time_ms + h->max_age_ms <= now;
}

static void history_rooms_put(struct rc_strmap_entry *e, void *arg)
{
	struct hroom *r = e->value;
	struct rc_buf *b = arg;
	struct seg_record rec = { .type = SEG_REC_ROOM, .rseq = r->rseq, .room = e->key, .room_len = e->key_len };

	if (rc_buf_reserve(b, b->len + seg_record_size(e->key_len, 0, 0)) == RC_OK)
		b->len += seg_encode((uint8_t *)b->data + b->len, &rec);
}

static void history_keys_put(void *arg, const char *key, size_t len, uint64_t gseq, uint64_t time_ms)
{
	struct rc_buf *b = arg;
	struct seg_record rec = {
		.type = SEG_REC_KEY, .gseq = gseq, .time_ms = time_ms, .key = key, .key_len = (uint16_t)len
	};

	if (rc_buf_reserve(b, b->len + seg_record_size(0, len, 0)) == RC_OK)
		b->len += seg_encode((uint8_t *)b->data + b->len, &rec);
}

/*
 * Deletes the store's segments that hold only evicted events, with a
 * checkpoint of the rooms first, and of the keys whose event records go
 * with those segments (the rest are in the log).
 */
static void history_trim_store(struct history *h)
{
	struct rc_buf b;
	struct seg_record g = { .type = SEG_REC_ROOM, .rseq = h->global.rseq };

	if (h->store == NULL || !store_trim_due(h->store, h->first_gseq))
		return;
	rc_buf_init(&b);
	if (rc_buf_reserve(&b, SEG_HDR_SIZE + seg_record_size(0, 0, 0)) == RC_OK) {
		seg_put_header((uint8_t *)b.data, h->last_gseq + 1);
		b.len = SEG_HDR_SIZE;
		b.len += seg_encode((uint8_t *)b.data + b.len, &g);
		rc_strmap_each(&h->rooms, history_rooms_put, &b);
		idem_each(h->keys, h->first_gseq, history_keys_put, &b);
	}
	if (!b.err)
		store_trim(h->store, h->first_gseq, (const uint8_t *)b.data, b.len);
	rc_buf_fini(&b);
}

void history_expire(struct history *h, uint64_t now_ms)
{
	pthread_rwlock_wrlock(&h->lock);
	while (history_oldest_expired(h, now_ms))
		history_evict_one(h);
	idem_expire(h->keys, now_ms);
	history_trim_store(h);
	pthread_rwlock_unlock(&h->lock);
}

/* Undoes what a failed publish did to rooms[0..upto]. Caller holds the write lock. */
static void history_publish_undo(struct history *h, const struct hinput *in, struct hroom **rooms, size_t upto)
{
	for (size_t j = 0; j <= upto; j++)
		if (rooms[j] != NULL)
			rooms[j]->pending = 0;
	/* the rooms this batch created go again: they hold nothing and count toward max_rooms */
	for (size_t j = 0; j <= upto; j++)
		history_room_drop_unused(h, in[j].room, in[j].room_len);
}

/* Encodes the publish's records (gseqs from h->last_gseq + 1) into enc and appends them to the store. */
static int history_append_store(struct history *h, const struct hinput *in, struct hevent **evs, struct hroom **rooms,
				size_t n, uint8_t *enc)
{
	size_t off = 0;
	int rv;

	for (size_t i = 0; i < n; i++) {
		struct seg_record rec = {
			.type = SEG_REC_EVENT,
			.gseq = h->last_gseq + 1 + i,
			.rseq = ++rooms[i]->rseq,
			.time_ms = evs[i]->time_ms,
			.room = evs[i]->room,
			.room_len = evs[i]->room_len,
			.key = in[i].key,
			.key_len = (uint16_t)in[i].key_len,
			.json = evs[i]->json,
			.json_len = evs[i]->json_len,
		};
		off += seg_encode(enc + off, &rec);
	}
	for (size_t i = 0; i < n; i++)
		rooms[i]->rseq--; /* taken for real below, when nothing can fail any more */
	rv = store_append(h->store, enc, off, h->last_gseq + 1);
	return rv;
}

/*
 * Marks the events of a batch whose key an earlier event of the batch has:
 * src[i] is the first event with event i's key (i itself when none did).
 * Before the lock: it needs nothing of the history. RC_ENOMEM.
 */
static int history_batch_keys(const struct hinput *in, size_t n, size_t *src)
{
	struct rc_strmap seen;
	size_t keyed = 0;
	int rv = RC_OK;

	for (size_t i = 0; i < n; i++) {
		src[i] = i;
		keyed += in[i].key_len > 0;
	}
	if (keyed < 2)
		return RC_OK;
	rc_strmap_init(&seen);
	for (size_t i = 0; i < n && rv == RC_OK; i++) {
		struct rc_strmap_entry *e;
		int added = 0;

		if (in[i].key_len == 0)
			continue;
		e = rc_strmap_upsert(&seen, in[i].key, in[i].key_len, &added);
		if (e == NULL)
			rv = RC_ENOMEM;
		else if (added)
			e->value = (void *)(uintptr_t)i;
		else
			src[i] = (size_t)(uintptr_t)e->value;
	}
	rc_strmap_fini(&seen);
	return rv;
}

int history_publish(struct history *h, const struct hinput *in, size_t n, uint64_t *gseqs, size_t *published)
{
	uint64_t now = wall_ms();
	uint8_t *enc = NULL;
	struct hevent **evs = calloc(n ? n : 1, sizeof(*evs));
	struct hroom **rooms = calloc(n ? n : 1, sizeof(*rooms));
	struct hinput *fin = calloc(n ? n : 1, sizeof(*fin)); /* the events to publish: those without a known key */
	size_t *src = calloc(n ? n : 1, sizeof(*src)), *at = calloc(n ? n : 1, sizeof(*at));
	struct hslab *slab = NULL;
	size_t size = (sizeof(struct hslab) + 7) & ~(size_t)7, m = 0;
	bool keys = idem_window_ms(h->keys) > 0; /* set before publishing starts */
	char *p;
	int rv = RC_ENOMEM;

	if (published != NULL)
		*published = 0;
	if (evs == NULL || rooms == NULL || fin == NULL || src == NULL || at == NULL)
		goto out_free;
	if (keys && history_batch_keys(in, n, src) != RC_OK)
		goto out_free;
	if (!keys)
		for (size_t i = 0; i < n; i++)
			src[i] = i;
	for (size_t i = 0; i < n; i++)
		size += hevent_size(in[i].json_len);
	/* one allocation for the whole publish (events a known key answers take their place unused) */
	slab = malloc(size);
	if (slab == NULL)
		goto out_free;
	if (h->store != NULL) {
		size_t elen = 0;
		for (size_t i = 0; i < n; i++)
			elen += seg_record_size(in[i].room_len, keys ? in[i].key_len : 0, in[i].json_len);
		enc = malloc(elen ? elen : 1);
		if (enc == NULL)
			goto out_free;
	}
	p = (char *)slab + ((sizeof(struct hslab) + 7) & ~(size_t)7);
	for (size_t i = 0; i < n; i++) {
		evs[i] = (struct hevent *)p;
		p += hevent_size(in[i].json_len);
		atomic_init(&evs[i]->ref, 1);
		evs[i]->slab = slab;
		evs[i]->json_len = (uint32_t)in[i].json_len;
		evs[i]->time_ms = now;
		memcpy(evs[i]->json, in[i].json, in[i].json_len);
		evs[i]->json[in[i].json_len] = '\0';
	}

	pthread_rwlock_wrlock(&h->lock);
	/* keys seen within the window are answered with their gseq; the others are published, in order */
	if (keys)
		idem_expire(h->keys, now);
	for (size_t i = 0; i < n; i++) {
		if (src[i] != i)
			continue; /* the batch has this key already */
		if (keys && in[i].key_len > 0 && idem_get(h->keys, in[i].key, in[i].key_len, now, &gseqs[i])) {
			src[i] = SIZE_MAX;
			continue;
		}
		at[i] = m;
		fin[m] = in[i];
		if (!keys)
			fin[m].key_len = 0;
		evs[m] = evs[i];
		m++;
	}
	atomic_init(&slab->live, (unsigned)m);
	/* everything that can fail happens before the first gseq is assigned */
	for (size_t i = 0; i < m; i++) {
		rv = history_room_upsert(h, fin[i].room, fin[i].room_len, &rooms[i], &evs[i]->room);
		if (rv == RC_OK) {
			/* each room's index gets room for its own events of the batch */
			rooms[i]->pending++;
			rv = hroom_reserve(h, rooms[i], (size_t)rooms[i]->len + rooms[i]->pending);
		}
		if (rv != RC_OK) {
			history_publish_undo(h, fin, rooms, i);
			pthread_rwlock_unlock(&h->lock);
			goto out_free;
		}
		evs[i]->room_len = (uint16_t)fin[i].room_len;
	}
	/* on disk (or in the page cache) before any gseq is taken: a failed write publishes nothing */
	if (h->store != NULL && m > 0 && (rv = history_append_store(h, fin, evs, rooms, m, enc)) != RC_OK) {
		history_publish_undo(h, fin, rooms, m - 1);
		pthread_rwlock_unlock(&h->lock);
		goto out_free;
	}
	for (size_t i = 0; i < m; i++) {
		struct hevent *ev = evs[i];
		struct hroom *r = rooms[i];
		size_t cost = hevent_cost(ev);

		while (h->first_gseq <= h->last_gseq &&
		       (h->last_gseq - h->first_gseq + 1 >= h->max_events || h->bytes + cost > h->max_bytes ||
			history_oldest_expired(h, now)))
			history_evict_one(h);
		ev->gseq = ++h->last_gseq;
		ev->rseq = ++r->rseq;
		h->ring[ev->gseq % h->max_events] = ev;
		h->bytes += cost;
		/* the eviction loop may have shrunk r since the reserve, never below len + pending */
		r->gs[(r->head + r->len) & (r->cap - 1)] = ev->gseq;
		r->len++;
		r->pending--;
		if (h->sink != NULL)
			hevent_ref(ev);
		/* out of memory: the key is not remembered, and a retry with it would publish again */
		if (fin[i].key_len > 0)
			idem_put(h->keys, fin[i].key, fin[i].key_len, ev->gseq, now, now);
	}
	/* still under the lock: the sink sees publishes in gseq order */
	if (h->sink != NULL && m > 0)
		h->sink(h->sink_arg, evs, m);
	if (m > 0)
		history_trim_store(h);
	for (size_t i = 0; i < n; i++) {
		if (src[i] == i)
			gseqs[i] = evs[at[i]]->gseq;
		else if (src[i] != SIZE_MAX)
			gseqs[i] = gseqs[src[i]]; /* src[i] < i: already set */
		if (src[i] != i)
			idem_hit(h->keys);
	}
	pthread_rwlock_unlock(&h->lock);
	rv = RC_OK;
	if (published != NULL)
		*published = m;
	if (m > 0)
		slab = NULL; /* the history owns the events now */

out_free:
	free(enc);
	free(slab);
	free(evs);
	free(rooms);
	free(fin);
	free(src);
	free(at);
	return rv;
}

/*
 * Stores the event or room record rec as published (its gseq must follow
 * the last unless the history is empty). Caller holds the write lock or
 * is alone (recovery). *out (may be NULL): the event stored, NULL for a room record.
 */
static int history_store_record(struct history *h, const struct seg_record *rec, struct hevent **out)
{
	const char *room = rec->room_len ? rec->room : NULL;
	size_t max_rooms = h->max_rooms;
	struct hroom *r = NULL;
	struct hslab *slab;
	struct hevent *ev;
	const char *name;
	size_t off = (sizeof(struct hslab) + 7) & ~(size_t)7;
	int rv;

	if (out != NULL)
		*out = NULL;
	h->max_rooms = 0; /* what was published stays, whatever the limit is now */
	rv = history_room_upsert(h, room, rec->room_len, &r, &name);
	h->max_rooms = max_rooms;
	if (rv != RC_OK)
		return rv;
	if (rec->type == SEG_REC_ROOM) {
		if (rec->rseq > r->rseq)
			r->rseq = rec->rseq;
		return RC_OK;
	}
	if (h->first_gseq > h->last_gseq) {
		/* empty: the history goes on from this event */
		h->first_gseq = rec->gseq;
		h->last_gseq = rec->gseq - 1;
	}
	if (rec->gseq != h->last_gseq + 1)
		return RC_EINVAL;
	if (hroom_reserve(h, r, (size_t)r->len + 1) != RC_OK)
		return RC_ENOMEM;
	slab = malloc(off + hevent_size(rec->json_len));
	if (slab == NULL)
		return RC_ENOMEM;
	atomic_init(&slab->live, 1);
	ev = (struct hevent *)((char *)slab + off);
	atomic_init(&ev->ref, 1);
	ev->slab = slab;
	ev->gseq = rec->gseq;
	ev->rseq = rec->rseq;
	ev->time_ms = rec->time_ms;
	ev->room = name;
	ev->room_len = rec->room_len;
	ev->json_len = rec->json_len;
	memcpy(ev->json, rec->json, rec->json_len);
	ev->json[rec->json_len] = '\0';
	{
		size_t cost = hevent_cost(ev);
		uint64_t now = wall_ms();
		r->pending++; /* the eviction below must not shrink r's index below this event */
		while (h->first_gseq <= h->last_gseq &&
		       (h->last_gseq - h->first_gseq + 1 >= h->max_events || h->bytes + cost > h->max_bytes ||
			history_oldest_expired(h, now)))
			history_evict_one(h);
		r->pending--;
		h->last_gseq = ev->gseq;
		h->ring[ev->gseq % h->max_events] = ev;
		h->bytes += cost;
		r->gs[(r->head + r->len) & (r->cap - 1)] = ev->gseq;
		r->len++;
		if (ev->rseq > r->rseq)
			r->rseq = ev->rseq;
	}
	if (out != NULL) {
		hevent_ref(ev);
		*out = ev;
	}
	/* an event past the max age already: it goes at once (its room keeps the rseq) */
	while (history_oldest_expired(h, wall_ms()))
		history_evict_one(h);
	return RC_OK;
}

int history_restore(void *arg, const struct seg_record *rec)
{
	struct history *h = arg;

	if (rec->key_len > 0 && rc_key_valid(rec->key, rec->key_len) &&
	    idem_put(h->keys, rec->key, rec->key_len, rec->gseq, rec->time_ms, wall_ms()) != RC_OK)
		return RC_ENOMEM;
	if (rec->type == SEG_REC_KEY)
		return RC_OK;
	return history_store_record(h, rec, NULL);
}

int history_follow(struct history *h, const struct seg_record *rec, bool *applied)
{
	struct hevent *ev = NULL;
	int rv = RC_OK;

	*applied = false;
	pthread_rwlock_wrlock(&h->lock);
	if (rec->gseq <= h->last_gseq && h->last_gseq != 0)
		goto out_unlock; /* already read */
	if (rec->gseq > h->last_gseq + 1 && h->first_gseq <= h->last_gseq) {
		/* a hole: the ring cannot hold one, so it starts again after it */
		while (h->first_gseq <= h->last_gseq)
			history_evict_one(h);
	}
	rv = history_store_record(h, rec, h->sink != NULL ? &ev : NULL);
	if (rv == RC_OK) {
		*applied = true;
		if (ev != NULL)
			h->sink(h->sink_arg, &ev, 1); /* under the lock: the sink sees gseq order */
	}
out_unlock:
	pthread_rwlock_unlock(&h->lock);
	return rv;
}

void history_restore_next(struct history *h, uint64_t next_gseq)
{
	if (h->first_gseq > h->last_gseq && next_gseq > h->last_gseq + 1) {
		h->first_gseq = next_gseq;
		h->last_gseq = next_gseq - 1;
	}
}

void history_stats(struct history *h, struct history_stats *st)
{
	pthread_rwlock_rdlock(&h->lock);
	st->last_gseq = h->last_gseq;
	st->first_gseq = h->first_gseq;
	st->events = h->first_gseq <= h->last_gseq ? h->last_gseq - h->first_gseq + 1 : 0;
	st->bytes = h->bytes;
	st->rooms = h->rooms.count;
	st->room_bytes = h->room_bytes + h->rooms.nbuckets * sizeof(*h->rooms.buckets);
	idem_stats(h->keys, &st->keys);
	st->idem_window_ms = idem_window_ms(h->keys);
	pthread_rwlock_unlock(&h->lock);
}
