#include "sub_stats.h"

#include <stdbool.h>
#include <string.h>

void rb_sub_stats_init(struct rb_sub_stats *s)
{
	memset(s, 0, sizeof(*s));
	rb_hist_init(&s->latency_ns);
	rb_hist_init(&s->connect_ns);
	s->server_rss_ready_kb = -1;
	s->server_rss_end_kb = -1;
}

void rb_sub_stats_merge(struct rb_sub_stats *dst, const struct rb_sub_stats *src)
{
#define RB_SUB_ADD(name) dst->name += src->name;
	RB_SUB_COUNTERS(RB_SUB_ADD)
#undef RB_SUB_ADD
	for (unsigned i = 0; i < RB_STATUS_MAX; i++)
		dst->status[i] += src->status[i];
	if (src->elapsed_s > dst->elapsed_s)
		dst->elapsed_s = src->elapsed_s;
	rb_hist_merge(&dst->latency_ns, &src->latency_ns);
	rb_hist_merge(&dst->connect_ns, &src->connect_ns);
}

void rb_sub_stats_print_json(FILE *f, const struct rb_sub_stats *s, const char *mode,
			     unsigned procs)
{
	bool first = true;

	fprintf(f, "{\"mode\":\"%s\",\"procs\":%u,\"elapsed_s\":%.3f", mode, procs, s->elapsed_s);
#define RB_SUB_PRINT(name) fprintf(f, ",\"" #name "\":%llu", (unsigned long long)s->name);
	RB_SUB_COUNTERS(RB_SUB_PRINT)
#undef RB_SUB_PRINT
	fprintf(f, ",\"events_per_s\":%.1f",
		s->elapsed_s > 0 ? (double)s->events / s->elapsed_s : 0.0);
	fputs(",\"status\":{", f);
	for (unsigned i = 0; i < RB_STATUS_MAX; i++) {
		if (s->status[i] == 0)
			continue;
		fprintf(f, "%s\"%u\":%llu", first ? "" : ",", i, (unsigned long long)s->status[i]);
		first = false;
	}
	fprintf(f, "},\"server_rss_ready_kb\":%lld,\"server_rss_end_kb\":%lld",
		(long long)s->server_rss_ready_kb, (long long)s->server_rss_end_kb);
	fputs(",\"latency_us\":", f);
	rb_hist_print_json(f, &s->latency_ns, 1000.0);
	fputs(",\"connect_ms\":", f);
	rb_hist_print_json(f, &s->connect_ns, 1e6);
	fputs("}\n", f);
}
