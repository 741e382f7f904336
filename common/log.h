/*
 * log.h - one record per line on stderr: `level=info msg="..." key=value ...`,
 * optionally after `time=...`.
 *
 * Each record is formatted into one buffer and written with a single write(2),
 * so lines from different threads never interleave. Callable from any thread.
 */
#ifndef RC_LOG_H
#define RC_LOG_H

enum rc_log_level {
	RC_LOG_DEBUG = 0,
	RC_LOG_INFO = 1,
	RC_LOG_WARN = 2,
	RC_LOG_ERROR = 3,
};

/* Sets the lowest level that is written (process-wide; default info). */
void rc_log_set_level(enum rc_log_level level);

/*
 * With on, every record starts with `time=2026-12-05T07:22:19.690Z ` (UTC,
 * milliseconds): for logs written to a file rather than to a collector
 * that stamps lines itself (process-wide; default off).
 */
void rc_log_set_time(int on);

/* Parses "debug", "info", "warn" or "error"; returns 0 or RC_EINVAL. */
int rc_log_level_parse(const char *s, enum rc_log_level *out);

/* True when records of this level are written. */
int rc_log_enabled(enum rc_log_level level);

/*
 * Writes a record. msg is quoted; kvfmt (may be NULL) is a printf format for
 * the `key=value` pairs that follow, e.g. "bus=%s events=%zu".
 */
void rc_log(enum rc_log_level level, const char *msg, const char *kvfmt, ...)
	__attribute__((format(printf, 3, 4)));

#define rc_log_debug(...) rc_log(RC_LOG_DEBUG, __VA_ARGS__)
#define rc_log_info(...) rc_log(RC_LOG_INFO, __VA_ARGS__)
#define rc_log_warn(...) rc_log(RC_LOG_WARN, __VA_ARGS__)
#define rc_log_error(...) rc_log(RC_LOG_ERROR, __VA_ARGS__)

#endif
