#include "stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "auth.h"
#include "buf.h"
#include "conn.h"
#include "error.h"
#include "gateway.h"
#include "id.h"
#include "proto_limits.h"
#include "response.h"
#include "sse.h"

/* A replay request in flight; outlives its stream if the client leaves. */
struct gw_replay_call {
	struct gw_stream *s; /* NULL once the stream is gone */
};

static void stream_fetch(struct gw_stream *s);
static void stream_drained(void *owner);
static void stream_closed(void *owner);


/*
 * Queues bytes (later: live events, which may wait --write-delay-ms for the
 * next ones); closes the stream when the client is too far behind. Returns
 * false when the stream is closing (s stays valid until the connection's
 * close callback frees it).
 */
static bool stream_queue_as(struct gw_stream *s, struct gw_chunk *chunk, uint32_t off, uint32_t len, bool later)
{
	struct gw *gw = s->gw;
	int rv;

	if (s->ended)
		return false;
	rv = later ? gw_conn_send_later(s->conn, chunk, off, len, s->last_write)
		       : gw_conn_send(s->conn, chunk, off, len);

	if (rv != RC_OK) {
		gw_conn_close(s->conn);
		return false;
	}
	s->last_write = uv_now(gw->loop);
	gw_tq_push(&gw->hb_q, &s->hb);
	if (s->conn->out.bytes > (size_t)gw->opt.max_client_buffer) {
		gw->m.slow_closes++;
		gw_conn_close(s->conn);
		return false;
	}
	return true;
}

static bool stream_queue(struct gw_stream *s, struct gw_chunk *chunk, uint32_t off, uint32_t len)
{
	return stream_queue_as(s, chunk, off, len, false);
}

static void stream_drop_held(struct gw_stream *s)
{
	for (size_t i = 0; i < s->nheld; i++)
		gw_chunk_unref(s->held[i].chunk);
	free(s->held);
	s->held = NULL;
	s->nheld = s->capheld = s->held_bytes = 0;
}

/* Catch-up is over: the held live events after the replay go out, then live. */
static void stream_go_live(struct gw_stream *s)
{
	s->catchup = false;
	for (size_t i = 0; i < s->nheld && !s->conn->closing; i++) {
		struct gw_held *h = &s->held[i];
		if (h->gseq > s->last_gseq && stream_queue(s, h->chunk, h->off, h->len)) {
			s->last_gseq = h->gseq;
			s->gw->m.events_delivered++;
		}
	}
	stream_drop_held(s);
}

void gw_stream_reset(struct gw_stream *s, const char *reason, uint64_t epoch, uint64_t gseq)
{
	struct gw *gw = s->gw;
	struct rc_buf b;
	struct gw_chunk *ch;
	char id[RC_ID_MAX];

	if (s->conn->closing)
		return;
	rc_buf_init(&b);
	if (epoch != 0) {
		rc_id_format(id, epoch, gseq);
		rc_buf_printf(&b, "id: %s\n", id);
	}
	rc_buf_printf(&b, "data: {\"type\":\"stream.reset\",\"reason\":\"%s\"}\n\n", reason);
	if (strcmp(reason, "epoch_changed") == 0)
		gw->m.resets_epoch_changed++;
	else if (strcmp(reason, "gap_unrecoverable") == 0)
		gw->m.resets_gap_unrecoverable++;
	else
		gw->m.resets_history_unavailable++;
	/* what was held or is being replayed before the reset no longer applies */
	stream_drop_held(s);
	if (s->replay != NULL) {
		s->replay->s = NULL;
		s->replay = NULL;
	}
	s->catchup = false;
	s->fetch_on_drain = false;
	s->last_gseq = gseq;
	ch = b.err ? NULL : gw_chunk_dup(b.data, b.len);
	rc_buf_fini(&b);
	if (ch == NULL) {
		gw_conn_close(s->conn);
		return;
	}
	stream_queue(s, ch, 0, ch->len);
	gw_chunk_unref(ch);
}

