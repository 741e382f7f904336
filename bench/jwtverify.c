/*
 * roomcast-jwtverify: the CPU one token verification costs (common/jwt.c),
 * what a gateway with --auth jwt spends per stream opened or POST.
 *
 *   roomcast-jwtverify [--alg HS256|RS256|ES256] [--count N] [--rooms R]
 *
 * Makes a key (a 48-byte HMAC secret, a 2048-bit RSA key or a P-256 key) in
 * a temporary folder, mints one token like `roomcast token` does (sub, jti,
 * iat, exp, R read patterns, one publish entry), and verifies it N times on
 * one thread: the whole rc_jwt_verify (shape, header, key, signature,
 * claims, grant) and rc_grant_free. Prints the wall time per verification
 * (mean, and the best of 5 rounds of N/5, less disturbed by the other
 * processes of a shared machine) and the token's size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "jwt.h"

#define ROUNDS 5

static int usage(void)
{
	fprintf(stderr, "usage: roomcast-jwtverify [--alg HS256|RS256|ES256] [--count N] [--rooms R]\n");
	return 2;
}

/* Writes text to dir/name; returns the path (static) or NULL. */
static const char *write_key(const char *dir, const char *name, const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL || fputs(text, f) == EOF || fclose(f) != 0)
		return NULL;
	return path;
}

int main(int argc, char **argv)
{
	const char *alg_name = "HS256";
	long count = 200000, rooms = 3;
	char dir[] = "/tmp/roomcast-jwtverify-XXXXXX", why[1024], payload[4096], jwks[4096];
	struct rc_jwt_config cfg = { .leeway_s = RC_JWT_LEEWAY_DEFAULT_S };
	struct rc_jwt *v = NULL;
	struct rc_jwk *key = NULL;
	char *priv = NULL, *pub = NULL, *token = NULL;
	const char *path;
	unsigned alg;
	size_t n = 0;
	double best = 0;
	uint64_t t0, total;
	int64_t now = (int64_t)time(NULL);
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--alg") == 0 && i + 1 < argc)
			alg_name = argv[++i];
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = atol(argv[++i]);
		else if (strcmp(argv[i], "--rooms") == 0 && i + 1 < argc)
			rooms = atol(argv[++i]);
		else
			return usage();
	}
	alg = rc_jwt_alg_from_name(alg_name, strlen(alg_name));
	if (alg == 0 || count < ROUNDS || rooms < 0 || rooms > 100)
		return usage();
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	cfg.algs = alg;
	if (rc_jwk_generate(alg, "bench", &priv, &pub, why, sizeof(why)) != RC_OK)
		goto out_fail;
	if (pub == NULL) { /* HMAC: priv is the secret's text */
		if ((path = write_key(dir, "secret", priv)) == NULL)
			goto out_io;
		cfg.secret_file = path;
		if (rc_jwk_from_secret((const uint8_t *)priv, strlen(priv), &key, why, sizeof(why)) != RC_OK)
			goto out_fail;
	} else {
		snprintf(jwks, sizeof(jwks), "{\"keys\":[%s]}", pub);
		if ((path = write_key(dir, "jwks", jwks)) == NULL)
			goto out_io;
		cfg.keys_file = path;
		if (rc_jwk_from_json(priv, strlen(priv), &key, why, sizeof(why)) != RC_OK)
			goto out_fail;
	}
	if (rc_jwt_new(&cfg, &v, why, sizeof(why)) != RC_OK)
		goto out_fail;
	n += (size_t)snprintf(payload + n, sizeof(payload) - n,
			      "{\"sub\":\"user-1234\",\"jti\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\",\"iat\":%lld,"
			      "\"exp\":%lld,\"roomcast\":{\"read\":[",
			      (long long)now, (long long)now + 3600);
	for (long i = 0; i < rooms; i++)
		n += (size_t)snprintf(payload + n, sizeof(payload) - n, "%s\"team-%ld:*\"", i ? "," : "", i);
	snprintf(payload + n, sizeof(payload) - n, "],\"publish\":[\"lobby\"],\"firehose\":false}}");
	if (rc_jwt_sign(key, alg, NULL, payload, strlen(payload), &token, why, sizeof(why)) != RC_OK)
		goto out_fail;

	total = 0;
	for (int r = 0; r < ROUNDS; r++) {
		long per = count / ROUNDS;
		double ns;

		t0 = rb_mono_ns();
		for (long i = 0; i < per; i++) {
			struct rc_grant *g;
			if (rc_jwt_verify(v, token, strlen(token), now, &g, NULL) != RC_OK) {
				snprintf(why, sizeof(why), "the token does not verify");
				goto out_fail;
			}
			rc_grant_free(g);
		}
		total += rb_mono_ns() - t0;
		ns = (double)(rb_mono_ns() - t0) / (double)per;
		if (r == 0 || ns < best)
			best = ns;
	}
	printf("alg=%s token_bytes=%zu rooms=%ld verifications=%ld mean_us=%.2f best_round_us=%.2f\n", alg_name,
	       strlen(token), rooms, count / ROUNDS * ROUNDS,
	       (double)total / (double)(count / ROUNDS * ROUNDS) / 1000.0, best / 1000.0);
	rc = 0;
	goto out_free;
out_io:
	snprintf(why, sizeof(why), "cannot write a key in %s", dir);
out_fail:
	fprintf(stderr, "roomcast-jwtverify: %s\n", why);
out_free:
	free(token);
	free(priv);
	free(pub);
	rc_jwk_free(key);
	rc_jwt_free(v);
	snprintf(jwks, sizeof(jwks), "%s/secret", dir);
	unlink(jwks);
	snprintf(jwks, sizeof(jwks), "%s/jwks", dir);
	unlink(jwks);
	rmdir(dir);
	return rc;
}
