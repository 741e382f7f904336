#include "broker_fixture.h"

#include <json-c/json.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#ifndef RC_BROKER_BIN
#error "RC_BROKER_BIN must name the roomcast-broker binary (set by CMake)"
#endif

#define BROKER_MAX_ARGS 64

int api_open(nng_socket *s, const char *url, int timeout_ms)
{
	int rv;

	if ((rv = nng_req0_open(s)) != 0)
		return rv;
	nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, timeout_ms);
	nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, timeout_ms);
	nng_socket_set_ms(*s, NNG_OPT_RECONNMINT, 10);
	nng_socket_set_ms(*s, NNG_OPT_RECONNMAXT, 100);
	nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, 0);
	if ((rv = nng_dial(*s, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		rc_nng_close_within(*s, NNG_CLOSE_MS);
		return rv;
	}
	return 0;
}

char *api_call_raw(nng_socket s, const void *req, size_t len, size_t *reply_len, int *err)
{
	nng_msg *msg;
	char *out;
	int rv;

	if ((rv = nng_msg_alloc(&msg, 0)) != 0 || (rv = nng_msg_append(msg, req, len)) != 0)
		goto out_err;
	if ((rv = nng_sendmsg(s, msg, 0)) != 0) {
		nng_msg_free(msg);
		goto out_err;
	}
	if ((rv = nng_recvmsg(s, &msg, 0)) != 0)
		goto out_err;
	out = malloc(nng_msg_len(msg) + 1);
	if (out != NULL) {
		memcpy(out, nng_msg_body(msg), nng_msg_len(msg));
		out[nng_msg_len(msg)] = '\0';
		if (reply_len != NULL)
			*reply_len = nng_msg_len(msg);
	}
	nng_msg_free(msg);
	if (out == NULL && err != NULL)
		*err = NNG_ENOMEM;
	return out;

out_err:
	if (err != NULL)
		*err = rv;
	return NULL;
}

struct json_object *api_call(nng_socket s, const char *req)
{
	size_t len;
	char *raw = api_call_raw(s, req, strlen(req), &len, NULL);
	struct json_tokener *tok;
	struct json_object *obj;

	if (raw == NULL)
		return NULL;
	tok = json_tokener_new();
	obj = json_tokener_parse_ex(tok, raw, (int)len);
	if (obj != NULL && (json_tokener_get_parse_end(tok) != len || !json_object_is_type(obj, json_type_object))) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	free(raw);
	return obj;
}

struct json_object *api_call_once(const char *url, const char *req)
{
	nng_socket s;
	struct json_object *r;

	if (api_open(&s, url, API_TIMEOUT_MS) != 0)
		return NULL;
	r = api_call(s, req);
	rc_nng_close_within(s, NNG_CLOSE_MS);
	return r;
}

struct json_object *json_get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o == NULL || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

bool api_reply_ok(struct json_object *reply)
{
	struct json_object *ok = json_get(reply, "ok");

	return ok != NULL && json_object_is_type(ok, json_type_boolean) && json_object_get_boolean(ok);
}

const char *api_reply_code(struct json_object *reply)
{
	struct json_object *code = json_get(json_get(reply, "error"), "code");

	return code != NULL && json_object_is_type(code, json_type_string) ? json_object_get_string(code) : NULL;
}

uint64_t broker_fixture_gseq(const struct broker_fixture *b, const char *id)
{
	struct rc_id v;

	if (id == NULL || rc_id_parse(id, strlen(id), &v) != RC_OK || v.epoch != b->epoch_value)
		return UINT64_MAX;
	return v.gseq;
}

/* Polls ping until it answers, the broker exits, or the deadline passes. Returns 0 or -1. */
static int broker_fixture_wait_ready(struct broker_fixture *b, int timeout_ms)
{
	int64_t deadline = proc_now_ms() + timeout_ms;
	nng_socket s;
	int rv = -1;

	if (api_open(&s, b->api_url, 200) != 0)
		return -1;
	while (proc_now_ms() < deadline && proc_running(&b->proc)) {
		struct json_object *r = api_call(s, "{\"op\":\"ping\"}");
		struct json_object *e = json_get(r, "epoch");

		if (api_reply_ok(r) && e != NULL && json_object_get_string_len(e) < RC_ID_MAX) {
			struct rc_id id;
			char probe[RC_ID_MAX + 2];

			snprintf(b->epoch, sizeof(b->epoch), "%s", json_object_get_string(e));
			snprintf(probe, sizeof(probe), "%s-0", b->epoch);
			if (rc_id_parse(probe, strlen(probe), &id) == RC_OK) {
				b->epoch_value = id.epoch;
				rv = 0;
			}
			json_object_put(r);
			break;
		}
		json_object_put(r);
		/* a refused dial is retried by nng; a timed-out recv already paused */
		proc_poll_pause(10);
	}
	rc_nng_close_within(s, NNG_CLOSE_MS);
	return rv;
}

/*
 * Copies the value of " key=" in the broker's ready line to out (up to the
 * next space). Returns 0, or -1 when the line has no such key or it does not fit.
 */
static int broker_fixture_ready_value(const char *line, const char *key, char *out, size_t size)
{
	char pat[16];
	const char *v, *eol = strchr(line, '\n');
	size_t n;

	snprintf(pat, sizeof(pat), " %s=", key);
	v = strstr(line, pat);
	if (v == NULL || (eol != NULL && v > eol))
		return -1;
	v += strlen(pat);
	n = strcspn(v, " \n");
	if (n == 0 || n >= size)
		return -1;
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

/* Reads the bus and api URLs the broker logged as bound. Returns 0 or -1 (printed). */
static int broker_fixture_read_urls(struct broker_fixture *b)
{
	char *err = proc_stderr(&b->proc);
	const char *line = strstr(err, "msg=\"broker ready\"");
	const char *bp, *ap;
	int rv = -1;

	if (line == NULL || broker_fixture_ready_value(line, "bus", b->bus_url, sizeof(b->bus_url)) != 0 ||
	    broker_fixture_ready_value(line, "api", b->api_url, sizeof(b->api_url)) != 0) {
		fprintf(stderr, "broker_fixture: no bus= and api= in the ready line; stderr:\n%s\n", err);
		goto out;
	}
	bp = strrchr(b->bus_url, ':');
	ap = strrchr(b->api_url, ':');
	b->bus_port = bp ? atoi(bp + 1) : 0;
	b->api_port = ap ? atoi(ap + 1) : 0;
	if (b->bus_port <= 0 || b->api_port <= 0) {
		fprintf(stderr, "broker_fixture: the broker logged bus=%s api=%s, not the ports it bound\n", b->bus_url,
			b->api_url);
		goto out;
	}
	rv = 0;
out:
	free(err);
	return rv;
}

int broker_fixture_start(struct broker_fixture *b, const char *const *args, const char *const *env)
{
	const char *argv[BROKER_MAX_ARGS];
	size_t n = 0;
	struct proc_spec spec = {
		.path = RC_BROKER_BIN,
		.argv = argv,
		.env = env,
		.env_drop_prefix = "ROOMCAST_",
		.name = "broker",
	};
	char *err;

	memset(b, 0, sizeof(*b));
	b->proc.stdin_fd = -1;
	/* port 0: the broker binds what the system gives and logs it; no port to race for */
	argv[n++] = "--bus";
	argv[n++] = "tcp://127.0.0.1:0";
	argv[n++] = "--api";
	argv[n++] = "tcp://127.0.0.1:0";
	for (const char *const *a = args; a != NULL && *a != NULL && n < BROKER_MAX_ARGS - 1; a++)
		argv[n++] = *a;
	argv[n] = NULL;
	if (proc_spawn(&b->proc, &spec) != 0) {
		fprintf(stderr, "broker_fixture: cannot spawn %s\n", RC_BROKER_BIN);
		return -1;
	}
	if (proc_wait_output(&b->proc, 2, "msg=\"broker ready\"", BROKER_START_TIMEOUT_MS) &&
	    broker_fixture_read_urls(b) == 0 && broker_fixture_wait_ready(b, BROKER_START_TIMEOUT_MS) == 0)
		return 0;
	err = proc_stderr(&b->proc);
	fprintf(stderr, "broker_fixture: the broker %s within %d ms; stderr:\n%s\n",
		proc_running(&b->proc) ? "did not log its addresses or answer ping" : "exited", BROKER_START_TIMEOUT_MS,
		err);
	free(err);
	proc_kill(&b->proc);
	return -1;
}

int broker_fixture_stop(struct broker_fixture *b, int timeout_ms)
{
	int st;

	if (b->proc.reaped)
		return b->proc.status;
	if (b->proc.pid <= 0)
		return PROC_TIMEOUT;
	proc_signal(&b->proc, SIGTERM);
	st = proc_wait(&b->proc, timeout_ms);
	if (st == PROC_TIMEOUT)
		proc_kill(&b->proc);
	return st;
}

void broker_fixture_kill(struct broker_fixture *b)
{
	proc_kill(&b->proc);
}
