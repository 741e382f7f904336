#define _GNU_SOURCE /* accept4 */
#include "link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "link_frame.h"
#include "listener.h"
#include "log.h"
#include "ops.h"

#define LINK_READ_CHUNK (64 * 1024)
#define LINK_KEEP_BYTES (1u << 20) /* an empty buffer larger than this is freed */
#define LINK_EVENTS	64
#define LINK_ACCEPT_RETRY_MS 100 /* out of descriptors: accept again after this */

/* the parse callback stops: the connection's replies wait above the limit */
#define LINK_PAUSE 1

struct link_conn {
	struct link *l;
	int fd;
	char peer[INET6_ADDRSTRLEN + 8];

	pthread_mutex_t mtx; /* guards out*, want_out, paused, dead */
	uint8_t *out;	     /* bytes to write: out[out_off..out_len) */
	size_t out_off, out_len, out_cap;
	bool want_out; /* EPOLLOUT armed */
	bool paused;   /* not read until out drains to buffer_bytes */
	bool dead;     /* a write failed: nothing more is written, the link thread closes it */

	/* link thread only */
	uint8_t *in;
	size_t in_len, in_cap, taken;
	const char *why;	       /* why the parse callback stopped */
	struct link_conn *prev, *next; /* in l->conns (under l->mtx) */
};

struct link {
	struct link_config cfg;
	struct broker *br;
	char *url;
	int lfd, epfd, evfd;
	pthread_t thread;
	bool started;

	pthread_mutex_t mtx; /* guards conns, nconns, quiesce, quiesced, stop */
	pthread_cond_t cv;
	struct link_conn *conns;
	int nconns;
	bool quiesce, quiesced, stop;

	/* link thread only */
	struct rc_buf reply;
	uint64_t accept_resume_ms; /* != 0: out of descriptors, the listening socket is off epoll until then */
	bool emfile_logged;	   /* this shortage of descriptors was logged */
	uint64_t refused_log_ms;
	uint64_t refused_since_log;

	_Atomic uint64_t connections, dropped, requests;
};

static uint64_t link_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* With c->mtx held: what epoll should wait for on c. */
static void link_conn_arm_locked(struct link_conn *c)
{
	struct epoll_event ev = { .events = (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0), .data.ptr = c };

	epoll_ctl(c->l->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static size_t link_conn_pending(const struct link_conn *c)
{
	return c->out_len - c->out_off;
}

/* With c->mtx held: appends p[0..n) to the output buffer. Returns 0 or RC_ENOMEM. */
static int link_conn_buffer(struct link_conn *c, const uint8_t *p, size_t n)
{
	if (c->out_len + n > c->out_cap && c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, link_conn_pending(c));
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + n > c->out_cap) {
		size_t ncap = c->out_cap ? c->out_cap : 64 * 1024;
		uint8_t *o;
		while (ncap < c->out_len + n)
			ncap *= 2;
		if ((o = realloc(c->out, ncap)) == NULL)
			return RC_ENOMEM;
		c->out = o;
		c->out_cap = ncap;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return RC_OK;
}

/* With c->mtx held: the stream can no longer be trusted (part of a frame lost): close it. */
static void link_conn_kill_locked(struct link_conn *c)
{
	c->dead = true;
	/* the link thread sees EPOLLHUP and closes it */
	shutdown(c->fd, SHUT_RDWR);
}

/*
 * With c->mtx held: sends one frame, or queues what the socket does not
 * take now. A bus message (droppable) over the limit is dropped whole:
 * returns false then.
 */
static bool link_conn_send_locked(struct link_conn *c, uint8_t kind, uint32_t id, const void *payload, size_t len,
				  bool droppable)
{
	uint8_t hdr[RC_LINK_HDR_SIZE];
	size_t total = RC_LINK_HDR_SIZE + len, done = 0;

	if (c->dead)
		return true;
	if (droppable && link_conn_pending(c) > c->l->cfg.buffer_bytes)
		return false;
	rc_link_hdr_put(hdr, kind, id, (uint32_t)len);
	if (link_conn_pending(c) == 0) {
		struct iovec iov[2] = { { hdr, RC_LINK_HDR_SIZE }, { (void *)payload, len } };
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len > 0 ? 2 : 1 };
		ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			link_conn_kill_locked(c);
			return true;
		}
		done = n > 0 ? (size_t)n : 0;
		if (done == total)
			return true;
	}
	if ((done < RC_LINK_HDR_SIZE && link_conn_buffer(c, hdr + done, RC_LINK_HDR_SIZE - done) != RC_OK) ||
	    link_conn_buffer(c, (const uint8_t *)payload + (done > RC_LINK_HDR_SIZE ? done - RC_LINK_HDR_SIZE : 0),
			     len - (done > RC_LINK_HDR_SIZE ? done - RC_LINK_HDR_SIZE : 0)) != RC_OK) {
		rc_log_error("link output buffer allocation failed; connection closed", "peer=%s", c->peer);
		link_conn_kill_locked(c);
		return true;
	}
	if (!c->want_out) {
		c->want_out = true;
		link_conn_arm_locked(c);
	}
	return true;
}

