/*
 * test_auth_url_http.c - the wire of --auth url (gateway/auth_url_http.c):
 * --auth-url parsing (http only, ports, IPv6 literals, paths and queries,
 * what is refused), the request written for a check (every header, the
 * firehose, absent credentials), the answer read with http-parser (whole,
 * byte by byte, chunked, close-delimited, the head and body limits, garbage,
 * an answer cut short) and the verdict of a status and body (allow with or
 * without a grant, 401, 403, the rest unavailable, bodies that are not what
 * docs/PROTOCOL.md says).
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

#include "auth_url_http.h"
#include "buf.h"
#include "error.h"
#include "grant.h"

/* ---- the URL ---- */

static void test_parse_good(void **state)
{
	struct gw_authurl_target t;
	char why[128];

	(void)state;
	assert_int_equal(gw_authurl_parse("http://127.0.0.1:8081/auth/check?x=1", &t, why, sizeof(why)), RC_OK);
	assert_string_equal(t.host, "127.0.0.1");
	assert_int_equal(t.port, 8081);
	assert_string_equal(t.host_header, "127.0.0.1:8081");
	assert_string_equal(t.target, "/auth/check?x=1");

	assert_int_equal(gw_authurl_parse("http://app.internal/", &t, why, sizeof(why)), RC_OK);
	assert_string_equal(t.host, "app.internal");
	assert_int_equal(t.port, 80);
	assert_string_equal(t.host_header, "app.internal");
	assert_string_equal(t.target, "/");

	/* no path: "/" */
	assert_int_equal(gw_authurl_parse("http://localhost:9000", &t, why, sizeof(why)), RC_OK);
	assert_string_equal(t.target, "/");
	assert_int_equal(t.port, 9000);

	/* a query without a path */
	assert_int_equal(gw_authurl_parse("http://localhost?a=b", &t, why, sizeof(why)), RC_OK);
	assert_string_equal(t.target, "/?a=b");

	/* IPv6: brackets in Host, not in host */
	assert_int_equal(gw_authurl_parse("http://[::1]:8081/a", &t, why, sizeof(why)), RC_OK);
	assert_string_equal(t.host, "::1");
	assert_string_equal(t.host_header, "[::1]:8081");

	/* the scheme's case does not matter */
	assert_int_equal(gw_authurl_parse("HTTP://h/x", &t, why, sizeof(why)), RC_OK);
	assert_string_equal(t.host, "h");
}

static void test_parse_bad(void **state)
{
	static const char *const bad[] = {
		"https://127.0.0.1/auth",      /* no TLS: docs say what to do instead */
		"ftp://h/",
		"http://",
		"http:///path",
		"127.0.0.1:80/auth",
		"//h/x",
		"http://u:p@h/",               /* credentials in the URL */
		"http://h:0/",
		"http://h:65536/",
		"http://h:x/",
		"http://h/a#frag",
		"http://h/a b",
		"",
	};
	struct gw_authurl_target t;
	char why[128];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		if (gw_authurl_parse(bad[i], &t, why, sizeof(why)) != RC_EINVAL)
			fail_msg("accepted '%s'", bad[i]);
		assert_true(why[0] != '\0');
	}
	/* https says why */
	gw_authurl_parse("https://h/", &t, why, sizeof(why));
	assert_non_null(strstr(why, "https"));

	/* too long */
	{
		size_t n = GW_AUTHURL_URL_MAX + 100;
		char *u = malloc(n + 1);
		assert_non_null(u);
		memcpy(u, "http://h/", 9);
		memset(u + 9, 'a', n - 9);
		u[n] = '\0';
		assert_int_equal(gw_authurl_parse(u, &t, why, sizeof(why)), RC_EINVAL);
		free(u);
	}
}

/* ---- the request ---- */

static bool has_line(const struct rc_buf *b, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\r\n%s\r\n", line);
	return b->data != NULL && strstr(b->data, want) != NULL;
}

