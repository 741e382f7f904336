/*
 * test_broker_stats.c - the broker's storage figures on a gateway's /metrics
 * (gateway/broker_stats.c): a stats answer of the broker read into figures,
 * rendered as Prometheus text with proper names, types and units (seconds),
 * the store kind as an info metric, the age of the answer, every sample
 * labelled with its broker's index in the --broker-api list; nothing of a
 * broker before it ever answered, and an answer that is not one changes
 * nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker_stats.h"
#include "buf.h"
#include "error.h"

#define SEC 1000000000ull /* ns */

/* A stats answer as broker/ops.c writes it with --data-dir. */
static const char file_answer[] =
	"{\"ok\":true,\"epoch\":\"6f1c2a9e\",\"last_id\":\"6f1c2a9e-1043\",\"gseq\":1043,\"rooms\":3,\"room_bytes\":"
	"480,"
	"\"history\":{\"events\":1000,\"bytes\":98765,\"first_gseq\":44},"
	"\"requests\":50,\"errors\":0,\"publishes\":40,\"events_published\":1043,\"replays\":2,\"replays_in_flight\":0,"
	"\"replays_busy\":0,\"bus\":{\"frames\":40,\"events\":1043,\"bytes\":120000,\"ticks\":7,\"send_errors\":0},"
	"\"idempotency\":{\"window_ms\":120000,\"keys\":0,\"bytes\":0,\"hits\":0,\"evicted\":0,\"expired\":0},"
	"\"ack_memory\":{\"entries\":7,\"bytes\":420,\"limit_bytes\":4194304,\"forgotten\":1,\"hits\":2,"
	"\"misses\":3},"
	"\"store\":{\"fsync\":\"always\",\"bytes\":123456,\"segments\":3,\"oldest_gseq\":17,\"fsyncs\":40,"
	"\"fsync_us_total\":12345,\"fsync_us_last\":250,\"fsync_us_max\":1500,\"fsync_us_avg\":308,"
	"\"write_errors\":2,\"fsync_errors\":1,\"recovery_ms\":12.5}}";

/* The same without a store: the broker keeps its history in memory only. */
static const char memory_answer[] =
	"{\"ok\":true,\"epoch\":\"0000beef\",\"last_id\":\"0000beef-0\",\"gseq\":0,\"rooms\":0,\"room_bytes\":0,"
	"\"history\":{\"events\":0,\"bytes\":0,\"first_gseq\":1},\"requests\":1,\"errors\":0,\"publishes\":0,"
	"\"events_published\":0,\"replays\":0,\"replays_in_flight\":0,\"replays_busy\":0,"
	"\"bus\":{\"frames\":0,\"events\":0,\"bytes\":0,\"ticks\":0,\"send_errors\":0},"
	"\"idempotency\":{\"window_ms\":120000,\"keys\":0,\"bytes\":0,\"hits\":0,\"evicted\":0,\"expired\":0}}";

/* The same with --store nats: the history is a JetStream stream (broker/nstore.c). */
static const char nats_answer[] =
	"{\"ok\":true,\"epoch\":\"5a5a0001\",\"last_id\":\"5a5a0001-77\",\"gseq\":77,\"rooms\":2,\"room_bytes\":10,"
	"\"history\":{\"events\":77,\"bytes\":7700,\"first_gseq\":1},\"requests\":9,\"errors\":0,\"publishes\":9,"
	"\"events_published\":77,\"replays\":0,\"replays_in_flight\":0,\"replays_busy\":0,"
	"\"bus\":{\"frames\":9,\"events\":77,\"bytes\":1,\"ticks\":0,\"send_errors\":0},"
	"\"idempotency\":{\"window_ms\":120000,\"keys\":0,\"bytes\":0,\"hits\":0,\"evicted\":0,\"expired\":0},"
	"\"nats\":{\"connected\":true,\"replicas\":3,\"disconnects\":2,\"reconnects\":2,\"published\":77,"
	"\"duplicates\":1,\"fence_retries\":5,\"room_reads\":3,\"failed\":4,\"unknown\":6,\"followed\":77,"
	"\"skipped\":0,\"follow_seq\":77,\"resends\":3}}";

