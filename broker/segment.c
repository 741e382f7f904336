#include "segment.h"

#include <string.h>

#include "crc32c.h"
#include "le.h"

size_t seg_record_size(size_t room_len, size_t key_len, size_t json_len)
{
	return SEG_REC_HDR + SEG_BODY_FIXED + room_len + key_len + json_len;
}

size_t seg_encode(uint8_t *buf, const struct seg_record *r)
{
	size_t body = SEG_BODY_FIXED + (size_t)r->room_len + r->key_len + r->json_len;
	uint8_t *b = buf + SEG_REC_HDR;

	b[0] = r->type;
	b[1] = 0;
	rc_le_put16(b + 2, r->room_len);
	rc_le_put16(b + 4, r->key_len);
	rc_le_put16(b + 6, 0);
	rc_le_put32(b + 8, r->json_len);
	rc_le_put64(b + 12, r->gseq);
	rc_le_put64(b + 20, r->rseq);
	rc_le_put64(b + 28, r->time_ms);
	if (r->room_len)
		memcpy(b + SEG_BODY_FIXED, r->room, r->room_len);
	if (r->key_len)
		memcpy(b + SEG_BODY_FIXED + r->room_len, r->key, r->key_len);
	if (r->json_len)
		memcpy(b + SEG_BODY_FIXED + r->room_len + r->key_len, r->json, r->json_len);
	rc_le_put32(buf, (uint32_t)body);
	rc_le_put32(buf + 4, rc_crc32c(0, b, body));
	return SEG_REC_HDR + body;
}

void seg_put_header(uint8_t buf[SEG_HDR_SIZE], uint64_t base_gseq)
{
	memcpy(buf, SEG_MAGIC, 8);
	rc_le_put64(buf + 8, base_gseq);
}

bool seg_get_header(const uint8_t buf[SEG_HDR_SIZE], uint64_t *base_gseq)
{
	if (memcmp(buf, SEG_MAGIC, 8) != 0)
		return false;
	*base_gseq = rc_le_get64(buf + 8);
	return true;
}

enum seg_decode_result seg_decode(const uint8_t *p, size_t len, struct seg_record *r, size_t *used)
{
	uint32_t body, crc;
	const uint8_t *b = p + SEG_REC_HDR;

	if (len < SEG_REC_HDR)
		return SEG_DEC_SHORT;
	body = rc_le_get32(p);
	crc = rc_le_get32(p + 4);
	if (body < SEG_BODY_FIXED || body > SEG_MAX_BODY)
		return SEG_DEC_BADLEN;
	if (len - SEG_REC_HDR < body)
		return SEG_DEC_SHORT;
	if (rc_crc32c(0, b, body) != crc)
		return SEG_DEC_BADCRC;
	r->type = b[0];
	r->room_len = rc_le_get16(b + 2);
	r->key_len = rc_le_get16(b + 4);
	r->json_len = rc_le_get32(b + 8);
	if ((r->type != SEG_REC_EVENT && r->type != SEG_REC_ROOM && r->type != SEG_REC_KEY) || b[1] != 0 ||
	    (uint64_t)SEG_BODY_FIXED + r->room_len + r->key_len + r->json_len != body)
		return SEG_DEC_BADLEN; /* a sound checksum over fields that do not add up: written so, corrupt */
	r->gseq = rc_le_get64(b + 12);
	r->rseq = rc_le_get64(b + 20);
	r->time_ms = rc_le_get64(b + 28);
	r->room = (const char *)b + SEG_BODY_FIXED;
	r->key = r->room + r->room_len;
	r->json = r->key + r->key_len;
	*used = SEG_REC_HDR + body;
	return SEG_DEC_OK;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != 0)
			return false;
	return true;
}

int seg_scan(const uint8_t *p, size_t len, uint64_t next_gseq, seg_record_fn cb, void *arg, struct seg_scan *out)
{
	size_t off = 0, used = 0;
	struct seg_record r;
	int rv = 0;

	memset(out, 0, sizeof(*out));
	out->status = SEG_SCAN_END;
	while (off < len) {
		enum seg_decode_result d = seg_decode(p + off, len - off, &r, &used);

		if (d == SEG_DEC_SHORT) {
			/* the last write stopped inside this record */
			out->status = SEG_SCAN_TORN;
			out->why = "record cut short";
			break;
		}
		if (d == SEG_DEC_BADLEN || d == SEG_DEC_BADCRC) {
			/*
			 * a torn write leaves garbage or zeros where its last
			 * record was, then nothing: a bad record that is the
			 * last bytes, or followed only by zeros, is a torn tail
			 */
			size_t rest = d == SEG_DEC_BADCRC ? off + SEG_REC_HDR + (size_t)rc_le_get32(p + off) : off;
			out->status = all_zero(p + rest, len - rest) ? SEG_SCAN_TORN : SEG_SCAN_CORRUPT;
			out->why = d == SEG_DEC_BADCRC ? "bad checksum" : "bad record length";
			break;
		}
		if (r.type == SEG_REC_EVENT) {
			if (next_gseq != 0 && r.gseq != next_gseq) {
				out->status = SEG_SCAN_CORRUPT;
				out->why = "gseq out of sequence";
				break;
			}
			next_gseq = r.gseq + 1;
		}
		if (cb != NULL && (rv = cb(arg, &r)) != 0) {
			off += used;
			out->records++;
			break;
		}
		off += used;
		out->records++;
	}
	out->end = off;
	out->next_gseq = next_gseq;
	return rv;
}
