/*
 * test_cli_token.c - `roomcast keygen` and `roomcast token` end to end: the
 * real binary makes keys and mints tokens, and common/jwt.c verifies them
 * as a gateway would (HS256 with a secret file, RS256 and ES256 with a
 * private JWK and its JWKS); the claims carry what the flags said; bad
 * options exit 2, an unreadable key 1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "jwt.h"
#include "proc.h"

#ifndef RC_CLI_BIN
#error "RC_CLI_BIN must name the roomcast binary (set by CMake)"
#endif

#define CLI_TIMEOUT_MS 30000

static char dir[64];

struct run {
	int status;
	char *out, *err;
};

static void run_fini(struct run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* Runs roomcast with args (the caller's ROOMCAST_* dropped) and waits for it. */
static void run_cli(struct run *r, const char *const *args)
{
	struct proc p;
	struct proc_spec spec = { .path = RC_CLI_BIN, .argv = args, .env_drop_prefix = "ROOMCAST_" };

	assert_int_equal(proc_spawn(&p, &spec), 0);
	r->status = proc_wait(&p, CLI_TIMEOUT_MS);
	proc_kill(&p);
	r->out = proc_stdout(&p);
	r->err = proc_stderr(&p);
	if (r->status != 0 && r->status != 1 && r->status != 2)
		fail_msg("roomcast %s: status %d; stderr: %s", args[0], r->status, r->err);
}

static void expect_exit(const char *const *args, int status, const char *err_needle)
{
	struct run r;

	run_cli(&r, args);
	if (r.status != status || strstr(r.err, err_needle) == NULL)
		fail_msg("roomcast %s ...: exit %d (want %d), stderr '%s' (want '%s')", args[0], r.status, status,
			 r.err, err_needle);
	run_fini(&r);
}

