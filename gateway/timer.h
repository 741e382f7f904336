/*
 * timer.h - deadline queues on one libuv timer.
 *
 * A queue holds entries that all wait the same time (a request's header
 * timeout, a keep-alive's idle timeout, a stream's heartbeat interval), so
 * pushing an entry to the tail keeps the queue in deadline order and the
 * timer only ever looks at each queue's head. When an entry's deadline
 * passes it is taken off its queue and handed to the queue's expire
 * callback, which may push it again. The timer knows nothing of what the
 * entries are: the modules that own them register their queues (conn.c its
 * header and idle queues, stream.c its heartbeat queue).
 * Loop thread only.
 */
#ifndef GW_TIMER_H
#define GW_TIMER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "list.h"

struct gw_timer;
struct gw_tq;

/* A queue entry; embed it in the object that waits. */
struct gw_tq_entry {
	struct gw_list node;
	uint64_t deadline; /* loop time, ms */
};

/* Called with an entry whose deadline passed, already off its queue. */
typedef void (*gw_tq_expire_fn)(struct gw_tq *q, struct gw_tq_entry *e);

struct gw_tq {
	struct gw_list entries; /* struct gw_tq_entry.node, by deadline */
	struct gw_list node;    /* timer->queues */
	struct gw_timer *timer;
	uint64_t timeout_ms;    /* 0: the queue is off (push does nothing) */
	gw_tq_expire_fn expire;
	void *data;             /* the owner's */
};

struct gw_timer {
	uv_timer_t handle;
	struct gw_list queues; /* struct gw_tq.node */
	uint64_t due;          /* when the handle fires, 0 when it is stopped */
	bool closed;
};

/* Sets up the timer on loop; gw_timer_close before the loop closes. */
void gw_timer_init(struct gw_timer *t, uv_loop_t *loop);

/* Stops the timer and closes its handle; queues and entries stay as they are. */
void gw_timer_close(struct gw_timer *t);

/* Registers q with t: entries wait timeout_ms (0: never), then go to expire. */
void gw_tq_init(struct gw_tq *q, struct gw_timer *t, uint64_t timeout_ms, gw_tq_expire_fn expire, void *data);

/* Unregisters q from its timer; its entries are left off every queue. */
void gw_tq_fini(struct gw_tq *q);

/* Initializes an entry that is on no queue. */
static inline void gw_tq_entry_init(struct gw_tq_entry *e)
{
	gw_list_init(&e->node);
	e->deadline = 0;
}

/* (Re)queues e at q's tail, due timeout_ms from the loop's time; nothing when q is off. */
void gw_tq_push(struct gw_tq *q, struct gw_tq_entry *e);

/*
 * (Re)queues e on q due at deadline (loop time), in deadline order: for a
 * queue whose entries wait different times (O(n) from the tail; the later
 * deadline usually goes last). Works also when q's timeout is unused.
 */
void gw_tq_push_at(struct gw_tq *q, struct gw_tq_entry *e, uint64_t deadline);

/* Takes e off its queue (a no-op when it is on none). */
static inline void gw_tq_remove(struct gw_tq_entry *e)
{
	gw_list_remove(&e->node);
}

/* Whether e is on a queue. */
static inline bool gw_tq_queued(const struct gw_tq_entry *e)
{
	return gw_list_linked(&e->node);
}

/* The loop time the timer works with (uv_now of its loop). */
uint64_t gw_timer_now(const struct gw_timer *t);

#endif
