/*
 * stderr_capture.h - what rc_log writes (fd 2) captured in a unit test:
 * capture_start sends stderr to a temporary file, capture_end restores it
 * and returns what was written. One capture at a time; cmocka asserts on
 * failure.
 */
#ifndef RC_TEST_STDERR_CAPTURE_H
#define RC_TEST_STDERR_CAPTURE_H

#include <stddef.h>

void capture_start(void);

/* Restores stderr; returns what was written, malloc'ed and NUL-terminated (its length in *lenp unless NULL). */
char *capture_end(size_t *lenp);

#endif
