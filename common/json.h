/*
 * json.h - strict JSON (RFC 8259) read in one pass and written back compact.
 *
 * A reader walks JSON text once. It checks it strictly: UTF-8 as Unicode
 * defines it (no overlong forms, no encoded surrogates, nothing above
 * U+10FFFF), no raw control characters (below 0x20) in strings, only the
 * escapes JSON has, \u escapes that name characters (a surrogate escape
 * must be half of a pair), numbers by the grammar, literals true, false and
 * null, and a nesting limit. What it reads it appends to an output buffer
 * in compact form: whitespace outside strings dropped, every string and
 * number kept byte for byte as written (so 123456789012345678901234567890,
 * 1.0, 1e400 and -0 come out as they went in, and so do escapes).
 *
 * The caller may walk containers itself (rc_json_begin / rc_json_next) to
 * look at members on the way, and read the values it does not care about
 * with rc_json_value. The first error stops the reader: every later call
 * does nothing and fails, and rc_json_error() names the path of the value
 * at fault ("message.text", "items[3]", "events[2].x") and the reason.
 *
 * No allocation except by the output buffer (an rc_buf; NULL: check only).
 * A reader is one caller's: any thread, one at a time.
 */
#ifndef RC_JSON_H
#define RC_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/*
 * Levels an event may nest, its own object included: {"a":[[1]]} is 3. The
 * one limit of the gateways and the broker (docs/PROTOCOL.md).
 */
#define RC_JSON_MAX_DEPTH 64
/* Levels a reader can track: an event inside the broker's request (object, events array). */
#define RC_JSON_STACK (RC_JSON_MAX_DEPTH + 2)

enum rc_json_kind {
	RC_JSON_NONE, /* no value here: the end, or a byte no value starts with (the reader has failed) */
	RC_JSON_OBJECT,
	RC_JSON_ARRAY,
	RC_JSON_STRING,
	RC_JSON_NUMBER,
	RC_JSON_TRUE,
	RC_JSON_FALSE,
	RC_JSON_NULL,
};

/* One step of the path to the value being read: a member of an object or an element of an array. */
struct rc_json_step {
	const char *key; /* the member's key as written (between the quotes); NULL in an array */
	size_t n;	 /* the key's length, or the element's index */
	bool array;
	bool started; /* the container's first member was read */
};

struct rc_json {
	const char *p, *end; /* what is left to read */
	struct rc_buf *out;  /* where the compact form goes; NULL: check only. The caller may switch it. */
	const char *root;    /* shown before a path that starts with an index ("events[2]"); may be NULL */
	unsigned depth;	     /* containers open */
	unsigned max_depth;  /* containers that may be open (rc_json_limit) */
	unsigned limit;	     /* the levels the last rc_json_limit allowed, for the error */
	bool at_child;	     /* path[depth - 1] is a member being read (not between members) */
	bool in_key;	     /* the error is in a key, which is then not part of the path */
	unsigned err_steps;  /* steps of the path at the error */
	const char *why;     /* the first error's reason, or NULL */
	char why_buf[96];
	struct rc_json_step path[RC_JSON_STACK];
};

/*
 * Starts reading text[0..len). The compact form of what is read is appended
 * to out (NULL: nothing is written); the reader reserves len bytes in out,
 * which is as much as the compact form can take. Up to RC_JSON_STACK levels.
 */
void rc_json_init(struct rc_json *j, const char *text, size_t len, struct rc_buf *out);

/*
 * Allows the value read next at most levels of nesting (its own container
 * included) below the current depth, up to what the reader can track.
 */
void rc_json_limit(struct rc_json *j, unsigned levels);

/* Skips whitespace and says what the next value is (RC_JSON_NONE, failing the reader, when none starts here). */
enum rc_json_kind rc_json_peek(struct rc_json *j);

/* Reads the next value, whatever it is, writing its compact form. Returns false when it failed. */
bool rc_json_value(struct rc_json *j);

/*
 * Opens the object or array that comes next (its '{' or '[' is written);
 * walk its members with rc_json_next. Returns false when it failed: not a
 * container, or nested deeper than allowed.
 */
bool rc_json_begin(struct rc_json *j);

/*
 * Moves to the next member of the innermost container rc_json_begin
 * opened: writes the ',' and, in an object, reads and writes the key and
 * ':'. Returns true when a value is next, to be read by the caller (with
 * rc_json_value, or rc_json_begin and rc_json_next); false at the end of the
 * container (its closing bracket read and written) or when it failed.
 */
bool rc_json_next(struct rc_json *j);

/* The key of the member being read (as written, escapes and all), and its length. */
const char *rc_json_key(const struct rc_json *j, size_t *len);
/* True when the key of the member being read means name (escapes decoded). */
bool rc_json_key_is(const struct rc_json *j, const char *name);

/* Checks that only whitespace is left. Returns false when it failed. */
bool rc_json_end(struct rc_json *j);

/* True when the reader has failed. */
static inline bool rc_json_failed(const struct rc_json *j)
{
	return j->why != NULL;
}

/*
 * Writes the path of the value being read (at the error, once the reader
 * has failed) into buf, e.g. "message.text" or "events[2]"; "" at the top.
 * Long paths are cut with "..."; the text is always valid UTF-8.
 */
void rc_json_path(const struct rc_json *j, char *buf, size_t len);

/* Writes "<path>: <reason>" (or the reason alone at the top) of the reader's error into buf. */
void rc_json_error(const struct rc_json *j, char *buf, size_t len);

/*
 * Decodes the string contents raw[0..n) (as written between the quotes,
 * already checked by a reader) into dst, which holds cap bytes. Returns
 * false when the decoded text does not fit; *len is its length otherwise.
 */
bool rc_json_unescape(const char *raw, size_t n, char *dst, size_t cap, size_t *len);

/*
 * Cuts buf (a NUL-terminated string of valid UTF-8 that snprintf may have
 * cut) after its last whole character.
 */
void rc_utf8_trim(char *buf);

/*
 * Checks text[0..len) as one JSON value and nothing else, and appends its
 * compact form to out. Returns 0, or RC_EPROTO with "<path>: <reason>" in why.
 */
int rc_json_compact(const char *text, size_t len, struct rc_buf *out, char *why, size_t whylen);

#endif
