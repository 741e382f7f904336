/*
 * test_bench.c - unit tests for the pure modules of roomcast-bench:
 * histogram, SSE line parser, field scanner, target and template checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>

#include "histogram.h"
#include "scan.h"
#include "sse_parser.h"
#include "target.h"

/* --- histogram --- */

static void test_hist_exact_small_values(void **state)
{
	struct rb_hist h;

	(void)state;
	rb_hist_init(&h);
	for (uint64_t v = 1; v <= 100; v++)
		rb_hist_record(&h, v);
	assert_int_equal(h.count, 100);
	assert_int_equal(h.min, 1);
	assert_int_equal(h.max, 100);
	assert_int_equal(rb_hist_percentile(&h, 50.0), 50);
	assert_int_equal(rb_hist_percentile(&h, 99.0), 99);
	assert_int_equal(rb_hist_percentile(&h, 100.0), 100);
}

static void test_hist_relative_error(void **state)
{
	struct rb_hist h;

	(void)state;
	/* Powers of 1.5 from 1 µs to past an hour, in ns. */
	for (double v = 1000.0; v < 4e12; v *= 1.5) {
		uint64_t x = (uint64_t)v, got;

		rb_hist_init(&h);
		rb_hist_record(&h, x / 2);
		rb_hist_record(&h, x);
		rb_hist_record(&h, x * 2);
		got = rb_hist_percentile(&h, 50.0);
		assert_true(got >= x);
		assert_true((double)(got - x) <= (double)x / 128.0);
	}
}

static void test_hist_merge(void **state)
{
	struct rb_hist a, b;

	(void)state;
	rb_hist_init(&a);
	rb_hist_init(&b);
	for (uint64_t v = 0; v < 1000; v++)
		rb_hist_record(v < 500 ? &a : &b, v * 1000);
	rb_hist_merge(&a, &b);
	assert_int_equal(a.count, 1000);
	assert_int_equal(a.min, 0);
	assert_int_equal(a.max, 999000);
	assert_in_range(rb_hist_percentile(&a, 50.0), 499000, 499000 + 499000 / 128);
	assert_int_equal(rb_hist_percentile(&a, 100.0), 999000);
}

static void test_hist_empty_and_huge(void **state)
{
	struct rb_hist h;

	(void)state;
	rb_hist_init(&h);
	assert_int_equal(rb_hist_percentile(&h, 99.0), 0);
	rb_hist_record(&h, UINT64_MAX);
	assert_int_equal(rb_hist_percentile(&h, 50.0), UINT64_MAX);
}

/* --- SSE parser --- */

struct sse_log {
	char text[1024];
	size_t len;
};

static void log_field(void *ctx, enum rb_sse_field f, const char *v, size_t len)
{
	static const char *const names[] = { "data", "id", "event", "retry", "comment", "other" };
	struct sse_log *l = ctx;

	l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s=%.*s|",
				   names[f], (int)len, v);
}

static void log_dispatch(void *ctx)
{
	struct sse_log *l = ctx;

	l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "#|");
}

static const struct rb_sse_handler log_handler = { log_field, log_dispatch };

static const char sse_stream[] = ": hi\n\nid: 7-1\r\ndata: {\"a\":1}\r\n\r\n:ping\n\n"
				 "event: x\ndata:two\ndata: lines\nretry: 3000\nfoo\n\n";
static const char sse_expect[] = "comment=hi|#|id=7-1|data={\"a\":1}|#|comment=ping|#|"
				 "event=x|data=two|data=lines|retry=3000|other=|#|";

static void test_sse_whole(void **state)
{
	char line[64];
	struct rb_sse_parser p;
	struct sse_log l = { .len = 0 };

	(void)state;
	rb_sse_parser_init(&p, line, sizeof(line));
	rb_sse_parser_feed(&p, sse_stream, strlen(sse_stream), &log_handler, &l);
	assert_string_equal(l.text, sse_expect);
}

static void test_sse_byte_by_byte(void **state)
{
	char line[64];
	struct rb_sse_parser p;
	struct sse_log l = { .len = 0 };

	(void)state;
	rb_sse_parser_init(&p, line, sizeof(line));
	for (size_t i = 0; i < strlen(sse_stream); i++)
		rb_sse_parser_feed(&p, sse_stream + i, 1, &log_handler, &l);
	assert_string_equal(l.text, sse_expect);
	assert_int_equal(p.oversize_lines, 0);
}

static void test_sse_oversize_split_line(void **state)
{
	char line[8];
	struct rb_sse_parser p;
	struct sse_log l = { .len = 0 };

	(void)state;
	rb_sse_parser_init(&p, line, sizeof(line));
	rb_sse_parser_feed(&p, "data: abc", 9, &log_handler, &l);
	rb_sse_parser_feed(&p, "defghij\n\n", 9, &log_handler, &l);
	assert_string_equal(l.text, "data=ab|#|"); /* the first 8 bytes */
	assert_int_equal(p.oversize_lines, 1);
}

/* --- scanner --- */

static void test_scan_fields(void **state)
{
	static const char ev[] = "{\"type\":\"bench.tick\",\"room_id\":\"bench-3\",\"room\":\"bench-3\","
				 "\"seq\":17,\"ts\":1700000000123456789,\"pad\":\"xx\"}";
	struct rb_fields f;

	(void)state;
	rb_fields_clear(&f);
	rb_scan_fields(ev, strlen(ev), "bench-", 6, &f);
	assert_true(f.has_ts && f.has_seq && f.has_room);
	assert_false(f.is_reset);
	assert_int_equal(f.seq, 17);
	assert_int_equal(f.ts, 1700000000123456789LL);
	assert_int_equal(f.room, 3);
}

