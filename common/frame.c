#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "event.h"
#include "le.h"

_Static_assert(RC_BUS_TOPIC_MAX == 2 + RC_ROOM_MAX, "a topic holds the longest room id");

void rc_frame_put_header(uint8_t *buf, const struct rc_frame_hdr *hdr)
{
	memcpy(buf, "RCF1", 4);
	buf[4] = RC_FRAME_VERSION;
	buf[5] = hdr->flags;
	rc_le_put16(buf + 6, 0);
	rc_le_put64(buf + 8, hdr->epoch);
	rc_le_put64(buf + 16, hdr->last_gseq);
	rc_le_put32(buf + 24, hdr->count);
}

void rc_index_put_header(uint8_t *buf, const struct rc_frame_hdr *hdr, uint64_t first_gseq)
{
	rc_frame_put_header(buf, hdr);
	rc_le_put64(buf + RC_FRAME_HDR_SIZE, first_gseq);
}

size_t rc_index_put_entry(uint8_t *buf, const struct rc_index_entry *e)
{
	rc_le_put32(buf, e->events);
	rc_le_put16(buf + 4, e->room_len);
	if (e->room_len != 0)
		memcpy(buf + RC_INDEX_ENTRY_HDR_SIZE, e->room, e->room_len);
	return rc_index_entry_size(e->room_len);
}

size_t rc_bus_topic(char *buf, const char *room, size_t room_len)
{
	if (room_len == 0) {
		memcpy(buf, "g", 2);
		return 2;
	}
	buf[0] = 'r';
	memcpy(buf + 1, room, room_len);
	buf[1 + room_len] = '\0';
	return room_len + 2;
}

int rc_bus_msg_parse(struct rc_bus_msg *m, const void *buf, size_t len)
{
	const char *p = buf;
	const char *nul = len > 0 ? memchr(p, '\0', len < RC_BUS_TOPIC_MAX ? len : RC_BUS_TOPIC_MAX) : NULL;
	size_t tlen;

	memset(m, 0, sizeof(*m));
	if (nul == NULL)
		return RC_EPROTO;
	tlen = (size_t)(nul - p);
	m->body = (const uint8_t *)nul + 1;
	m->body_len = len - tlen - 1;
	if (tlen == 1 && p[0] == 'i') {
		m->index = true;
		return RC_OK;
	}
	if (tlen == 1 && p[0] == 'g')
		return RC_OK;
	if (tlen >= 2 && p[0] == 'r' && rc_room_valid(p + 1, tlen - 1)) {
		m->room = p + 1;
		m->room_len = (uint16_t)(tlen - 1);
		return RC_OK;
	}
	return RC_EPROTO;
}

size_t rc_frame_put_event(uint8_t *buf, const struct rc_frame_event *ev)
{
	rc_le_put64(buf, ev->gseq);
	rc_le_put64(buf + 8, ev->rseq);
	rc_le_put16(buf + 16, ev->room_len);
	rc_le_put32(buf + 18, ev->json_len);
	/* a global event has room NULL: memcpy from NULL is undefined even for 0 bytes */
	if (ev->room_len != 0)
		memcpy(buf + RC_FRAME_EVENT_HDR_SIZE, ev->room, ev->room_len);
	memcpy(buf + RC_FRAME_EVENT_HDR_SIZE + ev->room_len, ev->json, ev->json_len);
	return rc_frame_event_size(ev->room_len, ev->json_len);
}

/* Decodes the event at p without checks; returns its size. */
static size_t frame_get_event(const uint8_t *p, struct rc_frame_event *ev)
{
	ev->gseq = rc_le_get64(p);
	ev->rseq = rc_le_get64(p + 8);
	ev->room_len = rc_le_get16(p + 16);
	ev->json_len = rc_le_get32(p + 18);
	ev->room = (const char *)p + RC_FRAME_EVENT_HDR_SIZE;
	ev->json = ev->room + ev->room_len;
	return rc_frame_event_size(ev->room_len, ev->json_len);
}

