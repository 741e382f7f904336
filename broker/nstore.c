#include "nstore.h"

#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "event.h"
#include "log.h"
#include "natsmap.h"
#include "proto_limits.h"
#include "segment.h"
#include "strmap.h"

/* A conflict this many times in a row on one event: the room is too contended, the publish fails. */
#define NSTORE_MAX_ATTEMPTS 50
#define NSTORE_MAX_PENDING  65536
/*
 * An event JetStream has not answered within this long (a leader that died
 * with it, or no leader: no responders) is sent again, the same message
 * (same Nats-Msg-Id, rseq and fence), until --nats-timeout-ms has passed
 * since it was first sent: so it goes through about this long after a
 * leader exists, not when the timeout runs out.
 */
#define NSTORE_RESEND_MS 1000
/* The follower's idle heartbeat: nats.c recreates the ordered consumer after two missed (the leader died). */
#define NSTORE_FOLLOW_HEARTBEAT_MS 500
/* The broker's own Nats-Msg-Id for an event without a key: "rc <instance> <n>"; the space keeps it apart from
 * any client key (printable ASCII without space), and the follower never takes it for one. */
#define NSTORE_OWN_ID_MAX 48

struct nbatch;

/* What this broker knows of a room: its last message in the stream, and its event in flight. */
struct nroom {
	uint64_t seq, rseq; /* the room's last message known (0, 0: none) */
	bool known;	    /* seq/rseq are the room's last as far as this broker can tell */
	struct npend *inflight; /* this broker's event in flight in the room (or being read), NULL: none */
	struct nbatch *blocked; /* publishes waiting for inflight to go */
	char subject[NATSMAP_SUBJECT_MAX];
};

enum npend_state {
	NP_WAIT,    /* not sent yet */
	NP_RETRY,   /* its fence failed: to be sent again */
	NP_SENT,    /* waiting for its acknowledgement */
	NP_DONE,    /* acknowledged (gseq set) */
	NP_FAILED,  /* not published */
	NP_UNKNOWN, /* may have been published */
	NP_RESEND,  /* not answered (yet): to be sent again as it was, from next_ms */
};

/* One event of a publish. */
struct npend {
	struct nbatch *b;
	struct nroom *room;
	const struct hinput *in;
	uint64_t rseq, gseq;
	uint64_t fence;		 /* the fence it was sent with (a re-send keeps it) */
	double deadline_ms;	 /* first sent + --nats-timeout-ms: no re-send after it */
	double sent_ms;		 /* when last sent */
	double next_ms;		 /* NP_RESEND: not before this */
	enum npend_state state;
	bool dup;
	bool maybe;		 /* a send got no answer: it may be stored */
	int attempts;
	int sends;		 /* every send, re-sends included */
	char id[NSTORE_OWN_ID_MAX]; /* its Nats-Msg-Id when it has no key ("" until first sent) */
};

/* One nstore_publish call, owned by its thread; the acknowledgements change it under s->mtx. */
struct nbatch {
	pthread_cond_t cv;
	struct npend *p;
	size_t n;
	size_t scan;	    /* events below it are sent or resolved */
	size_t outstanding; /* sent, not acknowledged */
	size_t resends;	    /* events in NP_RESEND */
	bool stop;	    /* an event could not be sent: send no more */
	bool waiting;	    /* the thread waits on cv */
	struct nbatch *blocked_next;
	uint64_t wait_seq; /* waiting for the follower to read this far (0: not) */
	struct nbatch *wait_next;
};

struct nstore {
	struct nstore_config cfg;
	char *stream, filter[NATSMAP_SUBJECT_MAX];
	struct history *hist;
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	natsSubscription *sub;

	pthread_mutex_t mtx; /* guards everything below */
	pthread_cond_t cv;   /* start: the follower's progress */
	struct rc_strmap rooms; /* room name -> struct nroom * */
	struct nroom global;
	uint64_t follow_seq;	   /* the last stream sequence the follower read */
	bool closed;		   /* nats.c's last connection callback has run (its closed callback) */
	struct nbatch *followers; /* publishes waiting for the follower */
	uint64_t instance;	   /* random, drawn at open: the broker's own message ids */
	_Atomic uint64_t own_ids; /* own ids given */
	struct nstore_stats st;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* The room's entry, created (unknown) when absent. Caller holds mtx. NULL: out of memory. */
static struct nroom *nstore_room(struct nstore *s, const char *room, size_t len)
{
	struct rc_strmap_entry *e;
	struct nroom *r;
	int added = 0;