static char *render_at(struct gw_broker_stats *bs, uint64_t now_ns)
{
	struct rc_buf out;
	char *text;

	rc_buf_init(&out);
	gw_broker_stats_render(bs, now_ns, &out);
	assert_int_equal(out.err, 0);
	text = calloc(1, out.len + 1);
	assert_non_null(text);
	if (out.len > 0)
		memcpy(text, out.data, out.len);
	rc_buf_fini(&out);
	return text;
}

static void assert_has(const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		fail_msg("missing from /metrics:\n%s\n--- in ---\n%s", want, text);
}

/*
 * Every sample's metric has a # HELP and a # TYPE line before it, a metric
 * is described once, counters end in _total, and every value is a number.
 */
static void assert_exposition(const char *text)
{
	char described[64][128];
	size_t nd = 0;
	const char *line = text;

	while (*line != '\0') {
		const char *end = strchr(line, '\n');
		char name[128], buf[512];
		size_t len, nl;

		assert_non_null(end); /* every line ends with a newline */
		len = (size_t)(end - line);
		assert_true(len < sizeof(buf));
		memcpy(buf, line, len);
		buf[len] = '\0';
		if (strncmp(buf, "# HELP ", 7) == 0) {
			assert_int_equal(sscanf(buf + 7, "%127s", name), 1);
			for (size_t i = 0; i < nd; i++)
				assert_string_not_equal(described[i], name);
			assert_true(nd < 64);
			strcpy(described[nd++], name);
		} else if (strncmp(buf, "# TYPE ", 7) == 0) {
			char type[32];
			assert_int_equal(sscanf(buf + 7, "%127s %31s", name, type), 2);
			assert_true(nd > 0);
			assert_string_equal(described[nd - 1], name);
			if (strcmp(type, "counter") == 0)
				assert_non_null(strstr(name, "_total"));
			else
				assert_string_equal(type, "gauge");
		} else {
			const char *sp = strrchr(buf, ' ');
			char *num_end;
			assert_non_null(sp);
			nl = strcspn(buf, "{ ");
			assert_true(nd > 0);
			assert_int_equal(strlen(described[nd - 1]), nl);
			assert_memory_equal(described[nd - 1], buf, nl);
			strtod(sp + 1, &num_end);
			assert_true(num_end != sp + 1 && *num_end == '\0');
		}
		line = end + 1;
	}
}

static void test_nothing_before_the_broker_answered(void **state)
{
	struct gw_broker_stats *bs;
	char *text;

	(void)state;
	assert_int_equal(gw_broker_stats_new(&bs), RC_OK);
	text = render_at(bs, 100 * SEC);
	assert_string_equal(text, "");
	free(text);
	gw_broker_stats_free(bs);
	gw_broker_stats_render(NULL, 0, NULL); /* no relay (--broker-stats-ms 0): nothing */
}

