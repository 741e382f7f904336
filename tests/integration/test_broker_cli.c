/*
 * test_broker_cli.c - the command lines end to end (SPEC: "Command line",
 * "Processes and defaults", "Operations"):
 *
 *   - `roomcast publish` (flags, --ndjson from stdin, options before and after
 *     the subcommand, ROOMCAST_* variables, flags winning) and `roomcast tail`
 *     receiving those events from the bus (small flushes whole, and with a
 *     broker that sends every flush room by room); `roomcast stats`; the CLI's errors
 *     and exit codes (2 for bad options; 3 for a publish whose connection was
 *     lost after the send, which is never sent again);
 *   - roomcast-broker: SIGTERM/SIGINT exit 0 promptly after flushing the bus,
 *     logs of `level=... msg=...` lines, exit 2 on bad options, --help listing
 *     every option with its variable, options from the environment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <signal.h>
#include <sys/socket.h>

#include "broker_fixture.h"
#include "error.h"
#include "frame.h"
#include "proc.h"

#ifndef RC_CLI_BIN
#error "RC_CLI_BIN must name the roomcast binary (set by CMake)"
#endif

#define CLI_TIMEOUT_MS 15000

static const char *const broker_options[] = {
	"bus",
	"api",
	"history-events",
	"history-bytes",
	"max-event-bytes",
	"max-rooms",
	"replay-max-bytes",
	"max-replays",
	"replay-wait-ms",
	"api-workers",
	"api-max-bytes",
	"bus-sendbuf",
	"bus-buffer-bytes",
	"bus-frame-bytes",
	"bus-whole-bytes",
	"bus-tick-ms",
	"log-level",
	NULL,
};

static const char *const cli_options[] = {
	"broker-api", "broker-bus", "room", "type", "data", "ndjson", "count", "timeout-ms", "log-level", NULL,
};

static int setup_args(void **state, const char *const *args)
{
	struct broker_fixture *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->proc.stdin_fd = -1;
	*state = b;
	if (broker_fixture_start(b, args, NULL) != 0)
		fail_msg("the broker did not start");
	return 0;
}

static int setup(void **state)
{
	/* frequent idle ticks: tail must cope with frames that print nothing */
	static const char *const args[] = { "--bus-tick-ms", "10", NULL };

	return setup_args(state, args);
}

/* The same broker sending every flush room by room (frames, then the index) instead of small ones whole. */
static int setup_room_frames(void **state)
{
	static const char *const args[] = { "--bus-tick-ms", "10", "--bus-whole-bytes", "0", NULL };

	return setup_args(state, args);
}

static int teardown(void **state)
{
	struct broker_fixture *b = *state;

	if (b != NULL) {
		int st = broker_fixture_stop(b, BROKER_STOP_TIMEOUT_MS);
		broker_fixture_kill(b);
		proc_kill_all(); /* tails and other children a failed test left behind */
		free(b);
		*state = NULL;
		if (st != 0) {
			print_error("broker exit status %d\n", st);
			return -1;
		}
	}
	return 0;
}

struct run {
	int status;
	char *out, *err;
};

