/*
 * test_log.c - log records: one `level=... msg="..." key=value` line each on
 * stderr (SPEC: Operations), and level filtering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "log.h"
#include "stderr_capture.h"

static int level_info(void **state)
{
	(void)state;
	rc_log_set_level(RC_LOG_INFO);
	return 0;
}

static void test_level_parse(void **state)
{
	static const char *const bad[] = { "", "INFO", "Info", "verbose", "info ", " info", "warning", "err" };
	enum rc_log_level level = RC_LOG_ERROR;

	(void)state;
	assert_int_equal(rc_log_level_parse("debug", &level), RC_OK);
	assert_int_equal(level, RC_LOG_DEBUG);
	assert_int_equal(rc_log_level_parse("info", &level), RC_OK);
	assert_int_equal(level, RC_LOG_INFO);
	assert_int_equal(rc_log_level_parse("warn", &level), RC_OK);
	assert_int_equal(level, RC_LOG_WARN);
	assert_int_equal(rc_log_level_parse("error", &level), RC_OK);
	assert_int_equal(level, RC_LOG_ERROR);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (rc_log_level_parse(bad[i], &level) != RC_EINVAL)
			fail_msg("'%s' accepted", bad[i]);
}

static void test_enabled(void **state)
{
	(void)state;
	assert_false(rc_log_enabled(RC_LOG_DEBUG));
	assert_true(rc_log_enabled(RC_LOG_INFO));
	assert_true(rc_log_enabled(RC_LOG_ERROR));
	rc_log_set_level(RC_LOG_ERROR);
	assert_false(rc_log_enabled(RC_LOG_WARN));
	assert_true(rc_log_enabled(RC_LOG_ERROR));
	rc_log_set_level(RC_LOG_DEBUG);
	assert_true(rc_log_enabled(RC_LOG_DEBUG));
}

static void test_record_format(void **state)
{
	char *text;

	(void)state;
	capture_start();
	rc_log_info("broker started", "bus=%s events=%d", "tcp://127.0.0.1:7410", 3);
	rc_log_warn("no fields", NULL);
	rc_log_error("failed", "err=\"%s\"", "timed out");
	text = capture_end(NULL);
	assert_string_equal(text, "level=info msg=\"broker started\" bus=tcp://127.0.0.1:7410 events=3\n"
				  "level=warn msg=\"no fields\"\n"
				  "level=error msg=\"failed\" err=\"timed out\"\n");
	free(text);
}

static void test_filtered(void **state)
{
	char *text;

	(void)state;
	capture_start();
	rc_log_debug("hidden", "k=%d", 1);
	rc_log_set_level(RC_LOG_ERROR);
	rc_log_info("hidden", NULL);
	rc_log_warn("hidden", NULL);
	rc_log_error("shown", NULL);
	rc_log_set_level(RC_LOG_DEBUG);
	rc_log_debug("shown too", NULL);
	text = capture_end(NULL);
	assert_string_equal(text, "level=error msg=\"shown\"\nlevel=debug msg=\"shown too\"\n");
	free(text);
}

/* Quotes and control bytes cannot break a record into two lines. */
static void test_one_line(void **state)
{
	char *text;

	(void)state;
	capture_start();
	rc_log_info("say \"hi\"\\ a\nb\rc\td", "peer=%s", "evil\nlevel=error msg=\"forged\"");
	text = capture_end(NULL);
	assert_string_equal(text, "level=info msg=\"say \\\"hi\\\"\\\\ a b c d\" peer=evil level=error "
				  "msg=\"forged\"\n");
	free(text);
}

/* --log-time: the record starts with the UTC time in milliseconds, then the same fields. */
static void test_time_prefix(void **state)
{
	char *text;
	time_t before = time(NULL), at;
	struct tm tm = { 0 };
	int ms = -1, used = 0;

	(void)state;
	rc_log_set_time(1);
	capture_start();
	rc_log_warn("stamped", "k=%d", 1);
	text = capture_end(NULL);
	rc_log_set_time(0);
	assert_true(strncmp(text, "time=", 5) == 0);
	assert_int_equal(sscanf(text + 5, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
				&tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used),
			 7);
	assert_true(used == 25 && ms >= 0 && ms <= 999);
	assert_string_equal(text + 5 + used, "level=warn msg=\"stamped\" k=1\n");
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	at = timegm(&tm);
	assert_true(at >= before - 1 && at <= time(NULL) + 1);
	free(text);
	/* off again: no prefix */
	capture_start();
	rc_log_warn("plain", NULL);
	text = capture_end(NULL);
	assert_string_equal(text, "level=warn msg=\"plain\"\n");
	free(text);
}

/* A record longer than the internal buffer is cut, still one full line. */
static void test_long_record(void **state)
{
	char *msg = malloc(5001), *val = malloc(5001), *text;
	size_t len;

	(void)state;
	assert_non_null(msg);
	assert_non_null(val);
	memset(msg, 'm', 5000);
	msg[5000] = '\0';
	memset(val, 'v', 5000);
	val[5000] = '\0';

	capture_start();
	rc_log_info(msg, "k=%s", "v");
	rc_log_info("short", "k=%s", val);
	rc_log_info(msg, "k=%s", val);
	text = capture_end(&len);
	for (int i = 0, start = 0; i < 3; i++) {
		char *nl = memchr(text + start, '\n', len - (size_t)start);

		assert_non_null(nl);
		assert_true(nl - (text + start) > 100);
		assert_true(strncmp(text + start, "level=info msg=\"", 16) == 0);
		start = (int)(nl - text) + 1;
		if (i == 2)
			assert_int_equal((size_t)start, len);
	}
	free(text);
	free(msg);
	free(val);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_level_parse, level_info),
		cmocka_unit_test_setup(test_enabled, level_info),
		cmocka_unit_test_setup(test_record_format, level_info),
		cmocka_unit_test_setup(test_filtered, level_info),
		cmocka_unit_test_setup(test_one_line, level_info),
		cmocka_unit_test_setup(test_long_record, level_info),
		cmocka_unit_test_setup(test_time_prefix, level_info),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
