#include "jwk.h"

#include <cjose/cjose.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64url.h"
#include "error.h"

/* What each algorithm asks of a key. */
static const struct jwk_alg {
	unsigned bit;
	const char *name;
	size_t hmac_min;	/* HS: the hash's size, the shortest secret */
	cjose_jwk_ec_curve crv; /* ES: the curve */
} jwk_algs[] = {
	{ RC_JWT_HS256, "HS256", 32, CJOSE_JWK_EC_INVALID }, { RC_JWT_HS384, "HS384", 48, CJOSE_JWK_EC_INVALID },
	{ RC_JWT_HS512, "HS512", 64, CJOSE_JWK_EC_INVALID }, { RC_JWT_RS256, "RS256", 0, CJOSE_JWK_EC_INVALID },
	{ RC_JWT_RS384, "RS384", 0, CJOSE_JWK_EC_INVALID },  { RC_JWT_RS512, "RS512", 0, CJOSE_JWK_EC_INVALID },
	{ RC_JWT_ES256, "ES256", 0, CJOSE_JWK_EC_P_256 },    { RC_JWT_ES384, "ES384", 0, CJOSE_JWK_EC_P_384 },
	{ RC_JWT_ES512, "ES512", 0, CJOSE_JWK_EC_P_521 },
};
#define JWK_NALGS (sizeof(jwk_algs) / sizeof(jwk_algs[0]))

/* The JWK members that hold base64url (RFC 7518 section 6). */
static const char *const jwk_b64_members[] = { "k", "n", "e", "d", "p", "q", "dp", "dq", "qi", "x", "y" };

unsigned rc_jwt_alg_from_name(const char *name, size_t len)
{
	for (size_t i = 0; i < JWK_NALGS; i++)
		if (strlen(jwk_algs[i].name) == len && memcmp(jwk_algs[i].name, name, len) == 0)
			return jwk_algs[i].bit;
	return 0;
}

const char *rc_jwt_alg_name(unsigned alg)
{
	for (size_t i = 0; i < JWK_NALGS; i++)
		if (jwk_algs[i].bit == alg)
			return jwk_algs[i].name;
	return "?";
}

int rc_jwt_algs_parse(const char *list, unsigned *out, char *why, size_t whylen)
{
	const char *p = list;
	unsigned algs = 0;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		unsigned bit = rc_jwt_alg_from_name(p, len);

		if (bit == 0) {
			snprintf(why, whylen,
				 "unknown JWS algorithm '%.*s': HS256, HS384, HS512, RS256, RS384, RS512, "
				 "ES256, ES384 or ES512 (never none)",
				 (int)(len > 32 ? 32 : len), p);
			return RC_EINVAL;
		}
		algs |= bit;
		p = end ? end + 1 : NULL;
	}
	if (algs == 0) {
		snprintf(why, whylen, "no JWS algorithm given (e.g. HS256 or RS256,ES256)");
		return RC_EINVAL;
	}
	*out = algs;
	return RC_OK;
}

void rc_jwt_algs_format(unsigned algs, char *buf, size_t size)
{
	size_t n = 0;

	if (size == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < JWK_NALGS && n < size; i++)
		if (algs & jwk_algs[i].bit)
			n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? "," : "", jwk_algs[i].name);
}

