/*
 * output.c - a connection's write path: output queued during a loop turn is
 * written at its end (gw_conn_flush_all, from the loop's prepare and check
 * handles), with uv_try_write while the socket takes it, then one uv_write
 * with several buffers; with io_uring, every connection's sendmsg goes in one
 * io_uring_enter per batch (sender.c). One write is in flight per connection.
 * --write-delay-ms holds a busy stream's live output on delay_q for one timer.
 * Declared in conn.h. Loop thread only.
 */
#include <errno.h>

#include "conn.h"
#include "error.h"
#include "gateway.h"
#include "log.h"
#include "sender.h"

#define CONN_MAX_BUFS 64 /* buffers per uv_write */

static void conn_write_cb(uv_write_t *wr, int status);
static void conn_write_idle(struct gw_conn *c);

static void conn_flush(struct gw_conn *c)
{
	uv_buf_t bufs[CONN_MAX_BUFS];
	unsigned n;
	int rv;

	if (c->writing || c->closing)
		return;
	/* write synchronously while the socket takes it: no request, no poll change */
	while ((n = gw_outq_take(&c->out, bufs, CONN_MAX_BUFS)) > 0) {
		size_t want = 0;
		for (unsigned i = 0; i < n; i++)
			want += bufs[i].len;
		c->out.busy = 0; /* the entries are consumed below, not by a write callback */
		rv = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
		if (rv == UV_EAGAIN)
			break;
		if (rv < 0) {
			gw_conn_close(c);
			return;
		}
		c->gw->m.bytes_delivered += (size_t)rv;
		gw_outq_consume(&c->out, (size_t)rv);
		if ((size_t)rv < want)
			break; /* the socket is full: the rest goes through uv_write */
	}
	if (c->out.count == 0) {
		conn_write_idle(c);
		return;
	}
	n = gw_outq_take(&c->out, bufs, CONN_MAX_BUFS);
	rv = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, conn_write_cb);
	if (rv != 0) {
		gw_outq_done(&c->out);
		gw_conn_close(c);
		return;
	}
	c->writing = true;
}

/* Everything queued is written. */
static void conn_write_idle(struct gw_conn *c)
{
	gw_outq_trim(&c->out);
	gw_conn_written(c);
}

static void conn_write_cb(uv_write_t *wr, int status)
{
	struct gw_conn *c = gw_container_of(wr, struct gw_conn, wreq);
	size_t before = c->out.bytes;

	c->writing = false;
	gw_outq_done(&c->out);
	if (status < 0) {
		gw_conn_close(c);
		return;
	}
	c->gw->m.bytes_delivered += before - c->out.bytes;
	if (c->out.count > 0)
		conn_flush(c);
	else
		conn_write_idle(c);
}

/* Appends output to c's queue; nothing more. */
static int conn_push(struct gw_conn *c, struct gw_chunk *chunk, uint32_t off, uint32_t len)
{
	return c->closing ? RC_ECLOSED : gw_outq_push(&c->out, chunk, off, len);
}

int gw_conn_send(struct gw_conn *c, struct gw_chunk *chunk, uint32_t off, uint32_t len)
{
	int rv = conn_push(c, chunk, off, len);

	if (rv != RC_OK)
		return rv;
	if (c->delayed) {
		/* what waited goes now, with this */
		gw_list_remove(&c->flush_node);
		c->delayed = false;
	}
	if (!c->writing && !gw_list_linked(&c->flush_node))
		gw_list_insert_tail(&c->gw->flush_q, &c->flush_node);
	return RC_OK;
}

static void conn_delay_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;
	struct gw_list *pos, *tmp;

	gw_list_each_safe(pos, tmp, &gw->delay_q)
	{
		struct gw_conn *c = gw_container_of(pos, struct gw_conn, flush_node);
		gw_list_remove(&c->flush_node);
		c->delayed = false;
		gw_list_insert_tail(&gw->flush_q, &c->flush_node);
	}
	/* now: the loop's check handle would wait for the next I/O */
	gw_conn_flush_all(gw);
}

int gw_conn_send_later(struct gw_conn *c, struct gw_chunk *chunk, uint32_t off, uint32_t len, uint64_t last)
{
	struct gw *gw = c->gw;
	uint64_t delay = (uint64_t)gw->opt.write_delay_ms;
	int rv;

	/* the first output after a quiet spell goes at once; only a busy stream waits */
	if (delay == 0 || (!c->delayed && uv_now(gw->loop) >= last + delay))
		return gw_conn_send(c, chunk, off, len);
	rv = conn_push(c, chunk, off, len);
	if (rv != RC_OK)
		return rv;
	if (!c->writing && !gw_list_linked(&c->flush_node)) {
		gw_list_insert_tail(&gw->delay_q, &c->flush_node);
		c->delayed = true;
		/* one timer for every held stream: the first one starts it */
		if (!uv_is_active((uv_handle_t *)&gw->delay_timer)) {
			gw->delay_timer.data = gw;
			uv_timer_start(&gw->delay_timer, conn_delay_cb, delay, 0);
		}
	}
	return RC_OK;
}

/* A batched send finished (sender.c): the same steps as after uv_try_write. */
static void conn_sent(void *arg, void *cookie, int res)
{
	struct gw_conn *c = cookie;

	(void)arg;
	if (c->closing)
		return;
	if (res < 0 && res != -EAGAIN) {
		gw_conn_close(c);
		return;
	}
	if (res > 0) {
		c->gw->m.bytes_delivered += (size_t)res;
		gw_outq_consume(&c->out, (size_t)res);
	}
	/* the rest (a full socket goes to uv_write), or idle when nothing is left */
	conn_flush(c);
}

/* Every connection with output: one sendmsg each, all in one io_uring_enter per batch. */
static void conn_flush_batched(struct gw *gw)
{
	while (!gw_list_empty(&gw->flush_q) && gw->sender != NULL) {
		struct gw_list *pos, *tmp;

		gw_list_each_safe(pos, tmp, &gw->flush_q)
		{
			struct gw_conn *c = gw_container_of(pos, struct gw_conn, flush_node);
			uv_buf_t bufs[GW_SENDER_MAX_BUFS];
			uv_os_fd_t fd;
			unsigned n;

			if (c->writing || c->closing || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 ||
			    (n = gw_outq_take(&c->out, bufs, GW_SENDER_MAX_BUFS)) == 0) {
				gw_list_remove(&c->flush_node);
				conn_flush(c);
				continue;
			}
			c->out.busy = 0; /* consumed by conn_sent, not by a write callback */
			if (!gw_sender_add(gw->sender, fd, bufs, n, c))
				break; /* the batch is full: the rest in the next one */
			gw_list_remove(&c->flush_node);
		}
		if (gw_sender_run(gw->sender, conn_sent, gw) != RC_OK) {
			rc_log_error("io_uring sends failed; writing with write(2) from now on", NULL);
			gw_sender_free(gw->sender);
			gw->sender = NULL;
		}
	}
}

void gw_conn_flush_all(struct gw *gw)
{
	struct gw_list *pos, *tmp;

	if (gw->sender != NULL)
		conn_flush_batched(gw);
	gw_list_each_safe(pos, tmp, &gw->flush_q)
	{
		struct gw_conn *c = gw_container_of(pos, struct gw_conn, flush_node);
		gw_list_remove(&c->flush_node);
		conn_flush(c);
	}
}
