/*
 * test_link_frame.c - the link's frame codec: the byte layout, frames split
 * anywhere, and that bad headers and oversize lengths are refused without
 * reading past the buffer (exact-size malloc'ed buffers: ASan sees overreads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "link_frame.h"

struct seen {
	int n;
	uint8_t kind[8];
	uint32_t id[8];
	char payload[8][32];
	int stop_at; /* return 1 at this frame (0: never) */
};

static int collect(void *arg, const struct rc_link_frame *f)
{
	struct seen *s = arg;

	assert_true(s->n < 8);
	s->kind[s->n] = f->kind;
	s->id[s->n] = f->id;
	assert_true(f->len < sizeof(s->payload[0]));
	memcpy(s->payload[s->n], f->payload, f->len);
	s->payload[s->n][f->len] = '\0';
	s->n++;
	return s->stop_at == s->n ? 1 : 0;
}

static size_t put_frame_n(uint8_t *out, uint8_t kind, uint32_t id, const char *payload, size_t len)
{

	rc_link_hdr_put(out, kind, id, (uint32_t)len);
	memcpy(out + RC_LINK_HDR_SIZE, payload, len);
	return RC_LINK_HDR_SIZE + len;
}

static size_t put_frame(uint8_t *out, uint8_t kind, uint32_t id, const char *payload)
{
	return put_frame_n(out, kind, id, payload, strlen(payload));
}

static void test_layout(void **state)
{
	uint8_t h[RC_LINK_HDR_SIZE];
	const uint8_t want[RC_LINK_HDR_SIZE] = { 0x05, 0x01, 0x00, 0x00, 'Q', 0, 0, 0, 0x2a, 0x00, 0x00, 0x80 };

	(void)state;
	rc_link_hdr_put(h, RC_LINK_KIND_REQUEST, 0x8000002au, 0x105);
	assert_memory_equal(h, want, sizeof(want));
}

static void test_frames_split_anywhere(void **state)
{
	uint8_t all[256];
	size_t len = 0;

	(void)state;
	len += put_frame(all + len, RC_LINK_KIND_HELLO, 0, RC_LINK_HELLO);
	len += put_frame_n(all + len, RC_LINK_KIND_BUS, 0, "i\0frame", 7);
	len += put_frame(all + len, RC_LINK_KIND_REPLY, 7, "{\"ok\":true}");
	len += put_frame(all + len, RC_LINK_KIND_REQUEST, 9, "");
	/* every split point: the first part, then the rest with what was kept */
	for (size_t cut = 0; cut <= len; cut++) {
		struct seen s = { 0 };
		uint8_t *a = malloc(cut ? cut : 1), *b;
		ssize_t took;
		size_t kept, blen;

		memcpy(a, all, cut);
		took = rc_link_parse(a, cut, 1024, collect, &s);
		assert_true(took >= 0 && (size_t)took <= cut);
		kept = cut - (size_t)took;
		blen = kept + (len - cut);
		b = malloc(blen ? blen : 1);
		memcpy(b, a + took, kept);
		memcpy(b + kept, all + cut, len - cut);
		assert_int_equal(rc_link_parse(b, blen, 1024, collect, &s), (ssize_t)blen);
		assert_int_equal(s.n, 4);
		assert_int_equal(s.kind[0], 'H');
		assert_string_equal(s.payload[0], RC_LINK_HELLO);
		assert_int_equal(s.kind[1], 'B');
		assert_memory_equal(s.payload[1], "i\0frame", 8);
		assert_int_equal(s.kind[2], 'R');
		assert_int_equal(s.id[2], 7);
		assert_string_equal(s.payload[2], "{\"ok\":true}");
		assert_int_equal(s.kind[3], 'Q');
		assert_int_equal(s.id[3], 9);
		assert_string_equal(s.payload[3], "");
		free(a);
		free(b);
	}
}