int rc_frame_reader_init(struct rc_frame_reader *r, const void *buf, size_t len)
{
	const uint8_t *p = buf, *end;
	uint64_t prev = 0;

	memset(r, 0, sizeof(*r));
	if (len < RC_FRAME_HDR_SIZE)
		return len >= 4 && memcmp(p, "RCF1", 4) != 0 ? RC_EPROTO : RC_ETRUNC;
	if (memcmp(p, "RCF1", 4) != 0 || p[4] != RC_FRAME_VERSION)
		return RC_EPROTO;
	r->hdr.flags = p[5];
	r->hdr.epoch = rc_le_get64(p + 8);
	r->hdr.last_gseq = rc_le_get64(p + 16);
	r->hdr.count = rc_le_get32(p + 24);
	end = p + len;
	p += RC_FRAME_HDR_SIZE;
	r->p = p;
	r->end = end;
	if (r->hdr.epoch == 0)
		return RC_EPROTO;
	for (uint32_t i = 0; i < r->hdr.count; i++) {
		struct rc_frame_event ev;
		if ((size_t)(end - p) < RC_FRAME_EVENT_HDR_SIZE)
			return RC_ETRUNC;
		ev.room_len = rc_le_get16(p + 16);
		ev.json_len = rc_le_get32(p + 18);
		if ((size_t)(end - p) < rc_frame_event_size(ev.room_len, ev.json_len))
			return RC_ETRUNC;
		p += frame_get_event(p, &ev);
		if (ev.gseq <= prev || ev.gseq > r->hdr.last_gseq || ev.rseq == 0 || ev.json_len == 0)
			return RC_EPROTO;
		if (ev.room_len != 0 && !rc_room_valid(ev.room, ev.room_len))
			return RC_EPROTO;
		prev = ev.gseq;
	}
	if (p != end)
		return RC_EPROTO;
	/* only now: a rejected frame must deliver nothing through _next */
	r->left = r->hdr.count;
	return RC_OK;
}

int rc_frame_reader_next(struct rc_frame_reader *r, struct rc_frame_event *ev)
{
	if (r->left == 0)
		return 0;
	r->p += frame_get_event(r->p, ev);
	r->left--;
	return 1;
}

/* The frame after a whole flush's index: every event first..last, nothing else. */
static int index_whole_init(struct rc_index_reader *r, const uint8_t *p, size_t len)
{
	struct rc_frame_reader *fr = &r->whole, head;
	struct rc_frame_event ev;
	int rv;

	if (r->hdr.count != 0 || (r->hdr.flags & RC_FRAME_TICK) || r->first_gseq > r->hdr.last_gseq)
		return RC_EPROTO;
	if ((rv = rc_frame_reader_init(fr, p, len)) != RC_OK)
		return rv;
	if (fr->hdr.flags != 0 || fr->hdr.epoch != r->hdr.epoch || fr->hdr.last_gseq != r->hdr.last_gseq ||
	    fr->hdr.count != r->hdr.last_gseq - r->first_gseq + 1)
		return RC_EPROTO;
	/* count gseqs, strictly increasing, none above last: consecutive iff the first is first_gseq */
	head = *fr;
	if (!rc_frame_reader_next(&head, &ev) || ev.gseq != r->first_gseq)
		return RC_EPROTO;
	r->p = r->end = p;
	return RC_OK;
}

size_t rc_ack_put(uint8_t *buf, uint64_t gw, uint64_t req, const uint64_t *gseqs, uint32_t n)
{
	rc_le_put64(buf, gw);
	rc_le_put64(buf + 8, req);
	rc_le_put32(buf + 16, n);
	for (uint32_t i = 0; i < n; i++)
		rc_le_put64(buf + RC_ACK_HDR_SIZE + 8 * (size_t)i, gseqs[i]);
	return rc_ack_size(n);
}

int rc_index_acks(const void *buf, size_t *len, struct rc_ack_reader *r)
{
	const uint8_t *p = buf;
	size_t block;

	r->p = r->end = NULL;
	if (*len < RC_INDEX_HDR_SIZE || !(p[5] & RC_FRAME_ACKS))
		return RC_OK;
	if (*len < RC_INDEX_HDR_SIZE + 4)
		return RC_ETRUNC;
	block = rc_le_get32(p + *len - 4);
	if (block > *len - 4 - RC_INDEX_HDR_SIZE || block < rc_ack_size(1))
		return RC_EPROTO;
	r->end = p + *len - 4;
	r->p = r->end - block;
	/* the records must fill the block exactly */
	for (const uint8_t *q = r->p; q != r->end;) {
		size_t left = (size_t)(r->end - q);
		uint32_t n;
		if (left < RC_ACK_HDR_SIZE)
			return RC_EPROTO;
		n = rc_le_get32(q + 16);
		if (n == 0 || (size_t)n > (left - RC_ACK_HDR_SIZE) / 8)
			return RC_EPROTO;
		q += rc_ack_size(n);
	}
	*len -= block + 4;
	return RC_OK;
}

int rc_ack_next(struct rc_ack_reader *r, struct rc_ack *a)
{
	if (r->p == r->end)
		return 0;
	a->gw = rc_le_get64(r->p);
	a->req = rc_le_get64(r->p + 8);
	a->n = rc_le_get32(r->p + 16);
	a->gseqs = r->p + RC_ACK_HDR_SIZE;
	r->p += rc_ack_size(a->n);
	return 1;
}

