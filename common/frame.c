#include "frame.h"

#include <string.h>

#include "error.h"
#include "event.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

void rc_frame_put_header(uint8_t *buf, const struct rc_frame_hdr *hdr)
{
	memcpy(buf, "RCF1", 4);
	buf[4] = RC_FRAME_VERSION;
	buf[5] = hdr->flags;
	put16(buf + 6, 0);
	put64(buf + 8, hdr->epoch);
	put64(buf + 16, hdr->last_gseq);
	put32(buf + 24, hdr->count);
}

size_t rc_frame_put_event(uint8_t *buf, const struct rc_frame_event *ev)
{
	put64(buf, ev->gseq);
	put64(buf + 8, ev->rseq);
	put16(buf + 16, ev->room_len);
	put32(buf + 18, ev->json_len);
	/* a global event has room NULL: memcpy from NULL is undefined even for 0 bytes */
	if (ev->room_len != 0)
		memcpy(buf + RC_FRAME_EVENT_HDR_SIZE, ev->room, ev->room_len);
	memcpy(buf + RC_FRAME_EVENT_HDR_SIZE + ev->room_len, ev->json, ev->json_len);
	return rc_frame_event_size(ev->room_len, ev->json_len);
}

/* Decodes the event at p without checks; returns its size. */
static size_t frame_get_event(const uint8_t *p, struct rc_frame_event *ev)
{
	ev->gseq = get64(p);
	ev->rseq = get64(p + 8);
	ev->room_len = get16(p + 16);
	ev->json_len = get32(p + 18);
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
	r->hdr.epoch = get64(p + 8);
	r->hdr.last_gseq = get64(p + 16);
	r->hdr.count = get32(p + 24);
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
		ev.room_len = get16(p + 16);
		ev.json_len = get32(p + 18);
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