	if (room == NULL || len == 0)
		return &s->global;
	e = rc_strmap_upsert(&s->rooms, room, len, &added);
	if (e == NULL)
		return NULL;
	if (!added)
		return e->value;
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		rc_strmap_del(&s->rooms, room, len);
		return NULL;
	}
	natsmap_subject(r->subject, s->stream, room, len);
	e->value = r;
	return r;
}

/* Wakes the publishes waiting for r's event in flight to go. Caller holds mtx. */
static void nroom_release(struct nroom *r)
{
	struct nbatch *b = r->blocked;

	r->inflight = NULL;
	r->blocked = NULL;
	while (b != NULL) {
		struct nbatch *next = b->blocked_next;
		b->blocked_next = NULL;
		pthread_cond_signal(&b->cv);
		b = next;
	}
}

/* Learns that the room's last message is at seq with rseq (from the follower or an acknowledgement). */
static void nroom_learn(struct nroom *r, uint64_t seq, uint64_t rseq)
{
	if (seq > r->seq) {
		r->seq = seq;
		r->rseq = rseq;
		r->known = true;
	}
}

/* ------------------------------------------------------------------------ */
/* the follower */

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

/* Reads one message of the stream into the history (a nats.c subscription thread). */
static void nstore_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
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
			nroom_learn(r, rec.gseq, rseq);
	}
	s->st.followed += applied;
	s->st.skipped += !ok;
	nstore_followed(s, rec.gseq);
	pthread_mutex_unlock(&s->mtx);
	jsMsgMetaData_Destroy(meta);
	natsMsg_Destroy(msg);
}

/* ------------------------------------------------------------------------ */
/* publish */

/* Where the acknowledgement of a message comes in (nats.c's thread for them): never blocks. */
static void nstore_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct nstore *s = closure;
	char room[RC_ROOM_MAX];
	size_t len = 0;
	bool global = false;
	struct nroom *r = NULL;
	struct npend *p;
	struct nbatch *b;
	(void)js;

	pthread_mutex_lock(&s->mtx);
	if (natsmap_parse(natsMsg_GetSubject(msg), s->stream, room, sizeof(room), &len, &global) == RC_OK) {
		struct rc_strmap_entry *e = global ? NULL : rc_strmap_get(&s->rooms, room, len);
		r = global ? &s->global : e != NULL ? e->value : NULL;
	}
	p = r != NULL ? r->inflight : NULL;
	if (p == NULL || p->state != NP_SENT) {
		pthread_mutex_unlock(&s->mtx);
		natsMsg_Destroy(msg);
		return; /* cannot happen: every message sent is its room's event in flight */
	}
	b = p->b;
	if (pa != NULL) {
		p->gseq = pa->Sequence;
		p->state = NP_DONE;
		p->dup = pa->Duplicate;
		if (pa->Duplicate) {
			s->st.duplicates++;
		} else {
			s->st.published++;
			nroom_learn(r, pa->Sequence, p->rseq);
		}
	} else if (pae != NULL && pae->ErrCode == JSStreamWrongLastSequenceErr) {
		/* someone else published in the room since: read its last message, then send again */
		r->known = false;
		s->st.fence_retries++;
		if (++p->attempts >= NSTORE_MAX_ATTEMPTS) {
			p->state = NP_FAILED;
			s->st.failed++;
			b->stop = true;
		} else {
			p->state = NP_RETRY;
			if ((size_t)(p - b->p) < b->scan)
				b->scan = (size_t)(p - b->p);
		}
	} else {
		/* no answer in time (it may be stored), or no JetStream answered, or it refused */
		bool noanswer = pae == NULL || pae->Err == NATS_TIMEOUT;
		bool noleader = pae != NULL && pae->Err == NATS_NO_RESPONDERS; /* not stored: no leader (yet) */
		bool maybe;
		double now = now_ms();

		p->maybe |= noanswer;
		if ((noanswer || noleader) && now + 10 < p->deadline_ms) {
			/* the room stays reserved: the same message goes again (a duplicate if the first was stored) */
			p->state = NP_RESEND;
			p->next_ms = p->sent_ms + NSTORE_RESEND_MS > now ? p->sent_ms + NSTORE_RESEND_MS : now;
			b->resends++;
			b->outstanding--;
			if (b->waiting)
				pthread_cond_signal(&b->cv);
			pthread_mutex_unlock(&s->mtx);
			natsMsg_Destroy(msg);
			return;
		}
		maybe = p->maybe || pae == NULL || pae->Err == NATS_TIMEOUT || pae->Err == NATS_CONNECTION_CLOSED;
		r->known = false;
		p->state = maybe ? NP_UNKNOWN : NP_FAILED;
		s->st.unknown += maybe;
		s->st.failed += !maybe;
		b->stop = true;
		rc_log_warn("nats: publish not acknowledged", "subject=%s error=\"%s\" code=%d", r->subject,
			    pae != NULL && pae->ErrText != NULL ? pae->ErrText : "none", pae != NULL ? (int)pae->ErrCode : 0);
	}
	b->outstanding--;
	nroom_release(r);
	/* the publish's thread has something to do only when all are in, or one must go again (a room it waits for wakes it) */
	if (b->waiting && (b->outstanding == 0 || p->state != NP_DONE))
		pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&s->mtx);
	natsMsg_Destroy(msg);
}

