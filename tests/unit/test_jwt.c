/*
 * test_jwt.c - token verification and its keys: every bad token of issue 16
 * that a verifier alone can see (alg none, algorithm confusion, tampering,
 * truncated or non-base64url parts, a 16 KiB token, exp, nbf, leeway,
 * aud/iss, unknown kid), the key files (an HMAC secret, JWKS, garbage) and
 * rotation by reload.
 *
 * The keys are made at run time (RSA and EC by cjose); nothing private is
 * committed. cjose's allocator is counted, so a test can tell that a token
 * was refused before the library (and so any crypto) saw it.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* PEM_write_bio_RSA_PUBKEY: cjose 0.6 keeps an RSA* */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjose/cjose.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "b64url.h"
#include "error.h"
#include "jwt.h"

#define NOW    1700000000
#define LEEWAY 30

/* Keys made once for the whole file. */
static struct {
	char dir[64];
	uint8_t secret[48];
	struct rc_jwk *hs, *rsa1, *rsa2, *ec1, *pem_hmac;
	char *rsa1_pub, *rsa2_pub, *ec1_pub;
	char pem[2048];
	size_t pem_len;
} F;

static size_t cjose_allocs;

static void *count_alloc(size_t n)
{
	cjose_allocs++;
	return malloc(n);
}

static void *count_realloc(void *p, size_t n)
{
	cjose_allocs++;
	return realloc(p, n);
}

static void count_free(void *p)
{
	free(p);
}

static void path_of(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", F.dir, name);
}

