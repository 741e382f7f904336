#include "stderr_capture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

static FILE *capture_file;
static int saved_stderr = -1;

void capture_start(void)
{
	capture_file = tmpfile();
	assert_non_null(capture_file);
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

char *capture_end(size_t *lenp)
{
	long size;
	char *text;

	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	saved_stderr = -1;
	fseek(capture_file, 0, SEEK_END);
	size = ftell(capture_file);
	rewind(capture_file);
	text = calloc(1, (size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)size, capture_file), (size_t)size);
	fclose(capture_file);
	capture_file = NULL;
	if (lenp != NULL)
		*lenp = (size_t)size;
	return text;
}
