#include "hub.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "bus_client.h"
#include "error.h"
#include "gateway.h"
#include "id.h"
#include "log.h"
#include "sse.h"
#include "stream.h"

void gw_hub_init(struct gw_hub *hub, struct gw *gw)
{
	memset(hub, 0, sizeof(*hub));
	hub->gw = gw;
	rc_strmap_init(&hub->rooms);
	gw_list_init(&hub->room_streams);
	gw_list_init(&hub->firehose);
}

static void hub_free_room(struct rc_strmap_entry *e, void *arg)
{
	(void)arg;
	free(e->value);
}

void gw_hub_fini(struct gw_hub *hub)
{
	rc_strmap_each(&hub->rooms, hub_free_room, NULL);
	rc_strmap_fini(&hub->rooms);
	free(hub->scratch);
	hub->scratch = NULL;
}

struct hub_sub {
	struct gw_bus *bus;
	bool on;
};

static void hub_sub_room(struct rc_strmap_entry *e, void *arg)
{
	struct hub_sub *hs = arg;
	gw_bus_room(hs->bus, e->key, e->key_len, hs->on);
}

/* Switches between room-by-room subscriptions and everything as the rooms and the firehose change. */
static void hub_bus_mode(struct gw_hub *hub)
{
	struct gw *gw = hub->gw;
	size_t max = (size_t)gw->opt.bus_max_rooms; /* 0: no limit */
	bool all = hub->nfirehose > 0 || (max > 0 && hub->rooms.count > max);

	if (all && !hub->bus_all) {
		struct hub_sub hs = { gw->bus, false };
		gw_bus_all(gw->bus, true);
		hub->bus_all = true;
		rc_strmap_each(&hub->rooms, hub_sub_room, &hs);
	} else if (hub->bus_all && hub->nfirehose == 0 && (max == 0 || hub->rooms.count <= max / 2)) {
		/* back to rooms once well under the limit: no flapping at the edge */
		struct hub_sub hs = { gw->bus, true };
		rc_strmap_each(&hub->rooms, hub_sub_room, &hs);
		gw_bus_all(gw->bus, false);
		hub->bus_all = false;
	}
	gw->m.bus_subscribed_all = hub->bus_all;
	gw->m.bus_rooms_subscribed = hub->bus_all ? 0 : hub->rooms.count;
}

bool gw_hub_wants(const struct gw_hub *hub, const char *room, size_t room_len)
{
	return room_len == 0 || hub->nfirehose > 0 || rc_strmap_get(&hub->rooms, room, room_len) != NULL;
}

struct hub_names {
	struct rc_buf *b;
	bool first;
};

static void hub_room_name(struct rc_strmap_entry *e, void *arg)
{
	struct hub_names *hn = arg;

	if (!hn->first)
		rc_buf_puts(hn->b, ",");
	hn->first = false;
	rc_buf_json_str(hn->b, e->key, e->key_len);
}

void gw_hub_room_names(const struct gw_hub *hub, struct rc_buf *b)
{
	struct hub_names hn = { b, true };

	rc_strmap_each(&hub->rooms, hub_room_name, &hn);
}

static void hub_room_unref(struct gw_hub *hub, struct gw_room *r)
{
	if (--r->nmembers > 0)
		return;
	if (hub->delivering) {
		/* the delivery's scratch still points at r */
		if (!r->dead) {
			r->dead = true;
			r->dead_next = hub->dead;
			hub->dead = r;
		}
		return;
	}
	/* the last stream of the room here left: forget the room */
	if (!hub->bus_all)
		gw_bus_room(hub->gw->bus, r->name, r->name_len, false);
	rc_strmap_del(&hub->rooms, r->name, r->name_len);
	free(r);
	hub_bus_mode(hub);
}

