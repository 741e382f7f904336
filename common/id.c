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

size_t rc_id_prefix(char buf[RC_ID_MAX], uint64_t epoch)
{
	size_t n = rc_epoch_format(buf, epoch); /* once per epoch or flush: stdio is fine here */

	buf[n] = '-';
	return n + 1;
}

size_t rc_id_gseq_len(uint64_t gseq)
{
	uint64_t limit = 10;
	size_t n = 1;

	/* 10^19 is the largest power of ten in a uint64_t: 20 digits need no comparison */
	while (n < 20 && gseq >= limit) {
		n++;
		limit *= 10;
	}
	return n;
}

size_t rc_id_format_gseq(char buf[RC_ID_MAX], size_t prefix_len, uint64_t gseq)
{
	/* two digits per division: "00" "01" ... "99" */
	static const char pairs[201] =
		"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
		"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
		"8081828384858687888990919293949596979899";
	size_t len = prefix_len + rc_id_gseq_len(gseq);
	char *p = buf + len;

	*p = '\0';
	while (gseq >= 100) {
		const char *d = &pairs[(gseq % 100) * 2];
		gseq /= 100;
		*--p = d[1];
		*--p = d[0];
	}
	if (gseq >= 10) {
		*--p = pairs[gseq * 2 + 1];
		*--p = pairs[gseq * 2];
	} else {
		*--p = (char)('0' + gseq);
	}
	return len;
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