static void run_fini(struct run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* Runs path with args and env (ROOMCAST_* of the caller dropped), waits; the child never outlives the call. */
static void run_bin(struct run *r, const char *path, const char *const *args, const char *const *env,
		    const char *stdin_data)
{
	struct proc p;
	struct proc_spec spec = {
		.path = path,
		.argv = args,
		.env = env,
		.env_drop_prefix = "ROOMCAST_",
		.stdin_data = stdin_data,
		.stdin_len = stdin_data ? strlen(stdin_data) : 0,
	};

	assert_int_equal(proc_spawn(&p, &spec), 0);
	r->status = proc_wait(&p, CLI_TIMEOUT_MS);
	proc_kill(&p);
	r->out = proc_stdout(&p);
	r->err = proc_stderr(&p);
	if (r->status == PROC_TIMEOUT)
		fail_msg("%s %s did not exit within %d ms; stderr: %s", path, args[0] ? args[0] : "", CLI_TIMEOUT_MS,
			 r->err);
}

static void run_cli(struct run *r, const char *const *args, const char *const *env, const char *stdin_data)
{
	run_bin(r, RC_CLI_BIN, args, env, stdin_data);
}

/* Checks a run's exit status and that its stderr (or stdout) mentions needle. */
static void assert_run(const struct run *r, int status, const char *err_needle, const char *what)
{
	if (r->status != status)
		fail_msg("%s: exit %d, want %d; stdout: %s; stderr: %s", what, r->status, status, r->out, r->err);
	if (err_needle != NULL && strstr(r->err, err_needle) == NULL)
		fail_msg("%s: stderr does not mention '%s': %s", what, err_needle, r->err);
}

static uint64_t broker_gseq(struct broker_fixture *b)
{
	struct json_object *r = api_call_once(b->api_url, "{\"op\":\"ping\"}");
	uint64_t g;

	assert_true(api_reply_ok(r));
	g = broker_fixture_gseq(b, json_object_get_string(json_get(r, "last_id")));
	json_object_put(r);
	return g;
}

/* Checks out is exactly the ids of gseq first..last, one per line. */
static void assert_ids(struct broker_fixture *b, const char *out, uint64_t first, uint64_t last)
{
	char want[1024];
	size_t n = 0;

	for (uint64_t g = first; g <= last; g++)
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%s-%llu\n", b->epoch, (unsigned long long)g);
	assert_string_equal(out, want);
}

static struct proc start_tail(const char *const *args)
{
	struct proc p;
	struct proc_spec spec = { .path = RC_CLI_BIN, .argv = args, .env_drop_prefix = "ROOMCAST_", .name = "tail" };

	assert_int_equal(proc_spawn(&p, &spec), 0);
	return p;
}

/* Parses tail's output lines; checks line i has the id of gseq ids[i] and room rooms[i] (NULL: null). */
static void assert_tail(struct broker_fixture *b, struct proc *p, const uint64_t *ids, const char *const *rooms,
			size_t n)
{
	char *out, *line, *save = NULL;
	size_t i = 0;
	int st = proc_wait(p, CLI_TIMEOUT_MS);

	out = proc_stdout(p);
	if (st != 0) {
		char *err = proc_stderr(p);
		fail_msg("tail exited with %d; stdout: %s; stderr: %s", st, out, err);
	}
	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save), i++) {
		struct json_object *o = json_tokener_parse(line), *room, *ev;

		if (i >= n || o == NULL)
			fail_msg("tail line %zu unexpected: %s", i, line);
		assert_int_equal(broker_fixture_gseq(b, json_object_get_string(json_get(o, "id"))), ids[i]);
		room = json_get(o, "room_id");
		ev = json_get(o, "event");
		assert_non_null(ev);
		assert_non_null(json_get(ev, "type"));
		assert_true(json_object_get_int64(json_get(o, "rseq")) >= 1);
		if (rooms[i] == NULL) {
			assert_true(json_object_is_type(room, json_type_null));
			assert_null(json_get(ev, "room_id"));
		} else {
			assert_string_equal(json_object_get_string(room), rooms[i]);
			assert_string_equal(json_object_get_string(json_get(ev, "room_id")), rooms[i]);
		}
		if (ids[i] == 1)
			assert_string_equal(json_object_get_string(json_get(ev, "text")), "hi");
		json_object_put(o);
	}
	assert_int_equal(i, n);
	free(out);
}

/* ---- 1. roomcast publish / tail / stats ---- */

