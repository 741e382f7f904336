/*
 * nstore_follow.c - the follower of --store nats: one ordered consumer reads
 * the stream and stores every message in the history (history_follow), and
 * wakes the publishes waiting for it to read their events. Shared state and
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

void nstore_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct nstore *s = closure;
	jsMsgMetaData *meta = NULL;
	const char *rs = NULL, *key = NULL;
	char room[RC_ROOM_MAX];
	size_t room_len = 0;
	bool global = false, applied = false, ok;
	uint64_t rseq = 0;
	struct seg_record rec = { .type = SEG_REC_EVENT };
	(void)nc;
	(void)sub;

	if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
		natsMsg_Destroy(msg);
		return;
	}
	rec.gseq = meta->Sequence.Stream;
	rec.time_ms = meta->Timestamp > 0 ? (uint64_t)meta->Timestamp / 1000000u : 0;
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
	s->st.followed += applied;
	s->st.skipped += !ok;
	nstore_followed(s, rec.gseq);
	pthread_mutex_unlock(&s->mtx);
	jsMsgMetaData_Destroy(meta);
	natsMsg_Destroy(msg);
}
