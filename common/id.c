#include "id.h"

#include <stdio.h>
#include <inttypes.h>

#include "error.h"

size_t rc_epoch_format(char buf[RC_ID_MAX], uint64_t epoch)
{
	return (size_t)snprintf(buf, RC_ID_MAX, "%" PRIx64, epoch);
}

size_t rc_id_format(char buf[RC_ID_MAX], uint64_t epoch, uint64_t gseq)
{
	return (size_t)snprintf(buf, RC_ID_MAX, "%" PRIx64 "-%" PRIu64, epoch, gseq);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int rc_id_parse(const char *s, size_t len, struct rc_id *out)
{
	size_t i = 0;
	uint64_t epoch = 0, gseq = 0;

	if (s == NULL || len == 0)
		return RC_EINVAL;
	/* epoch: 1..16 lower-case hex digits, no leading zero */
	if (s[0] == '0')
		return RC_EINVAL;
	for (; i < len && s[i] != '-'; i++) {
		int v = hexval(s[i]);
		if (v < 0)
			return RC_EINVAL;
		if (i >= 16)
			return RC_ERANGE;
		epoch = (epoch << 4) | (uint64_t)v;
	}
	if (i == 0 || i == len)
		return RC_EINVAL;
	i++; /* '-' */
	if (i == len)
		return RC_EINVAL;
	if (s[i] == '0' && i + 1 != len)
		return RC_EINVAL;
	for (; i < len; i++) {
		unsigned d;
		if (s[i] < '0' || s[i] > '9')
			return RC_EINVAL;
		d = (unsigned)(s[i] - '0');
		if (gseq > (UINT64_MAX - d) / 10)
			return RC_ERANGE;
		gseq = gseq * 10 + d;
	}
	out->epoch = epoch;
	out->gseq = gseq;
	return RC_OK;
}
