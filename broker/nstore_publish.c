/*
 * nstore_publish.c - the publish path of --store nats: each event fenced
 * with its room's last known stream sequence, the acknowledgements, a
 * failed fence read and sent again, re-sends of unanswered events, and the
 * wait for the follower before a publish is answered. Shared state and the
 * rooms table: nstore_int.h.
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "event.h"
#include "log.h"
#include "natsmap.h"
#include "nstore_int.h"
#include "strmap.h"

/* A conflict this many times in a row on one event: the room is too contended, the publish fails. */
#define NSTORE_MAX_ATTEMPTS 50
/*
 * An event JetStream has not answered within this long (a leader that died
 * with it, or no leader: no responders) is sent again, the same message
 * (same Nats-Msg-Id, rseq and fence), until --nats-timeout-ms has passed
 * since it was first sent: so it goes through about this long after a
 * leader exists, not when the timeout runs out.
 */
#define NSTORE_RESEND_MS 1000
/*
 * An event answered "no responders" (the stream has no leader: being
 * elected, or its node is down) is sent again after 50 ms, doubling to
 * this: it goes through at most this long after a leader exists, at a few
 * requests per second per room in flight meanwhile (answered by the
 * broker's own nats-server).
 */
#define NSTORE_NO_LEADER_MS_MIN 50
#define NSTORE_NO_LEADER_MS_MAX 200
/*
 * A publish acknowledged by JetStream waits for the follower to read its
 * events; when it has waited this long and the follower's consumer has
 * delivered nothing for as long (it died with its node: nats.c recreates it
 * a second or more after the cluster has leaders again), the publish's
 * thread reads them by direct get. A consumer that delivers, even behind,
 * is left to catch up.
 */
#define NSTORE_FILL_AFTER_MS 100

/* The pause before retry number tries + 1 of a request no one answered: 50 ms doubling to 200 ms. */
static int nstore_backoff_ms(int tries)
{
	int ms = NSTORE_NO_LEADER_MS_MIN << (tries < 3 ? tries : 3);

	return ms < NSTORE_NO_LEADER_MS_MAX ? ms : NSTORE_NO_LEADER_MS_MAX;
}

/* How long one request waits for its answer: NSTORE_RESEND_MS, or what is left of its deadline (1 ms at least). */
static int64_t nstore_request_wait(double left)
{
	return left < NSTORE_RESEND_MS ? (left < 1 ? 1 : (int64_t)left) : NSTORE_RESEND_MS;
}

