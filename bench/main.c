/*
 * main.c - roomcast-bench: SSE subscribers and an HTTP publisher for load tests.
 *
 *   roomcast-bench subscribe [options]   N SSE streams; one JSON line of results
 *   roomcast-bench publish [options]     POST events at a fixed rate; one JSON line
 *
 * Speaks only HTTP/SSE as SPEC describes, so it can drive a roomcast gateway or
 * nchan alike. Only loopback targets are accepted. Exit codes: 0 done, 1 the
 * run could not be set up or measured nothing, 2 bad options.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "procs.h"
#include "publisher.h"
#include "rss.h"
#include "sub_stats.h"
#include "subscriber.h"
#include "target.h"

#define FD_RESERVE 64 /* descriptors a process keeps for itself */
#define SUB_CONNS_MAX 1000000u
#define SUB_PROCS_MAX 64u

enum {
	OPT_TARGET = 256,
	OPT_URL_TEMPLATE,
	OPT_CONNS,
	OPT_ROOMS,
	OPT_ROOM_PREFIX,
	OPT_DURATION,
	OPT_CONNECT_TIMEOUT_MS,
	OPT_VERBOSE,
	OPT_HELP,
	OPT_SOURCE_IPS,
	OPT_CONNECT_RATE,
	OPT_CONNECT_CONCURRENCY,
	OPT_EXPECT,
	OPT_HOLD,
	OPT_PROCS,
	OPT_LINE_BYTES,
	OPT_READY_FILE,
	OPT_SERVER_PID,
	OPT_RATE,
	OPT_DEPTH,
	OPT_COUNT,
	OPT_EVENT_BYTES,
	OPT_TYPE,
	OPT_TOKEN,
	OPT_DRAIN_MS,
	OPT_MAX_RECONNECTS,
};

static const struct option common_options[] = {
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "url-template", required_argument, NULL, OPT_URL_TEMPLATE },
	{ "conns", required_argument, NULL, OPT_CONNS },
	{ "rooms", required_argument, NULL, OPT_ROOMS },
	{ "room-prefix", required_argument, NULL, OPT_ROOM_PREFIX },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "connect-timeout-ms", required_argument, NULL, OPT_CONNECT_TIMEOUT_MS },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "source-ips", required_argument, NULL, OPT_SOURCE_IPS },
	{ "connect-rate", required_argument, NULL, OPT_CONNECT_RATE },
	{ "connect-concurrency", required_argument, NULL, OPT_CONNECT_CONCURRENCY },
	{ "expect", required_argument, NULL, OPT_EXPECT },
	{ "hold", no_argument, NULL, OPT_HOLD },
	{ "procs", required_argument, NULL, OPT_PROCS },
	{ "line-bytes", required_argument, NULL, OPT_LINE_BYTES },
	{ "ready-file", required_argument, NULL, OPT_READY_FILE },
	{ "server-pid", required_argument, NULL, OPT_SERVER_PID },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "depth", required_argument, NULL, OPT_DEPTH },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "event-bytes", required_argument, NULL, OPT_EVENT_BYTES },
	{ "type", required_argument, NULL, OPT_TYPE },
	{ "token", required_argument, NULL, OPT_TOKEN },
	{ "drain-ms", required_argument, NULL, OPT_DRAIN_MS },
	{ "max-reconnects", required_argument, NULL, OPT_MAX_RECONNECTS },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
	"usage: roomcast-bench subscribe|publish [options]\n"
	"\n"
	"Load generator for SSE fan-out servers (roomcast gateway, nchan). Talks to\n"
	"127.0.0.0/8 only. Prints one JSON object on stdout. Exit 0 done, 1 setup\n"
	"failed or nothing measured, 2 bad options.\n"
	"\n"
	"common:\n"
	"  --target HOST:PORT        server, loopback only (127.0.0.1:8080)\n"
	"  --url-template T          request path; %s = room name\n"
	"                            (subscribe: /api/v1/events?room_id=%s,\n"
	"                             publish: /api/v1/events; nchan: /sub/%s, /pub/%s)\n"
	"  --rooms R                 rooms bench-0..R-1, assigned round-robin (10)\n"
	"  --room-prefix P           room name prefix (bench-)\n"
	"  --duration S              run time in seconds, at most 86400 (10)\n"
	"  --connect-timeout-ms MS   connect + response head deadline (5000)\n"
	"  --verbose                 progress lines on stderr\n"
	"  --help                    this text\n"
	"\n"
	"subscribe:\n"
	"  --conns N                 SSE streams (100)\n"
	"  --source-ips K            bind sources to 127.0.0.1..127.0.0.K (4)\n"
	"  --connect-rate C          new connections per second, all processes (5000)\n"
	"  --connect-concurrency M   connects awaiting a response head, per process (256)\n"
	"  --expect E                stop reading a stream after E events; end when all did (0 = off)\n"
	"  --hold                    idle-connection mode: report how many stay open\n"
	"  --procs P                 subscriber processes (0 = as many as the fd limit needs)\n"
	"  --line-bytes B            per-stream buffer for split SSE lines (4096)\n"
	"  --ready-file PATH         created once every stream is set up (or failed)\n"
	"  --server-pid PID[,PID]    report the server's RSS when ready and at the end\n"
	"\n"
	"publish:\n"
	"  --conns C                 keep-alive connections (4)\n"
	"  --rate R                  events per second in total; 0 = as fast as possible (1000)\n"
	"  --depth D                 pipelined requests per connection, at most (32)\n"
	"  --count N                 stop after N events (0 = duration only)\n"
	"  --event-bytes B           body size, padded with a \"pad\" field (256)\n"
	"  --type T                  event type (bench.tick)\n"
	"  --token T                 send Authorization: Bearer T\n"
	"  --drain-ms MS             wait for answers after the last send (3000)\n"
	"  --max-reconnects N        reconnects over the run (1000)\n";