void link_bus_send(void *arg, const void *data, size_t len)
{
	struct link *l = arg;
	uint64_t dropped = 0;

	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mtx);
	for (struct link_conn *c = l->conns; c != NULL; c = c->next) {
		pthread_mutex_lock(&c->mtx);
		if (!link_conn_send_locked(c, RC_LINK_KIND_BUS, 0, data, len, true))
			dropped++;
		pthread_mutex_unlock(&c->mtx);
	}
	pthread_mutex_unlock(&l->mtx);
	if (dropped > 0)
		l->dropped += dropped;
}

/* Link thread: unlinks c (no other thread sees it afterwards) and closes it. */
static void link_conn_close(struct link_conn *c, const char *why)
{
	struct link *l = c->l;

	pthread_mutex_lock(&l->mtx);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	l->nconns--;
	pthread_mutex_unlock(&l->mtx);
	l->connections--;
	if (why != NULL)
		rc_log_warn("link connection closed", "peer=%s reason=\"%s\"", c->peer, why);
	else
		rc_log_debug("link connection closed", "peer=%s", c->peer);
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	pthread_mutex_destroy(&c->mtx);
	free(c->out);
	free(c->in);
	free(c);
}

/* rc_link_frame_fn, link thread: one request. */
static int link_conn_frame(void *arg, const struct rc_link_frame *f)
{
	struct link_conn *c = arg;
	struct link *l = c->l;
	enum ops_outcome out;
	bool pause;

	if (f->kind != RC_LINK_KIND_REQUEST) {
		c->why = "a frame other than a request ('Q')";
		return RC_EPROTO;
	}
	if (f->id == 0) {
		c->why = "a request with id 0";
		return RC_EPROTO;
	}
	c->taken = (size_t)(f->payload + f->len - c->in);
	l->requests++;
	l->reply.len = 0;
	out = ops_handle(l->br, (const char *)f->payload, f->len, false, &l->reply);
	if (out == OPS_DONE_BUS)
		return 0;
	if (l->reply.err) {
		rc_buf_fini(&l->reply);
		rc_buf_puts(&l->reply,
			    "{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
	}
	pthread_mutex_lock(&c->mtx);
	link_conn_send_locked(c, RC_LINK_KIND_REPLY, f->id, l->reply.data, l->reply.len, false);
	pause = link_conn_pending(c) > l->cfg.buffer_bytes;
	if (pause) {
		c->paused = true;
		link_conn_arm_locked(c);
	}
	pthread_mutex_unlock(&c->mtx);
	if (out == OPS_DONE_REPLAY)
		ops_replay_done(l->br);
	if (l->reply.cap > LINK_KEEP_BYTES)
		rc_buf_fini(&l->reply);
	return pause ? LINK_PAUSE : 0;
}

/* Link thread: handles the whole requests read. Returns false when c was closed. */
static bool link_conn_handle(struct link_conn *c)
{
	ssize_t rv;
	size_t taken;

	c->taken = 0;
	rv = rc_link_parse(c->in, c->in_len, (uint32_t)c->l->cfg.max_request_bytes, link_conn_frame, c);
	if (rv == RC_EPROTO && c->why == NULL)
		c->why = "a bad frame header";
	else if (rv == RC_ETOOBIG)
		c->why = "a frame larger than --api-max-bytes";
	if (rv < 0) {
		link_conn_close(c, c->why);
		return false;
	}
	taken = rv == LINK_PAUSE ? c->taken : (size_t)rv;
	memmove(c->in, c->in + taken, c->in_len - taken);
	c->in_len -= taken;
	if (c->in_len == 0 && c->in_cap > LINK_KEEP_BYTES) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
	return true;
}

/* Link thread: EPOLLIN. */
static void link_conn_read(struct link_conn *c)
{
	size_t max = RC_LINK_HDR_SIZE + c->l->cfg.max_request_bytes;
	ssize_t n;

	if (c->in_cap - c->in_len < LINK_READ_CHUNK && c->in_cap < max) {
		size_t ncap = c->in_cap ? c->in_cap * 2 : LINK_READ_CHUNK;
		uint8_t *p;
		if (ncap > max)
			ncap = max;
		if (ncap < LINK_READ_CHUNK)
			ncap = LINK_READ_CHUNK;
		if ((p = realloc(c->in, ncap)) == NULL) {
			link_conn_close(c, "out of memory");
			return;
		}
		c->in = p;
		c->in_cap = ncap;
	}
	if (c->in_len == c->in_cap)
		return; /* cannot happen: a whole frame fits, and was taken */
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
	if (n == 0) {
		link_conn_close(c, NULL);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			link_conn_close(c, NULL);
		return;
	}
	c->in_len += (size_t)n;
	link_conn_handle(c);
}

/* Link thread: EPOLLOUT. */
static void link_conn_write(struct link_conn *c)
{
	bool resume = false;

	pthread_mutex_lock(&c->mtx);
	while (!c->dead && link_conn_pending(c) > 0) {
		ssize_t n = send(c->fd, c->out + c->out_off, link_conn_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				link_conn_kill_locked(c);
			break;
		}
		c->out_off += (size_t)n;
	}
	if (link_conn_pending(c) == 0) {
		c->out_off = c->out_len = 0;
		if (c->out_cap > LINK_KEEP_BYTES) {
			free(c->out);
			c->out = NULL;
			c->out_cap = 0;
		}
		c->want_out = false;
	}
	/* quiesced is written by this thread: no need for l->mtx (which would come after c->mtx here) */
	if (c->paused && !c->l->quiesced && link_conn_pending(c) <= c->l->cfg.buffer_bytes) {
		c->paused = false;
		resume = true;
	}
	if (!c->dead)
		link_conn_arm_locked(c);
	pthread_mutex_unlock(&c->mtx);
	/* the requests read before the pause */
	if (resume && c->in_len > 0)
		link_conn_handle(c);
}

/* Link thread: a new connection, 'H' first. */
static void link_accept(struct link *l)
{
	for (int k = 0; k < 64; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1, full;
		struct link_conn *c;
		struct epoll_event ev;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/*
				 * The connection stays in the backlog and the socket readable:
				 * take it off epoll for a while rather than spin on it.
				 */
				if (!l->emfile_logged)
					rc_log_error("link cannot accept: out of file descriptors; trying again every 100 ms",
						     NULL);
				l->emfile_logged = true;
				epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->lfd, NULL);
				l->accept_resume_ms = link_now_ms() + LINK_ACCEPT_RETRY_MS;
			}
			return;
		}
		l->emfile_logged = false;
		pthread_mutex_lock(&l->mtx);
		full = l->nconns >= l->cfg.max_conns;
		pthread_mutex_unlock(&l->mtx);
		if (full) {
			uint64_t now = link_now_ms();
			close(fd);
			l->refused_since_log++;
			if (now - l->refused_log_ms >= 1000) {
				rc_log_warn("link connection refused: --link-max-conns reached", "max=%d refused=%llu",
					    l->cfg.max_conns, (unsigned long long)l->refused_since_log);
				l->refused_log_ms = now;
				l->refused_since_log = 0;
			}
			continue;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->l = l;
		c->fd = fd;
		pthread_mutex_init(&c->mtx, NULL);
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a->sin_addr, c->peer, sizeof(c->peer));
			snprintf(c->peer + strlen(c->peer), sizeof(c->peer) - strlen(c->peer), ":%u",
				 (unsigned)ntohs(a->sin_port));
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			c->peer[0] = '[';
			inet_ntop(AF_INET6, &a->sin6_addr, c->peer + 1, sizeof(c->peer) - 1);
			snprintf(c->peer + strlen(c->peer), sizeof(c->peer) - strlen(c->peer), "]:%u",
				 (unsigned)ntohs(a->sin6_port));
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			pthread_mutex_destroy(&c->mtx);
			close(fd);
			free(c);
			continue;
		}
		/* the hello before any bus message: the connection is not in the list yet */
		pthread_mutex_lock(&c->mtx);
		link_conn_send_locked(c, RC_LINK_KIND_HELLO, 0, RC_LINK_HELLO, RC_LINK_HELLO_LEN, false);
		pthread_mutex_unlock(&c->mtx);
		pthread_mutex_lock(&l->mtx);
		c->next = l->conns;
		if (l->conns != NULL)
			l->conns->prev = c;
		l->conns = c;
		l->nconns++;
		pthread_mutex_unlock(&l->mtx);
		l->connections++;
		rc_log_debug("link connection", "peer=%s", c->peer);
		/* tell it the epoch and the position now, as nng's bus does for a new subscriber */
		bus_tick_soon(l->br->bus);
	}
}

