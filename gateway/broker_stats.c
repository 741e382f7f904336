#include "broker_stats.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bus_client.h" /* GW_BROKERS_MAX */
#include "error.h"
#include "inbox.h"
#include "list.h"
#include "log.h"
#include "options.h"

_Static_assert(GW_BROKER_STATS_MAX == GW_BROKERS_MAX, "an answer kept per --broker-api address");

/* ---- reading an answer ---- */

/* obj[key] as a non-negative integer. */
static bool get_u64(struct json_object *obj, const char *key, uint64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0)
		return false;
	*out = json_object_get_uint64(v);
	return true;
}

/* obj[key] as a string of 1..size-1 characters of set, copied to out. */
static bool get_word(struct json_object *obj, const char *key, const char *set, char *out, size_t size)
{
	struct json_object *v;
	const char *s;
	size_t n;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
		return false;
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n == 0 || n >= size || strspn(s, set) != n)
		return false;
	memcpy(out, s, n + 1);
	return true;
}

static bool parse_store(struct json_object *st, struct gw_broker_figures *f)
{
	struct json_object *v;
	uint64_t avg;

	if (!json_object_is_type(st, json_type_object) ||
	    !get_word(st, "fsync", "abcdefghijklmnopqrstuvwxyz", f->fsync, sizeof(f->fsync)) ||
	    !get_u64(st, "bytes", &f->store_bytes) || !get_u64(st, "segments", &f->segments) ||
	    !get_u64(st, "oldest_gseq", &f->oldest_gseq) || !get_u64(st, "fsyncs", &f->fsyncs) ||
	    !get_u64(st, "fsync_us_last", &f->fsync_us_last) || !get_u64(st, "fsync_us_max", &f->fsync_us_max) ||
	    !get_u64(st, "write_errors", &f->write_errors) || !get_u64(st, "fsync_errors", &f->fsync_errors))
		return false;
	/* a broker from before fsync_us_total answers the average only */
	if (!get_u64(st, "fsync_us_total", &f->fsync_us_total)) {
		if (!get_u64(st, "fsync_us_avg", &avg))
			return false;
		f->fsync_us_total = avg * f->fsyncs;
	}
	if (!json_object_object_get_ex(st, "recovery_ms", &v) ||
	    !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
		return false;
	f->recovery_ms = json_object_get_double(v);
	f->file = true;
	return f->recovery_ms >= 0;
}

static bool parse_nats(struct json_object *nt, struct gw_broker_figures *f)
{
	struct json_object *v;

	if (!json_object_is_type(nt, json_type_object) || !json_object_object_get_ex(nt, "connected", &v) ||
	    !json_object_is_type(v, json_type_boolean) || !get_u64(nt, "replicas", &f->nats_replicas) ||
	    !get_u64(nt, "disconnects", &f->nats_disconnects) || !get_u64(nt, "reconnects", &f->nats_reconnects) ||
	    !get_u64(nt, "fence_retries", &f->nats_fence_retries) || !get_u64(nt, "failed", &f->nats_failed) ||
	    !get_u64(nt, "unknown", &f->nats_unknown) || !get_u64(nt, "follow_seq", &f->nats_follow_seq) ||
	    !get_u64(nt, "resends", &f->nats_resends))
		return false;
	f->nats_connected = json_object_get_boolean(v);
	f->nats = true;
	return true;
}

static bool parse_acks(struct json_object *am, struct gw_broker_figures *f)
{
	if (!json_object_is_type(am, json_type_object) || !get_u64(am, "entries", &f->ack_entries) ||
	    !get_u64(am, "bytes", &f->ack_bytes) || !get_u64(am, "limit_bytes", &f->ack_limit) ||
	    !get_u64(am, "forgotten", &f->ack_forgotten) || !get_u64(am, "hits", &f->ack_hits) ||
	    !get_u64(am, "misses", &f->ack_misses))
		return false;
	f->acks = true;
	return true;
}

int gw_broker_figures_parse(const char *reply, size_t len, struct gw_broker_figures *f)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj = NULL, *ok, *hist, *st, *nt, *am;
	bool good = false;

	if (tok == NULL)
		return RC_ENOMEM;
	if (len <= INT32_MAX)
		obj = json_tokener_parse_ex(tok, reply, (int)len);
	if (obj != NULL && json_tokener_get_parse_end(tok) != len) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	memset(f, 0, sizeof(*f));
	if (obj != NULL && json_object_is_type(obj, json_type_object) && json_object_object_get_ex(obj, "ok", &ok) &&
	    json_object_is_type(ok, json_type_boolean) && json_object_get_boolean(ok) &&
	    get_word(obj, "epoch", "0123456789abcdef", f->epoch, sizeof(f->epoch)) &&
	    get_u64(obj, "gseq", &f->last_gseq) && json_object_object_get_ex(obj, "history", &hist) &&
	    json_object_is_type(hist, json_type_object) && get_u64(hist, "events", &f->history_events) &&
	    get_u64(hist, "bytes", &f->history_bytes))
		good = (!json_object_object_get_ex(obj, "store", &st) || parse_store(st, f)) &&
		       (!json_object_object_get_ex(obj, "nats", &nt) || parse_nats(nt, f)) &&
		       (!json_object_object_get_ex(obj, "ack_memory", &am) || parse_acks(am, f));
	json_object_put(obj);
	return good ? RC_OK : RC_EPROTO;
}

