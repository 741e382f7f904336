/*
 * test_segment.c - the broker log's CRC32C, record codec and segment scanner:
 * every cut of a record, bad checksums, bad lengths, gseqs out of sequence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crc32c.h"
#include "segment.h"

static void test_crc32c_vectors(void **state)
{
	uint8_t buf[1024];
	(void)state;

	/* the check value of CRC-32C and the iSCSI vectors (RFC 3720 B.4) */
	assert_int_equal(rc_crc32c(0, "123456789", 9), 0xe3069283u);
	assert_int_equal(rc_crc32c_sw(0, "123456789", 9), 0xe3069283u);
	memset(buf, 0, 32);
	assert_int_equal(rc_crc32c(0, buf, 32), 0x8a9136aau);
	memset(buf, 0xff, 32);
	assert_int_equal(rc_crc32c(0, buf, 32), 0x62a8ab43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(rc_crc32c_sw(0, buf, 32), 0x46dd794eu);
	/* hardware and software agree at every length and alignment, and in pieces */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len + off <= 300; len++) {
			uint32_t whole = rc_crc32c_sw(0, buf + off, len);
			assert_int_equal(rc_crc32c(0, buf + off, len), whole);
			assert_int_equal(
				rc_crc32c(rc_crc32c(0, buf + off, len / 3), buf + off + len / 3, len - len / 3), whole);
		}
}

/* Three records (two events in rooms, one global) from gseq 7, in buf; their ends in ends[]. */
static size_t three_records(uint8_t *buf, size_t ends[3])
{
	struct seg_record r[3] = {
		{ SEG_REC_EVENT, 7, 1, 1000, "room-a", 6, "k1", 2, "{\"a\":1}", 7 },
		{ SEG_REC_EVENT, 8, 1, 1001, NULL, 0, NULL, 0, "{\"global\":true}", 15 },
		{ SEG_REC_EVENT, 9, 2, 1002, "room-a", 6, NULL, 0, "{\"b\":22222222}", 14 },
	};
	size_t off = 0;

	for (int i = 0; i < 3; i++) {
		size_t n = seg_encode(buf + off, &r[i]);
		assert_int_equal(n, seg_record_size(r[i].room_len, r[i].key_len, r[i].json_len));
		off += n;
		ends[i] = off;
	}
	return off;
}

struct collected {
	size_t n;
	uint64_t gseq[8];
};

static int collect(void *arg, const struct seg_record *r)
{
	struct collected *c = arg;
	c->gseq[c->n++] = r->gseq;
	return 0;
}

static void test_roundtrip(void **state)
{
	uint8_t buf[512], hdr[SEG_HDR_SIZE];
	size_t ends[3], used = 0, total = three_records(buf, ends);
	struct seg_record r;
	uint64_t base = 0;
	(void)state;

	assert_int_equal(seg_decode(buf, total, &r, &used), SEG_DEC_OK);
	assert_int_equal(used, ends[0]);
	assert_int_equal(r.type, SEG_REC_EVENT);
	assert_int_equal(r.gseq, 7);
	assert_int_equal(r.rseq, 1);
	assert_int_equal(r.time_ms, 1000);
	assert_memory_equal(r.room, "room-a", 6);
	assert_int_equal(r.room_len, 6);
	assert_memory_equal(r.key, "k1", 2);
	assert_int_equal(r.key_len, 2);
	assert_memory_equal(r.json, "{\"a\":1}", 7);
	assert_int_equal(r.json_len, 7);
	assert_int_equal(seg_decode(buf + ends[0], total - ends[0], &r, &used), SEG_DEC_OK);
	assert_int_equal(r.room_len, 0);
	assert_int_equal(r.key_len, 0);
	assert_int_equal(r.gseq, 8);

	seg_put_header(hdr, 123456789012345ull);
	assert_true(seg_get_header(hdr, &base));
	assert_int_equal(base, 123456789012345ull);
	hdr[3] ^= 1;
	assert_false(seg_get_header(hdr, &base));
}

static void test_every_cut(void **state)
{
	uint8_t buf[512];
	size_t ends[3], total = three_records(buf, ends);
	(void)state;

	for (size_t cut = 0; cut <= total; cut++) {
		struct collected c = { 0 };
		struct seg_scan s;
		size_t whole = 0, end = 0;

		for (int i = 0; i < 3; i++)
			if (ends[i] <= cut) {
				whole++;
				end = ends[i];
			}
		seg_scan(buf, cut, 7, collect, &c, &s);
		assert_int_equal(s.records, whole);
		assert_int_equal(c.n, whole);
		assert_int_equal(s.end, end);
		assert_int_equal(s.next_gseq, 7 + whole);
		assert_int_equal(s.status, end == cut ? SEG_SCAN_END : SEG_SCAN_TORN);
		/* a cut record followed by zeros (a file extended before its data landed) is torn too */
		if (end != cut) {
			uint8_t z[1024];
			memcpy(z, buf, cut);
			memset(z + cut, 0, sizeof(z) - cut);
			seg_scan(z, sizeof(z), 7, NULL, NULL, &s);
			assert_int_equal(s.end, end);
			assert_int_equal(s.status, SEG_SCAN_TORN);
		}
	}
}

