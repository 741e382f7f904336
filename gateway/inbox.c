#include "inbox.h"

static void inbox_async_cb(uv_async_t *h)
{
	gw_inbox_drain(h->data);
}

int gw_inbox_init(uv_loop_t *loop, struct gw_inbox *ib, size_t max, gw_inbox_fn fn, void *arg)
{
	int rv;

	ib->head = ib->tail = NULL;
	ib->count = 0;
	ib->closed = false;
	ib->max = max;
	ib->fn = fn;
	ib->arg = arg;
	pthread_mutex_init(&ib->mtx, NULL);
	rv = uv_async_init(loop, &ib->async, inbox_async_cb);
	ib->async.data = ib;
	return rv;
}

bool gw_inbox_push(struct gw_inbox *ib, struct gw_inbox_item *item)
{
	bool wake;

	item->next = NULL;
	pthread_mutex_lock(&ib->mtx);
	if (ib->max != 0 && ib->count >= ib->max) {
		pthread_mutex_unlock(&ib->mtx);
		return false;
	}
	if (ib->tail)
		ib->tail->next = item;
	else
		ib->head = item;
	ib->tail = item;
	wake = ib->count++ == 0 && !ib->closed;
	pthread_mutex_unlock(&ib->mtx);
	if (wake)
		uv_async_send(&ib->async);
	return true;
}

void gw_inbox_drain(struct gw_inbox *ib)
{
	struct gw_inbox_item *list, *next;

	pthread_mutex_lock(&ib->mtx);
	list = ib->head;
	ib->head = ib->tail = NULL;
	ib->count = 0;
	pthread_mutex_unlock(&ib->mtx);
	for (; list != NULL; list = next) {
		next = list->next;
		ib->fn(ib, list);
	}
}

void gw_inbox_close(struct gw_inbox *ib, uv_close_cb closed_cb)
{
	pthread_mutex_lock(&ib->mtx);
	ib->closed = true;
	pthread_mutex_unlock(&ib->mtx);
	uv_close((uv_handle_t *)&ib->async, closed_cb);
}
