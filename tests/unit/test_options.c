/*
 * test_options.c - long flags and ROOMCAST_* variables from one table
 * (SPEC: every option is a flag and a variable; flags win).
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

#include "error.h"
#include "log.h"
#include "options.h"

/* What a process would configure; reset to the defaults before each test. */
struct cfg {
	const char *listen;
	int64_t heartbeat_ms;
	int64_t max_client_buffer;
	bool no_firehose;
	bool keep;
	enum rc_log_level log_level;
};

static struct cfg cfg;

static const struct rc_opt table[] = {
	{ "listen", RC_OPT_STR, &cfg.listen, 0, 0, "HTTP address" },
	{ "heartbeat-ms", RC_OPT_INT, &cfg.heartbeat_ms, 0, 3600000, "heartbeat interval" },
	{ "max-client-buffer", RC_OPT_SIZE, &cfg.max_client_buffer, 1024, 1 << 30, "client buffer" },
	{ "no-firehose", RC_OPT_BOOL, &cfg.no_firehose, 0, 0, "refuse streams without room_id" },
	{ "keep", RC_OPT_BOOL, &cfg.keep, 0, 0, "a flag that defaults to true" },
	{ "log-level", RC_OPT_LOG, &cfg.log_level, 0, 0, "log level" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

static const char *const env_names[] = {
	"ROOMCAST_LISTEN",      "ROOMCAST_HEARTBEAT_MS", "ROOMCAST_MAX_CLIENT_BUFFER",
	"ROOMCAST_NO_FIREHOSE", "ROOMCAST_KEEP",         "ROOMCAST_LOG_LEVEL",
};

static int reset(void **state)
{
	(void)state;
	cfg.listen = "127.0.0.1:8080";
	cfg.heartbeat_ms = 15000;
	cfg.max_client_buffer = 1024 * 1024;
	cfg.no_firehose = false;
	cfg.keep = true;
	cfg.log_level = RC_LOG_INFO;
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		unsetenv(env_names[i]);
	return 0;
}

#define ARGC(argv) ((int)(sizeof(argv) / sizeof((argv)[0])))

/* Parses argv and expects success; the result is freed by the caller. */
static void parse_ok(int argc, char **argv, struct rc_opts_result *res)
{
	int rv = rc_opts_parse(table, argc, argv, res);

	if (rv != RC_OK)
		fail_msg("parse failed (%d): %s", rv, res->err);
}

/* Parses argv and expects RC_EINVAL with an err that contains each of needles. */
static void parse_fails(int argc, char **argv, const char *needle, const char *needle2)
{
	struct rc_opts_result res;
	int rv = rc_opts_parse(table, argc, argv, &res);

	if (rv != RC_EINVAL)
		fail_msg("'%s %s': got %d, want RC_EINVAL", argc > 1 ? argv[1] : "",
			 argc > 2 ? argv[2] : "", rv);
	if (strstr(res.err, needle) == NULL)
		fail_msg("err '%s' does not name '%s'", res.err, needle);
	if (needle2 != NULL && strstr(res.err, needle2) == NULL)
		fail_msg("err '%s' does not mention '%s'", res.err, needle2);
	rc_opts_result_fini(&res);
}

static void test_defaults(void **state)
{
	char *argv[] = { "prog" };
	struct rc_opts_result res;

	(void)state;
	parse_ok(ARGC(argv), argv, &res);
	assert_string_equal(cfg.listen, "127.0.0.1:8080");
	assert_true(cfg.heartbeat_ms == 15000);
	assert_true(cfg.max_client_buffer == 1024 * 1024);
	assert_false(cfg.no_firehose);
	assert_true(cfg.keep);
	assert_int_equal(cfg.log_level, RC_LOG_INFO);
	assert_int_equal(res.npos, 0);
	assert_int_equal(res.help, 0);
	assert_string_equal(res.err, "");
	rc_opts_result_fini(&res);
}

static void test_flag_values(void **state)
{
	char *argv[] = { "prog", "--heartbeat-ms", "500", "--max-client-buffer=2048", "--listen",
			 "0.0.0.0:9000", "--log-level=debug" };
	struct rc_opts_result res;

	(void)state;
	parse_ok(ARGC(argv), argv, &res);
	assert_true(cfg.heartbeat_ms == 500);
	assert_true(cfg.max_client_buffer == 2048);
	assert_string_equal(cfg.listen, "0.0.0.0:9000");
	assert_int_equal(cfg.log_level, RC_LOG_DEBUG);
	assert_int_equal(res.npos, 0);
	rc_opts_result_fini(&res);
}

/* "=" splits at the first '=' only; later values win. */
static void test_flag_value_forms(void **state)
{
	char *argv[] = { "prog", "--listen=a=b", "--heartbeat-ms=0", "--heartbeat-ms", "3600000",
			 "--log-level", "error" };
	char *empty[] = { "prog", "--listen=" };
	struct rc_opts_result res;

	(void)state;
	parse_ok(ARGC(argv), argv, &res);
	assert_string_equal(cfg.listen, "a=b");
	assert_true(cfg.heartbeat_ms == 3600000);
	assert_int_equal(cfg.log_level, RC_LOG_ERROR);
	rc_opts_result_fini(&res);

	parse_ok(ARGC(empty), empty, &res);
	assert_string_equal(cfg.listen, "");
	rc_opts_result_fini(&res);
}

static void test_env(void **state)
{
	char *argv[] = { "prog" };
	struct rc_opts_result res;

	(void)state;
	setenv("ROOMCAST_HEARTBEAT_MS", "700", 1);
	setenv("ROOMCAST_MAX_CLIENT_BUFFER", "64k", 1);
	setenv("ROOMCAST_LISTEN", "[::1]:8081", 1);
	setenv("ROOMCAST_LOG_LEVEL", "warn", 1);
	parse_ok(ARGC(argv), argv, &res);
	assert_true(cfg.heartbeat_ms == 700);
	assert_true(cfg.max_client_buffer == 65536);
	assert_string_equal(cfg.listen, "[::1]:8081");
	assert_int_equal(cfg.log_level, RC_LOG_WARN);
	rc_opts_result_fini(&res);
}

static void test_flag_wins_over_env(void **state)
{
	char *argv[] = { "prog", "--heartbeat-ms=800", "--listen", "flag:1", "--log-level", "debug" };
	struct rc_opts_result res;

	(void)state;
	setenv("ROOMCAST_HEARTBEAT_MS", "700", 1);
	setenv("ROOMCAST_LISTEN", "env:1", 1);
	setenv("ROOMCAST_LOG_LEVEL", "error", 1);
	setenv("ROOMCAST_MAX_CLIENT_BUFFER", "4096", 1);
	parse_ok(ARGC(argv), argv, &res);
	assert_true(cfg.heartbeat_ms == 800);
	assert_string_equal(cfg.listen, "flag:1");
	assert_int_equal(cfg.log_level, RC_LOG_DEBUG);
	/* a variable without a flag still applies */
	assert_true(cfg.max_client_buffer == 4096);
	rc_opts_result_fini(&res);
}

static void test_env_errors(void **state)
{
	char *argv[] = { "prog" };

	(void)state;
	setenv("ROOMCAST_HEARTBEAT_MS", "soon", 1);
	parse_fails(ARGC(argv), argv, "ROOMCAST_HEARTBEAT_MS", "soon");
	setenv("ROOMCAST_HEARTBEAT_MS", "-5", 1);
	parse_fails(ARGC(argv), argv, "ROOMCAST_HEARTBEAT_MS", NULL);
	unsetenv("ROOMCAST_HEARTBEAT_MS");
	setenv("ROOMCAST_NO_FIREHOSE", "maybe", 1);
	parse_fails(ARGC(argv), argv, "ROOMCAST_NO_FIREHOSE", "maybe");
	unsetenv("ROOMCAST_NO_FIREHOSE");
	setenv("ROOMCAST_LOG_LEVEL", "loud", 1);
	parse_fails(ARGC(argv), argv, "ROOMCAST_LOG_LEVEL", "loud");
}

static void test_bool_flags(void **state)
{
	char *bare[] = { "prog", "--no-firehose", "sub" };
	char *off[] = { "prog", "--no-firehose=false", "--keep=off" };
	char *on[] = { "prog", "--no-firehose=yes", "--keep=1" };
	struct rc_opts_result res;

	(void)state;
	/* a bare bool flag takes no value: "sub" stays a positional */
	parse_ok(ARGC(bare), bare, &res);
	assert_true(cfg.no_firehose);
	assert_int_equal(res.npos, 1);
	assert_string_equal(res.pos[0], "sub");
	rc_opts_result_fini(&res);

	parse_ok(ARGC(off), off, &res);
	assert_false(cfg.no_firehose);
	assert_false(cfg.keep);
	rc_opts_result_fini(&res);

	parse_ok(ARGC(on), on, &res);
	assert_true(cfg.no_firehose);
	assert_true(cfg.keep);
	rc_opts_result_fini(&res);

	char *bad[] = { "prog", "--no-firehose=maybe" };
	parse_fails(ARGC(bad), bad, "--no-firehose", "maybe");
}

static void test_bool_env(void **state)
{
	static const char *const yes[] = { "1", "true", "yes", "on", "TRUE", "Yes", "ON" };
	static const char *const no[] = { "0", "false", "no", "off", "FALSE", "Off" };
	char *argv[] = { "prog" };
	char *flag[] = { "prog", "--no-firehose" };
	struct rc_opts_result res;

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		reset(NULL);
		setenv("ROOMCAST_NO_FIREHOSE", yes[i], 1);
		parse_ok(ARGC(argv), argv, &res);
		if (!cfg.no_firehose)
			fail_msg("ROOMCAST_NO_FIREHOSE=%s is not true", yes[i]);
		rc_opts_result_fini(&res);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		reset(NULL);
		setenv("ROOMCAST_KEEP", no[i], 1);
		parse_ok(ARGC(argv), argv, &res);
		if (cfg.keep)
			fail_msg("ROOMCAST_KEEP=%s is not false", no[i]);
		rc_opts_result_fini(&res);
	}
	/* the flag wins over a variable that says false */
	reset(NULL);
	setenv("ROOMCAST_NO_FIREHOSE", "false", 1);
	parse_ok(ARGC(flag), flag, &res);
	assert_true(cfg.no_firehose);
	rc_opts_result_fini(&res);
}

static void test_sizes(void **state)
{
	static const struct {
		const char *text;
		int64_t want;
	} ok[] = {
		{ "65536", 65536 },    { "64k", 65536 },       { "64K", 65536 },
		{ "64kb", 65536 },     { "64KiB", 65536 },     { "1m", 1048576 },
		{ "1M", 1048576 },     { "1MiB", 1048576 },    { "1mb", 1048576 },
		{ "3m", 3 * 1048576 }, { "1g", 1073741824 },   { "1GiB", 1073741824 },
		{ "1k", 1024 },
	};
	static const char *const bad[] = {
		"1x", "k", "1.5m", "1 k", " 1k", "1k ", "1kk", "1kib2", "1mi", "", "0x100",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *argv[] = { "prog", "--max-client-buffer", (char *)ok[i].text };
		struct rc_opts_result res;

		reset(NULL);
		parse_ok(ARGC(argv), argv, &res);
		if (cfg.max_client_buffer != ok[i].want)
			fail_msg("'%s' gave %lld", ok[i].text, (long long)cfg.max_client_buffer);
		rc_opts_result_fini(&res);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = { "prog", "--max-client-buffer", (char *)bad[i] };

		parse_fails(ARGC(argv), argv, "--max-client-buffer", NULL);
	}
	/* a suffix is for sizes only */
	char *int_suffix[] = { "prog", "--heartbeat-ms=15k" };
	parse_fails(ARGC(int_suffix), int_suffix, "--heartbeat-ms", "15k");
}

static void test_out_of_range(void **state)
{
	static const char *const hb[] = { "-1", "3600001", "99999999999999999999", "-99999999999999999999" };
	static const char *const sz[] = { "1023", "0", "-1k", "2g", "8589934592g" };

	(void)state;
	for (size_t i = 0; i < sizeof(hb) / sizeof(hb[0]); i++) {
		char *argv[] = { "prog", "--heartbeat-ms", (char *)hb[i] };

		parse_fails(ARGC(argv), argv, "--heartbeat-ms", NULL);
		assert_true(cfg.heartbeat_ms == 15000);
	}
	for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
		char *argv[] = { "prog", "--max-client-buffer=x" };
		char arg[64];

		snprintf(arg, sizeof(arg), "--max-client-buffer=%s", sz[i]);
		argv[1] = arg;
		parse_fails(ARGC(argv), argv, "--max-client-buffer", NULL);
	}
	/* the message gives the allowed range */
	char *argv[] = { "prog", "--heartbeat-ms", "3600001" };
	parse_fails(ARGC(argv), argv, "--heartbeat-ms", "3600000");
}

