/*
 * segment.h - the broker log's record codec and segment scanner (no I/O).
 *
 * A segment file is a 16-byte header (SEG_MAGIC, then the first gseq it
 * holds, little-endian) followed by records, each:
 *
 *   u32 body_len | u32 crc32c(body) | body
 *   body: u8 type | u8 flags (0) | u16 room_len | u16 key_len | u16 (0)
 *         | u32 json_len | u64 gseq | u64 rseq | u64 time_ms | room | key | json
 *
 * all little-endian. SEG_REC_EVENT is a published event (room_len 0: a global
 * event); SEG_REC_ROOM (in the rooms checkpoint file only) carries a room's
 * rseq; SEG_REC_KEY (there too) an idempotency key whose event record may be
 * gone: its gseq and time_ms. The scanner stops at the first record that is not whole and sound and
 * says whether what follows looks like a torn write (the tail of the last
 * write) or corruption.
 */
#ifndef RC_SEGMENT_H
#define RC_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_MAGIC      "RCSEG\0\0\1"
#define SEG_HDR_SIZE   16
#define SEG_REC_HDR    8						/* body_len + crc */
#define SEG_BODY_FIXED 36						/* the body before room, key and json */
#define SEG_MAX_BODY   (SEG_BODY_FIXED + 0xffff + 0xffff + (16u << 20)) /* > RC_MAX_EVENT_BYTES_MAX */

enum seg_rec_type { SEG_REC_EVENT = 1, SEG_REC_ROOM = 2, SEG_REC_KEY = 3 };

struct seg_record {
	uint8_t type;
	uint64_t gseq, rseq, time_ms;
	const char *room; /* room_len bytes (not terminated) */
	uint16_t room_len;
	const char *key;
	uint16_t key_len;
	const char *json;
	uint32_t json_len;
};

/* The bytes seg_encode writes for a record with these lengths. */
size_t seg_record_size(size_t room_len, size_t key_len, size_t json_len);

/* Writes r at buf (seg_record_size bytes); returns the bytes written. */
size_t seg_encode(uint8_t *buf, const struct seg_record *r);

/* Writes the segment header for a segment starting at base_gseq. */
void seg_put_header(uint8_t buf[SEG_HDR_SIZE], uint64_t base_gseq);
/* Reads a segment header; false when the magic is wrong. */
bool seg_get_header(const uint8_t buf[SEG_HDR_SIZE], uint64_t *base_gseq);

enum seg_decode_result {
	SEG_DEC_OK,
	SEG_DEC_SHORT,	/* p ends before the record does (its header or its body) */
	SEG_DEC_BADLEN, /* a length that cannot be (too small, too large, fields not adding up) */
	SEG_DEC_BADCRC, /* whole but the checksum does not match */
};

/* Decodes the record at p[0..len): fills r (pointing into p) and *used. */
enum seg_decode_result seg_decode(const uint8_t *p, size_t len, struct seg_record *r, size_t *used);

enum seg_scan_status {
	SEG_SCAN_END,	  /* every byte was a sound record */
	SEG_SCAN_TORN,	  /* stopped at a record that looks half written: the rest is its tail (or zeros) */
	SEG_SCAN_CORRUPT, /* stopped at a bad record followed by more bytes, or a gseq out of sequence */
};

struct seg_scan {
	enum seg_scan_status status;
	size_t end;	    /* bytes of sound records from the start (where a cut goes) */
	size_t records;	    /* sound records */
	uint64_t next_gseq; /* the gseq the next record would need */
	const char *why;    /* what was wrong at end (status != SEG_SCAN_END) */
};

/* Called for each sound record in order; returning non-zero stops the scan (status END, end after it). */
typedef int (*seg_record_fn)(void *arg, const struct seg_record *r);

/*
 * Scans the records at p[0..len). Event records must carry consecutive gseqs
 * from next_gseq (0: whatever the first one holds). Returns what cb returned
 * if it stopped the scan, else 0.
 */
int seg_scan(const uint8_t *p, size_t len, uint64_t next_gseq, seg_record_fn cb, void *arg, struct seg_scan *out);

#endif