/* Reads the room's last message from the stream into r. Called without mtx; r is reserved by the caller. */
static int nstore_read_room(struct nstore *s, struct nroom *r, uint64_t *seq, uint64_t *rseq)
{
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	const char *rs = NULL;
	natsStatus st = js_GetLastMsg(&m, s->js, s->stream, r->subject, NULL, &jerr);

	*seq = 0;
	*rseq = 0;
	if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return RC_OK; /* nothing in the room yet (or no more) */
	if (st != NATS_OK) {
		rc_log_warn("nats: cannot read a room's last message", "subject=%s error=\"%s\"", r->subject,
			    natsStatus_GetText(st));
		return RC_EIO;
	}
	*seq = natsMsg_GetSequence(m);
	if (natsMsgHeader_Get(m, NATSMAP_HDR_RSEQ, &rs) != NATS_OK || natsmap_rseq_parse(rs, rseq) != RC_OK) {
		rc_log_warn("nats: a room's last message has no rseq", "subject=%s seq=%" PRIu64, r->subject, *seq);
		natsMsg_Destroy(m);
		return RC_EIO;
	}
	natsMsg_Destroy(m);
	return RC_OK;
}

/*
 * Sends event p (its room reserved for it, rseq, fence, sent_ms and
 * deadline_ms set), waiting for its answer up to NSTORE_RESEND_MS. Its
 * Nats-Msg-Id: its key, or (no key, or keys ignored) the broker's own id,
 * the same for every send of p. Called without mtx.
 */
static natsStatus nstore_send(struct nstore *s, struct npend *p)
{
	natsMsg *m = NULL;
	jsPubOptions po;
	char rseq[21], key[RC_KEY_MAX + 1];
	double left = p->deadline_ms - p->sent_ms;
	natsStatus st;

	if (natsConnection_Status(s->nc) != NATS_CONN_STATUS_CONNECTED)
		return NATS_NOT_YET_CONNECTED; /* never queue into nats.c's reconnect buffer: it would go out later */
	p->sends++;
	jsPubOptions_Init(&po);
	po.MaxWait = left < NSTORE_RESEND_MS ? (left < 1 ? 1 : (int64_t)left) : NSTORE_RESEND_MS;
	if (p->fence == 0)
		po.ExpectNoMessage = true;
	else
		po.ExpectLastSubjectSeq = p->fence;
	if (s->cfg.dup_window_ms > 0 && p->in->key_len > 0) {
		memcpy(key, p->in->key, p->in->key_len);
		key[p->in->key_len] = '\0';
		po.MsgId = key;
	} else {
		if (p->id[0] == '\0')
			snprintf(p->id, sizeof(p->id), "rc %016" PRIx64 " %" PRIu64, s->instance,
				 atomic_fetch_add(&s->own_ids, 1) + 1);
		po.MsgId = p->id;
	}
	natsmap_rseq_format(rseq, p->rseq);
	st = natsMsg_Create(&m, p->room->subject, NULL, p->in->json, (int)p->in->json_len);
	if (st == NATS_OK)
		st = natsMsgHeader_Set(m, NATSMAP_HDR_RSEQ, rseq);
	if (st == NATS_OK)
		st = js_PublishMsgAsync(s->js, &m, &po);
	natsMsg_Destroy(m); /* NULL when the library took it */
	return st;
}

/* The first event at or after b->scan still to send (WAIT or RETRY), or n. Caller holds mtx. */
static size_t nbatch_next(struct nbatch *b)
{
	while (b->scan < b->n && b->p[b->scan].state != NP_WAIT && b->p[b->scan].state != NP_RETRY)
		b->scan++;
	return b->scan;
}

/* Marks every event not sent yet as failed (b->stop). Caller holds mtx. */
static void nbatch_fail_rest(struct nbatch *b)
{
	for (size_t i = b->scan; i < b->n; i++)
		if (b->p[i].state == NP_WAIT || b->p[i].state == NP_RETRY)
			b->p[i].state = NP_FAILED;
	b->scan = b->n;
}