static void test_not_numeric(void **state)
{
	static const char *const bad[] = { "abc", "12ms", "", "1.5", " 12", "12 ", "1e3", "--5" };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = { "prog", "--heartbeat-ms", (char *)bad[i] };

		parse_fails(ARGC(argv), argv, "--heartbeat-ms", NULL);
	}
	char *level[] = { "prog", "--log-level=verbose" };
	parse_fails(ARGC(level), level, "--log-level", "verbose");
}

static void test_unknown_option(void **state)
{
	char *a[] = { "prog", "--nope" };
	char *b[] = { "prog", "--nope=1" };
	char *c[] = { "prog", "-x" };
	char *d[] = { "prog", "--heartbeat" };       /* a prefix is not a match */
	char *e[] = { "prog", "--heartbeat-ms-x=1" };
	char *f[] = { "prog", "sub", "--Listen", "x" };

	(void)state;
	parse_fails(ARGC(a), a, "--nope", NULL);
	parse_fails(ARGC(b), b, "--nope", NULL);
	parse_fails(ARGC(c), c, "-x", NULL);
	parse_fails(ARGC(d), d, "--heartbeat", NULL);
	parse_fails(ARGC(e), e, "--heartbeat-ms-x", NULL);
	parse_fails(ARGC(f), f, "--Listen", NULL);
}

