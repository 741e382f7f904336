/*
 * inbox.h - the door from nng's threads into the loop.
 *
 * Any thread pushes items onto a mutex-protected list; the push that makes the
 * list non-empty wakes the loop with uv_async_send, and the loop drains the
 * whole list in one callback (wake-ups coalesce). A bounded inbox refuses
 * items when full, so a loop that falls behind does not grow without limit.
 */
#ifndef GW_INBOX_H
#define GW_INBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct gw_inbox_item {
	struct gw_inbox_item *next;
};

struct gw_inbox;
typedef void (*gw_inbox_fn)(struct gw_inbox *ib, struct gw_inbox_item *item);

struct gw_inbox {
	uv_async_t async;
	pthread_mutex_t mtx; /* guards head, tail, count */
	struct gw_inbox_item *head, *tail;
	size_t count, max; /* max 0: unbounded */
	bool closed;       /* the async handle is closed: pushes queue without a wake-up */
	gw_inbox_fn fn;
	void *arg;
};

/* Loop thread. Returns 0 or a libuv error. */
int gw_inbox_init(uv_loop_t *loop, struct gw_inbox *ib, size_t max, gw_inbox_fn fn, void *arg);

/* Any thread. Returns false (item not taken) when the inbox is full. */
bool gw_inbox_push(struct gw_inbox *ib, struct gw_inbox_item *item);

/* Loop thread: handles what is queued now (also done by the async callback). */
void gw_inbox_drain(struct gw_inbox *ib);

/*
 * Loop thread: closes the async handle (drain first); closed_cb (may be NULL)
 * runs when it is closed. Pushes after this are still taken and stay queued
 * until the owner drains them; the owner destroys mtx when it frees ib.
 * A push that started before the close may still call uv_async_send on the
 * closing handle: stop every pushing thread (nng_aio_stop) before freeing ib
 * in closed_cb, as the bus and api clients do.
 */
void gw_inbox_close(struct gw_inbox *ib, uv_close_cb closed_cb);

#endif
