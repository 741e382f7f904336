/*
 * test_listener.c - the URL the broker logs for a listener (broker/listener.c):
 * the configured URL with host:port replaced by the address bound, for IPv4
 * and IPv6, a path kept, other transports as configured; and listener_start
 * on tcp port 0 naming the port nng bound.
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
#include <nng/nng.h>
#include <nng/protocol/pair0/pair.h>

#include "listener.h"

static nng_sockaddr in4(const char *ip, uint16_t port)
{
	nng_sockaddr sa;

	memset(&sa, 0, sizeof(sa));
	sa.s_in.sa_family = NNG_AF_INET;
	sa.s_in.sa_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &sa.s_in.sa_addr), 1);
	return sa;
}

static nng_sockaddr in6(const char *ip, uint16_t port)
{
	nng_sockaddr sa;

	memset(&sa, 0, sizeof(sa));
	sa.s_in6.sa_family = NNG_AF_INET6;
	sa.s_in6.sa_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, sa.s_in6.sa_addr), 1);
	return sa;
}

static void check(const char *url, nng_sockaddr sa, const char *want)
{
	char *got = listener_url(url, &sa);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_url_names_the_bound_address(void **state)
{
	(void)state;
	check("tcp://127.0.0.1:0", in4("127.0.0.1", 40123), "tcp://127.0.0.1:40123");
	check("tcp://127.0.0.1:7410", in4("127.0.0.1", 7410), "tcp://127.0.0.1:7410");
	check("tcp://localhost:0", in4("127.0.0.1", 1), "tcp://127.0.0.1:1");
	check("tcp://:0", in4("0.0.0.0", 65535), "tcp://0.0.0.0:65535");
	check("tcp4://10.1.2.3:0", in4("10.1.2.3", 80), "tcp4://10.1.2.3:80");
	check("tcp://[::1]:0", in6("::1", 40123), "tcp://[::1]:40123");
	check("tcp6://[::]:0", in6("::", 9), "tcp6://[::]:9");
	check("ws://127.0.0.1:0/bus", in4("127.0.0.1", 5000), "ws://127.0.0.1:5000/bus");
}

static void test_other_transports_keep_the_url(void **state)
{
	nng_sockaddr sa;

	(void)state;
	memset(&sa, 0, sizeof(sa));
	sa.s_family = NNG_AF_IPC;
	check("ipc:///tmp/roomcast.sock", sa, "ipc:///tmp/roomcast.sock");
	sa.s_family = NNG_AF_UNSPEC;
	check("inproc://bus", sa, "inproc://bus");
	/* no scheme: nothing to rewrite */
	check("127.0.0.1:0", in4("127.0.0.1", 5), "127.0.0.1:0");
}

static void test_start_on_port_0_names_the_port(void **state)
{
	nng_socket s, d;
	char *bound = NULL, *inproc = NULL;
	int port = 0;

	(void)state;
	assert_int_equal(nng_pair0_open(&s), 0);
	assert_int_equal(listener_start(s, "tcp://127.0.0.1:0", &bound), 0);
	assert_non_null(bound);
	assert_int_equal(sscanf(bound, "tcp://127.0.0.1:%d", &port), 1);
	assert_true(port > 0 && port < 65536);
	/* the named address is the one that answers */
	assert_int_equal(nng_pair0_open(&d), 0);
	assert_int_equal(nng_dial(d, bound, NULL, 0), 0);
	assert_int_equal(listener_start(s, "inproc://test-listener", &inproc), 0);
	assert_string_equal(inproc, "inproc://test-listener");
	nng_close(d);
	nng_close(s);
	free(bound);
	free(inproc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_names_the_bound_address),
		cmocka_unit_test(test_other_transports_keep_the_url),
		cmocka_unit_test(test_start_on_port_0_names_the_port),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
