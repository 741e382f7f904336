/*
 * test_sender.c - batched sends through io_uring (gateway/sender.c): every
 * send of a batch completes within gw_sender_run with its byte count, the
 * bytes arrive in order, a full socket reports -EAGAIN instead of waiting,
 * a closed peer an error, and a full batch refuses more.
 * Skipped (exit 77) where io_uring is unavailable.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "sender.h"

#define NPAIRS 16

struct result {
	int res[NPAIRS + 1];
	int calls[NPAIRS + 1];
};

static int cookie_ids[NPAIRS + 1];

static void done(void *arg, void *cookie, int res)
{
	struct result *r = arg;
	int id = *(int *)cookie;

	r->res[id] = res;
	r->calls[id]++;
}

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* the gateway's sockets are non-blocking (libuv) */
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
}

static void test_batch_delivers_in_order(void **state)
{
	struct gw_sender *s = *state;
	static char text[NPAIRS][2][32]; /* the bytes must live until the run */
	int sv[NPAIRS][2];
	struct result r = { 0 };

	for (int i = 0; i < NPAIRS; i++) {
		uv_buf_t bufs[2];
		pair(sv[i]);
		cookie_ids[i] = i;
		snprintf(text[i][0], sizeof(text[i][0]), "id: %d\n", i);
		snprintf(text[i][1], sizeof(text[i][1]), "data: {\"n\":%d}\n\n", i);
		bufs[0] = uv_buf_init(text[i][0], (unsigned)strlen(text[i][0]));
		bufs[1] = uv_buf_init(text[i][1], (unsigned)strlen(text[i][1]));
		assert_true(gw_sender_add(s, sv[i][0], bufs, 2, &cookie_ids[i]));
	}
	assert_int_equal(gw_sender_pending(s), NPAIRS);
	assert_int_equal(gw_sender_run(s, done, &r), RC_OK);
	assert_int_equal(gw_sender_pending(s), 0);
	for (int i = 0; i < NPAIRS; i++) {
		char got[64], want[64];
		int n = snprintf(want, sizeof(want), "id: %d\ndata: {\"n\":%d}\n\n", i, i);
		assert_int_equal(r.calls[i], 1);
		assert_int_equal(r.res[i], n);
		assert_int_equal(read(sv[i][1], got, sizeof(got)), n);
		assert_memory_equal(got, want, (size_t)n);
		close(sv[i][0]);
		close(sv[i][1]);
	}
}

static void test_full_socket_is_eagain(void **state)
{
	struct gw_sender *s = *state;
	static char big[1 << 16];
	int sv[2], id = 0;
	struct result r = { 0 };
	uv_buf_t buf = uv_buf_init(big, sizeof(big));

	pair(sv);
	/* fill the socket: nobody reads */
	while (write(sv[0], big, sizeof(big)) > 0)
		;
	assert_int_equal(errno, EAGAIN);
	assert_true(gw_sender_add(s, sv[0], &buf, 1, &id));
	assert_int_equal(gw_sender_run(s, done, &r), RC_OK);
	assert_int_equal(r.calls[0], 1);
	assert_int_equal(r.res[0], -EAGAIN);
	close(sv[0]);
	close(sv[1]);
}

static void test_closed_peer_is_an_error(void **state)
{
	struct gw_sender *s = *state;
	static char text[] = "data: x\n\n";
	int sv[2], id = 0;
	struct result r = { 0 };
	uv_buf_t buf = uv_buf_init(text, sizeof(text) - 1);

	pair(sv);
	close(sv[1]);
	assert_true(gw_sender_add(s, sv[0], &buf, 1, &id));
	/* no SIGPIPE (MSG_NOSIGNAL): the test process would die of it */
	assert_int_equal(gw_sender_run(s, done, &r), RC_OK);
	assert_int_equal(r.calls[0], 1);
	assert_int_equal(r.res[0], -EPIPE);
	close(sv[0]);
}

static void test_batch_full(void **state)
{
	struct gw_sender *small;
	static char text[] = "x";
	int sv[2], ids[3] = { 0, 1, 2 };
	struct result r = { 0 };
	uv_buf_t buf = uv_buf_init(text, 1);

	(void)state;
	assert_int_equal(gw_sender_new(2, &small), RC_OK);
	pair(sv);
	assert_true(gw_sender_add(small, sv[0], &buf, 1, &ids[0]));
	assert_true(gw_sender_add(small, sv[0], &buf, 1, &ids[1]));
	assert_false(gw_sender_add(small, sv[0], &buf, 1, &ids[2]));
	assert_int_equal(gw_sender_run(small, done, &r), RC_OK);
	assert_int_equal(r.res[0], 1);
	assert_int_equal(r.res[1], 1);
	assert_int_equal(r.calls[2], 0);
	/* an empty run does nothing; the sender is reusable */
	assert_int_equal(gw_sender_run(small, done, &r), RC_OK);
	assert_true(gw_sender_add(small, sv[0], &buf, 1, &ids[2]));
	assert_int_equal(gw_sender_run(small, done, &r), RC_OK);
	assert_int_equal(r.res[2], 1);
	gw_sender_free(small);
	gw_sender_free(NULL);
	close(sv[0]);
	close(sv[1]);
}

static int setup(void **state)
{
	struct gw_sender *s;

	if (gw_sender_new(64, &s) != RC_OK)
		return -1;
	*state = s;
	return 0;
}

static int teardown(void **state)
{
	gw_sender_free(*state);
	return 0;
}

int main(void)
{
	struct gw_sender *probe;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batch_delivers_in_order),
		cmocka_unit_test(test_full_socket_is_eagain),
		cmocka_unit_test(test_closed_peer_is_an_error),
		cmocka_unit_test(test_batch_full),
	};

	if (gw_sender_new(2, &probe) != RC_OK) {
		fprintf(stderr, "io_uring is not available here: skipped\n");
		return 77;
	}
	gw_sender_free(probe);
	return cmocka_run_group_tests(tests, setup, teardown);
}
