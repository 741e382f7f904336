/*
 * token.h - `roomcast token` (mint a token) and `roomcast keygen` (make a key).
 *
 *   roomcast token --secret-file F --sub alice --rooms lobby,team-42:* [--publish lobby,$global]
 *                  [--publish-global] [--firehose] [--ttl 1h] [--aud A] [--iss I] [--jti ID]
 *   roomcast token --key-file private.jwk ...            RS256/ES256 with a private JWK
 *   roomcast keygen --alg RS256|ES256 --kid K --out private.jwk [--jwks-out jwks.json]
 *   roomcast keygen --alg HS256 --out secret
 *
 * The token goes to stdout with a newline; its claims are those of SPEC
 * "Authorization" (grant.h). Exit codes as the rest of the CLI: 0 done, 1
 * failed (a key file unreadable), 2 bad options.
 */
#ifndef RC_TOOLS_TOKEN_H
#define RC_TOOLS_TOKEN_H

#include <stdbool.h>

struct cli_token_opts {
	const char *secret_file, *key_file; /* token: exactly one */
	const char *sub, *rooms, *publish;  /* rooms and publish: comma-separated entries */
	const char *aud, *iss, *jti, *kid;  /* optional claims; kid overrides the key's */
	const char *alg;		    /* token: default from the key; keygen: required */
	const char *ttl;		    /* "90", "90s", "30m", "1h", "7d" */
	const char *out, *jwks_out;	    /* keygen */
	bool firehose, publish_global;
};

/* Mints a token from o; returns the exit code. */
int cli_token(const struct cli_token_opts *o);

/* Makes a key (pair) from o; returns the exit code. */
int cli_keygen(const struct cli_token_opts *o);

#endif
