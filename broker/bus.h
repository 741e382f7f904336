/*
 * bus.h - the broker side of the event bus: an nng PUB socket fed by one
 * sender thread.
 *
 * Publishing threads hand events to bus_enqueue() (in gseq order, under the
 * history lock); the sender thread takes everything queued at once and sends
 * it as flushes of at most max_frame_bytes of events, so the message rate
 * stays low when events arrive fast. A flush is one message per room under
 * the room's topic (gateways subscribe only to the rooms they serve), then an
 * index listing each room's event count (frame.h). When nothing was sent for
 * tick_ms it sends an empty index (a tick) with the last gseq, so gateways
 * notice a lost last flush.
 */
#ifndef RC_BUS_H
#define RC_BUS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "history.h"

struct bus;

struct bus_config {
	const char *url;        /* nng listen address, e.g. tcp://127.0.0.1:7410 */
	uint64_t epoch;
	size_t max_frame_bytes; /* a larger single event still gets its own frame */
	size_t whole_bytes;     /* a flush of at most this many event bytes is sent as one message */
	size_t max_event_bytes; /* the largest event's json (for the largest message) */
	int tick_ms;
	int sendbuf;            /* nng PUB per-pipe queue length (messages, at most 8192: nng's own limit) */
	size_t buffer_bytes;    /* what the queues may hold in all (0: no bound but sendbuf) */
	/*
	 * Called with every message's bytes just before nng gets it, from the
	 * thread sending it, in nng's order (NULL: none): the link (link.h).
	 */
	void (*tap)(void *arg, const void *data, size_t len);
	void *tap_arg;
};

/*
 * What a subscriber that reads nothing costs. nng's PUB queues up to
 * bus_queue_len() messages per subscriber and drops the oldest beyond; a
 * message queued for several subscribers is one message (refcounted). Every
 * queue is thus a run of the newest messages, and all of them together hold
 * at most the last bus_queue_len() messages sent, each at most
 * bus_max_message_bytes(), plus the one message each subscriber's connection
 * is writing: at most buffer_bytes + subscribers x bus_max_message_bytes().
 */
size_t bus_max_message_bytes(const struct bus_config *cfg);
/* sendbuf, or fewer: as many of the largest messages as buffer_bytes holds (at least 1). */
int bus_queue_len(const struct bus_config *cfg);

struct bus_stats {
	uint64_t frames, events, bytes, ticks, send_errors;
	uint64_t acks;	    /* publishes acknowledged on the bus */
	uint64_t ack_ticks; /* acknowledgements that missed their flush and went in a tick of their own */
};

/* Listens and starts the sender thread. *out is set on success; returns 0, RC_EIO or RC_ENOMEM. */
int bus_start(const struct bus_config *cfg, struct bus **out);

/* Queues evs[0..n) in order (takes their references). Any thread; never blocks on the network. */
void bus_enqueue(struct bus *b, struct hevent *const *evs, size_t n);

/* A history_sink_fn that calls bus_enqueue. */
void bus_sink(void *arg, struct hevent *const *evs, size_t n);

/*
 * A publish answered on the bus (docs/PROTOCOL.md, "Acknowledgements"):
 * bus_publish_begin() before the history takes its events, then
 * bus_publish_end() with the request's token (gw, req) and its ids (n >= 1),
 * or n = 0 when it failed (nothing acknowledged). Between the two, events
 * queued do not wake the sender: the end does, so that the acknowledgement
 * goes in the index of the flush that carries the events (an acknowledgement
 * that comes after its events went rides on the next index, or on a tick of
 * its own). Any thread.
 */
void bus_publish_begin(struct bus *b);
void bus_publish_end(struct bus *b, uint64_t gw, uint64_t req, const uint64_t *gseqs, uint32_t n);

/* The address the bus listens on: cfg->url with the port bound (tcp://127.0.0.1:0 -> the port picked). */
const char *bus_url(const struct bus *b);

void bus_stats(struct bus *b, struct bus_stats *st);

/*
 * Sends body[0..len) (JSON) under the control topic (RC_BUS_TOPIC_CONTROL),
 * at once and outside the event sequence: a revocation for every gateway.
 * Any thread (nng's send is). Returns 0, RC_ENOMEM or RC_EIO.
 */
int bus_control(struct bus *b, const char *body, size_t len);

/* A subscriber other than nng's connected: a tick soon tells it the epoch and the last gseq. Any thread. */
void bus_tick_soon(struct bus *b);

/* Sends what is queued, stops the thread, closes the socket and frees b. NULL ok. */
void bus_stop(struct bus *b);

/*
 * The idle tick's clock, exported for its unit test: bus_tick_cond_init()
 * initialises cv for waits whose deadlines bus_tick_deadline() computes: ms
 * from now on CLOCK_MONOTONIC, so setting the wall clock neither delays nor
 * hastens a tick. Returns 0 or an errno. Any thread.
 */
int bus_tick_cond_init(pthread_cond_t *cv);
void bus_tick_deadline(int ms, struct timespec *ts);

#endif