static void test_request(void **state)
{
	struct gw_authurl_target t;
	const char *rooms[] = { "lobby", "team-42:x" };
	const size_t lens[] = { 5, 9 };
	const char uri[] = "/api/v1/events?room_id=lobby,team-42:x";
	struct gw_authurl_ask ask = {
		.method = "GET",
		.uri = uri,
		.uri_len = sizeof(uri) - 1,
		.cookie = "session=abc; theme=dark",
		.cookie_len = 23,
		.authorization = "Bearer xyz",
		.authorization_len = 10,
		.rooms = rooms,
		.room_lens = lens,
		.nrooms = 2,
	};
	struct rc_buf b;
	char why[64];

	(void)state;
	assert_int_equal(gw_authurl_parse("http://127.0.0.1:8081/auth?x=1", &t, why, sizeof(why)), RC_OK);
	rc_buf_init(&b);
	gw_authurl_request(&b, &t, &ask);
	assert_false(b.err);
	assert_true(strncmp(b.data, "GET /auth?x=1 HTTP/1.1\r\n", 24) == 0);
	assert_true(has_line(&b, "Host: 127.0.0.1:8081"));
	assert_true(has_line(&b, "X-Original-Method: GET"));
	assert_true(has_line(&b, "X-Original-URI: /api/v1/events?room_id=lobby,team-42:x"));
	assert_true(has_line(&b, "X-Roomcast-Rooms: lobby,team-42:x"));
	assert_true(has_line(&b, "Cookie: session=abc; theme=dark"));
	assert_true(has_line(&b, "Authorization: Bearer xyz"));
	assert_true(has_line(&b, "Connection: close"));
	assert_null(strstr(b.data, "X-Roomcast-Firehose"));
	assert_true(b.len >= 4 && memcmp(b.data + b.len - 4, "\r\n\r\n", 4) == 0);
	rc_buf_fini(&b);

	/* the firehose, a POST, no credentials */
	ask.nrooms = 0;
	ask.firehose = true;
	ask.cookie_len = ask.authorization_len = 0;
	ask.method = "POST";
	rc_buf_init(&b);
	gw_authurl_request(&b, &t, &ask);
	assert_true(has_line(&b, "X-Roomcast-Firehose: true"));
	assert_true(has_line(&b, "X-Original-Method: POST"));
	assert_null(strstr(b.data, "X-Roomcast-Rooms"));
	assert_null(strstr(b.data, "Cookie:"));
	assert_null(strstr(b.data, "Authorization:"));
	rc_buf_fini(&b);

	/* a POST names no rooms and is no firehose */
	ask.firehose = false;
	rc_buf_init(&b);
	gw_authurl_request(&b, &t, &ask);
	assert_null(strstr(b.data, "X-Roomcast-Firehose"));
	assert_null(strstr(b.data, "X-Roomcast-Rooms"));
	rc_buf_fini(&b);
}

/* ---- the answer ---- */

/* Feeds s whole (step 0) or in pieces of step bytes, then the close when eof; the last result. */
static int feed(struct gw_authurl_resp *r, const char *s, size_t step, bool eof)
{
	size_t n = strlen(s);
	int rv = 0;

	if (step == 0)
		step = n ? n : 1;
	for (size_t i = 0; i < n && rv == 0; i += step)
		rv = gw_authurl_resp_feed(r, s + i, n - i < step ? n - i : step);
	if (rv == 0 && eof)
		rv = gw_authurl_resp_feed(r, "", 0);
	return rv;
}

