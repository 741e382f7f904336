#include "sse.h"

#include <string.h>

size_t rc_sse_format_event(char *buf, const char *id, size_t id_len, const char *json, size_t json_len)
{
	char *p = buf;

	memcpy(p, "id: ", 4);
	p += 4;
	memcpy(p, id, id_len);
	p += id_len;
	memcpy(p, "\ndata: ", 7);
	p += 7;
	memcpy(p, json, json_len);
	p += json_len;
	memcpy(p, "\n\n", 2);
	p += 2;
	return (size_t)(p - buf);
}
