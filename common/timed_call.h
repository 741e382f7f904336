/*
 * timed_call.h - run a call that may never return, and stop waiting for it.
 *
 * nng 1.5.2 (Debian bookworm) can block for ever in nng_close when a pipe is
 * never removed from its socket (fixed upstream after 1.5.2; seen here under
 * load in servers, tools and tests alike). Whoever closes a socket and must
 * go on afterwards (a gateway that has to exit, a CLI, a test that must end)
 * runs the close through rc_timed_call and abandons it when it hangs.
 */
#ifndef RC_TIMED_CALL_H
#define RC_TIMED_CALL_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Runs fn(arg) on a thread of its own and waits at most ms milliseconds for
 * it to return. Returns true when it did. Otherwise (or when no thread could
 * be started: then fn never runs) returns false; a call still running keeps
 * its thread, and arg must stay valid until fn returns, which may be never:
 * fn owns arg, and frees it if it has to.
 */
bool rc_timed_call(void (*fn)(void *arg), void *arg, int64_t ms);

/* nng_close(s) through rc_timed_call: true when it returned within ms. */
bool rc_nng_close_within(nng_socket s, int64_t ms);

#endif
