#include "broker_stats.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "error.h"
#include "log.h"

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

/* ---- the shared last answer ---- */

struct gw_broker_stats {
	pthread_mutex_t mtx; /* guards what follows */
	bool has;	     /* an answer came */
	struct gw_broker_figures last;
	uint64_t at_ns;
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

void gw_broker_stats_put(struct gw_broker_stats *bs, const struct gw_broker_figures *f, uint64_t now_ns)
{
	pthread_mutex_lock(&bs->mtx);
	bs->last = *f;
	bs->at_ns = now_ns;
	bs->has = true;
	pthread_mutex_unlock(&bs->mtx);
}

static void head(struct rc_buf *out, const char *name, const char *type, const char *help)
{
	rc_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void u64(struct rc_buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
	head(out, name, type, help);
	rc_buf_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* A figure in microseconds, shown in seconds. */
static void us(struct rc_buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
	head(out, name, type, help);
	rc_buf_printf(out, "%s %" PRIu64 ".%06" PRIu64 "\n", name, v / 1000000u, v % 1000000u);
}

void gw_broker_stats_render(struct gw_broker_stats *bs, uint64_t now_ns, struct rc_buf *out)
{
	struct gw_broker_figures f;
	uint64_t at;

	if (bs == NULL)
		return;
	pthread_mutex_lock(&bs->mtx);
	if (!bs->has) {
		pthread_mutex_unlock(&bs->mtx);
		return;
	}
	f = bs->last;
	at = bs->at_ns;
	pthread_mutex_unlock(&bs->mtx);

	head(out, "roomcast_broker_stats_age_seconds", "gauge",
	     "Seconds since the broker answered the stats request the roomcast_broker_* figures come from "
	     "(asked every --broker-stats-ms).");
	rc_buf_printf(out, "roomcast_broker_stats_age_seconds %.3f\n", now_ns > at ? (double)(now_ns - at) / 1e9 : 0.0);
	head(out, "roomcast_broker_store_info", "gauge",
	     "1, labelled with where the broker keeps its history (store: memory, file or nats), its --fsync or "
	     "--nats-replicas, and its epoch.");
	if (f.nats)
		rc_buf_printf(out, "roomcast_broker_store_info{store=\"nats\",replicas=\"%" PRIu64 "\",epoch=\"%s\"} 1\n",
			      f.nats_replicas, f.epoch);
	else if (f.file)
		rc_buf_printf(out, "roomcast_broker_store_info{store=\"file\",fsync=\"%s\",epoch=\"%s\"} 1\n", f.fsync,
			      f.epoch);
	else
		rc_buf_printf(out, "roomcast_broker_store_info{store=\"memory\",epoch=\"%s\"} 1\n", f.epoch);
	u64(out, "roomcast_broker_last_gseq", "gauge", "The gseq of the broker's last event (the id's number).",
	    f.last_gseq);
	u64(out, "roomcast_broker_history_events", "gauge", "Events the broker's history holds (replayable).",
	    f.history_events);
	u64(out, "roomcast_broker_history_bytes", "gauge", "Bytes of events the broker's history holds.",
	    f.history_bytes);
	if (f.acks) {
		u64(out, "roomcast_broker_ack_memory_entries", "gauge",
		    "Publishes answered on the bus the broker still remembers (for a gateway that lost the answer).",
		    f.ack_entries);
		u64(out, "roomcast_broker_ack_memory_bytes", "gauge", "Bytes they take, counted against the limit.",
		    f.ack_bytes);
		u64(out, "roomcast_broker_ack_memory_limit_bytes", "gauge", "The limit (--ack-memory-bytes).",
		    f.ack_limit);
		u64(out, "roomcast_broker_ack_memory_forgotten_total", "counter",
		    "Answers forgotten (the oldest) to stay within the limit.", f.ack_forgotten);
		u64(out, "roomcast_broker_ack_memory_hits_total", "counter",
		    "Lost answers a gateway asked for and got (op acks).", f.ack_hits);
		u64(out, "roomcast_broker_ack_memory_misses_total", "counter",
		    "Answers a gateway asked for that the broker did not know (not yet published, or forgotten).",
		    f.ack_misses);
	}
	if (f.nats) {
		u64(out, "roomcast_broker_nats_connected", "gauge", "1 while the broker is connected to NATS, else 0.",
		    f.nats_connected ? 1 : 0);
		u64(out, "roomcast_broker_nats_disconnects_total", "counter",
		    "Times the broker lost its NATS connection (a server died or was cut off: a failover).",
		    f.nats_disconnects);
		u64(out, "roomcast_broker_nats_reconnects_total", "counter",
		    "Times the broker connected to NATS again (possibly to another server of the cluster).",
		    f.nats_reconnects);
		u64(out, "roomcast_broker_nats_fence_retries_total", "counter",
		    "Publishes sent again because another broker had published to the room first.",
		    f.nats_fence_retries);
		u64(out, "roomcast_broker_nats_publish_failed_total", "counter",
		    "Events JetStream refused or that could not be sent (answered 503 storage_unavailable).",
		    f.nats_failed);
		u64(out, "roomcast_broker_nats_publish_unknown_total", "counter",
		    "Events with no acknowledgement in --nats-timeout-ms (answered publish_outcome_unknown).",
		    f.nats_unknown);
		u64(out, "roomcast_broker_nats_followed_gseq", "gauge",
		    "The last stream sequence (gseq) the broker's follower read and put on its bus.", f.nats_follow_seq);
		u64(out, "roomcast_broker_nats_resends_total", "counter",
		    "Publishes sent to JetStream again (same Nats-Msg-Id) after a second without an answer.",
		    f.nats_resends);
	}
	if (!f.file)
		return;
	u64(out, "roomcast_broker_store_bytes", "gauge", "Bytes of the broker's log in --data-dir (every segment).",
	    f.store_bytes);
	u64(out, "roomcast_broker_store_segments", "gauge", "Segment files of the broker's log.", f.segments);
	u64(out, "roomcast_broker_store_oldest_gseq", "gauge",
	    "The first gseq of the log's oldest segment (with the epoch: the oldest id on disk).", f.oldest_gseq);
	u64(out, "roomcast_broker_store_fsyncs_total", "counter",
	    "fdatasync calls on the log (--fsync interval, always).", f.fsyncs);
	us(out, "roomcast_broker_store_fsync_seconds_total", "counter", "Seconds spent in fdatasync of the log.",
	   f.fsync_us_total);
	us(out, "roomcast_broker_store_fsync_max_seconds", "gauge", "The longest fdatasync of the log since the start.",
	   f.fsync_us_max);
	us(out, "roomcast_broker_store_fsync_last_seconds", "gauge", "The last fdatasync of the log.", f.fsync_us_last);
	u64(out, "roomcast_broker_store_write_errors_total", "counter",
	    "Appends to the log that failed (disk full, file-size limit, I/O error): publishes answered 503.",
	    f.write_errors);
	u64(out, "roomcast_broker_store_fsync_errors_total", "counter", "fdatasync calls on the log that failed.",
	    f.fsync_errors);
	head(out, "roomcast_broker_store_recovery_seconds", "gauge",
	     "How long the broker took at its start to read the log back.");
	rc_buf_printf(out, "roomcast_broker_store_recovery_seconds %.4f\n", f.recovery_ms / 1000.0);
}

/* ---- asking the broker ---- */

#define POLL_TIMEOUT_MS 2000 /* for an answer; the next question waits for it */

struct gw_broker_poll {
	uv_timer_t timer;
	struct gw_api *api;
	struct gw_broker_stats *bs;
	uint64_t interval_ms, retry_ms;
	bool in_flight; /* a question is out: its callback has yet to run */
	bool stopping, closed;
};

static void poll_tick(uv_timer_t *t);

static void poll_maybe_free(struct gw_broker_poll *p)
{
	if (p->closed && !p->in_flight)
		free(p);
}

static void poll_closed(uv_handle_t *h)
{
	struct gw_broker_poll *p = h->data;
	p->closed = true;
	poll_maybe_free(p);
}

static void poll_done(void *arg, int err, bool sent, const char *reply, size_t len)
{
	struct gw_broker_poll *p = arg;
	struct gw_broker_figures f;
	bool ok = false;

	(void)sent;
	p->in_flight = false;
	if (p->stopping) {
		poll_maybe_free(p);
		return;
	}
	if (err == RC_OK) {
		ok = gw_broker_figures_parse(reply, len, &f) == RC_OK;
		if (ok)
			gw_broker_stats_put(p->bs, &f, uv_hrtime());
		else
			rc_log_debug("the broker's stats answer is not one /metrics can show", "len=%zu", len);
	}
	uv_timer_start(&p->timer, poll_tick, ok ? p->interval_ms : p->retry_ms, 0);
}

static void poll_tick(uv_timer_t *t)
{
	static const char req[] = "{\"op\":\"stats\"}";
	struct gw_broker_poll *p = t->data;

	if (gw_api_call(p->api, req, sizeof(req) - 1, POLL_TIMEOUT_MS, poll_done, p) == RC_OK)
		p->in_flight = true;
	else /* the broker api is not connected (yet) */
		uv_timer_start(&p->timer, poll_tick, p->retry_ms, 0);
}

int gw_broker_poll_start(uv_loop_t *loop, struct gw_api *api, struct gw_broker_stats *bs, int64_t interval_ms,
			 struct gw_broker_poll **out)
{
	struct gw_broker_poll *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return RC_ENOMEM;
	p->api = api;
	p->bs = bs;
	p->interval_ms = (uint64_t)interval_ms;
	p->retry_ms = interval_ms < 1000 ? (uint64_t)interval_ms : 1000;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, poll_tick, p->retry_ms, 0);
	*out = p;
	return RC_OK;
}

void gw_broker_poll_stop(struct gw_broker_poll *p)
{
	if (p == NULL || p->stopping)
		return;
	p->stopping = true;
	uv_close((uv_handle_t *)&p->timer, poll_closed);
}