/* Ends event p (no more sends): unknown if a send went unanswered, else failed. Caller holds mtx. */
static void nbatch_give_up(struct nstore *s, struct nbatch *b, struct npend *p)
{
	p->state = p->maybe ? NP_UNKNOWN : NP_FAILED;
	s->st.unknown += p->maybe;
	s->st.failed += !p->maybe;
	p->room->known = false;
	b->stop = true;
	nroom_release(p->room);
	rc_log_warn("nats: publish not acknowledged in --nats-timeout-ms", "subject=%s sends=%d outcome=%s",
		    p->room->subject, p->sends, p->maybe ? "unknown" : "not_published");
}

/*
 * Sends again the events of b due for it (NP_RESEND), or gives up on those
 * past their deadline. Returns true when it sent or gave up on one (mtx
 * was released), false when none is due; *wake is then the earliest time
 * one is (0: none waits). Caller holds mtx.
 */
static bool nbatch_resend(struct nstore *s, struct nbatch *b, double *wake)
{
	double now = now_ms();
	struct npend *due = NULL;
	natsStatus st;

	*wake = 0;
	for (size_t k = 0; k < b->n && b->resends > 0; k++) {
		struct npend *q = &b->p[k];
		if (q->state != NP_RESEND)
			continue;
		if (b->stop || now >= q->deadline_ms) {
			b->resends--;
			nbatch_give_up(s, b, q);
			return true;
		}
		if (q->next_ms <= now) {
			due = q;
			break;
		}
		if (*wake == 0 || q->next_ms < *wake)
			*wake = q->next_ms;
	}
	if (due == NULL)
		return false;
	due->state = NP_SENT;
	due->sent_ms = now;
	b->resends--;
	b->outstanding++;
	pthread_mutex_unlock(&s->mtx);
	st = nstore_send(s, due);
	pthread_mutex_lock(&s->mtx);
	if (st == NATS_OK) {
		s->st.resends++;
	} else if (due->state == NP_SENT) {
		/* not handed to the library: not sent this time */
		b->outstanding--;
		due->state = NP_RESEND;
		due->next_ms = now + 250;
		b->resends++;
		if (st != NATS_NOT_YET_CONNECTED) {
			b->resends--;
			nbatch_give_up(s, b, due);
			rc_log_warn("nats: cannot publish", "error=\"%s\"", natsStatus_GetText(st));
		}
		/* reconnecting: again in a moment, until its deadline */
	}
	return true;
}