struct cli {
	bool publish;
	const char *target;
	const char *url_template;
	const char *room_prefix;
	const char *ready_file;
	const char *server_pid;
	const char *type;
	const char *token;
	uint64_t conns;
	uint64_t rooms;
	uint64_t connect_timeout_ms;
	uint64_t source_ips;
	uint64_t connect_concurrency;
	uint64_t expect;
	uint64_t procs;
	uint64_t line_bytes;
	uint64_t depth;
	uint64_t count;
	uint64_t event_bytes;
	uint64_t drain_ms;
	uint64_t max_reconnects;
	double duration;
	double connect_rate;
	double rate;
	bool hold;
	bool verbose;
};

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "roomcast-bench: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(see roomcast-bench --help)\n");
	exit(2);
}

static uint64_t parse_u64(const char *name, const char *s, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
		fprintf(stderr, "roomcast-bench: --%s must be an integer in [%llu, %llu], not '%s'\n",
			name, (unsigned long long)min, (unsigned long long)max, s);
		exit(2);
	}
	return v;
}

static double parse_double(const char *name, const char *s, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !(v >= min && v <= max)) {
		fprintf(stderr, "roomcast-bench: --%s must be a number in [%g, %g], not '%s'\n", name,
			min, max, s);
		exit(2);
	}
	return v;
}

static bool option_is_for(int opt, bool publish)
{
	switch (opt) {
	case OPT_SOURCE_IPS:
	case OPT_CONNECT_RATE:
	case OPT_CONNECT_CONCURRENCY:
	case OPT_EXPECT:
	case OPT_HOLD:
	case OPT_PROCS:
	case OPT_LINE_BYTES:
	case OPT_READY_FILE:
	case OPT_SERVER_PID:
		return !publish;
	case OPT_RATE:
	case OPT_DEPTH:
	case OPT_COUNT:
	case OPT_EVENT_BYTES:
	case OPT_TYPE:
	case OPT_TOKEN:
	case OPT_DRAIN_MS:
	case OPT_MAX_RECONNECTS:
		return publish;
	default:
		return true;
	}
}