static void test_file_store_figures(void **state)
{
	struct gw_broker_stats *bs;
	struct gw_broker_figures f;
	char *text;

	(void)state;
	assert_int_equal(gw_broker_figures_parse(file_answer, sizeof(file_answer) - 1, &f), RC_OK);
	assert_int_equal(gw_broker_stats_new(&bs), RC_OK);
	gw_broker_stats_put(bs, 0, &f, 10 * SEC);
	text = render_at(bs, 10 * SEC + SEC / 4);
	assert_exposition(text);
	assert_has(text, "# TYPE roomcast_broker_stats_age_seconds "
			 "gauge\nroomcast_broker_stats_age_seconds{broker=\"0\"} 0.250\n");
	assert_has(text,
		   "\nroomcast_broker_store_info{broker=\"0\",store=\"file\",fsync=\"always\",epoch=\"6f1c2a9e\"} 1\n");
	assert_has(text, "# TYPE roomcast_broker_last_gseq gauge\nroomcast_broker_last_gseq{broker=\"0\"} 1043\n");
	assert_has(text,
		   "# TYPE roomcast_broker_history_events gauge\nroomcast_broker_history_events{broker=\"0\"} 1000\n");
	assert_has(text,
		   "# TYPE roomcast_broker_history_bytes gauge\nroomcast_broker_history_bytes{broker=\"0\"} 98765\n");
	assert_has(text,
		   "# TYPE roomcast_broker_store_bytes gauge\nroomcast_broker_store_bytes{broker=\"0\"} 123456\n");
	assert_has(text,
		   "# TYPE roomcast_broker_store_segments gauge\nroomcast_broker_store_segments{broker=\"0\"} 3\n");
	assert_has(
		text,
		"# TYPE roomcast_broker_store_oldest_gseq gauge\nroomcast_broker_store_oldest_gseq{broker=\"0\"} 17\n");
	assert_has(text, "# TYPE roomcast_broker_store_fsyncs_total "
			 "counter\nroomcast_broker_store_fsyncs_total{broker=\"0\"} 40\n");
	assert_has(text, "# TYPE roomcast_broker_store_fsync_seconds_total counter\n"
			 "roomcast_broker_store_fsync_seconds_total{broker=\"0\"} 0.012345\n");
	assert_has(text, "# TYPE roomcast_broker_store_fsync_max_seconds gauge\n"
			 "roomcast_broker_store_fsync_max_seconds{broker=\"0\"} 0.001500\n");
	assert_has(text, "# TYPE roomcast_broker_store_fsync_last_seconds gauge\n"
			 "roomcast_broker_store_fsync_last_seconds{broker=\"0\"} 0.000250\n");
	assert_has(text, "# TYPE roomcast_broker_store_write_errors_total counter\n"
			 "roomcast_broker_store_write_errors_total{broker=\"0\"} 2\n");
	assert_has(text, "# TYPE roomcast_broker_store_fsync_errors_total counter\n"
			 "roomcast_broker_store_fsync_errors_total{broker=\"0\"} 1\n");
	assert_has(text, "# TYPE roomcast_broker_store_recovery_seconds gauge\n"
			 "roomcast_broker_store_recovery_seconds{broker=\"0\"} 0.0125\n");
	assert_has(text, "# TYPE roomcast_broker_ack_memory_entries "
			 "gauge\nroomcast_broker_ack_memory_entries{broker=\"0\"} 7\n");
	assert_has(
		text,
		"# TYPE roomcast_broker_ack_memory_bytes gauge\nroomcast_broker_ack_memory_bytes{broker=\"0\"} 420\n");
	assert_has(text, "\nroomcast_broker_ack_memory_limit_bytes{broker=\"0\"} 4194304\n");
	assert_has(text, "# TYPE roomcast_broker_ack_memory_forgotten_total counter\n"
			 "roomcast_broker_ack_memory_forgotten_total{broker=\"0\"} 1\n");
	assert_has(text, "\nroomcast_broker_ack_memory_hits_total{broker=\"0\"} 2\n");
	assert_has(text, "\nroomcast_broker_ack_memory_misses_total{broker=\"0\"} 3\n");
	free(text);

	/* the answer gets older while no new one comes */
	text = render_at(bs, 75 * SEC);
	assert_has(text, "\nroomcast_broker_stats_age_seconds{broker=\"0\"} 65.000\n");
	free(text);
	gw_broker_stats_free(bs);
}

static void test_memory_store_has_no_storage_figures(void **state)
{
	struct gw_broker_stats *bs;
	struct gw_broker_figures f;
	char *text;

	(void)state;
	assert_int_equal(gw_broker_figures_parse(memory_answer, sizeof(memory_answer) - 1, &f), RC_OK);
	assert_int_equal(gw_broker_stats_new(&bs), RC_OK);
	gw_broker_stats_put(bs, 0, &f, SEC);
	text = render_at(bs, SEC);
	assert_exposition(text);
	assert_has(text, "\nroomcast_broker_stats_age_seconds{broker=\"0\"} 0.000\n");
	assert_has(text, "\nroomcast_broker_store_info{broker=\"0\",store=\"memory\",epoch=\"0000beef\"} 1\n");
	assert_has(text, "\nroomcast_broker_history_events{broker=\"0\"} 0\n");
	assert_null(strstr(text, "roomcast_broker_store_bytes"));
	assert_null(strstr(text, "roomcast_broker_store_fsync"));
	assert_null(strstr(text, "roomcast_broker_store_recovery_seconds"));
	assert_null(strstr(text, "roomcast_broker_ack_memory"));
	free(text);

	/* the broker restarted with --data-dir: the next answer replaces the whole picture */
	assert_int_equal(gw_broker_figures_parse(file_answer, sizeof(file_answer) - 1, &f), RC_OK);
	gw_broker_stats_put(bs, 0, &f, 2 * SEC);
	text = render_at(bs, 2 * SEC);
	assert_null(strstr(text, "store=\"memory\""));
	assert_has(text, "\nroomcast_broker_store_bytes{broker=\"0\"} 123456\n");
	free(text);
	gw_broker_stats_free(bs);
}

