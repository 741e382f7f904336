#include "sse_parser.h"

#include <string.h>

void rb_sse_parser_init(struct rb_sse_parser *p, char *buf, size_t cap)
{
	p->line = buf;
	p->cap = cap;
	p->len = 0;
	p->truncated = false;
	p->oversize_lines = 0;
}

static bool sse_name_is(const char *name, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

/* One complete line without its "\n". */
static void sse_parser_line(const char *s, size_t len, const struct rb_sse_handler *h, void *ctx)
{
	const char *colon, *value;
	size_t name_len, value_len;
	enum rb_sse_field field;

	if (len > 0 && s[len - 1] == '\r')
		len--;
	if (len == 0) {
		h->on_dispatch(ctx);
		return;
	}
	colon = memchr(s, ':', len);
	if (colon == NULL) {
		name_len = len;
		value = s + len;
		value_len = 0;
	} else {
		name_len = (size_t)(colon - s);
		value = colon + 1;
		value_len = len - name_len - 1;
		if (value_len > 0 && *value == ' ') {
			value++;
			value_len--;
		}
	}
	if (name_len == 0)
		field = RB_SSE_COMMENT;
	else if (sse_name_is(s, name_len, "data"))
		field = RB_SSE_DATA;
	else if (sse_name_is(s, name_len, "id"))
		field = RB_SSE_ID;
	else if (sse_name_is(s, name_len, "event"))
		field = RB_SSE_EVENT;
	else if (sse_name_is(s, name_len, "retry"))
		field = RB_SSE_RETRY;
	else
		field = RB_SSE_OTHER;
	h->on_field(ctx, field, value, value_len);
}

/* Appends to the partial line, keeping only the first cap bytes. */
static void sse_parser_append(struct rb_sse_parser *p, const char *data, size_t len)
{
	size_t room = p->cap - p->len;

	if (len > room) {
		p->truncated = true;
		len = room;
	}
	memcpy(p->line + p->len, data, len);
	p->len += len;
}

void rb_sse_parser_feed(struct rb_sse_parser *p, const char *data, size_t len,
			const struct rb_sse_handler *h, void *ctx)
{
	/* Each pass consumes at least one byte, so len bounds the loop. */
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t seg;

		if (nl == NULL) {
			sse_parser_append(p, data, len);
			return;
		}
		seg = (size_t)(nl - data);
		if (p->len == 0 && !p->truncated) {
			sse_parser_line(data, seg, h, ctx);
		} else {
			sse_parser_append(p, data, seg);
			if (p->truncated)
				p->oversize_lines++;
			sse_parser_line(p->line, p->len, h, ctx);
			p->len = 0;
			p->truncated = false;
		}
		data = nl + 1;
		len -= seg + 1;
	}
}