/* ---- the shared last answers ---- */

struct gw_broker_stats {
	pthread_mutex_t mtx;	       /* guards what follows */
	bool has[GW_BROKER_STATS_MAX]; /* broker i answered */
	struct gw_broker_figures last[GW_BROKER_STATS_MAX];
	uint64_t at_ns[GW_BROKER_STATS_MAX];
};

int gw_broker_stats_new(struct gw_broker_stats **out)
{
	struct gw_broker_stats *bs = calloc(1, sizeof(*bs));

	if (bs == NULL)
		return RC_ENOMEM;
	pthread_mutex_init(&bs->mtx, NULL);
	*out = bs;
	return RC_OK;
}

void gw_broker_stats_free(struct gw_broker_stats *bs)
{
	if (bs == NULL)
		return;
	pthread_mutex_destroy(&bs->mtx);
	free(bs);
}

void gw_broker_stats_put(struct gw_broker_stats *bs, unsigned broker, const struct gw_broker_figures *f,
			 uint64_t now_ns)
{
	if (broker >= GW_BROKER_STATS_MAX)
		return;
	pthread_mutex_lock(&bs->mtx);
	bs->last[broker] = *f;
	bs->at_ns[broker] = now_ns;
	bs->has[broker] = true;
	pthread_mutex_unlock(&bs->mtx);
}

/* Which answers have a figure: every one, or those with that section. */
enum fig_of { OF_ALL, OF_ACKS, OF_NATS, OF_FILE };
/* How a figure is kept and shown. */
enum fig_unit { U_COUNT, U_BOOL, U_MICROS, U_MILLIS_DOUBLE };

/* One roomcast_broker_* metric read from struct gw_broker_figures at off. */
struct fig {
	const char *name, *type, *help;
	size_t off;
	unsigned char of, unit;
};

#define FIG(name, type, help, field, of, unit)                                                                         \
	{                                                                                                              \
		name, type, help, offsetof(struct gw_broker_figures, field), of, unit                                  \
	}