/* Writes name in the fixture folder by rename, as an operator's tool would (a new inode). */
static void write_file(const char *name, const void *data, size_t len)
{
	char path[128], tmp[140];
	FILE *f;

	path_of(path, sizeof(path), name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_non_null(f = fopen(tmp, "wb"));
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void write_str(const char *name, const char *s)
{
	write_file(name, s, strlen(s));
}

/* Writes a JWKS of up to three public keys (NULL: fewer). */
static void write_jwks(const char *name, const char *a, const char *b, const char *c)
{
	char buf[8192];

	snprintf(buf, sizeof(buf), "{\"keys\":[%s%s%s%s%s]}\n", a ? a : "", b ? "," : "", b ? b : "", c ? "," : "",
		 c ? c : "");
	write_str(name, buf);
}

/* A verifier, or fails the test. */
static struct rc_jwt *verifier(const char *algs, const char *secret_name, const char *keys_name, const char *aud,
			       const char *iss)
{
	struct rc_jwt_config cfg = { .leeway_s = LEEWAY, .audience = aud, .issuer = iss };
	char secret[128], keys[128], msg[512];
	struct rc_jwt *v = NULL;

	assert_int_equal(rc_jwt_algs_parse(algs, &cfg.algs, msg, sizeof(msg)), RC_OK);
	if (secret_name != NULL) {
		path_of(secret, sizeof(secret), secret_name);
		cfg.secret_file = secret;
	}
	if (keys_name != NULL) {
		path_of(keys, sizeof(keys), keys_name);
		cfg.keys_file = keys;
	}
	if (rc_jwt_new(&cfg, &v, msg, sizeof(msg)) != RC_OK)
		fail_msg("rc_jwt_new: %s", msg);
	return v;
}

/* Claims for alice valid from NOW-60 to NOW+600, with extra members (may be ""). */
static const char *claims(const char *extra)
{
	static char buf[16384];

	snprintf(buf, sizeof(buf),
		 "{\"sub\":\"alice\",\"jti\":\"tok-1\",\"iat\":%d,\"exp\":%d%s%s,"
		 "\"roomcast\":{\"read\":[\"lobby\",\"team-42:*\"],\"publish\":[\"lobby\"],\"firehose\":false}}",
		 NOW - 60, NOW + 600, *extra ? "," : "", extra);
	return buf;
}

static char *mint(const struct rc_jwk *key, unsigned alg, const char *kid, const char *payload)
{
	char why[200], *tok = NULL;

	if (rc_jwt_sign(key, alg, kid, payload, strlen(payload), &tok, why, sizeof(why)) != RC_OK)
		fail_msg("rc_jwt_sign: %s", why);
	return tok;
}

/* Verifies token at NOW; returns the reason, checks the return code agrees with it. */
static enum rc_jwt_reason check_at(struct rc_jwt *v, const char *token, size_t len, int64_t now)
{
	struct rc_grant *g = (struct rc_grant *)1;
	enum rc_jwt_reason r = RC_JWT_NOMEM;
	int rv = rc_jwt_verify(v, token, len, now, &g, &r);

	assert_int_equal(rv, r == RC_JWT_OK ? RC_OK : RC_EINVAL);
	if (r == RC_JWT_OK)
		assert_non_null(g);
	else
		assert_null(g);
	rc_grant_free(g);
	return r;
}

static enum rc_jwt_reason check(struct rc_jwt *v, const char *token)
{
	return check_at(v, token, strlen(token), NOW);
}

#define assert_reason(got, want)                                                                                       \
	do {                                                                                                           \
		enum rc_jwt_reason got_ = (got), want_ = (want);                                                       \
		if (got_ != want_)                                                                                     \
			fail_msg("reason %s, want %s", rc_jwt_reason_name(got_), rc_jwt_reason_name(want_));           \
	} while (0)

/* "header.payload.sig" with the header and payload JSON encoded here, and sig as given. */
static char *forge(const char *header_json, const char *payload_json, const char *sig)
{
	size_t hl = strlen(header_json), pl = strlen(payload_json);
	char *t = malloc(rc_b64url_encoded_len(hl) + rc_b64url_encoded_len(pl) + strlen(sig) + 3);
	size_t n;

	assert_non_null(t);
	n = rc_b64url_encode((const uint8_t *)header_json, hl, t);
	t[n++] = '.';
	n += rc_b64url_encode((const uint8_t *)payload_json, pl, t + n);
	t[n++] = '.';
	strcpy(t + n, sig);
	return t;
}

static struct rc_jwk *signing_key(const char *priv_json)
{
	struct rc_jwk *k = NULL;
	char why[200];

	if (rc_jwk_from_json(priv_json, strlen(priv_json), &k, why, sizeof(why)) != RC_OK)
		fail_msg("rc_jwk_from_json: %s", why);
	return k;
}

/* A key pair for alg: the private key to sign with, the public JWK (caller frees). */
static struct rc_jwk *make_pair(unsigned alg, const char *kid, char **pub)
{
	char *priv, why[200];
	struct rc_jwk *k;

	if (rc_jwk_generate(alg, kid, &priv, pub, why, sizeof(why)) != RC_OK)
		fail_msg("rc_jwk_generate: %s", why);
	k = signing_key(priv);
	free(priv);
	return k;
}

static int setup(void **state)
{
	char why[200];
	cjose_err err;
	BIO *bio;
	RSA *rsa;

	(void)state;
	cjose_set_alloc_funcs(count_alloc, count_realloc, count_free);
	strcpy(F.dir, "/tmp/roomcast-test-jwt-XXXXXX");
	if (mkdtemp(F.dir) == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(F.secret); i++)
		F.secret[i] = (uint8_t)(i * 7 + 3);
	if (rc_jwk_from_secret(F.secret, sizeof(F.secret), &F.hs, why, sizeof(why)) != RC_OK)
		return -1;
	F.rsa1 = make_pair(RC_JWT_RS256, "rsa1", &F.rsa1_pub);
	F.rsa2 = make_pair(RC_JWT_RS256, "rsa2", &F.rsa2_pub);
	F.ec1 = make_pair(RC_JWT_ES256, "ec1", &F.ec1_pub);
	/* rsa1's public key as PEM: what an attacker has, and would use as an HMAC secret */
	rsa = cjose_jwk_get_keydata(F.rsa1->cj, &err);
	bio = BIO_new(BIO_s_mem());
	if (rsa == NULL || bio == NULL || PEM_write_bio_RSA_PUBKEY(bio, rsa) != 1)
		return -1;
	F.pem_len = (size_t)BIO_read(bio, F.pem, sizeof(F.pem) - 1);
	BIO_free(bio);
	if (rc_jwk_from_secret((const uint8_t *)F.pem, F.pem_len, &F.pem_hmac, why, sizeof(why)) != RC_OK)
		return -1;
	/* the usual files: a secret with a trailing newline (it is not part of the secret), a JWKS */
	{
		uint8_t s[sizeof(F.secret) + 1];
		memcpy(s, F.secret, sizeof(F.secret));
		s[sizeof(F.secret)] = '\n';
		write_file("secret", s, sizeof(s));
	}
	write_jwks("jwks", F.rsa1_pub, F.ec1_pub, NULL);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	rc_jwk_free(F.hs);
	rc_jwk_free(F.rsa1);
	rc_jwk_free(F.rsa2);
	rc_jwk_free(F.ec1);
	rc_jwk_free(F.pem_hmac);
	free(F.rsa1_pub);
	free(F.rsa2_pub);
	free(F.ec1_pub);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_valid_tokens(void **state)
{
	struct rc_jwt *hs = verifier("HS256", "secret", NULL, NULL, NULL);
	struct rc_jwt *pk = verifier("RS256,ES256", NULL, "jwks", NULL, NULL);
	char *t1 = mint(F.hs, RC_JWT_HS256, NULL, claims("")), *t2 = mint(F.rsa1, RC_JWT_RS256, NULL, claims(""));
	char *t3 = mint(F.ec1, RC_JWT_ES256, NULL, claims(""));
	struct rc_grant *g = NULL;
	enum rc_jwt_reason r;

	(void)state;
	assert_int_equal(rc_jwt_verify(hs, t1, strlen(t1), NOW, &g, &r), RC_OK);
	assert_reason(r, RC_JWT_OK);
	assert_string_equal(g->sub, "alice");
	assert_string_equal(g->jti, "tok-1");
	assert_int_equal(g->exp, NOW + 600);
	assert_true(rc_grant_can_read(g, "team-42:x", 9));
	assert_true(rc_grant_can_publish(g, "lobby", 5));
	assert_false(rc_grant_can_firehose(g));
	rc_grant_free(g);
	assert_reason(check(pk, t2), RC_JWT_OK);  /* kid rsa1 */
	assert_reason(check(pk, t3), RC_JWT_OK);  /* kid ec1 */
	assert_reason(check(hs, t2), RC_JWT_ALG); /* RS256 is not configured there */
	assert_reason(check(pk, t1), RC_JWT_ALG);
	free(t1);
	free(t2);
	free(t3);
	rc_jwt_free(hs);
	rc_jwt_free(pk);
}

static void test_alg_none(void **state)
{
	struct rc_jwt *v = verifier("HS256,RS256", NULL, "jwks", NULL, NULL);
	struct rc_jwt *hs = verifier("HS256", "secret", NULL, NULL, NULL);
	static const char *const headers[] = {
		"{\"alg\":\"none\",\"typ\":\"JWT\"}",
		"{\"alg\":\"None\"}",
		"{\"alg\":\"NONE\"}",
		"{\"alg\":\"\"}",
		"{\"typ\":\"JWT\"}",
		"{\"alg\":null}",
		"{\"alg\":[\"HS256\"]}",
		"{\"alg\":\"hs256\"}",
		"{\"alg\":\"HS256 \"}",
	};
	unsigned algs;
	char why[200];

	(void)state;
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		char *empty = forge(headers[i], claims(""), ""), *sig = forge(headers[i], claims(""), "c2ln");
		size_t before = cjose_allocs;

		assert_reason(check(v, empty), RC_JWT_MALFORMED); /* no third part */
		assert_reason(check(v, sig), RC_JWT_ALG);
		assert_reason(check(hs, sig), RC_JWT_ALG);
		assert_int_equal(cjose_allocs, before); /* the library never saw them */
		free(empty);
		free(sig);
	}
	/* and "none" cannot be configured */
	assert_int_equal(rc_jwt_algs_parse("HS256,none", &algs, why, sizeof(why)), RC_EINVAL);
	assert_non_null(strstr(why, "none"));
	assert_int_equal(rc_jwt_algs_parse("", &algs, why, sizeof(why)), RC_EINVAL);
	assert_int_equal(rc_jwt_algs_parse("HS256,,RS256", &algs, why, sizeof(why)), RC_EINVAL);
	assert_int_equal(rc_jwt_algs_parse("HS256,ES512", &algs, why, sizeof(why)), RC_OK);
	assert_int_equal(algs, RC_JWT_HS256 | RC_JWT_ES512);
	rc_jwt_free(v);
	rc_jwt_free(hs);
}

/*
 * The attacker knows rsa1's public key (it is public) and signs an HS256
 * token with its PEM as the HMAC secret, naming kid rsa1, against a gateway
 * that allows both HS256 and RS256. A verifier that let the token pick the
 * algorithm would HMAC with the PEM and accept it.
 */
static void test_algorithm_confusion(void **state)
{
	struct rc_jwt *v = verifier("HS256,RS256", NULL, "jwks", NULL, NULL);
	struct rc_jwt *pem_secret;
	char *forged = mint(F.pem_hmac, RC_JWT_HS256, "rsa1", claims(""));
	char *nokid = mint(F.pem_hmac, RC_JWT_HS256, NULL, claims(""));
	char *rs384 = mint(F.rsa1, RC_JWT_RS384, NULL, claims(""));
	uint8_t pem_file[sizeof(F.pem) + 1];
	char hs_jwk[256], k[80];
	size_t before = cjose_allocs;

	(void)state;
	assert_reason(check(v, forged), RC_JWT_KEY); /* kid rsa1 is an RSA key: never an HMAC secret */
	assert_reason(check(v, nokid), RC_JWT_KID);  /* no key of the set fits HS256 */
	assert_int_equal(cjose_allocs, before);	     /* refused before the library (and any crypto) */
	/* the same with an HMAC key in the set too: the kid still picks rsa1, which does not fit */
	rc_b64url_encode(F.secret, sizeof(F.secret), k);
	snprintf(hs_jwk, sizeof(hs_jwk), "{\"kty\":\"oct\",\"kid\":\"hs1\",\"k\":\"%s\"}", k);
	write_jwks("jwks-mixed", F.rsa1_pub, hs_jwk, NULL);
	rc_jwt_free(v);
	v = verifier("HS256,RS256", NULL, "jwks-mixed", NULL, NULL);
	assert_reason(check(v, forged), RC_JWT_KEY);
	assert_reason(check(v, nokid), RC_JWT_SIGNATURE); /* the one HMAC key: hs1, not the PEM */
	/* a JWK "alg" pins its key to one algorithm: rsa1 says RS256, so RS384 is refused */
	rc_jwt_free(v);
	v = verifier("RS256,RS384", NULL, "jwks-mixed", NULL, NULL);
	assert_reason(check(v, rs384), RC_JWT_KEY);
	/* control: the forged token is a well-made HS256 token, for whoever really has the PEM as secret */
	memcpy(pem_file, F.pem, F.pem_len);
	pem_file[F.pem_len] = '\n';
	write_file("pem-secret", pem_file, F.pem_len + 1);
	pem_secret = verifier("HS256", "pem-secret", NULL, NULL, NULL);
	assert_reason(check(pem_secret, forged), RC_JWT_OK);
	rc_jwt_free(pem_secret);
	rc_jwt_free(v);
	free(forged);
	free(nokid);
	free(rs384);
}

/* Replaces part i (0 header, 1 payload, 2 signature) of token by part. */
static char *replace_part(const char *token, int i, const char *part)
{
	const char *d1 = strchr(token, '.'), *d2 = strchr(d1 + 1, '.');
	char *t = malloc(strlen(token) + strlen(part) + 1);

	assert_non_null(t);
	if (i == 0)
		sprintf(t, "%s%s", part, d1);
	else if (i == 1)
		sprintf(t, "%.*s.%s%s", (int)(d1 - token), token, part, d2);
	else
		sprintf(t, "%.*s.%s", (int)(d2 - token), token, part);
	return t;
}

static void test_tampered(void **state)
{
	struct rc_jwt *hs = verifier("HS256", "secret", NULL, NULL, NULL);
	struct rc_jwt *pk = verifier("RS256,ES256", NULL, "jwks", NULL, NULL);
	const char *greedy = "{\"sub\":\"alice\",\"exp\":1700000600,\"roomcast\":{\"read\":[\"*\"],\"firehose\":true}}";
	char payload[512];
	char *tokens[3] = { mint(F.hs, RC_JWT_HS256, NULL, claims("")), mint(F.rsa1, RC_JWT_RS256, NULL, claims("")),
			    mint(F.ec1, RC_JWT_ES256, NULL, claims("")) };
	struct rc_jwt *vs[3] = { hs, pk, pk };

	(void)state;
	rc_b64url_encode((const uint8_t *)greedy, strlen(greedy), payload);
	for (int i = 0; i < 3; i++) {
		char *t = replace_part(tokens[i], 1, payload), *s = strdup(tokens[i]);
		size_t n = strlen(s);

		assert_reason(check(vs[i], t), RC_JWT_SIGNATURE);
		/* one signature bit flipped (a middle character: the last one has spare bits) */
		s[n - 10] = s[n - 10] == 'A' ? 'B' : 'A';
		assert_reason(check(vs[i], s), RC_JWT_SIGNATURE);
		free(t);
		free(s);
	}
	/* a header changed (typ added) under the old signature */
	{
		char hdr[128], *t;
		rc_b64url_encode((const uint8_t *)"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", 30, hdr);
		t = replace_part(tokens[0], 0, hdr);
		assert_reason(check(hs, t), RC_JWT_SIGNATURE);
		free(t);
	}
	for (int i = 0; i < 3; i++)
		free(tokens[i]);
	rc_jwt_free(hs);
	rc_jwt_free(pk);
}

static void test_truncated_and_not_base64url(void **state)
{
	struct rc_jwt *hs = verifier("HS256", "secret", NULL, NULL, NULL);
	char *good = mint(F.hs, RC_JWT_HS256, NULL, claims(""));
	const char *d1 = strchr(good, '.'), *d2 = strchr(d1 + 1, '.');
	size_t n = strlen(good), h = (size_t)(d1 - good), p = (size_t)(d2 - d1 - 1);
	char buf[4096];
	size_t before;

	(void)state;
	assert_reason(check(hs, good), RC_JWT_OK);
	before = cjose_allocs;
	/* parts missing, empty or extra */
	assert_reason(check_at(hs, good, (size_t)(d2 - good), NOW), RC_JWT_MALFORMED);	   /* "h.p" */
	assert_reason(check_at(hs, good, (size_t)(d2 - good) + 1, NOW), RC_JWT_MALFORMED); /* "h.p." */
	assert_reason(check_at(hs, good, h, NOW), RC_JWT_MALFORMED);			   /* "h" */
	assert_reason(check(hs, ""), RC_JWT_MALFORMED);
	assert_reason(check(hs, ".."), RC_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), "%s.c2ln", good); /* four parts */
	assert_reason(check(hs, buf), RC_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), ".%s", d1 + 1); /* no header */
	assert_reason(check(hs, buf), RC_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), "%.*s.%s", (int)h, good, d2); /* no payload: "h..s" */
	assert_reason(check(hs, buf), RC_JWT_MALFORMED);
	/* characters that are not base64url, in each part */
	static const char bad[] = { '+', '/', '=', ' ', '%', '\n', '"', '\\', '*' };
	for (size_t i = 0; i < sizeof(bad); i++) {
		size_t at[3] = { h / 2, h + 1 + p / 2, n - 5 };
		for (int k = 0; k < 3; k++) {
			memcpy(buf, good, n + 1);
			buf[at[k]] = bad[i];
			assert_reason(check(hs, buf), RC_JWT_MALFORMED);
		}
	}
	/* padding appended to the signature; a NUL inside the token */
	snprintf(buf, sizeof(buf), "%s=", good);
	assert_reason(check(hs, buf), RC_JWT_MALFORMED);
	memcpy(buf, good, n + 1);
	buf[h + 3] = '\0';
	assert_reason(check_at(hs, buf, n, NOW), RC_JWT_MALFORMED);
	/* cjose 0.6's decoder asserts (the process aborts) on "A===": it must never see it */
	assert_reason(check(hs, "A===.e30.c2ln"), RC_JWT_MALFORMED);
	assert_reason(check(hs, "eyJhbGciOiJIUzI1NiJ9.A===.c2ln"), RC_JWT_MALFORMED);
	/* the header is base64url but not a JSON object */
	snprintf(buf, sizeof(buf), "aGVsbG8%s", d1); /* "hello" */
	assert_reason(check(hs, buf), RC_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), "WzFd%s", d1); /* "[1]" */
	assert_reason(check(hs, buf), RC_JWT_MALFORMED);
	assert_int_equal(cjose_allocs, before); /* none of these reached the library */
	/* a signature shortened by whole bytes is still base64url: refused by length, before cjose */
	{
		uint8_t sig[64];
		size_t k = (size_t)(d2 + 1 - good);
		assert_int_equal(rc_b64url_decode(d2 + 1, n - k, sig), RC_OK);
		memcpy(buf, good, k);
		rc_b64url_encode(sig, 29, buf + k); /* 3 bytes of 32 missing */
		assert_reason(check(hs, buf), RC_JWT_SIGNATURE);
	}
	snprintf(buf, sizeof(buf), "%sAAAA", good);
	assert_reason(check(hs, buf), RC_JWT_SIGNATURE);
	assert_int_equal(cjose_allocs, before);
	/* a payload cut short: 4n+1 characters or spare bits set (malformed), else well-formed but unsigned */
	for (size_t cut = 1; cut <= 3; cut++) {
		snprintf(buf, sizeof(buf), "%.*s%s", (int)(h + 1 + p - cut), good, d2);
		enum rc_jwt_reason r = check(hs, buf);
		if (r != RC_JWT_MALFORMED && r != RC_JWT_SIGNATURE)
			fail_msg("payload cut by %zu: %s", cut, rc_jwt_reason_name(r));
	}
	free(good);
	rc_jwt_free(hs);
}