static void test_cli_publish_tail(void **state)
{
	struct broker_fixture *b = *state;
	char env_api[128], env_dead[128];
	int dead_port;
	struct run r;
	struct proc tail_all, tail_room;

	assert_int_equal(proc_free_ports(&dead_port, 1), 0);
	snprintf(env_api, sizeof(env_api), "ROOMCAST_BROKER_API=%s", b->api_url);
	snprintf(env_dead, sizeof(env_dead), "ROOMCAST_BROKER_API=tcp://127.0.0.1:%d", dead_port);

	const char *const tail_all_args[] = { "tail", "--broker-bus", b->bus_url, "--count",
					      "5",    "--timeout-ms", "15000",	  NULL };
	const char *const tail_room_args[] = { "--count=4", "--broker-bus", b->bus_url, "tail", "--room",
					       "room-1",    "--timeout-ms", "15000",	NULL };
	tail_all = start_tail(tail_all_args);
	tail_room = start_tail(tail_room_args);
	/* tail says so on stderr once it is connected to the bus */
	if (!proc_wait_output(&tail_all, 2, "tailing", 10000) || !proc_wait_output(&tail_room, 2, "tailing", 10000)) {
		proc_kill(&tail_all);
		proc_kill(&tail_room);
		fail_msg("tail did not connect");
	}

	const char *const pub1[] = {
		"publish",	     "--room",	     "room-1",	 "--type", "message.created", "--data",
		"{\"text\":\"hi\"}", "--broker-api", b->api_url, NULL
	};
	run_cli(&r, pub1, NULL, NULL);
	assert_run(&r, 0, NULL, "publish");
	assert_ids(b, r.out, 1, 1);
	run_fini(&r);

	/* options before the subcommand; the flag wins over the variable */
	const char *const pub2[] = { "--broker-api", b->api_url, "--type", "t2", "publish", "--room", "room-2", NULL };
	const char *const env_dead_list[] = { env_dead, NULL };
	run_cli(&r, pub2, env_dead_list, NULL);
	assert_run(&r, 0, NULL, "publish, options first");
	assert_ids(b, r.out, 2, 2);
	run_fini(&r);

	/* the address from the environment; a global event */
	const char *const pub3[] = { "publish", "--type", "user.created", "--data", "{\"name\":\"x\"}", NULL };
	const char *const env_api_list[] = { env_api, NULL };
	run_cli(&r, pub3, env_api_list, NULL);
	assert_run(&r, 0, NULL, "publish, ROOMCAST_BROKER_API");
	assert_ids(b, r.out, 3, 3);
	run_fini(&r);

	/* --ndjson: one event per line, blank lines and CRLF are fine */
	char api_eq[128];
	snprintf(api_eq, sizeof(api_eq), "--broker-api=%s", b->api_url);
	const char *const pub4[] = { "publish", "--ndjson", api_eq, NULL };
	run_cli(&r, pub4, NULL, "{\"type\":\"a\",\"room_id\":\"room-1\",\"n\":1}\n\n{\"type\":\"b\",\"n\":2}\r\n");
	assert_run(&r, 0, NULL, "publish --ndjson");
	assert_ids(b, r.out, 4, 5);
	run_fini(&r);

	static const uint64_t all_ids[] = { 1, 2, 3, 4, 5 };
	static const char *const all_rooms[] = { "room-1", "room-2", NULL, "room-1", NULL };
	static const uint64_t room_ids[] = { 1, 3, 4, 5 };
	static const char *const room_rooms[] = { "room-1", NULL, "room-1", NULL };
	assert_tail(b, &tail_all, all_ids, all_rooms, 5);
	assert_tail(b, &tail_room, room_ids, room_rooms, 4);
	proc_kill(&tail_all);
	proc_kill(&tail_room);

	const char *const stats[] = { "stats", "--broker-api", b->api_url, NULL };
	run_cli(&r, stats, NULL, NULL);
	assert_run(&r, 0, NULL, "stats");
	struct json_object *o = json_tokener_parse(r.out);
	assert_true(api_reply_ok(o));
	assert_int_equal(json_object_get_int64(json_get(o, "gseq")), 5);
	assert_int_equal(json_object_get_int64(json_get(o, "events_published")), 5);
	json_object_put(o);
	run_fini(&r);

	/* a larger --ndjson input goes out in several batches, in order */
	char *big = malloc(2500 * 64);
	size_t n = 0;
	assert_non_null(big);
	for (int i = 0; i < 2500; i++)
		n += (size_t)sprintf(big + n, "{\"type\":\"bulk\",\"room_id\":\"room-%d\",\"i\":%d}\n", i % 3, i);
	run_cli(&r, pub4, NULL, big);
	free(big);
	assert_run(&r, 0, NULL, "publish --ndjson, 2500 lines");
	char first[64], last[64];
	snprintf(first, sizeof(first), "%s-6\n", b->epoch);
	snprintf(last, sizeof(last), "\n%s-2505\n", b->epoch);
	assert_true(strncmp(r.out, first, strlen(first)) == 0);
	assert_non_null(strstr(r.out, last));
	run_fini(&r);
	assert_int_equal(broker_gseq(b), 2505);
}

