/*
 * test_sse.c - the bytes a subscriber sees, exactly as SPEC (Subscribe)
 * writes them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "id.h"
#include "sse.h"

/* Formats into a buffer of exactly rc_sse_event_size bytes (ASan checks it). */
static void assert_event_bytes(const char *id, const char *json, const char *want)
{
	size_t id_len = strlen(id), json_len = strlen(json);
	size_t size = rc_sse_event_size(id_len, json_len);
	char *buf = malloc(size);

	assert_non_null(buf);
	assert_int_equal(size, strlen(want));
	assert_int_equal(rc_sse_format_event(buf, id, id_len, json, json_len), size);
	assert_memory_equal(buf, want, size);
	free(buf);
}

static void test_event_bytes(void **state)
{
	(void)state;
	assert_event_bytes("6f1c2a9e-1042", "{\"type\":\"message.created\",\"room_id\":\"room-1\"}",
			   "id: 6f1c2a9e-1042\n"
			   "data: {\"type\":\"message.created\",\"room_id\":\"room-1\"}\n"
			   "\n");
	assert_event_bytes("1-1", "{}", "id: 1-1\ndata: {}\n\n");
	assert_event_bytes("6f1c2a9e-1042", "{\"type\":\"stream.reset\",\"reason\":\"history_unavailable\"}",
			   "id: 6f1c2a9e-1042\ndata: {\"type\":\"stream.reset\",\"reason\":\"history_unavailable\"}\n\n");
}

/* The longest id and a large payload: the size stays exact. */
static void test_event_size(void **state)
{
	char id[RC_ID_MAX];
	size_t id_len = rc_id_format(id, UINT64_MAX, UINT64_MAX);
	size_t json_len = 64 * 1024;
	char *json = malloc(json_len);
	char *buf;

	(void)state;
	assert_non_null(json);
	memset(json, 'x', json_len);
	assert_int_equal(rc_sse_event_size(0, 0), strlen("id: \ndata: \n\n"));
	assert_int_equal(rc_sse_event_size(id_len, json_len), strlen("id: ") + id_len + strlen("\ndata: ") + json_len + 2);
	buf = malloc(rc_sse_event_size(id_len, json_len));
	assert_non_null(buf);
	assert_int_equal(rc_sse_format_event(buf, id, id_len, json, json_len), rc_sse_event_size(id_len, json_len));
	assert_memory_equal(buf, "id: ffffffffffffffff-18446744073709551615\ndata: xxx", 50);
	assert_memory_equal(buf + rc_sse_event_size(id_len, json_len) - 3, "x\n\n", 3);
	free(buf);
	free(json);
}

/* Only id_len and json_len bytes are used; the inputs need no NUL. */
static void test_event_uses_lengths(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(rc_sse_format_event(buf, "1-2XX", 3, "{}YY", 2), rc_sse_event_size(3, 2));
	assert_memory_equal(buf, "id: 1-2\ndata: {}\n\n", rc_sse_event_size(3, 2));
}

static void test_preamble(void **state)
{
	static const char preamble[] = RC_SSE_PREAMBLE;

	(void)state;
	assert_int_equal(sizeof(preamble) - 1, 25);
	assert_memory_equal(preamble, ": connected\nretry: 3000\n\n", sizeof(preamble));
}

static void test_ping(void **state)
{
	static const char ping[] = RC_SSE_PING;

	(void)state;
	assert_int_equal(sizeof(ping) - 1, 8);
	assert_memory_equal(ping, ": ping\n\n", sizeof(ping));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_bytes),
		cmocka_unit_test(test_event_size),
		cmocka_unit_test(test_event_uses_lengths),
		cmocka_unit_test(test_preamble),
		cmocka_unit_test(test_ping),
	};

	return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