static void test_header_rules(void **state)
{
	struct rc_jwt *hs = verifier("HS256", "secret", NULL, NULL, NULL);
	static const char *const bad[] = {
		"{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}",
		"{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}",
		"{\"alg\":\"HS256\",\"typ\":1}",
		"{\"alg\":\"HS256\",\"kid\":1}",
		"{\"alg\":\"HS256\",\"kid\":\"\"}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *t = forge(bad[i], claims(""), "c2ln");
		assert_reason(check(hs, t), RC_JWT_MALFORMED);
		free(t);
	}
	/* a kid with a secret file: the one key is used whatever the kid (it has none to compare) */
	{
		char *t = mint(F.hs, RC_JWT_HS256, "anything", claims(""));
		assert_reason(check(hs, t), RC_JWT_OK);
		free(t);
	}
	rc_jwt_free(hs);
}

static void test_size_limit(void **state)
{
	struct rc_jwt *hs = verifier("HS256", "secret", NULL, NULL, NULL);
	char *big = malloc(16 * 1024 + 1), pad[8192], extra[8300];
	size_t before;
	bool exact = false;

	(void)state;
	/* 16 KiB of base64url in three parts: refused by size, before the library sees a byte */
	memset(big, 'A', 16 * 1024);
	big[100] = big[8000] = '.';
	big[16 * 1024] = '\0';
	before = cjose_allocs;
	assert_reason(check(hs, big), RC_JWT_TOO_LARGE);
	assert_int_equal(cjose_allocs, before);
	assert_reason(check_at(hs, big, RC_JWT_TOKEN_MAX + 1, NOW), RC_JWT_TOO_LARGE);
	/* a real token just under, at and over RC_JWT_TOKEN_MAX */
	for (size_t len = 5800; len < 6300; len++) {
		char *t;
		size_t n;

		memset(pad, 'x', len);
		pad[len] = '\0';
		snprintf(extra, sizeof(extra), "\"pad\":\"%s\"", pad);
		t = mint(F.hs, RC_JWT_HS256, NULL, claims(extra));
		n = strlen(t);
		if (n <= RC_JWT_TOKEN_MAX) {
			assert_reason(check(hs, t), RC_JWT_OK);
			exact = exact || n == RC_JWT_TOKEN_MAX;
		} else {
			assert_reason(check(hs, t), RC_JWT_TOO_LARGE);
			free(t);
			break;
		}
		free(t);
	}
	assert_true(exact);
	free(big);
	rc_jwt_free(hs);
}