int nstore_publish(struct nstore *s, const struct hinput *in, size_t n, uint64_t *gseqs, size_t *published)
{
	struct nbatch b = { .n = n };
	uint64_t last = 0;
	size_t news = 0, done = 0, unknown = 0;
	int rv = RC_OK;

	if (published != NULL)
		*published = 0;
	b.p = calloc(n ? n : 1, sizeof(*b.p));
	if (b.p == NULL)
		return RC_ENOMEM;
	pthread_cond_init(&b.cv, NULL);
	pthread_mutex_lock(&s->mtx);
	for (size_t i = 0; i < n; i++) {
		b.p[i].b = &b;
		b.p[i].in = &in[i];
		b.p[i].state = NP_WAIT;
		b.p[i].room = nstore_room(s, in[i].room, in[i].room_len);
		if (b.p[i].room == NULL) {
			pthread_mutex_unlock(&s->mtx);
			rv = RC_ENOMEM;
			goto out_free;
		}
	}
	for (;;) {
		size_t i;
		struct npend *p;
		struct nroom *r;
		natsStatus st;
		double wake = 0;

		if (b.resends > 0 && nbatch_resend(s, &b, &wake))
			continue;
		i = b.stop ? n : nbatch_next(&b);
		p = i < n ? &b.p[i] : NULL;
		r = p != NULL ? p->room : NULL;
		if (b.stop)
			nbatch_fail_rest(&b);
		if (p == NULL && b.outstanding == 0 && b.resends == 0)
			break;
		if (p == NULL || r->inflight != NULL) {
			/* wait for an acknowledgement: ours, or the one of the room's event in flight; or a re-send's time */
			if (r != NULL && r->inflight != NULL) {
				b.blocked_next = r->blocked;
				r->blocked = &b;
			}
			b.waiting = true;
			if (wake > 0) {
				struct timespec ts;
				double ms = wake - now_ms();
				deadline_in(&ts, ms < 1 ? 1 : (int)ms + 1);
				pthread_cond_timedwait(&b.cv, &s->mtx, &ts);
			} else {
				pthread_cond_wait(&b.cv, &s->mtx);
			}
			b.waiting = false;
			if (r != NULL && r->blocked != NULL) {
				/* woken by our own acknowledgement while still listed: unlist */
				struct nbatch **pp = &r->blocked;
				while (*pp != NULL && *pp != &b)
					pp = &(*pp)->blocked_next;
				if (*pp == &b)
					*pp = b.blocked_next;
				b.blocked_next = NULL;
			}
			continue;
		}
		r->inflight = p; /* reserved: the room's next event waits for this one */
		if (!r->known) {
			uint64_t seq, rseq;
			int rr;

			pthread_mutex_unlock(&s->mtx);
			rr = nstore_read_room(s, r, &seq, &rseq);
			pthread_mutex_lock(&s->mtx);
			s->st.room_reads++;
			if (rr != RC_OK) {
				b.stop = true;
			} else if (seq == 0) {
				/* nothing (any more): every event of the room left the stream; its rseq goes on */
				r->seq = 0;
				r->known = true;
			} else {
				r->seq = seq;
				r->rseq = rseq;
				r->known = true;
			}
			nroom_release(r);
			continue;
		}
		p->rseq = r->rseq + 1;
		p->fence = r->seq;
		p->state = NP_SENT;
		p->sent_ms = now_ms();
		p->deadline_ms = p->sent_ms + s->cfg.timeout_ms;
		b.outstanding++;
		pthread_mutex_unlock(&s->mtx);
		st = nstore_send(s, p);
		pthread_mutex_lock(&s->mtx);
		if (st != NATS_OK) {
			/* not handed to the library: it was not sent (this time) */
			if (p->state == NP_SENT) {
				p->state = p->maybe ? NP_UNKNOWN : NP_FAILED;
				b.outstanding--;
				nroom_release(r);
			}
			s->st.failed += !p->maybe;
			s->st.unknown += p->maybe;
			b.stop = true;
			if (st != NATS_NOT_YET_CONNECTED)
				rc_log_warn("nats: cannot publish", "error=\"%s\"", natsStatus_GetText(st));
		}
	}
	for (size_t i = 0; i < n; i++) {
		done += b.p[i].state == NP_DONE;
		news += b.p[i].state == NP_DONE && !b.p[i].dup;
		unknown += b.p[i].state == NP_UNKNOWN;
		if (b.p[i].state == NP_DONE && b.p[i].gseq > last)
			last = b.p[i].gseq;
	}
	if (done == n) {
		/* answered once the follower has read them: the ids can be replayed at once */
		struct timespec ts;
		deadline_in(&ts, s->cfg.timeout_ms);
		if (s->follow_seq < last) {
			b.wait_seq = last;
			b.wait_next = s->followers;
			s->followers = &b;
			while (b.wait_seq != 0 && pthread_cond_timedwait(&b.cv, &s->mtx, &ts) == 0)
				;
			if (b.wait_seq != 0) {
				struct nbatch **pp = &s->followers;
				while (*pp != NULL && *pp != &b)
					pp = &(*pp)->wait_next;
				if (*pp == &b)
					*pp = b.wait_next;
				rc_log_warn("nats: the follower has not read a published event in time; answered anyway",
					    "seq=%" PRIu64 " followed=%" PRIu64, last, s->follow_seq);
			}
		}
		for (size_t i = 0; i < n; i++)
			gseqs[i] = b.p[i].gseq;
		if (published != NULL)
			*published = news;
		rv = RC_OK;
	} else {
		/* never a half acknowledgement: an error, which says whether anything may have gone out */
		rv = news > 0 || unknown > 0 ? RC_ETIMEDOUT : RC_EIO;
	}
	pthread_mutex_unlock(&s->mtx);
out_free:
	pthread_cond_destroy(&b.cv);
	free(b.p);
	return rv;
}

/* ------------------------------------------------------------------------ */
/* start and stop */

static void nstore_on_disconnected(natsConnection *nc, void *closure)
{
	struct nstore *s = closure;
	(void)nc;

	pthread_mutex_lock(&s->mtx);
	s->st.disconnects++;
	pthread_mutex_unlock(&s->mtx);
	rc_log_warn("nats: disconnected; publishes answer storage_unavailable until it is back", NULL);
}

static void nstore_on_reconnected(natsConnection *nc, void *closure)
{
	struct nstore *s = closure;
	char url[256] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	pthread_mutex_lock(&s->mtx);
	s->st.reconnects++;
	/* what happened meanwhile is read again by the follower; a room's fence tells the rest */
	pthread_mutex_unlock(&s->mtx);
	rc_log_info("nats: reconnected", "url=%s", url);
}