bool gw_stream_missed(struct gw_stream *s, uint64_t gseq, uint64_t epoch, uint64_t upto)
{
	if (s->last_gseq >= gseq)
		return false;
	gw_stream_reset(s, "gap_unrecoverable", epoch, upto);
	return true;
}

static bool reply_has(const char *p, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(p + i, needle, n) == 0)
			return true;
	return false;
}

/* The broker answered a replay page for s. */
static void stream_replay_done(void *arg, int err, bool sent, const char *reply, size_t len)
{
	struct gw_replay_call *rc = arg;
	struct gw_stream *s = rc->s;
	struct rc_frame_reader r;
	struct rc_frame_event ev;
	struct gw_hub *hub;
	struct gw_chunk *ch;
	size_t bytes = 0, n = 0;
	char ep[RC_ID_MAX];
	size_t eplen;

	(void)sent; /* a replay only reads */
	free(rc);
	if (s == NULL)
		return; /* the client left meanwhile */
	s->replay = NULL;
	if (s->conn->closing)
		return;
	hub = &s->gw->hub;
	if (err != RC_OK || len < 4 || memcmp(reply, "RCF1", 4) != 0 ||
	    rc_frame_reader_init(&r, reply, len) != RC_OK) {
		bool epoch = err == RC_OK && reply_has(reply, len, "\"epoch_mismatch\"");
		gw_stream_reset(s, epoch ? "epoch_changed" : "history_unavailable", hub->epoch, hub->last_gseq);
		return;
	}
	if (s->resume_epoch == 0)
		s->resume_epoch = r.hdr.epoch; /* a rewind: its next pages go on after its last id */
	eplen = rc_epoch_format(ep, r.hdr.epoch);
	while (rc_frame_reader_next(&r, &ev))
		if (ev.gseq > s->last_gseq)
			bytes += rc_sse_event_size(eplen + 1 + 20, ev.json_len);
	if (bytes > 0) {
		ch = gw_chunk_new(bytes);
		if (ch == NULL) {
			gw_conn_close(s->conn);
			return;
		}
		rc_frame_reader_init(&r, reply, len);
		while (rc_frame_reader_next(&r, &ev)) {
			char id[RC_ID_MAX];
			size_t idlen;
			if (ev.gseq <= s->last_gseq)
				continue;
			idlen = rc_id_format(id, r.hdr.epoch, ev.gseq);
			ch->len += (uint32_t)rc_sse_format_event(ch->data + ch->len, id, idlen, ev.json, ev.json_len);
			s->last_gseq = ev.gseq;
			n++;
		}
		s->gw->m.events_delivered += n;
		bool open = stream_queue(s, ch, 0, ch->len);
		gw_chunk_unref(ch);
		if (!open)
			return;
	}
	if (r.hdr.flags & RC_FRAME_MORE) {
		/* the next page once this one is written: a resume never floods the client buffer */
		s->fetch_on_drain = true;
		if (s->conn->out.count == 0)
			stream_drained(s);
		return;
	}
	/* everything up to the broker's last id at the time of the reply */
	if (r.hdr.last_gseq > s->last_gseq)
		s->last_gseq = r.hdr.last_gseq;
	stream_go_live(s);
}