static void test_scan_spaced_and_foreign(void **state)
{
	static const char ev[] = "{ \"room\" : \"other-3\", \"seq\" : 5 , \"ts\": -4 }";
	struct rb_fields f;

	(void)state;
	rb_fields_clear(&f);
	rb_scan_fields(ev, strlen(ev), "bench-", 6, &f);
	assert_true(f.has_seq);
	assert_int_equal(f.seq, 5);
	assert_false(f.has_ts);   /* negative: not a bench stamp */
	assert_false(f.has_room); /* wrong prefix */
}

static void test_scan_reset_and_room_id_only(void **state)
{
	static const char ev[] = "{\"type\":\"stream.reset\",\"room_id\":\"bench-1\","
				 "\"reason\":\"history_unavailable\"}";
	struct rb_fields f;

	(void)state;
	rb_fields_clear(&f);
	rb_scan_fields(ev, strlen(ev), "bench-", 6, &f);
	assert_true(f.is_reset);
	assert_false(f.has_room); /* "room_id" is not "room" */
	assert_false(f.has_seq);
}

static void test_scan_truncated(void **state)
{
	static const char ev[] = "{\"seq\":12";
	struct rb_fields f;

	(void)state;
	rb_fields_clear(&f);
	rb_scan_fields(ev, 7, "bench-", 6, &f); /* cut right after the colon */
	assert_false(f.has_seq);
	rb_scan_fields(ev, strlen(ev), "bench-", 6, &f);
	assert_true(f.has_seq);
	assert_int_equal(f.seq, 12);
}

/* --- target and templates --- */

static void test_target_loopback_only(void **state)
{
	struct sockaddr_in a;
	char buf[32];

	(void)state;
	assert_int_equal(rb_target_parse("127.0.0.1:8080", &a), 0);
	assert_int_equal(ntohs(a.sin_port), 8080);
	assert_int_equal(rb_target_parse("localhost:81", &a), 0);
	rb_target_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.1:81");
	assert_int_equal(rb_target_parse("127.9.8.7", &a), 0);
	assert_int_equal(ntohs(a.sin_port), 8080);
	assert_int_equal(rb_target_parse("10.0.0.1:80", &a), -EPERM);
	assert_int_equal(rb_target_parse("192.168.1.1:80", &a), -EPERM);
	assert_int_equal(rb_target_parse("example.com:80", &a), -EINVAL);
	assert_int_equal(rb_target_parse("127.0.0.1:0", &a), -EINVAL);
	assert_int_equal(rb_target_parse("127.0.0.1:99999", &a), -EINVAL);
}

static void test_source_addresses(void **state)
{
	struct sockaddr_in a;

	(void)state;
	rb_source_addr(0, 4, &a);
	assert_int_equal(ntohl(a.sin_addr.s_addr), 0x7f000001);
	rb_source_addr(5, 4, &a);
	assert_int_equal(ntohl(a.sin_addr.s_addr), 0x7f000002);
}

static void test_templates(void **state)
{
	char out[64];
	bool has_room;

	(void)state;
	assert_int_equal(rb_template_check("/api/v1/events?room_id=%s", &has_room), 0);
	assert_true(has_room);
	assert_int_equal(rb_template_check("/api/v1/events", &has_room), 0);
	assert_false(has_room);
	assert_int_equal(rb_template_check("/a/%s/%s", &has_room), -EINVAL);
	assert_int_equal(rb_template_check("/a/%d", &has_room), -EINVAL);
	assert_int_equal(rb_template_check("/a b", &has_room), -EINVAL);
	assert_int_equal(rb_template_check("a", &has_room), -EINVAL);
	assert_int_equal(rb_template_expand("/sub/%s?x=100%%", "bench-2", out, sizeof(out)), 19);
	assert_string_equal(out, "/sub/bench-2?x=100%");
	assert_int_equal(rb_template_expand("/sub/%s", "bench-2", out, 8), -ENOSPC);
	assert_int_equal(rb_room_prefix_check("bench-"), 0);
	assert_int_equal(rb_room_prefix_check("a/b"), -EINVAL);
	assert_int_equal(rb_room_name("r", 42, out, sizeof(out)), 3);
	assert_string_equal(out, "r42");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_exact_small_values),
		cmocka_unit_test(test_hist_relative_error),
		cmocka_unit_test(test_hist_merge),
		cmocka_unit_test(test_hist_empty_and_huge),
		cmocka_unit_test(test_sse_whole),
		cmocka_unit_test(test_sse_byte_by_byte),
		cmocka_unit_test(test_sse_oversize_split_line),
		cmocka_unit_test(test_scan_fields),
		cmocka_unit_test(test_scan_spaced_and_foreign),
		cmocka_unit_test(test_scan_reset_and_room_id_only),
		cmocka_unit_test(test_scan_truncated),
		cmocka_unit_test(test_target_loopback_only),
		cmocka_unit_test(test_source_addresses),
		cmocka_unit_test(test_templates),
	};

	return cmocka_run_group_tests_name("bench", tests, NULL, NULL);
}