/* In the order /metrics shows them, after the age and the info metric. */
static const struct fig figs[] = {
	FIG("roomcast_broker_last_gseq", "gauge", "The gseq of the broker's last event (the id's number).", last_gseq,
	    OF_ALL, U_COUNT),
	FIG("roomcast_broker_history_events", "gauge", "Events the broker's history holds (replayable).",
	    history_events, OF_ALL, U_COUNT),
	FIG("roomcast_broker_history_bytes", "gauge", "Bytes of events the broker's history holds.", history_bytes,
	    OF_ALL, U_COUNT),
	FIG("roomcast_broker_ack_memory_entries", "gauge",
	    "Publishes answered on the bus the broker still remembers (for a gateway that lost the answer).",
	    ack_entries, OF_ACKS, U_COUNT),
	FIG("roomcast_broker_ack_memory_bytes", "gauge", "Bytes they take, counted against the limit.", ack_bytes,
	    OF_ACKS, U_COUNT),
	FIG("roomcast_broker_ack_memory_limit_bytes", "gauge", "The limit (--ack-memory-bytes).", ack_limit, OF_ACKS,
	    U_COUNT),
	FIG("roomcast_broker_ack_memory_forgotten_total", "counter",
	    "Answers forgotten (the oldest) to stay within the limit.", ack_forgotten, OF_ACKS, U_COUNT),
	FIG("roomcast_broker_ack_memory_hits_total", "counter", "Lost answers a gateway asked for and got (op acks).",
	    ack_hits, OF_ACKS, U_COUNT),
	FIG("roomcast_broker_ack_memory_misses_total", "counter",
	    "Answers a gateway asked for that the broker did not know (not yet published, or forgotten).", ack_misses,
	    OF_ACKS, U_COUNT),
	FIG("roomcast_broker_nats_connected", "gauge", "1 while the broker is connected to NATS, else 0.",
	    nats_connected, OF_NATS, U_BOOL),
	FIG("roomcast_broker_nats_disconnects_total", "counter",
	    "Times the broker lost its NATS connection (a server died or was cut off: a failover).", nats_disconnects,
	    OF_NATS, U_COUNT),
	FIG("roomcast_broker_nats_reconnects_total", "counter",
	    "Times the broker connected to NATS again (possibly to another server of the cluster).", nats_reconnects,
	    OF_NATS, U_COUNT),
	FIG("roomcast_broker_nats_fence_retries_total", "counter",
	    "Publishes sent again because another broker had published to the room first.", nats_fence_retries, OF_NATS,
	    U_COUNT),
	FIG("roomcast_broker_nats_publish_failed_total", "counter",
	    "Events JetStream refused or that could not be sent (answered 503 storage_unavailable).", nats_failed,
	    OF_NATS, U_COUNT),
	FIG("roomcast_broker_nats_publish_unknown_total", "counter",
	    "Events with no acknowledgement in --nats-timeout-ms (answered publish_outcome_unknown).", nats_unknown,
	    OF_NATS, U_COUNT),
	FIG("roomcast_broker_nats_followed_gseq", "gauge",
	    "The last stream sequence (gseq) the broker's follower read and put on its bus.", nats_follow_seq, OF_NATS,
	    U_COUNT),
	FIG("roomcast_broker_nats_resends_total", "counter",
	    "Publishes sent to JetStream again (same Nats-Msg-Id) after a second without an answer.", nats_resends,
	    OF_NATS, U_COUNT),
	FIG("roomcast_broker_store_bytes", "gauge", "Bytes of the broker's log in --data-dir (every segment).",
	    store_bytes, OF_FILE, U_COUNT),
	FIG("roomcast_broker_store_segments", "gauge", "Segment files of the broker's log.", segments, OF_FILE,
	    U_COUNT),
	FIG("roomcast_broker_store_oldest_gseq", "gauge",
	    "The first gseq of the log's oldest segment (with the epoch: the oldest id on disk).", oldest_gseq, OF_FILE,
	    U_COUNT),
	FIG("roomcast_broker_store_fsyncs_total", "counter", "fdatasync calls on the log (--fsync interval, always).",
	    fsyncs, OF_FILE, U_COUNT),
	FIG("roomcast_broker_store_fsync_seconds_total", "counter", "Seconds spent in fdatasync of the log.",
	    fsync_us_total, OF_FILE, U_MICROS),
	FIG("roomcast_broker_store_fsync_max_seconds", "gauge", "The longest fdatasync of the log since the start.",
	    fsync_us_max, OF_FILE, U_MICROS),
	FIG("roomcast_broker_store_fsync_last_seconds", "gauge", "The last fdatasync of the log.", fsync_us_last,
	    OF_FILE, U_MICROS),
	FIG("roomcast_broker_store_write_errors_total", "counter",
	    "Appends to the log that failed (disk full, file-size limit, I/O error): publishes answered 503.",
	    write_errors, OF_FILE, U_COUNT),
	FIG("roomcast_broker_store_fsync_errors_total", "counter", "fdatasync calls on the log that failed.",
	    fsync_errors, OF_FILE, U_COUNT),
	FIG("roomcast_broker_store_recovery_seconds", "gauge",
	    "How long the broker took at its start to read the log back.", recovery_ms, OF_FILE, U_MILLIS_DOUBLE),
};

