/*
 * ops.h - the broker api operations: publish, replay, stats, ping.
 *
 * Requests and replies are JSON per SPEC ("Publish over nng"); a replay with
 * "format":"frame" is answered with one bus frame (RC_FRAME_REPLAY) instead,
 * which is what gateways use. Every error reply is
 * {"ok":false,"error":{"code":"…","message":"<field>: <reason>"}}.
 * Callable from any thread, concurrently.
 */
#ifndef RC_OPS_H
#define RC_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "broker.h"
#include "buf.h"

/* What ops_handle did with a request. */
enum ops_outcome {
	OPS_DONE, /* reply holds the answer */
	/*
	 * reply holds a replay's answer (or error) and one of the broker's
	 * --max-replays slots: call ops_replay_done() once it was handed over
	 * (sent or dropped)
	 */
	OPS_DONE_REPLAY,
	/* a replay found every slot taken and may_wait was set: nothing was done or counted; ask again later */
	OPS_WAIT,
	/*
	 * a publish with an "ack" token was published and its answer goes on
	 * the bus (the index of a flush, docs/PROTOCOL.md "Acknowledgements"):
	 * reply is empty, nothing is sent back on the api
	 */
	OPS_DONE_BUS,
};

/*
 * Handles the request req[0..len) (any bytes) and writes the reply into
 * reply. A replay that finds br->max_replays answers in flight returns
 * OPS_WAIT when may_wait, else answers `busy`.
 */
enum ops_outcome ops_handle(struct broker *br, const char *req, size_t len, bool may_wait, struct rc_buf *reply);

/* Gives back the replay slot of an OPS_DONE_REPLAY. Any thread. */
void ops_replay_done(struct broker *br);

#endif
