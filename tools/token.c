#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "grant.h"
#include "jwk.h"
#include "jwt.h"

#define TOKEN_EXIT_FAIL	 1
#define TOKEN_EXIT_USAGE 2
/* The longest --ttl: a year. Longer-lived credentials are --publish-token's job. */
#define TOKEN_TTL_MAX_S (366 * 24 * 3600)

static int token_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "roomcast: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return TOKEN_EXIT_USAGE;
}

/* Parses "90", "90s", "30m", "1h", "7d" into seconds (1..TOKEN_TTL_MAX_S); -1 when it is not one. */
static int64_t token_ttl(const char *s)
{
	char *end;
	long long n;
	int64_t mul = 1;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0)
		return -1;
	switch (*end) {
	case '\0': break;
	case 's': mul = 1; break;
	case 'm': mul = 60; break;
	case 'h': mul = 3600; break;
	case 'd': mul = 86400; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (n <= 0 || n > TOKEN_TTL_MAX_S / mul)
		return -1;
	return (int64_t)n * mul;
}

/* Adds the comma-separated entries of list to arr; returns false (after a message) on a bad one. */
static bool token_entries(const char *list, bool publish, struct json_object *arr, const char *flag)
{
	const char *p = list;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (!rc_grant_entry_valid(p, len, publish)) {
			fprintf(stderr,
				"roomcast: bad %s entry '%.*s': a room id (1-128 bytes of [A-Za-z0-9._:@-]), a prefix "
				"ending in '*' (team-42:*)%s\n",
				flag, (int)(len > 200 ? 200 : len), p, publish ? ", or $global" : "");
			return false;
		}
		json_object_array_add(arr, json_object_new_string_len(p, (int)len));
		p = end ? end + 1 : NULL;
	}
	return true;
}

/* The claims of o at time now, or NULL (after a message) when an option is bad. */
static struct json_object *token_claims(const struct cli_token_opts *o, int64_t now, int64_t ttl)
{
	struct json_object *c = json_object_new_object(), *rc = json_object_new_object();
	struct json_object *read = json_object_new_array(), *pub = json_object_new_array();
	char jti[33];

	json_object_object_add(c, "sub", json_object_new_string(o->sub));
	if (o->jti != NULL) {
		json_object_object_add(c, "jti", json_object_new_string(o->jti));
	} else {
		/* a random id, so that the token can be revoked by id */
		uint8_t r[16];
		if (getrandom(r, sizeof(r), 0) == (ssize_t)sizeof(r)) {
			for (size_t i = 0; i < sizeof(r); i++)
				snprintf(jti + 2 * i, 3, "%02x", r[i]);
			json_object_object_add(c, "jti", json_object_new_string(jti));
		}
	}
	json_object_object_add(c, "iat", json_object_new_int64(now));
	json_object_object_add(c, "exp", json_object_new_int64(now + ttl));
	if (o->aud != NULL)
		json_object_object_add(c, "aud", json_object_new_string(o->aud));
	if (o->iss != NULL)
		json_object_object_add(c, "iss", json_object_new_string(o->iss));
	json_object_object_add(rc, "read", read);
	json_object_object_add(rc, "publish", pub);
	json_object_object_add(rc, "firehose", json_object_new_boolean(o->firehose));
	json_object_object_add(c, "roomcast", rc);
	if (!token_entries(o->rooms, false, read, "--rooms") || !token_entries(o->publish, true, pub, "--publish")) {
		json_object_put(c);
		return NULL;
	}
	if (o->publish_global)
		json_object_array_add(pub, json_object_new_string(RC_GRANT_GLOBAL));
	return c;
}

