#include "target.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rb_target_parse(const char *s, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	size_t hlen = colon ? (size_t)(colon - s) : strlen(s);
	unsigned long port = 8080;
	struct in_addr a;

	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (colon) {
		char *end;

		errno = 0;
		port = strtoul(colon + 1, &end, 10);
		if (errno || end == colon + 1 || *end != '\0' || port == 0 || port > 65535)
			return -EINVAL;
	}
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &a) != 1)
		return -EINVAL;
	if ((ntohl(a.s_addr) >> 24) != 127)
		return -EPERM;
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_addr = a;
	out->sin_port = htons((uint16_t)port);
	return 0;
}

void rb_target_format(const struct sockaddr_in *addr, char *buf, size_t cap)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof(ip));
	snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(addr->sin_port));
}

void rb_source_addr(uint32_t i, uint32_t k, struct sockaddr_in *out)
{
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_addr.s_addr = htonl((127u << 24) | (1u + (k ? i % k : 0)));
	out->sin_port = 0;
}

int rb_template_check(const char *tmpl, bool *has_room)
{
	int rooms = 0;

	if (tmpl[0] != '/')
		return -EINVAL;
	for (const char *p = tmpl; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return -EINVAL;
		if (*p != '%')
			continue;
		if (p[1] == 's')
			rooms++;
		else if (p[1] != '%')
			return -EINVAL;
		p++;
	}
	if (rooms > 1)
		return -EINVAL;
	*has_room = rooms == 1;
	return 0;
}

int rb_template_expand(const char *tmpl, const char *room, char *out, size_t cap)
{
	size_t n = 0, rlen = strlen(room);

	for (const char *p = tmpl; *p; p++) {
		if (p[0] == '%' && p[1] == 's') {
			if (cap - n <= rlen)
				return -ENOSPC;
			memcpy(out + n, room, rlen);
			n += rlen;
			p++;
			continue;
		}
		if (p[0] == '%' && p[1] == '%')
			p++;
		if (cap - n <= 1)
			return -ENOSPC;
		out[n++] = *p;
	}
	out[n] = '\0';
	return (int)n;
}

int rb_room_prefix_check(const char *prefix)
{
	size_t len = strlen(prefix);

	if (len == 0 || len > 64)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = prefix[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      strchr("._:@-", c) != NULL))
			return -EINVAL;
	}
	return 0;
}

int rb_room_name(const char *prefix, uint32_t n, char *out, size_t cap)
{
	int r = snprintf(out, cap, "%s%u", prefix, n);

	return (r < 0 || (size_t)r >= cap) ? -ENOSPC : r;
}
