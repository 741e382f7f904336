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
#include "frame.h"
#include "log.h"

struct bus {
	struct bus_config cfg;
	nng_socket sock;
	pthread_t thread;

	pthread_mutex_t mtx; /* guards q, qlen, qcap, stopping */
	pthread_cond_t cv;
	struct hevent **q;
	size_t qlen, qcap;
	bool stopping;

	/* owned by the sender thread */
	uint64_t last_sent;

	/* written by the sender thread, read by anyone */
	_Atomic uint64_t frames, events, bytes, ticks, send_errors;
};

static int bus_send(struct bus *b, uint8_t flags, struct hevent **evs, size_t n, size_t size)
{
	struct rc_frame_hdr hdr = { .epoch = b->cfg.epoch, .count = (uint32_t)n, .flags = flags };
	nng_msg *msg;
	uint8_t *p;
	int rv;

	if (nng_msg_alloc(&msg, size) != 0)
		return RC_ENOMEM;
	p = nng_msg_body(msg);
	hdr.last_gseq = n ? evs[n - 1]->gseq : b->last_sent;
	rc_frame_put_header(p, &hdr);
	p += RC_FRAME_HDR_SIZE;
	for (size_t i = 0; i < n; i++) {
		struct rc_frame_event fe = {
			.gseq = evs[i]->gseq,
			.rseq = evs[i]->rseq,
			.room = evs[i]->room,
			.room_len = evs[i]->room_len,
			.json = evs[i]->json,
			.json_len = evs[i]->json_len,
		};
		p += rc_frame_put_event(p, &fe);
	}
	/* pub0 never blocks: a subscriber whose queue is full loses the frame */
	rv = nng_sendmsg(b->sock, msg, 0);
	if (rv != 0) {
		nng_msg_free(msg);
		b->send_errors++;
		return RC_EIO;
	}
	b->frames++;
	b->events += n;
	b->bytes += size;
	if (n == 0)
		b->ticks++;
	return RC_OK;
}

/* Sends evs[0..n) as frames of at most max_frame_bytes, then drops the refs. */
static void bus_flush(struct bus *b, struct hevent **evs, size_t n)
{
	size_t start = 0;

	while (start < n) {
		size_t size = RC_FRAME_HDR_SIZE, end = start;
		while (end < n) {
			size_t es = rc_frame_event_size(evs[end]->room_len, evs[end]->json_len);
			if (end > start && size + es > b->cfg.max_frame_bytes)
				break;
			size += es;
			end++;
		}
		bus_send(b, 0, evs + start, end - start, size);
		b->last_sent = evs[end - 1]->gseq;
		start = end;
	}
	for (size_t i = 0; i < n; i++)
		hevent_unref(evs[i]);
}

static void *bus_thread(void *arg)
{
	struct bus *b = arg;
	struct hevent **batch = NULL;
	size_t batch_cap = 0;

	pthread_mutex_lock(&b->mtx);
	for (;;) {
		struct hevent **tmp;
		size_t n, cap;

		while (b->qlen == 0 && !b->stopping) {
			struct timespec ts;
			int rv;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += b->cfg.tick_ms / 1000;
			ts.tv_nsec += (long)(b->cfg.tick_ms % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			rv = pthread_cond_timedwait(&b->cv, &b->mtx, &ts);
			if (rv == ETIMEDOUT && b->qlen == 0 && !b->stopping) {
				pthread_mutex_unlock(&b->mtx);
				bus_send(b, RC_FRAME_TICK, NULL, 0, RC_FRAME_HDR_SIZE);
				pthread_mutex_lock(&b->mtx);
			}
		}
		if (b->qlen == 0 && b->stopping)
			break;
		/* swap the queue for our empty batch array: publishers go on at once */
		tmp = b->q;
		n = b->qlen;
		cap = b->qcap;
		b->q = batch;
		b->qcap = batch_cap;
		b->qlen = 0;
		batch = tmp;
		batch_cap = cap;
		pthread_mutex_unlock(&b->mtx);
		bus_flush(b, batch, n);
		pthread_mutex_lock(&b->mtx);
	}
	pthread_mutex_unlock(&b->mtx);
	free(batch);
	return NULL;
}

int bus_start(const struct bus_config *cfg, struct bus **out)
{
	struct bus *b = calloc(1, sizeof(*b));
	int rv;

	if (b == NULL)
		return RC_ENOMEM;
	b->cfg = *cfg;
	pthread_mutex_init(&b->mtx, NULL);
	pthread_cond_init(&b->cv, NULL);
	if ((rv = nng_pub0_open(&b->sock)) != 0) {
		rc_log_error("cannot open the bus socket", "err=\"%s\"", nng_strerror(rv));
		goto out_free;
	}
	if (cfg->sendbuf > 0)
		nng_socket_set_int(b->sock, NNG_OPT_SENDBUF, cfg->sendbuf);
	if ((rv = nng_listen(b->sock, cfg->url, NULL, 0)) != 0) {
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
	wake = b->qlen == 0;
	memcpy(b->q + b->qlen, evs, n * sizeof(*evs));
	b->qlen += n;
	pthread_mutex_unlock(&b->mtx);
	/* one wake-up when the queue goes from empty to non-empty */
	if (wake)
		pthread_cond_signal(&b->cv);
}

void bus_sink(void *arg, struct hevent *const *evs, size_t n)
{
	bus_enqueue(arg, evs, n);
}

void bus_stats(struct bus *b, struct bus_stats *st)
{
	st->frames = b->frames;
	st->events = b->events;
	st->bytes = b->bytes;
	st->ticks = b->ticks;
	st->send_errors = b->send_errors;
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
	pthread_mutex_destroy(&b->mtx);
	pthread_cond_destroy(&b->cv);
	free(b);
}