/* The algorithms key cj may be used with, by its type, size and curve; RC_EINVAL (why) for a weak RSA key. */
static int jwk_fit(cjose_jwk_t *cj, unsigned *algs, size_t *sig_len, char *why, size_t whylen)
{
	cjose_err err = { 0 };
	size_t bits = cjose_jwk_get_keysize(cj, &err);
	cjose_jwk_ec_curve crv;

	*algs = 0;
	*sig_len = 0;
	switch (cjose_jwk_get_kty(cj, &err)) {
	case CJOSE_JWK_KTY_OCT:
		for (size_t i = 0; i < JWK_NALGS; i++)
			if (jwk_algs[i].hmac_min != 0 && bits / 8 >= jwk_algs[i].hmac_min)
				*algs |= jwk_algs[i].bit;
		if (*algs == 0) {
			snprintf(why, whylen, "an HMAC key of %zu bytes is shorter than %d", bits / 8,
				 RC_JWK_SECRET_MIN);
			return RC_EINVAL;
		}
		return RC_OK;
	case CJOSE_JWK_KTY_RSA:
		if (bits < RC_JWK_RSA_BITS_MIN) {
			snprintf(why, whylen, "an RSA key of %zu bits is smaller than %d", bits, RC_JWK_RSA_BITS_MIN);
			return RC_EINVAL;
		}
		*algs = RC_JWT_ALGS_RSA;
		*sig_len = bits / 8;
		return RC_OK;
	case CJOSE_JWK_KTY_EC:
		crv = cjose_jwk_EC_get_curve(cj, &err);
		for (size_t i = 0; i < JWK_NALGS; i++)
			if (jwk_algs[i].crv != CJOSE_JWK_EC_INVALID && jwk_algs[i].crv == crv)
				*algs |= jwk_algs[i].bit;
		if (*algs == 0) {
			snprintf(why, whylen, "an EC key on a curve other than P-256, P-384 or P-521");
			return RC_EINVAL;
		}
		return RC_OK;
	}
	snprintf(why, whylen, "a key of an unknown type");
	return RC_EINVAL;
}

/* Fills k from cj (takes it) and kid (copied; NULL: none). */
static int jwk_init(struct rc_jwk *k, cjose_jwk_t *cj, const char *kid, char *why, size_t whylen)
{
	int rv;

	memset(k, 0, sizeof(*k));
	k->cj = cj;
	if ((rv = jwk_fit(cj, &k->algs, &k->sig_len, why, whylen)) != RC_OK)
		return rv;
	if (kid != NULL && (k->kid = strdup(kid)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return RC_ENOMEM;
	}
	return RC_OK;
}

static void jwk_fini(struct rc_jwk *k)
{
	if (k->cj != NULL)
		cjose_jwk_release(k->cj);
	free(k->kid);
	memset(k, 0, sizeof(*k));
}

int rc_file_id_get(const char *path, struct rc_file_id *out)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return RC_EIO;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	out->size = st.st_size;
	out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	return RC_OK;
}

bool rc_file_id_equal(const struct rc_file_id *a, const struct rc_file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/*
 * Reads the regular file at path (at most max bytes) into a NUL-terminated
 * *data (caller frees); *id from the descriptor read, whenever it opened.
 */
static int jwk_read_file(const char *path, size_t max, char **data, size_t *len, struct rc_file_id *id, char *why,
			 size_t whylen)
{
	struct stat st;
	size_t got = 0;
	char *buf;
	int fd;

	*data = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
		return RC_EIO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s is not a regular file", path);
		close(fd);
		return RC_EIO;
	}
	if (id != NULL) {
		id->dev = st.st_dev;
		id->ino = st.st_ino;
		id->size = st.st_size;
		id->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	}
	if ((size_t)st.st_size > max) {
		snprintf(why, whylen, "%s is larger than %zu bytes", path, max);
		close(fd);
		return RC_ETOOBIG;
	}
	if ((buf = malloc(max + 1)) == NULL) {
		close(fd);
		snprintf(why, whylen, "out of memory");
		return RC_ENOMEM;
	}
	/* read to the end, not st_size bytes: the file may be growing as we read */
	for (;;) {
		ssize_t n = read(fd, buf + got, max + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return RC_EIO;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > max) {
			snprintf(why, whylen, "%s is larger than %zu bytes", path, max);
			free(buf);
			close(fd);
			return RC_ETOOBIG;
		}
	}
	close(fd);
	buf[got] = '\0';
	*data = buf;
	*len = got;
	return RC_OK;
}

int rc_jwk_from_secret(const uint8_t *secret, size_t len, struct rc_jwk **out, char *why, size_t whylen)
{
	struct rc_jwk *k;
	cjose_jwk_t *cj;
	cjose_err err = { 0 };
	int rv;

	*out = NULL;
	if (len < RC_JWK_SECRET_MIN || len > RC_JWK_SECRET_MAX) {
		snprintf(why, whylen, "an HMAC secret must be %d-%d bytes, not %zu", RC_JWK_SECRET_MIN,
			 RC_JWK_SECRET_MAX, len);
		return RC_EINVAL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL || (cj = cjose_jwk_create_oct_spec(secret, len, &err)) == NULL) {
		free(k);
		snprintf(why, whylen, "out of memory");
		return RC_ENOMEM;
	}
	if ((rv = jwk_init(k, cj, NULL, why, whylen)) != RC_OK) {
		rc_jwk_free(k);
		return rv;
	}
	*out = k;
	return RC_OK;
}

