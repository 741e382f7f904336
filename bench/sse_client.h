/*
 * sse_client.h - one subscriber connection: connect, GET, parse the stream.
 *
 * A client binds its socket to a loopback source address, connects, sends a
 * prebuilt GET request, parses the HTTP response head with http_parser and the
 * body as SSE, and checks every event's "ts"/"seq"/"room" into the shared
 * stats. It ends once, for one reason (enum rb_sse_end), and reports it to its
 * owner; the handle closes asynchronously after that, except after
 * RB_SSE_END_COMPLETE: then it only stops reading, and closes when stopped.
 * (Closing thousands of sockets in the loop pass that reads the last event
 * would delay the reads of the streams behind them, and so inflate the
 * latency measured for the last event.) It never allocates after the caller
 * has handed it its memory.
 *
 * Threads: everything runs on the one loop thread of rb_sse_shared.loop.
 */
#ifndef RB_SSE_CLIENT_H
#define RB_SSE_CLIENT_H

#include <http_parser.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "scan.h"
#include "sse_parser.h"
#include "sub_stats.h"

/* Room of a stream that receives every room (a firehose template). */
#define RB_SSE_ALL_ROOMS UINT32_MAX

enum rb_sse_state {
	RB_SSE_IDLE,       /* not started */
	RB_SSE_CONNECTING, /* TCP connect in progress */
	RB_SSE_WAITING,    /* request sent, no response head yet */
	RB_SSE_OPEN,       /* 200 received; streaming */
	RB_SSE_DONE,       /* ended complete: reading stopped, socket open until rb_sse_client_stop */
	RB_SSE_CLOSING,    /* ended; handle closing */
	RB_SSE_CLOSED,     /* handle closed; memory may be reused */
};

enum rb_sse_end {
	RB_SSE_END_CONNECT_FAILED, /* socket, bind or connect failed */
	RB_SSE_END_DROPPED,        /* connected, but the server closed it before a response head */
	RB_SSE_END_TIMEOUT,        /* no response head in time */
	RB_SSE_END_HTTP_ERROR,     /* response status other than 200 */
	RB_SSE_END_SERVER_CLOSED,  /* an open stream ended by the server (EOF, reset, end of body) */
	RB_SSE_END_PROTOCOL,       /* the response is not parsable HTTP */
	RB_SSE_END_COMPLETE,       /* received the expected number of events */
	RB_SSE_END_STOPPED,        /* the run ended */
};

struct rb_sse_client;

/* What every client of a process shares; owned by the subscriber, outlives the clients. */
struct rb_sse_shared {
	uv_loop_t *loop;
	struct sockaddr_in target;
	struct rb_sub_stats *stats;
	/* One read buffer for all clients: each read is parsed before the next is allocated. */
	char *read_buf;
	size_t read_cap;
	const char *room_prefix;
	size_t room_prefix_len;
	uint32_t rooms;  /* events whose room index is >= rooms are unparsed */
	uint64_t expect; /* end a stream after this many events; 0 = never */
	void *owner;
	/* A 200 response head arrived. */
	void (*on_open)(void *owner, struct rb_sse_client *c);
	/* The client ended (called once, before its handle has closed). */
	void (*on_end)(void *owner, struct rb_sse_client *c, enum rb_sse_end why, bool was_open);
	/* The handle has closed; c is CLOSED (optional, may be NULL). */
	void (*on_closed)(void *owner, struct rb_sse_client *c);
};

struct rb_sse_client {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_write_t write_req;
	http_parser http;
	struct rb_sse_parser sse;
	struct rb_sse_shared *sh;
	const uv_buf_t *request; /* shared, immutable, outlives the client */
	uint64_t *room_seq;      /* firehose: last seq of each room (sh->rooms entries) */
	uint64_t own_seq;        /* last seq of the stream's own room */
	uint64_t started_ns;
	uint64_t events;
	struct rb_fields ev; /* fields of the event being received */
	bool ev_has_data;
	uint32_t room; /* the room asked for, or RB_SSE_ALL_ROOMS */
	enum rb_sse_state state;
};

/*
 * Starts c (IDLE, zeroed or CLOSED): a socket bound to src, a connect to
 * sh->target, then request. line_buf (line_cap bytes) holds SSE lines split
 * across reads; room_seq must hold sh->rooms entries when room is
 * RB_SSE_ALL_ROOMS and may be NULL otherwise. All of it is the caller's and
 * must outlive the client until on_closed. Returns 0, or a negative errno when
 * the connect could not even be started: the client has then already ended
 * (on_end was called with RB_SSE_END_CONNECT_FAILED).
 */
int rb_sse_client_start(struct rb_sse_client *c, struct rb_sse_shared *sh,
			const struct sockaddr_in *src, uint32_t room, uint64_t *room_seq,
			const uv_buf_t *request, char *line_buf, size_t line_cap);

/*
 * Ends c with RB_SSE_END_TIMEOUT if it is still waiting for a response head
 * and started before started_before_ns.
 */
void rb_sse_client_check_timeout(struct rb_sse_client *c, uint64_t started_before_ns);

/* Ends c with RB_SSE_END_STOPPED if it is active, closes it if DONE; no-op otherwise. */
void rb_sse_client_stop(struct rb_sse_client *c);

/* True from start until the client ends. */
static inline bool rb_sse_client_active(const struct rb_sse_client *c)
{
	return c->state >= RB_SSE_CONNECTING && c->state <= RB_SSE_OPEN;
}

#endif
