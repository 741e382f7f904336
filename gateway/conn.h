/*
 * conn.h - one HTTP/1.1 connection of the gateway.
 *
 * The connection reads into a buffer the whole loop shares, parses requests
 * (request.h) and hands each whole one to its on_request. Responses go out in
 * request order even when some are answered later (a POST waiting for the
 * broker): each such request holds a slot, and later responses queue behind
 * it. A connection can be upgraded to a one-way stream with an owner.
 * Three files: conn.c (the connection's life: accept, read, dispatch, slots,
 * timeouts, close), request.c (parsing) and output.c (the write path: one
 * write in flight, everything queued in a loop turn in one send).
 * Loop thread only.
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "list.h"
#include "outq.h"
#include "request.h"
#include "timer.h"

struct gw;
struct gw_conn;
struct gw_req;

/* Bytes of the read buffer the loop's connections share (gw->readbuf). */
#define GW_READBUF_SIZE (64 * 1024)

/*
 * What the connection hands each whole request to (the router, in the
 * gateway: gw->on_request). It answers with gw_conn_respond/gw_conn_error,
 * reserves a slot for a later answer, or upgrades the connection; req is the
 * connection's until the call returns.
 */
typedef void (*gw_request_fn)(struct gw_conn *c, struct gw_req *req);

/*
 * Asked with the head of a request sent with Expect: 100-continue, before
 * its body is read (gw->on_expect; NULL: always go on): true to have the
 * client send it (100 Continue), or false after answering a final error
 * with gw_conn_error (the body is then never read).
 */
typedef bool (*gw_expect_fn)(struct gw_conn *c, const struct gw_req *req);

/*
 * The owner of an upgraded connection (a stream). drained: everything queued
 * was written. closed: called once from the connection's close callback, the
 * last moment c is valid; the owner releases what it holds of c. Until then
 * a closing connection (c->closing) takes no more output but stays readable
 * for its owner.
 */
struct gw_conn_owner_ops {
	void (*drained)(void *owner);
	void (*closed)(void *owner);
};

/*
 * A request put aside while something is asked elsewhere first (--auth url
 * asks the application): the connection reads no further request until it
 * is released, and stays readable so that a client that leaves is seen.
 * conn is NULL once the connection closed; req is the holder's until the
 * release.
 */
struct gw_hold {
	struct gw_conn *conn;
	struct gw_req *req;
};

/* What a released request is handed to (as on_request would be), with the holder's arg. */
typedef void (*gw_held_fn)(struct gw_conn *c, struct gw_req *req, void *arg);

/* A response that is not known yet (the POST waiting for the broker). */
struct gw_slot {
	struct gw_slot *next;
	struct gw_conn *conn; /* NULL once the connection closed */
	struct gw_chunk *resp;
	bool done, close_after;
};

struct gw_conn {
	uv_tcp_t tcp;
	struct gw *gw;
	struct gw_req_parser parser;
	struct gw_req *req;      /* the request being handled (during on_request) */
	struct gw_req *deferred; /* a parsed request waiting for earlier responses */
	char *stash;             /* input after the deferred request */
	size_t stash_len;
	struct gw_outq out;
	uv_write_t wreq;
	struct gw_list node;       /* gw->conns */
	struct gw_tq_entry tq;     /* on gw->header_q or gw->idle_q */
	struct gw_list flush_node; /* gw->flush_q */
	const struct gw_conn_owner_ops *owner_ops; /* set once upgraded */
	void *owner;
	struct gw_slot *slots, *slots_tail;
	uint32_t nslots;
	struct gw_hold *hold;      /* the request put aside (gw_conn_hold), NULL: none */
	bool writing, closing, close_after_write, reading;
	bool delayed; /* flush_node is on gw->delay_q, not gw->flush_q */
	bool on_header_q; /* tq is on gw->header_q */
};

/* Accepts one connection from the listener. */
void gw_conn_accept(struct gw *gw);

/*
 * Answers the current request: status, JSON or other body, extra header lines
 * (each ending in "\r\n", may be NULL). close: close after this response.
 */
void gw_conn_respond(struct gw_conn *c, int status, const char *content_type, const char *extra_headers,
		     const char *body, size_t body_len, bool close);

/* Answers with {"error":{"code":…,"message":…}}. */
void gw_conn_error(struct gw_conn *c, int status, const char *code, const char *message, const char *extra_headers);

/*
 * Turns c into a one-way stream owned by owner: no more requests are read
 * (input is discarded; EOF still closes it), no timeout applies, and c tells
 * owner through ops when its output drains and when it is closed.
 */
void gw_conn_upgrade(struct gw_conn *c, const struct gw_conn_owner_ops *ops, void *owner);

/* Reserves the response position of the current request, to be filled later. */
struct gw_slot *gw_conn_slot(struct gw_conn *c);

/*
 * During on_request: puts the current request aside in h (h->req; c->req
 * is then NULL), to be handled later with gw_conn_release. Until then the
 * connection handles no further request (they wait as behind an unknown
 * answer) and no timeout applies to it: the holder bounds the wait.
 */
void gw_conn_hold(struct gw_conn *c, struct gw_hold *h);

/*
 * Ends a hold. When the connection is still open, fn (NULL: nothing) gets
 * the request as on_request would (answering, reserving a slot, upgrading
 * or holding it again), then the requests that waited go on; a connection
 * upgraded by fn reads no more requests, as any stream. The request is
 * freed either way; h is the caller's again.
 */
void gw_conn_release(struct gw_hold *h, gw_held_fn fn, void *arg);

/* Fills a slot (takes the chunk); frees it when its connection is gone. */
void gw_slot_fill(struct gw_slot *slot, struct gw_chunk *resp, bool close_after);

/*
 * Fills a slot with a response built as gw_conn_respond builds one (CORS
 * included); close: close after it (so is it while the gateway stops).
 */
void gw_slot_respond(struct gw *gw, struct gw_slot *slot, int status, const char *content_type,
		     const char *extra_headers, const char *body, size_t body_len, bool close);

/* Queues output and schedules a write in this loop turn. */
int gw_conn_send(struct gw_conn *c, struct gw_chunk *chunk, uint32_t off, uint32_t len);

/*
 * Queues live output. With --write-delay-ms N, when output was last queued
 * for c less than N ms before (last: its loop time), this waits (at most N
 * ms) so that what else is queued for c meanwhile goes in the same send;
 * otherwise (and with 0) it goes in this loop turn. Output queued with
 * gw_conn_send meanwhile takes it all at once.
 */
int gw_conn_send_later(struct gw_conn *c, struct gw_chunk *chunk, uint32_t off, uint32_t len, uint64_t last);

/*
 * Between the connection's files: output.c calls this when everything queued
 * was written (close after the last answer, tell the owner, or wait for the
 * next request).
 */
void gw_conn_written(struct gw_conn *c);

/* Closes the connection (idempotent); memory is freed in the close callback. */
void gw_conn_close(struct gw_conn *c);

/* Writes what gw->flush_q holds (the loop's check handle calls this). */
void gw_conn_flush_all(struct gw *gw);

/*
 * Registers the connections' timeout queues with gw->timer: a request not
 * received within --header-timeout-ms gets 408, a keep-alive connection idle
 * for --idle-timeout-ms is closed.
 */
void gw_conn_timers_init(struct gw *gw);


#endif
