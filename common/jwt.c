#include "jwt.h"

#include <cjose/cjose.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64url.h"
#include "error.h"

/* The decoded header of the longest token fits here. */
#define JWT_HEADER_MAX (RC_JWT_TOKEN_MAX / 4 * 3)

struct rc_jwt {
	unsigned algs;
	bool jwks;
	char *path;
	int64_t leeway_s;
	char *audience, *issuer; /* NULL: not checked */
	pthread_mutex_t mu;
	struct rc_jwk_set *keys; /* under mu */
	struct rc_file_id seen;	 /* under mu: the version of the file read last (ino 0: none yet) */
};

/* The three parts of a token, each non-empty canonical base64url. */
struct jwt_parts {
	const char *hdr, *payload, *sig;
	size_t hdr_len, payload_len, sig_len;
};

const char *rc_jwt_reason_name(enum rc_jwt_reason r)
{
	switch (r) {
	case RC_JWT_OK: return "ok";
	case RC_JWT_TOO_LARGE: return "too_large";
	case RC_JWT_MALFORMED: return "malformed";
	case RC_JWT_ALG: return "alg_not_allowed";
	case RC_JWT_KID: return "unknown_kid";
	case RC_JWT_KEY: return "key_mismatch";
	case RC_JWT_SIGNATURE: return "bad_signature";
	case RC_JWT_CLAIMS: return "bad_claims";
	case RC_JWT_EXPIRED: return "expired";
	case RC_JWT_NOT_YET: return "not_yet_valid";
	case RC_JWT_AUDIENCE: return "wrong_audience";
	case RC_JWT_ISSUER: return "wrong_issuer";
	case RC_JWT_NOMEM: return "out_of_memory";
	}
	return "unknown";
}

/* strdup of an optional setting: "" counts as not set. */
static int jwt_strdup_opt(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL || *s == '\0')
		return RC_OK;
	return (*out = strdup(s)) != NULL ? RC_OK : RC_ENOMEM;
}

int rc_jwt_new(const struct rc_jwt_config *cfg, struct rc_jwt **out, char *msg, size_t msglen)
{
	bool secret = cfg->secret_file != NULL && *cfg->secret_file != '\0';
	bool jwks = cfg->keys_file != NULL && *cfg->keys_file != '\0';
	struct rc_jwt *v;
	int rv;

	*out = NULL;
	if (secret == jwks) {
		snprintf(msg, msglen, "a JWT verifier needs one key file: --jwt-secret-file or --jwt-keys-file");
		return RC_EINVAL;
	}
	if ((cfg->algs & RC_JWT_ALGS_ALL) == 0 || (cfg->algs & ~(unsigned)RC_JWT_ALGS_ALL) != 0) {
		snprintf(msg, msglen, "a JWT verifier needs at least one algorithm (--jwt-alg)");
		return RC_EINVAL;
	}
	if (cfg->leeway_s < 0 || cfg->leeway_s > RC_JWT_LEEWAY_MAX_S) {
		snprintf(msg, msglen, "the leeway must be 0-%d s", RC_JWT_LEEWAY_MAX_S);
		return RC_EINVAL;
	}
	if ((v = calloc(1, sizeof(*v))) == NULL) {
		snprintf(msg, msglen, "out of memory");
		return RC_ENOMEM;
	}
	v->algs = cfg->algs;
	v->jwks = jwks;
	v->leeway_s = cfg->leeway_s;
	if (pthread_mutex_init(&v->mu, NULL) != 0) {
		free(v);
		snprintf(msg, msglen, "cannot make a mutex");
		return RC_EIO;
	}
	if ((v->path = strdup(jwks ? cfg->keys_file : cfg->secret_file)) == NULL ||
	    jwt_strdup_opt(cfg->audience, &v->audience) != RC_OK || jwt_strdup_opt(cfg->issuer, &v->issuer) != RC_OK) {
		rc_jwt_free(v);
		snprintf(msg, msglen, "out of memory");
		return RC_ENOMEM;
	}
	if ((rv = rc_jwt_reload(v, msg, msglen)) != RC_OK) {
		rc_jwt_free(v);
		return rv;
	}
	*out = v;
	return RC_OK;
}

void rc_jwt_free(struct rc_jwt *v)
{
	if (v == NULL)
		return;
	rc_jwk_set_unref(v->keys);
	pthread_mutex_destroy(&v->mu);
	free(v->path);
	free(v->audience);
	free(v->issuer);
	free(v);
}