/* Link thread: no more accepts and requests; only writes. */
static void link_quiesce_now(struct link *l)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->lfd, NULL);
	pthread_mutex_lock(&l->mtx);
	for (struct link_conn *c = l->conns; c != NULL; c = c->next) {
		pthread_mutex_lock(&c->mtx);
		c->paused = true;
		if (!c->dead)
			link_conn_arm_locked(c);
		pthread_mutex_unlock(&c->mtx);
	}
	l->quiesced = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mtx);
}

static void *link_thread(void *arg)
{
	struct link *l = arg;
	struct epoll_event evs[LINK_EVENTS];

	for (;;) {
		int timeout = -1, n;
		bool quiesce, stop;

		if (l->accept_resume_ms != 0) {
			uint64_t now = link_now_ms();
			if (now >= l->accept_resume_ms) {
				struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &l->lfd };
				l->accept_resume_ms = 0;
				if (!l->quiesced)
					epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->lfd, &ev);
			} else {
				timeout = (int)(l->accept_resume_ms - now);
			}
		}
		n = epoll_wait(l->epfd, evs, LINK_EVENTS, timeout);

		if (n < 0 && errno != EINTR) {
			rc_log_error("link epoll_wait failed", "err=\"%s\"", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			struct link_conn *c = p;
			uint32_t e = evs[i].events;
			if (p == &l->evfd) {
				uint64_t v;
				if (read(l->evfd, &v, sizeof(v)) < 0) { /* nothing: the flags say what to do */
				}
				continue;
			}
			if (p == &l->lfd) {
				link_accept(l);
				continue;
			}
			if (e & (EPOLLERR | EPOLLHUP)) {
				link_conn_close(c, NULL);
				continue;
			}
			if (e & EPOLLOUT)
				link_conn_write(c);
			/* a write may have resumed reading, which may have closed it: only read on EPOLLIN alone */
			else if (e & EPOLLIN)
				link_conn_read(c);
		}
		pthread_mutex_lock(&l->mtx);
		quiesce = l->quiesce && !l->quiesced;
		stop = l->stop;
		pthread_mutex_unlock(&l->mtx);
		if (quiesce)
			link_quiesce_now(l);
		if (stop)
			break;
	}
	return NULL;
}