static void test_nats_store_figures(void **state)
{
	struct gw_broker_stats *bs;
	struct gw_broker_figures f;
	char *text;

	(void)state;
	assert_int_equal(gw_broker_figures_parse(nats_answer, sizeof(nats_answer) - 1, &f), RC_OK);
	assert_int_equal(gw_broker_stats_new(&bs), RC_OK);
	gw_broker_stats_put(bs, 0, &f, SEC);
	text = render_at(bs, SEC);
	assert_exposition(text);
	assert_has(text,
		   "\nroomcast_broker_store_info{broker=\"0\",store=\"nats\",replicas=\"3\",epoch=\"5a5a0001\"} 1\n");
	assert_has(text, "\nroomcast_broker_nats_connected{broker=\"0\"} 1\n");
	assert_has(text, "\nroomcast_broker_nats_disconnects_total{broker=\"0\"} 2\n");
	assert_has(text, "\nroomcast_broker_nats_reconnects_total{broker=\"0\"} 2\n");
	assert_has(text, "\nroomcast_broker_nats_fence_retries_total{broker=\"0\"} 5\n");
	assert_has(text, "\nroomcast_broker_nats_publish_failed_total{broker=\"0\"} 4\n");
	assert_has(text, "\nroomcast_broker_nats_publish_unknown_total{broker=\"0\"} 6\n");
	assert_has(text, "\nroomcast_broker_nats_followed_gseq{broker=\"0\"} 77\n");
	assert_has(text, "\nroomcast_broker_nats_resends_total{broker=\"0\"} 3\n");
	assert_null(strstr(text, "store=\"memory\""));
	assert_null(strstr(text, "roomcast_broker_store_bytes"));
	free(text);
	gw_broker_stats_free(bs);
}

/*
 * Several --broker-api addresses: each broker's answer under its index, in
 * one family per metric (described once, a sample per broker that has the
 * figure), each with its own age; an index that never answered shows nothing.
 */