int rc_jwt_reload(struct rc_jwt *v, char *msg, size_t msglen)
{
	struct rc_jwk_set *s = NULL, *old = NULL;
	struct rc_file_id id = { 0 };
	int rv;

	rv = rc_jwk_set_load(v->path, v->jwks, v->algs, &s, &id, msg, msglen);
	pthread_mutex_lock(&v->mu);
	if (id.ino != 0)
		v->seen = id;
	if (rv == RC_OK) {
		old = v->keys;
		v->keys = s;
	}
	pthread_mutex_unlock(&v->mu);
	rc_jwk_set_unref(old);
	return rv;
}

bool rc_jwt_keys_changed(struct rc_jwt *v)
{
	struct rc_file_id now;
	bool changed;

	if (rc_file_id_get(v->path, &now) != RC_OK)
		return false;
	pthread_mutex_lock(&v->mu);
	changed = v->seen.ino == 0 || !rc_file_id_equal(&now, &v->seen);
	pthread_mutex_unlock(&v->mu);
	return changed;
}

/* The key set verifications use now, with a reference for the caller. */
static struct rc_jwk_set *jwt_keys(struct rc_jwt *v)
{
	struct rc_jwk_set *s;

	pthread_mutex_lock(&v->mu);
	s = rc_jwk_set_ref(v->keys);
	pthread_mutex_unlock(&v->mu);
	return s;
}

/* Splits token into three non-empty canonical base64url parts. */
static bool jwt_split(const char *token, size_t len, struct jwt_parts *p)
{
	const char *end = token + len, *d1, *d2;

	if ((d1 = memchr(token, '.', len)) == NULL || (d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1))) == NULL ||
	    memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL)
		return false;
	p->hdr = token;
	p->hdr_len = (size_t)(d1 - token);
	p->payload = d1 + 1;
	p->payload_len = (size_t)(d2 - d1 - 1);
	p->sig = d2 + 1;
	p->sig_len = (size_t)(end - d2 - 1);
	return p->hdr_len > 0 && p->payload_len > 0 && p->sig_len > 0 && rc_b64url_valid(p->hdr, p->hdr_len) &&
	       rc_b64url_valid(p->payload, p->payload_len) && rc_b64url_valid(p->sig, p->sig_len);
}