static void test_cli_publish_tail_room_frames(void **state)
{
	test_cli_publish_tail(state);
}

static void test_cli_errors(void **state)
{
	struct broker_fixture *b = *state;
	struct run r;
	int dead_port;
	char dead[64];

	assert_int_equal(proc_free_ports(&dead_port, 1), 0);
	snprintf(dead, sizeof(dead), "tcp://127.0.0.1:%d", dead_port);
	const struct {
		const char *args[10];
		const char *needle;
	} usage[] = {
		{ { NULL }, "usage" },
		{ { "frobnicate", "--broker-api", b->api_url, NULL }, "frobnicate" },
		{ { "publish", "--nope", NULL }, "--nope" },
		{ { "publish", "-x", NULL }, "-x" },
		{ { "publish", "--type", "t", "--count", "abc", NULL }, "--count" },
		{ { "publish", "--type", NULL }, "--type" },
		{ { "publish", "--ndjson=maybe", NULL }, "--ndjson" },
		{ { "publish", "--room", "r", "--broker-api", b->api_url, NULL }, "--type" },
		{ { "publish", "--type", "t", "--data", "not json", "--broker-api", b->api_url, NULL }, "--data" },
		{ { "publish", "--type", "t", "--data", "[1]", "--broker-api", b->api_url, NULL }, "--data" },
		{ { "stats", "extra", NULL }, "extra" },
		{ { "tail", "--count", "-1", NULL }, "--count" },
		{ { "stats", "--broker-api", "nonsense://x", NULL }, "--broker-api" },
		{ { "publish", "--type", "t", "--broker-api", "tcp://", NULL }, "--broker-api" },
		{ { "tail", "--broker-bus", "nonsense://x", NULL }, "--broker-bus" },
	};
	for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "bad usage %zu", i);
		run_cli(&r, usage[i].args, NULL, NULL);
		assert_run(&r, 2, usage[i].needle, what);
		run_fini(&r);
	}
	/* a bad value in the environment names the variable */
	const char *const stats_args[] = { "stats", "--broker-api", b->api_url, NULL };
	const char *const bad_env[] = { "ROOMCAST_TIMEOUT_MS=soon", NULL };
	run_cli(&r, stats_args, bad_env, NULL);
	assert_run(&r, 2, "ROOMCAST_TIMEOUT_MS", "bad variable");
	run_fini(&r);

	/* the broker refuses: exit 1 with its message */
	const char *const bad_type[] = { "publish", "--type", "bad type", "--broker-api", b->api_url, NULL };
	run_cli(&r, bad_type, NULL, NULL);
	assert_run(&r, 1, "type", "invalid event");
	assert_non_null(strstr(r.err, "invalid_event"));
	assert_string_equal(r.out, "");
	run_fini(&r);
	const char *const ndjson[] = { "publish", "--ndjson", "--broker-api", b->api_url, NULL };
	run_cli(&r, ndjson, NULL, "{\"type\":\"ok\"}\n{\"room_id\":\"r\"}\n");
	assert_run(&r, 1, "events[1].type missing", "bad ndjson line");
	assert_string_equal(r.out, "");
	run_fini(&r);
	run_cli(&r, ndjson, NULL, "{\"type\":\"ok\"}\nnot json\n");
	assert_run(&r, 1, "bad_request", "ndjson garbage");
	run_fini(&r);
	assert_int_equal(broker_gseq(b), 0);

	/* nobody listening: gives up after --timeout-ms */
	const char *const unreachable[] = {
		"publish", "--type", "t", "--broker-api", dead, "--timeout-ms", "300", NULL
	};
	int64_t t0 = proc_now_ms();
	run_cli(&r, unreachable, NULL, NULL);
	assert_run(&r, 1, "unreachable", "unreachable broker");
	assert_true(proc_now_ms() - t0 < 10000);
	run_fini(&r);

	/* --help: every option with its variable */
	const char *const help[] = { "--help", NULL };
	run_cli(&r, help, NULL, NULL);
	assert_run(&r, 0, NULL, "--help");
	for (size_t i = 0; cli_options[i] != NULL; i++) {
		char flag[64], var[64];
		snprintf(flag, sizeof(flag), "--%s", cli_options[i]);
		snprintf(var, sizeof(var), "ROOMCAST_");
		for (const char *c = cli_options[i]; *c; c++)
			snprintf(var + strlen(var), sizeof(var) - strlen(var), "%c", *c == '-' ? '_' : *c - 32);
		if (strstr(r.out, flag) == NULL || strstr(r.out, var) == NULL)
			fail_msg("roomcast --help does not list %s / %s: %s", flag, var, r.out);
	}
	assert_non_null(strstr(r.out, "publish"));
	assert_non_null(strstr(r.out, "tail"));
	assert_non_null(strstr(r.out, "stats"));
	run_fini(&r);
}

