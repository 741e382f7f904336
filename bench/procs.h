/*
 * procs.h - subscribers spread over forked processes.
 *
 * One process may hold at most RLIMIT_NOFILE descriptors (20,000 here), so
 * more streams than that need several processes. rb_procs_run forks nprocs
 * children, each running rb_sub_run on its share of the streams (contiguous
 * run-wide indexes, so rooms and source addresses stay round-robin over the
 * whole run, and 1/nprocs of the connect rate); each child sends the parent a
 * ready mark and then its rb_sub_stats as bytes over a pipe, and the parent
 * merges them. The parent never runs an event loop.
 *
 * Threads: call from the main thread of a process with no event loop yet;
 * returns after every child has been reaped.
 */
#ifndef RB_PROCS_H
#define RB_PROCS_H

#include "sub_stats.h"
#include "subscriber.h"

/*
 * Runs opts (the whole run: opts->conns streams from index 0) over nprocs
 * children and merges what they measured into stats. ready(ready_arg) is
 * called in the parent once every child has reported ready. A child that has
 * not reported by the end of the run plus a grace period is killed. Returns 0,
 * or a negative errno when forking failed or a child failed or sent nothing
 * (stats then hold what the others measured).
 */
int rb_procs_run(const struct rb_sub_opts *opts, unsigned nprocs, struct rb_sub_stats *stats,
		 rb_sub_ready_fn ready, void *ready_arg);

#endif