int gw_hub_add(struct gw_hub *hub, struct gw_stream *s, const char *const *rooms, const size_t *lens)
{
	gw_list_init(&s->hub_node);
	for (uint16_t i = 0; i < s->nrooms; i++) {
		gw_list_init(&s->members[i].node);
		s->members[i].room = NULL;
		s->members[i].stream = s;
	}
	for (uint16_t i = 0; i < s->nrooms; i++) {
		struct gw_member *m = &s->members[i];
		struct rc_strmap_entry *e;
		struct gw_room *r;
		int added;

		e = rc_strmap_upsert(&hub->rooms, rooms[i], lens[i], &added);
		if (e == NULL)
			goto fail;
		if (added) {
			r = calloc(1, sizeof(*r));
			if (r == NULL) {
				rc_strmap_del(&hub->rooms, rooms[i], lens[i]);
				goto fail;
			}
			gw_list_init(&r->members);
			r->name = e->key;
			r->name_len = e->key_len;
			e->value = r;
			/* the first stream of the room here: its events start coming */
			hub->sub_gen++;
			if (!hub->bus_all)
				gw_bus_room(hub->gw->bus, r->name, r->name_len, true);
			hub_bus_mode(hub);
		}
		r = e->value;
		m->room = r;
		gw_list_insert_tail(&r->members, &m->node);
		r->nmembers++;
		continue;
fail:
		/* undo the rooms joined so far */
		for (uint16_t j = 0; j < i; j++) {
			gw_list_remove(&s->members[j].node);
			hub_room_unref(hub, s->members[j].room);
			s->members[j].room = NULL;
		}
		return RC_ENOMEM;
	}
	if (s->firehose) {
		gw_list_insert_tail(&hub->firehose, &s->hub_node);
		if (hub->nfirehose++ == 0) {
			hub->sub_gen++;
			hub_bus_mode(hub);
		}
	} else {
		gw_list_insert_tail(&hub->room_streams, &s->hub_node);
	}
	return RC_OK;
}

void gw_hub_remove(struct gw_hub *hub, struct gw_stream *s)
{
	for (uint16_t i = 0; i < s->nrooms; i++) {
		struct gw_room *r = s->members[i].room;
		if (r == NULL)
			continue;
		gw_list_remove(&s->members[i].node);
		s->members[i].room = NULL;
		hub_room_unref(hub, r);
	}
	if (gw_list_linked(&s->hub_node)) {
		gw_list_remove(&s->hub_node);
		if (s->firehose && --hub->nfirehose == 0)
			hub_bus_mode(hub);
	}
}

/* Writes one SSE event into chunk c; id starts with the flush's id prefix (plen bytes, rc_id_prefix). */
static void frame_event(struct gw_chunk *c, char *id, size_t plen, uint64_t gseq, const char *json, size_t json_len)
{
	size_t n = rc_id_format_gseq(id, plen, gseq);

	c->len += (uint32_t)rc_sse_format_event(c->data + c->len, id, n, json, json_len);
}

static struct gw_chunk *slab_get(struct gw_chunk **slot, size_t bytes)
{
	if (*slot == NULL)
		*slot = gw_chunk_new(bytes);
	return *slot;
}

void gw_hub_start(struct gw_hub *hub, uint64_t epoch, uint64_t gseq)
{
	struct gw_list *lists[2] = { &hub->room_streams, &hub->firehose }, *pos, *tmp;

	hub->epoch = epoch;
	hub->last_gseq = gseq;
	/* the resumes that waited for the position: they replay up to at least here */
	for (int i = 0; i < 2; i++)
		gw_list_each_safe(pos, tmp, lists[i])
			gw_stream_bus_known(gw_container_of(pos, struct gw_stream, hub_node));
}

/* Sends stream.reset (reason, id: the position) to every stream. */
static void hub_reset_all(struct gw_hub *hub, const char *reason)
{
	struct gw_list *lists[2] = { &hub->room_streams, &hub->firehose }, *pos, *tmp;

	for (int i = 0; i < 2; i++)
		gw_list_each_safe(pos, tmp, lists[i])
			gw_stream_reset(gw_container_of(pos, struct gw_stream, hub_node), reason, hub->epoch,
					hub->last_gseq);
}

void gw_hub_restart(struct gw_hub *hub, uint64_t epoch)
{
	hub->epoch = epoch;
	hub->last_gseq = 0;
	hub_reset_all(hub, "epoch_changed");
}

uint64_t gw_hub_skip(struct gw_hub *hub, uint64_t gseq)
{
	gw_hub_advance(hub, gseq);
	hub_reset_all(hub, "gap_unrecoverable");
	return hub->last_gseq;
}

