#include "histogram.h"

#include <string.h>

/* Bucket of v: exact below RB_HIST_SUB_COUNT, then 128 per power of two. */
static unsigned hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < RB_HIST_SUB_COUNT)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - RB_HIST_SUB_BITS;
	return (shift + 1u) * RB_HIST_SUB_COUNT + (unsigned)(v >> shift) - RB_HIST_SUB_COUNT;
}

/* Highest value that falls into bucket idx. */
static uint64_t hist_bucket_high(unsigned idx)
{
	unsigned group = idx / RB_HIST_SUB_COUNT;
	unsigned sub = idx % RB_HIST_SUB_COUNT;
	unsigned shift;
	uint64_t low;

	if (group == 0)
		return idx;
	shift = group - 1u;
	low = (uint64_t)(RB_HIST_SUB_COUNT + sub) << shift;
	return low + ((uint64_t)1 << shift) - 1u;
}

void rb_hist_init(struct rb_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void rb_hist_record(struct rb_hist *h, uint64_t v)
{
	h->buckets[hist_index(v)]++;
	h->count++;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->sum = (UINT64_MAX - h->sum < v) ? UINT64_MAX : h->sum + v;
}

void rb_hist_merge(struct rb_hist *dst, const struct rb_hist *src)
{
	if (src->count == 0)
		return;
	for (unsigned i = 0; i < RB_HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->sum = (UINT64_MAX - dst->sum < src->sum) ? UINT64_MAX : dst->sum + src->sum;
}

uint64_t rb_hist_percentile(const struct rb_hist *h, double pct)
{
	uint64_t rank, seen = 0, v;

	if (h->count == 0)
		return 0;
	if (pct >= 100.0)
		return h->max;
	rank = (uint64_t)((pct / 100.0) * (double)h->count + 0.999999);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < RB_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			v = hist_bucket_high(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

void rb_hist_print_json(FILE *f, const struct rb_hist *h, double div)
{
	double mean = h->count ? (double)h->sum / (double)h->count : 0.0;

	fprintf(f,
		"{\"count\":%llu,\"min\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
		"\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
		(unsigned long long)h->count, h->count ? (double)h->min / div : 0.0,
		(double)rb_hist_percentile(h, 50.0) / div, (double)rb_hist_percentile(h, 90.0) / div,
		(double)rb_hist_percentile(h, 99.0) / div, (double)rb_hist_percentile(h, 99.9) / div,
		(double)h->max / div, mean / div);
}
