/*
 * roomcast: the command-line client of the broker.
 *
 *   roomcast publish --room R --type T [--data JSON] [--key K]   one event, prints its id
 *   roomcast publish --ndjson < events.ndjson          one event per line
 *   roomcast tail [--room R] [--count N]               events from the bus
 *   roomcast stats                                     the broker's counters
 *   roomcast history --room R [--before ID|--after ID] [--limit N] [--order desc|asc]   a page of a room's events
 *   roomcast token --secret-file F --sub S --rooms R,P:* [--ttl 1h] ...   mint a token (token.h)
 *   roomcast keygen --alg RS256 --kid K --out F [--jwks-out F]          make a key (token.h)
 *   roomcast revoke --sub ID | --jti ID                every gateway closes the streams of it
 *
 * Exit codes: 0 done; 1 failed (a publish: nothing was published); 2 bad
 * options; 3 a publish was sent but got no answer (it may have been published).
 */
#include <inttypes.h>
#include <json-c/json.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "event.h"
#include "flush.h"
#include "frame.h"
#include "id.h"
#include "json.h"
#include "log.h"
#include "options.h"
#include "proto_limits.h"
#include "timed_call.h"
#include "token.h"

#define CLI_EXIT_USAGE 2 /* bad options or arguments (SPEC); other failures exit 1 */
/* publish: the request went out but no answer came, so it may have been published */
#define CLI_EXIT_UNKNOWN 3
/* nng 1.5.2 can hang in nng_close (timed_call.h): the CLI exits regardless after this */
#define CLI_CLOSE_MS 1000

struct cli {
	const char *broker_api, *broker_bus;
	const char *room, *type, *data, *key;
	const char *before, *after, *order;
	bool ndjson;
	int64_t count, timeout_ms;
	enum rc_log_level log_level;
	nng_socket req;
	bool unanswered; /* a request was sent and got no answer */
	atomic_bool tail_connected;
};