static void test_missing_value(void **state)
{
	char *a[] = { "prog", "--heartbeat-ms" };
	char *b[] = { "prog", "sub", "--listen" };
	char *c[] = { "prog", "--log-level" };

	(void)state;
	parse_fails(ARGC(a), a, "--heartbeat-ms", NULL);
	parse_fails(ARGC(b), b, "--listen", NULL);
	parse_fails(ARGC(c), c, "--log-level", NULL);
}

/* Options may stand before or after a subcommand (the CLI relies on it). */
static void test_positionals(void **state)
{
	char *argv[] = { "prog", "--heartbeat-ms", "5", "publish", "--listen=x", "room-1", "-", "--no-firehose",
			 "last" };
	struct rc_opts_result res;

	(void)state;
	parse_ok(ARGC(argv), argv, &res);
	assert_int_equal(res.npos, 4);
	assert_string_equal(res.pos[0], "publish");
	assert_string_equal(res.pos[1], "room-1");
	assert_string_equal(res.pos[2], "-");
	assert_string_equal(res.pos[3], "last");
	assert_true(cfg.heartbeat_ms == 5);
	assert_string_equal(cfg.listen, "x");
	assert_true(cfg.no_firehose);
	rc_opts_result_fini(&res);
	assert_null(res.pos);
	assert_int_equal(res.npos, 0);
}

