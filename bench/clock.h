/*
 * clock.h - the two clocks of the bench, in nanoseconds.
 *
 * Monotonic time paces and times everything local to a process; wall time
 * (CLOCK_REALTIME) is what the publisher stamps into events as "ts" and what
 * subscribers subtract it from, so both must run on the same machine.
 * Any thread.
 */
#ifndef RB_CLOCK_H
#define RB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t rb_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int64_t rb_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

#endif
