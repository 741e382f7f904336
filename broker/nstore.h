/*
 * nstore.h - the broker's replicated history (--store nats): a NATS
 * JetStream stream holds every event (the mapping is natsmap.h), and the
 * broker is one of possibly several that publish into it and follow it.
 *
 * Publish: each event is published with the room's sequence (rseq) its
 * broker assigns from what it knows of the room, fenced with
 * Nats-Expected-Last-Subject-Sequence = the stream sequence of the room's
 * last message it knows, so two brokers can never give one rseq twice: a
 * fence that fails means someone else published in the room; the broker
 * reads the room's last message and publishes again. A room has at most one
 * event of this broker in flight (its fence must name a sequence already
 * known); events of different rooms are pipelined (asynchronous publish),
 * and a publish's events go out in order. An idempotency key is the
 * message's Nats-Msg-Id: the stream answers a duplicate with the original's
 * sequence, which is returned as the event's gseq.
 *
 * Follow: one ordered consumer reads the stream from where the in-memory
 * history must start (its last --history-events events at start) and
 * stores every message in the history (history_follow), which hands it to
 * the bus. The bus therefore carries what the stream holds, whoever
 * published it. A publish is answered once the follower has read its events,
 * so an id acknowledged to a client can be replayed at once.
 *
 * Threads: nstore_publish from any thread (api workers; it blocks until its
 * events are acknowledged); the follower and the acknowledgements run on
 * nats.c's threads. nstore_open and nstore_close from the main thread.
 */
#ifndef RC_NSTORE_H
#define RC_NSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "history.h"

struct nstore_config {
	const char *urls;	 /* comma-separated NATS server URLs */
	const char *stream;	 /* stream name (natsmap_stream_valid) */
	int replicas;		 /* stream replicas (1-5) */
	int64_t max_msgs;	 /* stream retention: --history-events */
	int64_t max_bytes;	 /* --history-bytes */
	uint64_t max_age_ms;	 /* --history-max-age (0: none) */
	uint64_t dup_window_ms;	 /* --idempotency-window (0: keys are ignored) */
	int timeout_ms;		 /* wait for a publish's acknowledgement, and for NATS api calls */
	int connect_wait_ms;	 /* how long start waits for NATS to answer */
	int reconnect_wait_ms;	 /* a publish within this long of losing the connection waits for it (0: refused) */
	size_t history_events;	 /* how much of the stream's tail start reads into the history */
	size_t max_rooms;	 /* --max-rooms: rooms this broker has seen at most (0: no limit); nstore_publish */
};

/* What start found, for the log. */
struct nstore_recovery {
	uint64_t events;     /* messages read into the history */
	uint64_t first_seq, last_seq; /* the stream's at start */
	bool created;	     /* the stream did not exist: it was created */
	bool updated;	     /* its retention or duplicate window was changed to the options' */
	double ms;
};

struct nstore;

/*
 * Connects (waiting up to cfg->connect_wait_ms for NATS), creates the stream
 * or checks its configuration (a mismatch that would break the mapping is
 * refused with the reason logged: RC_EINVAL), sets h's epoch from the
 * stream's identity, reads the stream's tail into h and starts following it.
 * h must have no sink yet: what is read at start is not sent on the bus.
 * Returns 0, RC_EIO (NATS unreachable or failing), RC_EINVAL or RC_ENOMEM.
 */
int nstore_open(const struct nstore_config *cfg, struct history *h, struct nstore **out, struct nstore_recovery *rec);

/* Stops following, closes the connection and frees s. NULL ok. */
void nstore_close(struct nstore *s);

/*
 * Publishes n events (as history_publish): gseqs[i] is event i's stream
 * sequence (the original's for a duplicate key), *published (may be NULL)
 * how many were new. Blocks until every event is acknowledged and read
 * back by the follower. Rooms count toward cfg->max_rooms once this broker
 * has seen them: read from the stream (since its start: the tail it read
 * back, then what it follows, whoever published it) or published into; a
 * publish that names a room not seen yet beyond the limit publishes
 * nothing: RC_ETOOBIG. Returns 0; RC_EIO when nothing was published (NATS
 * unreachable, or the stream refused every event); RC_ETIMEDOUT when some
 * events may or may not have been published (an acknowledgement did not
 * come in time, or some were published and others refused): a retry with
 * the same idempotency keys publishes nothing twice; RC_ENOMEM.
 */
int nstore_publish(struct nstore *s, const struct hinput *in, size_t n, uint64_t *gseqs, size_t *published);

struct nstore_stats {
	bool connected;
	uint64_t reconnects, disconnects;
	uint64_t published, duplicates;	 /* events acknowledged as new / as duplicates of a key */
	uint64_t fence_retries;		 /* a room's fence failed: someone else published there; sent again */
	uint64_t resends;		 /* events sent again unchanged: no answer in NSTORE_RESEND_MS, or no leader */
	uint64_t room_reads;		 /* a room's last message read (a room not seen yet, or after a fence) */
	uint64_t failed, unknown;	 /* events refused / whose outcome is unknown */
	uint64_t followed, skipped;	 /* messages the follower stored / could not read (not roomcast's) */
	uint64_t direct_reads;		 /* messages read by direct get while the follower's consumer was silent */
	uint64_t follow_seq;		 /* the last stream sequence the follower read */
	int replicas;
};
void nstore_stats(struct nstore *s, struct nstore_stats *st);

#endif