static void test_bad_crc(void **state)
{
	uint8_t buf[512];
	size_t ends[3], total = three_records(buf, ends);
	struct seg_scan s;
	(void)state;

	/* every byte of the middle record's body flipped: corrupt, cut before it */
	for (size_t i = ends[0] + SEG_REC_HDR; i < ends[1]; i++) {
		buf[i] ^= 0x40;
		seg_scan(buf, total, 7, NULL, NULL, &s);
		assert_int_equal(s.status, SEG_SCAN_CORRUPT);
		assert_int_equal(s.end, ends[0]);
		assert_int_equal(s.records, 1);
		buf[i] ^= 0x40;
	}
	/* the checksum itself */
	buf[ends[0] + 5] ^= 1;
	seg_scan(buf, total, 7, NULL, NULL, &s);
	assert_int_equal(s.status, SEG_SCAN_CORRUPT);
	assert_string_equal(s.why, "bad checksum");
	buf[ends[0] + 5] ^= 1;
	/* the last record bad: a torn tail */
	buf[total - 1] ^= 1;
	seg_scan(buf, total, 7, NULL, NULL, &s);
	assert_int_equal(s.status, SEG_SCAN_TORN);
	assert_int_equal(s.end, ends[1]);
	assert_int_equal(s.records, 2);
}

static void test_bad_length(void **state)
{
	uint8_t buf[512];
	size_t ends[3], total = three_records(buf, ends);
	struct seg_scan s;
	uint8_t save[4];
	const uint32_t bad[] = { 0, 1, SEG_BODY_FIXED - 1, SEG_MAX_BODY + 1, 0xffffffffu };
	(void)state;

	memcpy(save, buf + ends[0], 4);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint32_t v = bad[i];
		for (int k = 0; k < 4; k++)
			buf[ends[0] + k] = (uint8_t)(v >> (8 * k));
		seg_scan(buf, total, 7, NULL, NULL, &s);
		assert_int_equal(s.status, SEG_SCAN_CORRUPT);
		assert_string_equal(s.why, "bad record length");
		assert_int_equal(s.end, ends[0]);
	}
	/* a length a little off: the checksum covers other bytes */
	buf[ends[0]] = (uint8_t)(save[0] - 1);
	seg_scan(buf, total, 7, NULL, NULL, &s);
	assert_int_equal(s.status, SEG_SCAN_CORRUPT);
	assert_int_equal(s.end, ends[0]);
	memcpy(buf + ends[0], save, 4);
	/* zeros where a record should start, to the end: a torn (preallocated) tail */
	memset(buf + ends[1], 0, total - ends[1]);
	seg_scan(buf, total, 7, NULL, NULL, &s);
	assert_int_equal(s.status, SEG_SCAN_TORN);
	assert_int_equal(s.end, ends[1]);
}

static void test_gseq_sequence(void **state)
{
	uint8_t buf[512];
	size_t ends[3], total = three_records(buf, ends);
	struct seg_scan s;
	(void)state;

	seg_scan(buf, total, 0, NULL, NULL, &s); /* 0: whatever comes first */
	assert_int_equal(s.status, SEG_SCAN_END);
	assert_int_equal(s.next_gseq, 10);
	seg_scan(buf, total, 6, NULL, NULL, &s); /* a hole before the first */
	assert_int_equal(s.status, SEG_SCAN_CORRUPT);
	assert_int_equal(s.end, 0);
	assert_string_equal(s.why, "gseq out of sequence");
	/* the second record moved out: 7 then 9 */
	memmove(buf + ends[0], buf + ends[1], total - ends[1]);
	seg_scan(buf, total - (ends[1] - ends[0]), 7, NULL, NULL, &s);
	assert_int_equal(s.status, SEG_SCAN_CORRUPT);
	assert_int_equal(s.end, ends[0]);
}

static int stop_at_second(void *arg, const struct seg_record *r)
{
	(void)arg;
	return r->gseq == 8 ? 42 : 0;
}

static void test_callback_stops(void **state)
{
	uint8_t buf[512];
	size_t ends[3], total = three_records(buf, ends);
	struct seg_scan s;
	(void)state;

	assert_int_equal(seg_scan(buf, total, 7, stop_at_second, NULL, &s), 42);
	assert_int_equal(s.records, 2);
	assert_int_equal(s.end, ends[1]);
}

/* A key record (the rooms checkpoint's idempotency keys) decodes; an unknown type does not. */
static void test_key_record(void **state)
{
	uint8_t buf[128];
	struct seg_record w = { .type = SEG_REC_KEY, .gseq = 42, .time_ms = 99, .key = "pay-1", .key_len = 5 };
	struct seg_record r;
	size_t used = 0, n = seg_encode(buf, &w);
	(void)state;

	assert_int_equal(n, seg_record_size(0, 5, 0));
	assert_int_equal(seg_decode(buf, n, &r, &used), SEG_DEC_OK);
	assert_int_equal(used, n);
	assert_int_equal(r.type, SEG_REC_KEY);
	assert_int_equal(r.gseq, 42);
	assert_int_equal(r.time_ms, 99);
	assert_int_equal(r.key_len, 5);
	assert_memory_equal(r.key, "pay-1", 5);
	w.type = 4;
	n = seg_encode(buf, &w);
	assert_int_equal(seg_decode(buf, n, &r, &used), SEG_DEC_BADLEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vectors), cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_every_cut),      cmocka_unit_test(test_bad_crc),
		cmocka_unit_test(test_bad_length),     cmocka_unit_test(test_gseq_sequence),
		cmocka_unit_test(test_callback_stops), cmocka_unit_test(test_key_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