static const char *path_of(const char *name)
{
	static char buf[4][128];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

/* The token roomcast printed (one line), verified at now by a verifier of cfg; returns its grant. */
static struct rc_grant *verify_output(const struct run *r, struct rc_jwt_config *cfg)
{
	struct rc_jwt *v;
	struct rc_grant *g = NULL;
	enum rc_jwt_reason why;
	char msg[512];
	size_t len = strlen(r->out);

	if (r->status != 0)
		fail_msg("roomcast token failed: %s", r->err);
	assert_true(len > 1 && r->out[len - 1] == '\n');
	cfg->leeway_s = RC_JWT_LEEWAY_DEFAULT_S;
	if (rc_jwt_new(cfg, &v, msg, sizeof(msg)) != RC_OK)
		fail_msg("verifier: %s", msg);
	if (rc_jwt_verify(v, r->out, len - 1, (int64_t)time(NULL), &g, &why) != RC_OK)
		fail_msg("the token does not verify (%s): %s", rc_jwt_reason_name(why), r->out);
	rc_jwt_free(v);
	return g;
}

static int setup(void **state)
{
	(void)state;
	if (proc_init() != 0)
		return -1;
	strcpy(dir, "/tmp/roomcast-test-token-XXXXXX");
	return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_hs256(void **state)
{
	const char *secret = path_of("secret");
	const char *keygen[] = { "keygen", "--alg", "HS256", "--out", secret, NULL };
	const char *token[] = {
		"token", "--secret-file",    secret,  "--sub", "alice", "--rooms",  "lobby,team-42:*", "--publish",
		"lobby", "--publish-global", "--ttl", "1h",    "--aud", "roomcast", "--iss",	       "tests",
		NULL
	};
	struct rc_jwt_config cfg = {
		.algs = RC_JWT_HS256, .secret_file = secret, .audience = "roomcast", .issuer = "tests"
	};
	struct run r;
	struct rc_grant *g;
	struct stat st;
	int64_t now = (int64_t)time(NULL);

	(void)state;
	run_cli(&r, keygen);
	assert_int_equal(r.status, 0);
	run_fini(&r);
	assert_int_equal(stat(secret, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 65); /* 64 base64url characters and a newline */
	run_cli(&r, token);
	g = verify_output(&r, &cfg);
	assert_string_equal(g->sub, "alice");
	assert_non_null(g->jti);
	assert_int_equal(strlen(g->jti), 32); /* random, so the token can be revoked by id */
	assert_true(g->exp >= now + 3600 && g->exp <= now + 3600 + 60);
	assert_true(rc_grant_can_read(g, "lobby", 5));
	assert_true(rc_grant_can_read(g, "team-42:x", 9));
	assert_false(rc_grant_can_read(g, "team-43:x", 9));
	assert_true(rc_grant_can_publish(g, "lobby", 5));
	assert_true(rc_grant_can_publish(g, NULL, 0));
	assert_false(rc_grant_can_firehose(g));
	rc_grant_free(g);
	run_fini(&r);
}

/* A secret written by hand (`echo ... > file`): its newline is not part of it, for the tool or the verifier. */
static void test_handwritten_secret(void **state)
{
	const char *secret = path_of("echoed");
	const char *token[] = { "token", "--secret-file", secret,  "--sub", "svc", "--firehose", "--ttl",
				"90",	 "--jti",	  "job-7", NULL };
	struct rc_jwt_config cfg = { .algs = RC_JWT_HS256, .secret_file = secret };
	struct run r;
	struct rc_grant *g;
	FILE *f;

	(void)state;
	assert_non_null(f = fopen(secret, "w"));
	fputs("correct horse battery staple, but longer than 32 bytes\n", f);
	assert_int_equal(fclose(f), 0);
	run_cli(&r, token);
	g = verify_output(&r, &cfg);
	assert_string_equal(g->jti, "job-7");
	assert_true(rc_grant_can_firehose(g));
	assert_false(rc_grant_can_publish(g, "x", 1));
	rc_grant_free(g);
	run_fini(&r);
}

static void key_pair(const char *alg, unsigned bit)
{
	char priv_name[32], jwks_name[32];
	const char *priv, *jwks;
	struct run r;
	struct rc_grant *g;
	struct stat st;

	snprintf(priv_name, sizeof(priv_name), "%s.jwk", alg);
	snprintf(jwks_name, sizeof(jwks_name), "%s.jwks", alg);
	priv = path_of(priv_name);
	jwks = path_of(jwks_name);
	{
		const char *keygen[] = {
			"keygen", "--alg", alg, "--kid", "k-1", "--out", priv, "--jwks-out", jwks, NULL
		};
		run_cli(&r, keygen);
		assert_int_equal(r.status, 0);
		run_fini(&r);
	}
	assert_int_equal(stat(priv, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	{
		const char *token[] = { "token", "--key-file", priv, "--sub", "bob", "--rooms", "r1", NULL };
		struct rc_jwt_config cfg = { .algs = bit, .keys_file = jwks };
		run_cli(&r, token);
		g = verify_output(&r, &cfg);
		assert_string_equal(g->sub, "bob");
		assert_true(rc_grant_can_read(g, "r1", 2));
		rc_grant_free(g);
		run_fini(&r);
	}
}

static void test_rs256(void **state)
{
	(void)state;
	key_pair("RS256", RC_JWT_RS256);
}

static void test_es256(void **state)
{
	(void)state;
	key_pair("ES256", RC_JWT_ES256);
}

static void test_bad_options(void **state)
{
	const char *secret = path_of("secret"); /* made by test_hs256 */
	const char *bad_room[] = { "token", "--secret-file", secret, "--sub", "a", "--rooms", "ok,no room", NULL };
	const char *bad_pub[] = { "token", "--secret-file", secret, "--sub", "a", "--publish", "a*b", NULL };
	const char *no_sub[] = { "token", "--secret-file", secret, "--rooms", "a", NULL };
	const char *no_key[] = { "token", "--sub", "a", NULL };
	const char *two_keys[] = { "token", "--sub", "a", "--secret-file", secret, "--key-file", secret, NULL };
	const char *bad_ttl[] = { "token", "--secret-file", secret, "--sub", "a", "--ttl", "0", NULL };
	const char *bad_ttl2[] = { "token", "--secret-file", secret, "--sub", "a", "--ttl", "1w", NULL };
	const char *missing[] = { "token", "--secret-file", "/nonexistent/secret", "--sub", "a", NULL };
	const char *wrong_alg[] = { "token", "--secret-file", secret, "--sub", "a", "--alg", "RS256", NULL };
	const char *none_alg[] = { "token", "--secret-file", secret, "--sub", "a", "--alg", "none", NULL };
	const char *keygen_noalg[] = { "keygen", "--out", path_of("x"), NULL };
	const char *keygen_nokid[] = { "keygen", "--alg", "ES256", "--out", path_of("x"), NULL };

	(void)state;
	expect_exit(bad_room, 2, "bad --rooms entry 'no room'");
	expect_exit(bad_pub, 2, "bad --publish entry 'a*b'");
	expect_exit(no_sub, 2, "--sub");
	expect_exit(no_key, 2, "--secret-file");
	expect_exit(two_keys, 2, "--secret-file");
	expect_exit(bad_ttl, 2, "bad --ttl");
	expect_exit(bad_ttl2, 2, "bad --ttl");
	expect_exit(missing, 1, "cannot open /nonexistent/secret");
	expect_exit(wrong_alg, 1, "cannot sign RS256");
	expect_exit(none_alg, 2, "bad --alg 'none'");
	expect_exit(keygen_noalg, 2, "keygen needs --alg");
	expect_exit(keygen_nokid, 2, "needs --kid");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hs256), cmocka_unit_test(test_handwritten_secret), cmocka_unit_test(test_rs256),
		cmocka_unit_test(test_es256), cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests_name("cli_token", tests, setup, teardown);
}
