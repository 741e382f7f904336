#include "request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "list.h"

/* The callbacks reach the parser through its http_parser, the limits through http.data. */
static struct gw_req_parser *parser_of(http_parser *h)
{
	return gw_container_of(h, struct gw_req_parser, http);
}

static const struct gw_req_limits *limits_of(http_parser *h)
{
	return h->data;
}

void gw_req_free(struct gw_req *r)
{
	if (r == NULL)
		return;
	rc_buf_fini(&r->url);
	rc_buf_fini(&r->body);
	rc_buf_fini(&r->last_event_id);
	rc_buf_fini(&r->authorization);
	rc_buf_fini(&r->content_type);
	rc_buf_fini(&r->idempotency_key);
	rc_buf_fini(&r->origin);
	rc_buf_fini(&r->expect);
	rc_buf_fini(&r->host);
	rc_buf_fini(&r->cookie);
	free(r);
}

/* ---- parser callbacks: copy what the router needs, enforce the limits ---- */

static int on_message_begin(http_parser *h)
{
	struct gw_req_parser *p = parser_of(h);

	gw_req_free(p->req);
	p->req = calloc(1, sizeof(*p->req));
	return p->req == NULL ? -1 : 0;
}

static int header_bytes(http_parser *h, size_t n)
{
	struct gw_req *r = parser_of(h)->req;

	r->header_bytes += n;
	if (r->header_bytes > limits_of(h)->max_header_bytes) {
		r->error_status = 431;
		return -1;
	}
	return 0;
}

static int on_url(http_parser *h, const char *at, size_t n)
{
	struct gw_req *r = parser_of(h)->req;

	if (header_bytes(h, n) != 0)
		return -1;
	rc_buf_append(&r->url, at, n);
	return r->url.err ? -1 : 0;
}

static int on_header_field(http_parser *h, const char *at, size_t n)
{
	struct gw_req *r = parser_of(h)->req;

	if (header_bytes(h, n) != 0)
		return -1;
	if (r->in_value) {
		r->in_value = false;
		r->field_len = 0;
	}
	/* names longer than the field buffer are not ones we read */
	if (r->field_len + n < sizeof(r->field)) {
		memcpy(r->field + r->field_len, at, n);
		r->field_len += (uint8_t)n;
	} else {
		r->field_len = sizeof(r->field) - 1;
		r->field[0] = '\0';
	}
	return 0;
}

static struct rc_buf *header_target(struct gw_req *r)
{
	static const struct {
		const char *name;
		size_t off;
	} wanted[] = {
		{ "last-event-id", offsetof(struct gw_req, last_event_id) },
		{ "authorization", offsetof(struct gw_req, authorization) },
		{ "content-type", offsetof(struct gw_req, content_type) },
		{ "origin", offsetof(struct gw_req, origin) },
		{ "expect", offsetof(struct gw_req, expect) },
		{ "host", offsetof(struct gw_req, host) },
		{ "cookie", offsetof(struct gw_req, cookie) },
		{ "idempotency-key", offsetof(struct gw_req, idempotency_key) },
	};

	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		if (strlen(wanted[i].name) == r->field_len && strncasecmp(r->field, wanted[i].name, r->field_len) == 0)
			return (struct rc_buf *)((char *)r + wanted[i].off);
	return NULL;
}

static int on_header_value(http_parser *h, const char *at, size_t n)
{
	struct gw_req *r = parser_of(h)->req;

	if (header_bytes(h, n) != 0)
		return -1;
	if (!r->in_value) {
		r->in_value = true;
		r->cur = header_target(r);
		if (r->cur != NULL)
			r->cur->len = 0; /* a repeated header: the last one wins */
	}
	if (r->cur != NULL)
		rc_buf_append(r->cur, at, n);
	return 0;
}

static int on_headers_complete(http_parser *h)
{
	struct gw_req *r = parser_of(h)->req;

	r->method = (enum http_method)h->method;
	r->keep_alive = http_should_keep_alive(h);
	if ((h->flags & F_CONTENTLENGTH) && h->content_length > limits_of(h)->max_body_bytes) {
		r->error_status = 413;
		return -1;
	}
	/* the client waits for a word before it sends the body: stop here and let the caller give it */
	if (r->expect.len == strlen("100-continue") && strncasecmp(r->expect.data, "100-continue", r->expect.len) == 0 &&
	    (((h->flags & F_CONTENTLENGTH) && h->content_length > 0) || (h->flags & F_CHUNKED))) {
		r->expect_continue = true;
		http_parser_pause(h, 1);
	}
	return 0;
}

static int on_body(http_parser *h, const char *at, size_t n)
{
	struct gw_req *r = parser_of(h)->req;

	if (r->body.len + n > limits_of(h)->max_body_bytes) {
		r->error_status = 413;
		return -1;
	}
	rc_buf_append(&r->body, at, n);
	return r->body.err ? -1 : 0;
}

static int on_message_complete(http_parser *h)
{
	/* stop here: the request is handled before what follows is parsed */
	http_parser_pause(h, 1);
	return 0;
}

/* read-only, so the loops of several workers share it */
static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void gw_req_parser_init(struct gw_req_parser *p)
{
	http_parser_init(&p->http, HTTP_REQUEST);
	p->req = NULL;
	p->head_paused = false;
}

void gw_req_parser_fini(struct gw_req_parser *p)
{
	gw_req_free(p->req);
	p->req = NULL;
}

enum gw_req_result gw_req_parse(struct gw_req_parser *p, const struct gw_req_limits *lim, const char *data,
				size_t len, size_t *used, struct gw_req **out, int *status, const char **why)
{
	enum http_errno e;

	p->http.data = (void *)lim;
	*used = http_parser_execute(&p->http, &parser_settings, data, len);
	p->http.data = NULL;
	e = HTTP_PARSER_ERRNO(&p->http);
	if (e == HPE_OK)
		return GW_REQ_MORE;
	if (e == HPE_PAUSED && p->head_paused == false && p->req != NULL && p->req->expect_continue) {
		/* paused after the head (on_headers_complete), not at the end */
		http_parser_pause(&p->http, 0);
		p->head_paused = true;
		return GW_REQ_HEAD;
	}
	if (e == HPE_PAUSED) {
		http_parser_pause(&p->http, 0);
		p->head_paused = false;
		*out = p->req;
		p->req = NULL;
		return GW_REQ_DONE;
	}
	*status = p->req != NULL && p->req->error_status != 0 ? p->req->error_status : 400;
	*why = http_errno_description(e);
	gw_req_parser_fini(p);
	return GW_REQ_BAD;
}
