#include "sender.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "error.h"

/* One send of the batch: its message header and buffers stay here until the completion. */
struct send_slot {
	struct msghdr msg;
	struct iovec iov[GW_SENDER_MAX_BUFS];
	void *cookie;
};

struct gw_sender {
	struct io_uring ring;
	unsigned entries, n;
	struct send_slot *slots;
};

int gw_sender_new(unsigned entries, struct gw_sender **out)
{
	struct gw_sender *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return RC_ENOMEM;
	s->slots = calloc(entries, sizeof(*s->slots));
	/*
	 * No poller thread (it would spin on a core for nothing between turns).
	 * Only the loop thread submits, and completions are reaped right after
	 * the submit: the kernel may then defer its completion work to that
	 * moment (6.1+; older kernels refuse the flags and get a plain ring).
	 */
	if (s->slots == NULL ||
	    (io_uring_queue_init(entries, &s->ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) != 0 &&
	     io_uring_queue_init(entries, &s->ring, 0) != 0)) {
		free(s->slots);
		free(s);
		return RC_EIO;
	}
	s->entries = entries;
	*out = s;
	return RC_OK;
}

void gw_sender_free(struct gw_sender *s)
{
	if (s == NULL)
		return;
	io_uring_queue_exit(&s->ring);
	free(s->slots);
	free(s);
}

bool gw_sender_add(struct gw_sender *s, int fd, const uv_buf_t *bufs, unsigned n, void *cookie)
{
	struct send_slot *slot;
	struct io_uring_sqe *sqe;

	if (s->n == s->entries || (sqe = io_uring_get_sqe(&s->ring)) == NULL)
		return false;
	slot = &s->slots[s->n];
	for (unsigned i = 0; i < n; i++) {
		slot->iov[i].iov_base = bufs[i].base;
		slot->iov[i].iov_len = bufs[i].len;
	}
	memset(&slot->msg, 0, sizeof(slot->msg));
	slot->msg.msg_iov = slot->iov;
	slot->msg.msg_iovlen = n;
	slot->cookie = cookie;
	/* MSG_DONTWAIT: a full socket completes at once with -EAGAIN instead of waiting in the ring */
	if (n == 1) /* the common case (one range per stream per turn): send is cheaper than sendmsg */
		io_uring_prep_send(sqe, fd, slot->iov[0].iov_base, slot->iov[0].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	else
		io_uring_prep_sendmsg(sqe, fd, &slot->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, s->n);
	s->n++;
	return true;
}

unsigned gw_sender_pending(const struct gw_sender *s)
{
	return s->n;
}

int gw_sender_run(struct gw_sender *s, void (*done)(void *arg, void *cookie, int res), void *arg)
{
	unsigned left = s->n;
	int rv;

	if (left == 0)
		return RC_OK;
	do
		rv = io_uring_submit_and_wait(&s->ring, left);
	while (rv == -EINTR);
	while (rv >= 0 && left > 0) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		io_uring_for_each_cqe(&s->ring, head, cqe)
		{
			struct send_slot *slot = &s->slots[cqe->user_data];
			done(arg, slot->cookie, cqe->res);
			slot->cookie = NULL;
			seen++;
		}
		io_uring_cq_advance(&s->ring, seen);
		left -= seen;
		if (left > 0) {
			do
				rv = io_uring_wait_cqe_nr(&s->ring, &cqe, left);
			while (rv == -EINTR);
		}
	}
	s->n = 0;
	if (rv < 0) {
		/*
		 * The ring failed (out of kernel memory, say). Which sends went out is
		 * unknown, so the caller closes those connections (clients resume
		 * with Last-Event-ID) and frees the sender: no request may linger.
		 */
		for (unsigned i = 0; i < s->entries; i++)
			if (s->slots[i].cookie != NULL)
				done(arg, s->slots[i].cookie, -EIO);
		return RC_EIO;
	}
	return RC_OK;
}