uint64_t rc_ack_gseq(const struct rc_ack *a, uint32_t i)
{
	return rc_le_get64(a->gseqs + 8 * (size_t)i);
}

int rc_index_reader_init(struct rc_index_reader *r, const void *buf, size_t len)
{
	const uint8_t *p = buf, *end;
	struct rc_ack_reader acks;
	int rv;

	memset(r, 0, sizeof(*r));
	if (len < RC_INDEX_HDR_SIZE)
		return len >= 4 && memcmp(p, "RCF1", 4) != 0 ? RC_EPROTO : RC_ETRUNC;
	if (memcmp(p, "RCF1", 4) != 0 || p[4] != RC_FRAME_VERSION || !(p[5] & RC_FRAME_INDEX))
		return RC_EPROTO;
	/* the acknowledgements at the end are not the index's business */
	if ((rv = rc_index_acks(buf, &len, &acks)) != RC_OK)
		return rv;
	end = p + len;
	r->hdr.flags = p[5];
	r->hdr.epoch = rc_le_get64(p + 8);
	r->hdr.last_gseq = rc_le_get64(p + 16);
	r->hdr.count = rc_le_get32(p + 24);
	r->first_gseq = rc_le_get64(p + RC_FRAME_HDR_SIZE);
	p += RC_INDEX_HDR_SIZE;
	r->p = p;
	r->end = end;
	if (r->hdr.epoch == 0 || r->first_gseq == 0 || r->first_gseq > r->hdr.last_gseq + 1)
		return RC_EPROTO;
	if ((r->hdr.flags & RC_FRAME_TICK) && (r->hdr.count != 0 || r->first_gseq != r->hdr.last_gseq + 1))
		return RC_EPROTO;
	if (r->hdr.flags & RC_FRAME_WHOLE)
		return index_whole_init(r, p, (size_t)(end - p));
	for (uint32_t i = 0; i < r->hdr.count; i++) {
		uint16_t room_len;
		if ((size_t)(end - p) < RC_INDEX_ENTRY_HDR_SIZE)
			return RC_ETRUNC;
		room_len = rc_le_get16(p + 4);
		if ((size_t)(end - p) < rc_index_entry_size(room_len))
			return RC_ETRUNC;
		if (rc_le_get32(p) == 0 || (room_len != 0 && !rc_room_valid((const char *)p + RC_INDEX_ENTRY_HDR_SIZE, room_len)))
			return RC_EPROTO;
		p += rc_index_entry_size(room_len);
	}
	if (p != end)
		return RC_EPROTO;
	r->left = r->hdr.count;
	return RC_OK;
}

int rc_index_reader_next(struct rc_index_reader *r, struct rc_index_entry *e)
{
	if (r->left == 0)
		return 0;
	e->events = rc_le_get32(r->p);
	e->room_len = rc_le_get16(r->p + 4);
	e->room = (const char *)r->p + RC_INDEX_ENTRY_HDR_SIZE;
	r->p += rc_index_entry_size(e->room_len);
	r->left--;
	return 1;
}

static int merge_cmp(const void *a, const void *b)
{
	const struct rc_frame_event *x = a, *y = b;
	return x->gseq < y->gseq ? -1 : x->gseq > y->gseq;
}

int rc_frame_merge(struct rc_buf *out, struct rc_frame_hdr hdr, struct rc_frame_reader *fr, size_t n)
{
	struct rc_frame_event *evs;
	size_t count = 0, bytes = RC_FRAME_HDR_SIZE, k = 0;
	uint8_t *p;

	for (size_t i = 0; i < n; i++)
		count += fr[i].left;
	evs = malloc((count ? count : 1) * sizeof(*evs));
	if (evs == NULL)
		return RC_ENOMEM;
	for (size_t i = 0; i < n; i++)
		while (rc_frame_reader_next(&fr[i], &evs[k])) {
			bytes += rc_frame_event_size(evs[k].room_len, evs[k].json_len);
			k++;
		}
	/* each frame is sorted: a flush of one or two rooms is nearly sorted already */
	qsort(evs, count, sizeof(*evs), merge_cmp);
	for (size_t i = 1; i < count; i++)
		if (evs[i].gseq == evs[i - 1].gseq) {
			free(evs);
			return RC_EPROTO;
		}
	if (rc_buf_reserve(out, bytes) != RC_OK) {
		free(evs);
		return RC_ENOMEM;
	}
	p = (uint8_t *)out->data + out->len;
	hdr.count = (uint32_t)count;
	rc_frame_put_header(p, &hdr);
	p += RC_FRAME_HDR_SIZE;
	for (size_t i = 0; i < count; i++)
		p += rc_frame_put_event(p, &evs[i]);
	out->len += bytes;
	free(evs);
	return RC_OK;
}
