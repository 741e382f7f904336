/*
 * test_workers.c - what the loops of --workers share (gateway/workers.c and
 * gw_metrics_add): adding counters member by member, a worker's /metrics
 * view (its own live counters plus the others' last copies, never its own
 * copy twice), and the listening sockets: n of them on one port with
 * SO_REUSEPORT (port 0 picked once), each accepting connections, a port
 * held by another socket refused with nothing left open, and the bound
 * address named as --listen takes it (the gateway's ready line).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include "error.h"
#include "metrics.h"
#include "workers.h"

static void test_metrics_add_every_member(void **state)
{
	struct gw_metrics a, b;

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.workers = 1;
	a.streams_open = 5;
	a.http_by_status[599] = 7;
	a.publish_by_status[2] = 3;
	b.workers = 1;
	b.streams_open = 2;
	b.events_delivered = 11;
	b.http_by_status[599] = 1;
	b.http_by_status[100] = 4;
	gw_metrics_add(&a, &b);
	assert_int_equal(a.workers, 2);
	assert_int_equal(a.streams_open, 7);
	assert_int_equal(a.events_delivered, 11);
	assert_int_equal(a.http_by_status[599], 8);
	assert_int_equal(a.http_by_status[100], 4);
	assert_int_equal(a.publish_by_status[2], 3);
	/* b is left as it was */
	assert_int_equal(b.streams_open, 2);
}

static void test_sum_is_own_live_plus_the_others_copies(void **state)
{
	struct gw_workers *w;
	struct gw_metrics m0, m1, m2, out;

	(void)state;
	assert_int_equal(gw_workers_new(0, &w), RC_EINVAL);
	assert_int_equal(gw_workers_new(3, &w), RC_OK);
	memset(&m0, 0, sizeof(m0));
	memset(&m1, 0, sizeof(m1));
	memset(&m2, 0, sizeof(m2));
	m0.workers = m1.workers = m2.workers = 1;
	m0.streams_open = 1;
	m1.streams_open = 10;
	m2.streams_open = 100;

	/* nothing published yet: only the caller's own counters */
	gw_workers_sum(w, 0, &m0, &out);
	assert_int_equal(out.workers, 1);
	assert_int_equal(out.streams_open, 1);

	gw_workers_publish(w, 0, &m0);
	gw_workers_publish(w, 1, &m1);
	gw_workers_publish(w, 2, &m2);
	gw_workers_publish(w, 3, &m2); /* out of range: ignored */
	m0.streams_open = 4;            /* live value, newer than worker 0's copy */
	gw_workers_sum(w, 0, &m0, &out);
	assert_int_equal(out.workers, 3);
	assert_int_equal(out.streams_open, 114);
	gw_workers_sum(w, 1, &m1, &out);
	assert_int_equal(out.streams_open, 111); /* worker 0 as copied: 1 */

	/* one loop: no sharing, the own counters as they are */
	gw_workers_sum(NULL, 0, &m0, &out);
	assert_int_equal(out.streams_open, 4);
	gw_workers_free(w);
	gw_workers_free(NULL);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static uint16_t port_of(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

static void test_listen_sockets_share_one_port(void **state)
{
	struct sockaddr_in sin = loopback(0);
	int fds[4], err = 0, seen[4] = { 0 };
	uint16_t port;

	(void)state;
	assert_int_equal(gw_listen_sockets((struct sockaddr *)&sin, 4, fds, &err), RC_OK);
	port = port_of(fds[0]);
	assert_true(port != 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(port_of(fds[i]), port);
		assert_int_equal(listen(fds[i], 128), 0);
	}
	/* the kernel spreads connections over the sockets: each takes some of 200 */
	sin = loopback(port);
	for (int k = 0; k < 200; k++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		struct pollfd pfd[4];
		assert_true(c >= 0);
		assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
		for (int i = 0; i < 4; i++)
			pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		assert_true(poll(pfd, 4, 5000) > 0);
		for (int i = 0; i < 4; i++) {
			int a;
			if (!(pfd[i].revents & POLLIN))
				continue;
			a = accept(fds[i], NULL, NULL);
			if (a >= 0) {
				seen[i]++;
				close(a);
			}
		}
		close(c);
	}
	for (int i = 0; i < 4; i++) {
		assert_true(seen[i] > 0);
		close(fds[i]);
	}
}

static void test_one_socket_without_reuseport(void **state)
{
	struct sockaddr_in sin = loopback(0);
	int fd, other, err = 0;

	(void)state;
	assert_int_equal(gw_listen_sockets((struct sockaddr *)&sin, 1, &fd, &err), RC_OK);
	/* a second gateway on the same port is refused, as with a plain bind */
	sin = loopback(port_of(fd));
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(gw_listen_sockets((struct sockaddr *)&sin, 1, &other, &err), RC_EIO);
	assert_int_equal(err, EADDRINUSE);
	close(fd);
}

static void test_port_in_use_leaves_nothing_open(void **state)
{
	struct sockaddr_in sin = loopback(0);
	int holder = socket(AF_INET, SOCK_STREAM, 0), fds[3], err = 0, before;
	socklen_t len = sizeof(sin);

	(void)state;
	assert_true(holder >= 0);
	assert_int_equal(bind(holder, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(holder, 16), 0);
	assert_int_equal(getsockname(holder, (struct sockaddr *)&sin, &len), 0);
	before = open_fds();
	assert_int_equal(gw_listen_sockets((struct sockaddr *)&sin, 3, fds, &err), RC_EIO);
	assert_int_equal(err, EADDRINUSE);
	assert_int_equal(open_fds(), before);
	close(holder);
}

static void test_listen_name_is_the_bound_address(void **state)
{
	struct sockaddr_in sin = loopback(0);
	struct sockaddr_in6 sin6;
	int fds[2], fd6, err = 0;
	char want[GW_LISTEN_NAME_MAX], name[GW_LISTEN_NAME_MAX];

	(void)state;
	assert_int_equal(gw_listen_sockets((struct sockaddr *)&sin, 2, fds, &err), RC_OK);
	snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)port_of(fds[0]));
	for (int i = 0; i < 2; i++) {
		assert_int_equal(gw_listen_name(fds[i], name, sizeof(name)), RC_OK);
		assert_string_equal(name, want);
		close(fds[i]);
	}
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr = in6addr_loopback;
	/* a machine without IPv6 on lo cannot bind ::1: nothing to check there */
	if (gw_listen_sockets((struct sockaddr *)&sin6, 1, &fd6, &err) == RC_OK) {
		struct sockaddr_in6 got;
		socklen_t len = sizeof(got);
		assert_int_equal(getsockname(fd6, (struct sockaddr *)&got, &len), 0);
		snprintf(want, sizeof(want), "[::1]:%u", (unsigned)ntohs(got.sin6_port));
		assert_int_equal(gw_listen_name(fd6, name, sizeof(name)), RC_OK);
		assert_string_equal(name, want);
		close(fd6);
	}
	assert_int_equal(gw_listen_name(-1, name, sizeof(name)), RC_EIO);
	assert_string_equal(name, "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics_add_every_member),
		cmocka_unit_test(test_sum_is_own_live_plus_the_others_copies),
		cmocka_unit_test(test_listen_sockets_share_one_port),
		cmocka_unit_test(test_one_socket_without_reuseport),
		cmocka_unit_test(test_port_in_use_leaves_nothing_open),
		cmocka_unit_test(test_listen_name_is_the_bound_address),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