/* The connection's last callback: after it nats.c calls none of ours, so s may go. */
static void nstore_on_closed(natsConnection *nc, void *closure)
{
	struct nstore *s = closure;
	(void)nc;

	pthread_mutex_lock(&s->mtx);
	s->closed = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mtx);
}

static void nstore_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	rc_log_warn("nats: asynchronous error", "error=\"%s\"", natsStatus_GetText(err));
}

/* Splits cfg->urls at commas into the options' server list. */
static natsStatus nstore_set_servers(natsOptions *o, const char *urls)
{
	char *copy = strdup(urls), *save = NULL, *tok;
	const char *list[32];
	int n = 0;
	natsStatus st;

	if (copy == NULL)
		return NATS_NO_MEMORY;
	for (tok = strtok_r(copy, ",", &save); tok != NULL && n < 32; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (*tok != '\0')
			list[n++] = tok;
	}
	st = n > 0 ? natsOptions_SetServers(o, list, n) : NATS_INVALID_ARG;
	free(copy);
	return st;
}

/* The stream configuration the options ask for (strings point into s). */
static void nstore_stream_config(struct nstore *s, jsStreamConfig *sc, const char **subjects)
{
	jsStreamConfig_Init(sc);
	subjects[0] = s->filter;
	sc->Name = s->stream;
	sc->Description = "roomcast events (roomcast-broker --store nats)";
	sc->Subjects = subjects;
	sc->SubjectsLen = 1;
	sc->Retention = js_LimitsPolicy;
	sc->Discard = js_DiscardOld;
	sc->Storage = js_FileStorage;
	sc->Replicas = s->cfg.replicas;
	sc->MaxMsgs = s->cfg.max_msgs;
	sc->MaxBytes = s->cfg.max_bytes;
	sc->MaxAge = (int64_t)s->cfg.max_age_ms * 1000000;
	sc->MaxMsgsPerSubject = -1;
	sc->Duplicates = s->cfg.dup_window_ms > 0 ? (int64_t)s->cfg.dup_window_ms * 1000000 : 0;
	sc->AllowDirect = true;
}

/*
 * Checks an existing stream's configuration: what would break the mapping
 * is refused (RC_EINVAL, the reason logged); retention and the duplicate
 * window follow the options (*update set when they differ).
 */
static int nstore_check_stream(struct nstore *s, const jsStreamConfig *c, bool *update)
{
	const char *why = NULL;

	*update = false;
	if (c->SubjectsLen != 1 || strcmp(c->Subjects[0], s->filter) != 0)
		why = "its subjects are not exactly <stream>.> (another application's stream?)";
	else if (c->Retention != js_LimitsPolicy)
		why = "its retention is not limits (interest or work queue would delete events when read)";
	else if (c->Discard != js_DiscardOld)
		why = "its discard policy is new (a full stream would refuse publishes instead of dropping the oldest)";
	else if (c->MaxMsgsPerSubject > 0)
		why = "it has a per-subject limit (messages deleted in the middle of the log leave holes in the history)";
	else if (c->Sealed || c->Mirror != NULL || c->SourcesLen > 0)
		why = "it is sealed, a mirror or has sources";
	else if (c->Replicas != s->cfg.replicas)
		why = "its replicas differ from --nats-replicas";
	if (why != NULL) {
		rc_log_error("nats: the stream exists with a configuration roomcast cannot use; change it or choose "
			     "another --nats-stream",
			     "stream=%s reason=\"%s\" replicas=%" PRId64 " nats_replicas=%d", s->stream, why,
			     c->Replicas, s->cfg.replicas);
		return RC_EINVAL;
	}
	*update = c->MaxMsgs != s->cfg.max_msgs || c->MaxBytes != s->cfg.max_bytes ||
		  c->MaxAge != (int64_t)s->cfg.max_age_ms * 1000000 ||
		  (s->cfg.dup_window_ms > 0 && c->Duplicates != (int64_t)s->cfg.dup_window_ms * 1000000);
	return RC_OK;
}

/* Connects, retrying until connect_wait_ms has passed. */
static int nstore_connect(struct nstore *s)
{
	double until = now_ms() + s->cfg.connect_wait_ms;
	natsStatus st;

	for (;;) {
		st = natsConnection_Connect(&s->nc, s->opts);
		if (st == NATS_OK)
			return RC_OK;
		if (now_ms() >= until) {
			rc_log_error("nats: cannot connect", "urls=%s error=\"%s\"", s->cfg.urls, natsStatus_GetText(st));
			return RC_EIO;
		}
		nats_Sleep(250);
	}
}