int cli_token(const struct cli_token_opts *o)
{
	struct json_object *claims;
	struct rc_jwk *key;
	char why[512], *token;
	const char *payload;
	unsigned alg;
	int64_t ttl = token_ttl(o->ttl ? o->ttl : "1h");

	if ((o->secret_file == NULL) == (o->key_file == NULL))
		return token_usage("token needs one of --secret-file (HS256) or --key-file (a private JWK)%s", "");
	if (o->sub == NULL || *o->sub == '\0' || strlen(o->sub) > RC_GRANT_ID_MAX)
		return token_usage("token needs --sub (1-255 bytes)%s", "");
	if (ttl < 0)
		return token_usage("bad --ttl '%s': seconds, or a number with s, m, h or d (at most 366d)", o->ttl);
	if (o->jti != NULL && (*o->jti == '\0' || strlen(o->jti) > RC_GRANT_ID_MAX))
		return token_usage("bad --jti '%s': 1-255 bytes", o->jti);
	if ((claims = token_claims(o, (int64_t)time(NULL), ttl)) == NULL)
		return TOKEN_EXIT_USAGE;
	if (rc_jwk_load_signing(o->secret_file ? o->secret_file : o->key_file, o->secret_file != NULL, &key, why,
				sizeof(why)) != RC_OK) {
		json_object_put(claims);
		fprintf(stderr, "roomcast: %s\n", why);
		return TOKEN_EXIT_FAIL;
	}
	alg = key->algs & -key->algs; /* the key's first algorithm: HS256, RS256, or its curve's ES */
	if (o->alg != NULL && (alg = rc_jwt_alg_from_name(o->alg, strlen(o->alg))) == 0) {
		rc_jwk_free(key);
		json_object_put(claims);
		return token_usage("bad --alg '%s'", o->alg);
	}
	payload = json_object_to_json_string_ext(claims, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (rc_jwt_sign(key, alg, o->kid, payload, strlen(payload), &token, why, sizeof(why)) != RC_OK) {
		rc_jwk_free(key);
		json_object_put(claims);
		fprintf(stderr, "roomcast: %s\n", why);
		return TOKEN_EXIT_FAIL;
	}
	printf("%s\n", token);
	free(token);
	rc_jwk_free(key);
	json_object_put(claims);
	return fflush(stdout) == 0 ? 0 : TOKEN_EXIT_FAIL;
}

/* Writes text and a newline to path (mode: 0600 for private keys), or to stdout when path is NULL. */
static int token_write(const char *path, const char *text, mode_t mode)
{
	FILE *f = stdout;
	int fd;

	if (path != NULL) {
		if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0 ||
		    (f = fdopen(fd, "w")) == NULL) {
			fprintf(stderr, "roomcast: cannot write %s: %s\n", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return TOKEN_EXIT_FAIL;
		}
	}
	fprintf(f, "%s\n", text);
	if ((path != NULL ? fclose(f) : fflush(f)) != 0) {
		fprintf(stderr, "roomcast: cannot write %s: %s\n", path ? path : "stdout", strerror(errno));
		return TOKEN_EXIT_FAIL;
	}
	return 0;
}

int cli_keygen(const struct cli_token_opts *o)
{
	unsigned alg = o->alg ? rc_jwt_alg_from_name(o->alg, strlen(o->alg)) : 0;
	char *priv, *pub, why[256], *jwks;
	int rc;

	if (alg == 0)
		return token_usage("keygen needs --alg: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384 or "
				   "ES512%s",
				   "");
	if ((alg & RC_JWT_ALGS_HMAC) == 0 && (o->kid == NULL || o->out == NULL))
		return token_usage("keygen --alg %s needs --kid and --out (the private key's file)", o->alg);
	if (rc_jwk_generate(alg, o->kid, &priv, &pub, why, sizeof(why)) != RC_OK) {
		fprintf(stderr, "roomcast: %s\n", why);
		return TOKEN_EXIT_FAIL;
	}
	rc = token_write(o->out, priv, 0600);
	if (rc == 0 && pub != NULL) {
		size_t n = strlen(pub) + 16;
		if ((jwks = malloc(n)) == NULL) {
			rc = TOKEN_EXIT_FAIL;
		} else {
			snprintf(jwks, n, "{\"keys\":[%s]}", pub);
			rc = token_write(o->jwks_out, jwks, 0644);
			free(jwks);
		}
	}
	explicit_bzero(priv, strlen(priv));
	free(priv);
	free(pub);
	return rc;
}