/* Asks for the next replay page: after the last id, or where start (a rewind's replay fields) says. */
static void stream_fetch_from(struct gw_stream *s, const char *start)
{
	struct gw *gw = s->gw;
	struct gw_replay_call *rc;
	struct rc_buf b;
	char after[RC_ID_MAX + 16];
	int rv;

	if (start == NULL) {
		memcpy(after, ",\"after\":\"", 10);
		rc_id_format(after + 10, s->resume_epoch, s->last_gseq);
		strcat(after, "\"");
	}
	rc_buf_init(&b);
	rc_buf_puts(&b, "{\"op\":\"replay\"");
	if (!s->firehose) {
		rc_buf_puts(&b, ",\"rooms\":[");
		for (uint16_t i = 0; i < s->nrooms; i++) {
			if (i)
				rc_buf_append(&b, ",", 1);
			rc_buf_json_str(&b, s->members[i].room->name, s->members[i].room->name_len);
		}
		rc_buf_puts(&b, "],\"global\":true");
	}
	rc_buf_printf(&b, "%s,\"limit\":%d,\"max_bytes\":%" PRId64 ",\"format\":\"frame\"}", start ? start : after,
		      RC_RESUME_PAGE_EVENTS, gw->opt.max_client_buffer / 4);
	rc = malloc(sizeof(*rc));
	if (b.err || rc == NULL) {
		free(rc);
		rc_buf_fini(&b);
		gw_conn_close(s->conn);
		return;
	}
	rc->s = s;
	gw->m.replays++;
	/*
	 * While the api reconnects (the history is still there), the request
	 * waits for it up to --publish-timeout-ms, as the bus repair does; live
	 * events are held meanwhile. Failing at once would reset a resume that
	 * the history covers.
	 */
	rv = gw_api_call_wait(gw->api, b.data, b.len, (int)gw->opt.publish_timeout_ms, stream_replay_done, rc);
	rc_buf_fini(&b);
	if (rv != RC_OK) {
		free(rc);
		gw_stream_reset(s, "history_unavailable", gw->hub.epoch, gw->hub.last_gseq);
		return;
	}
	s->replay = rc;
}

static void stream_fetch(struct gw_stream *s)
{
	stream_fetch_from(s, NULL);
}

/* The connection wrote everything queued: the next replay page, if one waits. */
static void stream_drained(void *owner)
{
	struct gw_stream *s = owner;

	if (s->fetch_on_drain && s->replay == NULL && !s->conn->closing) {
		s->fetch_on_drain = false;
		stream_fetch(s);
	}
}

/* Starts a resume after id: replay first, live events held meanwhile. */
static void stream_resume(struct gw_stream *s, const char *id, size_t len)
{
	struct gw_hub *hub = &s->gw->hub;
	struct rc_id rid;

	if (rc_id_parse(id, len, &rid) != RC_OK) {
		gw_stream_reset(s, "history_unavailable", hub->epoch, hub->last_gseq);
		return;
	}
	if (hub->epoch != 0 && rid.epoch != hub->epoch) {
		gw_stream_reset(s, "epoch_changed", hub->epoch, hub->last_gseq);
		return;
	}
	s->resume_epoch = rid.epoch;
	s->last_gseq = rid.gseq;
	s->catchup = true;
	stream_fetch(s);
}

/*
 * Starts a rewind: the first replay page starts where start (",\"last\":N…")
 * says, from the oldest event the stream has not seen (none: last_gseq 0);
 * live events are held meanwhile, as for a resume.
 */
static void stream_rewind(struct gw_stream *s, const char *start)
{
	s->resume_epoch = 0;
	s->last_gseq = 0;
	s->catchup = true;
	stream_fetch_from(s, start);
}

/*
 * Until its first bus frame the gateway knows neither the epoch nor the last
 * id: a reset could not say where the stream goes on, and the hub would start
 * at that frame, skipping whatever was published between the replay and the
 * bus subscription. The resume waits for the frame (holding nothing: the hub
 * delivers nothing before it).
 */
static void stream_wait_bus(struct gw_stream *s, const char *id, size_t len)
{
	s->wait_id = malloc(len + 1);
	if (s->wait_id == NULL) {
		gw_conn_close(s->conn);
		return;
	}
	memcpy(s->wait_id, id, len);
	s->wait_id[len] = '\0';
	s->wait_id_len = len;
	s->catchup = true;
}

void gw_stream_bus_known(struct gw_stream *s)
{
	char *id = s->wait_id;

	if (id == NULL)
		return;
	s->wait_id = NULL;
	if (!s->conn->closing && id[0] == ',')
		stream_rewind(s, id);
	else if (!s->conn->closing)
		stream_resume(s, id, s->wait_id_len);
	free(id);
}