/* Mints an HS256 token whose times are given as JSON members (e.g. "\"exp\":5,\"nbf\":3"). */
static char *timed(const char *times)
{
	char payload[512];

	snprintf(payload, sizeof(payload), "{\"sub\":\"alice\",%s,\"roomcast\":{\"read\":[\"lobby\"]}}", times);
	return mint(F.hs, RC_JWT_HS256, NULL, payload);
}

static void expect_times(struct rc_jwt *v, const char *times, enum rc_jwt_reason want)
{
	char *t = timed(times);
	enum rc_jwt_reason r = check(v, t);

	if (r != want)
		fail_msg("%s: %s, want %s", times, rc_jwt_reason_name(r), rc_jwt_reason_name(want));
	free(t);
}

static void test_exp_nbf_and_leeway(void **state)
{
	struct rc_jwt *v = verifier("HS256", "secret", NULL, NULL, NULL);
	char buf[128];

	(void)state;
	/* exp: valid while now < exp + leeway */
	snprintf(buf, sizeof(buf), "\"exp\":%d", NOW - 3600);
	expect_times(v, buf, RC_JWT_EXPIRED);
	snprintf(buf, sizeof(buf), "\"exp\":%d", NOW - LEEWAY);
	expect_times(v, buf, RC_JWT_EXPIRED);
	snprintf(buf, sizeof(buf), "\"exp\":%d", NOW - LEEWAY + 1);
	expect_times(v, buf, RC_JWT_OK); /* expired 29 s ago: within the leeway */
	snprintf(buf, sizeof(buf), "\"exp\":%d.5", NOW + 10);
	expect_times(v, buf, RC_JWT_OK);
	/* nbf: valid once now + leeway >= nbf */
	snprintf(buf, sizeof(buf), "\"exp\":%d,\"nbf\":%d", NOW + 600, NOW + 3600);
	expect_times(v, buf, RC_JWT_NOT_YET);
	snprintf(buf, sizeof(buf), "\"exp\":%d,\"nbf\":%d", NOW + 600, NOW + LEEWAY + 1);
	expect_times(v, buf, RC_JWT_NOT_YET);
	snprintf(buf, sizeof(buf), "\"exp\":%d,\"nbf\":%d", NOW + 600, NOW + LEEWAY);
	expect_times(v, buf, RC_JWT_OK);
	/* malformed or missing times are bad claims */
	expect_times(v, "\"nbf\":1", RC_JWT_CLAIMS); /* no exp */
	expect_times(v, "\"exp\":\"soon\"", RC_JWT_CLAIMS);
	snprintf(buf, sizeof(buf), "\"exp\":%d,\"nbf\":\"now\"", NOW + 600);
	expect_times(v, buf, RC_JWT_CLAIMS);
	snprintf(buf, sizeof(buf), "\"exp\":%d,\"iat\":true", NOW + 600);
	expect_times(v, buf, RC_JWT_CLAIMS);
	rc_jwt_free(v);

	/* leeway 0 */
	{
		struct rc_jwt_config cfg = { .algs = RC_JWT_HS256, .leeway_s = 0 };
		char path[128], msg[256];
		path_of(path, sizeof(path), "secret");
		cfg.secret_file = path;
		assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_OK);
		snprintf(buf, sizeof(buf), "\"exp\":%d", NOW);
		expect_times(v, buf, RC_JWT_EXPIRED);
		snprintf(buf, sizeof(buf), "\"exp\":%d", NOW + 1);
		expect_times(v, buf, RC_JWT_OK);
		snprintf(buf, sizeof(buf), "\"exp\":%d,\"nbf\":%d", NOW + 60, NOW + 1);
		expect_times(v, buf, RC_JWT_NOT_YET);
		rc_jwt_free(v);
		cfg.leeway_s = RC_JWT_LEEWAY_MAX_S + 1;
		assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_EINVAL);
	}
}

