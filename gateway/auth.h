/*
 * auth.h - who may read a room, and who may publish (--auth jwt).
 *
 * The token comes from `Authorization: Bearer` or, when that is absent, the
 * cookie --auth-cookie, or, when both are absent and --auth-query-param is
 * set, the access_token query parameter: an explicit header wins over an
 * ambient cookie, and a header that fails is never rescued by a cookie. It is
 * verified by the one verifier all workers share (common/jwt.h, thread-safe),
 * and the grant lives only while the request is checked: a stream keeps its
 * rc_grant_stamp (24 bytes).
 *
 * Each loop keeps its authorized streams in a min-heap by expiry; a 1 s
 * sweep timer ends those whose token expired (gw_stream_expire) and, on the
 * first worker, reloads the keys when the key file changed. SIGHUP reloads
 * them too (the first worker's handler: the verifier is shared). Revocations
 * come from the broker on the bus control topic (RC_BUS_TOPIC_CONTROL) and
 * close the matching streams of the loop; each loop also keeps them (until
 * their "until") so that a revoked token cannot open a stream again there.
 *
 * Why a heap and a sweep rather than a gw_tq: every stream has its own
 * expiry, and gw_tq queues hold entries that all wait the same time. The
 * heap costs a pointer per stream (and a 4-byte slot in the stream); the
 * sweep looks only at the heap's top, so an idle gateway with a million
 * streams spends nothing per second on them.
 *
 * Loop thread only, except gw_auth_new/gw_auth_free (main, before and after
 * the workers).
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw;
struct gw_conn;
struct gw_req;
struct gw_stream;
struct rc_grant;
struct rc_jwt;
struct gw_options;

/* Sweep period of the expiry heap and of the key file check (ms). */
#define GW_AUTH_SWEEP_MS 1000

/* Revocations one loop remembers at once (the oldest is dropped past it). */
#define GW_AUTH_REVOKED_MAX 4096

/*
 * Builds the shared verifier from o (--jwt-*): RC_OK with *out (NULL when
 * --auth none or url), or an error printed on stderr. Main thread, before
 * the workers start.
 */
int gw_auth_new(const struct gw_options *o, struct rc_jwt **out);

/*
 * Per loop: the heap, the sweep timer, SIGHUP (worker 0, --auth jwt).
 * Nothing with --auth none. With --auth url the heap holds the streams whose
 * application named a sub (they never expire; revocation finds them).
 */
int gw_auth_loop_start(struct gw *gw);

/* Closes the loop's handles (gw_stop). */
void gw_auth_loop_stop(struct gw *gw);

/* Frees what the loop held (after its loop ended). */
void gw_auth_loop_fini(struct gw *gw);

/*
 * The request's verified grant: RC_OK with *g (caller frees with
 * rc_grant_free), or false after answering 401 (no, or a bad token) or 503.
 * query[0..qlen) is the part after '?' (access_token, with --auth-query-param).
 * ambient: the cookie and query parameter count too (streams); POST takes
 * the Authorization header only, since a cookie would let any page the user
 * visits publish as them (CSRF).
 */
bool gw_auth_request(struct gw_conn *c, const struct gw_req *req, const char *query, size_t qlen, bool ambient,
		     struct rc_grant **g);

/*
 * Checks that g covers the stream's rooms (nrooms 0: the firehose); false
 * after answering 403 forbidden naming the first room not granted.
 */
bool gw_auth_rooms(struct gw_conn *c, const struct rc_grant *g, const char *const *rooms, const size_t *lens,
		   size_t nrooms);

/* Whether the token has an id or subject this loop knows as revoked (answered 401). */
bool gw_auth_revoked(struct gw_conn *c, const struct rc_grant *g);

/* Puts an authorized stream on the expiry heap (its stamp set); RC_ENOMEM. */
int gw_auth_track(struct gw *gw, struct gw_stream *s);

/* Takes s off the heap (a no-op when it is not on it). */
void gw_auth_untrack(struct gw *gw, struct gw_stream *s);

/*
 * A message of the bus control topic, body[0..len) after the topic: a
 * revocation {"op":"revoke","sub"|"jti":ID,"until":unix seconds}. Closes the
 * loop's matching streams and remembers it. Malformed: logged and ignored.
 */
void gw_auth_control(struct gw *gw, const char *body, size_t len);

/*
 * For POST with --auth jwt, called once the request's token is known to be
 * no --publish-token: may g publish to room[0..len) (len 0: a global event)?
 */
bool gw_auth_can_publish(const struct rc_grant *g, const char *room, size_t len);

#endif
