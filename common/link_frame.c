#include "link_frame.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void rc_link_hdr_put(uint8_t out[RC_LINK_HDR_SIZE], uint8_t kind, uint32_t id, uint32_t len)
{
	put32(out, len);
	out[4] = kind;
	out[5] = out[6] = out[7] = 0;
	put32(out + 8, id);
}

static int link_kind_ok(uint8_t k)
{
	return k == RC_LINK_KIND_HELLO || k == RC_LINK_KIND_REQUEST || k == RC_LINK_KIND_REPLY ||
	       k == RC_LINK_KIND_BUS;
}

ssize_t rc_link_parse(const uint8_t *buf, size_t len, uint32_t max, rc_link_frame_fn fn, void *arg)
{
	size_t off = 0;

	while (len - off >= RC_LINK_HDR_SIZE) {
		const uint8_t *h = buf + off;
		struct rc_link_frame f = {
			.kind = h[4],
			.id = get32(h + 8),
			.len = get32(h),
		};
		int rv;

		if (!link_kind_ok(f.kind) || h[5] != 0 || h[6] != 0 || h[7] != 0)
			return RC_EPROTO;
		if (f.len > max)
			return RC_ETOOBIG;
		if (len - off - RC_LINK_HDR_SIZE < f.len)
			break;
		f.payload = h + RC_LINK_HDR_SIZE;
		if ((rv = fn(arg, &f)) != 0)
			return rv;
		off += RC_LINK_HDR_SIZE + (size_t)f.len;
	}
	return (ssize_t)off;
}

int rc_link_url_split(const char *url, char *host, size_t hsize, char *port, size_t psize)
{
	const char *h, *colon, *p;
	size_t hl, pl;

	if (url == NULL || strncmp(url, "tcp://", 6) != 0)
		return RC_EINVAL;
	h = url + 6;
	if (*h == '[') {
		const char *end = strchr(h, ']');
		if (end == NULL || end[1] != ':')
			return RC_EINVAL;
		h++;
		hl = (size_t)(end - h);
		colon = end + 1;
	} else {
		if ((colon = strrchr(h, ':')) == NULL)
			return RC_EINVAL;
		hl = (size_t)(colon - h);
	}
	p = colon + 1;
	pl = strlen(p);
	if (pl == 0 || pl > 5 || strspn(p, "0123456789") != pl || strtol(p, NULL, 10) > 65535 || hl >= hsize ||
	    pl >= psize)
		return RC_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	memcpy(port, p, pl + 1);
	return RC_OK;
}
