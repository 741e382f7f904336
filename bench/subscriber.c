#include "subscriber.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "sse_client.h"
#include "target.h"

#define SUB_READ_BYTES 65536
#define SUB_REQUEST_BYTES 1024 /* stride of the prebuilt GET requests */
#define SUB_PACE_MS 1
#define SUB_TICK_MS 100
#define SUB_FIREHOSE_SEQ_MAX (32u * 1024 * 1024) /* seq slots: conns x rooms */

struct sub {
	const struct rb_sub_opts *o;
	struct rb_sub_stats *stats;
	uv_loop_t loop;
	uv_timer_t pace;
	uv_timer_t tick;
	uv_timer_t deadline;
	struct rb_sse_shared sh;
	struct rb_sse_client *clients;
	char *lines;
	uint64_t *room_seqs; /* firehose only: conns x rooms */
	char *request_bytes;
	uv_buf_t *requests;
	uint32_t nrequests;
	bool has_room;
	uint32_t next;    /* next stream to start */
	uint32_t pending; /* started, no response head yet */
	uint32_t open;
	uint32_t active;  /* started, not ended */
	uint64_t t0;
	uint64_t last_progress;
	int first_error;
	bool ready_sent;
	bool finishing;
	rb_sub_ready_fn ready;
	void *ready_arg;
};

static uint32_t sub_room_of(const struct sub *s, uint32_t i)
{
	return (uint32_t)(((uint64_t)s->o->first_index + i) % s->o->rooms);
}

/* Request slot of stream i: one per room in use, or one for a firehose. */
static uint32_t sub_request_of(const struct sub *s, uint32_t i)
{
	if (!s->has_room)
		return 0;
	return s->o->conns >= s->o->rooms ? sub_room_of(s, i) : i;
}

static int sub_build_requests(struct sub *s)
{
	const struct rb_sub_opts *o = s->o;
	char host[32], room[RB_ROOM_NAME_MAX], path[SUB_REQUEST_BYTES];

	s->nrequests = !s->has_room ? 1 : (o->conns >= o->rooms ? o->rooms : o->conns);
	s->request_bytes = malloc((size_t)s->nrequests * SUB_REQUEST_BYTES);
	s->requests = calloc(s->nrequests, sizeof(*s->requests));
	if (s->request_bytes == NULL || s->requests == NULL)
		return -ENOMEM;
	rb_target_format(&o->target, host, sizeof(host));
	for (uint32_t k = 0; k < s->nrequests; k++) {
		char *buf = s->request_bytes + (size_t)k * SUB_REQUEST_BYTES;
		uint32_t r = o->conns >= o->rooms ? k : sub_room_of(s, k);
		int n;

		if (rb_room_name(o->room_prefix, r, room, sizeof(room)) < 0 ||
		    rb_template_expand(o->url_template, room, path, sizeof(path)) < 0)
			return -ENOSPC;
		n = snprintf(buf, SUB_REQUEST_BYTES,
			     "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
			     "Cache-Control: no-cache\r\nUser-Agent: roomcast-bench\r\n\r\n",
			     path, host);
		if (n < 0 || n >= SUB_REQUEST_BYTES)
			return -ENOSPC;
		s->requests[k] = uv_buf_init(buf, (unsigned)n);
	}
	return 0;
}

static void sub_signal_ready(struct sub *s)
{
	if (s->ready_sent)
		return;
	s->ready_sent = true;
	if (s->ready)
		s->ready(s->ready_arg);
}

static void sub_log_progress(struct sub *s, const char *msg)
{
	fprintf(stderr,
		"level=info msg=%s proc=%u t=%.1f started=%u open=%u pending=%u events=%llu "
		"failed=%llu\n",
		msg, s->o->proc, (double)(rb_mono_ns() - s->t0) / 1e9, s->next, s->open, s->pending,
		(unsigned long long)s->stats->events,
		(unsigned long long)(s->stats->connect_failed + s->stats->dropped +
				     s->stats->connect_timeouts + s->stats->http_errors));
}

static void sub_timer_closed(uv_handle_t *h)
{
	(void)h;
}

/* Ends the run: stops every stream and timer; the loop then runs dry. */
static void sub_finish(struct sub *s)
{
	if (s->finishing)
		return;
	s->finishing = true;
	s->stats->elapsed_s = (double)(rb_mono_ns() - s->t0) / 1e9;
	sub_signal_ready(s);
	if (s->o->verbose)
		sub_log_progress(s, "finish");
	for (uint32_t i = 0; i < s->next; i++)
		rb_sse_client_stop(&s->clients[i]);
	uv_close((uv_handle_t *)&s->pace, sub_timer_closed);
	uv_close((uv_handle_t *)&s->tick, sub_timer_closed);
	uv_close((uv_handle_t *)&s->deadline, sub_timer_closed);
}

static void sub_check_done(struct sub *s)
{
	if (s->next < s->o->conns)
		return;
	if (s->pending == 0)
		sub_signal_ready(s);
	if (s->active == 0)
		sub_finish(s);
}

static void sub_on_open(void *owner, struct rb_sse_client *c)
{
	struct sub *s = owner;

	(void)c;
	s->pending--;
	s->open++;
	if (s->open > s->stats->peak_open)
		s->stats->peak_open = s->open;
	sub_check_done(s);
}

static void sub_on_end(void *owner, struct rb_sse_client *c, enum rb_sse_end why, bool was_open)
{
	struct sub *s = owner;

	(void)c;
	(void)why;
	s->active--;
	if (was_open)
		s->open--;
	else
		s->pending--;
	if (!s->finishing)
		sub_check_done(s);
}

