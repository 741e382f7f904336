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

#include <stddef.h>

#include "broker.h"
#include "buf.h"

/* Handles the request req[0..len) (any bytes) and writes the reply into reply. */
void ops_handle(struct broker *br, const char *req, size_t len, struct rc_buf *reply);

#endif
