/*
 * workers.h - several gateway loops in one process (--workers N).
 *
 * Each worker is a whole gateway on its own thread: its own libuv loop,
 * listening socket, bus subscription, api connection and io_uring. They share
 * nothing on the hot path. The kernel spreads new connections over their
 * listening sockets (SO_REUSEPORT, one per worker, bound to one address).
 * What they do share is the /metrics view: each worker copies its counters
 * here a few times a second, and whichever worker answers /metrics adds the
 * others' copies to its own live counters.
 */
#ifndef GW_WORKERS_H
#define GW_WORKERS_H

#include <stddef.h>
#include <sys/socket.h>

#include "metrics.h"

struct gw_workers;

/* How often a worker copies its counters for the others (ms). */
#define GW_WORKERS_SNAPSHOT_MS 200

/* Most loops one process runs (--workers). */
#define GW_WORKERS_MAX 64

int gw_workers_new(unsigned n, struct gw_workers **out);
void gw_workers_free(struct gw_workers *w);

/* Worker i's counters as of now (any thread). */
void gw_workers_publish(struct gw_workers *w, unsigned i, const struct gw_metrics *m);

/* out = own + the last copy of every other worker's counters (any thread). */
void gw_workers_sum(struct gw_workers *w, unsigned self, const struct gw_metrics *own, struct gw_metrics *out);

/*
 * Opens n listening TCP sockets bound to addr, with SO_REUSEPORT when n > 1.
 * Port 0: the first socket picks the port and the others take the same one.
 * Returns RC_OK with fds[0..n) open, or an RC_ error with errno_out set and
 * nothing left open.
 */
int gw_listen_sockets(const struct sockaddr *addr, unsigned n, int *fds, int *errno_out);

/* Room for gw_listen_name's text: "[" IPv6 "]:" port and a NUL. */
#define GW_LISTEN_NAME_MAX 64

/*
 * The address the socket fd is bound to as host:port ("127.0.0.1:40123",
 * "[::1]:40123"), what --listen takes: with port 0, the port picked. Writes
 * "?" and returns RC_EIO when fd has no such address.
 */
int gw_listen_name(int fd, char *buf, size_t size);

#endif
