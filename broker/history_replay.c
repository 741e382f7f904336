/*
 * history_replay.c - the history's read side: a replay query resolved
 * under the read lock (oldest, rewind by count or time), the rooms' indexes
 * merged in gseq order either way, the result bounded by limit and bytes.
 * The history's state: history_int.h.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "history.h"
#include "history_int.h"

/* Index of the first retained gseq > after (r->len when none). */
static size_t hroom_search(const struct hroom *r, uint64_t after)
{
	size_t lo = 0, hi = r->len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (hroom_at(r, mid) <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* What the events of a result add up to so far. */
struct result_acc {
	size_t bytes;  /* json */
	size_t answer; /* json + room + HISTORY_ANSWER_OVERHEAD each */
};

static size_t hevent_answer_size(const struct hevent *ev)
{
	return (size_t)ev->json_len + ev->room_len + HISTORY_ANSWER_OVERHEAD;
}

/* True when ev does not fit in the result any more (limit, max_bytes or max_answer_bytes). */
static bool result_full(const struct history_query *q, const struct history_result *res, const struct result_acc *acc,
			const struct hevent *ev)
{
	if (res->count == q->limit)
		return true;
	if (res->count == 0)
		return false; /* at least one event */
	return (q->max_bytes != 0 && acc->bytes + ev->json_len > q->max_bytes) ||
	       (q->max_answer_bytes != 0 && acc->answer + hevent_answer_size(ev) > q->max_answer_bytes);
}

static void result_add(struct result_acc *acc, const struct hevent *ev)
{
	acc->bytes += ev->json_len;
	acc->answer += hevent_answer_size(ev);
}

static int result_push(struct history_result *res, size_t *cap, struct hevent *ev)
{
	if (res->count == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct hevent **p = realloc(res->events, ncap * sizeof(*p));
		if (p == NULL)
			return RC_ENOMEM;
		res->events = p;
		*cap = ncap;
	}
	hevent_ref(ev);
	res->events[res->count++] = ev;
	return RC_OK;
}

/* The rooms a query merges: each room's index and a position in it. */
struct replay_rooms {
	struct hroom **cur;
	size_t *pos;
	size_t k;
};

/* Collects q's rooms (each once; global last when asked). Caller holds the lock. */
static int replay_rooms_open(struct history *h, const struct history_query *q, struct replay_rooms *rr)
{
	size_t nmax = q->nrooms + 1;

	rr->k = 0;
	rr->cur = calloc(nmax, sizeof(*rr->cur));
	rr->pos = calloc(nmax, sizeof(*rr->pos));
	if (rr->cur == NULL || rr->pos == NULL)
		return RC_ENOMEM;
	for (size_t i = 0; i <= q->nrooms; i++) {
		struct hroom *r;
		bool dup = false;

		if (i == q->nrooms)
			r = q->with_global ? &h->global : NULL;
		else
			r = history_room(h, q->rooms[i], q->room_lens[i]);
		if (r == NULL)
			continue;
		for (size_t j = 0; j < rr->k; j++)
			dup |= rr->cur[j] == r;
		if (!dup)
			rr->cur[rr->k++] = r;
	}
	return RC_OK;
}

static void replay_rooms_close(struct replay_rooms *rr)
{
	free(rr->cur);
	free(rr->pos);
}

/* Positions each room at its first gseq > after. */
static void replay_rooms_seek(struct replay_rooms *rr, uint64_t after)
{
	for (size_t j = 0; j < rr->k; j++)
		rr->pos[j] = hroom_search(rr->cur[j], after);
}

/* The next gseq oldest first (0: none); advances past it. */
static uint64_t replay_rooms_next(struct replay_rooms *rr)
{
	size_t best = rr->k;
	uint64_t g = UINT64_MAX;

	for (size_t j = 0; j < rr->k; j++) {
		if (rr->pos[j] < rr->cur[j]->len && hroom_at(rr->cur[j], rr->pos[j]) < g) {
			g = hroom_at(rr->cur[j], rr->pos[j]);
			best = j;
		}
	}
	if (best == rr->k)
		return 0;
	rr->pos[best]++;
	return g;
}

/* The next gseq newest first (0: none); each position is one past the next event. */
static uint64_t replay_rooms_prev(struct replay_rooms *rr)
{
	size_t best = rr->k;
	uint64_t g = 0;

	for (size_t j = 0; j < rr->k; j++) {
		if (rr->pos[j] > 0 && hroom_at(rr->cur[j], rr->pos[j] - 1) > g) {
			g = hroom_at(rr->cur[j], rr->pos[j] - 1);
			best = j;
		}
	}
	if (best == rr->k)
		return 0;
	rr->pos[best]--;
	return g;
}

/* The newest gseq q may return: below before, at most the last. Caller holds the lock. */
static uint64_t replay_top(const struct history *h, const struct history_query *q)
{
	return q->before != 0 && q->before - 1 < h->last_gseq ? q->before - 1 : h->last_gseq;
}

/* The first retained gseq published at or after since (last_gseq + 1: none). Caller holds the lock. */
static uint64_t replay_since(const struct history *h, uint64_t since)
{
	uint64_t lo = h->first_gseq, hi = h->last_gseq + 1;

	/* wall-clock times, in publish order (a clock stepping back only blurs the edge) */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (h->ring[mid % h->max_events]->time_ms < since)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Rewind: the gseq before the last q->last matching events at or below top
 * (q->after when fewer match). Caller holds the lock.
 */
static uint64_t replay_last(const struct history_query *q, struct replay_rooms *rr, uint64_t top)
{
	uint64_t g = top + 1;

	if (top <= q->after)
		return q->after;
	if (q->rooms == NULL)
		return top - q->after > q->last ? top - q->last : q->after;
	replay_rooms_seek(rr, top);
	for (size_t n = 0; n < q->last; n++) {
		uint64_t p = replay_rooms_prev(rr);
		if (p == 0 || p <= q->after)
			return q->after;
		g = p;
	}
	return g - 1;
}

/* Adds the event gseq g to res; false when the result is full (more set) or on error (*rv set). */
static bool replay_take(struct history *h, const struct history_query *q, struct history_result *res,
			struct result_acc *acc, size_t *cap, uint64_t g, int *rv)
{
	struct hevent *ev = h->ring[g % h->max_events];

	if (result_full(q, res, acc, ev)) {
		res->more = true;
		return false;
	}
	*rv = result_push(res, cap, ev);
	if (*rv != RC_OK)
		return false;
	result_add(acc, ev);
	return true;
}

/* Fills res for q (after resolved). Caller holds the read lock. */
static int replay_walk(struct history *h, const struct history_query *q, struct replay_rooms *rr,
		       struct history_result *res)
{
	struct result_acc acc = { 0, 0 };
	uint64_t top = replay_top(h, q), g;
	size_t cap = 0;
	int rv = RC_OK;

	if (q->rooms == NULL && q->newest_first) {
		uint64_t low = q->after + 1 > h->first_gseq ? q->after + 1 : h->first_gseq;
		for (g = top; g >= low && g > 0; g--)
			if (!replay_take(h, q, res, &acc, &cap, g, &rv))
				break;
	} else if (q->rooms == NULL) {
		for (g = q->after + 1; g <= top; g++)
			if (!replay_take(h, q, res, &acc, &cap, g, &rv))
				break;
	} else if (q->newest_first) {
		replay_rooms_seek(rr, top);
		while ((g = replay_rooms_prev(rr)) != 0 && g > q->after)
			if (!replay_take(h, q, res, &acc, &cap, g, &rv))
				break;
	} else {
		replay_rooms_seek(rr, q->after);
		while ((g = replay_rooms_next(rr)) != 0 && g <= top)
			if (!replay_take(h, q, res, &acc, &cap, g, &rv))
				break;
	}
	return rv;
}

int history_replay(struct history *h, const struct history_query *q, struct history_result *res)
{
	struct history_query qq = *q;
	struct replay_rooms rr = { NULL, NULL, 0 };
	int rv = RC_OK;

	memset(res, 0, sizeof(*res));
	pthread_rwlock_rdlock(&h->lock);
	if (q->rooms != NULL)
		rv = replay_rooms_open(h, q, &rr);
	res->last_gseq = h->last_gseq;
	res->first_gseq = h->first_gseq;
	/* resolved under the lock: a publish may evict between a caller's stats and this call */
	if (q->oldest || (q->newest_first && q->after + 1 < h->first_gseq))
		qq.after = h->first_gseq - 1;
	if (q->since_ms != 0) {
		uint64_t a = replay_since(h, q->since_ms) - 1;
		if (a > qq.after)
			qq.after = a;
	}
	q = &qq;
	if (rv != RC_OK) {
		/* out of memory */
	} else if (q->after > h->last_gseq) {
		rv = RC_ERANGE;
	} else if (q->after + 1 < h->first_gseq) {
		rv = RC_EEVICTED;
	} else {
		if (q->last != 0)
			qq.after = replay_last(q, &rr, replay_top(h, q));
		rv = replay_walk(h, q, &rr, res);
	}
	pthread_rwlock_unlock(&h->lock);
	replay_rooms_close(&rr);
	if (rv != RC_OK)
		history_result_fini(res);
	return rv;
}

void history_result_fini(struct history_result *res)
{
	for (size_t i = 0; i < res->count; i++)
		hevent_unref(res->events[i]);
	free(res->events);
	res->events = NULL;
	res->count = 0;
}
