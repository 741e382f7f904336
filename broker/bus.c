#include "bus.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "event.h"
#include "frame.h"
#include "le.h"
#include "listener.h"
#include "log.h"

struct bus_slot;
struct bus_group;

struct bus {
	struct bus_config cfg;
	nng_socket sock;
	char *url; /* the address bound (listener_url) */
	pthread_t thread;

	pthread_mutex_t mtx; /* guards q, qlen, qcap, stopping */
	pthread_cond_t cv;
	struct hevent **q;
	size_t qlen, qcap;
	bool stopping;
	bool tick_now; /* a subscriber connected: tell it where the sequence is */
	unsigned begun; /* publishes between bus_publish_begin and _end: the last to end sends */
	bool sending;   /* a thread (the sender, or a publisher in bus_publish_end) sends: one at a time, in order */
	uint8_t *acks;	/* acknowledgement records waiting for an index (frame.h, rc_ack_put) */
	size_t acks_len, acks_cap;

	/* owned by the thread that sends (b->sending) */
	uint64_t last_sent;
	uint64_t last_send_ms;       /* CLOCK_MONOTONIC ms of the last flush: ticks come tick_ms after it */
	struct hevent **spare_q;     /* the empty arrays a send swaps in for the queue and the acks */
	size_t spare_qcap, spare_acks_cap;
	uint8_t *spare_acks;
	struct bus_slot *slots; /* scratch of a flush */
	struct bus_group *groups;
	size_t slots_cap;

	/* written by the sender thread, read by anyone */
	_Atomic uint64_t frames, events, bytes, ticks, send_errors, acks_sent, ack_ticks;
};

/* Acknowledgement records taken for one send: they end the last index of it. */
struct bus_acks {
	const uint8_t *data;
	size_t len;
};

/* An event of a flush, for grouping the flush by room. */
struct bus_slot {
	const char *room; /* interned by the history: one pointer per room */
	uint32_t i;
};

/* A room's events in a flush: slots[first..first+n). */
struct bus_group {
	size_t first, n;
};

