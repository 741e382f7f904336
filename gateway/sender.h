/*
 * sender.h - many socket writes for one system call, through io_uring.
 *
 * At the end of a loop turn the gateway has a write for each connection that
 * got output (an event to a room's streams, heartbeats to idle ones). Each
 * write(2) on loopback TCP costs ~6-10 us here, a good part of it the system
 * call itself on this paravirtualized machine; one io_uring_enter for a
 * batch of sendmsg operations measured ~35-45 % less CPU per send
 * (docs/BENCHMARKS.md). Every send is MSG_DONTWAIT, so each completes during
 * the submit (bytes, or -EAGAIN when the socket is full): nothing is left in
 * flight after gw_sender_run returns, and a full socket goes on through
 * libuv's uv_write as before. Loop thread only.
 */
#ifndef GW_SENDER_H
#define GW_SENDER_H

#include <stdbool.h>
#include <uv.h>

struct gw_sender;

#define GW_SENDER_MAX_BUFS 64

/* Sets up a ring for batches of up to `entries` sends. RC_EIO when io_uring is unavailable (then write(2) it is). */
int gw_sender_new(unsigned entries, struct gw_sender **out);
void gw_sender_free(struct gw_sender *s);

/* Adds a send of bufs[0..n) (n <= GW_SENDER_MAX_BUFS) on fd; false when the batch is full. The buffers must live until gw_sender_run returns. */
bool gw_sender_add(struct gw_sender *s, int fd, const uv_buf_t *bufs, unsigned n, void *cookie);

/* How many sends are in the batch. */
unsigned gw_sender_pending(const struct gw_sender *s);

/*
 * Submits the batch, waits for every completion, calls done(arg, cookie,
 * result) once for each send (bytes written or -errno). Returns RC_EIO when
 * the ring itself failed: the sends not yet reported get -EIO, and the
 * sender must be freed.
 */
int gw_sender_run(struct gw_sender *s, void (*done)(void *arg, void *cookie, int res), void *arg);

#endif