/* Checks what cjose would decode loosely (or assert on), then imports the JWK object o into k. */
static int jwk_import(struct json_object *o, struct rc_jwk *k, char *why, size_t whylen)
{
	struct json_object *v;
	const char *kid = NULL, *s;
	cjose_jwk_t *cj;
	cjose_err err = { 0 };
	int rv;

	memset(k, 0, sizeof(*k));
	for (size_t i = 0; i < sizeof(jwk_b64_members) / sizeof(jwk_b64_members[0]); i++) {
		if (!json_object_object_get_ex(o, jwk_b64_members[i], &v))
			continue;
		if (!json_object_is_type(v, json_type_string) ||
		    !rc_b64url_valid(json_object_get_string(v), (size_t)json_object_get_string_len(v)) ||
		    json_object_get_string_len(v) == 0) {
			snprintf(why, whylen, "member \"%s\" is not base64url", jwk_b64_members[i]);
			return RC_EINVAL;
		}
	}
	if (json_object_object_get_ex(o, "kid", &v)) {
		if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
		    json_object_get_string_len(v) > RC_JWK_KID_MAX ||
		    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
			snprintf(why, whylen, "\"kid\" must be a string of 1-%d bytes", RC_JWK_KID_MAX);
			return RC_EINVAL;
		}
		kid = json_object_get_string(v);
	}
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if ((cj = cjose_jwk_import(s, strlen(s), &err)) == NULL) {
		snprintf(why, whylen, "cjose refuses the key: %s", err.message ? err.message : "?");
		return err.code == CJOSE_ERR_NO_MEMORY ? RC_ENOMEM : RC_EINVAL;
	}
	if ((rv = jwk_init(k, cj, kid, why, whylen)) != RC_OK) {
		jwk_fini(k);
		return rv;
	}
	return RC_OK;
}

/* Parses text as one JSON object (the whole text); NULL when it is not. */
static struct json_object *jwk_parse_object(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	if (tok == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, text, (int)len);
	/* trailing whitespace is fine (a newline at the end of a file) */
	if (o != NULL) {
		size_t end = json_tokener_get_parse_end(tok);
		while (end < len && (text[end] == ' ' || text[end] == '\n' || text[end] == '\r' || text[end] == '\t'))
			end++;
		if (end != len || !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			o = NULL;
		}
	}
	json_tokener_free(tok);
	return o;
}

int rc_jwk_from_json(const char *json, size_t len, struct rc_jwk **out, char *why, size_t whylen)
{
	struct json_object *o = jwk_parse_object(json, len);
	struct rc_jwk *k;
	int rv;

	*out = NULL;
	if (o == NULL) {
		snprintf(why, whylen, "not a JSON object");
		return RC_EINVAL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		json_object_put(o);
		snprintf(why, whylen, "out of memory");
		return RC_ENOMEM;
	}
	rv = jwk_import(o, k, why, whylen);
	json_object_put(o);
	if (rv != RC_OK) {
		free(k);
		return rv;
	}
	*out = k;
	return RC_OK;
}

void rc_jwk_free(struct rc_jwk *k)
{
	if (k == NULL)
		return;
	jwk_fini(k);
	free(k);
}

/* The secret of a secret file's content: without one trailing "\n" or "\r\n". */
static size_t jwk_secret_len(const char *data, size_t len)
{
	if (len > 0 && data[len - 1] == '\n')
		len--;
	if (len > 0 && data[len - 1] == '\r')
		len--;
	return len;
}