static int bus_slot_cmp(const void *a, const void *b)
{
	const struct bus_slot *x = a, *y = b;
	uintptr_t rx = (uintptr_t)x->room, ry = (uintptr_t)y->room;

	if (rx != ry)
		return rx < ry ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

int bus_control(struct bus *b, const char *body, size_t len)
{
	nng_msg *msg;

	if (nng_msg_alloc(&msg, RC_BUS_TOPIC_CONTROL_LEN + len) != 0)
		return RC_ENOMEM;
	memcpy(nng_msg_body(msg), RC_BUS_TOPIC_CONTROL, RC_BUS_TOPIC_CONTROL_LEN);
	memcpy((char *)nng_msg_body(msg) + RC_BUS_TOPIC_CONTROL_LEN, body, len);
	if (b->cfg.tap != NULL)
		b->cfg.tap(b->cfg.tap_arg, nng_msg_body(msg), nng_msg_len(msg));
	if (nng_sendmsg(b->sock, msg, 0) != 0) {
		nng_msg_free(msg);
		b->send_errors++;
		return RC_EIO;
	}
	return RC_OK;
}

static int bus_send_msg(struct bus *b, nng_msg *msg, size_t events)
{
	size_t len = nng_msg_len(msg);

	if (b->cfg.tap != NULL)
		b->cfg.tap(b->cfg.tap_arg, nng_msg_body(msg), len);
	/* pub0 never blocks: a subscriber whose queue is full loses the message */
	if (nng_sendmsg(b->sock, msg, 0) != 0) {
		nng_msg_free(msg);
		b->send_errors++;
		return RC_EIO;
	}
	b->frames++;
	b->events += events;
	b->bytes += len;
	return RC_OK;
}

/* One room's events of a flush (slots of one group), under the room's topic. */
static void bus_send_room(struct bus *b, struct hevent **evs, const struct bus_slot *slots, size_t n, uint64_t last)
{
	struct rc_frame_hdr hdr = { .epoch = b->cfg.epoch, .last_gseq = last, .count = (uint32_t)n };
	const struct hevent *ev0 = evs[slots[0].i];
	char topic[RC_BUS_TOPIC_MAX];
	size_t tlen = rc_bus_topic(topic, ev0->room, ev0->room_len), size = tlen + RC_FRAME_HDR_SIZE;
	nng_msg *msg;
	uint8_t *p;

	for (size_t k = 0; k < n; k++)
		size += rc_frame_event_size(evs[slots[k].i]->room_len, evs[slots[k].i]->json_len);
	if (nng_msg_alloc(&msg, size) != 0) {
		b->send_errors++;
		return; /* the gateways see the count missing in the index and replay */
	}
	p = nng_msg_body(msg);
	memcpy(p, topic, tlen);
	p += tlen;
	rc_frame_put_header(p, &hdr);
	p += RC_FRAME_HDR_SIZE;
	for (size_t k = 0; k < n; k++)
		p += hevent_put_frame(p, evs[slots[k].i]);
	bus_send_msg(b, msg, n);
}

/*
 * A message under the index topic with the index header (hdr, first) and room
 * for more bytes after it; *body points there. NULL (counted) if out of memory:
 * the next index shows the gap.
 */
static nng_msg *bus_index_msg(struct bus *b, const struct rc_frame_hdr *hdr, uint64_t first, size_t more,
			      const struct bus_acks *acks, uint8_t **body)
{
	struct rc_frame_hdr h = *hdr;
	size_t size = RC_BUS_TOPIC_INDEX_LEN + RC_INDEX_HDR_SIZE + more;
	nng_msg *msg;
	uint8_t *p;

	if (acks != NULL && acks->len > 0)
		h.flags |= RC_FRAME_ACKS;
	if (nng_msg_alloc(&msg, size + (h.flags & RC_FRAME_ACKS ? acks->len + 4 : 0)) != 0) {
		b->send_errors++;
		return NULL;
	}
	p = nng_msg_body(msg);
	memcpy(p, RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN);
	rc_index_put_header(p + RC_BUS_TOPIC_INDEX_LEN, &h, first);
	if (h.flags & RC_FRAME_ACKS) {
		/* the block ends the message: records, then their length */
		memcpy(p + size, acks->data, acks->len);
		rc_le_put32(p + size + acks->len, (uint32_t)acks->len);
	}
	*body = p + RC_BUS_TOPIC_INDEX_LEN + RC_INDEX_HDR_SIZE;
	return msg;
}

/* The index closing a flush first..last (ngroups 0: an idle tick). */
static void bus_send_index(struct bus *b, uint8_t flags, uint64_t first, uint64_t last, struct hevent **evs,
			   const struct bus_slot *slots, const struct bus_group *groups, size_t ngroups,
			   const struct bus_acks *acks)
{
	struct rc_frame_hdr hdr = {
		.epoch = b->cfg.epoch,
		.last_gseq = last,
		.count = (uint32_t)ngroups,
		.flags = RC_FRAME_INDEX | flags,
	};
	size_t size = 0;
	nng_msg *msg;
	uint8_t *p;

	for (size_t g = 0; g < ngroups; g++)
		size += rc_index_entry_size(evs[slots[groups[g].first].i]->room_len);
	if ((msg = bus_index_msg(b, &hdr, first, size, acks, &p)) == NULL)
		return;
	for (size_t g = 0; g < ngroups; g++) {
		const struct hevent *ev = evs[slots[groups[g].first].i];
		struct rc_index_entry e = { .room = ev->room, .room_len = ev->room_len, .events = (uint32_t)groups[g].n };
		p += rc_index_put_entry(p, &e);
	}
	if (bus_send_msg(b, msg, 0) == RC_OK && ngroups == 0)
		b->ticks++;
}

/* Sends evs[0..n) (bytes of frame events) as one message to every gateway: the index, then the events. */
static void bus_send_whole(struct bus *b, struct hevent **evs, size_t n, size_t bytes, const struct bus_acks *acks)
{
	uint64_t first = evs[0]->gseq, last = evs[n - 1]->gseq;
	struct rc_frame_hdr ihdr = { .epoch = b->cfg.epoch,
				     .last_gseq = last,
				     .flags = RC_FRAME_INDEX | RC_FRAME_WHOLE };
	struct rc_frame_hdr fhdr = { .epoch = b->cfg.epoch, .last_gseq = last, .count = (uint32_t)n };
	nng_msg *msg;
	uint8_t *p;

	if ((msg = bus_index_msg(b, &ihdr, first, RC_FRAME_HDR_SIZE + bytes, acks, &p)) == NULL)
		return;
	rc_frame_put_header(p, &fhdr);
	p += RC_FRAME_HDR_SIZE;
	for (size_t i = 0; i < n; i++)
		p += hevent_put_frame(p, evs[i]);
	bus_send_msg(b, msg, n);
}

/* Sends evs[0..n) (bytes of frame events) as one flush: whole if small, else a frame per room, then the index. */
static void bus_send_flush(struct bus *b, struct hevent **evs, size_t n, size_t bytes, const struct bus_acks *acks)
{
	size_t ngroups = 0;

	if (bytes <= b->cfg.whole_bytes) {
		bus_send_whole(b, evs, n, bytes, acks);
		return;
	}

	if (n > b->slots_cap) {
		struct bus_slot *s = realloc(b->slots, n * sizeof(*s));
		struct bus_group *g = realloc(b->groups, n * sizeof(*g));
		if (s != NULL)
			b->slots = s;
		if (g != NULL)
			b->groups = g;
		if (s == NULL || g == NULL) {
			rc_log_error("bus flush allocation failed; events left to gap repair", "first_gseq=%llu n=%zu",
				     (unsigned long long)evs[0]->gseq, n);
			return;
		}
		b->slots_cap = n;
	}
	for (size_t i = 0; i < n; i++)
		b->slots[i] = (struct bus_slot){ .room = evs[i]->room, .i = (uint32_t)i };
	qsort(b->slots, n, sizeof(*b->slots), bus_slot_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || b->slots[i].room != b->slots[i - 1].room)
			b->groups[ngroups++] = (struct bus_group){ .first = i };
		b->groups[ngroups - 1].n++;
	}
	for (size_t g = 0; g < ngroups; g++)
		bus_send_room(b, evs, b->slots + b->groups[g].first, b->groups[g].n, evs[n - 1]->gseq);
	bus_send_index(b, 0, evs[0]->gseq, evs[n - 1]->gseq, evs, b->slots, b->groups, ngroups, acks);
}