static void test_audience_and_issuer(void **state)
{
	struct rc_jwt *v = verifier("HS256", "secret", NULL, "roomcast", "https://auth.example");
	struct rc_jwt *open = verifier("HS256", "secret", NULL, NULL, NULL);
	static const struct {
		const char *extra;
		enum rc_jwt_reason want;
	} rows[] = {
		{ "\"aud\":\"roomcast\",\"iss\":\"https://auth.example\"", RC_JWT_OK },
		{ "\"aud\":[\"other\",\"roomcast\"],\"iss\":\"https://auth.example\"", RC_JWT_OK },
		{ "\"aud\":\"other\",\"iss\":\"https://auth.example\"", RC_JWT_AUDIENCE },
		{ "\"aud\":[\"other\"],\"iss\":\"https://auth.example\"", RC_JWT_AUDIENCE },
		{ "\"aud\":[],\"iss\":\"https://auth.example\"", RC_JWT_AUDIENCE },
		{ "\"aud\":\"Roomcast\",\"iss\":\"https://auth.example\"", RC_JWT_AUDIENCE },
		{ "\"iss\":\"https://auth.example\"", RC_JWT_AUDIENCE },
		{ "\"aud\":\"roomcast\",\"iss\":\"https://evil.example\"", RC_JWT_ISSUER },
		{ "\"aud\":\"roomcast\"", RC_JWT_ISSUER },
		{ "\"aud\":\"roomcast\",\"iss\":[\"https://auth.example\"]", RC_JWT_ISSUER },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *t = mint(F.hs, RC_JWT_HS256, NULL, claims(rows[i].extra));
		enum rc_jwt_reason r = check(v, t);
		if (r != rows[i].want)
			fail_msg("%s: %s, want %s", rows[i].extra, rc_jwt_reason_name(r),
				 rc_jwt_reason_name(rows[i].want));
		assert_reason(check(open, t), RC_JWT_OK); /* not configured: not checked */
		free(t);
	}
	rc_jwt_free(v);
	rc_jwt_free(open);
}