static void sub_start_one(struct sub *s)
{
	uint32_t i = s->next++;
	uint32_t room = s->has_room ? sub_room_of(s, i) : RB_SSE_ALL_ROOMS;
	uint64_t *seqs = s->room_seqs ? s->room_seqs + (size_t)i * s->o->rooms : NULL;
	struct sockaddr_in src;
	int r;

	rb_source_addr(s->o->first_index + i, s->o->source_ips, &src);
	s->active++;
	s->pending++;
	r = rb_sse_client_start(&s->clients[i], &s->sh, &src, room, seqs,
				&s->requests[sub_request_of(s, i)],
				s->lines + (size_t)i * s->o->line_bytes, s->o->line_bytes);
	if (r < 0 && s->first_error == 0) {
		s->first_error = r;
		fprintf(stderr, "level=warn msg=\"connect failed\" proc=%u stream=%u err=%s\n",
			s->o->proc, i, uv_strerror(r));
	}
}

static void sub_on_pace(uv_timer_t *t)
{
	struct sub *s = t->data;
	uint64_t allowed = s->o->conns;

	if (s->o->connect_rate > 0) {
		double due = s->o->connect_rate * (double)(rb_mono_ns() - s->t0) / 1e9 + 1.0;

		if (due < (double)allowed)
			allowed = (uint64_t)due;
	}
	/* Bounded by conns: each pass starts one stream. */
	while (!s->finishing && s->next < allowed && s->pending < s->o->connect_concurrency)
		sub_start_one(s);
	if (!s->finishing && s->next >= s->o->conns) {
		uv_timer_stop(&s->pace);
		sub_check_done(s);
	}
}

static void sub_on_tick(uv_timer_t *t)
{
	struct sub *s = t->data;
	uint64_t now = rb_mono_ns();
	uint64_t timeout = (uint64_t)s->o->connect_timeout_ms * 1000000u;

	if (now > timeout) {
		for (uint32_t i = 0; i < s->next && !s->finishing; i++)
			rb_sse_client_check_timeout(&s->clients[i], now - timeout);
	}
	if (s->o->verbose && !s->finishing && now - s->last_progress >= 1000000000u) {
		s->last_progress = now;
		sub_log_progress(s, "progress");
	}
}

static void sub_on_deadline(uv_timer_t *t)
{
	sub_finish(t->data);
}

static void sub_free(struct sub *s)
{
	free(s->clients);
	free(s->lines);
	free(s->room_seqs);
	free(s->request_bytes);
	free(s->requests);
	free(s->sh.read_buf);
}

int rb_sub_run(const struct rb_sub_opts *o, struct rb_sub_stats *stats, rb_sub_ready_fn ready,
	       void *ready_arg)
{
	struct sub s;
	int r;

	memset(&s, 0, sizeof(s));
	s.o = o;
	s.stats = stats;
	s.ready = ready;
	s.ready_arg = ready_arg;
	stats->conns += o->conns;
	if (rb_template_check(o->url_template, &s.has_room) < 0 || o->rooms == 0 ||
	    o->line_bytes == 0)
		return -EINVAL;
	if (!s.has_room) {
		if ((uint64_t)o->conns * o->rooms > SUB_FIREHOSE_SEQ_MAX)
			return -E2BIG;
		s.room_seqs = calloc((size_t)o->conns * o->rooms, sizeof(uint64_t));
		if (s.room_seqs == NULL && o->conns > 0)
			goto out_nomem;
	}
	s.clients = calloc(o->conns ? o->conns : 1, sizeof(*s.clients));
	s.lines = malloc((size_t)(o->conns ? o->conns : 1) * o->line_bytes);
	s.sh.read_buf = malloc(SUB_READ_BYTES);
	if (s.clients == NULL || s.lines == NULL || s.sh.read_buf == NULL)
		goto out_nomem;
	r = sub_build_requests(&s);
	if (r < 0)
		goto out_free;

	s.sh.loop = &s.loop;
	s.sh.target = o->target;
	s.sh.stats = stats;
	s.sh.read_cap = SUB_READ_BYTES;
	s.sh.room_prefix = o->room_prefix;
	s.sh.room_prefix_len = strlen(o->room_prefix);
	s.sh.rooms = o->rooms;
	s.sh.expect = o->expect;
	s.sh.owner = &s;
	s.sh.on_open = sub_on_open;
	s.sh.on_end = sub_on_end;

	r = uv_loop_init(&s.loop);
	if (r < 0)
		goto out_free;
	uv_timer_init(&s.loop, &s.pace);
	uv_timer_init(&s.loop, &s.tick);
	uv_timer_init(&s.loop, &s.deadline);
	s.pace.data = s.tick.data = s.deadline.data = &s;
	s.t0 = s.last_progress = rb_mono_ns();
	uv_timer_start(&s.pace, sub_on_pace, 0, SUB_PACE_MS);
	uv_timer_start(&s.tick, sub_on_tick, SUB_TICK_MS, SUB_TICK_MS);
	uv_timer_start(&s.deadline, sub_on_deadline, (uint64_t)(o->duration_s * 1000.0), 0);
	/* Returns once sub_finish has closed every handle. */
	uv_run(&s.loop, UV_RUN_DEFAULT);
	r = uv_loop_close(&s.loop);
	if (r < 0)
		fprintf(stderr, "level=warn msg=\"loop not empty at exit\" err=%s\n", uv_strerror(r));
	r = 0;
	goto out_free;
out_nomem:
	r = -ENOMEM;
out_free:
	sub_free(&s);
	return r;
}
