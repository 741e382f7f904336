/*
 * nstore_follow.c - the follower of --store nats: one ordered consumer reads
 * the stream and stores every message in the history (history_follow), and
 * wakes the publishes waiting for it to read their events; while that
 * consumer is silent (it died with its node), a publish waiting for it
 * reads the stream by direct get instead (nstore_fill). Shared state and
 * the rooms table: nstore_int.h.
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <string.h>

#include "error.h"
#include "event.h"
#include "history.h"
#include "log.h"
#include "natsmap.h"
#include "nstore_int.h"
#include "segment.h"

/* The follower read up to seq: wakes the publishes waiting for it. Caller holds mtx. */
static void nstore_followed(struct nstore *s, uint64_t seq)
{
	struct nbatch **pp = &s->followers;

	if (seq > s->follow_seq)
		s->follow_seq = seq;
	while (*pp != NULL) {
		struct nbatch *b = *pp;
		if (b->wait_seq <= s->follow_seq) {
			*pp = b->wait_next;
			b->wait_next = NULL;
			b->wait_seq = 0;
			pthread_cond_signal(&b->cv);
		} else {
			pp = &b->wait_next;
		}
	}
	pthread_cond_broadcast(&s->cv);
}

/*
 * Stores message gseq of the stream (time_ms: when the stream stored it) in
 * the history, learns its room's last sequence and wakes the publishes
 * waiting for it. consumer: it came from the follower's consumer (else a
 * direct get). Takes mtx.
 */
static void nstore_apply(struct nstore *s, natsMsg *msg, uint64_t gseq, uint64_t time_ms, bool consumer)
{
	const char *rs = NULL, *key = NULL;
	char room[RC_ROOM_MAX];
	size_t room_len = 0;
	bool global = false, applied = false, ok;
	uint64_t rseq = 0;
	struct seg_record rec = { .type = SEG_REC_EVENT, .gseq = gseq, .time_ms = time_ms };

	ok = natsmap_parse(natsMsg_GetSubject(msg), s->stream, room, sizeof(room), &room_len, &global) == RC_OK &&
	     natsMsgHeader_Get(msg, NATSMAP_HDR_RSEQ, &rs) == NATS_OK && natsmap_rseq_parse(rs, &rseq) == RC_OK &&
	     natsMsg_GetDataLength(msg) >= 2;
	if (ok) {
		if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &key) == NATS_OK && key != NULL &&
		    rc_key_valid(key, strnlen(key, RC_KEY_MAX + 1))) {
			/* a client's key (the broker's own ids hold a space: no key) */
			rec.key = key;
			rec.key_len = (uint16_t)strnlen(key, RC_KEY_MAX);
		}
		rec.rseq = rseq;
		rec.room = global ? NULL : room;
		rec.room_len = (uint16_t)room_len;
		rec.json = natsMsg_GetData(msg);
		rec.json_len = (uint32_t)natsMsg_GetDataLength(msg);
		if (history_follow(s->hist, &rec, &applied) != RC_OK)
			rc_log_error("nats: out of memory storing an event read from the stream", "seq=%" PRIu64,
				     rec.gseq);
	} else {
		/* not a roomcast event (published into the stream by hand): the history cannot hold it */
		rc_log_warn("nats: a message of the stream is not a roomcast event; skipped",
			    "seq=%" PRIu64 " subject=%s", rec.gseq, natsMsg_GetSubject(msg));
	}
	pthread_mutex_lock(&s->mtx);
	if (ok) {
		struct nroom *r = nstore_room(s, rec.room, rec.room_len);
		if (r != NULL)
			nstore_room_learn(r, rec.gseq, rseq);
	}
	if (consumer)
		s->follow_ms = nstore_now_ms();
	s->st.followed += applied;
	s->st.direct_reads += !consumer && applied;
	/* a message read twice (consumer and direct get) is skipped once: history_follow told */
	s->st.skipped += !ok && gseq > s->follow_seq;
	nstore_followed(s, rec.gseq);
	pthread_mutex_unlock(&s->mtx);
}

/* A JetStream time (ns since the epoch, 0: none) in ms. */
static uint64_t nstore_ms_of(int64_t ns)
{
	return ns > 0 ? (uint64_t)ns / 1000000u : 0;
}

void nstore_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct nstore *s = closure;
	jsMsgMetaData *meta = NULL;
	(void)nc;
	(void)sub;

	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		nstore_apply(s, msg, meta->Sequence.Stream, nstore_ms_of(meta->Timestamp), true);
		jsMsgMetaData_Destroy(meta);
	}
	natsMsg_Destroy(msg);
}

/* A direct get waits this long for its answer: a replica that does not answer is not waited for longer. */
#define NSTORE_FILL_WAIT_MS 1000

void nstore_fill(struct nstore *s, uint64_t seq)
{
	jsOptions jo;
	uint64_t next;

	jsOptions_Init(&jo);
	jo.Wait = NSTORE_FILL_WAIT_MS;
	pthread_mutex_lock(&s->mtx);
	next = s->follow_seq + 1;
	pthread_mutex_unlock(&s->mtx);
	while (next <= seq) {
		jsDirectGetMsgOptions o;
		natsMsg *m = NULL;
		natsStatus st;
		uint64_t got;

		jsDirectGetMsgOptions_Init(&o);
		o.Sequence = next;
		o.NextBySubject = s->filter; /* the first message at or after next: one that left the stream is passed */
		st = js_DirectGetMsg(&m, s->js, s->stream, &jo, &o);
		if (st != NATS_OK) {
			/* not there yet on the replica that answered, or none answered: the consumer or a later fill */
			rc_log_debug("nats: direct get while the follower is silent", "seq=%" PRIu64 " error=\"%s\"", next,
				     natsStatus_GetText(st));
			return;
		}
		got = natsMsg_GetSequence(m);
		if (got < next) {
			natsMsg_Destroy(m);
			return; /* cannot happen */
		}
		nstore_apply(s, m, got, nstore_ms_of(natsMsg_GetTime(m)), false);
		natsMsg_Destroy(m);
		next = got + 1;
	}
}
