/*
 * natsmap.h - how roomcast's history maps onto a NATS JetStream stream
 * (--store nats): subjects, headers, the epoch. Pure functions, no I/O;
 * callable from any thread.
 *
 * One stream holds every event. A room's events go to the subject
 * "<stream>.r.<room encoded>", global events to "<stream>.g"; the stream's
 * subjects are "<stream>.>". A room id is encoded so that no byte of it can
 * break a subject token: [A-Za-z0-9_-] stay as they are, every other byte
 * ('.', '*', '>', space, '%', non-ASCII ...) becomes '%' and two lower-case
 * hex digits ("a.b" -> "a%2eb"). The encoding is one-to-one, so the room is
 * read back from the subject of a stored message.
 *
 * The stream sequence is the gseq; the room sequence travels in the header
 * NATSMAP_HDR_RSEQ (decimal); an idempotency key is the message's
 * Nats-Msg-Id. The epoch is a hash of the stream's name and creation time:
 * it changes only when the stream is deleted and created again.
 */
#ifndef RC_NATSMAP_H
#define RC_NATSMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NATSMAP_HDR_RSEQ "Rc-Rseq"

/* Longest stream name accepted (NATS allows more; subjects stay short). */
#define NATSMAP_STREAM_MAX 64
/* A subject: stream, ".r.", a room of RC_ROOM_MAX bytes each encoded in 3, NUL. */
#define NATSMAP_SUBJECT_MAX (NATSMAP_STREAM_MAX + 3 + 3 * 128 + 1)

/* True when name can name the stream: 1-NATSMAP_STREAM_MAX bytes of [A-Za-z0-9_-]. */
bool natsmap_stream_valid(const char *name);

/*
 * Writes the subject of room[0..len) (room NULL or len 0: the global
 * subject) of stream into out (NATSMAP_SUBJECT_MAX bytes), NUL-terminated.
 * Returns its length, or 0 when the stream name or the room is too long.
 */
size_t natsmap_subject(char *out, const char *stream, const char *room, size_t len);

/* Writes "<stream>.>" into out (NATSMAP_SUBJECT_MAX bytes); returns its length. */
size_t natsmap_filter(char *out, const char *stream);

/*
 * Reads a stored message's subject back: *global is set for the global
 * subject, else the decoded room goes to room (room_cap bytes) and its
 * length to *len. RC_EINVAL when subj is not one of stream's subjects or its
 * encoding is malformed (a byte that should have been encoded, a bad or
 * upper-case escape, an escape of a byte that is not encoded), RC_ETOOBIG
 * when the room does not fit.
 */
int natsmap_parse(const char *subj, const char *stream, char *room, size_t room_cap, size_t *len, bool *global);

/* Writes rseq in decimal into out (21 bytes), NUL-terminated; returns its length. */
size_t natsmap_rseq_format(char out[21], uint64_t rseq);

/* Parses a decimal rseq header value (1 or more, no sign, no leading zero). RC_EINVAL. */
int natsmap_rseq_parse(const char *s, uint64_t *out);

/*
 * The epoch of the stream named stream created at created_ns (ns since the
 * Unix epoch, from the stream's info): 32 bits of a hash of both, never 0.
 */
uint64_t natsmap_epoch(const char *stream, int64_t created_ns);

#endif