int rc_jwk_load_signing(const char *path, bool secret, struct rc_jwk **out, char *why, size_t whylen)
{
	char *data, msg[200];
	size_t len;
	int rv;

	*out = NULL;
	if ((rv = jwk_read_file(path, secret ? RC_JWK_SECRET_MAX + 2 : RC_JWK_FILE_MAX, &data, &len, NULL, why,
				whylen)) != RC_OK)
		return rv;
	if (secret)
		rv = rc_jwk_from_secret((const uint8_t *)data, jwk_secret_len(data, len), out, msg, sizeof(msg));
	else
		rv = rc_jwk_from_json(data, len, out, msg, sizeof(msg));
	/* the secret's bytes do not stay behind in freed memory */
	explicit_bzero(data, len);
	free(data);
	if (rv != RC_OK)
		snprintf(why, whylen, "%s: %s", path, msg);
	return rv;
}

/* A set with room for n keys, one reference. */
static struct rc_jwk_set *jwk_set_new(size_t n)
{
	struct rc_jwk_set *s = calloc(1, sizeof(*s) + n * sizeof(s->keys[0]));

	if (s != NULL)
		atomic_init(&s->refs, 1);
	return s;
}

struct rc_jwk_set *rc_jwk_set_ref(struct rc_jwk_set *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void rc_jwk_set_unref(struct rc_jwk_set *s)
{
	if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned i = 0; i < s->n; i++)
		jwk_fini(&s->keys[i]);
	free(s);
}

/* The secret file's set: one key without kid. */
static int jwk_set_secret(const char *data, size_t len, unsigned algs, struct rc_jwk_set **out, char *msg,
			  size_t msglen)
{
	struct rc_jwk_set *s;
	struct rc_jwk *k;
	char names[64];
	int rv;

	if ((rv = rc_jwk_from_secret((const uint8_t *)data, jwk_secret_len(data, len), &k, msg, msglen)) != RC_OK)
		return rv;
	if ((k->algs & algs) == 0) {
		rc_jwt_algs_format(algs, names, sizeof(names));
		snprintf(msg, msglen, "an HMAC secret of %zu bytes fits none of the algorithms %s",
			 jwk_secret_len(data, len), names);
		rc_jwk_free(k);
		return RC_EINVAL;
	}
	if ((s = jwk_set_new(1)) == NULL) {
		rc_jwk_free(k);
		snprintf(msg, msglen, "out of memory");
		return RC_ENOMEM;
	}
	s->keys[0] = *k;
	s->keys[0].algs &= algs;
	s->n = 1;
	free(k); /* its fields moved into the set */
	rc_jwt_algs_format(s->keys[0].algs, names, sizeof(names));
	snprintf(msg, msglen, "1 HMAC secret (%s)", names);
	*out = s;
	return RC_OK;
}

/*
 * Why JWK o is skipped (a static text), or NULL when it is to be loaded:
 * not for signatures, a type roomcast does not verify, or an "alg" that is
 * not among algs.
 */
static const char *jwk_skip_reason(struct json_object *o, unsigned algs, unsigned *alg_member)
{
	struct json_object *v;
	const char *kty;

	*alg_member = RC_JWT_ALGS_ALL;
	if (json_object_object_get_ex(o, "use", &v) &&
	    (!json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), "sig") != 0))
		return "use is not sig";
	if (!json_object_object_get_ex(o, "kty", &v) || !json_object_is_type(v, json_type_string))
		return NULL; /* cjose refuses it: a load error */
	kty = json_object_get_string(v);
	if (strcmp(kty, "RSA") != 0 && strcmp(kty, "EC") != 0 && strcmp(kty, "oct") != 0)
		return "key type not RSA, EC or oct";
	if (json_object_object_get_ex(o, "alg", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return "alg not a string";
		*alg_member = rc_jwt_alg_from_name(json_object_get_string(v), (size_t)json_object_get_string_len(v));
		if ((*alg_member & algs) == 0)
			return "alg not configured";
	}
	return NULL;
}

/* Appends to msg (at *n of msglen) a description of key k, or of a skipped key. */
static void jwk_describe(char *msg, size_t msglen, size_t *n, const char *kid, const char *what)
{
	if (*n < msglen)
		*n += (size_t)snprintf(msg + *n, msglen - *n, "%s%s%s%s %s", *n ? ", " : "", kid ? "kid " : "",
				       kid ? kid : "", kid ? "" : "no kid", what);
}