static void test_double_dash(void **state)
{
	char *argv[] = { "prog", "--heartbeat-ms", "5", "--", "--listen", "x", "--", "-h", "--nope" };
	struct rc_opts_result res;

	(void)state;
	parse_ok(ARGC(argv), argv, &res);
	assert_true(cfg.heartbeat_ms == 5);
	assert_string_equal(cfg.listen, "127.0.0.1:8080");
	assert_int_equal(res.help, 0);
	assert_int_equal(res.npos, 5);
	assert_string_equal(res.pos[0], "--listen");
	assert_string_equal(res.pos[1], "x");
	assert_string_equal(res.pos[2], "--");
	assert_string_equal(res.pos[3], "-h");
	assert_string_equal(res.pos[4], "--nope");
	rc_opts_result_fini(&res);
}

static void test_help(void **state)
{
	char *a[] = { "prog", "--help" };
	char *b[] = { "prog", "sub", "-h", "--heartbeat-ms=9" };
	struct rc_opts_result res;

	(void)state;
	parse_ok(ARGC(a), a, &res);
	assert_int_not_equal(res.help, 0);
	assert_int_equal(res.npos, 0);
	rc_opts_result_fini(&res);

	parse_ok(ARGC(b), b, &res);
	assert_int_not_equal(res.help, 0);
	assert_int_equal(res.npos, 1);
	assert_true(cfg.heartbeat_ms == 9);
	rc_opts_result_fini(&res);
}

