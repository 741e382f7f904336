/*
 * jwk.h - the keys that verify and sign tokens, and the algorithms they fit.
 *
 * Keys come from a file: an HMAC secret (the file's bytes), a JWKS
 * ({"keys": [JWK, ...]}, RFC 7517), or, to sign, one private JWK. cjose
 * (libcjose 0.6) holds the key material; this module decides which key may
 * be used with which algorithm, so that a token's header never does:
 *
 * - a key fits the algorithms of its type only: an "oct" key HS256/384/512
 *   (and only those whose hash is no longer than the key: at least 32, 48,
 *   64 bytes), an RSA key of at least 2048 bits RS256/384/512, an EC key
 *   the ES algorithm of its curve (P-256 ES256, P-384 ES384, P-521 ES512);
 *   a JWK's own "alg" narrows that to one, and the configured algorithms
 *   narrow it again. An RSA public key is never an HMAC secret, whatever a
 *   token says (the "algorithm confusion" attack);
 * - every base64url member of a JWK is checked here (b64url.h) before cjose
 *   decodes it: cjose 0.6's decoder stops at '=' and asserts on some
 *   malformed input.
 *
 * A key set is immutable once loaded and refcounted (atomically): a verifier
 * swaps in a new set while other threads still verify with the old one.
 */
#ifndef RC_JWK_H
#define RC_JWK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The JWS algorithms roomcast knows (RFC 7518); one bit each. "none" is not one. */
enum rc_jwt_alg {
	RC_JWT_HS256 = 1u << 0,
	RC_JWT_HS384 = 1u << 1,
	RC_JWT_HS512 = 1u << 2,
	RC_JWT_RS256 = 1u << 3,
	RC_JWT_RS384 = 1u << 4,
	RC_JWT_RS512 = 1u << 5,
	RC_JWT_ES256 = 1u << 6,
	RC_JWT_ES384 = 1u << 7,
	RC_JWT_ES512 = 1u << 8,
};
#define RC_JWT_ALGS_HMAC (RC_JWT_HS256 | RC_JWT_HS384 | RC_JWT_HS512)
#define RC_JWT_ALGS_RSA	 (RC_JWT_RS256 | RC_JWT_RS384 | RC_JWT_RS512)
#define RC_JWT_ALGS_EC	 (RC_JWT_ES256 | RC_JWT_ES384 | RC_JWT_ES512)
#define RC_JWT_ALGS_ALL	 (RC_JWT_ALGS_HMAC | RC_JWT_ALGS_RSA | RC_JWT_ALGS_EC)

/* Bounds on key files: an HMAC secret (bytes, after its trailing newline), any key file. */
#define RC_JWK_SECRET_MIN 32
#define RC_JWK_SECRET_MAX 4096
#define RC_JWK_FILE_MAX	  (1024 * 1024)
/* The smallest RSA modulus accepted (bits). */
#define RC_JWK_RSA_BITS_MIN 2048
/* Longest kid (bytes). */
#define RC_JWK_KID_MAX 255

struct _cjose_jwk_int; /* cjose_jwk_t */

/* One key. */
struct rc_jwk {
	struct _cjose_jwk_int *cj; /* the library's key (public, or private to sign) */
	char *kid;		   /* NULL: the key has none (a secret file) */
	unsigned algs;		   /* the algorithms it may be used with (see above) */
	size_t sig_len;		   /* bytes of an RSA signature (the modulus); 0 for other types */
};

/* A loaded key file: immutable, refcounted. */
struct rc_jwk_set {
	atomic_uint refs;
	unsigned n;
	struct rc_jwk keys[];
};

/* Which version of a file was read: a change of any field is a new file. */
struct rc_file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	int64_t mtime_ns;
};

/* The alg bit of name[0..len) (exact, case-sensitive, as RFC 7518 spells it); 0 when unknown. */
unsigned rc_jwt_alg_from_name(const char *name, size_t len);

/* The name of one alg bit ("HS256"), or "?" */
const char *rc_jwt_alg_name(unsigned alg);

/*
 * Parses a comma-separated list of algorithm names ("HS256,RS256") into bits.
 * Refuses "none", unknown names and an empty list: RC_EINVAL with a reason.
 */