static void parse_cli(int argc, char **argv, struct cli *c)
{
	int opt, idx = 0;

	memset(c, 0, sizeof(*c));
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		exit(argc < 2 ? 2 : 0);
	}
	if (strcmp(argv[1], "publish") == 0)
		c->publish = true;
	else if (strcmp(argv[1], "subscribe") != 0)
		die_usage("unknown subcommand '%s'", argv[1]);
	c->target = "127.0.0.1:8080";
	c->url_template = c->publish ? "/api/v1/events" : "/api/v1/events?room_id=%s";
	c->room_prefix = "bench-";
	c->type = "bench.tick";
	c->conns = c->publish ? 4 : 100;
	c->rooms = 10;
	c->duration = 10;
	c->connect_timeout_ms = 5000;
	c->source_ips = 4;
	c->connect_rate = 5000;
	c->connect_concurrency = 256;
	c->line_bytes = 4096;
	c->rate = 1000;
	c->depth = 32;
	c->event_bytes = 256;
	c->drain_ms = 3000;
	c->max_reconnects = 1000;

	optind = 2;
	while ((opt = getopt_long(argc, argv, "", common_options, &idx)) != -1) {
		if (opt == '?')
			exit(2);
		if (!option_is_for(opt, c->publish))
			die_usage("option --%s does not apply to this subcommand", common_options[idx].name);
		switch (opt) {
		case OPT_TARGET: c->target = optarg; break;
		case OPT_URL_TEMPLATE: c->url_template = optarg; break;
		case OPT_CONNS: c->conns = parse_u64("conns", optarg, 1, SUB_CONNS_MAX); break;
		case OPT_ROOMS: c->rooms = parse_u64("rooms", optarg, 1, 1000000); break;
		case OPT_ROOM_PREFIX: c->room_prefix = optarg; break;
		case OPT_DURATION: c->duration = parse_double("duration", optarg, 0.001, 86400); break;
		case OPT_CONNECT_TIMEOUT_MS:
			c->connect_timeout_ms = parse_u64("connect-timeout-ms", optarg, 1, 600000);
			break;
		case OPT_VERBOSE: c->verbose = true; break;
		case OPT_HELP: fputs(usage_text, stdout); exit(0);
		case OPT_SOURCE_IPS: c->source_ips = parse_u64("source-ips", optarg, 1, 254); break;
		case OPT_CONNECT_RATE:
			c->connect_rate = parse_double("connect-rate", optarg, 0, 1e7);
			break;
		case OPT_CONNECT_CONCURRENCY:
			c->connect_concurrency = parse_u64("connect-concurrency", optarg, 1, 100000);
			break;
		case OPT_EXPECT: c->expect = parse_u64("expect", optarg, 0, UINT64_MAX); break;
		case OPT_HOLD: c->hold = true; break;
		case OPT_PROCS: c->procs = parse_u64("procs", optarg, 0, SUB_PROCS_MAX); break;
		case OPT_LINE_BYTES:
			c->line_bytes = parse_u64("line-bytes", optarg, 256, 1 << 20);
			break;
		case OPT_READY_FILE: c->ready_file = optarg; break;
		case OPT_SERVER_PID: c->server_pid = optarg; break;
		case OPT_RATE: c->rate = parse_double("rate", optarg, 0, 1e7); break;
		case OPT_DEPTH: c->depth = parse_u64("depth", optarg, 1, 4096); break;
		case OPT_COUNT: c->count = parse_u64("count", optarg, 0, UINT64_MAX); break;
		case OPT_EVENT_BYTES:
			c->event_bytes = parse_u64("event-bytes", optarg, 0, 1 << 20);
			break;
		case OPT_TYPE: c->type = optarg; break;
		case OPT_TOKEN: c->token = optarg; break;
		case OPT_DRAIN_MS: c->drain_ms = parse_u64("drain-ms", optarg, 0, 600000); break;
		case OPT_MAX_RECONNECTS:
			c->max_reconnects = parse_u64("max-reconnects", optarg, 0, 1000000);
			break;
		default: exit(2);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
}

/* Checks what both subcommands share; fills target. */
static void check_common(const struct cli *c, struct sockaddr_in *target, bool *has_room)
{
	int r = rb_target_parse(c->target, target);

	if (r == -EPERM)
		die_usage("refusing target '%s': only 127.0.0.0/8 is allowed", c->target);
	if (r < 0)
		die_usage("bad --target '%s' (want 127.x.y.z:port)", c->target);
	if (rb_template_check(c->url_template, has_room) < 0)
		die_usage("bad --url-template '%s' (a path, at most one %%s)", c->url_template);
	if (rb_room_prefix_check(c->room_prefix) < 0)
		die_usage("bad --room-prefix '%s' (1-64 of [A-Za-z0-9._:@-])", c->room_prefix);
}

/* Raises the soft descriptor limit to the hard one; returns the usable count. */
static uint64_t raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024 - FD_RESERVE;
	if (rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000)
		return 1000000;
	return rl.rlim_cur > 2 * FD_RESERVE ? rl.rlim_cur - FD_RESERVE : FD_RESERVE;
}

struct ready_ctx {
	const char *ready_file;
	const char *server_pid;
	struct rb_sub_stats *stats;
};

static void on_ready(void *arg)
{
	struct ready_ctx *rc = arg;
	int fd;

	if (rc->server_pid)
		rc->stats->server_rss_ready_kb = rb_rss_kb(rc->server_pid);
	if (rc->ready_file == NULL)
		return;
	fd = open(rc->ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "level=warn msg=\"cannot create ready file\" path=%s err=%s\n",
			rc->ready_file, strerror(errno));
		return;
	}
	(void)!write(fd, "ready\n", 6);
	close(fd);
}