/*
 * Sends evs[0..n) as flushes of at most max_frame_bytes of events, the
 * acknowledgements in the last index (n = 0: in a tick), then drops the refs.
 */
static void bus_flush(struct bus *b, struct hevent **evs, size_t n, const struct bus_acks *acks)
{
	size_t start = 0;

	if (acks->len > 0) {
		for (size_t off = 0; off < acks->len; off += rc_ack_size(rc_le_get32(acks->data + off + 16)))
			b->acks_sent++;
		if (n == 0) {
			b->ack_ticks++;
			bus_send_index(b, RC_FRAME_TICK, b->last_sent + 1, b->last_sent, NULL, NULL, NULL, 0, acks);
			return;
		}
	}

	while (start < n) {
		size_t size = 0, end = start;
		while (end < n) {
			size_t es = rc_frame_event_size(evs[end]->room_len, evs[end]->json_len);
			if (end > start && size + es > b->cfg.max_frame_bytes)
				break;
			size += es;
			end++;
		}
		bus_send_flush(b, evs + start, end - start, size, end == n ? acks : NULL);
		b->last_sent = evs[end - 1]->gseq;
		start = end;
	}
	for (size_t i = 0; i < n; i++)
		hevent_unref(evs[i]);
}

int bus_tick_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int rv;

	if ((rv = pthread_condattr_init(&ca)) != 0)
		return rv;
	if ((rv = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) == 0)
		rv = pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return rv;
}

