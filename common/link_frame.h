/*
 * link_frame.h - the link: one TCP connection between a gateway loop and
 * the broker that carries the two messages of the publish path (the
 * gateway's publish request and the broker's bus messages) without nng.
 *
 * Why: at a moderate publish rate the cost of a publish is nng's thread
 * hand-offs, five or so per message on each side (docs/BENCHMARKS.md,
 * "Answered on the bus"); on the link a message is one write(2) on one
 * side and one read(2) on the loop (or the broker's link thread) that
 * already waits on the socket. The layout is in docs/PROTOCOL.md ("The
 * link"). All integers are little-endian.
 *
 *   frame   u32 len | u8 kind | u8 0 | u16 0 | u32 id | payload[len]
 *
 *   'H'  broker -> gateway, first frame, id 0: RC_LINK_HELLO ("roomcast-link/1")
 *   'Q'  gateway -> broker, id != 0: an api request (the JSON of the nng api)
 *   'R'  broker -> gateway, id of the request: its api reply; a publish
 *        answered on the bus (its "ack" token) gets none
 *   'B'  broker -> gateway, id 0: a bus message, exactly the bytes of the
 *        nng bus message (topic, then the frame or index: frame.h)
 *
 * A frame whose reserved bytes are not zero, whose kind is unknown or whose
 * length passes the reader's limit ends the connection.
 * Pure functions; any thread.
 */
#ifndef RC_LINK_FRAME_H
#define RC_LINK_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RC_LINK_HDR_SIZE 12
#define RC_LINK_HELLO "roomcast-link/1"
#define RC_LINK_HELLO_LEN (sizeof(RC_LINK_HELLO) - 1)

enum rc_link_kind {
	RC_LINK_KIND_HELLO = 'H',
	RC_LINK_KIND_REQUEST = 'Q',
	RC_LINK_KIND_REPLY = 'R',
	RC_LINK_KIND_BUS = 'B',
};

struct rc_link_frame {
	uint8_t kind;
	uint32_t id;
	const uint8_t *payload;
	uint32_t len;
};

/* Writes a frame header for a payload of len bytes. */
void rc_link_hdr_put(uint8_t out[RC_LINK_HDR_SIZE], uint8_t kind, uint32_t id, uint32_t len);

/*
 * Called for each whole frame; the payload points into the reader's buffer
 * and is valid during the call. Returns 0 to go on, anything else to stop
 * (rc_link_parse then returns it).
 */
typedef int (*rc_link_frame_fn)(void *arg, const struct rc_link_frame *f);

/*
 * Takes the whole frames at the start of buf[0..len), calling fn for each.
 * Returns the bytes taken (0..len; the rest is the start of a frame to keep
 * and call again with more), RC_EPROTO (bad header), RC_ETOOBIG (a frame
 * longer than max) or fn's non-zero result.
 */
ssize_t rc_link_parse(const uint8_t *buf, size_t len, uint32_t max, rc_link_frame_fn fn, void *arg);

/*
 * Splits a link address, "tcp://host:port" or "tcp://[v6]:port", into host
 * (without brackets; may be empty: every address) and port (digits, at most
 * 65535; 0: any free port). Returns 0, or RC_EINVAL (not such an address,
 * or host or port longer than their buffers).
 */
int rc_link_url_split(const char *url, char *host, size_t hsize, char *port, size_t psize);

#endif
