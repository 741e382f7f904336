/*
 * gw_fixture.h - a real gateway loop for the unit tests of the hub, the
 * streams and the repair, linked against the whole gateway library (no link
 * stubs).
 *
 * gwf_start sets up a struct gw on its own uv loop as gateway/main.c's
 * gw_setup does (the timer and its queues, the hub, the publisher, the write
 * flushes before and after each loop turn, the router as on_request and
 * on_expect), listening on
 * 127.0.0.1 port 0. There is no broker: gw.bus is NULL (the hub's
 * subscriptions go nowhere; its gauges and gw_hub_wants tell its decisions)
 * unless a test sets up the bus side with gw_loop_bus_start, dialing PUB
 * sockets of its own (gwf_stop then stops it),
 * and gw.api is the real api client, dialled over inproc to a REP socket the
 * test holds, so that a test sees each replay request and answers it itself.
 *
 * Clients are plain non-blocking sockets connected to the listener; the
 * fixture reads what they receive after each loop turn. Nothing waits on a
 * clock except GWF_WAIT's deadline, which only turns a hang into a failure.
 * One fixture per test; single thread (nng's threads aside).
 */
#ifndef GW_FIXTURE_H
#define GW_FIXTURE_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gateway.h"

#define GWF_MAX_CLIENTS 16
#define GWF_MAX_APIS	4
#define GWF_EPOCH	0x6f1c2a9eu /* the epoch the tests' frames carry; ids "6f1c2a9e-<gseq>" */

struct gwf_client {
	int fd;
	char *in; /* everything received, NUL-terminated */
	size_t len, cap;
	size_t seen; /* in[0..seen) was taken by gwf_take */
	bool eof;    /* the gateway closed the connection */
	bool paused; /* the fixture does not read it (a client that stopped reading) */
};

struct gwf {
	uv_loop_t loop;
	struct gw gw;
	uv_timer_t guard;   /* bounds each blocking loop turn */
	nng_socket rep; /* the broker api's side (the first broker's: reps[0]) */
	nng_socket reps[GWF_MAX_APIS]; /* gwf_start_apis: one per broker */
	unsigned napis;
	bool api_stopped;
	int stream_rcvbuf; /* SO_RCVBUF of gwf_stream's clients (0: the system's) */
	struct gwf_client clients[GWF_MAX_CLIENTS];
	size_t nclients;
};

/* The gateway's defaults (gw_options_defaults), except heartbeats off and no io_uring: change, then gwf_start. */
void gwf_options(struct gw_options *o);

/* Sets up f with options o (NULL: gwf_options); fails the test if it cannot. */
void gwf_start(struct gwf *f, const struct gw_options *o);

/*
 * The same with napis brokers' apis: the api client dials napis REP sockets
 * (f->reps), as --broker-api A,B,... does; returns once it is connected to
 * every one.
 */
void gwf_start_apis(struct gwf *f, const struct gw_options *o, unsigned napis);

/* Closes the clients, every connection and handle, the api and the bus side (gw_loop_bus_start) if set up; the loop must end clean. */
void gwf_stop(struct gwf *f);

/* Stops the api client now (later calls fail at once, as while the gateway stops). */
void gwf_api_stop(struct gwf *f);

/* One loop turn (blocking at most a few ms), then reads every client. False past deadline. */
bool gwf_turn(struct gwf *f, uint64_t deadline);

/* One loop turn that does not block (what is ready, and the writes), then reads every client. */
void gwf_poll(struct gwf *f);

/* A deadline for GWF_WAIT: seconds from now, generous for the sanitizer build. */
uint64_t gwf_deadline(void);

/* Runs the loop until cond holds; fails the test with cond's text at the deadline. */
#define GWF_WAIT(f, cond)                                                                                              \
	do {                                                                                                           \
		uint64_t gwf_dl_ = gwf_deadline();                                                                     \
		while (!(cond))                                                                                        \
			if (!gwf_turn((f), gwf_dl_))                                                                   \
				fail_msg("%s:%d: gave up waiting for %s", __FILE__, __LINE__, #cond);                  \
	} while (0)

/* A client connected to the gateway and accepted by it. rcvbuf > 0: its SO_RCVBUF. */
struct gwf_client *gwf_connect(struct gwf *f, int rcvbuf);

/* Sends text on c (the whole of it). */
void gwf_send(struct gwf_client *c, const char *text);

/*
 * Opens a stream: GET /api/v1/events?<query> (query NULL: the firehose) with
 * Last-Event-ID last_event_id (NULL: none); returns once the gateway counts it
 * open and the client has its response head and preamble, which are taken.
 */
struct gwf_client *gwf_stream(struct gwf *f, const char *query, const char *last_event_id);

/* Closes the client's socket (EOF for the gateway). */
void gwf_close(struct gwf_client *c);

/* The text not taken yet. */
static inline const char *gwf_rest(const struct gwf_client *c)
{
	return c->in + c->seen;
}

/* Whether the text not taken yet contains needle. */
bool gwf_has(const struct gwf_client *c, const char *needle);

/* Waits until the text not taken yet holds strlen(want) bytes; they must be want; takes them. */
void gwf_take(struct gwf *f, struct gwf_client *c, const char *want);

/* Takes every ": ping" at the head of the text not taken yet; returns how many. */
size_t gwf_take_pings(struct gwf_client *c);

/* Runs the loop until c got EOF. */
void gwf_wait_eof(struct gwf *f, struct gwf_client *c);

/* One event of a frame. room NULL: global; json NULL: {"n":<gseq>}. */
struct gwf_ev {
	uint64_t gseq;
	const char *room;
	const char *json;
};

/* Writes a frame (epoch, last_gseq last, flags) of events evs[0..n) into buf; returns its length. */
size_t gwf_frame(uint8_t *buf, size_t cap, uint64_t epoch, uint64_t last, uint8_t flags, const struct gwf_ev *evs,
		 size_t n);

/*
 * Hands the hub a live frame of evs[0..n) in epoch GWF_EPOCH (last_gseq: the
 * last event's); returns gw_hub_deliver's count. Allocates nothing itself.
 */
size_t gwf_deliver(struct gwf *f, const struct gwf_ev *evs, size_t n);

/* The SSE text of event gseq ({"n":<gseq>} unless json) in epoch GWF_EPOCH. */
const char *gwf_event_text(uint64_t gseq, const char *json);

/* The SSE text of a stream.reset with the id (epoch, gseq). */
const char *gwf_reset_text(const char *reason, uint64_t epoch, uint64_t gseq);

/* Waits for the next replay request at the broker api's side; returns it (NUL-terminated, static). */
const char *gwf_api_request(struct gwf *f);

/* Answers the request taken last with data[0..len). */
void gwf_api_reply(struct gwf *f, const void *data, size_t len);

/* gwf_api_request and gwf_api_reply on broker i's api (f->reps[i]). */
const char *gwf_api_request_on(struct gwf *f, unsigned i);
void gwf_api_reply_on(struct gwf *f, unsigned i, const void *data, size_t len);

#endif