/*
 * An event (gseq) of the frame being delivered cannot be framed for the
 * streams of list (members: a room's list, else hub_node lists): each that has
 * not had it yet is reset with gap_unrecoverable and goes on live after upto,
 * the hub's position after the frame. Returns how many were reset. A reset
 * that cannot be queued closes its stream: call it with hub->delivering set,
 * so that the rooms emptied meanwhile outlive the delivery's scratch.
 */
static size_t hub_reset_missed(struct gw_list *list, bool members, uint64_t gseq, uint64_t epoch, uint64_t upto)
{
	struct gw_list *pos, *tmp;
	size_t n = 0;

	gw_list_each_safe(pos, tmp, list) {
		struct gw_stream *s = members ? gw_container_of(pos, struct gw_member, node)->stream
					      : gw_container_of(pos, struct gw_stream, hub_node);
		n += gw_stream_missed(s, gseq, epoch, upto);
	}
	return n;
}

/* Frees the rooms whose last stream left during the delivery. */
static void hub_free_dead(struct gw_hub *hub)
{
	hub->delivering = false;
	while (hub->dead != NULL) {
		struct gw_room *room = hub->dead;
		hub->dead = room->dead_next;
		room->dead = false;
		if (room->nmembers == 0) {
			room->nmembers = 1;
			hub_room_unref(hub, room);
		}
	}
}

static void hub_log_missed(uint64_t epoch, uint64_t upto, size_t nreset)
{
	char id[RC_ID_MAX];

	rc_id_format(id, epoch, upto);
	rc_log_warn("out of memory delivering events; the streams that missed one are reset",
		    "streams=%zu resume_after=%s", nreset, id);
}

/*
 * The delivery's scratch cannot hold the frame: none of its new events goes
 * out, so every stream that wanted one is reset after the last. Returns how
 * many events were new.
 */
static size_t hub_drop_frame(struct gw_hub *hub, struct rc_frame_reader *r)
{
	struct rc_frame_reader all = *r;
	struct rc_frame_event ev;
	uint64_t epoch = r->hdr.epoch, upto = hub->last_gseq;
	size_t n = 0, nreset = 0;

	while (rc_frame_reader_next(&all, &ev))
		if (ev.gseq > hub->last_gseq) {
			upto = ev.gseq;
			n++;
		}
	if (n == 0)
		return 0;
	hub->delivering = true;
	while (rc_frame_reader_next(r, &ev)) {
		struct rc_strmap_entry *e;
		if (ev.gseq <= hub->last_gseq)
			continue;
		if (ev.room_len == 0)
			nreset += hub_reset_missed(&hub->room_streams, false, ev.gseq, epoch, upto);
		else if ((e = rc_strmap_get(&hub->rooms, ev.room, ev.room_len)) != NULL)
			nreset += hub_reset_missed(&((struct gw_room *)e->value)->members, true, ev.gseq, epoch, upto);
	}
	nreset += hub_reset_missed(&hub->firehose, false, upto, epoch, upto);
	hub->last_gseq = upto;
	hub_free_dead(hub);
	if (nreset > 0)
		hub_log_missed(epoch, upto, nreset);
	return n;
}