void bus_tick_deadline(int ms, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static uint64_t bus_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Called with b->mtx held and b->sending taken by the caller: sends
 * everything queued, and what is queued meanwhile, then gives b->sending
 * back. Each round swaps the queue and the acknowledgements for the spare
 * (empty) arrays, so publishers go on at once.
 */
static void bus_drain_locked(struct bus *b)
{
	while (b->qlen > 0 || b->acks_len > 0) {
		struct hevent **q = b->q;
		size_t n = b->qlen, qcap = b->qcap, acap = b->acks_cap;
		struct bus_acks taken = { b->acks, b->acks_len };

		b->q = b->spare_q;
		b->qcap = b->spare_qcap;
		b->qlen = 0;
		b->acks = b->spare_acks;
		b->acks_cap = b->spare_acks_cap;
		b->acks_len = 0;
		pthread_mutex_unlock(&b->mtx);
		bus_flush(b, q, n, &taken);
		b->last_send_ms = bus_now_ms();
		pthread_mutex_lock(&b->mtx);
		b->spare_q = q;
		b->spare_qcap = qcap;
		b->spare_acks = (uint8_t *)taken.data;
		b->spare_acks_cap = acap;
	}
	b->sending = false;
	if (b->stopping || b->tick_now)
		pthread_cond_broadcast(&b->cv); /* the sender thread waits for us: to stop, or to tick */
}

/* Called with b->mtx held, b->sending free: an idle tick. */
static void bus_tick_locked(struct bus *b)
{
	b->sending = true;
	pthread_mutex_unlock(&b->mtx);
	bus_send_index(b, RC_FRAME_TICK, b->last_sent + 1, b->last_sent, NULL, NULL, NULL, 0, NULL);
	b->last_send_ms = bus_now_ms();
	pthread_mutex_lock(&b->mtx);
	b->sending = false;
}

static void *bus_thread(void *arg)
{
	struct bus *b = arg;

	pthread_mutex_lock(&b->mtx);
	for (;;) {
		while (!b->stopping && (b->sending || (b->qlen == 0 && b->acks_len == 0))) {
			struct timespec ts;
			uint64_t idle;
			int rv;
			if (b->tick_now && !b->sending) {
				b->tick_now = false;
				bus_tick_locked(b);
				continue;
			}
			/* a tick when nothing was sent for tick_ms (publishers may have sent meanwhile) */
			idle = bus_now_ms() - b->last_send_ms;
			bus_tick_deadline(idle < (uint64_t)b->cfg.tick_ms ? b->cfg.tick_ms - (int)idle : b->cfg.tick_ms, &ts);
			rv = pthread_cond_timedwait(&b->cv, &b->mtx, &ts);
			if (rv == ETIMEDOUT && !b->sending && b->qlen == 0 && b->acks_len == 0 && !b->stopping &&
			    bus_now_ms() - b->last_send_ms >= (uint64_t)b->cfg.tick_ms)
				bus_tick_locked(b);
		}
		if (b->sending) {
			/* stopping while a publisher sends: it wakes us when done */
			pthread_cond_wait(&b->cv, &b->mtx);
			continue;
		}
		if (b->qlen == 0 && b->acks_len == 0)
			break; /* stopping, and everything went */
		b->sending = true;
		bus_drain_locked(b);
	}
	pthread_mutex_unlock(&b->mtx);
	free(b->spare_q);
	free(b->spare_acks);
	free(b->slots);
	free(b->groups);
	return NULL;
}

void bus_tick_soon(struct bus *b)
{
	pthread_mutex_lock(&b->mtx);
	b->tick_now = true;
	pthread_mutex_unlock(&b->mtx);
	pthread_cond_signal(&b->cv);
}

/* nng thread: a gateway connected. A tick now tells it the epoch and the last gseq at once. */
static void bus_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	(void)ev;
	bus_tick_soon(arg);
}

size_t bus_max_message_bytes(const struct bus_config *cfg)
{
	/* a flush's events (or one larger event); its index is smaller than its events' frames */
	size_t one = rc_frame_event_size(RC_ROOM_MAX, cfg->max_event_bytes);
	size_t events = cfg->max_frame_bytes > one ? cfg->max_frame_bytes : one;

	/* the largest wrapping: the index topic and header, then a frame header (whole), or a room's topic */
	return RC_BUS_TOPIC_MAX + RC_INDEX_HDR_SIZE + RC_FRAME_HDR_SIZE + events;
}

int bus_queue_len(const struct bus_config *cfg)
{
	size_t n;

	if (cfg->buffer_bytes == 0)
		return cfg->sendbuf;
	n = cfg->buffer_bytes / bus_max_message_bytes(cfg);
	if (n < 1)
		n = 1;
	return n < (size_t)cfg->sendbuf ? (int)n : cfg->sendbuf;
}

int bus_start(const struct bus_config *cfg, struct bus **out)
{
	struct bus *b = calloc(1, sizeof(*b));
	int rv;

	if (b == NULL)
		return RC_ENOMEM;
	b->cfg = *cfg;
	pthread_mutex_init(&b->mtx, NULL);
	if (bus_tick_cond_init(&b->cv) != 0) {
		pthread_mutex_destroy(&b->mtx);
		free(b);
		return RC_ENOMEM;
	}
	if ((rv = nng_pub0_open(&b->sock)) != 0) {
		rc_log_error("cannot open the bus socket", "err=\"%s\"", nng_strerror(rv));
		goto out_free;
	}
	if (cfg->sendbuf > 0 && (rv = nng_socket_set_int(b->sock, NNG_OPT_SENDBUF, bus_queue_len(cfg))) != 0) {
		rc_log_error("cannot set the bus queue length", "messages=%d err=\"%s\"", bus_queue_len(cfg),
			     nng_strerror(rv));
		goto out_close;
	}
	nng_pipe_notify(b->sock, NNG_PIPE_EV_ADD_POST, bus_pipe_cb, b);
	if ((rv = listener_start(b->sock, cfg->url, &b->url)) != 0) {
		rc_log_error("cannot listen on the bus address", "url=%s err=\"%s\"", cfg->url, nng_strerror(rv));
		goto out_close;
	}
	if (pthread_create(&b->thread, NULL, bus_thread, b) != 0)
		goto out_close;
	*out = b;
	return RC_OK;

out_close:
	nng_close(b->sock);
out_free:
	pthread_mutex_destroy(&b->mtx);
	pthread_cond_destroy(&b->cv);
	free(b->url);
	free(b);
	return RC_EIO;
}