static void test_bad_headers(void **state)
{
	uint8_t *buf = malloc(RC_LINK_HDR_SIZE);
	struct seen s = { 0 };

	(void)state;
	rc_link_hdr_put(buf, 'X', 1, 0);
	assert_int_equal(rc_link_parse(buf, RC_LINK_HDR_SIZE, 1024, collect, &s), RC_EPROTO);
	rc_link_hdr_put(buf, RC_LINK_KIND_REQUEST, 1, 0);
	buf[6] = 1;
	assert_int_equal(rc_link_parse(buf, RC_LINK_HDR_SIZE, 1024, collect, &s), RC_EPROTO);
	/* a length past the limit is refused from the header alone, before any payload */
	rc_link_hdr_put(buf, RC_LINK_KIND_REQUEST, 1, 1025);
	assert_int_equal(rc_link_parse(buf, RC_LINK_HDR_SIZE, 1024, collect, &s), RC_ETOOBIG);
	rc_link_hdr_put(buf, RC_LINK_KIND_REQUEST, 1, UINT32_MAX);
	assert_int_equal(rc_link_parse(buf, RC_LINK_HDR_SIZE, UINT32_MAX - 1, collect, &s), RC_ETOOBIG);
	assert_int_equal(s.n, 0);
	free(buf);
}

static void test_garbage_never_overreads(void **state)
{
	(void)state;
	srand(7);
	for (int i = 0; i < 2000; i++) {
		size_t len = (size_t)(rand() % 64);
		uint8_t *buf = malloc(len ? len : 1);
		struct seen s = { 0 };
		ssize_t rv;

		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rand();
		if (len >= 8 && i % 2)
			buf[4] = "HQRB"[rand() % 4], buf[5] = buf[6] = buf[7] = 0, buf[1] = buf[2] = buf[3] = 0,
			buf[0] &= 15;
		s.stop_at = 8;
		rv = rc_link_parse(buf, len, 16, collect, &s);
		assert_true(rv == RC_EPROTO || rv == RC_ETOOBIG || rv == 1 || (rv >= 0 && (size_t)rv <= len));
		free(buf);
	}
}

static void test_callback_stops(void **state)
{
	uint8_t all[64];
	size_t len = 0;
	struct seen s = { .stop_at = 1 };

	(void)state;
	len += put_frame(all + len, RC_LINK_KIND_BUS, 0, "a");
	len += put_frame(all + len, RC_LINK_KIND_BUS, 0, "b");
	assert_int_equal(rc_link_parse(all, len, 1024, collect, &s), 1);
	assert_int_equal(s.n, 1);
}

static void test_url_split(void **state)
{
	char host[64], port[8];
	const char *bad[] = { "", "tcp://", "tcp://h", "tcp://h:", "tcp://h:x1", "tcp://h:65536", "tcp://h:99999",
			      "udp://h:1", "tcp://[::1]1", "tcp://[::1", "tcp://h:1234567", NULL };

	(void)state;
	assert_int_equal(rc_link_url_split("tcp://127.0.0.1:7412", host, sizeof(host), port, sizeof(port)), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_string_equal(port, "7412");
	assert_int_equal(rc_link_url_split("tcp://[::1]:0", host, sizeof(host), port, sizeof(port)), 0);
	assert_string_equal(host, "::1");
	assert_string_equal(port, "0");
	assert_int_equal(rc_link_url_split("tcp://:65535", host, sizeof(host), port, sizeof(port)), 0);
	assert_string_equal(host, "");
	assert_string_equal(port, "65535");
	assert_int_equal(rc_link_url_split("tcp://broker:7412", host, 4, port, sizeof(port)), RC_EINVAL);
	for (int i = 0; bad[i] != NULL; i++)
		assert_int_equal(rc_link_url_split(bad[i], host, sizeof(host), port, sizeof(port)), RC_EINVAL);
	assert_int_equal(rc_link_url_split(NULL, host, sizeof(host), port, sizeof(port)), RC_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_frames_split_anywhere),
		cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_garbage_never_overreads),
		cmocka_unit_test(test_callback_stops),
		cmocka_unit_test(test_url_split),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
