#include "timed_call.h"

#include <nng/nng.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

/* Shared by the caller and the thread; the last of the two to let go frees it. */
struct timed_call {
	void (*fn)(void *arg);
	void *arg;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	int refs;
};

static void timed_call_release(struct timed_call *c)
{
	bool last;

	pthread_mutex_lock(&c->mtx);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->mtx);
	if (last) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mtx);
		free(c);
	}
}

static void *timed_call_main(void *arg)
{
	struct timed_call *c = arg;

	c->fn(c->arg);
	pthread_mutex_lock(&c->mtx);
	c->done = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mtx);
	timed_call_release(c);
	return NULL;
}

bool rc_timed_call(void (*fn)(void *arg), void *arg, int64_t ms)
{
	struct timed_call *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;
	pthread_attr_t ta;
	struct timespec deadline;
	pthread_t th;
	bool done;
	int rv;

	if (c == NULL)
		return false;
	c->fn = fn;
	c->arg = arg;
	c->refs = 2;
	pthread_mutex_init(&c->mtx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* detached: a call that hangs is never joined */
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	rv = pthread_create(&th, &ta, timed_call_main, c);
	pthread_attr_destroy(&ta);
	if (rv != 0) {
		c->refs = 1;
		timed_call_release(c);
		return false;
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)(ms / 1000);
	deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mtx);
	while (!c->done && pthread_cond_timedwait(&c->cv, &c->mtx, &deadline) == 0)
		;
	done = c->done;
	pthread_mutex_unlock(&c->mtx);
	timed_call_release(c);
	return done;
}

static void nng_close_call(void *arg)
{
	nng_socket *s = arg;

	nng_close(*s);
	free(s);
}

bool rc_nng_close_within(nng_socket s, int64_t ms)
{
	nng_socket *copy = malloc(sizeof(*copy));

	if (copy == NULL)
		return false;
	*copy = s;
	/* (copy leaks if no thread could start: the socket stays open then too) */
	return rc_timed_call(nng_close_call, copy, ms);
}
