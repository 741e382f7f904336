#include "timer.h"

static void timer_arm(struct gw_timer *t, uint64_t due);

/* Expires every due entry of every queue, then waits for the earliest head. */
static void timer_cb(uv_timer_t *h)
{
	struct gw_timer *t = h->data;
	uint64_t now = uv_now(h->loop), next = 0;
	struct gw_list *qn;

	t->due = 0;
	for (qn = t->queues.next; qn != &t->queues; qn = qn->next) {
		struct gw_tq *q = gw_container_of(qn, struct gw_tq, node);
		struct gw_list *n;

		while ((n = gw_list_first(&q->entries)) != NULL) {
			struct gw_tq_entry *e = gw_container_of(n, struct gw_tq_entry, node);
			if (e->deadline > now) {
				if (next == 0 || e->deadline < next)
					next = e->deadline;
				break;
			}
			gw_list_remove(&e->node);
			/* a push from here lands after now: the loop ends */
			q->expire(q, e);
		}
	}
	if (next != 0)
		timer_arm(t, next);
}

/* Makes the handle fire no later than due. */
static void timer_arm(struct gw_timer *t, uint64_t due)
{
	uint64_t now = uv_now(t->handle.loop);

	if (t->closed || (t->due != 0 && t->due <= due))
		return;
	t->due = due;
	uv_timer_start(&t->handle, timer_cb, due > now ? due - now : 0, 0);
}

void gw_timer_init(struct gw_timer *t, uv_loop_t *loop)
{
	uv_timer_init(loop, &t->handle);
	t->handle.data = t;
	gw_list_init(&t->queues);
	t->due = 0;
	t->closed = false;
}

void gw_timer_close(struct gw_timer *t)
{
	if (t->closed)
		return;
	t->closed = true;
	t->due = 0;
	uv_timer_stop(&t->handle);
	uv_close((uv_handle_t *)&t->handle, NULL);
}

void gw_tq_init(struct gw_tq *q, struct gw_timer *t, uint64_t timeout_ms, gw_tq_expire_fn expire, void *data)
{
	gw_list_init(&q->entries);
	q->timer = t;
	q->timeout_ms = timeout_ms;
	q->expire = expire;
	q->data = data;
	gw_list_insert_tail(&t->queues, &q->node);
}

void gw_tq_fini(struct gw_tq *q)
{
	struct gw_list *n;

	while ((n = gw_list_first(&q->entries)) != NULL)
		gw_list_remove(n);
	gw_list_remove(&q->node);
}

void gw_tq_push(struct gw_tq *q, struct gw_tq_entry *e)
{
	gw_list_remove(&e->node);
	if (q->timeout_ms == 0)
		return;
	e->deadline = uv_now(q->timer->handle.loop) + q->timeout_ms;
	/*
	 * Behind another entry, the timer already fires by that entry's earlier
	 * deadline and looks again then; only a queue's new head arms it.
	 */
	if (gw_list_empty(&q->entries))
		timer_arm(q->timer, e->deadline);
	gw_list_insert_tail(&q->entries, &e->node);
}

void gw_tq_push_at(struct gw_tq *q, struct gw_tq_entry *e, uint64_t deadline)
{
	struct gw_list *n;

	gw_list_remove(&e->node);
	e->deadline = deadline;
	for (n = q->entries.prev; n != &q->entries; n = n->prev)
		if (gw_container_of(n, struct gw_tq_entry, node)->deadline <= deadline)
			break;
	/* after n (the head sentinel: first) */
	e->node.prev = n;
	e->node.next = n->next;
	n->next->prev = &e->node;
	n->next = &e->node;
	if (e->node.prev == &q->entries)
		timer_arm(q->timer, deadline);
}

uint64_t gw_timer_now(const struct gw_timer *t)
{
	return uv_now(t->handle.loop);
}
