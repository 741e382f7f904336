/*
 * histogram.h - a log-bucketed histogram of non-negative integers (HDR-like).
 *
 * Values below 128 are counted exactly; above, each power of two is split
 * into 128 linear sub-buckets, so a reported percentile is within 1/128
 * (< 0.8 %) of the true sample. No per-sample storage: the whole histogram is
 * one fixed struct (about 59 KiB), so it can be copied through a pipe and
 * merged by adding counts. Not thread-safe; one owner at a time.
 */
#ifndef RB_HISTOGRAM_H
#define RB_HISTOGRAM_H

#include <stdint.h>
#include <stdio.h>

#define RB_HIST_SUB_BITS 7
#define RB_HIST_SUB_COUNT (1u << RB_HIST_SUB_BITS)
#define RB_HIST_BUCKETS ((64u - RB_HIST_SUB_BITS + 1u) * RB_HIST_SUB_COUNT)

struct rb_hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	uint64_t sum; /* saturates at UINT64_MAX */
	uint64_t buckets[RB_HIST_BUCKETS];
};

/* Empties h. */
void rb_hist_init(struct rb_hist *h);

/* Counts one sample of value v. */
void rb_hist_record(struct rb_hist *h, uint64_t v);

/* Adds every sample of src to dst; src is unchanged. */
void rb_hist_merge(struct rb_hist *dst, const struct rb_hist *src);

/*
 * Returns the value at percentile pct (0..100]: the highest value of the
 * bucket holding that rank, clamped to [min, max]. 0 when h is empty.
 */
uint64_t rb_hist_percentile(const struct rb_hist *h, double pct);

/*
 * Writes {"count":..,"min":..,"p50":..,"p90":..,"p99":..,"p999":..,
 * "max":..,"mean":..} to f, every value divided by div (1000 turns
 * nanoseconds into microseconds).
 */
void rb_hist_print_json(FILE *f, const struct rb_hist *h, double div);

#endif