static int jwk_set_jwks(const char *data, size_t len, unsigned algs, struct rc_jwk_set **out, char *msg, size_t msglen)
{
	struct json_object *root = jwk_parse_object(data, len), *keys;
	struct rc_jwk_set *s = NULL;
	char loaded[512] = "", skipped[512] = "", why[200], names[64];
	size_t nl = 0, ns = 0, nskipped = 0, n;
	int rv = RC_EINVAL;

	if (root == NULL || !json_object_object_get_ex(root, "keys", &keys) ||
	    !json_object_is_type(keys, json_type_array)) {
		snprintf(msg, msglen, "not a JWKS: a JSON object with a \"keys\" array");
		goto out_free;
	}
	n = json_object_array_length(keys);
	if ((s = jwk_set_new(n)) == NULL) {
		snprintf(msg, msglen, "out of memory");
		rv = RC_ENOMEM;
		goto out_free;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(keys, i), *kidv;
		const char *kid = NULL, *skip;
		struct rc_jwk *k = &s->keys[s->n];
		unsigned alg_member;

		if (!json_object_is_type(o, json_type_object)) {
			snprintf(msg, msglen, "keys[%zu] is not an object", i);
			goto out_free;
		}
		if (json_object_object_get_ex(o, "kid", &kidv) && json_object_is_type(kidv, json_type_string))
			kid = json_object_get_string(kidv);
		if ((skip = jwk_skip_reason(o, algs, &alg_member)) != NULL) {
			jwk_describe(skipped, sizeof(skipped), &ns, kid, skip);
			nskipped++;
			continue;
		}
		if ((rv = jwk_import(o, k, why, sizeof(why))) != RC_OK) {
			snprintf(msg, msglen, "keys[%zu]%s%s%s: %s", i, kid ? " (kid " : "", kid ? kid : "",
				 kid ? ")" : "", why);
			goto out_free;
		}
		k->algs &= algs & alg_member;
		if (k->algs == 0) {
			jwk_describe(skipped, sizeof(skipped), &ns, kid, "fits no configured algorithm");
			nskipped++;
			jwk_fini(k);
			continue;
		}
		for (unsigned j = 0; k->kid != NULL && j < s->n; j++)
			if (s->keys[j].kid != NULL && strcmp(s->keys[j].kid, k->kid) == 0) {
				snprintf(msg, msglen, "keys[%zu]: kid %s appears twice", i, k->kid);
				jwk_fini(k);
				rv = RC_EINVAL;
				goto out_free;
			}
		rc_jwt_algs_format(k->algs, names, sizeof(names));
		jwk_describe(loaded, sizeof(loaded), &nl, k->kid, names);
		s->n++;
	}
	rc_jwt_algs_format(algs, names, sizeof(names));
	if (s->n == 0) {
		snprintf(msg, msglen, "no key fits the algorithms %s (%zu skipped: %s)", names, nskipped,
			 nskipped ? skipped : "the set is empty");
		rv = RC_EINVAL;
		goto out_free;
	}
	if (nskipped > 0)
		snprintf(msg, msglen, "%u key%s (%s), %zu skipped (%s)", s->n, s->n == 1 ? "" : "s", loaded, nskipped,
			 skipped);
	else
		snprintf(msg, msglen, "%u key%s (%s)", s->n, s->n == 1 ? "" : "s", loaded);
	*out = s;
	s = NULL;
	rv = RC_OK;
out_free:
	rc_jwk_set_unref(s);
	json_object_put(root);
	return rv;
}

int rc_jwk_set_load(const char *path, bool jwks, unsigned algs, struct rc_jwk_set **out, struct rc_file_id *id,
		    char *msg, size_t msglen)
{
	char *data, why[1024];
	size_t len;
	int rv;

	*out = NULL;
	if ((rv = jwk_read_file(path, jwks ? RC_JWK_FILE_MAX : RC_JWK_SECRET_MAX + 2, &data, &len, id, msg, msglen)) !=
	    RC_OK)
		return rv;
	rv = jwks ? jwk_set_jwks(data, len, algs, out, why, sizeof(why))
		  : jwk_set_secret(data, len, algs, out, why, sizeof(why));
	explicit_bzero(data, len);
	free(data);
	snprintf(msg, msglen, "%s: %s", path, why);
	return rv;
}