static bool fig_shown(const struct gw_broker_figures *f, unsigned of)
{
	switch (of) {
	case OF_ACKS: return f->acks;
	case OF_NATS: return f->nats;
	case OF_FILE: return f->file;
	default: return true;
	}
}

static void head(struct rc_buf *out, const char *name, const char *type, const char *help)
{
	rc_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void fig_sample(struct rc_buf *out, const struct fig *g, unsigned broker, const struct gw_broker_figures *f)
{
	const char *at = (const char *)f + g->off;
	uint64_t v;
	double d;
	bool b;

	rc_buf_printf(out, "%s{broker=\"%u\"} ", g->name, broker);
	switch (g->unit) {
	case U_BOOL:
		memcpy(&b, at, sizeof(b));
		rc_buf_printf(out, "%d\n", b ? 1 : 0);
		break;
	case U_MICROS: /* shown in seconds, exactly */
		memcpy(&v, at, sizeof(v));
		rc_buf_printf(out, "%" PRIu64 ".%06" PRIu64 "\n", v / 1000000u, v % 1000000u);
		break;
	case U_MILLIS_DOUBLE:
		memcpy(&d, at, sizeof(d));
		rc_buf_printf(out, "%.4f\n", d / 1000.0);
		break;
	default: memcpy(&v, at, sizeof(v)); rc_buf_printf(out, "%" PRIu64 "\n", v);
	}
}

void gw_broker_stats_render(struct gw_broker_stats *bs, uint64_t now_ns, struct rc_buf *out)
{
	struct gw_broker_figures f[GW_BROKER_STATS_MAX];
	uint64_t at[GW_BROKER_STATS_MAX];
	unsigned idx[GW_BROKER_STATS_MAX], n = 0;

	if (bs == NULL)
		return;
	/* a copy of the answers, so that the lock is not held while rendering */
	pthread_mutex_lock(&bs->mtx);
	for (unsigned i = 0; i < GW_BROKER_STATS_MAX; i++) {
		if (!bs->has[i])
			continue;
		idx[n] = i;
		f[n] = bs->last[i];
		at[n++] = bs->at_ns[i];
	}
	pthread_mutex_unlock(&bs->mtx);
	if (n == 0)
		return;

	head(out, "roomcast_broker_stats_age_seconds", "gauge",
	     "Seconds since the broker answered the stats request the roomcast_broker_* figures come from "
	     "(asked every --broker-stats-ms).");
	for (unsigned k = 0; k < n; k++)
		rc_buf_printf(out, "roomcast_broker_stats_age_seconds{broker=\"%u\"} %.3f\n", idx[k],
			      now_ns > at[k] ? (double)(now_ns - at[k]) / 1e9 : 0.0);
	head(out, "roomcast_broker_store_info", "gauge",
	     "1, labelled with where the broker keeps its history (store: memory, file or nats), its --fsync or "
	     "--nats-replicas, and its epoch.");
	for (unsigned k = 0; k < n; k++) {
		if (f[k].nats)
			rc_buf_printf(out,
				      "roomcast_broker_store_info{broker=\"%u\",store=\"nats\",replicas=\"%" PRIu64
				      "\",epoch=\"%s\"} 1\n",
				      idx[k], f[k].nats_replicas, f[k].epoch);
		else if (f[k].file)
			rc_buf_printf(out,
				      "roomcast_broker_store_info{broker=\"%u\",store=\"file\",fsync=\"%s\",epoch=\"%"
				      "s\"} 1\n",
				      idx[k], f[k].fsync, f[k].epoch);
		else
			rc_buf_printf(out,
				      "roomcast_broker_store_info{broker=\"%u\",store=\"memory\",epoch=\"%s\"} 1\n",
				      idx[k], f[k].epoch);
	}
	for (size_t g = 0; g < sizeof(figs) / sizeof(figs[0]); g++) {
		bool described = false;

		for (unsigned k = 0; k < n; k++) {
			if (!fig_shown(&f[k], figs[g].of))
				continue;
			if (!described)
				head(out, figs[g].name, figs[g].type, figs[g].help);
			described = true;
			fig_sample(out, &figs[g], idx[k], &f[k]);
		}
	}
}

/* ---- asking the brokers ---- */

#define POLL_TIMEOUT_MS 2000 /* for an answer; the next question waits for it */

/* One broker address: its socket, its question in flight, its timer. */
struct poll_broker {
	struct gw_broker_poll *p;
	unsigned index;
	nng_socket sock;
	bool opened;
	nng_aio *aio;
	atomic_int pipes; /* connections up */
	uv_timer_t timer;
	bool timer_init;
	bool sending;	/* the aio sends the question (else it waits for the answer) */
	nng_msg *reply; /* the answer, from the aio callback to the loop (with item) */
	struct gw_inbox_item item;
};

struct gw_broker_poll {
	struct gw_broker_stats *bs;
	uint64_t interval_ms, retry_ms;
	struct gw_inbox inbox; /* answers (and failures), from nng's threads to the loop */
	bool inbox_init, stopping;
	unsigned n;
	struct poll_broker b[GW_BROKER_STATS_MAX];
};

static void poll_tick(uv_timer_t *t);

static void poll_pipe_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
	struct poll_broker *b = arg;

	(void)pipe;
	if (ev == NNG_PIPE_EV_ADD_POST)
		atomic_fetch_add(&b->pipes, 1);
	else if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&b->pipes, 1);
}

