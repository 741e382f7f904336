#include "nstore.h"

#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "natsmap.h"
#include "nstore_int.h"
#include "strmap.h"

#define NSTORE_MAX_PENDING  65536
/* The follower's idle heartbeat: nats.c recreates the ordered consumer after two missed (the leader died). */
#define NSTORE_FOLLOW_HEARTBEAT_MS 500

double nstore_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void nstore_deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

struct nroom *nstore_room(struct nstore *s, const char *room, size_t len)
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

void nstore_room_learn(struct nroom *r, uint64_t seq, uint64_t rseq)
{
	if (seq > r->seq) {
		r->seq = seq;
		r->rseq = rseq;
		r->known = true;
	}
}

/* ------------------------------------------------------------------------ */
/* start and stop */

static void nstore_on_disconnected(natsConnection *nc, void *closure)
{
	struct nstore *s = closure;
	(void)nc;

	pthread_mutex_lock(&s->mtx);
	s->st.disconnects++;
	s->disconnected_ms = nstore_now_ms();
	pthread_mutex_unlock(&s->mtx);
	rc_log_warn("nats: disconnected; publishes wait --nats-reconnect-wait-ms for it, then answer "
		    "storage_unavailable until it is back", NULL);
}

static void nstore_on_reconnected(natsConnection *nc, void *closure)
{
	struct nstore *s = closure;
	char url[256] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	pthread_mutex_lock(&s->mtx);
	s->st.reconnects++;
	s->disconnected_ms = 0;
	pthread_cond_broadcast(&s->cv); /* the publishes waiting for it (nstore_wait_connected) */
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
 * window follow the options, and direct gets are allowed (the room reads
 * and the reads for a silent follower use them) (*update set when any of
 * them differs).
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
		  (s->cfg.dup_window_ms > 0 && c->Duplicates != (int64_t)s->cfg.dup_window_ms * 1000000) ||
		  !c->AllowDirect;
	return RC_OK;
}

/* Connects, retrying until connect_wait_ms has passed. */
static int nstore_connect(struct nstore *s)
{
	double until = nstore_now_ms() + s->cfg.connect_wait_ms;
	natsStatus st;

	for (;;) {
		st = natsConnection_Connect(&s->nc, s->opts);
		if (st == NATS_OK)
			return RC_OK;
		if (nstore_now_ms() >= until) {
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
	double until = nstore_now_ms() + s->cfg.connect_wait_ms;
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
		if (nstore_now_ms() >= until) {
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
			rc_log_error("nats: cannot change the stream to the options'", "stream=%s error=\"%s\"",
				     s->stream, natsStatus_GetText(st));
			return RC_EIO;
		}
		rc_log_info("nats: stream changed to the options'",
			    "stream=%s max_msgs=%" PRId64 " max_bytes=%" PRId64 " max_age_ms=%" PRIu64
			    " duplicate_window_ms=%" PRIu64 " allow_direct=true",
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
	double t0 = nstore_now_ms();
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
		s->instance = (uint64_t)nstore_now_ms() ^ ((uint64_t)getpid() << 32);
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
	{
		/*
		 * Creating the consumer needs the cluster's metadata leader, which the
		 * stream's answers above do not: while the cluster elects one (4-9 s
		 * after it died, or right after the cluster formed) it times out.
		 */
		double until = nstore_now_ms() + s->cfg.connect_wait_ms;
		for (;;) {
			jerr = 0;
			st = js_Subscribe(&s->sub, s->js, s->filter, nstore_on_msg, s, NULL, &so, &jerr);
			if (st == NATS_OK)
				break;
			if (nstore_now_ms() >= until) {
				rc_log_error("nats: cannot follow the stream", "stream=%s error=\"%s\" code=%d", s->stream,
					     natsStatus_GetText(st), (int)jerr);
				rv = RC_EIO;
				goto out_fail;
			}
			rc_log_warn("nats: cannot follow the stream yet; trying again", "stream=%s error=\"%s\" code=%d",
				    s->stream, natsStatus_GetText(st), (int)jerr);
			nats_Sleep(250);
		}
	}
	natsSubscription_SetPendingLimits(s->sub, -1, -1);
	/* start reads what the stream holds up to its last message at start */
	pthread_mutex_lock(&s->mtx);
	{
		double until = nstore_now_ms() + 60000;
		while (rec->last_seq > 0 && s->follow_seq < rec->last_seq && nstore_now_ms() < until) {
			struct timespec ts;
			nstore_deadline_in(&ts, 200);
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
	rec->ms = nstore_now_ms() - t0;
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
		double until = nstore_now_ms() + 5000;
		natsConnection_Close(s->nc);
		pthread_mutex_lock(&s->mtx);
		while (!s->closed && nstore_now_ms() < until) {
			struct timespec ts;
			nstore_deadline_in(&ts, 50);
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