/* Waits on cv (mtx held) until woken, until, or step_ms, whichever comes first. */
static void nstore_wait_step(pthread_cond_t *cv, pthread_mutex_t *mtx, double until, int step_ms)
{
	struct timespec ts;
	double left = until - nstore_now_ms();

	nstore_deadline_in(&ts, left < step_ms ? (left < 0 ? 1 : (int)left + 1) : step_ms);
	pthread_cond_timedwait(cv, mtx, &ts);
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

void nstore_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
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
			nstore_room_learn(r, pa->Sequence, p->rseq);
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
		double now = nstore_now_ms();

		p->maybe |= noanswer;
		if ((noanswer || noleader) && now + 10 < p->deadline_ms) {
			/* the room stays reserved: the same message goes again (a duplicate if the first was stored) */
			p->state = NP_RESEND;
			if (noleader)
				p->next_ms = now + nstore_backoff_ms(p->noleaders++);
			else
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

/*
 * Reads the room's last message from the stream into r: by direct get,
 * which every replica answers (not only the leader, so also while one is
 * elected), asked again after nstore_backoff_ms until
 * --nats-timeout-ms when none answers; not at all while the broker is not
 * connected (RC_EIO at once). A replica behind the leader may
 * answer an older message: the fence made of it is then refused, and the
 * room read again (as when another broker published there first). Called
 * without mtx; r is reserved by the caller.
 */
static int nstore_read_room(struct nstore *s, struct nroom *r, uint64_t *seq, uint64_t *rseq)
{
	natsMsg *m = NULL;
	const char *rs = NULL;
	double until = nstore_now_ms() + s->cfg.timeout_ms;
	int tries = 0;
	natsStatus st;

	*seq = 0;
	*rseq = 0;
	for (;;) {
		jsOptions jo;
		jsDirectGetMsgOptions o;
		int pause = nstore_backoff_ms(tries++);

		if (natsConnection_Status(s->nc) != NATS_CONN_STATUS_CONNECTED) {
			st = NATS_NOT_YET_CONNECTED; /* refused at once, as a publish is: nats.c would hold it */
			break;
		}
		jsOptions_Init(&jo);
		jo.Wait = nstore_request_wait(until - nstore_now_ms());
		jsDirectGetMsgOptions_Init(&o);
		o.LastBySubject = r->subject;
		st = js_DirectGetMsg(&m, s->js, s->stream, &jo, &o);
		if (st == NATS_OK || st == NATS_NOT_FOUND || nstore_now_ms() + pause >= until ||
		    (st != NATS_TIMEOUT && st != NATS_NO_RESPONDERS))
			break;
		nats_Sleep(pause); /* no replica answered: the stream's node is down, or being replaced */
	}
	if (st == NATS_NOT_FOUND)
		return RC_OK; /* nothing in the room yet (or no more) */
	if (st != NATS_OK) {
		if (st != NATS_NOT_YET_CONNECTED) /* disconnected: said once, by the connection's callback */
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
	natsStatus st;

	if (natsConnection_Status(s->nc) != NATS_CONN_STATUS_CONNECTED)
		return NATS_NOT_YET_CONNECTED; /* never queue into nats.c's reconnect buffer: it would go out later */
	p->sends++;
	jsPubOptions_Init(&po);
	po.MaxWait = nstore_request_wait(p->deadline_ms - p->sent_ms);
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

/* True while the connection is lost for less than --nats-reconnect-wait-ms. Caller holds mtx. */
static bool nstore_reconnecting(struct nstore *s, double now)
{
	return s->disconnected_ms != 0 && now < s->disconnected_ms + s->cfg.reconnect_wait_ms;
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
	double now = nstore_now_ms();
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
		due->next_ms = now + NSTORE_NO_LEADER_MS_MIN;
		b->resends++;
		if (st != NATS_NOT_YET_CONNECTED || (!due->maybe && !nstore_reconnecting(s, now))) {
			b->resends--;
			nbatch_give_up(s, b, due);
			if (st != NATS_NOT_YET_CONNECTED)
				rc_log_warn("nats: cannot publish", "error=\"%s\"", natsStatus_GetText(st));
		}
		/* reconnecting: again in a moment; one that may be stored until its deadline, else the reconnect wait */
	}
	return true;
}

/*
 * RC_ETOOBIG when the events name more rooms this broker has not seen than
 * --max-rooms leaves room for. Caller holds mtx.
 */
static int nstore_rooms_fit(struct nstore *s, const struct hinput *in, size_t n)
{
	size_t left, news = 0;

	if (s->cfg.max_rooms == 0)
		return RC_OK;
	left = s->rooms.count < s->cfg.max_rooms ? s->cfg.max_rooms - s->rooms.count : 0;
	for (size_t i = 0; i < n; i++) {
		bool again = false;

		if (in[i].room == NULL || in[i].room_len == 0 || rc_strmap_get(&s->rooms, in[i].room, in[i].room_len))
			continue;
		/* a new room named twice in the publish counts once (bounded: at most left + 1 are counted) */
		for (size_t j = 0; j < i && !again; j++)
			again = in[j].room != NULL && in[j].room_len == in[i].room_len &&
				memcmp(in[j].room, in[i].room, in[i].room_len) == 0;
		if (!again && ++news > left)
			return RC_ETOOBIG;
	}
	return RC_OK;
}

/*
 * Not connected: waits until the connection is back or
 * --nats-reconnect-wait-ms has passed since it was lost (nats.c moves to
 * another node within milliseconds when one stops), so that a publish
 * made meanwhile is not refused. Called without mtx.
 */
static void nstore_wait_connected(struct nstore *s)
{
	double first = 0;

	if (natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED || s->cfg.reconnect_wait_ms == 0)
		return;
	pthread_mutex_lock(&s->mtx);
	for (;;) {
		double now = nstore_now_ms(), until;
		bool up;

		/* nats.c's status outside mtx: its callbacks take mtx, and may run under its own locks */
		pthread_mutex_unlock(&s->mtx);
		up = natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED;
		pthread_mutex_lock(&s->mtx);
		if (up || s->closed)
			break;
		if (first == 0)
			first = now; /* the disconnected callback may not have run yet */
		until = (s->disconnected_ms != 0 ? s->disconnected_ms : first) + s->cfg.reconnect_wait_ms;
		if (now >= until)
			break;
		/* woken by the reconnected callback; the status is looked at again every 50 ms anyway */
		nstore_wait_step(&s->cv, &s->mtx, until, 50);
	}
	pthread_mutex_unlock(&s->mtx);
}

int nstore_publish(struct nstore *s, const struct hinput *in, size_t n, uint64_t *gseqs, size_t *published)
{
	struct nbatch b = { .n = n };
	uint64_t last = 0;
	size_t news = 0, done = 0, unknown = 0;
	int rv = RC_OK;

	if (published != NULL)
		*published = 0;
	nstore_wait_connected(s);
	b.p = calloc(n ? n : 1, sizeof(*b.p));
	if (b.p == NULL)
		return RC_ENOMEM;
	pthread_cond_init(&b.cv, NULL);
	pthread_mutex_lock(&s->mtx);
	if ((rv = nstore_rooms_fit(s, in, n)) != RC_OK) {
		pthread_mutex_unlock(&s->mtx);
		goto out_free;
	}
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
				double ms = wake - nstore_now_ms();
				nstore_deadline_in(&ts, ms < 1 ? 1 : (int)ms + 1);
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
		p->sent_ms = nstore_now_ms();
		p->deadline_ms = p->sent_ms + s->cfg.timeout_ms;
		b.outstanding++;
		pthread_mutex_unlock(&s->mtx);
		st = nstore_send(s, p);
		pthread_mutex_lock(&s->mtx);
		if (st == NATS_NOT_YET_CONNECTED && p->state == NP_SENT && nstore_reconnecting(s, nstore_now_ms())) {
			/* the connection went a moment ago: sent again once it is back (nbatch_resend), room kept */
			p->state = NP_RESEND;
			p->next_ms = nstore_now_ms() + NSTORE_NO_LEADER_MS_MIN;
			b.outstanding--;
			b.resends++;
		} else if (st != NATS_OK) {
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
		if (s->follow_seq < last) {
			double since = nstore_now_ms(), until = since + s->cfg.timeout_ms;
			double fill_at = since + NSTORE_FILL_AFTER_MS; /* and again this long after each */

			b.wait_seq = last;
			b.wait_next = s->followers;
			s->followers = &b;
			while (b.wait_seq != 0) {
				double now = nstore_now_ms();

				if (now >= until)
					break;
				if (!s->filling && now >= fill_at && now - s->follow_ms >= NSTORE_FILL_AFTER_MS) {
					/* the consumer is silent: read the stream up to our events ourselves */
					s->filling = true;
					pthread_mutex_unlock(&s->mtx);
					nstore_fill(s, last);
					pthread_mutex_lock(&s->mtx);
					s->filling = false;
					fill_at = nstore_now_ms() + NSTORE_FILL_AFTER_MS;
					continue;
				}
				nstore_wait_step(&b.cv, &s->mtx, until, NSTORE_FILL_AFTER_MS);
			}
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
