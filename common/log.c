#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

static atomic_int log_level = RC_LOG_INFO;
static atomic_int log_time;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void rc_log_set_level(enum rc_log_level level)
{
	atomic_store(&log_level, (int)level);
}

void rc_log_set_time(int on)
{
	atomic_store(&log_time, on != 0);
}

int rc_log_level_parse(const char *s, enum rc_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum rc_log_level)i;
			return RC_OK;
		}
	}
	return RC_EINVAL;
}

int rc_log_enabled(enum rc_log_level level)
{
	return (int)level >= atomic_load(&log_level);
}

void rc_log(enum rc_log_level level, const char *msg, const char *kvfmt, ...)
{
	char buf[2048];
	size_t n = 0;
	int r;

	if (!rc_log_enabled(level))
		return;
	if (atomic_load(&log_time)) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(buf, sizeof(buf), "time=%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".%03dZ ", (int)(ts.tv_nsec / 1000000));
	}
	r = snprintf(buf + n, sizeof(buf) - n, "level=%s msg=\"", level_names[level]);
	n += (size_t)r;
	/* escape quotes and control bytes so a record stays one line */
	for (const char *p = msg; *p && n < sizeof(buf) - 8; p++) {
		if (*p == '"' || *p == '\\') {
			buf[n++] = '\\';
			buf[n++] = *p;
		} else if ((unsigned char)*p < 0x20) {
			buf[n++] = ' ';
		} else {
			buf[n++] = *p;
		}
	}
	buf[n++] = '"';
	if (kvfmt != NULL && n < sizeof(buf) - 2) {
		va_list ap;
		buf[n++] = ' ';
		va_start(ap, kvfmt);
		r = vsnprintf(buf + n, sizeof(buf) - n - 1, kvfmt, ap);
		va_end(ap);
		if (r > 0)
			n += (size_t)r < sizeof(buf) - n - 1 ? (size_t)r : sizeof(buf) - n - 2;
	}
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	buf[n++] = '\n';
	/* one write per record: lines from threads never interleave */
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
}