static void test_resp_whole_and_in_pieces(void **state)
{
	static const char ans[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n"
				  "{\"read\":[\"lobby\"]}";
	(void)state;
	for (size_t step = 0; step <= 7; step++) {
		struct gw_authurl_resp r;
		gw_authurl_resp_init(&r, 4096, 4096);
		assert_int_equal(feed(&r, ans, step, false), 1);
		assert_int_equal(r.status, 200);
		assert_int_equal(r.body.len, 18);
		assert_memory_equal(r.body.data, "{\"read\":[\"lobby\"]}", 18);
		assert_string_equal(r.challenge, "");
		gw_authurl_resp_fini(&r);
	}
}

static void test_resp_forms(void **state)
{
	struct gw_authurl_resp r;

	(void)state;
	/* chunked */
	gw_authurl_resp_init(&r, 4096, 4096);
	assert_int_equal(feed(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 3,
			      false),
			 1);
	assert_int_equal(r.body.len, 5);
	assert_memory_equal(r.body.data, "abcde", 5);
	gw_authurl_resp_fini(&r);

	/* delimited by the close */
	gw_authurl_resp_init(&r, 4096, 4096);
	assert_int_equal(feed(&r, "HTTP/1.0 403 Forbidden\r\n\r\nno", 0, false), 0);
	assert_int_equal(gw_authurl_resp_feed(&r, "", 0), 1);
	assert_int_equal(r.status, 403);
	assert_memory_equal(r.body.data, "no", 2);
	gw_authurl_resp_fini(&r);

	/* 204: no body, whole at the end of the head */
	gw_authurl_resp_init(&r, 4096, 4096);
	assert_int_equal(feed(&r, "HTTP/1.1 204 No Content\r\n\r\n", 0, false), 1);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.body.len, 0);
	gw_authurl_resp_fini(&r);

	/* a 401's challenge, whatever the header's case */
	gw_authurl_resp_init(&r, 4096, 4096);
	assert_int_equal(feed(&r, "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Cookie realm=\"app\"\r\n"
				  "Content-Length: 0\r\n\r\n",
			      5, false),
			 1);
	assert_int_equal(r.status, 401);
	assert_string_equal(r.challenge, "Cookie realm=\"app\"");
	gw_authurl_resp_fini(&r);

	/* a challenge too long to pass on is dropped, the answer is fine */
	{
		char big[1024];
		snprintf(big, sizeof(big), "HTTP/1.1 401 U\r\nWWW-Authenticate: %0*d\r\nContent-Length: 0\r\n\r\n",
			 GW_AUTHURL_CHALLENGE_MAX + 10, 7);
		gw_authurl_resp_init(&r, 4096, 4096);
		assert_int_equal(feed(&r, big, 0, false), 1);
		assert_string_equal(r.challenge, "");
		gw_authurl_resp_fini(&r);
	}
}