size_t gw_hub_deliver(struct gw_hub *hub, struct rc_frame_reader *r)
{
	size_t n = 0, i = 0, fire_bytes = 0, global_bytes = 0, nreset = 0;
	struct gw_chunk *fire = NULL, *global = NULL;
	struct rc_frame_event ev;
	char id[RC_ID_MAX];
	size_t plen = rc_id_prefix(id, r->hdr.epoch);
	bool want_fire = hub->nfirehose > 0, want_global = !gw_list_empty(&hub->room_streams);
	struct gw_list *pos, *tmp;
	uint64_t upto;

	if (r->hdr.count == 0)
		return 0;
	if (hub->scratch_cap < r->hdr.count) {
		struct gw_framed *s = realloc(hub->scratch, r->hdr.count * sizeof(*s));
		if (s == NULL)
			return hub_drop_frame(hub, r);
		hub->scratch = s;
		hub->scratch_cap = r->hdr.count;
	}
	/* pass 1: who wants each event, and how many bytes each slab needs */
	while (rc_frame_reader_next(r, &ev)) {
		struct gw_framed *f;
		if (ev.gseq <= hub->last_gseq)
			continue; /* delivered already (a repair overlapping the bus) */
		f = &hub->scratch[n++];
		f->gseq = ev.gseq;
		f->global = ev.room_len == 0;
		f->json = ev.json;
		f->json_len = ev.json_len;
		f->len = (uint32_t)rc_sse_event_size(plen + rc_id_gseq_len(ev.gseq), ev.json_len);
		f->chunk = NULL;
		f->room = NULL;
		if (f->global) {
			if (want_global)
				global_bytes += f->len;
		} else {
			struct rc_strmap_entry *e = rc_strmap_get(&hub->rooms, ev.room, ev.room_len);
			if (e != NULL) {
				f->room = e->value;
				f->room->slab_bytes += f->len;
			}
		}
		if (want_fire)
			fire_bytes += f->len;
	}
	if (n == 0)
		return 0;
	upto = hub->scratch[n - 1].gseq;
	hub->last_gseq = upto;
	hub->delivering = true; /* from here on, streams may leave (resets and writes can close them) */
	/* pass 2: frame each event once into its slab (and the firehose slab) */
	if (want_fire && (fire = gw_chunk_new(fire_bytes)) == NULL) {
		nreset += hub_reset_missed(&hub->firehose, false, upto, r->hdr.epoch, upto);
		want_fire = false;
	}
	for (i = 0; i < n; i++) {
		struct gw_framed *f = &hub->scratch[i];
		struct gw_chunk *c = NULL;
		if (f->room != NULL) {
			c = slab_get(&f->room->slab, f->room->slab_bytes);
			if (c == NULL)
				nreset += hub_reset_missed(&f->room->members, true, f->gseq, r->hdr.epoch, upto);
		} else if (f->global && want_global) {
			c = slab_get(&global, global_bytes);
			if (c == NULL)
				nreset += hub_reset_missed(&hub->room_streams, false, f->gseq, r->hdr.epoch, upto);
		}
		if (c != NULL) {
			f->chunk = c;
			f->off = c->len;
			frame_event(c, id, plen, f->gseq, f->json, f->json_len);
		}
		if (want_fire) {
			f->fire_off = fire->len;
			if (c != NULL) {
				memcpy(fire->data + fire->len, c->data + f->off, f->len);
				fire->len += f->len;
			} else {
				frame_event(fire, id, plen, f->gseq, f->json, f->json_len);
			}
		}
	}
	/* pass 3: runs of one room go to that room's streams, in gseq order */
	for (i = 0; i < n;) {
		struct gw_framed *f = &hub->scratch[i];
		struct gw_run run = { .ev = f, .n = 1, .chunk = f->chunk };
		if (f->chunk == NULL) {
			i++;
			continue;
		}
		while (i + run.n < n && hub->scratch[i + run.n].chunk == f->chunk)
			run.n++;
		if (f->global) {
			gw_list_each_safe(pos, tmp, &hub->room_streams)
				gw_stream_deliver(gw_container_of(pos, struct gw_stream, hub_node), &run);
		} else {
			gw_list_each_safe(pos, tmp, &f->room->members)
				gw_stream_deliver(gw_container_of(pos, struct gw_member, node)->stream, &run);
		}
		i += run.n;
	}
	if (want_fire) {
		struct gw_run run = { .ev = hub->scratch, .n = n, .chunk = fire, .fire = true };
		gw_list_each_safe(pos, tmp, &hub->firehose)
			gw_stream_deliver(gw_container_of(pos, struct gw_stream, hub_node), &run);
	}
	/* the streams hold their own references now */
	for (i = 0; i < n; i++) {
		struct gw_room *room = hub->scratch[i].room;
		if (room != NULL && room->slab != NULL) {
			gw_chunk_unref(room->slab);
			room->slab = NULL;
		}
		if (room != NULL)
			room->slab_bytes = 0;
	}
	hub_free_dead(hub);
	gw_chunk_unref(global);
	gw_chunk_unref(fire);
	if (nreset > 0)
		hub_log_missed(r->hdr.epoch, upto, nreset);
	return n;
}