/* A new stream's rewind: now, or once the first bus frame says where the sequence is (as a resume waits). */
static void stream_open_rewind(struct gw_stream *s, const struct gw_rewind *rw)
{
	char start[64];
	int n = snprintf(start, sizeof(start), ",\"last\":%" PRIu32, rw->count);

	if (rw->ms != 0)
		n += snprintf(start + n, sizeof(start) - (size_t)n, ",\"last_ms\":%" PRIu64, rw->ms);
	if (s->gw->hub.epoch == 0)
		stream_wait_bus(s, start, (size_t)n);
	else
		stream_rewind(s, start);
}

static const struct gw_conn_owner_ops stream_conn_ops = {
	.drained = stream_drained,
	.closed = stream_closed,
};

size_t gw_stream_size(size_t nrooms, bool auth)
{
	return sizeof(struct gw_stream) + nrooms * sizeof(struct gw_member) + (auth ? sizeof(struct gw_stream_auth) : 0);
}

int gw_stream_open(struct gw *gw, struct gw_conn *conn, const struct gw_stream_req *req, struct gw_stream **out)
{
	/* malloc, not calloc: glibc's calloc skips the tcache, which holds the block the router kept for it */
	size_t size = gw_stream_size(req->nrooms, req->stamp != NULL);
	struct gw_stream *s = malloc(size);
	struct gw_chunk *ch;

	if (s == NULL)
		return RC_ENOMEM;
	/* else the compiler turns malloc + memset into calloc */
	__asm__ volatile("" : : "r"(s) : "memory");
	memset(s, 0, size);
	s->gw = gw;
	s->conn = conn;
	s->firehose = req->nrooms == 0;
	s->nrooms = (uint16_t)req->nrooms;
	gw_tq_entry_init(&s->hb);
	ch = gw_response_stream_head(gw->opt.cors_origin);
	if (req->stamp != NULL) {
		struct gw_stream_auth *t;
		s->has_token = true;
		t = gw_stream_token(s);
		t->sub_hash = req->stamp->sub_hash;
		t->jti_hash = req->stamp->jti_hash;
		t->exp = req->stamp->exp < 0 ? 0 : req->stamp->exp > UINT32_MAX ? UINT32_MAX : (uint32_t)req->stamp->exp;
	}
	if (ch == NULL || (req->stamp != NULL && gw_auth_track(gw, s) != RC_OK)) {
		gw_chunk_unref(ch);
		free(s);
		return RC_ENOMEM;
	}
	if (gw_hub_add(&gw->hub, s, req->rooms, req->room_lens) != RC_OK) {
		gw_auth_untrack(gw, s);
		gw_chunk_unref(ch);
		free(s);
		return RC_ENOMEM;
	}
	/* the stream starts live after the last event this gateway delivered */
	s->last_gseq = gw->hub.last_gseq;
	gw_conn_upgrade(conn, &stream_conn_ops, s);
	gw->m.streams_open++;
	if (s->firehose)
		gw->m.firehose_open++;
	gw_metrics_http(&gw->m, 200);
	*out = s;
	/* from here on, whatever fails closes the connection, whose close callback frees s */
	bool open = stream_queue(s, ch, 0, ch->len);
	gw_chunk_unref(ch);
	if (!open)
		return RC_OK;
	if (req->last_event_id != NULL && gw->hub.epoch == 0)
		stream_wait_bus(s, req->last_event_id, req->last_event_id_len);
	else if (req->last_event_id != NULL)
		stream_resume(s, req->last_event_id, req->last_event_id_len);
	else if (req->rewind.count != 0)
		stream_open_rewind(s, &req->rewind);
	return RC_OK;
}

/* The connection is gone (its close callback): unregister and free s. */
static void stream_closed(void *owner)
{
	struct gw_stream *s = owner;
	struct gw *gw = s->gw;

	gw_hub_remove(&gw->hub, s);
	gw_auth_untrack(gw, s);
	gw_tq_remove(&s->hb);
	if (s->replay != NULL)
		s->replay->s = NULL;
	stream_drop_held(s);
	free(s->wait_id);
	gw->m.streams_open--;
	if (s->firehose)
		gw->m.firehose_open--;
	free(s);
}

