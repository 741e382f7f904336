/*
 * rss.h - resident memory of the server under test, from /proc.
 * Any thread.
 */
#ifndef RB_RSS_H
#define RB_RSS_H

#include <stdint.h>

/*
 * Returns the sum of VmRSS (KiB) of the comma-separated pids in list (e.g.
 * "1234,1235" for an nginx master and worker), or -1 if any cannot be read.
 */
int64_t rb_rss_kb(const char *list);

/* Checks list: 1..16 comma-separated positive decimal pids. Returns 0 or -EINVAL. */
int rb_rss_check(const char *list);

#endif