/* Binds the listening socket; sets l->lfd and l->url. */
static int link_listen(struct link *l)
{
	char host[256], port[16];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	nng_sockaddr na = { .s_family = NNG_AF_UNSPEC };
	int rv, one = 1;

	if (rc_link_url_split(l->cfg.url, host, sizeof(host), port, sizeof(port)) != RC_OK) {
		rc_log_error("--link must be tcp://host:port", "url=%s", l->cfg.url);
		return RC_EINVAL;
	}
	if ((rv = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res)) != 0) {
		rc_log_error("cannot resolve the link address", "url=%s err=\"%s\"", l->cfg.url, gai_strerror(rv));
		return RC_EINVAL;
	}
	l->lfd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->lfd < 0 || setsockopt(l->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(l->lfd, res->ai_addr, res->ai_addrlen) != 0 || listen(l->lfd, 128) != 0 ||
	    getsockname(l->lfd, (struct sockaddr *)&ss, &sl) != 0) {
		rc_log_error("cannot listen on the link address", "url=%s err=\"%s\"", l->cfg.url, strerror(errno));
		freeaddrinfo(res);
		return RC_EIO;
	}
	freeaddrinfo(res);
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		na.s_in.sa_family = NNG_AF_INET;
		na.s_in.sa_port = a->sin_port;
		na.s_in.sa_addr = a->sin_addr.s_addr;
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		na.s_in6.sa_family = NNG_AF_INET6;
		na.s_in6.sa_port = a->sin6_port;
		memcpy(na.s_in6.sa_addr, &a->sin6_addr, 16);
	}
	return (l->url = listener_url(l->cfg.url, &na)) != NULL ? RC_OK : RC_ENOMEM;
}

