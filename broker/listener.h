/*
 * listener.h - an nng listener and the address it is bound to.
 *
 * Given port 0 the system picks the port: the broker logs the URL with the
 * port it got (tcp://127.0.0.1:0 -> tcp://127.0.0.1:40123), so whoever
 * started it can reach it without picking a "free" port first.
 */
#ifndef RC_LISTENER_H
#define RC_LISTENER_H

#include <nng/nng.h>

/*
 * nng_listen(s, url) and, on success, *bound = the URL it is bound to
 * (listener_url), malloc'ed for the caller to free. Returns 0 or an nng
 * error (NNG_ENOMEM: listening, but no URL; the caller closes s).
 */
int listener_start(nng_socket s, const char *url, char **bound);

/*
 * url with its host:port replaced by the address sa (nng's
 * NNG_OPT_LOCADDR): "tcp://localhost:0" -> "tcp://127.0.0.1:40123",
 * "tcp6://[::1]:0" -> "tcp6://[::1]:40123", a wildcard host -> 0.0.0.0 or
 * [::], anything after the port (a path) kept. A url
 * without "://", or sa not an IPv4 or IPv6 address (ipc://, inproc://), is
 * returned as it is. Malloc'ed; NULL when out of memory.
 */
char *listener_url(const char *url, const nng_sockaddr *sa);

#endif