static void test_each_broker_under_its_index(void **state)
{
	struct gw_broker_stats *bs;
	struct gw_broker_figures file, nats;
	const char *a, *b;
	char *text;

	(void)state;
	assert_int_equal(gw_broker_figures_parse(file_answer, sizeof(file_answer) - 1, &file), RC_OK);
	assert_int_equal(gw_broker_figures_parse(nats_answer, sizeof(nats_answer) - 1, &nats), RC_OK);
	assert_int_equal(gw_broker_stats_new(&bs), RC_OK);
	gw_broker_stats_put(bs, 2, &nats, 5 * SEC);
	gw_broker_stats_put(bs, 0, &file, 9 * SEC);
	gw_broker_stats_put(bs, GW_BROKER_STATS_MAX, &nats, 9 * SEC); /* not an index of the list: ignored */
	text = render_at(bs, 10 * SEC);
	assert_exposition(text);
	assert_has(text, "# TYPE roomcast_broker_stats_age_seconds gauge\n"
			 "roomcast_broker_stats_age_seconds{broker=\"0\"} 1.000\n"
			 "roomcast_broker_stats_age_seconds{broker=\"2\"} 5.000\n");
	assert_has(text,
		   "# TYPE roomcast_broker_store_info gauge\n"
		   "roomcast_broker_store_info{broker=\"0\",store=\"file\",fsync=\"always\",epoch=\"6f1c2a9e\"} 1\n"
		   "roomcast_broker_store_info{broker=\"2\",store=\"nats\",replicas=\"3\",epoch=\"5a5a0001\"} 1\n");
	assert_has(text, "# TYPE roomcast_broker_last_gseq gauge\n"
			 "roomcast_broker_last_gseq{broker=\"0\"} 1043\n"
			 "roomcast_broker_last_gseq{broker=\"2\"} 77\n");
	/* a figure one broker has and the other not: that broker's sample only */
	assert_has(text, "# TYPE roomcast_broker_nats_followed_gseq gauge\n"
			 "roomcast_broker_nats_followed_gseq{broker=\"2\"} 77\n#");
	assert_has(text,
		   "# TYPE roomcast_broker_store_bytes gauge\nroomcast_broker_store_bytes{broker=\"0\"} 123456\n#");
	assert_has(text, "# TYPE roomcast_broker_ack_memory_entries gauge\n"
			 "roomcast_broker_ack_memory_entries{broker=\"0\"} 7\n#");
	assert_null(strstr(text, "broker=\"1\""));
	assert_null(strstr(text, "broker=\"8\""));
	free(text);

	/* broker 2 answers again, broker 0 does not: only broker 0's age grows */
	gw_broker_stats_put(bs, 2, &nats, 20 * SEC);
	text = render_at(bs, 20 * SEC);
	a = strstr(text, "roomcast_broker_stats_age_seconds{broker=\"0\"} 11.000\n");
	b = strstr(text, "roomcast_broker_stats_age_seconds{broker=\"2\"} 0.000\n");
	assert_non_null(a);
	assert_non_null(b);
	free(text);
	gw_broker_stats_free(bs);
}

static void test_what_is_not_an_answer_is_refused(void **state)
{
	struct gw_broker_figures f;
	const char *bad[] = {
		"",
		"not json",
		"{\"ok\":false,\"error\":{\"code\":\"shutting_down\",\"message\":\"stopping\"}}",
		"[1,2]",
		"{\"ok\":true}",
		"{\"ok\":true,\"epoch\":\"6f1c2a9e\",\"gseq\":1}", /* no history */
		"{\"ok\":true,\"epoch\":\"6f1c\\\"}\",\"gseq\":1,\"history\":{\"events\":1,\"bytes\":1}}", /* a quote */
		"{\"ok\":true,\"epoch\":\"6f1c2a9e\",\"gseq\":-1,\"history\":{\"events\":1,\"bytes\":1}}",
		"{\"ok\":true,\"epoch\":\"6f1c2a9e\",\"gseq\":1,\"history\":{\"events\":1,\"bytes\":1},"
		"\"store\":{\"fsync\":\"always\"}}", /* a store without its figures */
		"{\"ok\":true,\"epoch\":\"6f1c2a9e\",\"gseq\":1,\"history\":{\"events\":1,\"bytes\":1},"
		"\"store\":{\"fsync\":\"al\\nways\",\"bytes\":1,\"segments\":1,\"oldest_gseq\":1,\"fsyncs\":0,"
		"\"fsync_us_total\":0,\"fsync_us_last\":0,\"fsync_us_max\":0,\"write_errors\":0,\"fsync_errors\":0,"
		"\"recovery_ms\":1}}", /* not a label value */
		"{\"ok\":true,\"epoch\":\"6f1c2a9e\",\"gseq\":1,\"history\":{\"events\":1,\"bytes\":1},"
		"\"nats\":{\"connected\":true}}", /* nats without its figures */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&f, 0, sizeof(f));
		if (gw_broker_figures_parse(bad[i], strlen(bad[i]), &f) != RC_EPROTO)
			fail_msg("accepted: %s", bad[i]);
	}
	/* the answer's length counts, not a NUL */
	assert_int_equal(gw_broker_figures_parse(file_answer, sizeof(file_answer) - 2, &f), RC_EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_before_the_broker_answered),
		cmocka_unit_test(test_file_store_figures),
		cmocka_unit_test(test_memory_store_has_no_storage_figures),
		cmocka_unit_test(test_nats_store_figures),
		cmocka_unit_test(test_each_broker_under_its_index),
		cmocka_unit_test(test_what_is_not_an_answer_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
