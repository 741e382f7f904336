/*
 * jwt.h - verifying roomcast's tokens (JWS compact serialization, RFC 7515/7519).
 *
 * A verifier holds the configuration (the algorithms allowed, the leeway,
 * the audience and issuer required) and the current key set (jwk.h), read
 * from an HMAC secret file or a JWKS file. rc_jwt_verify checks a token in
 * this order, and stops at the first failure:
 *
 *   1. size: at most RC_JWT_TOKEN_MAX bytes (before anything else);
 *   2. shape: three non-empty parts of canonical base64url (b64url.h);
 *   3. header: a JSON object whose "alg" is one of the configured algorithms
 *      (so never "none", and never just what the token asks for), an
 *      optional string "kid", no "crit", "typ" absent or "JWT"/"at+jwt";
 *      "jwk", "jku", "x5u" and the like are ignored: keys come only from
 *      the configured file;
 *   4. key: chosen by kid (jwk.h rc_jwk_set_find); its type must fit alg (an
 *      RSA public key is never an HMAC secret); the signature's length must
 *      be the algorithm's (cjose 0.6 compares an HMAC over the expected
 *      length before it checks the length of the one it got);
 *   5. signature: cjose_jws_verify (HMACs compared in constant time by
 *      cjose_const_memcmp; RSA PKCS#1 v1.5 and ECDSA by OpenSSL);
 *   6. claims: a JSON object; the grant (grant.h: sub, exp, roomcast...);
 *      exp (required) and nbf (optional) with the leeway; iat a number if
 *      present; aud (contains the configured audience) and iss (equals the
 *      configured issuer) when those are configured.
 *
 * Threads: rc_jwt_verify, rc_jwt_reload and rc_jwt_keys_changed may be
 * called from any thread, concurrently: a reload swaps the key set under a
 * mutex, and each verification holds a reference to the set it started with.
 * rc_jwt_new and rc_jwt_free are not concurrent with anything.
 */
#ifndef RC_JWT_H
#define RC_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grant.h"
#include "jwk.h"

/* The longest token verified (bytes); a longer one is refused before any decoding or crypto. */
#define RC_JWT_TOKEN_MAX 8192

/* Clock skew allowed on exp and nbf (seconds): the default and the bounds of --jwt-leeway-s. */
#define RC_JWT_LEEWAY_DEFAULT_S 30
#define RC_JWT_LEEWAY_MAX_S	3600

/* Why a token was refused: for logs and metrics; a client sees only 401. */
enum rc_jwt_reason {
	RC_JWT_OK = 0,
	RC_JWT_TOO_LARGE, /* over RC_JWT_TOKEN_MAX */
	RC_JWT_MALFORMED, /* not three base64url parts, header not JSON, crit, bad typ or kid */
	RC_JWT_ALG,	  /* alg missing, none, unknown or not configured */
	RC_JWT_KID,	  /* no key with this kid (or no kid and not exactly one key fits) */
	RC_JWT_KEY,	  /* the key chosen does not fit alg (algorithm confusion) */
	RC_JWT_SIGNATURE, /* wrong length, or does not verify */
	RC_JWT_CLAIMS,	  /* payload not a JSON object, or a claim malformed (grant.h) */
	RC_JWT_EXPIRED,	  /* now >= exp + leeway */
	RC_JWT_NOT_YET,	  /* now + leeway < nbf */
	RC_JWT_AUDIENCE,  /* aud does not contain the configured audience */
	RC_JWT_ISSUER,	  /* iss is not the configured issuer */
	RC_JWT_NOMEM,	  /* out of memory: the server's failure, not the token's */
};

/* A short stable name for logs and metric labels ("expired", "bad_signature", ...). */
const char *rc_jwt_reason_name(enum rc_jwt_reason r);

struct rc_jwt_config {
	unsigned algs;		 /* RC_JWT_* bits (rc_jwt_algs_parse); at least one */
	const char *secret_file; /* an HMAC secret (jwk.h); or */
	const char *keys_file;	 /* a JWKS: exactly one of the two is set */
	int64_t leeway_s;	 /* 0..RC_JWT_LEEWAY_MAX_S */
	const char *audience;	 /* NULL or "": aud is not checked */
	const char *issuer;	 /* NULL or "": iss is not checked */
};

struct rc_jwt;

/*
 * Checks cfg (copied: it need not outlive the call) and loads the keys.
 * Returns RC_OK with *out and msg holding a summary of the keys for the log,
 * or RC_EINVAL/RC_EIO/RC_ETOOBIG/RC_ENOMEM with the reason in msg.
 */
int rc_jwt_new(const struct rc_jwt_config *cfg, struct rc_jwt **out, char *msg, size_t msglen);

/* Frees v and its keys (NULL is a no-op). No call on v may be running. */
void rc_jwt_free(struct rc_jwt *v);

/*
 * Reads the key file again and, only if it loads, makes it the key set that
 * verifications starting from now use. A failed reload keeps the old keys
 * and returns the error with its reason in msg (the caller logs it); a
 * successful one returns RC_OK with a summary in msg. Call it on SIGHUP and
 * when rc_jwt_keys_changed says so.
 */
int rc_jwt_reload(struct rc_jwt *v, char *msg, size_t msglen);

/*
 * True when the key file now differs (device, inode, size or mtime) from the
 * version the last load or reload attempt read, failed ones included: the
 * caller polls it (a timer, or uv_fs_poll, which also survives the file
 * being replaced by a rename) and reloads when it says true. A file that
 * cannot be stat'ed (being replaced) is not "changed": nothing to read yet.
 */
bool rc_jwt_keys_changed(struct rc_jwt *v);

/*
 * Verifies token[0..len) at time now (unix seconds) as described on top.
 * Returns RC_OK with *grant (caller frees with rc_grant_free); RC_EINVAL
 * when the token is refused (answer 401), or RC_ENOMEM (answer 503): then
 * *grant is NULL. *reason (may be NULL) says why.
 */
int rc_jwt_verify(struct rc_jwt *v, const char *token, size_t len, int64_t now, struct rc_grant **grant,
		  enum rc_jwt_reason *reason);

/*
 * Verifies one token per key of the current set at time now, before any
 * client's: the first verification is what starts the crypto library (its
 * provider and algorithm tables, and ~2 MB of its code paged in, measured
 * in docs/BENCHMARKS.md), and a key the library cannot use shows here. A
 * secret signs a token (with the configured aud and iss) that must verify;
 * a public key gets a token with an all-zero signature that must be refused
 * as bad_signature. Returns RC_OK with *keys (how many were used), or an
 * error with the reason in msg. Any thread; the gateway's main, at start.
 */
int rc_jwt_warm_up(struct rc_jwt *v, int64_t now, unsigned *keys, char *msg, size_t msglen);

/*
 * Signs payload[0..len) (the claims, JSON) with key and alg, which the key
 * must fit; the header is {"alg","typ":"JWT"} plus "kid" (kid, or the key's
 * own when kid is NULL; none when both are NULL). Returns RC_OK with *token
 * (NUL-terminated; caller frees), or an error with the reason in why.
 * For `roomcast token` and tests; any thread.
 */
int rc_jwt_sign(const struct rc_jwk *key, unsigned alg, const char *kid, const char *payload, size_t len, char **token,
		char *why, size_t whylen);

#endif
