/*
 * stream.h - an SSE stream: a connection that answered GET /api/v1/events.
 *
 * A stream follows a set of rooms (plus global events) or, without a filter,
 * every event (the firehose). It queues shared chunks on its connection; when
 * the unsent bytes pass --max-client-buffer it is closed. Streams sit on the
 * gateway's heartbeat list in last-write order, so a heartbeat tick visits
 * only the streams that are due. Loop thread only.
 */
#ifndef GW_STREAM_H
#define GW_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "grant.h"
#include "hub.h"
#include "list.h"
#include "outq.h"
#include "rewind.h"
#include "timer.h"

struct gw;
struct gw_conn;

/* A live event held while the stream catches up (resume). */
struct gw_held {
	struct gw_chunk *chunk;
	uint32_t off, len;
	uint64_t gseq;
};

struct gw_replay_call;

/*
 * What a stream keeps of its token (--auth jwt only: without, the stream has
 * none of it), 24 bytes after the stream's members[]: with the 144-byte
 * stream and one room, 200 bytes, malloc's 208-byte size class (32 bytes of
 * stamp and a pointer to it made it 224).
 */
struct gw_stream_auth {
	uint64_t sub_hash, jti_hash; /* rc_grant_stamp's: what a revocation matches */
	uint32_t exp;                /* expiry, unix seconds (one past 2106 is kept as 2106: it ends sooner, never later) */
	uint32_t slot;               /* 1 + its index in the expiry heap (auth.h); 0: not on it */
};

struct gw_stream {
	struct gw *gw;
	struct gw_conn *conn;
	struct gw_tq_entry hb;   /* on gw->hb_q */
	struct gw_list hub_node; /* the hub's: on hub->room_streams or hub->firehose */
	uint64_t last_write;     /* loop time of the last byte queued */
	uint64_t last_gseq;      /* last event delivered: never send one twice */
	bool firehose;
	bool catchup;            /* replaying history: live events are held */
	bool fetch_on_drain;     /* ask for the next replay page once the queue drains */
	bool ended;              /* its last message is queued (stream.expired, stream.revoked): nothing more */
	bool has_token;          /* --auth jwt: a gw_stream_auth follows members[] (gw_stream_token) */
	uint16_t nrooms;
	uint64_t resume_epoch;
	char *wait_id;           /* waiting for the first bus frame: a resume's Last-Event-ID, or a rewind's replay fields (",…") */
	size_t wait_id_len;
	struct gw_replay_call *replay; /* the replay request in flight */
	struct gw_held *held;
	size_t nheld, capheld, held_bytes;
	struct gw_member members[]; /* the hub's records of the stream's rooms (hub.h) */
};

/* What s keeps of its token, in its block after members[]; NULL without one. */
static inline struct gw_stream_auth *gw_stream_token(const struct gw_stream *s)
{
	return s->has_token ? (struct gw_stream_auth *)(uintptr_t)&s->members[s->nrooms] : NULL;
}

/* The request's filter, checked by the router. */
struct gw_stream_req {
	const char **rooms;
	const size_t *room_lens;
	size_t nrooms; /* 0: firehose */
	const char *last_event_id; /* NULL when absent */
	size_t last_event_id_len;
	struct gw_rewind rewind; /* count 0: none; Last-Event-ID wins over it */
	const struct rc_grant_stamp *stamp; /* --auth jwt: the verified token's; NULL: none */
};

/* The bytes gw_stream_open allocates for a stream of nrooms rooms (0: firehose), with a token or not. */
size_t gw_stream_size(size_t nrooms, bool auth);

/*
 * Turns conn into a stream (gw_conn_upgrade): writes the response head and
 * preamble and registers it. The stream lives until the connection's close
 * callback. Returns 0, or RC_ENOMEM before anything was written (the caller
 * answers 503).
 */
int gw_stream_open(struct gw *gw, struct gw_conn *conn, const struct gw_stream_req *req, struct gw_stream **out);

/* Hands a run of events to the stream (queued, held while catching up, or skipped when seen). */
void gw_stream_deliver(struct gw_stream *s, const struct gw_run *run);

/*
 * Sends {"type":"stream.reset","reason":…} with the id (epoch, gseq) and
 * continues live after that id. reason: history_unavailable, epoch_changed
 * or gap_unrecoverable.
 */
void gw_stream_reset(struct gw_stream *s, const char *reason, uint64_t epoch, uint64_t gseq);

/*
 * The hub could not frame event gseq for s (out of memory): unless s had it
 * already, s gets stream.reset gap_unrecoverable with the id (epoch, upto) and
 * goes on live after it. Returns whether s was reset.
 */
bool gw_stream_missed(struct gw_stream *s, uint64_t gseq, uint64_t epoch, uint64_t upto);

/*
 * The gateway learnt the epoch and last id from its first bus frame: a stream
 * that asked to resume before that starts its resume (or reset) now.
 */
void gw_stream_bus_known(struct gw_stream *s);

/*
 * Ends the stream with a last message that is neither data nor stream.reset:
 * `id:` (the last event it delivered, so Last-Event-ID resumes after it),
 * `event: <type>` and `data: {"type":"<type>"}`, then closes once it is
 * written. type: stream.expired (its token expired) or stream.revoked.
 */
void gw_stream_end(struct gw_stream *s, const char *type);

/*
 * Registers the heartbeat queue with gw->timer: a stream that has queued no
 * byte for --heartbeat-ms gets ': ping' (0: never).
 */
void gw_stream_timers_init(struct gw *gw);

#endif
