/*
 * broker_fixture.h - a real roomcast-broker for an integration test, and a
 * client of its api.
 *
 * broker_fixture_start() runs the binary (RC_BROKER_BIN, from CMake) with
 * --bus and --api on 127.0.0.1 port 0, reads the addresses it bound from its
 * ready log line, and returns once the api answers {"op":"ping"}, polling
 * with a deadline. Inherited ROOMCAST_* variables are dropped so the caller's
 * environment cannot change the broker under test.
 *
 * The api client is an nng REQ socket with send/receive timeouts, so a test
 * never hangs on a broker that stopped answering. Main thread for the
 * fixture (it spawns through proc.h); the api client functions may be called
 * from any thread, each thread with its own socket.
 */
#ifndef RC_TEST_BROKER_FIXTURE_H
#define RC_TEST_BROKER_FIXTURE_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "proc.h"
#include "timed_call.h"

struct json_object;

#define BROKER_START_TIMEOUT_MS 15000
#define BROKER_STOP_TIMEOUT_MS 5000
#define API_TIMEOUT_MS 10000
/* nng 1.5.2 can hang in nng_close (timed_call.h): a test closes with rc_nng_close_within */
#define NNG_CLOSE_MS 2000

struct broker_fixture {
	struct proc proc;
	int bus_port, api_port;   /* bound, as the broker logged them */
	char bus_url[64], api_url[64];
	char epoch[RC_ID_MAX]; /* as ping reported it */
	uint64_t epoch_value;
};

/*
 * Starts a broker with the extra arguments args (NULL-terminated, may be NULL)
 * and extra environment env (proc_spec.env form, may be NULL) after --bus and
 * --api. Returns 0, or -1 after printing why (with the broker's stderr).
 */
int broker_fixture_start(struct broker_fixture *b, const char *const *args, const char *const *env);

/*
 * SIGTERMs the broker and waits up to timeout_ms. Returns its exit status, or
 * PROC_TIMEOUT (then it was killed). No-op returning its status once reaped.
 */
int broker_fixture_stop(struct broker_fixture *b, int timeout_ms);

/* Kills the broker if it still runs (teardown). Safe on a zero-filled fixture. */
void broker_fixture_kill(struct broker_fixture *b);

/* Opens a REQ socket dialing url (in the background) with the given timeouts. Returns 0 or an nng error. */
int api_open(nng_socket *s, const char *url, int timeout_ms);

/*
 * Sends req[0..len) and waits for the reply; returns it malloc'ed with a NUL
 * after its *reply_len bytes, or NULL (nng error in *err when err != NULL).
 */
char *api_call_raw(nng_socket s, const void *req, size_t len, size_t *reply_len, int *err);

/* Sends a request and parses the reply as one JSON object; NULL on any failure. Caller puts. */
struct json_object *api_call(nng_socket s, const char *req);

/* Opens a socket, calls, closes: for a single request. */
struct json_object *api_call_once(const char *url, const char *req);

/* The member key of o (NULL when o is not an object or has no such key). */
struct json_object *json_get(struct json_object *o, const char *key);

/* True when reply is an object whose "ok" is the boolean true. */
bool api_reply_ok(struct json_object *reply);

/* The reply's error.code, or NULL. */
const char *api_reply_code(struct json_object *reply);

/* Parses an id of the fixture's epoch; returns its gseq, or UINT64_MAX when it is not one. */
uint64_t broker_fixture_gseq(const struct broker_fixture *b, const char *id);

#endif