static void test_kid_selection(void **state)
{
	struct rc_jwt *v = verifier("RS256,ES256", NULL, "jwks", NULL, NULL);
	struct rc_jwt *two;
	char *unknown = mint(F.rsa1, RC_JWT_RS256, "nope", claims(""));
	char *nokid_rs = mint(F.rsa1, RC_JWT_RS256, NULL, claims("")); /* the key's own kid: rsa1 */
	char *wrong_type = mint(F.rsa1, RC_JWT_RS256, "ec1", claims(""));
	char *t;

	(void)state;
	assert_reason(check(v, unknown), RC_JWT_KID);
	assert_reason(check(v, nokid_rs), RC_JWT_OK);
	assert_reason(check(v, wrong_type), RC_JWT_KEY); /* kid ec1 is an EC key: RS256 does not fit */
	/* no kid at all: the one key that fits RS256 (rsa1; ec1 does not fit) */
	t = forge("{\"alg\":\"RS256\"}", claims(""), "c2ln");
	assert_reason(check(v, t), RC_JWT_SIGNATURE);
	free(t);
	{
		char why[200], *tok = NULL;
		/* rsa1's key without its kid: sign with an explicit empty header kid is impossible; copy the key */
		struct rc_jwk copy = *F.rsa1;
		copy.kid = NULL;
		assert_int_equal(
			rc_jwt_sign(&copy, RC_JWT_RS256, NULL, claims(""), strlen(claims("")), &tok, why, sizeof(why)),
			RC_OK);
		assert_reason(check(v, tok), RC_JWT_OK);
		/* with two RSA keys a token must say which */
		write_jwks("jwks-two", F.rsa1_pub, F.rsa2_pub, NULL);
		two = verifier("RS256", NULL, "jwks-two", NULL, NULL);
		assert_reason(check(two, tok), RC_JWT_KID);
		assert_reason(check(two, nokid_rs), RC_JWT_OK);
		free(tok);
		rc_jwt_free(two);
	}
	free(unknown);
	free(nokid_rs);
	free(wrong_type);
	rc_jwt_free(v);
}

/* Expects a verifier over the JWKS text to fail to load, with a message that contains want. */
static void expect_bad_jwks(const char *text, const char *want)
{
	struct rc_jwt_config cfg = { .algs = RC_JWT_ALGS_ALL, .leeway_s = LEEWAY };
	struct rc_jwt *v = (struct rc_jwt *)1;
	char path[128], msg[1024] = "";

	write_str("bad-jwks", text);
	path_of(path, sizeof(path), "bad-jwks");
	cfg.keys_file = path;
	assert_int_not_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_OK);
	assert_null(v);
	if (strstr(msg, want) == NULL)
		fail_msg("%.60s: message '%s' does not say '%s'", text, msg, want);
}

static void test_garbage_jwks(void **state)
{
	char weak[4096], dup[8192], half[4096];
	cjose_jwk_t *small;
	cjose_err err;
	char *s;

	(void)state;
	expect_bad_jwks("", "not a JWKS");
	expect_bad_jwks("garbage\n", "not a JWKS");
	expect_bad_jwks("{\"keys\":{}}", "not a JWKS");
	expect_bad_jwks("[]", "not a JWKS");
	expect_bad_jwks("{\"keys\":[]}", "no key fits");
	expect_bad_jwks("{\"keys\":[1]}", "keys[0] is not an object");
	/* cjose 0.6's decoder asserts on "A===": the members are checked first */
	expect_bad_jwks("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"A===\",\"e\":\"AQAB\"}]}",
			"\"n\" is not base64url");
	expect_bad_jwks("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"x\",\"k\":\"a2V5+w\"}]}", "\"k\" is not base64url");
	expect_bad_jwks("{\"keys\":[{\"kty\":\"EC\",\"kid\":\"x\",\"crv\":\"P-256\",\"x\":7,\"y\":\"AA\"}]}",
			"\"x\" is not base64url");
	expect_bad_jwks("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\"}]}", "keys[0] (kid x)");
	expect_bad_jwks("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"x\",\"k\":\"c2hvcnQ\"}]}", "shorter than 32");
	expect_bad_jwks("{\"keys\":[{\"kid\":\"x\",\"k\":\"c2hvcnQ\"}]}", "keys[0]");
	expect_bad_jwks("{\"keys\":[{\"kty\":\"RSA\",\"kid\":7}]}", "keys[0]");
	/* only keys roomcast skips: nothing left */
	expect_bad_jwks("{\"keys\":[{\"kty\":\"OKP\",\"kid\":\"ed\",\"crv\":\"Ed25519\",\"x\":\"AA\"}]}",
			"no key fits");
	snprintf(dup, sizeof(dup), "{\"keys\":[%s,%s]}", F.rsa1_pub, F.rsa1_pub);
	expect_bad_jwks(dup, "kid rsa1 appears twice");
	snprintf(half, sizeof(half), "{\"keys\":[%s]}", F.rsa1_pub);
	half[strlen(half) / 2] = '\0';
	expect_bad_jwks(half, "not a JWKS");
	/* an RSA key too small to trust */
	small = cjose_jwk_create_RSA_random(1024, (const uint8_t *)"\x01\x00\x01", 3, &err);
	assert_non_null(small);
	assert_non_null(s = cjose_jwk_to_json(small, false, &err));
	snprintf(weak, sizeof(weak), "{\"keys\":[%s]}", s);
	expect_bad_jwks(weak, "smaller than 2048");
	free(s);
	cjose_jwk_release(small);
}

