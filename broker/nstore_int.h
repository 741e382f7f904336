/*
 * nstore_int.h - what the --store nats modules share, private to them:
 * nstore.c (the connection, the stream's setup, open and close, and the
 * rooms table), nstore_publish.c (fenced publishes, re-sends, batches) and
 * nstore_follow.c (the ordered consumer that feeds the history, and the
 * direct gets that stand in for it while it is silent). Nothing
 * outside those three includes it; the broker's interface is nstore.h.
 */
#ifndef RC_NSTORE_INT_H
#define RC_NSTORE_INT_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "natsmap.h"
#include "nstore.h"
#include "strmap.h"

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
	int noleaders;		 /* sends answered "no responders" */
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
	double follow_ms;	   /* when the follower's consumer last delivered a message */
	bool filling;		   /* a publish's thread reads the stream by direct get (nstore_fill) */
	double disconnected_ms;	   /* when the connection was lost (0: connected) */
	bool closed;		   /* nats.c's last connection callback has run (its closed callback) */
	struct nbatch *followers; /* publishes waiting for the follower */
	uint64_t instance;	   /* random, drawn at open: the broker's own message ids */
	_Atomic uint64_t own_ids; /* own ids given */
	struct nstore_stats st;
};

/* Now on the monotonic clock, in ms. */
double nstore_now_ms(void);

/* *ts = ms from now on the realtime clock (for pthread_cond_timedwait). */
void nstore_deadline_in(struct timespec *ts, int ms);

/* The room's entry, created (unknown) when absent. Caller holds mtx. NULL: out of memory. */
struct nroom *nstore_room(struct nstore *s, const char *room, size_t len);

/*
 * Learns that the room's last message is at seq with rseq (from the
 * follower or an acknowledgement). Caller holds mtx.
 */
void nstore_room_learn(struct nroom *r, uint64_t seq, uint64_t rseq);

/* The follower: reads one message of the stream into the history (a nats.c subscription thread). nstore_follow.c. */
void nstore_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
/*
 * Reads the stream by direct get from the follower's position up to seq
 * (or until a message is not there yet) into the history, as the follower
 * would: for when its consumer is silent (its node died; nats.c recreates
 * it within a second or more once the cluster has leaders again). Called
 * without mtx, by one thread at a time (s->filling). nstore_follow.c.
 */
void nstore_fill(struct nstore *s, uint64_t seq);

/* Where the acknowledgement of a message comes in (nats.c's thread for them): never blocks. nstore_publish.c. */
void nstore_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);

#endif