/* Prints "roomcast: <message>" on stderr; returns 1 (the exit code of a failed command). */
static int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int cli_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "roomcast: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Opens the REQ socket; the dial retries in the background until the timeout. */
static int cli_connect(struct cli *c)
{
	int rv;

	if ((rv = nng_req0_open(&c->req)) != 0)
		return cli_fail("cannot open a socket: %s", nng_strerror(rv));
	nng_socket_set_ms(c->req, NNG_OPT_RECVTIMEO, (nng_duration)c->timeout_ms);
	nng_socket_set_ms(c->req, NNG_OPT_SENDTIMEO, (nng_duration)c->timeout_ms);
	/* never re-send behind the user's back (nng would after a lost connection): it could publish twice */
	nng_socket_set_ms(c->req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(c->req, NNG_OPT_RECVMAXSZ, 0);
	if ((rv = nng_dial(c->req, c->broker_api, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		/* a nonblocking dial fails only on the address itself: a bad option */
		cli_fail("bad --broker-api '%s': %s", c->broker_api, nng_strerror(rv));
		return CLI_EXIT_USAGE;
	}
	return 0;
}

/*
 * Sends one request and returns the parsed reply (caller puts it), or NULL;
 * sets c->unanswered when the request went out but no answer came (nng's
 * send returns once the request is handed to the connection).
 */
static struct json_object *cli_call(struct cli *c, const char *req, size_t len)
{
	char *buf = NULL;
	size_t blen = 0;
	struct json_object *reply;
	struct json_tokener *tok;
	int rv;

	if ((rv = nng_send(c->req, (void *)req, len, 0)) != 0) {
		cli_fail("broker api %s unreachable: %s; the request was not sent", c->broker_api, nng_strerror(rv));
		return NULL;
	}
	if ((rv = nng_recv(c->req, &buf, &blen, NNG_FLAG_ALLOC)) != 0) {
		c->unanswered = true;
		cli_fail("no answer from the broker api %s: %s; the request was sent, so it may have been published",
			 c->broker_api, nng_strerror(rv));
		return NULL;
	}
	/* the reply is not NUL-terminated: parse exactly its bytes */
	tok = json_tokener_new();
	reply = tok ? json_tokener_parse_ex(tok, buf, (int)blen) : NULL;
	if (reply != NULL && json_tokener_get_parse_end(tok) != blen) {
		json_object_put(reply);
		reply = NULL;
	}
	json_tokener_free(tok);
	nng_free(buf, blen);
	if (reply == NULL)
		cli_fail("the broker sent a reply that is not JSON");
	return reply;
}

/* Prints the error of a failed reply; returns true when the reply was ok. */
static bool cli_reply_ok(struct json_object *reply, const char *context)
{
	struct json_object *ok, *err, *msg, *code;

	if (json_object_object_get_ex(reply, "ok", &ok) && json_object_get_boolean(ok))
		return true;
	json_object_object_get_ex(reply, "error", &err);
	json_object_object_get_ex(err, "message", &msg);
	json_object_object_get_ex(err, "code", &code);
	fprintf(stderr, "roomcast: %s%s (%s)\n", context, msg ? json_object_get_string(msg) : "unknown error",
		code ? json_object_get_string(code) : "?");
	return false;
}

static int cli_print_ids(struct json_object *reply)
{
	struct json_object *ids;

	if (!json_object_object_get_ex(reply, "ids", &ids))
		return 1;
	for (size_t i = 0; i < json_object_array_length(ids); i++)
		printf("%s\n", json_object_get_string(json_object_array_get_idx(ids, i)));
	fflush(stdout);
	return 0;
}

/*
 * Appends the members of the JSON object text (--data) to out, each after a
 * comma, as written (compact: numbers and strings untouched), except type
 * and room_id, which --type and --room give. Returns false with why set
 * when text is not one strict JSON object.
 */
static bool cli_data_members(const char *text, bool keyed, struct rc_buf *out, char *why, size_t whylen)
{
	struct rc_json j;
	const char *key;
	size_t len;

	rc_json_init(&j, text, strlen(text), NULL);
	rc_json_limit(&j, RC_JSON_MAX_DEPTH); /* the object becomes the event */
	if (rc_json_peek(&j) != RC_JSON_OBJECT) {
		if (rc_json_value(&j) && rc_json_end(&j))
			snprintf(why, whylen, "not an object");
		else
			rc_json_error(&j, why, whylen);
		return false;
	}
	rc_json_begin(&j);
	while (rc_json_next(&j)) {
		if (rc_json_key_is(&j, "type") || rc_json_key_is(&j, "room_id") ||
		    (keyed && rc_json_key_is(&j, "key"))) {
			rc_json_value(&j);
			continue;
		}
		key = rc_json_key(&j, &len);
		rc_buf_puts(out, ",\"");
		rc_buf_append(out, key, len);
		rc_buf_puts(out, "\":");
		j.out = out;
		rc_json_value(&j);
		j.out = NULL;
	}
	if (!rc_json_end(&j)) {
		rc_json_error(&j, why, whylen);
		return false;
	}
	return true;
}

static int cli_publish_one(struct cli *c)
{
	struct json_object *reply;
	struct rc_buf req;
	char why[256];
	int rc = 1;

	if (c->type == NULL) {
		cli_fail("publish needs --type (or --ndjson)");
		return CLI_EXIT_USAGE;
	}
	if (c->key != NULL && !rc_key_valid(c->key, strlen(c->key))) {
		cli_fail("--key must be 1-%d bytes of printable ASCII without space", RC_KEY_MAX);
		return CLI_EXIT_USAGE;
	}
	/* the event is built as text, so --data goes to the broker as written */
	rc_buf_init(&req);
	rc_buf_puts(&req, "{\"op\":\"publish\",\"events\":[{\"type\":");
	rc_buf_json_str(&req, c->type, strlen(c->type));
	if (c->room != NULL) {
		rc_buf_puts(&req, ",\"room_id\":");
		rc_buf_json_str(&req, c->room, strlen(c->room));
	}
	if (c->key != NULL) {
		rc_buf_puts(&req, ",\"key\":");
		rc_buf_json_str(&req, c->key, strlen(c->key));
	}
	if (c->data != NULL && !cli_data_members(c->data, c->key != NULL, &req, why, sizeof(why))) {
		rc_buf_fini(&req);
		cli_fail("--data must be a JSON object, got '%s': %s", c->data, why);
		return CLI_EXIT_USAGE;
	}
	rc_buf_puts(&req, "}]}");
	if (req.err) {
		rc_buf_fini(&req);
		return cli_fail("out of memory");
	}
	reply = cli_call(c, req.data, req.len);
	if (reply != NULL && cli_reply_ok(reply, ""))
		rc = cli_print_ids(reply);
	else if (reply == NULL && c->unanswered)
		rc = CLI_EXIT_UNKNOWN;
	json_object_put(reply);
	rc_buf_fini(&req);
	return rc;
}

/* Publishes the batch in b (events joined by commas); first_line for messages. */
static int cli_publish_batch(struct cli *c, struct rc_buf *b, size_t n, long first_line)
{
	struct json_object *reply;
	char ctx[64];
	int rc = 1;

	if (n == 0)
		return 0;
	rc_buf_puts(b, "]}");
	if (b->err)
		return cli_fail("out of memory");
	reply = cli_call(c, b->data, b->len);
	snprintf(ctx, sizeof(ctx), "batch from line %ld: ", first_line);
	if (reply != NULL && cli_reply_ok(reply, ctx))
		rc = cli_print_ids(reply);
	else if (reply == NULL && c->unanswered)
		rc = CLI_EXIT_UNKNOWN;
	json_object_put(reply);
	return rc;
}

static int cli_publish_ndjson(struct cli *c)
{
	static const char head[] = "{\"op\":\"publish\",\"events\":[";
	struct rc_buf b;
	char *line = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;
	long lineno = 0, first = 1;
	int rc = 0;

	rc_buf_init(&b);
	rc_buf_puts(&b, head);
	while (rc == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (n > 0 && (n == RC_PUBLISH_MAX_EVENTS || b.len + (size_t)len > RC_PUBLISH_BATCH_BYTES)) {
			rc = cli_publish_batch(c, &b, n, first);
			b.len = 0;
			rc_buf_puts(&b, head);
			n = 0;
		}
		if (n == 0)
			first = lineno;
		if (n > 0)
			rc_buf_append(&b, ",", 1);
		rc_buf_append(&b, line, (size_t)len);
		n++;
	}
	if (rc == 0)
		rc = cli_publish_batch(c, &b, n, first);
	free(line);
	rc_buf_fini(&b);
	return rc;
}

static int cli_stats(struct cli *c)
{
	static const char req[] = "{\"op\":\"stats\"}";
	struct json_object *reply = cli_call(c, req, sizeof(req) - 1);
	int rc = 1;

	if (reply != NULL && cli_reply_ok(reply, "")) {
		printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		rc = 0;
	}
	json_object_put(reply);
	return rc;
}

/*
 * A page of a room's history, printed as the gateway's history API answers
 * it: {"events":[{"id":…,"event":{…}},…],"next":<id or null>}.
 */
static int cli_history(struct cli *c)
{
	struct json_object *reply, *events, *out, *arr, *more;
	bool newest_first;
	struct rc_buf req;
	size_t n;
	int rc = 1;

	rc_buf_init(&req);
	rc_buf_puts(&req, "{\"op\":\"replay\",\"rooms\":[");
	rc_buf_json_str(&req, c->room, strlen(c->room));
	rc_buf_printf(&req, "],\"global\":false,\"limit\":%" PRId64, c->count);
	if (c->before != NULL) {
		rc_buf_puts(&req, ",\"before\":");
		rc_buf_json_str(&req, c->before, strlen(c->before));
	}
	if (c->after != NULL) {
		rc_buf_puts(&req, ",\"after\":");
		rc_buf_json_str(&req, c->after, strlen(c->after));
	}
	newest_first = c->order != NULL ? strcmp(c->order, "desc") == 0 : c->after == NULL || c->before != NULL;
	rc_buf_printf(&req, ",\"order\":\"%s\"}", newest_first ? "desc" : "asc");
	reply = req.err ? NULL : cli_call(c, req.data, req.len);
	rc_buf_fini(&req);
	if (reply == NULL || !cli_reply_ok(reply, "history: "))
		goto out;
	if (!json_object_object_get_ex(reply, "events", &events) || !json_object_is_type(events, json_type_array)) {
		cli_fail("history: the broker's answer has no events");
		goto out;
	}
	out = json_object_new_object();
	arr = json_object_new_array();
	n = json_object_array_length(events);
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(events, i), *v, *o = json_object_new_object();
		if (json_object_object_get_ex(e, "id", &v))
			json_object_object_add(o, "id", json_object_get(v));
		if (json_object_object_get_ex(e, "event", &v))
			json_object_object_add(o, "event", json_object_get(v));
		json_object_array_add(arr, o);
	}
	json_object_object_add(out, "events", arr);
	{
		struct json_object *last = n > 0 ? json_object_array_get_idx(events, n - 1) : NULL, *v = NULL;
		bool has_more = json_object_object_get_ex(reply, "more", &more) && json_object_get_boolean(more);
		if (has_more && last != NULL && json_object_object_get_ex(last, "id", &v))
			json_object_object_add(out, "next", json_object_get(v));
		else
			json_object_object_add(out, "next", NULL);
	}
	printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(out);
	rc = 0;
out:
	json_object_put(reply);
	return rc;
}

/* The history command's options; false (exit 2) after saying which is wrong. */
static bool cli_history_opts(struct cli *c)
{
	struct rc_id id;

	if (c->room == NULL || !rc_room_valid(c->room, strlen(c->room))) {
		fprintf(stderr, "roomcast: history needs --room: 1-%d bytes of [A-Za-z0-9._:@-]\n", RC_ROOM_MAX);
		return false;
	}
	if (c->before != NULL && rc_id_parse(c->before, strlen(c->before), &id) != RC_OK) {
		fprintf(stderr, "roomcast: --before must be an event id like 6f1c2a9e-1042\n");
		return false;
	}
	if (c->after != NULL && rc_id_parse(c->after, strlen(c->after), &id) != RC_OK) {
		fprintf(stderr, "roomcast: --after must be an event id like 6f1c2a9e-1042\n");
		return false;
	}
	if (c->order != NULL && strcmp(c->order, "desc") != 0 && strcmp(c->order, "asc") != 0) {
		fprintf(stderr, "roomcast: --order must be desc or asc\n");
		return false;
	}
	if (c->count == 0)
		c->count = RC_HISTORY_PAGE_DEFAULT;
	if (c->count > RC_HISTORY_PAGE_MAX) {
		fprintf(stderr, "roomcast: --limit must be 1-%d\n", RC_HISTORY_PAGE_MAX);
		return false;
	}
	return true;
}

/* nng pipe callback: says once on stderr that tail is connected to the bus. */
static void cli_tail_connected(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct cli *c = arg;

	(void)p;
	(void)ev;
	if (!atomic_exchange(&c->tail_connected, true))
		fprintf(stderr, "roomcast: tailing %s\n", c->broker_bus);
}

/* Prints the events of one merged flush; returns how many. */
static int64_t cli_tail_print(struct cli *c, struct rc_frame_reader *r, int64_t left, struct rc_buf *out)
{
	struct rc_frame_event ev;
	int64_t printed = 0;
	char id[RC_ID_MAX];

	out->len = 0;
	while ((c->count == 0 || printed < left) && rc_frame_reader_next(r, &ev)) {
		/* a whole flush holds every room's events */
		if (c->room != NULL && ev.room_len != 0 &&
		    (ev.room_len != strlen(c->room) || memcmp(ev.room, c->room, ev.room_len) != 0))
			continue;
		rc_id_format(id, r->hdr.epoch, ev.gseq);
		rc_buf_printf(out, "{\"id\":\"%s\",\"room_id\":", id);
		if (ev.room_len)
			rc_buf_json_str(out, ev.room, ev.room_len);
		else
			rc_buf_puts(out, "null");
		rc_buf_printf(out, ",\"rseq\":%llu,\"event\":", (unsigned long long)ev.rseq);
		rc_buf_append(out, ev.json, ev.json_len);
		rc_buf_puts(out, "}\n");
		printed++;
	}
	/* a flush of other rooms printed nothing: out->data may still be NULL */
	if (out->len > 0) {
		fwrite(out->data, 1, out->len, stdout);
		fflush(stdout);
	}
	return printed;
}

/* What tail's flush assembler calls back with. */
struct cli_tail {
	struct cli *c;
	int64_t printed;
	struct rc_buf out;
};

/* --room: that room and the global events (what tail subscribes to); else every room. */
static bool cli_tail_wants(void *arg, const char *room, size_t room_len)
{
	const char *want = ((struct cli_tail *)arg)->c->room;

	return want == NULL || room_len == 0 || (room_len == strlen(want) && memcmp(room, want, room_len) == 0);
}

/* A flush ended: its events are printed, up to --count. */
static void cli_tail_flush(void *arg, struct rc_frame_reader *r, uint64_t first, bool complete)
{
	struct cli_tail *t = arg;

	/* tail shows what the bus delivered: the events of a frame nng dropped are not printed */
	(void)first;
	(void)complete;
	t->printed += cli_tail_print(t->c, r, t->c->count - t->printed, &t->out);
}

static void cli_tail_bad(void *arg, int err, const char *what, size_t len)
{
	(void)arg;
	(void)err;
	(void)what;
	(void)len;
	fprintf(stderr, "roomcast: skipped a corrupt bus message\n");
}

static int cli_tail(struct cli *c)
{
	struct cli_tail t = { .c = c };
	struct rc_flush_cfg cfg = { .wants = cli_tail_wants, .done = cli_tail_flush, .bad = cli_tail_bad, .arg = &t };
	struct rc_flush_asm *flush;
	nng_socket sub;
	int rv;

	if ((rv = nng_sub0_open(&sub)) != 0)
		return cli_fail("cannot open a socket: %s", nng_strerror(rv));
	if ((flush = rc_flush_asm_new(&cfg)) == NULL) {
		rc_nng_close_within(sub, CLI_CLOSE_MS);
		return cli_fail("out of memory");
	}
	if (c->room != NULL) {
		/* the room, global events, and the indexes that close each flush */
		char topic[RC_BUS_TOPIC_MAX];
		size_t len = strlen(c->room);
		if (!rc_room_valid(c->room, len)) {
			rc_flush_asm_free(flush);
			rc_nng_close_within(sub, CLI_CLOSE_MS);
			cli_fail("bad --room '%s': 1-%d bytes of [A-Za-z0-9._:@-]", c->room, RC_ROOM_MAX);
			return CLI_EXIT_USAGE;
		}
		nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, topic, rc_bus_topic(topic, c->room, len));
		nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, topic, rc_bus_topic(topic, NULL, 0));
		nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN);
	} else {
		nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
	}
	nng_socket_set_int(sub, NNG_OPT_RECVBUF, 8192);
	nng_socket_set_size(sub, NNG_OPT_RECVMAXSZ, 0);
	if (c->timeout_ms > 0 && c->count > 0)
		nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, (nng_duration)c->timeout_ms);
	/* tell a script that the subscription is in place: once connected, not at the dial */
	nng_pipe_notify(sub, NNG_PIPE_EV_ADD_POST, cli_tail_connected, c);
	if ((rv = nng_dial(sub, c->broker_bus, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		rc_flush_asm_free(flush);
		rc_nng_close_within(sub, CLI_CLOSE_MS);
		cli_fail("bad --broker-bus '%s': %s", c->broker_bus, nng_strerror(rv));
		return CLI_EXIT_USAGE;
	}
	rc_buf_init(&t.out);
	/* each frame waits for its flush's index; the index prints the flush */
	while (c->count == 0 || t.printed < c->count) {
		nng_msg *msg;

		if ((rv = nng_recvmsg(sub, &msg, 0)) != 0) {
			cli_fail("bus %s: %s", c->broker_bus, nng_strerror(rv));
			break;
		}
		rc_flush_asm_msg(flush, msg);
	}
	rc_flush_asm_free(flush);
	rc_buf_fini(&t.out);
	rc_nng_close_within(sub, CLI_CLOSE_MS);
	return c->count > 0 && t.printed < c->count ? 1 : 0;
}

/* revoke: the broker tells every gateway on its bus (they close the matching streams within a second). */
static int cli_revoke(struct cli *c, const struct cli_token_opts *t)
{
	struct json_object *req, *reply;
	const char *id = t->jti ? t->jti : t->sub;
	bool ok;

	if ((t->sub == NULL) == (t->jti == NULL) || *id == '\0') {
		fprintf(stderr, "roomcast: revoke needs exactly one of --sub ID or --jti ID\n");
		return CLI_EXIT_USAGE;
	}
	req = json_object_new_object();
	json_object_object_add(req, "op", json_object_new_string("revoke"));
	json_object_object_add(req, t->jti ? "jti" : "sub", json_object_new_string(id));
	reply = cli_call(c, json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN),
			 strlen(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN)));
	json_object_put(req);
	if (reply == NULL)
		return 1;
	ok = cli_reply_ok(reply, "revoke: ");
	json_object_put(reply);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct cli c = {
		.broker_api = "tcp://127.0.0.1:7411",
		.broker_bus = "tcp://127.0.0.1:7410",
		.timeout_ms = 5000,
		.log_level = RC_LOG_WARN,
	};
	struct cli_token_opts t = { 0 };
	int64_t history_limit = 0;
	const struct rc_opt table[] = {
		{ "broker-api", RC_OPT_STR, &c.broker_api, 0, 0, "the broker's api address" },
		{ "broker-bus", RC_OPT_STR, &c.broker_bus, 0, 0, "the broker's bus address (tail)" },
		{ "room", RC_OPT_STR, &c.room, 0, 0, "publish: the event's room_id; tail: only this room (+ global)" },
		{ "type", RC_OPT_STR, &c.type, 0, 0, "publish: the event's type" },
		{ "data", RC_OPT_STR, &c.data, 0, 0, "publish: a JSON object with the event's other fields" },
		{ "ndjson", RC_OPT_BOOL, &c.ndjson, 0, 0,
		  "publish: read one event object per line from stdin (a line's key field: its idempotency key)" },
		{ "key", RC_OPT_STR, &c.key, 0, 0,
		  "publish: the event's idempotency key: the same key within the broker's --idempotency-window gets "
		  "the original id and publishes nothing" },
		{ "count", RC_OPT_INT, &c.count, 0, INT64_MAX, "tail: exit after this many events (0 = never)" },
		{ "timeout-ms", RC_OPT_INT, &c.timeout_ms, 1, 3600000,
		  "give up on the broker after this long (tail: with --count)" },
		{ "before", RC_OPT_STR, &c.before, 0, 0, "history: the events before this id (newest first)" },
		{ "after", RC_OPT_STR, &c.after, 0, 0, "history: the events after this id (oldest first)" },
		{ "limit", RC_OPT_INT, &history_limit, 1, RC_HISTORY_PAGE_MAX, "history: events in the page (default 50)" },
		{ "order", RC_OPT_STR, &c.order, 0, 0, "history: desc (newest first) or asc" },
		{ "log-level", RC_OPT_LOG, &c.log_level, 0, 0, "debug, info, warn or error" },
		{ "secret-file", RC_OPT_STR, &t.secret_file, 0, 0, "token: sign HS256 with this HMAC secret file" },
		{ "key-file", RC_OPT_STR, &t.key_file, 0, 0, "token: sign with this private JWK (RS256, ES256...)" },
		{ "sub", RC_OPT_STR, &t.sub, 0, 0, "token: the subject (user or service id); revoke: the subject whose streams end" },
		{ "rooms", RC_OPT_STR, &t.rooms, 0, 0, "token: rooms it may read: ids or prefixes (lobby,team-42:*)" },
		{ "publish", RC_OPT_STR, &t.publish, 0, 0, "token: rooms it may publish to ($global: global events)" },
		{ "publish-global", RC_OPT_BOOL, &t.publish_global, 0, 0, "token: it may publish global events" },
		{ "firehose", RC_OPT_BOOL, &t.firehose, 0, 0, "token: it may open the firehose (every room)" },
		{ "ttl", RC_OPT_STR, &t.ttl, 0, 0, "token: lifetime: seconds or 30m, 1h, 7d (default 1h)" },
		{ "aud", RC_OPT_STR, &t.aud, 0, 0, "token: the audience claim" },
		{ "iss", RC_OPT_STR, &t.iss, 0, 0, "token: the issuer claim" },
		{ "jti", RC_OPT_STR, &t.jti, 0, 0, "token: its id (default: random); revoke: the token whose streams end" },
		{ "kid", RC_OPT_STR, &t.kid, 0, 0, "token: the header's kid (default: the key's); keygen: the key's" },
		{ "alg", RC_OPT_STR, &t.alg, 0, 0, "token: the algorithm (default: the key's); keygen: required" },
		{ "out", RC_OPT_STR, &t.out, 0, 0, "keygen: the file for the secret or private key (default stdout)" },
		{ "jwks-out", RC_OPT_STR, &t.jwks_out, 0, 0, "keygen: the file for the public JWKS (default stdout)" },
		{ NULL, 0, NULL, 0, 0, NULL },
	};
	static const char usage[] =
		"usage: roomcast publish --room R --type T [--data JSON] [--key K]\n"
		"       roomcast publish --ndjson < events.ndjson\n"
		"       roomcast tail [--room R] [--count N]\n"
		"       roomcast stats\n"
		"       roomcast history --room R [--before ID|--after ID] [--limit N] [--order desc|asc]\n"
		"       roomcast revoke --sub ID | --jti ID\n"
		"       roomcast token --secret-file F|--key-file F --sub S --rooms R[,P:*] [--ttl 1h]\n"
		"       roomcast keygen --alg HS256|RS256|ES256 [--kid K] [--out F] [--jwks-out F]";
	struct rc_opts_result res;
	const char *cmd;
	int rc;

	if ((rc = rc_opts_main("roomcast", usage, table, argc, argv, 1, &res)) != -1)
		return rc;
	if (res.npos == 0) {
		rc_opts_usage(stderr, usage, table);
		rc_opts_result_fini(&res);
		return 2;
	}
	cmd = res.pos[0];
	rc_opts_result_fini(&res);
	rc_log_set_level(c.log_level);
	if (strcmp(cmd, "tail") == 0)
		return cli_tail(&c);
	if (strcmp(cmd, "token") == 0)
		return cli_token(&t);
	if (strcmp(cmd, "keygen") == 0)
		return cli_keygen(&t);
	if (strcmp(cmd, "history") == 0) {
		c.count = history_limit;
		if (!cli_history_opts(&c))
			return 2;
	}
	if (strcmp(cmd, "publish") != 0 && strcmp(cmd, "stats") != 0 && strcmp(cmd, "revoke") != 0 &&
	    strcmp(cmd, "history") != 0) {
		fprintf(stderr, "roomcast: unknown command '%s': publish, tail, stats, history, revoke, token or keygen\n",
			cmd);
		return 2;
	}
	if (strcmp(cmd, "publish") == 0 && c.ndjson && c.key != NULL) {
		cli_fail("--key is for one event: with --ndjson give each line a key field");
		return CLI_EXIT_USAGE;
	}
	if ((rc = cli_connect(&c)) != 0)
		return rc;
	if (strcmp(cmd, "stats") == 0)
		rc = cli_stats(&c);
	else if (strcmp(cmd, "history") == 0)
		rc = cli_history(&c);
	else if (strcmp(cmd, "revoke") == 0)
		rc = cli_revoke(&c, &t);
	else
		rc = c.ndjson ? cli_publish_ndjson(&c) : cli_publish_one(&c);
	rc_nng_close_within(c.req, CLI_CLOSE_MS);
	return rc;
}