static void test_jwks_skips_what_it_does_not_use(void **state)
{
	struct rc_jwt_config cfg = { .algs = RC_JWT_RS256, .leeway_s = LEEWAY };
	char path[128], msg[1024], enc[4096];
	struct rc_jwt *v;
	char *t = mint(F.rsa1, RC_JWT_RS256, NULL, claims(""));

	(void)state;
	/* rsa2 for encryption, an Ed25519 key, and ec1 (ES256 is not configured) */
	snprintf(enc, sizeof(enc), "%.*s,\"use\":\"enc\"}", (int)strlen(F.rsa2_pub) - 1, F.rsa2_pub);
	{
		char buf[16384];
		snprintf(buf, sizeof(buf), "{\"keys\":[%s,%s,{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"},%s]}",
			 enc, F.rsa1_pub, F.ec1_pub);
		write_str("jwks-mixed2", buf);
	}
	path_of(path, sizeof(path), "jwks-mixed2");
	cfg.keys_file = path;
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_OK);
	assert_non_null(strstr(msg, "1 key (kid rsa1 RS256), 3 skipped"));
	assert_reason(check(v, t), RC_JWT_OK);
	free(t);
	rc_jwt_free(v);
}

static void test_secret_file_rules(void **state)
{
	struct rc_jwt_config cfg = { .algs = RC_JWT_HS256, .leeway_s = LEEWAY };
	char path[128], keys[128], msg[512];
	struct rc_jwt *v = (struct rc_jwt *)1;

	(void)state;
	path_of(path, sizeof(path), "short");
	write_str("short", "0123456789abcdef0123456789abcde\n"); /* 31 bytes and a newline */
	cfg.secret_file = path;
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_EINVAL);
	assert_non_null(strstr(msg, "32-4096 bytes, not 31"));
	path_of(path, sizeof(path), "missing");
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_EIO);
	assert_non_null(strstr(msg, "cannot open"));
	/* an HMAC secret with only RSA configured */
	path_of(path, sizeof(path), "secret");
	cfg.algs = RC_JWT_RS256;
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_EINVAL);
	assert_non_null(strstr(msg, "fits none of the algorithms RS256"));
	/* both files, or neither */
	path_of(keys, sizeof(keys), "jwks");
	cfg.algs = RC_JWT_HS256;
	cfg.keys_file = keys;
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_EINVAL);
	cfg.secret_file = cfg.keys_file = NULL;
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_EINVAL);
	cfg.secret_file = "";
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_EINVAL);
	cfg.secret_file = path;
	cfg.algs = 0;
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_EINVAL);
	/* a 48-byte secret fits HS256 and HS384, not HS512 (64 bytes) */
	cfg.algs = RC_JWT_ALGS_HMAC;
	assert_int_equal(rc_jwt_new(&cfg, &v, msg, sizeof(msg)), RC_OK);
	assert_non_null(strstr(msg, "1 HMAC secret (HS256,HS384)"));
	{
		char *t = mint(F.hs, RC_JWT_HS384, NULL, claims(""));
		assert_reason(check(v, t), RC_JWT_OK);
		free(t);
	}
	rc_jwt_free(v);
}

static void test_garbage_reload_keeps_old_keys(void **state)
{
	struct rc_jwt *v;
	char *a = mint(F.rsa1, RC_JWT_RS256, NULL, claims("")), msg[512];

	(void)state;
	write_jwks("jwks-live", F.rsa1_pub, NULL, NULL);
	v = verifier("RS256", NULL, "jwks-live", NULL, NULL);
	assert_false(rc_jwt_keys_changed(v));
	write_str("jwks-live", "{\"keys\": [ {\"kty\": \"RSA\", \"n\": \"garb");
	assert_true(rc_jwt_keys_changed(v));
	assert_int_equal(rc_jwt_reload(v, msg, sizeof(msg)), RC_EINVAL);
	assert_non_null(strstr(msg, "jwks-live: not a JWKS"));
	assert_reason(check(v, a), RC_JWT_OK); /* the old keys */
	assert_false(rc_jwt_keys_changed(v));  /* the failed version is not retried until it changes */
	/* the file vanishes: nothing to load, and a reload says so, keeping the keys */
	{
		char path[128];
		path_of(path, sizeof(path), "jwks-live");
		assert_int_equal(unlink(path), 0);
	}
	assert_false(rc_jwt_keys_changed(v));
	assert_int_equal(rc_jwt_reload(v, msg, sizeof(msg)), RC_EIO);
	assert_reason(check(v, a), RC_JWT_OK);
	free(a);
	rc_jwt_free(v);
}

