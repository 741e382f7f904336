#include "rss.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RSS_PIDS_MAX 16

/* Parses list into pids; returns how many, or -EINVAL. */
static int rss_parse(const char *list, long *pids)
{
	const char *p = list;
	int n = 0;

	while (*p) {
		char *end;
		long v;

		if (n == RSS_PIDS_MAX || *p < '0' || *p > '9')
			return -EINVAL;
		errno = 0;
		v = strtol(p, &end, 10);
		if (errno || v <= 0)
			return -EINVAL;
		pids[n++] = v;
		if (*end == ',')
			end++;
		else if (*end != '\0')
			return -EINVAL;
		p = end;
	}
	return n > 0 ? n : -EINVAL;
}

int rb_rss_check(const char *list)
{
	long pids[RSS_PIDS_MAX];

	return rss_parse(list, pids) < 0 ? -EINVAL : 0;
}

int64_t rb_rss_kb(const char *list)
{
	long pids[RSS_PIDS_MAX];
	int n = rss_parse(list, pids);
	int64_t total = 0;

	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		char path[64], line[256];
		long long kb = -1;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%ld/status", pids[i]);
		f = fopen(path, "r");
		if (f == NULL)
			return -1;
		while (fgets(line, sizeof(line), f) != NULL) {
			if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
				break;
		}
		fclose(f);
		if (kb < 0)
			return -1;
		total += kb;
	}
	return total;
}