/* Creates the stream or checks it; *si is its info. */
static int nstore_ensure_stream(struct nstore *s, jsStreamInfo **si, struct nstore_recovery *rec)
{
	jsStreamConfig sc;
	const char *subjects[1];
	jsErrCode jerr = 0;
	double until = now_ms() + s->cfg.connect_wait_ms;
	bool update = false;
	natsStatus st;
	int rv;

	nstore_stream_config(s, &sc, subjects);
	for (;;) {
		jerr = 0;
		st = js_GetStreamInfo(si, s->js, s->stream, NULL, &jerr);
		if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
			st = js_AddStream(si, s->js, &sc, NULL, &jerr);
			if (st == NATS_OK) {
				rec->created = true;
				rc_log_info("nats: stream created", "stream=%s subjects=%s replicas=%d", s->stream, s->filter,
					    s->cfg.replicas);
				return RC_OK;
			}
		}
		if (st == NATS_OK)
			break;
		/* a cluster electing its leaders answers nothing for a while */
		if (now_ms() >= until) {
			rc_log_error("nats: cannot get or create the stream", "stream=%s error=\"%s\" code=%d", s->stream,
				     natsStatus_GetText(st), (int)jerr);
			return RC_EIO;
		}
		nats_Sleep(250);
	}
	if ((rv = nstore_check_stream(s, (*si)->Config, &update)) != RC_OK)
		return rv;
	if (update) {
		jsStreamInfo *ni = NULL;
		st = js_UpdateStream(&ni, s->js, &sc, NULL, &jerr);
		if (st != NATS_OK) {
			rc_log_error("nats: cannot change the stream's retention to the options'", "stream=%s error=\"%s\"",
				     s->stream, natsStatus_GetText(st));
			return RC_EIO;
		}
		rc_log_info("nats: stream retention changed to the options'",
			    "stream=%s max_msgs=%" PRId64 " max_bytes=%" PRId64 " max_age_ms=%" PRIu64
			    " duplicate_window_ms=%" PRIu64,
			    s->stream, s->cfg.max_msgs, s->cfg.max_bytes, s->cfg.max_age_ms, s->cfg.dup_window_ms);
		rec->updated = true;
		jsStreamInfo_Destroy(*si);
		*si = ni;
	}
	return RC_OK;
}