static void test_rotation(void **state)
{
	struct rc_jwt *v, *hs;
	char *a = mint(F.rsa1, RC_JWT_RS256, NULL, claims("")), *b = mint(F.rsa2, RC_JWT_RS256, NULL, claims(""));
	char msg[512];

	(void)state;
	write_jwks("jwks-rot", F.rsa1_pub, NULL, NULL);
	v = verifier("RS256", NULL, "jwks-rot", NULL, NULL);
	assert_reason(check(v, a), RC_JWT_OK);
	assert_reason(check(v, b), RC_JWT_KID);
	/* the overlap: both keys published */
	write_jwks("jwks-rot", F.rsa1_pub, F.rsa2_pub, NULL);
	assert_true(rc_jwt_keys_changed(v));
	assert_int_equal(rc_jwt_reload(v, msg, sizeof(msg)), RC_OK);
	assert_non_null(strstr(msg, "2 keys (kid rsa1 RS256, kid rsa2 RS256)"));
	assert_false(rc_jwt_keys_changed(v));
	assert_reason(check(v, a), RC_JWT_OK);
	assert_reason(check(v, b), RC_JWT_OK);
	/* the old key retired */
	write_jwks("jwks-rot", F.rsa2_pub, NULL, NULL);
	assert_int_equal(rc_jwt_reload(v, msg, sizeof(msg)), RC_OK);
	assert_reason(check(v, a), RC_JWT_KID);
	assert_reason(check(v, b), RC_JWT_OK);
	rc_jwt_free(v);

	/* an HMAC secret replaced: tokens of the old secret stop verifying */
	{
		uint8_t s2[40];
		struct rc_jwk *k2;
		char *old = mint(F.hs, RC_JWT_HS256, NULL, claims("")), *new;
		memset(s2, 'z', sizeof(s2));
		write_file("secret-rot", F.secret, sizeof(F.secret));
		hs = verifier("HS256", "secret-rot", NULL, NULL, NULL);
		assert_reason(check(hs, old), RC_JWT_OK);
		write_file("secret-rot", s2, sizeof(s2));
		assert_true(rc_jwt_keys_changed(hs));
		assert_int_equal(rc_jwt_reload(hs, msg, sizeof(msg)), RC_OK);
		assert_int_equal(rc_jwk_from_secret(s2, sizeof(s2), &k2, msg, sizeof(msg)), RC_OK);
		new = mint(k2, RC_JWT_HS256, NULL, claims(""));
		assert_reason(check(hs, old), RC_JWT_SIGNATURE);
		assert_reason(check(hs, new), RC_JWT_OK);
		free(old);
		free(new);
		rc_jwk_free(k2);
		rc_jwt_free(hs);
	}
	free(a);
	free(b);
}

/* Verifications on two threads while the main thread reloads: each holds the set it started with. */
struct race {
	struct rc_jwt *v;
	const char *token;
	int failures;
};

static void *race_verify(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < 300; i++) {
		struct rc_grant *g;
		if (rc_jwt_verify(r->v, r->token, strlen(r->token), NOW, &g, NULL) != RC_OK)
			r->failures++;
		rc_grant_free(g);
	}
	return NULL;
}

static void test_reload_while_verifying(void **state)
{
	char *a = mint(F.rsa1, RC_JWT_RS256, NULL, claims("")), msg[512];
	struct race r[2];
	pthread_t th[2];
	struct rc_jwt *v;

	(void)state;
	write_jwks("jwks-race", F.rsa1_pub, NULL, NULL);
	v = verifier("RS256", NULL, "jwks-race", NULL, NULL);
	for (int i = 0; i < 2; i++) {
		r[i] = (struct race){ .v = v, .token = a };
		assert_int_equal(pthread_create(&th[i], NULL, race_verify, &r[i]), 0);
	}
	for (int i = 0; i < 30; i++) {
		if (i % 2)
			write_jwks("jwks-race", F.rsa1_pub, NULL, NULL);
		else
			write_jwks("jwks-race", F.rsa2_pub, F.rsa1_pub, NULL);
		assert_int_equal(rc_jwt_reload(v, msg, sizeof(msg)), RC_OK);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(r[i].failures, 0);
	}
	free(a);
	rc_jwt_free(v);
}

static void test_claims_of_a_signed_token(void **state)
{
	struct rc_jwt *hs = verifier("HS256", "secret", NULL, NULL, NULL);
	static const char *const payloads[] = {
		"not json",
		"[1,2]",
		"{\"sub\":\"a\",\"exp\":1700000600,\"roomcast\":{\"read\":[\"bad room\"]}}",
		"{\"exp\":1700000600}",
		"{\"sub\":\"a\",\"exp\":1700000600} trailing",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		char *t = mint(F.hs, RC_JWT_HS256, NULL, payloads[i]);
		assert_reason(check(hs, t), RC_JWT_CLAIMS);
		free(t);
	}
	rc_jwt_free(hs);
}

/*
 * The warm-up the gateway runs at start: one verification per key, so the
 * first client does not pay for the crypto library's lazy start. A secret
 * signs a token that must verify through the whole path (aud and iss
 * included); a public key checks a token whose signature must be refused.
 */
static void test_warm_up(void **state)
{
	struct rc_jwt *hs = verifier("HS256", "secret", NULL, "roomcast", "https://auth.example");
	struct rc_jwt *pub = verifier("RS256,ES256", NULL, "jwks", NULL, NULL);
	unsigned keys = 0;
	char msg[256];

	(void)state;
	if (rc_jwt_warm_up(hs, NOW, &keys, msg, sizeof(msg)) != RC_OK)
		fail_msg("secret: %s", msg);
	assert_int_equal(keys, 1);
	keys = 0;
	if (rc_jwt_warm_up(pub, NOW, &keys, msg, sizeof(msg)) != RC_OK)
		fail_msg("jwks: %s", msg);
	assert_int_equal(keys, 2);
	/* the verifier is unchanged: a real token still verifies, a forged one does not */
	{
		char *t = mint(F.hs, RC_JWT_HS256, NULL,
			       claims("\"aud\":\"roomcast\",\"iss\":\"https://auth.example\""));
		assert_reason(check(hs, t), RC_JWT_OK);
		free(t);
	}
	rc_jwt_free(hs);
	rc_jwt_free(pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_tokens),
		cmocka_unit_test(test_alg_none),
		cmocka_unit_test(test_algorithm_confusion),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_truncated_and_not_base64url),
		cmocka_unit_test(test_header_rules),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_exp_nbf_and_leeway),
		cmocka_unit_test(test_audience_and_issuer),
		cmocka_unit_test(test_kid_selection),
		cmocka_unit_test(test_garbage_jwks),
		cmocka_unit_test(test_jwks_skips_what_it_does_not_use),
		cmocka_unit_test(test_secret_file_rules),
		cmocka_unit_test(test_garbage_reload_keeps_old_keys),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_reload_while_verifying),
		cmocka_unit_test(test_claims_of_a_signed_token),
		cmocka_unit_test(test_warm_up),
	};
	return cmocka_run_group_tests_name("jwt", tests, setup, teardown);
}