/* --help lists every option with its variable and its current value. */
static void test_usage(void **state)
{
	char *argv[] = { "prog", "--heartbeat-ms=250" };
	struct rc_opts_result res;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	(void)state;
	assert_non_null(out);
	parse_ok(ARGC(argv), argv, &res);
	rc_opts_result_fini(&res);
	rc_opts_usage(out, "usage: prog [options]", table);
	fclose(out);
	assert_true(strncmp(text, "usage: prog [options]\n", 22) == 0);
	for (const struct rc_opt *o = table; o->name; o++) {
		char flag[64];

		snprintf(flag, sizeof(flag), "--%s", o->name);
		if (strstr(text, flag) == NULL || strstr(text, o->help) == NULL)
			fail_msg("usage does not list %s:\n%s", flag, text);
	}
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		if (strstr(text, env_names[i]) == NULL)
			fail_msg("usage does not name %s:\n%s", env_names[i], text);
	assert_non_null(strstr(text, "127.0.0.1:8080"));
	assert_non_null(strstr(text, "250"));
	assert_non_null(strstr(text, "1048576"));
	assert_non_null(strstr(text, "info"));
	assert_non_null(strstr(text, "--help"));
	free(text);
}

/* A list option (--broker-bus A,B): items trimmed; empty items and too many refused, nothing left allocated. */
static void test_list(void **state)
{
	char *items[3];

	(void)state;
	assert_int_equal(rc_opt_list("tcp://a:1", items, 3), 1);
	assert_string_equal(items[0], "tcp://a:1");
	rc_opt_list_free(items, 1);
	assert_null(items[0]);
	assert_int_equal(rc_opt_list(" tcp://a:1 ,\ttcp://b:2", items, 3), 2);
	assert_string_equal(items[0], "tcp://a:1");
	assert_string_equal(items[1], "tcp://b:2");
	rc_opt_list_free(items, 2);
	assert_int_equal(rc_opt_list("a,b,c", items, 3), 3);
	rc_opt_list_free(items, 3);
	assert_int_equal(rc_opt_list("a,b,c,d", items, 3), RC_EINVAL);
	assert_int_equal(rc_opt_list("", items, 3), RC_EINVAL);
	assert_int_equal(rc_opt_list("a,", items, 3), RC_EINVAL);
	assert_int_equal(rc_opt_list("a, ,b", items, 3), RC_EINVAL);
	assert_int_equal(rc_opt_list(",a", items, 3), RC_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults, reset),
		cmocka_unit_test_setup(test_flag_values, reset),
		cmocka_unit_test_setup(test_flag_value_forms, reset),
		cmocka_unit_test_setup(test_env, reset),
		cmocka_unit_test_setup(test_flag_wins_over_env, reset),
		cmocka_unit_test_setup(test_env_errors, reset),
		cmocka_unit_test_setup(test_bool_flags, reset),
		cmocka_unit_test_setup(test_bool_env, reset),
		cmocka_unit_test_setup(test_sizes, reset),
		cmocka_unit_test_setup(test_out_of_range, reset),
		cmocka_unit_test_setup(test_not_numeric, reset),
		cmocka_unit_test_setup(test_unknown_option, reset),
		cmocka_unit_test_setup(test_missing_value, reset),
		cmocka_unit_test_setup(test_positionals, reset),
		cmocka_unit_test_setup(test_double_dash, reset),
		cmocka_unit_test_setup(test_help, reset),
		cmocka_unit_test_setup(test_usage, reset),
		cmocka_unit_test(test_list),
	};

	return cmocka_run_group_tests_name("options", tests, reset, reset);
}