/* nng's thread: the send went (then wait for the answer) or the question ended. Never blocks. */
static void poll_aio_cb(void *arg)
{
	struct poll_broker *b = arg;
	int rv = nng_aio_result(b->aio);

	if (b->sending) {
		b->sending = false;
		if (rv == 0) {
			nng_recv_aio(b->sock, b->aio);
			return;
		}
		if (nng_aio_get_msg(b->aio) != NULL) /* not sent: still ours */
			nng_msg_free(nng_aio_get_msg(b->aio));
		nng_aio_set_msg(b->aio, NULL);
	}
	b->reply = rv == 0 ? nng_aio_get_msg(b->aio) : NULL;
	nng_aio_set_msg(b->aio, NULL);
	gw_inbox_push(&b->p->inbox, &b->item);
}

/* Loop thread: a question ended; keep the answer and ask again later. */
static void poll_answer(struct gw_inbox *ib, struct gw_inbox_item *item)
{
	struct poll_broker *b = gw_container_of(item, struct poll_broker, item);
	struct gw_broker_poll *p = b->p;
	struct gw_broker_figures f;
	bool ok = false;

	(void)ib;
	if (b->reply != NULL && !p->stopping) {
		ok = gw_broker_figures_parse(nng_msg_body(b->reply), nng_msg_len(b->reply), &f) == RC_OK;
		if (ok)
			gw_broker_stats_put(p->bs, b->index, &f, uv_hrtime());
		else
			rc_log_debug("a broker's stats answer is not one /metrics can show", "broker=%u len=%zu",
				     b->index, nng_msg_len(b->reply));
	}
	if (b->reply != NULL)
		nng_msg_free(b->reply);
	b->reply = NULL;
	if (!p->stopping)
		uv_timer_start(&b->timer, poll_tick, ok ? p->interval_ms : p->retry_ms, 0);
}

static void poll_tick(uv_timer_t *t)
{
	static const char req[] = "{\"op\":\"stats\"}";
	struct poll_broker *b = t->data;
	nng_msg *m = NULL;

	/* not connected (yet): asking would only wait for the timeout */
	if (atomic_load(&b->pipes) <= 0 || nng_msg_alloc(&m, 0) != 0 || nng_msg_append(m, req, sizeof(req) - 1) != 0) {
		if (m != NULL)
			nng_msg_free(m);
		uv_timer_start(&b->timer, poll_tick, b->p->retry_ms, 0);
		return;
	}
	b->sending = true;
	nng_aio_set_msg(b->aio, m);
	nng_send_aio(b->sock, b->aio);
}