static void test_resp_limits_and_garbage(void **state)
{
	struct gw_authurl_resp r;
	char head[600];

	(void)state;
	/* a head over its limit */
	snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nX-Pad: %0300d\r\nContent-Length: 0\r\n\r\n", 1);
	gw_authurl_resp_init(&r, 256, 4096);
	assert_int_equal(feed(&r, head, 10, false), RC_ETOOBIG);
	gw_authurl_resp_fini(&r);
	gw_authurl_resp_init(&r, 512, 4096);
	assert_int_equal(feed(&r, head, 10, false), 1);
	gw_authurl_resp_fini(&r);

	/* a body over its limit, known from Content-Length or seen as it comes */
	gw_authurl_resp_init(&r, 4096, 8);
	assert_int_equal(feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789", 0, false), RC_ETOOBIG);
	gw_authurl_resp_fini(&r);
	gw_authurl_resp_init(&r, 4096, 8);
	assert_int_equal(feed(&r, "HTTP/1.1 200 OK\r\n\r\n123456789", 2, true), RC_ETOOBIG);
	gw_authurl_resp_fini(&r);
	gw_authurl_resp_init(&r, 4096, 8);
	assert_int_equal(feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n12345678", 0, false), 1);
	gw_authurl_resp_fini(&r);

	/* not HTTP */
	gw_authurl_resp_init(&r, 4096, 4096);
	assert_int_equal(feed(&r, "SSH-2.0-OpenSSH\r\n", 0, false), RC_EPROTO);
	gw_authurl_resp_fini(&r);

	/* closed before the head, or in the middle of a Content-Length body */
	gw_authurl_resp_init(&r, 4096, 4096);
	assert_int_equal(feed(&r, "HTTP/1.1 200 O", 0, true), RC_EPROTO);
	gw_authurl_resp_fini(&r);
	gw_authurl_resp_init(&r, 4096, 4096);
	assert_int_equal(feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, true), RC_EPROTO);
	gw_authurl_resp_fini(&r);
	gw_authurl_resp_init(&r, 4096, 4096);
	assert_int_equal(gw_authurl_resp_feed(&r, "", 0), RC_EPROTO);
	gw_authurl_resp_fini(&r);
}

/* ---- the verdict ---- */

static enum gw_authurl_verdict verdict(int status, const char *body, struct rc_grant **g)
{
	char why[200];

	*g = NULL;
	return gw_authurl_verdict(status, body, strlen(body), g, why, sizeof(why));
}

static void test_verdict(void **state)
{
	struct rc_grant *g;

	(void)state;
	assert_int_equal(verdict(200, "", &g), GW_AUTHURL_ALLOW);
	assert_null(g);
	assert_int_equal(verdict(204, "", &g), GW_AUTHURL_ALLOW);
	assert_int_equal(verdict(200, " \r\n\t", &g), GW_AUTHURL_ALLOW);
	assert_null(g);
	assert_int_equal(verdict(401, "login first", &g), GW_AUTHURL_UNAUTHORIZED);
	assert_int_equal(verdict(403, "{\"read\":[\"x\"]}", &g), GW_AUTHURL_FORBIDDEN);
	assert_null(g);
	for (int s = 100; s < 600; s++) {
		if ((s >= 200 && s < 300) || s == 401 || s == 403)
			continue;
		assert_int_equal(verdict(s, "", &g), GW_AUTHURL_UNAVAILABLE);
	}

	/* a grant narrows */
	assert_int_equal(verdict(200, "{\"read\":[\"lobby\",\"team-42:*\"],\"sub\":\"alice\"}", &g), GW_AUTHURL_ALLOW);
	assert_non_null(g);
	assert_true(rc_grant_can_read(g, "lobby", 5));
	assert_true(rc_grant_can_read(g, "team-42:x", 9));
	assert_false(rc_grant_can_read(g, "secret", 6));
	assert_false(rc_grant_can_firehose(g));
	assert_false(rc_grant_can_publish(g, "lobby", 5));
	assert_string_equal(g->sub, "alice");
	assert_true(g->exp >= GW_AUTHURL_NO_EXPIRY);
	rc_grant_free(g);

	assert_int_equal(verdict(200, "{\"firehose\":true,\"publish\":[\"lobby\",\"$global\"]}", &g), GW_AUTHURL_ALLOW);
	assert_true(rc_grant_can_firehose(g));
	assert_true(rc_grant_can_publish(g, "lobby", 5));
	assert_true(rc_grant_can_publish(g, "", 0));
	assert_int_equal(g->sub_hash, 0); /* no sub: nothing to revoke by */
	rc_grant_free(g);

	/* {} grants nothing */
	assert_int_equal(verdict(200, "{}", &g), GW_AUTHURL_ALLOW);
	assert_false(rc_grant_can_read(g, "lobby", 5));
	rc_grant_free(g);

	/* bodies that are not the contract: unavailable, never allowed */
	static const char *const bad[] = {
		"{\"read\":\"lobby\"}", "{\"read\":[\"bad room\"]}", "[\"lobby\"]", "{\"read\":[\"lobby\"]", "ok",
		"{\"firehose\":\"yes\"}", "{\"sub\":\"\"}", "{\"sub\":7}", "null", "{\"read\":[1]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (verdict(200, bad[i], &g) != GW_AUTHURL_UNAVAILABLE)
			fail_msg("allowed with body %s", bad[i]);
		assert_null(g);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_resp_whole_and_in_pieces),
		cmocka_unit_test(test_resp_forms),
		cmocka_unit_test(test_resp_limits_and_garbage),
		cmocka_unit_test(test_verdict),
	};
	return cmocka_run_group_tests_name("auth_url_http", tests, NULL, NULL);
}
