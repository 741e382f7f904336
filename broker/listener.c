#include "listener.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *listener_url(const char *url, const nng_sockaddr *sa)
{
	const char *sep = strstr(url, "://"), *host, *rest;
	char ip[INET6_ADDRSTRLEN + 2];
	size_t size;
	char *out;
	uint16_t port;

	if (sep != NULL && sa->s_family == NNG_AF_INET) {
		inet_ntop(AF_INET, &sa->s_in.sa_addr, ip, sizeof(ip));
		port = ntohs(sa->s_in.sa_port);
	} else if (sep != NULL && sa->s_family == NNG_AF_INET6) {
		ip[0] = '[';
		inet_ntop(AF_INET6, sa->s_in6.sa_addr, ip + 1, sizeof(ip) - 2);
		strcat(ip, "]");
		port = ntohs(sa->s_in6.sa_port);
	} else {
		return strdup(url);
	}
	/* what follows host:port; the host may be a bracketed IPv6 address, with colons of its own */
	host = sep + 3;
	rest = host[0] == '[' ? strchr(host, ']') : host;
	rest = rest != NULL ? strchr(rest, ':') : NULL;
	rest = rest != NULL ? rest + 1 + strspn(rest + 1, "0123456789") : "";
	size = (size_t)(host - url) + strlen(ip) + sizeof(":65535") + strlen(rest);
	if ((out = malloc(size)) == NULL)
		return NULL;
	snprintf(out, size, "%.*s%s:%u%s", (int)(host - url), url, ip, (unsigned)port, rest);
	return out;
}

int listener_start(nng_socket s, const char *url, char **bound)
{
	nng_listener l;
	nng_sockaddr sa;
	int rv;

	if ((rv = nng_listen(s, url, &l, 0)) != 0)
		return rv;
	/* a transport without a local address (inproc) keeps the url as given */
	if (nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) != 0)
		sa.s_family = NNG_AF_UNSPEC;
	*bound = listener_url(url, &sa);
	return *bound != NULL ? 0 : NNG_ENOMEM;
}