/* Parses exactly json[0..len) as a JSON object; NULL when it is not one. */
static struct json_object *jwt_parse_object(const char *json, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	if (tok == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, json, (int)len);
	if (o != NULL && (json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* What the header says: alg (one bit of v->algs) and kid (NULL: none; points into hdr). */
static enum rc_jwt_reason jwt_header(struct rc_jwt *v, struct json_object *hdr, unsigned *alg, const char **kid)
{
	struct json_object *x;

	*kid = NULL;
	if (!json_object_object_get_ex(hdr, "alg", &x) || !json_object_is_type(x, json_type_string))
		return RC_JWT_ALG;
	*alg = rc_jwt_alg_from_name(json_object_get_string(x), (size_t)json_object_get_string_len(x));
	if ((*alg & v->algs) == 0)
		return RC_JWT_ALG;
	/* critical extensions roomcast does not know must be refused (RFC 7515 4.1.11): it knows none */
	if (json_object_object_get_ex(hdr, "crit", NULL))
		return RC_JWT_MALFORMED;
	if (json_object_object_get_ex(hdr, "typ", &x) &&
	    (!json_object_is_type(x, json_type_string) || (strcasecmp(json_object_get_string(x), "JWT") != 0 &&
							   strcasecmp(json_object_get_string(x), "at+jwt") != 0)))
		return RC_JWT_MALFORMED;
	if (json_object_object_get_ex(hdr, "kid", &x)) {
		if (!json_object_is_type(x, json_type_string) || json_object_get_string_len(x) == 0 ||
		    json_object_get_string_len(x) > RC_JWK_KID_MAX ||
		    strlen(json_object_get_string(x)) != (size_t)json_object_get_string_len(x))
			return RC_JWT_MALFORMED;
		*kid = json_object_get_string(x);
	}
	return RC_JWT_OK;
}

/* The signature length alg makes with key (bytes). */
static size_t jwt_sig_len(unsigned alg, const struct rc_jwk *key)
{
	switch (alg) {
	case RC_JWT_HS256: return 32;
	case RC_JWT_HS384: return 48;
	case RC_JWT_HS512: return 64;
	case RC_JWT_ES256: return 64;
	case RC_JWT_ES384: return 96;
	case RC_JWT_ES512: return 132;
	}
	return key->sig_len; /* RSA: the modulus */
}

/* True when the aud claim (a string or an array of strings) holds want. */
static bool jwt_aud_has(struct json_object *claims, const char *want)
{
	struct json_object *aud;

	if (!json_object_object_get_ex(claims, "aud", &aud))
		return false;
	if (json_object_is_type(aud, json_type_string))
		return strcmp(json_object_get_string(aud), want) == 0;
	if (!json_object_is_type(aud, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(aud); i++) {
		struct json_object *e = json_object_array_get_idx(aud, i);
		if (json_object_is_type(e, json_type_string) && strcmp(json_object_get_string(e), want) == 0)
			return true;
	}
	return false;
}

/* The checks of the claims after the signature: times, audience, issuer, and the grant. */
static enum rc_jwt_reason jwt_claims(struct rc_jwt *v, struct json_object *claims, int64_t now, struct rc_grant **out)
{
	struct rc_grant *g;
	struct json_object *iss;
	char why[160];
	int64_t t;
	int rv;

	if ((rv = rc_grant_parse(claims, &g, why, sizeof(why))) != RC_OK)
		return rv == RC_ENOMEM ? RC_JWT_NOMEM : RC_JWT_CLAIMS;
	if (now >= g->exp + v->leeway_s) {
		rc_grant_free(g);
		return RC_JWT_EXPIRED;
	}
	rv = rc_claims_numeric_date(claims, "nbf", &t);
	if (rv == RC_OK && now + v->leeway_s < t) {
		rc_grant_free(g);
		return RC_JWT_NOT_YET;
	}
	if (rv == RC_EINVAL || rc_claims_numeric_date(claims, "iat", &t) == RC_EINVAL) {
		rc_grant_free(g);
		return RC_JWT_CLAIMS;
	}
	if (v->audience != NULL && !jwt_aud_has(claims, v->audience)) {
		rc_grant_free(g);
		return RC_JWT_AUDIENCE;
	}
	if (v->issuer != NULL &&
	    (!json_object_object_get_ex(claims, "iss", &iss) || !json_object_is_type(iss, json_type_string) ||
	     strcmp(json_object_get_string(iss), v->issuer) != 0)) {
		rc_grant_free(g);
		return RC_JWT_ISSUER;
	}
	*out = g;
	return RC_JWT_OK;
}

/* Steps 4-6 (jwt.h) with cjose, on a token whose shape and header passed. */
static enum rc_jwt_reason jwt_check_signed(struct rc_jwt *v, const char *token, size_t len, const struct jwt_parts *p,
					   unsigned alg, const char *kid, int64_t now, struct rc_grant **out)
{
	struct rc_jwk_set *keys = jwt_keys(v);
	const struct rc_jwk *key;
	enum rc_jwt_reason r;
	cjose_jws_t *jws = NULL;
	cjose_header_t *hdr;
	cjose_err err = { 0 };
	struct json_object *claims = NULL;
	const char *cj_alg, *cj_kid;
	uint8_t *pt;
	size_t pt_len;
	int rv;

	if ((rv = rc_jwk_set_find(keys, kid, alg, &key)) != RC_OK) {
		r = rv == RC_EINVAL ? RC_JWT_KEY : RC_JWT_KID;
		goto out_unref;
	}
	if (rc_b64url_decoded_len(p->sig_len) != jwt_sig_len(alg, key)) {
		r = RC_JWT_SIGNATURE;
		goto out_unref;
	}
	if ((jws = cjose_jws_import(token, len, &err)) == NULL) {
		r = err.code == CJOSE_ERR_NO_MEMORY ? RC_JWT_NOMEM : RC_JWT_MALFORMED;
		goto out_unref;
	}
	/* cjose parses the header with jansson: it must see the alg and kid that json-c saw */
	hdr = cjose_jws_get_protected(jws);
	cj_alg = cjose_header_get(hdr, CJOSE_HDR_ALG, &err);
	cj_kid = cjose_header_get(hdr, CJOSE_HDR_KID, &err);
	if (cj_alg == NULL || strcmp(cj_alg, rc_jwt_alg_name(alg)) != 0 || (cj_kid == NULL) != (kid == NULL) ||
	    (kid != NULL && strcmp(cj_kid, kid) != 0)) {
		r = RC_JWT_MALFORMED;
		goto out_release;
	}
	if (!cjose_jws_verify(jws, key->cj, &err)) {
		r = err.code == CJOSE_ERR_NO_MEMORY ? RC_JWT_NOMEM : RC_JWT_SIGNATURE;
		goto out_release;
	}
	if (!cjose_jws_get_plaintext(jws, &pt, &pt_len, &err) ||
	    (claims = jwt_parse_object((const char *)pt, pt_len)) == NULL) {
		r = RC_JWT_CLAIMS;
		goto out_release;
	}
	r = jwt_claims(v, claims, now, out);
	json_object_put(claims);
out_release:
	cjose_jws_release(jws);
out_unref:
	rc_jwk_set_unref(keys);
	return r;
}

static enum rc_jwt_reason jwt_check(struct rc_jwt *v, const char *token, size_t len, int64_t now, struct rc_grant **out)
{
	uint8_t buf[JWT_HEADER_MAX];
	struct jwt_parts p;
	struct json_object *hdr;
	enum rc_jwt_reason r;
	const char *kid;
	unsigned alg = 0;

	if (len > RC_JWT_TOKEN_MAX)
		return RC_JWT_TOO_LARGE;
	if (!jwt_split(token, len, &p) || rc_b64url_decode(p.hdr, p.hdr_len, buf) != RC_OK ||
	    (hdr = jwt_parse_object((const char *)buf, rc_b64url_decoded_len(p.hdr_len))) == NULL)
		return RC_JWT_MALFORMED;
	/* alg and kid are checked before the library sees the token: it would take alg "none" */
	if ((r = jwt_header(v, hdr, &alg, &kid)) == RC_JWT_OK)
		r = jwt_check_signed(v, token, len, &p, alg, kid, now, out);
	json_object_put(hdr);
	return r;
}

int rc_jwt_verify(struct rc_jwt *v, const char *token, size_t len, int64_t now, struct rc_grant **grant,
		  enum rc_jwt_reason *reason)
{
	enum rc_jwt_reason r;

	*grant = NULL;
	r = jwt_check(v, token, len, now, grant);
	if (reason != NULL)
		*reason = r;
	return r == RC_JWT_OK ? RC_OK : r == RC_JWT_NOMEM ? RC_ENOMEM : RC_EINVAL;
}

/* The lowest bit of algs. */
static unsigned jwt_first_alg(unsigned algs)
{
	return algs & (~algs + 1);
}

/* header.payload. plus sig_len zero bytes, base64url; NULL when out of memory. */
static char *jwt_unsigned(const char *header, const char *payload, size_t sig_len)
{
	size_t hl = strlen(header), pl = strlen(payload);
	size_t n = rc_b64url_encoded_len(hl) + rc_b64url_encoded_len(pl) + rc_b64url_encoded_len(sig_len) + 3;
	uint8_t *zero = calloc(1, sig_len);
	char *t = malloc(n), *p = t;

	if (t == NULL || zero == NULL) {
		free(zero);
		free(t);
		return NULL;
	}
	p += rc_b64url_encode((const uint8_t *)header, hl, p);
	*p++ = '.';
	p += rc_b64url_encode((const uint8_t *)payload, pl, p);
	*p++ = '.';
	p += rc_b64url_encode(zero, sig_len, p);
	*p = '\0';
	free(zero);
	return t;
}

/* One warm-up verification with key k (jwt.h); RC_OK, or RC_EINVAL/RC_ENOMEM with msg. */
static int jwt_warm_key(struct rc_jwt *v, const struct rc_jwk *k, int64_t now, char *msg, size_t msglen)
{
	unsigned alg = jwt_first_alg(k->algs & v->algs);
	bool secret = (alg & RC_JWT_ALGS_HMAC) != 0;
	struct json_object *hdr = json_object_new_object(), *claims = json_object_new_object();
	enum rc_jwt_reason want = secret ? RC_JWT_OK : RC_JWT_SIGNATURE, r;
	struct rc_grant *g = NULL;
	char *token = NULL, why[256];
	int rv = RC_ENOMEM;

	snprintf(msg, msglen, "out of memory");
	if (hdr == NULL || claims == NULL ||
	    json_object_object_add(hdr, "alg", json_object_new_string(rc_jwt_alg_name(alg))) != 0 ||
	    json_object_object_add(hdr, "typ", json_object_new_string("JWT")) != 0 ||
	    (k->kid != NULL && json_object_object_add(hdr, "kid", json_object_new_string(k->kid)) != 0) ||
	    json_object_object_add(claims, "sub", json_object_new_string("roomcast-warm-up")) != 0 ||
	    json_object_object_add(claims, "exp", json_object_new_int64(now + 300)) != 0 ||
	    (v->audience != NULL && json_object_object_add(claims, "aud", json_object_new_string(v->audience)) != 0) ||
	    (v->issuer != NULL && json_object_object_add(claims, "iss", json_object_new_string(v->issuer)) != 0))
		goto out;
	if (secret) {
		const char *p = json_object_to_json_string_ext(claims, JSON_C_TO_STRING_PLAIN);
		if ((rv = rc_jwt_sign(k, alg, NULL, p, strlen(p), &token, why, sizeof(why))) != RC_OK) {
			snprintf(msg, msglen, "the key%s%s cannot sign: %s", k->kid ? " " : "", k->kid ? k->kid : "",
				 why);
			goto out;
		}
	} else if ((token = jwt_unsigned(json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN),
					 json_object_to_json_string_ext(claims, JSON_C_TO_STRING_PLAIN),
					 jwt_sig_len(alg, k))) == NULL) {
		goto out;
	}
	rc_jwt_verify(v, token, strlen(token), now, &g, &r);
	rc_grant_free(g);
	rv = RC_OK;
	if (r != want) {
		snprintf(msg, msglen, "the key%s%s (%s): a warm-up token was %s, expected %s", k->kid ? " " : "",
			 k->kid ? k->kid : "", rc_jwt_alg_name(alg), rc_jwt_reason_name(r), rc_jwt_reason_name(want));
		rv = r == RC_JWT_NOMEM ? RC_ENOMEM : RC_EINVAL;
	}
out:
	free(token);
	json_object_put(hdr);
	json_object_put(claims);
	return rv;
}

int rc_jwt_warm_up(struct rc_jwt *v, int64_t now, unsigned *keys, char *msg, size_t msglen)
{
	struct rc_jwk_set *s = jwt_keys(v);
	int rv = RC_OK;

	*keys = 0;
	for (unsigned i = 0; i < s->n && rv == RC_OK; i++) {
		if ((s->keys[i].algs & v->algs) == 0)
			continue;
		if ((rv = jwt_warm_key(v, &s->keys[i], now, msg, msglen)) == RC_OK)
			(*keys)++;
	}
	rc_jwk_set_unref(s);
	return rv;
}

int rc_jwt_sign(const struct rc_jwk *key, unsigned alg, const char *kid, const char *payload, size_t len, char **token,
		char *why, size_t whylen)
{
	cjose_header_t *hdr;
	cjose_jws_t *jws = NULL;
	cjose_err err = { 0 };
	const char *s = NULL;
	int rv = RC_ENOMEM;

	*token = NULL;
	if ((alg & (alg - 1)) != 0 || (key->algs & alg) == 0) {
		snprintf(why, whylen, "the key cannot sign %s", rc_jwt_alg_name(alg));
		return RC_EINVAL;
	}
	if (kid == NULL)
		kid = key->kid;
	if ((hdr = cjose_header_new(&err)) == NULL ||
	    !cjose_header_set(hdr, CJOSE_HDR_ALG, rc_jwt_alg_name(alg), &err) ||
	    !cjose_header_set(hdr, "typ", "JWT", &err) ||
	    (kid != NULL && !cjose_header_set(hdr, CJOSE_HDR_KID, kid, &err))) {
		snprintf(why, whylen, "out of memory");
		goto out_release;
	}
	if ((jws = cjose_jws_sign(key->cj, hdr, (const uint8_t *)payload, len, &err)) == NULL ||
	    !cjose_jws_export(jws, &s, &err) || s == NULL) {
		snprintf(why, whylen, "cjose cannot sign: %s", err.message ? err.message : "?");
		rv = err.code == CJOSE_ERR_NO_MEMORY ? RC_ENOMEM : RC_EINVAL;
		goto out_release;
	}
	if ((*token = strdup(s)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out_release;
	}
	rv = RC_OK;
out_release:
	cjose_jws_release(jws);
	cjose_header_release(hdr);
	return rv;
}
