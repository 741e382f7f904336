#include "natsmap.h"

#include <string.h>

#include "error.h"
#include "proto_limits.h"

static bool natsmap_plain(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool natsmap_stream_valid(const char *name)
{
	size_t n = name != NULL ? strlen(name) : 0;

	if (n < 1 || n > NATSMAP_STREAM_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!natsmap_plain((unsigned char)name[i]))
			return false;
	return true;
}

size_t natsmap_subject(char *out, const char *stream, const char *room, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t sl = strlen(stream), o;

	if (sl > NATSMAP_STREAM_MAX || len > RC_ROOM_MAX)
		return 0;
	memcpy(out, stream, sl);
	o = sl;
	if (room == NULL || len == 0) {
		memcpy(out + o, ".g", 3);
		return o + 2;
	}
	memcpy(out + o, ".r.", 3);
	o += 3;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)room[i];
		if (natsmap_plain(c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o;
}

size_t natsmap_filter(char *out, const char *stream)
{
	size_t sl = strlen(stream);

	if (sl > NATSMAP_STREAM_MAX)
		return 0;
	memcpy(out, stream, sl);
	memcpy(out + sl, ".>", 3);
	return sl + 2;
}

static int natsmap_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case too: the encoder never writes it, so a subject is read one way only */
}

int natsmap_parse(const char *subj, const char *stream, char *room, size_t room_cap, size_t *len, bool *global)
{
	size_t sl = strlen(stream), n = 0;
	const char *p;

	if (strncmp(subj, stream, sl) != 0 || subj[sl] != '.')
		return RC_EINVAL;
	p = subj + sl + 1;
	if (strcmp(p, "g") == 0) {
		*global = true;
		*len = 0;
		return RC_OK;
	}
	if (strncmp(p, "r.", 2) != 0 || p[2] == '\0')
		return RC_EINVAL;
	*global = false;
	for (p += 2; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '%') {
			int hi = natsmap_hexval(p[1]), lo = hi >= 0 ? natsmap_hexval(p[2]) : -1;
			if (lo < 0)
				return RC_EINVAL;
			c = (unsigned char)(hi << 4 | lo);
			if (natsmap_plain(c))
				return RC_EINVAL;
			p += 2;
		} else if (!natsmap_plain(c)) {
			return RC_EINVAL;
		}
		if (n == room_cap)
			return RC_ETOOBIG;
		room[n++] = (char)c;
	}
	*len = n;
	return RC_OK;
}

size_t natsmap_rseq_format(char out[21], uint64_t rseq)
{
	char tmp[21];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + rseq % 10);
		rseq /= 10;
	} while (rseq != 0);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return n;
}

int natsmap_rseq_parse(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (s == NULL || *s < '1' || *s > '9')
		return RC_EINVAL;
	for (; *s != '\0'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return RC_EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return RC_OK;
}

uint64_t natsmap_epoch(const char *stream, int64_t created_ns)
{
	/* FNV-1a over the name, a separator and the creation time, folded to 32 bits */
	uint64_t h = 14695981039346656037ull, t = (uint64_t)created_ns;
	uint32_t e;

	for (const char *p = stream; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (int i = 0; i < 8; i++, t >>= 8)
		h = (h ^ (t & 0xff)) * 1099511628211ull;
	e = (uint32_t)(h ^ (h >> 32));
	return e != 0 ? e : 1;
}
