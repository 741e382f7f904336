/*
 * test_natsmap.c - the mapping of the history onto a JetStream stream
 * (broker/natsmap.c): room ids become subject tokens that no byte can
 * break ('.', '*', '>', space, non-ASCII), and come back the same; a
 * malformed subject is refused; the rseq header reads back exactly; the
 * epoch depends on the stream's name and creation time only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "natsmap.h"

static void roundtrip(const char *room, size_t len)
{
	char subj[NATSMAP_SUBJECT_MAX], back[256];
	size_t n = natsmap_subject(subj, "roomcast", room, len), blen = 0;
	bool global = true;

	assert_true(n > 0);
	assert_int_equal(n, strlen(subj));
	/* one token after the prefix: none of the room's bytes may split it or be a wildcard */
	assert_int_equal(strncmp(subj, "roomcast.r.", 11), 0);
	assert_null(strchr(subj + 11, '.'));
	assert_null(strchr(subj + 11, '*'));
	assert_null(strchr(subj + 11, '>'));
	assert_null(strchr(subj + 11, ' '));
	for (size_t i = 0; i < n; i++)
		assert_true((unsigned char)subj[i] > 0x20 && (unsigned char)subj[i] < 0x7f);
	assert_int_equal(natsmap_parse(subj, "roomcast", back, sizeof(back), &blen, &global), RC_OK);
	assert_false(global);
	assert_int_equal(blen, len);
	assert_memory_equal(back, room, len);
}

static void test_plain_room_kept(void **state)
{
	char subj[NATSMAP_SUBJECT_MAX];
	(void)state;

	assert_int_equal(natsmap_subject(subj, "roomcast", "room-1_A", 8), strlen("roomcast.r.room-1_A"));
	assert_string_equal(subj, "roomcast.r.room-1_A");
	roundtrip("room-1_A", 8);
}

static void test_breaking_bytes_encoded(void **state)
{
	char subj[NATSMAP_SUBJECT_MAX];
	(void)state;

	natsmap_subject(subj, "s", "a.b", 3);
	assert_string_equal(subj, "s.r.a%2eb");
	natsmap_subject(subj, "s", "team-42:lobby@x", 15);
	assert_string_equal(subj, "s.r.team-42%3alobby%40x");
	roundtrip("a.b", 3);
	roundtrip("*", 1);
	roundtrip(">", 1);
	roundtrip("a b", 3);
	roundtrip("a.*.>", 5);
	roundtrip("%2e", 3); /* a room that looks like an escape stays itself */
	roundtrip("caf\xc3\xa9", 5);
	roundtrip("\x01\x7f\xff", 3);
}

static void test_longest_room(void **state)
{
	char room[128], subj[NATSMAP_SUBJECT_MAX];
	(void)state;

	memset(room, '.', sizeof(room));
	assert_true(natsmap_subject(subj, "roomcast", room, sizeof(room)) > 0);
	roundtrip(room, sizeof(room));
	assert_int_equal(natsmap_subject(subj, "roomcast", room, 129), 0);
}

static void test_global_subject(void **state)
{
	char subj[NATSMAP_SUBJECT_MAX], room[8];
	size_t len = 99;
	bool global = false;
	(void)state;

	natsmap_subject(subj, "roomcast", NULL, 0);
	assert_string_equal(subj, "roomcast.g");
	assert_int_equal(natsmap_parse(subj, "roomcast", room, sizeof(room), &len, &global), RC_OK);
	assert_true(global);
	natsmap_filter(subj, "roomcast");
	assert_string_equal(subj, "roomcast.>");
}