int link_open(const struct link_config *cfg, struct link **out)
{
	struct link *l = calloc(1, sizeof(*l));
	struct epoll_event ev = { .events = EPOLLIN };
	int rv;

	if (l == NULL)
		return RC_ENOMEM;
	l->cfg = *cfg;
	l->lfd = l->epfd = l->evfd = -1;
	pthread_mutex_init(&l->mtx, NULL);
	pthread_cond_init(&l->cv, NULL);
	rc_buf_init(&l->reply);
	if ((rv = link_listen(l)) != RC_OK)
		goto out_free;
	rv = RC_EIO;
	if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 || (l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		rc_log_error("cannot create the link's epoll", "err=\"%s\"", strerror(errno));
		goto out_free;
	}
	ev.data.ptr = &l->lfd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->lfd, &ev) != 0)
		goto out_free;
	ev.data.ptr = &l->evfd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0)
		goto out_free;
	*out = l;
	return RC_OK;

out_free:
	link_free(l);
	return rv;
}

const char *link_url(const struct link *l)
{
	return l->url;
}

int link_start(struct link *l, struct broker *br)
{
	l->br = br;
	if (pthread_create(&l->thread, NULL, link_thread, l) != 0) {
		rc_log_error("cannot start the link thread", NULL);
		return RC_EIO;
	}
	l->started = true;
	return RC_OK;
}

static void link_wake(struct link *l)
{
	uint64_t one = 1;

	if (write(l->evfd, &one, sizeof(one)) < 0) { /* full counter: a wake-up is pending anyway */
	}
}

void link_quiesce(struct link *l)
{
	if (l == NULL || !l->started)
		return;
	pthread_mutex_lock(&l->mtx);
	l->quiesce = true;
	pthread_mutex_unlock(&l->mtx);
	link_wake(l);
	pthread_mutex_lock(&l->mtx);
	while (!l->quiesced && !l->stop)
		pthread_cond_wait(&l->cv, &l->mtx);
	pthread_mutex_unlock(&l->mtx);
}

void link_free(struct link *l)
{
	if (l == NULL)
		return;
	if (l->started) {
		pthread_mutex_lock(&l->mtx);
		l->stop = true;
		pthread_mutex_unlock(&l->mtx);
		link_wake(l);
		pthread_join(l->thread, NULL);
	}
	while (l->conns != NULL)
		link_conn_close(l->conns, NULL);
	if (l->lfd >= 0)
		close(l->lfd);
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->evfd >= 0)
		close(l->evfd);
	rc_buf_fini(&l->reply);
	pthread_mutex_destroy(&l->mtx);
	pthread_cond_destroy(&l->cv);
	free(l->url);
	free(l);
}

void link_stats(struct link *l, struct link_stats *st)
{
	st->connections = l->connections;
	st->bus_messages_dropped = l->dropped;
	st->requests = l->requests;
}