int nstore_open(const struct nstore_config *cfg, struct history *h, struct nstore **out, struct nstore_recovery *rec)
{
	struct nstore *s = calloc(1, sizeof(*s));
	jsStreamInfo *si = NULL;
	jsOptions jo;
	jsSubOptions so;
	jsErrCode jerr = 0;
	double t0 = now_ms();
	uint64_t start;
	natsStatus st;
	int rv = RC_ENOMEM;

	memset(rec, 0, sizeof(*rec));
	*out = NULL;
	if (s == NULL)
		return RC_ENOMEM;
	s->cfg = *cfg;
	s->hist = h;
	if (getrandom(&s->instance, sizeof(s->instance), 0) != (ssize_t)sizeof(s->instance))
		s->instance = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32);
	s->stream = strdup(cfg->stream);
	pthread_mutex_init(&s->mtx, NULL);
	pthread_cond_init(&s->cv, NULL);
	rc_strmap_init(&s->rooms);
	s->st.replicas = cfg->replicas;
	if (s->stream == NULL)
		goto out_fail;
	natsmap_filter(s->filter, s->stream);
	natsmap_subject(s->global.subject, s->stream, NULL, 0);
	rv = RC_EIO;
	if (natsOptions_Create(&s->opts) != NATS_OK || nstore_set_servers(s->opts, cfg->urls) != NATS_OK ||
	    natsOptions_SetName(s->opts, "roomcast-broker") != NATS_OK ||
	    natsOptions_SetMaxReconnect(s->opts, -1) != NATS_OK ||
	    natsOptions_SetReconnectWait(s->opts, 250) != NATS_OK ||
	    natsOptions_SetTimeout(s->opts, cfg->timeout_ms) != NATS_OK ||
	    natsOptions_SetDisconnectedCB(s->opts, nstore_on_disconnected, s) != NATS_OK ||
	    natsOptions_SetReconnectedCB(s->opts, nstore_on_reconnected, s) != NATS_OK ||
	    natsOptions_SetClosedCB(s->opts, nstore_on_closed, s) != NATS_OK ||
	    natsOptions_SetErrorHandler(s->opts, nstore_on_error, s) != NATS_OK) {
		rc_log_error("nats: bad --nats-url", "urls=%s", cfg->urls);
		rv = RC_EINVAL;
		goto out_fail;
	}
	if ((rv = nstore_connect(s)) != RC_OK)
		goto out_fail;
	jsOptions_Init(&jo);
	jo.Wait = cfg->timeout_ms;
	jo.PublishAsync.AckHandler = nstore_on_ack;
	jo.PublishAsync.AckHandlerClosure = s;
	jo.PublishAsync.MaxPending = NSTORE_MAX_PENDING;
	jo.PublishAsync.StallWait = cfg->timeout_ms;
	rv = RC_EIO;
	if (natsConnection_JetStream(&s->js, s->nc, &jo) != NATS_OK)
		goto out_fail;
	if ((rv = nstore_ensure_stream(s, &si, rec)) != RC_OK)
		goto out_fail;
	history_set_epoch(h, natsmap_epoch(s->stream, si->Created));
	rec->first_seq = si->State.FirstSeq;
	rec->last_seq = si->State.LastSeq;
	start = rec->last_seq >= cfg->history_events ? rec->last_seq - cfg->history_events + 1 : 1;
	if (start < rec->first_seq)
		start = rec->first_seq;
	jsStreamInfo_Destroy(si);
	si = NULL;

	/* the follower: from the history's start, for as long as the broker runs */
	jsSubOptions_Init(&so);
	so.Stream = s->stream;
	so.Ordered = true;
	/* nats.c recreates an ordered consumer that missed two heartbeats (its node died): within ~1 s, not ~10 s */
	so.Config.Heartbeat = (int64_t)NSTORE_FOLLOW_HEARTBEAT_MS * 1000000;
	if (rec->last_seq > 0) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = start;
	}
	st = js_Subscribe(&s->sub, s->js, s->filter, nstore_on_msg, s, NULL, &so, &jerr);
	if (st != NATS_OK) {
		rc_log_error("nats: cannot follow the stream", "stream=%s error=\"%s\" code=%d", s->stream,
			     natsStatus_GetText(st), (int)jerr);
		rv = RC_EIO;
		goto out_fail;
	}
	natsSubscription_SetPendingLimits(s->sub, -1, -1);
	/* start reads what the stream holds up to its last message at start */
	pthread_mutex_lock(&s->mtx);
	{
		double until = now_ms() + 60000;
		while (rec->last_seq > 0 && s->follow_seq < rec->last_seq && now_ms() < until) {
			struct timespec ts;
			deadline_in(&ts, 200);
			pthread_cond_timedwait(&s->cv, &s->mtx, &ts);
		}
		rec->events = s->st.followed;
		if (s->follow_seq < rec->last_seq) {
			pthread_mutex_unlock(&s->mtx);
			rc_log_error("nats: reading the stream at start did not finish in 60 s", "read_to=%" PRIu64
				     " last_seq=%" PRIu64, s->follow_seq, rec->last_seq);
			rv = RC_EIO;
			goto out_fail;
		}
	}
	pthread_mutex_unlock(&s->mtx);
	rec->ms = now_ms() - t0;
	*out = s;
	return RC_OK;

out_fail:
	jsStreamInfo_Destroy(si);
	nstore_close(s);
	return rv;
}

static void nstore_free_room(struct rc_strmap_entry *e, void *arg)
{
	(void)arg;
	free(e->value);
}

void nstore_close(struct nstore *s)
{
	if (s == NULL)
		return;
	if (s->sub != NULL) {
		natsSubscription_Unsubscribe(s->sub);
		natsSubscription_Destroy(s->sub);
	}
	if (s->js != NULL) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = s->cfg.timeout_ms;
		js_PublishAsyncComplete(s->js, &po); /* nothing is in flight once the api stopped; just in case */
	}
	if (s->nc != NULL) {
		/* the connection's callbacks (disconnected, closed) run on nats.c's thread after Close returns */
		double until = now_ms() + 5000;
		natsConnection_Close(s->nc);
		pthread_mutex_lock(&s->mtx);
		while (!s->closed && now_ms() < until) {
			struct timespec ts;
			deadline_in(&ts, 50);
			pthread_cond_timedwait(&s->cv, &s->mtx, &ts);
		}
		pthread_mutex_unlock(&s->mtx);
	}
	jsCtx_Destroy(s->js);
	natsConnection_Destroy(s->nc);
	natsOptions_Destroy(s->opts);
	rc_strmap_each(&s->rooms, nstore_free_room, NULL);
	rc_strmap_fini(&s->rooms);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mtx);
	free(s->stream);
	free(s);
	nats_CloseAndWait(2000);
}

void nstore_stats(struct nstore *s, struct nstore_stats *st)
{
	pthread_mutex_lock(&s->mtx);
	*st = s->st;
	st->follow_seq = s->follow_seq;
	pthread_mutex_unlock(&s->mtx);
	st->connected = natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED;
}