void gw_stream_end(struct gw_stream *s, const char *type)
{
	struct gw_hub *hub = &s->gw->hub;
	struct rc_buf b;
	struct gw_chunk *ch;
	char id[RC_ID_MAX];

	if (s->conn->closing || s->ended)
		return;
	rc_buf_init(&b);
	/* before the first bus frame there is no id: the client keeps the one it had */
	if (hub->epoch != 0) {
		rc_id_format(id, hub->epoch, s->last_gseq);
		rc_buf_printf(&b, "id: %s\n", id);
	}
	rc_buf_printf(&b, "event: %s\ndata: {\"type\":\"%s\"}\n\n", type, type);
	ch = b.err ? NULL : gw_chunk_dup(b.data, b.len);
	rc_buf_fini(&b);
	if (ch == NULL || !stream_queue(s, ch, 0, ch->len)) {
		gw_chunk_unref(ch);
		gw_conn_close(s->conn);
		return;
	}
	gw_chunk_unref(ch);
	s->ended = true;
	gw_tq_remove(&s->hb);
	stream_drop_held(s);
	/* the connection closes once the message is written (gw_conn_written) */
	s->conn->close_after_write = true;
}

/* Holds a live event during catch-up; false when the stream is closing. */
static bool stream_hold(struct gw_stream *s, struct gw_chunk *chunk, uint32_t off, uint32_t len, uint64_t gseq)
{
	if (s->nheld == s->capheld) {
		size_t cap = s->capheld ? s->capheld * 2 : 64;
		struct gw_held *h = realloc(s->held, cap * sizeof(*h));
		if (h == NULL) {
			gw_conn_close(s->conn);
			return false;
		}
		s->held = h;
		s->capheld = cap;
	}
	gw_chunk_ref(chunk);
	s->held[s->nheld++] = (struct gw_held){ chunk, off, len, gseq };
	s->held_bytes += len;
	if (s->held_bytes > (size_t)s->gw->opt.max_client_buffer) {
		/* the resume takes too long: the client reconnects and resumes again */
		s->gw->m.slow_closes++;
		gw_conn_close(s->conn);
		return false;
	}
	return true;
}

void gw_stream_deliver(struct gw_stream *s, const struct gw_run *run)
{
	const struct gw_framed *last = &run->ev[run->n - 1];
	size_t k = 0;
	uint32_t off, end;

	if (last->gseq <= s->last_gseq || s->conn->closing)
		return;
	if (s->catchup) {
		for (size_t i = 0; i < run->n; i++)
			if (run->ev[i].gseq > s->last_gseq &&
			    !stream_hold(s, run->chunk, run->fire ? run->ev[i].fire_off : run->ev[i].off, run->ev[i].len,
					 run->ev[i].gseq))
				return;
		return;
	}
	while (run->ev[k].gseq <= s->last_gseq)
		k++;
	off = run->fire ? run->ev[k].fire_off : run->ev[k].off;
	end = (run->fire ? last->fire_off : last->off) + last->len;
	if (stream_queue_as(s, run->chunk, off, end - off, true)) {
		s->last_gseq = last->gseq;
		s->gw->m.events_delivered += run->n - k;
	}
}

/* A stream queued nothing for --heartbeat-ms: ': ping' (which queues it again). */
static void stream_heartbeat(struct gw_tq *q, struct gw_tq_entry *e)
{
	struct gw_stream *s = gw_container_of(e, struct gw_stream, hb);
	struct gw *gw = q->data;

	gw->m.heartbeats++;
	/* a stream too slow to take a ping is closed */
	stream_queue(s, gw->ping, 0, gw->ping->len);
}

void gw_stream_timers_init(struct gw *gw)
{
	gw_tq_init(&gw->hb_q, &gw->timer, (uint64_t)gw->opt.heartbeat_ms, stream_heartbeat, gw);
}