/* The broker's socket, dialing url, and its aio. */
static int poll_open(struct poll_broker *b, const char *url)
{
	int rv;

	if (nng_req0_open(&b->sock) != 0)
		return RC_EIO;
	b->opened = true;
	/* one question at a time, answered or abandoned within POLL_TIMEOUT_MS: never re-sent by nng */
	nng_socket_set_ms(b->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_ms(b->sock, NNG_OPT_RECONNMINT, 100);
	nng_socket_set_ms(b->sock, NNG_OPT_RECONNMAXT, 1000);
	nng_pipe_notify(b->sock, NNG_PIPE_EV_ADD_POST, poll_pipe_cb, b);
	nng_pipe_notify(b->sock, NNG_PIPE_EV_REM_POST, poll_pipe_cb, b);
	if (nng_aio_alloc(&b->aio, poll_aio_cb, b) != 0)
		return RC_ENOMEM;
	nng_aio_set_timeout(b->aio, POLL_TIMEOUT_MS);
	if ((rv = nng_dial(b->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		rc_log_error("bad --broker-api address", "url=%s err=\"%s\"", url, nng_strerror(rv));
		return RC_EINVAL;
	}
	return RC_OK;
}

int gw_broker_poll_start(uv_loop_t *loop, const char *urls, struct gw_broker_stats *bs, int64_t interval_ms,
			 struct gw_broker_poll **out)
{
	struct gw_broker_poll *p = calloc(1, sizeof(*p));
	char *list[GW_BROKER_STATS_MAX];
	int n, rv = RC_OK;

	if (p == NULL)
		return RC_ENOMEM;
	p->bs = bs;
	p->interval_ms = (uint64_t)interval_ms;
	p->retry_ms = interval_ms < 1000 ? (uint64_t)interval_ms : 1000;
	if ((n = rc_opt_list(urls, list, GW_BROKER_STATS_MAX)) < 0) {
		free(p);
		return RC_EINVAL;
	}
	for (int i = 0; i < n && rv == RC_OK; i++) {
		p->b[i].p = p;
		p->b[i].index = (unsigned)i;
		p->n++;
		rv = poll_open(&p->b[i], list[i]);
	}
	rc_opt_list_free(list, n);
	/* the loop's handles last: a failure before them leaves nothing on the loop */
	if (rv == RC_OK && gw_inbox_init(loop, &p->inbox, 0, poll_answer, p) != 0)
		rv = RC_EIO;
	if (rv != RC_OK) {
		gw_broker_poll_free(p);
		return rv;
	}
	p->inbox_init = true;
	for (unsigned i = 0; i < p->n; i++) {
		struct poll_broker *b = &p->b[i];
		uv_timer_init(loop, &b->timer);
		b->timer.data = b;
		b->timer_init = true;
		uv_timer_start(&b->timer, poll_tick, p->retry_ms, 0);
	}
	*out = p;
	return RC_OK;
}

void gw_broker_poll_stop(struct gw_broker_poll *p)
{
	if (p == NULL || p->stopping)
		return;
	p->stopping = true;
	/* stopping an aio runs its callback, which queues the failure: no nng thread pushes after this */
	for (unsigned i = 0; i < p->n; i++) {
		if (p->b[i].aio != NULL)
			nng_aio_stop(p->b[i].aio);
		if (p->b[i].timer_init)
			uv_close((uv_handle_t *)&p->b[i].timer, NULL);
	}
	if (p->inbox_init) {
		gw_inbox_drain(&p->inbox); /* frees the answers that came */
		gw_inbox_close(&p->inbox, NULL);
	}
}

void gw_broker_poll_free(struct gw_broker_poll *p)
{
	if (p == NULL)
		return;
	for (unsigned i = 0; i < p->n; i++) {
		struct poll_broker *b = &p->b[i];
		if (b->aio != NULL)
			nng_aio_stop(b->aio);
		if (b->opened)
			nng_close(b->sock);
		if (b->aio != NULL)
			nng_aio_free(b->aio);
		if (b->reply != NULL) /* an answer queued after the drain (none when stopped first) */
			nng_msg_free(b->reply);
	}
	if (p->inbox_init)
		pthread_mutex_destroy(&p->inbox.mtx);
	free(p);
}