int rc_jwk_set_find(const struct rc_jwk_set *s, const char *kid, unsigned alg, const struct rc_jwk **out)
{
	const struct rc_jwk *found = NULL;

	*out = NULL;
	if (kid != NULL) {
		for (unsigned i = 0; i < s->n && found == NULL; i++)
			if (s->keys[i].kid != NULL && strcmp(s->keys[i].kid, kid) == 0)
				found = &s->keys[i];
		if (found == NULL && s->n == 1 && s->keys[0].kid == NULL)
			found = &s->keys[0];
	} else {
		for (unsigned i = 0; i < s->n; i++) {
			if ((s->keys[i].algs & alg) == 0)
				continue;
			if (found != NULL)
				return RC_ENOTFOUND; /* two candidates: the token must name one */
			found = &s->keys[i];
		}
	}
	if (found == NULL)
		return RC_ENOTFOUND;
	if ((found->algs & alg) == 0)
		return RC_EINVAL;
	*out = found;
	return RC_OK;
}

/* The JSON of jwk cj (priv: with its private members) plus kid, alg and use, as a malloc'd string. */
static char *jwk_export(cjose_jwk_t *cj, bool priv, const char *kid, unsigned alg)
{
	cjose_err err = { 0 };
	char *s = cjose_jwk_to_json(cj, priv, &err), *copy = NULL;
	struct json_object *o;

	if (s == NULL)
		return NULL;
	if ((o = jwk_parse_object(s, strlen(s))) != NULL) {
		json_object_object_add(o, "kid", json_object_new_string(kid));
		json_object_object_add(o, "alg", json_object_new_string(rc_jwt_alg_name(alg)));
		json_object_object_add(o, "use", json_object_new_string("sig"));
		copy = strdup(
			json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	}
	cjose_get_dealloc()(s);
	return copy;
}

int rc_jwk_generate(unsigned alg, const char *kid, char **priv_json, char **pub_json, char *why, size_t whylen)
{
	static const uint8_t e65537[] = { 0x01, 0x00, 0x01 };
	cjose_jwk_t *cj = NULL;
	cjose_err err = { 0 };

	*priv_json = *pub_json = NULL;
	if (alg & RC_JWT_ALGS_HMAC) {
		uint8_t raw[48];
		char *text = malloc(rc_b64url_encoded_len(sizeof(raw)) + 1);

		if (text == NULL || getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
			free(text);
			snprintf(why, whylen, "no random bytes or memory");
			return RC_EIO;
		}
		rc_b64url_encode(raw, sizeof(raw), text);
		explicit_bzero(raw, sizeof(raw));
		*priv_json = text;
		return RC_OK;
	}
	if (kid == NULL || *kid == '\0' || strlen(kid) > RC_JWK_KID_MAX) {
		snprintf(why, whylen, "a key pair needs a kid of 1-%d bytes", RC_JWK_KID_MAX);
		return RC_EINVAL;
	}
	for (size_t i = 0; i < JWK_NALGS && cj == NULL; i++) {
		if (jwk_algs[i].bit != alg)
			continue;
		if (alg & RC_JWT_ALGS_RSA)
			cj = cjose_jwk_create_RSA_random(RC_JWK_RSA_BITS_MIN, e65537, sizeof(e65537), &err);
		else
			cj = cjose_jwk_create_EC_random(jwk_algs[i].crv, &err);
		if (cj == NULL) {
			snprintf(why, whylen, "cjose cannot make the key: %s", err.message ? err.message : "?");
			return RC_EIO;
		}
	}
	if (cj == NULL) {
		snprintf(why, whylen, "no such algorithm");
		return RC_EINVAL;
	}
	*priv_json = jwk_export(cj, true, kid, alg);
	*pub_json = jwk_export(cj, false, kid, alg);
	cjose_jwk_release(cj);
	if (*priv_json == NULL || *pub_json == NULL) {
		free(*priv_json);
		free(*pub_json);
		*priv_json = *pub_json = NULL;
		snprintf(why, whylen, "out of memory");
		return RC_ENOMEM;
	}
	return RC_OK;
}
