/*
 * sub_stats.h - what a subscriber process measured, mergeable across processes.
 *
 * A plain struct with no pointers, so a forked child can write it to a pipe
 * as bytes and the parent add it to its own (see procs.h). Not thread-safe.
 */
#ifndef RB_SUB_STATS_H
#define RB_SUB_STATS_H

#include <stdint.h>
#include <stdio.h>

#include "histogram.h"

#define RB_STATUS_MAX 600

/* The counters, in output order; each is summed when processes merge. */
#define RB_SUB_COUNTERS(X)                                                                  \
	X(conns)            /* streams asked for */                                         \
	X(started)          /* connect attempted */                                         \
	X(connected)        /* got a 200 response head */                                   \
	X(connect_failed)   /* socket setup or TCP connect failed */                        \
	X(dropped)          /* connected, closed by the server before a response head */    \
	X(connect_timeouts) /* no response head within the connect timeout */               \
	X(http_errors)      /* response head other than 200 */                              \
	X(closed_by_server) /* a 200 stream that the server ended */                        \
	X(protocol_errors)  /* unparsable HTTP, or a read error */                          \
	X(complete)         /* reached --expect events and closed */                        \
	X(open_at_end)      /* streams still open when the run ended */                     \
	X(peak_open)        /* most streams open at once (summed over processes) */         \
	X(events)           /* dispatched SSE events with data */                           \
	X(events_unparsed)  /* events without "ts", "seq" or a known "room" */              \
	X(other_room)       /* events of a room the stream did not ask for */               \
	X(gaps)             /* seq jumps forward by more than one */                        \
	X(missing)          /* events skipped by those jumps */                             \
	X(dups)             /* seq not above the last one (duplicate or out of order) */    \
	X(late_start)       /* first event of a room on a stream had seq > 1 */             \
	X(resets)           /* stream.reset events */                                       \
	X(pings)            /* ": ping" comments */                                         \
	X(comments)         /* every comment line, pings included */                        \
	X(bytes)            /* response body bytes */                                       \
	X(oversize_lines)   /* lines longer than --line-bytes (truncated) */                \
	X(negative_latency) /* events stamped in the future (counted as 0) */

struct rb_sub_stats {
#define RB_SUB_FIELD(name) uint64_t name;
	RB_SUB_COUNTERS(RB_SUB_FIELD)
#undef RB_SUB_FIELD
	uint64_t status[RB_STATUS_MAX]; /* response heads by status code; [0] = out of range */
	double elapsed_s;               /* run time, the longest of all processes */
	int64_t server_rss_ready_kb;    /* --server-pid RSS once all streams were set up, or -1 */
	int64_t server_rss_end_kb;      /* and at the end, or -1 */
	struct rb_hist latency_ns;      /* receive wall time minus "ts" */
	struct rb_hist connect_ns;      /* connect start to response head */
};

/* Zeroes s, empties its histograms and marks the RSS fields unsampled. */
void rb_sub_stats_init(struct rb_sub_stats *s);

/* Adds src into dst (counters summed, histograms merged, elapsed maxed). */
void rb_sub_stats_merge(struct rb_sub_stats *dst, const struct rb_sub_stats *src);

/* Writes s as one JSON object and a newline; mode is "subscribe" or "hold". */
void rb_sub_stats_print_json(FILE *f, const struct rb_sub_stats *s, const char *mode,
			     unsigned procs);

#endif