void bus_enqueue(struct bus *b, struct hevent *const *evs, size_t n)
{
	bool wake;

	pthread_mutex_lock(&b->mtx);
	if (b->qlen + n > b->qcap) {
		size_t ncap = b->qcap ? b->qcap : 256;
		struct hevent **q;
		while (ncap < b->qlen + n)
			ncap *= 2;
		q = realloc(b->q, ncap * sizeof(*q));
		if (q == NULL) {
			/* the events stay in the history; gateways repair the gap by replay */
			pthread_mutex_unlock(&b->mtx);
			rc_log_error("bus queue allocation failed; events left to gap repair", "first_gseq=%llu n=%zu",
				     (unsigned long long)evs[0]->gseq, n);
			for (size_t i = 0; i < n; i++)
				hevent_unref(evs[i]);
			return;
		}
		b->q = q;
		b->qcap = ncap;
	}
	/* a publish between bus_publish_begin and _end sends at its end; a thread sending goes on with these */
	wake = b->qlen == 0 && b->begun == 0 && !b->sending;
	memcpy(b->q + b->qlen, evs, n * sizeof(*evs));
	b->qlen += n;
	pthread_mutex_unlock(&b->mtx);
	/* one wake-up when the queue goes from empty to non-empty */
	if (wake)
		pthread_cond_signal(&b->cv);
}

void bus_publish_begin(struct bus *b)
{
	pthread_mutex_lock(&b->mtx);
	b->begun++;
	pthread_mutex_unlock(&b->mtx);
}

void bus_publish_end(struct bus *b, uint64_t gw, uint64_t req, const uint64_t *gseqs, uint32_t n)
{
	size_t need = n > 0 ? rc_ack_size(n) : 0;
	bool wake;

	pthread_mutex_lock(&b->mtx);
	b->begun--;
	if (need > 0 && b->acks_len + need > b->acks_cap) {
		size_t ncap = b->acks_cap ? b->acks_cap : 1024;
		uint8_t *a;
		while (ncap < b->acks_len + need)
			ncap *= 2;
		if ((a = realloc(b->acks, ncap)) == NULL) {
			/* the gateway's api call times out: 504, the events published (retry with keys) */
			need = 0;
			b->send_errors++;
		} else {
			b->acks = a;
			b->acks_cap = ncap;
		}
	}
	if (need > 0)
		b->acks_len += rc_ack_put(b->acks + b->acks_len, gw, req, gseqs, n);
	if (b->begun == 0 && !b->sending && (b->qlen > 0 || b->acks_len > 0) && !b->stopping) {
		/*
		 * The last publish to end sends the flush itself, on its own
		 * thread: the answer is that flush, and waking the sender
		 * thread for it would cost a switch (docs/BENCHMARKS.md)
		 */
		b->sending = true;
		bus_drain_locked(b);
		pthread_mutex_unlock(&b->mtx);
		return;
	}
	/* the sender thread sends, or the thread sending now goes on with it */
	wake = b->begun == 0 && !b->sending && (b->qlen > 0 || b->acks_len > 0);
	pthread_mutex_unlock(&b->mtx);
	if (wake)
		pthread_cond_signal(&b->cv);
}

void bus_sink(void *arg, struct hevent *const *evs, size_t n)
{
	bus_enqueue(arg, evs, n);
}

const char *bus_url(const struct bus *b)
{
	return b->url;
}

void bus_stats(struct bus *b, struct bus_stats *st)
{
	st->frames = b->frames;
	st->events = b->events;
	st->bytes = b->bytes;
	st->ticks = b->ticks;
	st->send_errors = b->send_errors;
	st->acks = b->acks_sent;
	st->ack_ticks = b->ack_ticks;
}

void bus_stop(struct bus *b)
{
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->mtx);
	b->stopping = true;
	pthread_mutex_unlock(&b->mtx);
	pthread_cond_signal(&b->cv);
	pthread_join(b->thread, NULL);
	/* let the pipes write what was queued before the socket goes away */
	nng_msleep(200);
	nng_close(b->sock);
	for (size_t i = 0; i < b->qlen; i++)
		hevent_unref(b->q[i]);
	free(b->q);
	free(b->acks);
	pthread_mutex_destroy(&b->mtx);
	pthread_cond_destroy(&b->cv);
	free(b->url);
	free(b);
}