static void test_malformed_subjects_refused(void **state)
{
	static const char *bad[] = {
		"other.r.a",	   /* another stream */
		"roomcast.r.",	   /* empty room */
		"roomcast.r.a.b",  /* two tokens */
		"roomcast.r.a%2",  /* short escape */
		"roomcast.r.a%zz", /* not hex */
		"roomcast.r.a%2E", /* upper case: not what the encoder writes */
		"roomcast.r.a%61", /* 'a' escaped: not what the encoder writes */
		"roomcast.r.a:b",  /* a byte that should have been escaped */
		"roomcast.x.a",	   /* unknown kind */
		"roomcast.g.x",	   /* global with more */
		"roomcast",	   /* the stream alone */
		"roomcastx.r.a",   /* a longer stream name */
	};
	char room[256];
	size_t len;
	bool global;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(natsmap_parse(bad[i], "roomcast", room, sizeof(room), &len, &global), RC_EINVAL);
	assert_int_equal(natsmap_parse("roomcast.r.abcd", "roomcast", room, 3, &len, &global), RC_ETOOBIG);
}

static void test_stream_names(void **state)
{
	char long_name[NATSMAP_STREAM_MAX + 2];
	(void)state;

	assert_true(natsmap_stream_valid("roomcast"));
	assert_true(natsmap_stream_valid("RC_prod-2"));
	assert_false(natsmap_stream_valid(""));
	assert_false(natsmap_stream_valid("a.b"));
	assert_false(natsmap_stream_valid("a*"));
	assert_false(natsmap_stream_valid("a b"));
	assert_false(natsmap_stream_valid("a>"));
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(natsmap_stream_valid(long_name));
	long_name[NATSMAP_STREAM_MAX] = '\0';
	assert_true(natsmap_stream_valid(long_name));
}

static void test_rseq_header(void **state)
{
	char buf[21];
	uint64_t v = 0;
	(void)state;

	assert_int_equal(natsmap_rseq_format(buf, 1), 1);
	assert_string_equal(buf, "1");
	natsmap_rseq_format(buf, UINT64_MAX);
	assert_string_equal(buf, "18446744073709551615");
	assert_int_equal(natsmap_rseq_parse(buf, &v), RC_OK);
	assert_true(v == UINT64_MAX);
	assert_int_equal(natsmap_rseq_parse("42", &v), RC_OK);
	assert_int_equal(v, 42);
	assert_int_equal(natsmap_rseq_parse("0", &v), RC_EINVAL);
	assert_int_equal(natsmap_rseq_parse("", &v), RC_EINVAL);
	assert_int_equal(natsmap_rseq_parse("042", &v), RC_EINVAL);
	assert_int_equal(natsmap_rseq_parse("-1", &v), RC_EINVAL);
	assert_int_equal(natsmap_rseq_parse("4 ", &v), RC_EINVAL);
	assert_int_equal(natsmap_rseq_parse("18446744073709551616", &v), RC_EINVAL);
	assert_int_equal(natsmap_rseq_parse(NULL, &v), RC_EINVAL);
}

static void test_epoch_from_stream_identity(void **state)
{
	int64_t t = 1764265200123456789LL;
	uint64_t e = natsmap_epoch("roomcast", t);
	(void)state;

	assert_true(e != 0 && e <= UINT32_MAX);
	assert_true(natsmap_epoch("roomcast", t) == e);		/* the same stream: the same epoch */
	assert_true(natsmap_epoch("roomcast", t + 1) != e);	/* created again */
	assert_true(natsmap_epoch("roomcast2", t) != e);	/* another stream */
	for (int64_t i = 0; i < 10000; i++)
		assert_true(natsmap_epoch("s", i) != 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_room_kept),
		cmocka_unit_test(test_breaking_bytes_encoded),
		cmocka_unit_test(test_longest_room),
		cmocka_unit_test(test_global_subject),
		cmocka_unit_test(test_malformed_subjects_refused),
		cmocka_unit_test(test_stream_names),
		cmocka_unit_test(test_rseq_header),
		cmocka_unit_test(test_epoch_from_stream_identity),
	};
	return cmocka_run_group_tests_name("natsmap", tests, NULL, NULL);
}