static int run_subscribe(const struct cli *c)
{
	struct rb_sub_opts o;
	struct rb_sub_stats *stats;
	struct ready_ctx rc;
	uint64_t per_proc = raise_fd_limit();
	uint64_t procs = c->procs;
	bool has_room;
	int r;

	memset(&o, 0, sizeof(o));
	check_common(c, &o.target, &has_room);
	if (c->server_pid && rb_rss_check(c->server_pid) < 0)
		die_usage("bad --server-pid '%s' (pid[,pid...])", c->server_pid);
	if (procs == 0)
		procs = (c->conns + per_proc - 1) / per_proc;
	if (procs > SUB_PROCS_MAX) {
		fprintf(stderr, "roomcast-bench: %llu streams need more than %u processes\n",
			(unsigned long long)c->conns, SUB_PROCS_MAX);
		return 2;
	}
	if ((c->conns + procs - 1) / procs > per_proc) {
		fprintf(stderr,
			"roomcast-bench: %llu streams over %llu process(es) exceed the %llu "
			"descriptors a process may use; raise --procs\n",
			(unsigned long long)c->conns, (unsigned long long)procs,
			(unsigned long long)per_proc);
		return 2;
	}
	if (procs > c->conns)
		procs = c->conns;
	o.url_template = c->url_template;
	o.room_prefix = c->room_prefix;
	o.conns = (uint32_t)c->conns;
	o.rooms = (uint32_t)c->rooms;
	o.source_ips = (uint32_t)c->source_ips;
	o.connect_rate = c->connect_rate;
	o.connect_concurrency = (uint32_t)c->connect_concurrency;
	o.connect_timeout_ms = (uint32_t)c->connect_timeout_ms;
	o.duration_s = c->duration;
	o.expect = c->expect;
	o.line_bytes = (uint32_t)c->line_bytes;
	o.verbose = c->verbose;

	stats = malloc(sizeof(*stats));
	if (stats == NULL)
		return 1;
	rb_sub_stats_init(stats);
	rc.ready_file = c->ready_file;
	rc.server_pid = c->server_pid;
	rc.stats = stats;
	if (c->ready_file)
		(void)unlink(c->ready_file);
	if (procs == 1)
		r = rb_sub_run(&o, stats, on_ready, &rc);
	else
		r = rb_procs_run(&o, (unsigned)procs, stats, on_ready, &rc);
	if (r < 0)
		fprintf(stderr, "level=error msg=\"subscribe run failed\" err=\"%s\"\n", strerror(-r));
	if (c->server_pid)
		stats->server_rss_end_kb = rb_rss_kb(c->server_pid);
	rb_sub_stats_print_json(stdout, stats, c->hold ? "hold" : "subscribe", (unsigned)procs);
	fflush(stdout);
	if (r == 0 && stats->connected == 0) {
		fprintf(stderr, "level=error msg=\"no stream could be opened\"\n");
		r = -ENOTCONN;
	}
	free(stats);
	return r < 0 ? 1 : 0;
}

static int run_publish(const struct cli *c)
{
	struct rb_pub_opts o;
	bool has_room;
	int r;

	memset(&o, 0, sizeof(o));
	check_common(c, &o.target, &has_room);
	if (c->conns > 1000)
		die_usage("--conns must be at most 1000 for %s", "publish");
	if (strlen(c->type) == 0 || strlen(c->type) > 64 || strspn(c->type,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(c->type))
		die_usage("bad --type '%s' (1-64 of [A-Za-z0-9._-])", c->type);
	if (c->token && (strlen(c->token) == 0 || strlen(c->token) > 512 ||
			 strpbrk(c->token, "\r\n") != NULL))
		die_usage("bad --token (1-512 bytes, one line)%s", "");
	(void)raise_fd_limit();
	o.url_template = c->url_template;
	o.room_prefix = c->room_prefix;
	o.type = c->type;
	o.token = c->token;
	o.conns = (uint32_t)c->conns;
	o.rooms = (uint32_t)c->rooms;
	o.depth = (uint32_t)c->depth;
	o.rate = c->rate;
	o.duration_s = c->duration;
	o.count = c->count;
	o.event_bytes = (uint32_t)c->event_bytes;
	o.connect_timeout_ms = (uint32_t)c->connect_timeout_ms;
	o.drain_ms = (uint32_t)c->drain_ms;
	o.max_reconnects = (uint32_t)c->max_reconnects;
	o.verbose = c->verbose;
	if (o.rooms < o.conns && c->verbose)
		fprintf(stderr, "level=warn msg=\"fewer rooms than connections: %u connection(s) idle\"\n",
			o.conns - o.rooms);
	r = rb_pub_run(&o, stdout);
	if (r < 0)
		fprintf(stderr, "level=error msg=\"publish run failed\" err=\"%s\"\n", strerror(-r));
	return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct cli c;

	/* A peer that resets mid-write must show up as EPIPE, not kill the run. */
	signal(SIGPIPE, SIG_IGN);
	parse_cli(argc, argv, &c);
	return c.publish ? run_publish(&c) : run_subscribe(&c);
}
