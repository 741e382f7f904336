/*
 * roomcast-busrecv: how fast can an nng SUB socket feed a libuv loop?
 *
 *   roomcast-busrecv --mode aio|poll --bytes 300 --seconds 3
 *
 * A sender thread publishes numbered messages on a PUB socket over TCP
 * loopback as fast as it can (PUB drops what a slow subscriber cannot take).
 * The loop receives them either through an nng aio callback that hands each
 * message over a mutex-protected list plus uv_async_send (mode aio, what the
 * gateway does), or by polling nng's receive fd with uv_poll and draining with
 * non-blocking receives (mode poll). Prints one JSON line: messages received
 * per second, the share the PUB side dropped, and the process CPU.
 * Used for the decision recorded in docs/ARCHITECTURE.md.
 */
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

struct item {
	struct item *next;
	nng_msg *msg;
};

struct ctx {
	uv_loop_t *loop;
	nng_socket pub, sub;
	size_t bytes;
	double seconds;
	atomic_bool stop;
	atomic_uint_fast64_t sent;
	uint64_t received, last_seq, checksum;
	/* mode aio */
	nng_aio *aio;
	uv_async_t async;
	pthread_mutex_t mtx;
	struct item *head, *tail;
	/* mode poll */
	uv_poll_t poll;
	uv_timer_t timer;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *sender(void *arg)
{
	struct ctx *c = arg;
	uint64_t seq = 0;

	while (!atomic_load(&c->stop)) {
		nng_msg *m;
		if (nng_msg_alloc(&m, c->bytes) != 0)
			break;
		seq++;
		memcpy(nng_msg_body(m), &seq, sizeof(seq));
		if (nng_sendmsg(c->pub, m, 0) != 0)
			nng_msg_free(m);
		atomic_store(&c->sent, seq);
	}
	return NULL;
}

/* What the loop does with each message: read it, as the gateway's frame check would. */
static void consume(struct ctx *c, nng_msg *m)
{
	const unsigned char *p = nng_msg_body(m);
	uint64_t seq;

	memcpy(&seq, p, sizeof(seq));
	for (size_t i = 0; i < nng_msg_len(m); i += 64)
		c->checksum += p[i];
	c->last_seq = seq;
	c->received++;
	nng_msg_free(m);
}

static void aio_cb(void *arg)
{
	struct ctx *c = arg;
	struct item *it;
	bool wake;

	if (nng_aio_result(c->aio) != 0)
		return;
	it = malloc(sizeof(*it));
	it->msg = nng_aio_get_msg(c->aio);
	it->next = NULL;
	pthread_mutex_lock(&c->mtx);
	wake = c->head == NULL;
	if (c->tail)
		c->tail->next = it;
	else
		c->head = it;
	c->tail = it;
	pthread_mutex_unlock(&c->mtx);
	if (wake)
		uv_async_send(&c->async);
	nng_recv_aio(c->sub, c->aio);
}

static void async_cb(uv_async_t *h)
{
	struct ctx *c = h->data;
	struct item *list, *next;

	pthread_mutex_lock(&c->mtx);
	list = c->head;
	c->head = c->tail = NULL;
	pthread_mutex_unlock(&c->mtx);
	for (; list; list = next) {
		next = list->next;
		consume(c, list->msg);
		free(list);
	}
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct ctx *c = h->data;
	nng_msg *m;

	(void)status;
	(void)events;
	while (nng_recvmsg(c->sub, &m, NNG_FLAG_NONBLOCK) == 0)
		consume(c, m);
}

static void timer_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

int main(int argc, char **argv)
{
	struct ctx c = { .bytes = 300, .seconds = 3 };
	const char *mode = "aio", *url = "tcp://127.0.0.1:17499";
	struct rusage r0, r1;
	pthread_t th;
	double t0, el, cpu;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--mode") == 0)
			mode = argv[i + 1];
		else if (strcmp(argv[i], "--bytes") == 0)
			c.bytes = (size_t)atol(argv[i + 1]);
		else if (strcmp(argv[i], "--seconds") == 0)
			c.seconds = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--url") == 0)
			url = argv[i + 1];
	}
	if (c.bytes < 8 || c.seconds <= 0 || c.seconds > 60 || (strcmp(mode, "aio") && strcmp(mode, "poll"))) {
		fprintf(stderr, "usage: roomcast-busrecv --mode aio|poll [--bytes N>=8] [--seconds S<=60] [--url tcp://127.0.0.1:P]\n");
		return 2;
	}
	c.loop = uv_default_loop();
	pthread_mutex_init(&c.mtx, NULL);
	if (nng_pub0_open(&c.pub) != 0 || nng_listen(c.pub, url, NULL, 0) != 0 || nng_sub0_open(&c.sub) != 0) {
		fprintf(stderr, "roomcast-busrecv: cannot listen on %s\n", url);
		return 1;
	}
	nng_socket_set(c.sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
	nng_socket_set_int(c.sub, NNG_OPT_RECVBUF, 1024);
	nng_dial(c.sub, url, NULL, 0);
	uv_sleep(200); /* let the pipe come up before counting */
	if (strcmp(mode, "aio") == 0) {
		uv_async_init(c.loop, &c.async, async_cb);
		c.async.data = &c;
		nng_aio_alloc(&c.aio, aio_cb, &c);
		nng_recv_aio(c.sub, c.aio);
	} else {
		int fd;
		nng_socket_get_int(c.sub, NNG_OPT_RECVFD, &fd);
		uv_poll_init(c.loop, &c.poll, fd);
		c.poll.data = &c;
		uv_poll_start(&c.poll, UV_READABLE, poll_cb);
	}
	uv_timer_init(c.loop, &c.timer);
	uv_timer_start(&c.timer, timer_cb, (uint64_t)(c.seconds * 1000), 0);
	getrusage(RUSAGE_SELF, &r0);
	t0 = now_s();
	pthread_create(&th, NULL, sender, &c);
	uv_run(c.loop, UV_RUN_DEFAULT);
	atomic_store(&c.stop, true);
	el = now_s() - t0;
	pthread_join(th, NULL);
	getrusage(RUSAGE_SELF, &r1);
	cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
	      (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
	printf("{\"mode\":\"%s\",\"bytes\":%zu,\"seconds\":%.2f,\"sent\":%" PRIu64 ",\"received\":%" PRIu64
	       ",\"received_per_s\":%.0f,\"dropped_pct\":%.1f,\"process_cpu_s\":%.2f}\n",
	       mode, c.bytes, el, (uint64_t)atomic_load(&c.sent), c.received, (double)c.received / el,
	       c.last_seq ? 100.0 * (1.0 - (double)c.received / (double)c.last_seq) : 0.0, cpu);
	/* no nng_close: nng 1.5.2 can hang in it with data in flight (docs/ARCHITECTURE.md, Stop) */
	return 0;
}