int rc_jwt_algs_parse(const char *list, unsigned *out, char *why, size_t whylen);

/* Writes the names of algs, comma-separated ("HS256,ES256"), into buf. */
void rc_jwt_algs_format(unsigned algs, char *buf, size_t size);

/*
 * Loads a key file for verification, keeping only keys that fit algs:
 * - jwks false: an HMAC secret, RC_JWK_SECRET_MIN..MAX bytes once one
 *   trailing "\n" (or "\r\n") is removed; one key without kid;
 * - jwks true: {"keys": [...]}. A key whose "use" is not "sig", whose kty
 *   is not RSA/EC/oct, or that fits none of algs is skipped (counted in
 *   msg); a key that cjose refuses, an RSA key under 2048 bits, a kid twice,
 *   or no key left fails the load.
 * On success returns RC_OK with *out (one reference) and msg holding a
 * summary for the log ("2 keys (kid a RS256, kid b ES256), 1 skipped"). On
 * failure returns RC_EINVAL, RC_EIO (the file cannot be read), RC_ETOOBIG
 * or RC_ENOMEM with the reason in msg, and *out NULL. *id is set to the
 * version of the file read whenever it could be opened (even when the load
 * fails), so a caller retries only once the file changes again.
 */
int rc_jwk_set_load(const char *path, bool jwks, unsigned algs, struct rc_jwk_set **out, struct rc_file_id *id,
		    char *msg, size_t msglen);

/* Takes one more reference to s (any thread); returns s. */
struct rc_jwk_set *rc_jwk_set_ref(struct rc_jwk_set *s);

/* Drops one reference; the last frees the set (NULL is a no-op; any thread). */
void rc_jwk_set_unref(struct rc_jwk_set *s);

/*
 * The key that a token with this alg and kid (NULL: no kid) must verify with:
 * - a kid picks the key with that kid; when no key has it and the set is a
 *   single key without kid (a secret file), that key;
 * - without a kid, the one key that fits alg, if exactly one does.
 * Returns RC_OK with *out set; RC_ENOTFOUND when no key is chosen (unknown
 * kid, or no kid and not exactly one candidate); RC_EINVAL when the chosen
 * key does not fit alg (an HS256 token naming an RSA key).
 */
int rc_jwk_set_find(const struct rc_jwk_set *s, const char *kid, unsigned alg, const struct rc_jwk **out);

/* Version of the file at path now; RC_EIO when it cannot be stat'ed. */
int rc_file_id_get(const char *path, struct rc_file_id *out);

/* True when a and b are the same version of a file. */
bool rc_file_id_equal(const struct rc_file_id *a, const struct rc_file_id *b);

/*
 * Loads one key to sign with: an HMAC secret file (secret true; the same
 * rules as above) or a private JWK (a JSON object, RSA or EC with its "d",
 * or oct). Returns RC_OK with *out (free with rc_jwk_free), or an error with
 * the reason in why.
 */
int rc_jwk_load_signing(const char *path, bool secret, struct rc_jwk **out, char *why, size_t whylen);

/* An HMAC key of the bytes secret[0..len) (at least RC_JWK_SECRET_MIN), kid NULL. */
int rc_jwk_from_secret(const uint8_t *secret, size_t len, struct rc_jwk **out, char *why, size_t whylen);

/* A key of one JWK in JSON (public or private). */
int rc_jwk_from_json(const char *json, size_t len, struct rc_jwk **out, char *why, size_t whylen);

/* Frees a key from rc_jwk_load_signing / rc_jwk_from_* (NULL is a no-op). */
void rc_jwk_free(struct rc_jwk *k);

/*
 * Makes a new key pair for alg (RS*: 2048-bit RSA; ES*: the curve's EC) with
 * the given kid: *priv_json is the private JWK, *pub_json the public one,
 * both with "kid", "alg" and "use":"sig" (caller frees both). For HS*:
 * *priv_json is a random secret (64 base64url characters: a secret file's
 * content) and *pub_json NULL.
 */
int rc_jwk_generate(unsigned alg, const char *kid, char **priv_json, char **pub_json, char *why, size_t whylen);

#endif