/*
 * ---- a publish that got no answer ----
 *
 * A fake broker api on a plain TCP socket: it speaks the SP handshake as a
 * REP socket and reads whole messages, so the test decides when the
 * connection drops: right after the request came, as a broker that crashed
 * before its answer would.
 */

#define SP_REP0 0x31 /* the SP protocol number of rep0 (req0: 0x30) */

static int fake_api_listen(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &slen), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Reads exactly len bytes within timeout_ms: 1, 0 at EOF (or reset), -1 at the deadline. */
static int fake_api_read(int fd, void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = proc_now_ms() + timeout_ms;
	size_t got = 0;

	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - proc_now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
			return -1;
		n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			return 0;
		got += (size_t)n;
	}
	return 1;
}

/* Accepts a connection within timeout_ms and does the handshake; the fd, or -1. */
static int fake_api_accept(int lfd, int timeout_ms)
{
	static const unsigned char hello[8] = { 0, 'S', 'P', 0, 0, SP_REP0, 0, 0 };
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	unsigned char peer[8];
	int fd;

	if (poll(&pfd, 1, timeout_ms) != 1 || (fd = accept(lfd, NULL, NULL)) < 0)
		return -1;
	if (write(fd, hello, sizeof(hello)) != (ssize_t)sizeof(hello) ||
	    fake_api_read(fd, peer, sizeof(peer), 5000) != 1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads one SP message (64-bit big-endian length, then the bytes): 1, 0 at EOF, -1 at the deadline. */
static int fake_api_read_msg(int fd, int timeout_ms)
{
	unsigned char hdr[8];
	uint64_t len = 0;
	char *body;
	int rv;

	if ((rv = fake_api_read(fd, hdr, sizeof(hdr), timeout_ms)) != 1)
		return rv;
	for (int i = 0; i < 8; i++)
		len = len << 8 | hdr[i];
	assert_true(len > 0 && len < 1024 * 1024);
	body = malloc(len);
	assert_non_null(body);
	rv = fake_api_read(fd, body, len, timeout_ms);
	free(body);
	return rv;
}

/* Closes with a reset, as the kernel does for a process that died with unread data. */
static void fake_api_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void test_cli_publish_lost_answer(void **state)
{
	int port, lfd = fake_api_listen(&port), fd;
	char url[64];
	struct proc p;
	char *err;
	int st;

	(void)state;
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	const char *const args[] = { "publish", "--type", "t", "--broker-api", url, "--timeout-ms", "10000", NULL };
	struct proc_spec spec = { .path = RC_CLI_BIN, .argv = args, .env_drop_prefix = "ROOMCAST_" };
	assert_int_equal(proc_spawn(&p, &spec), 0);

	fd = fake_api_accept(lfd, CLI_TIMEOUT_MS);
	assert_true(fd >= 0);
	assert_int_equal(fake_api_read_msg(fd, CLI_TIMEOUT_MS), 1);
	fake_api_reset(fd);
	/* until the CLI exits: it may dial again, but must not send the publish again */
	for (int64_t deadline = proc_now_ms() + CLI_TIMEOUT_MS; proc_running(&p);) {
		if (proc_now_ms() > deadline)
			fail_msg("roomcast publish did not exit after its connection was lost");
		if ((fd = fake_api_accept(lfd, 50)) < 0)
			continue;
		st = fake_api_read_msg(fd, CLI_TIMEOUT_MS);
		close(fd);
		if (st == 1)
			fail_msg("roomcast publish sent its request again after the connection was lost");
	}
	close(lfd);
	st = proc_wait(&p, 0);
	err = proc_stderr(&p);
	if (st != 3 || strstr(err, "may have been published") == NULL)
		fail_msg("a publish sent without an answer: exit %d (want 3), stderr: %s", st, err);
	free(err);
}

/* ---- 6. the broker process ---- */

static void assert_log_lines(const char *log)
{
	const char *line = log;

	assert_true(*log != '\0');
	while (*line) {
		const char *end = strchr(line, '\n');
		if (strncmp(line, "level=", 6) != 0 || strstr(line, " msg=\"") == NULL)
			fail_msg("not a log record: %.*s", end ? (int)(end - line) : (int)strlen(line), line);
		line = end ? end + 1 : line + strlen(line);
	}
}

/* A SUB socket on the bus, ready once a (tick) frame arrived. */
static void bus_subscribe(struct broker_fixture *b, nng_socket *sub)
{
	nng_msg *msg;
	int64_t deadline = proc_now_ms() + 10000;

	assert_int_equal(nng_sub0_open(sub), 0);
	nng_socket_set(*sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
	nng_socket_set_ms(*sub, NNG_OPT_RECVTIMEO, 100);
	nng_socket_set_size(*sub, NNG_OPT_RECVMAXSZ, 0);
	assert_int_equal(nng_dial(*sub, b->bus_url, NULL, NNG_FLAG_NONBLOCK), 0);
	for (;;) {
		int rv = nng_recvmsg(*sub, &msg, 0);
		if (rv == 0) {
			nng_msg_free(msg);
			return;
		}
		if (rv != NNG_ETIMEDOUT || proc_now_ms() > deadline)
			fail_msg("no frame from the bus: %s", nng_strerror(rv));
	}
}

static void stop_signal(void **state, int sig)
{
	static const char *const args[] = { "--bus-tick-ms", "20", NULL };
	struct broker_fixture *b = calloc(1, sizeof(*b));
	size_t cap = 64 * 200;
	char *req = malloc(cap);
	nng_socket sub;
	size_t n = 0;
	uint64_t received = 0;
	int64_t t0;
	int st;
	char *log;

	assert_non_null(b);
	assert_non_null(req);
	*state = b;
	assert_int_equal(broker_fixture_start(b, args, NULL), 0);
	bus_subscribe(b, &sub);
	n += (size_t)snprintf(req + n, cap - n, "{\"op\":\"publish\",\"events\":[");
	for (int i = 0; i < 200; i++)
		n += (size_t)snprintf(req + n, cap - n, "%s{\"type\":\"t\",\"room_id\":\"r\",\"i\":%d}", i ? "," : "",
				      i);
	snprintf(req + n, cap - n, "]}");
	struct json_object *r = api_call_once(b->api_url, req);
	assert_true(api_reply_ok(r));
	json_object_put(r);
	free(req);

	/* at once: what was accepted must still go out on the bus */
	t0 = proc_now_ms();
	assert_int_equal(proc_signal(&b->proc, sig), 0);
	st = proc_wait(&b->proc, BROKER_STOP_TIMEOUT_MS);
	if (st != 0)
		fail_msg("the broker exited with %d after signal %d (PROC_TIMEOUT is %d)", st, sig, PROC_TIMEOUT);
	assert_true(proc_now_ms() - t0 < BROKER_STOP_TIMEOUT_MS);
	for (int64_t deadline = proc_now_ms() + 5000; received < 200 && proc_now_ms() < deadline;) {
		struct rc_frame_reader fr;
		struct rc_frame_event ev;
		nng_msg *msg;

		struct rc_bus_msg bm;

		if (nng_recvmsg(sub, &msg, 0) != 0)
			continue;
		assert_int_equal(rc_bus_msg_parse(&bm, nng_msg_body(msg), nng_msg_len(msg)), RC_OK);
		if (bm.index) {
			/* a small flush comes whole, after its index */
			struct rc_index_reader ir;
			assert_int_equal(rc_index_reader_init(&ir, bm.body, bm.body_len), RC_OK);
			fr = ir.whole;
		} else {
			assert_int_equal(rc_frame_reader_init(&fr, bm.body, bm.body_len), RC_OK);
		}
		/* one room: its frames (or the whole flushes) carry every event, in order */
		while (rc_frame_reader_next(&fr, &ev))
			assert_int_equal(ev.gseq, ++received);
		nng_msg_free(msg);
	}
	rc_nng_close_within(sub, NNG_CLOSE_MS);
	assert_int_equal(received, 200);

	log = proc_stderr(&b->proc);
	assert_log_lines(log);
	assert_non_null(strstr(log, "level=info msg=\"broker ready\""));
	assert_non_null(strstr(log, "level=info msg=\"stopping\""));
	assert_non_null(strstr(log, "level=info msg=\"broker stopped\""));
	free(log);
}

static void test_broker_sigterm(void **state)
{
	stop_signal(state, SIGTERM);
}

static void test_broker_sigint(void **state)
{
	stop_signal(state, SIGINT);
}

static int teardown_children(void **state)
{
	(void)state;
	proc_kill_all();
	return 0;
}

static void test_broker_bad_options(void **state)
{
	/* port 0: none of these gets as far as listening, and if one did it could not collide */
	const char *bus = "tcp://127.0.0.1:0", *api = "tcp://127.0.0.1:0";
	struct run r;

	(void)state;
	const struct {
		const char *args[8];
		const char *env[2];
		const char *needle;
	} cases[] = {
		{ { "--history-events", "abc", "--bus", bus, "--api", api, NULL }, { NULL }, "--history-events" },
		{ { "--history-events", "0", "--bus", bus, "--api", api, NULL }, { NULL }, "--history-events" },
		{ { "--history-bytes", "12", "--bus", bus, "--api", api, NULL }, { NULL }, "--history-bytes" },
		{ { "--max-event-bytes", "1x", "--bus", bus, "--api", api, NULL }, { NULL }, "--max-event-bytes" },
		{ { "--log-level", "loud", "--bus", bus, "--api", api, NULL }, { NULL }, "--log-level" },
		{ { "--nope", "--bus", bus, "--api", api, NULL }, { NULL }, "--nope" },
		{ { "--bus", bus, "--api", api, "extra", NULL }, { NULL }, "extra" },
		{ { "--bus", bus, "--api", NULL }, { NULL }, "--api" },
		{ { "--bus", bus, "--api", api, NULL },
		  { "ROOMCAST_HISTORY_EVENTS=many", NULL },
		  "ROOMCAST_HISTORY_EVENTS" },
		{ { "--bus", bus, "--api", api, NULL }, { "ROOMCAST_LOG_LEVEL=chatty", NULL }, "ROOMCAST_LOG_LEVEL" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "broker bad option %zu", i);
		run_bin(&r, RC_BROKER_BIN, cases[i].args, cases[i].env, NULL);
		assert_run(&r, 2, cases[i].needle, what);
		assert_string_equal(r.out, "");
		run_fini(&r);
	}
}

static void test_broker_help(void **state)
{
	static const char *const help[] = { "--help", NULL };
	struct run r;

	(void)state;
	run_bin(&r, RC_BROKER_BIN, help, NULL, NULL);
	assert_run(&r, 0, NULL, "broker --help");
	for (size_t i = 0; broker_options[i] != NULL; i++) {
		char flag[64], var[64];
		snprintf(flag, sizeof(flag), "--%s ", broker_options[i]);
		snprintf(var, sizeof(var), "ROOMCAST_");
		for (const char *c = broker_options[i]; *c; c++)
			snprintf(var + strlen(var), sizeof(var) - strlen(var), "%c", *c == '-' ? '_' : *c - 32);
		if (strstr(r.out, flag) == NULL || strstr(r.out, var) == NULL)
			fail_msg("roomcast-broker --help does not list %s/ %s: %s", flag, var, r.out);
	}
	/* the defaults of SPEC */
	assert_non_null(strstr(r.out, "tcp://127.0.0.1:7410"));
	assert_non_null(strstr(r.out, "tcp://127.0.0.1:7411"));
	assert_non_null(strstr(r.out, "65536"));
	assert_non_null(strstr(r.out, "--help"));
	run_fini(&r);
}

static void test_broker_env_options(void **state)
{
	static const char *const env[] = { "ROOMCAST_HISTORY_EVENTS=5", "ROOMCAST_MAX_EVENT_BYTES=1k", NULL };
	static const char *const flag_wins[] = { "--history-events", "7", NULL };
	struct broker_fixture *b = calloc(1, sizeof(*b));
	struct json_object *r;
	char big[2048];
	nng_socket s;

	assert_non_null(b);
	*state = b;
	assert_int_equal(broker_fixture_start(b, flag_wins, env), 0);
	assert_int_equal(api_open(&s, b->api_url, API_TIMEOUT_MS), 0);
	for (int i = 0; i < 10; i++) {
		r = api_call(s, "{\"op\":\"publish\",\"events\":[{\"type\":\"t\"}]}");
		assert_true(api_reply_ok(r));
		json_object_put(r);
	}
	r = api_call(s, "{\"op\":\"stats\"}");
	assert_int_equal(json_object_get_int64(json_get(json_get(r, "history"), "events")), 7);
	json_object_put(r);
	/* ROOMCAST_MAX_EVENT_BYTES=1k applies */
	snprintf(big, sizeof(big), "{\"op\":\"publish\",\"events\":[{\"type\":\"t\",\"p\":\"%01100d\"}]}", 0);
	r = api_call(s, big);
	assert_string_equal(api_reply_code(r), "too_large");
	json_object_put(r);
	rc_nng_close_within(s, NNG_CLOSE_MS);
}

static void test_broker_address_in_use(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char bus[64];
	struct run r;

	(void)state;
	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &slen), 0);
	snprintf(bus, sizeof(bus), "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
	const char *const args[] = { "--bus", bus, "--api", "tcp://127.0.0.1:0", NULL };
	run_bin(&r, RC_BROKER_BIN, args, NULL, NULL);
	close(fd);
	if (r.status == 0 || r.status == 2)
		fail_msg("a broker that cannot listen exited with %d", r.status);
	assert_non_null(strstr(r.err, "level=error"));
	assert_log_lines(r.err);
	run_fini(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cli_publish_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_publish_tail_room_frames, setup_room_frames, teardown),
		cmocka_unit_test_setup_teardown(test_cli_errors, setup, teardown),
		cmocka_unit_test_teardown(test_cli_publish_lost_answer, teardown_children),
		cmocka_unit_test_setup_teardown(test_broker_sigterm, NULL, teardown),
		cmocka_unit_test_setup_teardown(test_broker_sigint, NULL, teardown),
		cmocka_unit_test_teardown(test_broker_bad_options, teardown_children),
		cmocka_unit_test_teardown(test_broker_help, teardown_children),
		cmocka_unit_test_setup_teardown(test_broker_env_options, NULL, teardown),
		cmocka_unit_test_teardown(test_broker_address_in_use, teardown_children),
	};

	if (proc_init() != 0) {
		fprintf(stderr, "cannot create a temporary directory\n");
		return 1;
	}
	return cmocka_run_group_tests_name("integration_broker_cli", tests, NULL, NULL);
}
