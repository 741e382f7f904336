/*
 * test_metrics.c - the gateway's Prometheus text (gateway/metrics.c): the
 * bus messages an inbox dropped are a counter with HELP and TYPE lines, and
 * with --workers the /metrics view adds every loop's drops up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "error.h"
#include "metrics.h"
#include "workers.h"

static void render(const struct gw_metrics *m, struct rc_buf *out)
{
	rc_buf_init(out);
	gw_metrics_render(m, out);
	assert_int_equal(out->err, 0);
	assert_non_null(out->data);
}

static void test_bus_drops_are_a_counter(void **state)
{
	struct gw_metrics m;
	struct rc_buf out;

	(void)state;
	memset(&m, 0, sizeof(m));
	render(&m, &out);
	assert_non_null(strstr(out.data, "\n# TYPE roomcast_bus_dropped_total counter\nroomcast_bus_dropped_total 0\n"));
	assert_non_null(strstr(out.data, "\n# HELP roomcast_bus_dropped_total Bus messages dropped "));
	rc_buf_fini(&out);

	m.bus_dropped = 7;
	render(&m, &out);
	assert_non_null(strstr(out.data, "\nroomcast_bus_dropped_total 7\n"));
	rc_buf_fini(&out);
}

static void test_workers_add_their_drops_up(void **state)
{
	struct gw_workers *w;
	struct gw_metrics own, other, total;
	struct rc_buf out;

	(void)state;
	assert_int_equal(gw_workers_new(2, &w), RC_OK);
	memset(&own, 0, sizeof(own));
	memset(&other, 0, sizeof(other));
	own.bus_dropped = 2;
	other.bus_dropped = 5;
	gw_workers_publish(w, 1, &other);
	gw_workers_sum(w, 0, &own, &total);
	render(&total, &out);
	assert_non_null(strstr(out.data, "\nroomcast_bus_dropped_total 7\n"));
	rc_buf_fini(&out);
	gw_workers_free(w);
}

/* Each broker address has its line, by index; with --workers the loops' shares add up to one line each. */
static void test_per_broker_lines(void **state)
{
	struct gw_workers *w;
	struct gw_metrics own, other, total;
	struct rc_buf out;

	(void)state;
	assert_int_equal(gw_workers_new(2, &w), RC_OK);
	memset(&own, 0, sizeof(own));
	own.workers = 1;
	own.brokers_bus = own.brokers_api = 2;
	own.broker_bus_connected[0] = own.broker_bus_connected[1] = 1;
	own.broker_bus_dropped[1] = 3;
	own.broker_api_connected[1] = 1;
	other = own;
	other.broker_bus_connected[1] = 0;
	gw_workers_publish(w, 1, &other);
	gw_workers_sum(w, 0, &own, &total);
	render(&total, &out);
	assert_non_null(strstr(out.data, "\nroomcast_gateway_bus_connected{broker=\"0\"} 2\n"
					 "roomcast_gateway_bus_connected{broker=\"1\"} 1\n#"));
	assert_non_null(strstr(out.data, "\nroomcast_gateway_bus_dropped_total{broker=\"1\"} 6\n"));
	assert_non_null(strstr(out.data, "\nroomcast_gateway_api_connected{broker=\"0\"} 0\n"
					 "roomcast_gateway_api_connected{broker=\"1\"} 2\n#"));
	assert_null(strstr(out.data, "broker=\"2\""));
	rc_buf_fini(&out);
	gw_workers_free(w);
}

/* --broker-link: the loops whose link is up (a gauge) and the hellos received (a counter), summed over the loops. */
static void test_link_lines(void **state)
{
	struct gw_workers *w;
	struct gw_metrics own, other, total;
	struct rc_buf out;

	(void)state;
	assert_int_equal(gw_workers_new(2, &w), RC_OK);
	memset(&own, 0, sizeof(own));
	own.workers = 1;
	own.link_connected = 1;
	own.link_connects = 3;
	other = own;
	other.link_connected = 0;
	gw_workers_publish(w, 1, &other);
	gw_workers_sum(w, 0, &own, &total);
	render(&total, &out);
	assert_non_null(strstr(out.data, "# TYPE roomcast_gateway_link_connected gauge\nroomcast_gateway_link_connected 1\n"));
	assert_non_null(strstr(out.data, "# TYPE roomcast_gateway_link_connects_total counter\n"
					 "roomcast_gateway_link_connects_total 6\n"));
	rc_buf_fini(&out);
	gw_workers_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_link_lines),
		cmocka_unit_test(test_bus_drops_are_a_counter),
		cmocka_unit_test(test_workers_add_their_drops_up),
		cmocka_unit_test(test_per_broker_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
